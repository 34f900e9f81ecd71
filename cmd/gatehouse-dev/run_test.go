package main

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/internal/benchutil"
	"github.com/gatehouse/gatehouse/internal/testdb"
)

// stack is one `gatehouse-dev run` of the binaries built from this
// checkout, in a working directory of its own, on the test database.
type stack struct {
	cmd   *exec.Cmd
	ports []string // authsvc, docservice, the edge
	out   chan string
}

// buildStack builds the four binaries once per test and returns the
// directory holding them.
func buildStack(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("builds and runs the whole stack")
	}
	bin := t.TempDir()
	build := exec.Command("go", "build", "-o", bin+"/", "./cmd/gatehouse-dev", "./cmd/authsvc", "./cmd/docservice", "./cmd/caddy")
	build.Dir = filepath.Join("..", "..")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	return bin
}

func startStack(t *testing.T, bin, dir, dbURL string) *stack {
	t.Helper()
	ports, err := benchutil.FreePorts(4)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(filepath.Join(bin, "gatehouse-dev"), "run")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "DATABASE_URL="+dbURL, "DATA_DIR="+filepath.Join(dir, ".data"),
		"AUTHSVC_ADDR=127.0.0.1:"+ports[0], "DOCSERVICE_ADDR=127.0.0.1:"+ports[1],
		"GATEHOUSE_SITE_ADDRESS=:"+ports[2], "CADDY_ADMIN=127.0.0.1:"+ports[3], "GATEHOUSE_WEB_ROOT="+dir)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout = io.Discard
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	s := &stack{cmd: cmd, ports: ports[:3], out: make(chan string, 1000)}
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			select {
			case s.out <- sc.Text():
			default:
			}
		}
		close(s.out)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	return s
}

// waitFor reads the stack's log until a line contains want.
func (s *stack) waitFor(t *testing.T, want string) {
	t.Helper()
	deadline := time.After(90 * time.Second)
	var seen []string
	for {
		select {
		case line, ok := <-s.out:
			if !ok {
				t.Fatalf("gatehouse-dev ended before %q:\n%s", want, strings.Join(seen, "\n"))
			}
			seen = append(seen, line)
			if strings.Contains(line, want) {
				return
			}
		case <-deadline:
			t.Fatalf("no %q after 90 s:\n%s", want, strings.Join(seen, "\n"))
		}
	}
}

// waitFree waits until nothing listens on the stack's ports any more.
func (s *stack) waitFree(t *testing.T, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for _, p := range s.ports {
		for {
			c, err := net.DialTimeout("tcp", "127.0.0.1:"+p, time.Second)
			if err != nil {
				break
			}
			c.Close()
			if time.Now().After(deadline) {
				t.Fatalf("port %s still served %v after gatehouse-dev ended: a service was left running", p, within)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
}

// `make run` stops the whole stack however its terminal goes away: Ctrl-C,
// SIGHUP (the terminal closed) or even SIGKILL of gatehouse-dev itself
// (found in review: SIGHUP and SIGKILL left the services running, holding
// their ports). It refuses to start outside the repository's root, where
// the edge would have been left out in silence.
func TestRunStopsEverything(t *testing.T) {
	bin := buildStack(t)
	db, err := testdb.New("gatehousedev")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Drop() })
	caddyfile, err := os.ReadFile(filepath.Join("..", "..", "Caddyfile"))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "Caddyfile"), caddyfile, 0o644); err != nil {
		t.Fatal(err)
	}

	for _, sig := range []syscall.Signal{syscall.SIGINT, syscall.SIGHUP, syscall.SIGKILL} {
		t.Run(sig.String(), func(t *testing.T) {
			s := startStack(t, bin, dir, db.URL)
			s.waitFor(t, "Gatehouse is running")
			resp, err := http.Get("http://127.0.0.1:" + s.ports[2] + "/.well-known/jwks.json")
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("the edge answered %d", resp.StatusCode)
			}
			if err := s.cmd.Process.Signal(sig); err != nil {
				t.Fatal(err)
			}
			done := make(chan error, 1)
			go func() { done <- s.cmd.Wait() }()
			select {
			case err := <-done:
				if sig != syscall.SIGKILL && err != nil {
					t.Errorf("gatehouse-dev after %v: %v", sig, err)
				}
			case <-time.After(30 * time.Second):
				t.Fatalf("gatehouse-dev still running 30 s after %v", sig)
			}
			s.waitFree(t, 15*time.Second)
		})
	}

	// Ctrl-C before the stack is up is what was asked for: exit 0.
	t.Run("interrupt during start", func(t *testing.T) {
		s := startStack(t, bin, dir, db.URL)
		time.Sleep(100 * time.Millisecond) // authsvc takes longer to be healthy
		if err := s.cmd.Process.Signal(syscall.SIGINT); err != nil {
			t.Fatal(err)
		}
		s.waitFor(t, "stopp")
		if err := s.cmd.Wait(); err != nil {
			t.Errorf("gatehouse-dev interrupted during start: %v", err)
		}
		s.waitFree(t, 15*time.Second)
	})

	t.Run("outside the repository", func(t *testing.T) {
		s := startStack(t, bin, t.TempDir(), db.URL)
		s.waitFor(t, "no Caddyfile in")
		if err := s.cmd.Wait(); err == nil {
			t.Error("gatehouse-dev run without a Caddyfile exited 0")
		}
	})
}
