// Command docservice runs the Gatehouse document service.
//
//	docservice [serve]    run the service (configuration from the environment)
//	docservice migrate    apply the database migrations and exit
//
// It must listen where only the edge can reach it: it trusts the edge's
// X-User-* headers (see docs/docservice.md).
package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"syscall"

	"github.com/gatehouse/gatehouse/docservice"
)

func main() {
	log := slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	slog.SetDefault(log)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	cmd := "serve"
	if len(os.Args) > 1 && !strings.HasPrefix(os.Args[1], "-") {
		cmd = os.Args[1]
	}
	var err error
	switch cmd {
	case "serve":
		err = serve(ctx, log)
	case "migrate":
		err = migrateOnly(ctx)
	case "help", "-h", "--help":
		fmt.Println("usage: docservice [serve | migrate]")
		return
	default:
		err = fmt.Errorf("unknown command %q (try: serve, migrate)", cmd)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "docservice:", err)
		os.Exit(1)
	}
}

// defaultMemoryLimit is the Go runtime's soft memory limit while serving,
// unless the operator sets GOMEMLIMIT. Without one the collector lets the
// heap grow to twice what was live after the last collection, so the
// upload buffers and one PDF parse's garbage were still held while the
// next parse ran: four 15 MiB scanned documents uploaded together, parsed
// one at a time, still took docservice to 65–70 MiB RSS, above the 64 MiB
// target; with 48 MiB 58–61 MiB, with 40 MiB 52–53 MiB (bench-docservice,
// at no CPU cost there). The limit is soft: what a request needs it still
// gets, at the cost of more collections; a 1 GiB upload, which stays far
// below it, is not slowed.
const defaultMemoryLimit = 40 << 20

func serve(ctx context.Context, log *slog.Logger) error {
	cfg, err := docservice.LoadConfig(os.Getenv)
	if err != nil {
		return fmt.Errorf("configuration:\n%w", err)
	}
	if os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(defaultMemoryLimit)
	}
	log.Info("Go memory limit", "bytes", debug.SetMemoryLimit(-1))
	return docservice.Run(ctx, cfg, log, nil)
}

func migrateOnly(ctx context.Context) error {
	cfg, err := docservice.LoadConfig(os.Getenv)
	if err != nil {
		return fmt.Errorf("configuration:\n%w", err)
	}
	pool, err := docservice.OpenDB(ctx, cfg.DatabaseURL)
	if err != nil {
		return err
	}
	pool.Close()
	return nil
}
