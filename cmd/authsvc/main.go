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
		b, err := readSecret(ctx, int(f.Fd()), "password: ")
		if err != nil {
			return err
		}
		again, err := readSecret(ctx, int(f.Fd()), "again: ")
		if err != nil {
			return err
		}
		if again != b {
			return errors.New("the two passwords differ")
		}
		pw = b
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

// readSecret reads a line from the terminal fd without echo. Ctrl-C (the
// signal main catches, so the process does not die at the prompt) ends the
// wait, with the terminal as it was: term.ReadPassword alone would go on
// reading, echo off, until Enter.
func readSecret(ctx context.Context, fd int, prompt string) (string, error) {
	state, err := term.GetState(fd)
	if err != nil {
		return "", err
	}
	fmt.Fprint(os.Stderr, prompt)
	type result struct {
		b   []byte
		err error
	}
	got := make(chan result, 1)
	go func() {
		b, err := term.ReadPassword(fd)
		got <- result{b, err}
	}()
	select {
	case r := <-got:
		fmt.Fprintln(os.Stderr)
		return string(r.b), r.err
	case <-ctx.Done():
		_ = term.Restore(fd, state)
		fmt.Fprintln(os.Stderr)
		return "", errors.New("interrupted")
	}
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
