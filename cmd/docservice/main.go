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

func serve(ctx context.Context, log *slog.Logger) error {
	cfg, err := docservice.LoadConfig(os.Getenv)
	if err != nil {
		return fmt.Errorf("configuration:\n%w", err)
	}
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
