// Package benchutil holds what the `make bench` programs (cmd/bench-*)
// share to set up their runs: free loopback addresses, waiting for a
// process to serve, and a fresh database. It is for benchmarks only.
package benchutil

import (
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"time"

	"github.com/gatehouse/gatehouse/internal/pgcluster"
)

// FreeAddr returns a 127.0.0.1:port that was free a moment ago.
func FreeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// FreePorts returns n distinct loopback ports that were free a moment ago.
// Each is held until all are picked: picked one after the other, the
// kernel may hand out the same port twice (a bench's Caddyfile then had
// two sites on one port and Caddy refused it).
func FreePorts(n int) ([]string, error) {
	ports := make([]string, 0, n)
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		defer ln.Close()
		_, port, err := net.SplitHostPort(ln.Addr().String())
		if err != nil {
			return nil, err
		}
		ports = append(ports, port)
	}
	return ports, nil
}

// WaitTCP waits until addr accepts connections.
func WaitTCP(addr string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			return c.Close()
		}
		if time.Now().After(deadline) {
			return err
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// WaitHTTP waits until a GET of u (with header, if any) answers 200.
func WaitHTTP(u string, header http.Header, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		req, err := http.NewRequest(http.MethodGet, u, nil)
		if err != nil {
			return err
		}
		for k, v := range header {
			req.Header[k] = v
		}
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("%s: status %d", u, resp.StatusCode)
		}
		if time.Now().After(deadline) {
			return err
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Database creates a fresh database named after prefix on DATABASE_URL's
// server, or on the private cluster under .data/bench-postgres (started
// if needed). cleanup drops it, and stops the cluster if this call started it.
func Database(prefix string) (dbURL string, cleanup func(), err error) {
	admin := os.Getenv("DATABASE_URL")
	stop := func() {}
	if admin == "" {
		c, err := pgcluster.New(filepath.Join(".data", "bench-postgres"))
		if err != nil {
			return "", nil, err
		}
		var started bool
		if admin, started, err = c.EnsureStarted("postgres"); err != nil {
			return "", nil, err
		}
		if started {
			stop = func() { _ = c.Stop() }
		}
	}
	name := fmt.Sprintf("%s_%d", prefix, time.Now().Unix())
	if err := pgcluster.CreateDatabase(admin, name, false); err != nil {
		stop()
		return "", nil, err
	}
	u, err := url.Parse(admin)
	if err != nil {
		stop()
		return "", nil, err
	}
	u.Path = "/" + name
	return u.String(), func() {
		_ = pgcluster.DropDatabase(admin, name)
		stop()
	}, nil
}
