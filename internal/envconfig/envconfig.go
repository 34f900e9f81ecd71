// Package envconfig reads a service's configuration from the environment
// the same way in every service: values trimmed, defaults applied, and
// every problem collected with the name of its variable, so an operator
// sees all of them at once. The shared variables (DATABASE_URL, listen
// addresses) are checked here once.
package envconfig

import (
	"errors"
	"fmt"
	"net"
	"strings"
)

// Reader reads variables through getenv and collects their problems.
type Reader struct {
	getenv func(string) string
	errs   []error
}

// New reads through getenv (os.Getenv, or a map's lookup in tests).
func New(getenv func(string) string) *Reader { return &Reader{getenv: getenv} }

// String is the trimmed value of name, or def when unset or blank.
func (r *Reader) String(name, def string) string {
	if v := strings.TrimSpace(r.getenv(name)); v != "" {
		return v
	}
	return def
}

// Bad records a problem with variable name.
func (r *Reader) Bad(name, format string, args ...any) {
	r.errs = append(r.errs, fmt.Errorf("%s: %s", name, fmt.Sprintf(format, args...)))
}

// DatabaseURL is DATABASE_URL, which is required and must be a postgres URL.
func (r *Reader) DatabaseURL() string {
	u := r.String("DATABASE_URL", "")
	switch {
	case u == "":
		r.Bad("DATABASE_URL", "is required (e.g. postgres://user:pass@127.0.0.1:5432/gatehouse); `make run` starts a private cluster and sets it")
	case !strings.HasPrefix(u, "postgres://") && !strings.HasPrefix(u, "postgresql://"):
		r.Bad("DATABASE_URL", "must be a postgres:// URL")
	}
	return u
}

// Addr is a host:port listen address from name, def when unset.
func (r *Reader) Addr(name, def string) string {
	a := r.String(name, def)
	if _, _, err := net.SplitHostPort(a); err != nil {
		r.Bad(name, "must be host:port: %v", err)
	}
	return a
}

// Err joins every problem recorded so far (nil when there is none).
func (r *Reader) Err() error { return errors.Join(r.errs...) }
