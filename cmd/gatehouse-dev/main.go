// Command gatehouse-dev runs the whole stack on a developer's machine (what
// `make run` calls) and manages the private PostgreSQL cluster it uses when
// DATABASE_URL is unset.
//
//	gatehouse-dev run                          start everything in the foreground; Ctrl-C stops all
//	gatehouse-dev create-admin --email E       run `authsvc create-admin` against the stack's database
//	gatehouse-dev db-start|db-stop|db-url [--dir D]   (db-stop --if-unused: not while a test run or make run uses it)
//	                                           manage the private cluster (default DATA_DIR/postgres)
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/gatehouse/gatehouse/internal/pgcluster"
)

const usage = `usage: gatehouse-dev <command>

  run                     start the whole stack (PostgreSQL unless DATABASE_URL is set,
                          authsvc, docservice, Caddy) in the foreground; Ctrl-C stops it
  create-admin --email E  create (or promote) an admin; the password is asked for
  db-start | db-url       start the private PostgreSQL cluster and print its URL
  db-stop                 stop it
  (db-* take --dir D; the default is $DATA_DIR/postgres, DATA_DIR defaulting to ./.data)`

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, usage)
		os.Exit(2)
	}
	var err error
	switch cmd, args := os.Args[1], os.Args[2:]; cmd {
	case "-h", "-help", "--help", "help":
		fmt.Println(usage)
		return
	case "run":
		if err = run(); errors.Is(err, errStopped) {
			fmt.Fprintln(os.Stderr, "\nstopped")
			err = nil
		}
	case "create-admin":
		err = createAdmin(args)
	case "db-start", "db-url":
		var url string
		if url, err = dbURL(args); err == nil {
			fmt.Println(url)
		}
	case "db-stop":
		err = dbStop(args)
	default:
		err = fmt.Errorf("unknown command %q (gatehouse-dev help lists them)", cmd)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "gatehouse-dev:", err)
		os.Exit(1)
	}
}

func dataDir() string {
	if d := os.Getenv("DATA_DIR"); d != "" {
		return d
	}
	return "./.data"
}

func clusterFlags(fs *flag.FlagSet, args []string) (*pgcluster.Cluster, error) {
	dir := fs.String("dir", filepath.Join(dataDir(), "postgres"), "cluster directory")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	return pgcluster.New(*dir)
}

func dbURL(args []string) (string, error) {
	c, err := clusterFlags(flag.NewFlagSet("db-url", flag.ContinueOnError), args)
	if err != nil {
		return "", err
	}
	return c.Ensure("gatehouse")
}

func dbStop(args []string) error {
	fs := flag.NewFlagSet("db-stop", flag.ContinueOnError)
	ifUnused := fs.Bool("if-unused", false, "leave the server running while another process (a test binary, make run) uses it")
	c, err := clusterFlags(fs, args)
	if err != nil {
		return err
	}
	if !*ifUnused {
		return c.Stop()
	}
	stopped, err := c.StopIfUnused()
	if err == nil && !stopped {
		fmt.Fprintf(os.Stderr, "PostgreSQL in %s is in use by another process: left running\n", c.Dir)
	}
	return err
}

// databaseURL is DATABASE_URL, or the private cluster's (started if needed);
// stop stops the cluster again when this call started it.
func databaseURL() (url string, stop func(), err error) {
	if u := os.Getenv("DATABASE_URL"); u != "" {
		return u, func() {}, nil
	}
	c, err := pgcluster.New(filepath.Join(dataDir(), "postgres"))
	if err != nil {
		return "", nil, err
	}
	fmt.Fprintf(os.Stderr, "DATABASE_URL is unset: using the private PostgreSQL cluster in %s\n", c.Dir)
	release, err := c.Use()
	if err != nil {
		return "", nil, err
	}
	url, started, err := c.EnsureStarted("gatehouse")
	if err != nil {
		release()
		return "", nil, err
	}
	if !started {
		fmt.Fprintf(os.Stderr, "PostgreSQL in %s was already running: left running at exit (gatehouse-dev db-stop stops it)\n", c.Dir)
	}
	return url, func() {
		release()
		if !started {
			// Found running (db-start, another `make run`): not ours to stop.
			return
		}
		// Another `make run` or create-admin may have joined meanwhile.
		if _, err := c.StopIfUnused(); err != nil {
			fmt.Fprintln(os.Stderr, "stop PostgreSQL:", err)
		}
	}, nil
}

func createAdmin(args []string) error {
	url, stopDB, err := databaseURL()
	if err != nil {
		return err
	}
	defer stopDB() // only if this call started it, and no `make run` uses it
	// Ctrl-C at the password prompt reaches authsvc (same process group),
	// which ends; we wait for it and stop the cluster instead of dying
	// first. Caught, not ignored: an ignored signal stays ignored in the
	// child.
	signal.Notify(make(chan os.Signal, 1), os.Interrupt, syscall.SIGTERM)
	cmd := exec.Command(binPath("authsvc"), append([]string{"create-admin"}, args...)...)
	cmd.Env = append(os.Environ(), "DATABASE_URL="+url, "DATA_DIR="+dataDir())
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	return cmd.Run()
}

func binPath(name string) string {
	self, err := os.Executable()
	if err == nil {
		p := filepath.Join(filepath.Dir(self), name)
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	return filepath.Join("bin", name)
}

func getenv(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

type child struct {
	name string
	cmd  *exec.Cmd
	done chan struct{} // closed when the process has exited
	err  error         // its exit status, valid once done is closed
}

func run() error {
	// SIGHUP too: closing the terminal must stop the stack, not orphan it.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	defer stop()

	// The services read the Caddyfile and DATA_DIR relative to here.
	if _, err := os.Stat(binPath("caddy")); err == nil {
		if _, err := os.Stat("Caddyfile"); err != nil {
			wd, _ := os.Getwd()
			return fmt.Errorf("no Caddyfile in %s: run `make run` (or gatehouse-dev run) from the repository's root", wd)
		}
	}

	if err := checkTLSMode(os.Getenv("GATEHOUSE_TLS"), getenv("GATEHOUSE_SITE_ADDRESS", ":8080")); err != nil {
		return err
	}
	url, stopDB, err := databaseURL()
	if err != nil {
		return err
	}
	defer stopDB()

	authAddr := getenv("AUTHSVC_ADDR", "127.0.0.1:8000")
	docAddr := getenv("DOCSERVICE_ADDR", "127.0.0.1:8001")
	abs, err := filepath.Abs(dataDir())
	if err != nil {
		return err
	}
	// Caddy keeps its state (local CA for `tls internal`, certificates,
	// autosaved config) under the data directory too, not in $HOME.
	env := append(os.Environ(), "DATABASE_URL="+url, "DATA_DIR="+dataDir(),
		"XDG_DATA_HOME="+filepath.Join(abs, "caddy", "data"), "XDG_CONFIG_HOME="+filepath.Join(abs, "caddy", "config"),
		"AUTHSVC_ADDR="+authAddr, "AUTHSVC_UPSTREAM="+authAddr,
		"DOCSERVICE_ADDR="+docAddr, "DOCSERVICE_UPSTREAM="+docAddr)
	var children []*child
	exited := make(chan *child, 4)
	defer func() { stopAll(children) }()

	start := func(name string, args ...string) (*child, error) {
		cmd := exec.Command(binPath(name), args...)
		cmd.Env = env
		cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
		// Own process group: the terminal's Ctrl-C reaches us only, and we
		// stop the children in order. If we die without that (SIGKILL),
		// they get SIGTERM rather than run on, holding the ports.
		cmd.SysProcAttr = childProcAttr()
		if err := cmd.Start(); err != nil {
			return nil, fmt.Errorf("start %s: %w", name, err)
		}
		c := &child{name: name, cmd: cmd, done: make(chan struct{})}
		go func() {
			c.err = cmd.Wait()
			close(c.done)
			exited <- c
		}()
		children = append(children, c)
		return c, nil
	}

	auth, err := start("authsvc", "serve")
	if err != nil {
		return err
	}
	if err := waitHealthy(ctx, "http://"+authAddr+"/health", auth); err != nil {
		return err
	}
	// Services that exist so far: each later one starts once its binary is built.
	if _, err := os.Stat(binPath("docservice")); err == nil {
		doc, err := start("docservice")
		if err != nil {
			return err
		}
		if err := waitHealthy(ctx, "http://"+docAddr+"/health", doc); err != nil {
			return err
		}
	}
	base := "http://" + authAddr
	if _, err := os.Stat(binPath("caddy")); err == nil {
		edge, err := start("caddy", "run", "--config", "Caddyfile", "--adapter", "caddyfile")
		if err != nil {
			return err
		}
		base = siteURL(getenv("GATEHOUSE_SITE_ADDRESS", ":8080"))
		// A plain-HTTP site answers at once; a domain may first wait
		// for its certificate, so only the former is waited for.
		if strings.HasPrefix(base, "http://") {
			if err := waitHealthy(ctx, base+"/.well-known/jwks.json", edge); err != nil {
				return err
			}
		}
	}
	if _, err := os.Stat(filepath.Join(getenv("GATEHOUSE_WEB_ROOT", "./web/dist"), "index.html")); err != nil && base != "http://"+authAddr {
		fmt.Fprintf(os.Stderr, "\nNo web app in %s (GATEHOUSE_WEB_ROOT): %s/ answers 404; the API is under %s/api.\n",
			getenv("GATEHOUSE_WEB_ROOT", "./web/dist"), base, base)
	}
	fmt.Fprintf(os.Stderr, `
Gatehouse is running: %s
  create the first admin (in another terminal):
    ./bin/gatehouse-dev create-admin --email admin@example.com
  or register and log in:
    curl -s %s/api/auth/register -H 'Content-Type: application/json' \
      -d '{"email":"ada@example.com","password":"Lovelace#1815"}'
Press Ctrl-C to stop everything.
`, base, base)

	select {
	case <-ctx.Done():
		fmt.Fprintln(os.Stderr, "\nstopping...")
		return nil
	case c := <-exited:
		return fmt.Errorf("%s exited: %v", c.name, c.err)
	}
}

// siteURL is what a browser opens for a Caddyfile site address: a bare
// port is plain HTTP on localhost, a host name gets Caddy's automatic HTTPS.
// checkTLSMode refuses what the Caddyfile would accept but cannot serve:
// GATEHOUSE_TLS=internal on an address without a host name (the default
// :8080) turns on HTTPS with no name to issue a certificate for, so every
// handshake fails and Caddy says nothing at start.
func checkTLSMode(mode, addr string) error {
	switch mode {
	case "", "auto":
		return nil
	case "internal":
	default:
		return fmt.Errorf("GATEHOUSE_TLS: want auto or internal, got %q", mode)
	}
	host := addr
	if strings.HasPrefix(host, "http://") {
		return fmt.Errorf("GATEHOUSE_TLS=internal with GATEHOUSE_SITE_ADDRESS=%s: an http:// address has no TLS; drop the scheme or GATEHOUSE_TLS", addr)
	}
	host = strings.TrimPrefix(host, "https://")
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	if host == "" {
		return fmt.Errorf("GATEHOUSE_TLS=internal needs a host name in GATEHOUSE_SITE_ADDRESS (e.g. gatehouse.localhost:8443 or gatehouse.lan), not %q: there is no name to issue a certificate for", addr)
	}
	return nil
}

func siteURL(addr string) string {
	switch {
	case strings.HasPrefix(addr, ":"):
		return "http://localhost" + addr
	case strings.Contains(addr, "://"):
		return addr
	default:
		return "https://" + addr
	}
}

// errStopped is a Ctrl-C (or SIGTERM, SIGHUP) before the stack was up:
// what was asked for, not a failure.
var errStopped = errors.New("stopped during start")

func waitHealthy(ctx context.Context, url string, c *child) error {
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-c.done:
			return fmt.Errorf("%s exited during start: %v", c.name, c.err)
		case <-ctx.Done():
			return errStopped
		case <-time.After(200 * time.Millisecond):
		}
		resp, err := http.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
	}
	return errors.New(c.name + " did not become healthy within 60s")
}

// stopAll stops the children in reverse start order: SIGTERM, then SIGKILL
// after 10 seconds.
func stopAll(children []*child) {
	for i := len(children) - 1; i >= 0; i-- {
		c := children[i]
		_ = c.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-c.done:
		case <-time.After(10 * time.Second):
			_ = c.cmd.Process.Kill()
		}
	}
}
