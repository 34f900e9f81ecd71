package docservice

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/gatehouse/gatehouse/internal/httpx"
	"github.com/gatehouse/gatehouse/internal/migrate"
	"github.com/gatehouse/gatehouse/migrations"
)

// tempIdle is how long a temporary file whose writer cannot be told by its
// lock (FileStore.CleanTemp) may go unwritten before it counts as left over
// by a crash (live uploads time out well before).
const tempIdle = 5 * time.Minute

// OpenDB connects to the database and applies the docs schema's migrations.
func OpenDB(ctx context.Context, databaseURL string) (*pgxpool.Pool, error) {
	return migrate.Open(ctx, databaseURL, migrations.FS, "docs")
}

// Run serves docservice until ctx is cancelled, then drains open requests.
// ready, if not nil, receives the listening address once it accepts.
func Run(ctx context.Context, cfg *Config, log *slog.Logger, ready chan<- string) error {
	settings, err := NewSettingsStore(cfg.AppConfigDir, log)
	if err != nil {
		return err
	}
	files, err := OpenFileStore(cfg.StorageDir)
	if err != nil {
		return err
	}
	defer files.Close()
	// Uploads cut short by a crash: their files are unlocked now. (Files
	// another instance sharing the tree is writing stay locked.)
	if n, err := files.CleanTemp(tempIdle); err != nil {
		return fmt.Errorf("STORAGE_DIR: clean temporary files: %w", err)
	} else if n > 0 {
		log.Info("removed temporary files left by an interrupted upload", "count", n)
	}
	if err := os.MkdirAll(cfg.WatchDir, 0o750); err != nil {
		log.Warn("WATCH_DIR cannot be created; the watched folder stays unavailable", "dir", cfg.WatchDir, "err", err)
	}
	pool, err := OpenDB(ctx, cfg.DatabaseURL)
	if err != nil {
		return err
	}
	defer pool.Close()
	// Category renames a crash interrupted: their folders go where the
	// committed rows say.
	if err := NewStore(pool).SettleFolderMoves(ctx, files.MoveDir); err != nil {
		return fmt.Errorf("STORAGE_DIR: settle interrupted folder moves: %w", err)
	}
	svc := New(cfg, pool, files, settings, log)

	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return fmt.Errorf("DOCSERVICE_ADDR: %w", err)
	}
	srv := newHTTPServer(svc.Handler(), bodyReadTimeout)
	log.Info("docservice listening", "addr", ln.Addr().String(), "storage_dir", cfg.StorageDir,
		"app_config_dir", cfg.AppConfigDir)
	if ready != nil {
		ready <- ln.Addr().String()
	}
	go sweepTemp(ctx, files, log)
	go reportOrphans(ctx, svc.store, files, log)
	return httpx.Serve(ctx, srv, ln)
}

// bodyReadTimeout is how long a request may take to arrive, headers and
// body, unless its handler extends it: a JSON body trickled in a byte at a
// time no longer holds a connection for ever.
const bodyReadTimeout = 30 * time.Second

// newHTTPServer is docservice's server. No WriteTimeout, and uploads move
// the read deadline on as their data arrives (progressReader): a 1 GiB
// upload or download on a slow link may take hours, and ends only when its
// client stalls or trickles (uploadIdleTimeout, uploadMinProgress). Idle
// keep-alive connections end after IdleTimeout.
func newHTTPServer(h http.Handler, readTimeout time.Duration) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       readTimeout,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    64 << 10,
	}
}

// sweepTemp removes abandoned temporary files now and then, for instances
// that run for months.
func sweepTemp(ctx context.Context, files *FileStore, log *slog.Logger) {
	t := time.NewTicker(tempIdle)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if n, err := files.CleanTemp(tempIdle); err != nil {
				log.Error("clean temporary files", "err", err)
			} else if n > 0 {
				log.Info("removed abandoned temporary upload files", "count", n)
			}
		}
	}
}
