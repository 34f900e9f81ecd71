package gatehouseauth

import (
	"flag"
	"testing"

	_ "github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	_ "github.com/caddyserver/caddy/v2/modules/caddyhttp/headers"
	_ "github.com/caddyserver/caddy/v2/modules/caddyhttp/reverseproxy"

	"github.com/gatehouse/gatehouse/internal/adapttest"
)

var update = flag.Bool("update", false, "rewrite the JSON half of the adapt fixtures")

// TestCaddyfileAdapt checks testdata/caddyfile_adapt/*.caddyfiletest
// (format in internal/adapttest). Run with -update to rewrite the JSON of
// passing adapts.
func TestCaddyfileAdapt(t *testing.T) {
	adapttest.Run(t, "testdata/caddyfile_adapt/*.caddyfiletest", *update)
}
