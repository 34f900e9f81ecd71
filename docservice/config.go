package docservice

import (
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"strings"
)

// Config is docservice's configuration, read from the environment.
type Config struct {
	DatabaseURL  string // DATABASE_URL (required)
	Addr         string // DOCSERVICE_ADDR, default 127.0.0.1:8001
	DataDir      string // DATA_DIR, default ./.data
	StorageDir   string // STORAGE_DIR, default DATA_DIR/documents: the document tree
	WatchDir     string // WATCH_DIR, default DATA_DIR/watch: read-only input (ingest is a later issue)
	AppConfigDir string // APP_CONFIG_DIR, default DATA_DIR/config: doc-service.json lives here
}

// LoadConfig reads and validates the configuration; every message names the
// variable at fault, and all problems are reported at once.
func LoadConfig(getenv func(string) string) (*Config, error) {
	var errs []error
	bad := func(name, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", name, fmt.Sprintf(format, args...)))
	}
	get := func(name, def string) string {
		if v := strings.TrimSpace(getenv(name)); v != "" {
			return v
		}
		return def
	}
	c := &Config{
		DatabaseURL: get("DATABASE_URL", ""),
		Addr:        get("DOCSERVICE_ADDR", "127.0.0.1:8001"),
		DataDir:     get("DATA_DIR", "./.data"),
	}
	c.StorageDir = get("STORAGE_DIR", filepath.Join(c.DataDir, "documents"))
	c.WatchDir = get("WATCH_DIR", filepath.Join(c.DataDir, "watch"))
	c.AppConfigDir = get("APP_CONFIG_DIR", filepath.Join(c.DataDir, "config"))

	if c.DatabaseURL == "" {
		bad("DATABASE_URL", "is required (e.g. postgres://user:pass@127.0.0.1:5432/gatehouse); `make run` starts a private cluster and sets it")
	} else if !strings.HasPrefix(c.DatabaseURL, "postgres://") && !strings.HasPrefix(c.DatabaseURL, "postgresql://") {
		bad("DATABASE_URL", "must be a postgres:// URL")
	}
	if _, _, err := net.SplitHostPort(c.Addr); err != nil {
		bad("DOCSERVICE_ADDR", "must be host:port: %v", err)
	}
	// The watched folder is read-only input and must not overlap the tree
	// docservice writes: ingesting our own files would loop.
	if s, w := clean(c.StorageDir), clean(c.WatchDir); s == w || within(w, s) || within(s, w) {
		bad("WATCH_DIR", "%q must not be STORAGE_DIR (%q), inside it, or contain it", c.WatchDir, c.StorageDir)
	}
	return c, errors.Join(errs...)
}

func clean(p string) string {
	if abs, err := filepath.Abs(p); err == nil {
		return abs
	}
	return filepath.Clean(p)
}

// within reports whether p is strictly inside dir.
func within(p, dir string) bool {
	rel, err := filepath.Rel(dir, p)
	return err == nil && rel != "." && rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator))
}
