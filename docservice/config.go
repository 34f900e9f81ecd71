package docservice

import (
	"path/filepath"
	"strings"

	"github.com/gatehouse/gatehouse/internal/envconfig"
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
	env := envconfig.New(getenv)
	c := &Config{
		DatabaseURL: env.DatabaseURL(),
		Addr:        env.Addr("DOCSERVICE_ADDR", "127.0.0.1:8001"),
		DataDir:     env.String("DATA_DIR", "./.data"),
	}
	c.StorageDir = env.String("STORAGE_DIR", filepath.Join(c.DataDir, "documents"))
	c.WatchDir = env.String("WATCH_DIR", filepath.Join(c.DataDir, "watch"))
	c.AppConfigDir = env.String("APP_CONFIG_DIR", filepath.Join(c.DataDir, "config"))

	// The watched folder is read-only input and must not overlap the tree
	// docservice writes: ingesting our own files would loop.
	if s, w := clean(c.StorageDir), clean(c.WatchDir); s == w || within(w, s) || within(s, w) {
		env.Bad("WATCH_DIR", "%q must not be STORAGE_DIR (%q), inside it, or contain it", c.WatchDir, c.StorageDir)
	}
	return c, env.Err()
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
