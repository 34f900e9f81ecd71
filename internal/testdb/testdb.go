// Package testdb gives each test package its own PostgreSQL database on a
// real server: DATABASE_URL's server when it is set, otherwise the private
// cluster under .data/test-postgres at the repository root (started on first
// use and shared by the package binaries that `go test ./...` runs at once,
// and by other test runs: each binary marks it in use until it exits).
package testdb

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	"github.com/gatehouse/gatehouse/internal/pgcluster"
)

// DB is one test package's database.
type DB struct {
	URL      string // connection URL of the package's database
	adminURL string
	name     string
}

// New creates a fresh database named after prefix. Call Drop when done
// (from TestMain, after m.Run).
func New(prefix string) (*DB, error) {
	admin := os.Getenv("DATABASE_URL")
	if admin == "" {
		root, err := repoRoot()
		if err != nil {
			return nil, err
		}
		c, err := pgcluster.New(filepath.Join(root, ".data", "test-postgres"))
		if err != nil {
			return nil, err
		}
		c.Throwaway = true
		// Held until the test binary exits, so that another `make test`
		// finishing meanwhile (db-stop --if-unused) leaves the server up.
		if _, err := c.Use(); err != nil {
			return nil, err
		}
		if admin, err = c.Ensure("postgres"); err != nil {
			return nil, err
		}
	}
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	name := fmt.Sprintf("test_%s_%s", sanitize(prefix), hex.EncodeToString(b))
	if err := pgcluster.CreateDatabase(admin, name, false); err != nil {
		return nil, err
	}
	u, err := url.Parse(admin)
	if err != nil {
		return nil, fmt.Errorf("DATABASE_URL: %w", err)
	}
	u.Path = "/" + name
	return &DB{URL: u.String(), adminURL: admin, name: name}, nil
}

// Drop removes the database.
func (d *DB) Drop() error { return pgcluster.DropDatabase(d.adminURL, d.name) }

func sanitize(s string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(s) {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			b.WriteRune(r)
		} else {
			b.WriteByte('_')
		}
	}
	return b.String()
}

// repoRoot walks up from the working directory (a test runs in its
// package's directory) to the directory holding go.mod.
func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("go.mod not found above the working directory")
		}
		dir = parent
	}
}
