package authsvc

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/gatehouse/gatehouse/internal/httpx"
	"github.com/gatehouse/gatehouse/internal/migrate"
	"github.com/gatehouse/gatehouse/migrations"
)

// OpenDB connects to the database and applies the auth schema's migrations.
func OpenDB(ctx context.Context, databaseURL string) (*pgxpool.Pool, error) {
	return migrate.Open(ctx, databaseURL, migrations.FS, "auth")
}

// Run serves authsvc until ctx is cancelled, then drains open requests.
// ready, if not nil, receives the listening address once it accepts.
func Run(ctx context.Context, cfg *Config, log *slog.Logger, ready chan<- string) error {
	key, generated, err := LoadOrCreateKey(cfg.PrivateKeyFile, cfg.GenerateKeyIfNone)
	if err != nil {
		return err
	}
	if generated {
		log.Info("generated a new JWT signing key", "file", cfg.PrivateKeyFile)
	}
	pool, err := OpenDB(ctx, cfg.DatabaseURL)
	if err != nil {
		return err
	}
	defer pool.Close()
	svc, err := New(cfg, pool, key, log)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return fmt.Errorf("AUTHSVC_ADDR: %w", err)
	}
	srv := &http.Server{
		Handler:           svc.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      60 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    64 << 10,
	}
	log.Info("authsvc listening", "addr", ln.Addr().String(), "kid", svc.signer.KeyID(), "issuer", cfg.Issuer)
	if ready != nil {
		ready <- ln.Addr().String()
	}
	sweepCtx, stopSweep := context.WithCancel(ctx)
	swept := make(chan struct{})
	go func() { defer close(swept); sweepSessions(sweepCtx, svc.store, log) }()
	defer func() { stopSweep(); <-swept }() // before the pool closes
	return httpx.Serve(ctx, srv, ln)
}

// CreateAdmin creates the admin account email, or makes an existing account
// an active admin with this password (the operator's bootstrap).
func CreateAdmin(ctx context.Context, cfg *Config, email, password string) (created bool, err error) {
	addr, fe := validateEmail(email)
	if fe != nil {
		return false, fmt.Errorf("--email: %s", fe.Message)
	}
	if v := CheckPasswordPolicy(password); len(v) > 0 {
		return false, fmt.Errorf("password: %s", strings.Join(v, "; "))
	}
	pool, err := OpenDB(ctx, cfg.DatabaseURL)
	if err != nil {
		return false, err
	}
	defer pool.Close()
	h, err := NewHasher(1, time.Minute)
	if err != nil {
		return false, err
	}
	hash, err := h.Hash(ctx, password)
	if err != nil {
		return false, err
	}
	return NewStore(pool).SetAdmin(ctx, addr, hash)
}
