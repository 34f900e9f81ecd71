// Command authsvc runs the Gatehouse accounts service.
//
//	authsvc [serve]                     run the service (configuration from the environment)
//	authsvc keygen [-out FILE]          write a new RSA 4096 signing key (PEM, mode 0600)
//	authsvc create-admin --email E [--password-file F]
//	                                    create (or promote) an admin; password from stdin or F
//	authsvc migrate                     apply the database migrations and exit
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"golang.org/x/term"

	"github.com/gatehouse/gatehouse/authsvc"
)

func main() {
	log := slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	slog.SetDefault(log)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	cmd := "serve"
	args := os.Args[1:]
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		cmd, args = args[0], args[1:]
	}
	var err error
	switch cmd {
	case "serve":
		err = serve(ctx, log)
	case "keygen":
		err = keygen(args)
	case "create-admin":
		err = createAdmin(ctx, args, os.Stdin)
	case "migrate":
		err = migrateOnly(ctx)
	case "help", "-h", "--help":
		fmt.Println("usage: authsvc [serve | keygen [-out FILE] | create-admin --email E [--password-file F] | migrate]")
		return
	default:
		err = fmt.Errorf("unknown command %q (try: serve, keygen, create-admin, migrate)", cmd)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "authsvc:", err)
		os.Exit(1)
	}
}

func serve(ctx context.Context, log *slog.Logger) error {
	cfg, err := authsvc.LoadConfig(os.Getenv)
	if err != nil {
		return fmt.Errorf("configuration:\n%w", err)
	}
	return authsvc.Run(ctx, cfg, log, nil)
}

func keygen(args []string) error {
	fs := flag.NewFlagSet("keygen", flag.ContinueOnError)
	out := fs.String("out", "", "write the key to this file (mode 0600; must not exist) instead of stdout")
	if err := fs.Parse(args); err != nil {
		return err
	}
	pem, err := authsvc.GenerateKeyPEM()
	if err != nil {
		return err
	}
	if *out == "" {
		_, err = os.Stdout.Write(pem)
		return err
	}
	f, err := os.OpenFile(*out, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(pem); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func createAdmin(ctx context.Context, args []string, stdin io.Reader) error {
	fs := flag.NewFlagSet("create-admin", flag.ContinueOnError)
	email := fs.String("email", "", "the admin's email (required)")
	pwFile := fs.String("password-file", "", "read the password from this file instead of stdin")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *email == "" {
		return errors.New("--email is required")
	}
	var pw string
	if *pwFile != "" {
		b, err := os.ReadFile(*pwFile)
		if err != nil {
			return err
		}
		pw = strings.TrimRight(string(b), "\r\n")
	} else if f, ok := stdin.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		// Typed at a terminal: not echoed, and asked twice.
		fmt.Fprint(os.Stderr, "password: ")
		b, err := term.ReadPassword(int(f.Fd()))
		fmt.Fprintln(os.Stderr)
		if err != nil {
			return err
		}
		fmt.Fprint(os.Stderr, "again: ")
		again, err := term.ReadPassword(int(f.Fd()))
		fmt.Fprintln(os.Stderr)
		if err != nil {
			return err
		}
		if string(again) != string(b) {
			return errors.New("the two passwords differ")
		}
		pw = string(b)
	} else {
		fmt.Fprintln(os.Stderr, "password (one line on stdin):")
		line, err := bufio.NewReader(stdin).ReadString('\n')
		if err != nil && !errors.Is(err, io.EOF) {
			return err
		}
		pw = strings.TrimRight(line, "\r\n")
	}
	cfg, err := authsvc.LoadConfig(os.Getenv)
	if err != nil {
		return fmt.Errorf("configuration:\n%w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	created, err := authsvc.CreateAdmin(ctx, cfg, *email, pw)
	if err != nil {
		return err
	}
	if created {
		fmt.Fprintf(os.Stderr, "created admin %s\n", *email)
	} else {
		fmt.Fprintf(os.Stderr, "%s is now an active admin with the new password\n", *email)
	}
	return nil
}

func migrateOnly(ctx context.Context) error {
	cfg, err := authsvc.LoadConfig(os.Getenv)
	if err != nil {
		return fmt.Errorf("configuration:\n%w", err)
	}
	pool, err := authsvc.OpenDB(ctx, cfg.DatabaseURL)
	if err != nil {
		return err
	}
	pool.Close()
	return nil
}
