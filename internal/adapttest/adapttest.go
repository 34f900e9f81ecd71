// Package adapttest checks Caddyfile adapt fixtures for the Caddy modules'
// tests: files in the format of Caddy's own adapt tests (a Caddyfile, a
// line of ten dashes, then the expected JSON, or for files named err_*, a
// substring of the expected adapt error). It is caddytest.CompareAdapt
// without caddytest's import of every standard module, which makes a test
// package slow to build under -race. It is for tests only.
package adapttest

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig"
)

// Run checks every file matching glob; with update, it rewrites the JSON
// half of the fixtures that adapt without error.
func Run(t *testing.T, glob string, update bool) {
	t.Helper()
	files, err := filepath.Glob(glob)
	if err != nil || len(files) == 0 {
		t.Fatalf("no fixtures match %s: %v", glob, err)
	}
	adapter := caddyconfig.GetAdapter("caddyfile")
	if adapter == nil {
		t.Fatal("the caddyfile adapter is not registered: import caddyconfig/httpcaddyfile")
	}
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			data, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			caddyfileText, expected, ok := strings.Cut(string(data), "\n----------\n")
			if !ok {
				t.Fatal("no ---------- separator")
			}
			expected = strings.TrimSpace(expected)
			out, warnings, err := adapter.Adapt([]byte(strings.TrimSpace(caddyfileText)+"\n"), nil)
			for _, w := range warnings {
				t.Logf("warning: %s:%d: %s", w.Directive, w.Line, w.Message)
			}
			if strings.HasPrefix(filepath.Base(file), "err_") {
				if err == nil {
					t.Fatalf("adapted without error; want an error containing %q", expected)
				}
				if !strings.Contains(err.Error(), expected) {
					t.Fatalf("error %q does not contain %q", err, expected)
				}
				return
			}
			if err != nil {
				t.Fatalf("adapt: %v", err)
			}
			var pretty bytes.Buffer
			if err := json.Indent(&pretty, out, "", "\t"); err != nil {
				t.Fatal(err)
			}
			got := pretty.String()
			if update {
				if err := os.WriteFile(file, []byte(strings.TrimSpace(caddyfileText)+"\n----------\n"+got+"\n"), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			if got != expected {
				t.Fatalf("adapted JSON differs from the fixture (rerun with -update if intended)\n--- got\n%s\n--- want\n%s", got, expected)
			}
		})
	}
}
