package envconfig

import (
	"strings"
	"testing"
)

func TestReader(t *testing.T) {
	env := map[string]string{
		"DATABASE_URL": "  mysql://x  ",
		"ADDR":         "no-port",
		"NAME":         "  value ",
		"BLANK":        "   ",
	}
	r := New(func(k string) string { return env[k] })
	if got := r.String("NAME", "def"); got != "value" {
		t.Errorf("String trims: %q", got)
	}
	if got := r.String("BLANK", "def"); got != "def" {
		t.Errorf("blank takes the default: %q", got)
	}
	r.DatabaseURL()
	r.Addr("ADDR", "127.0.0.1:1")
	if got := r.Addr("UNSET_ADDR", "127.0.0.1:8000"); got != "127.0.0.1:8000" {
		t.Errorf("Addr default %q", got)
	}
	err := r.Err()
	if err == nil {
		t.Fatal("no error for a bad DATABASE_URL and ADDR")
	}
	for _, want := range []string{"DATABASE_URL: must be a postgres:// URL", "ADDR: must be host:port"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
	if strings.Contains(err.Error(), "UNSET_ADDR") {
		t.Errorf("a valid default was reported: %v", err)
	}

	missing := New(func(string) string { return "" })
	if missing.DatabaseURL(); missing.Err() == nil || !strings.Contains(missing.Err().Error(), "DATABASE_URL: is required") {
		t.Errorf("missing DATABASE_URL: %v", missing.Err())
	}
	ok := New(func(k string) string { return map[string]string{"DATABASE_URL": "postgresql://u@h/db"}[k] })
	if ok.DatabaseURL(); ok.Err() != nil {
		t.Errorf("valid DATABASE_URL refused: %v", ok.Err())
	}
}
