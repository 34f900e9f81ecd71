package gatehouseplugins

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig"
	_ "github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	_ "github.com/caddyserver/caddy/v2/modules/caddyhttp/headers"
	_ "github.com/caddyserver/caddy/v2/modules/caddyhttp/reverseproxy"

	_ "github.com/gatehouse/gatehouse/caddymodules/gatehouseauth"
)

var update = flag.Bool("update", false, "rewrite the JSON half of the adapt fixtures")

// TestCaddyfileAdapt checks testdata/caddyfile_adapt/*.caddyfiletest, in
// the format of Caddy's own adapt tests: a Caddyfile, a line of ten
// dashes, then either the expected JSON or a substring of the expected
// adapt error. It is caddytest.CompareAdapt without caddytest's import of
// every standard module, which would make this package slow to build
// under -race. Run with -update to rewrite the JSON of passing adapts.
func TestCaddyfileAdapt(t *testing.T) {
	files, err := filepath.Glob("testdata/caddyfile_adapt/*.caddyfiletest")
	if err != nil || len(files) == 0 {
		t.Fatalf("no fixtures: %v", err)
	}
	adapter := caddyconfig.GetAdapter("caddyfile")
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
			isErrorCase := strings.HasPrefix(filepath.Base(file), "err_")
			if isErrorCase {
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
			if *update {
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
