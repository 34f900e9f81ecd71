package caddymodules_test

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
)

// A site without handle_errors: the edge's refusals still carry the JSON
// error shape ({"detail": ...}) and their headers, and a refused request
// reaches no upstream (answering the refusal ends the request).
func TestRefusalsWithoutHandleErrors(t *testing.T) {
	t.Parallel()
	authsvc := newUpstream(t, jwks(t, key(t, 0)))
	reports := newTestPlugin(t, "reports", pluginManifest("reports"))
	cfg := fmt.Sprintf(`{
	gatehouse_plugins {
		service reports %s
		interval 200ms
		timeout 1s
	}
}
:{$SITE_PORT} {
	handle /api/* {
		gatehouse_auth {
			jwks_url %s/.well-known/jwks.json
			issuer gatehouse
			audience gatehouse
		}
		gatehouse_plugin_gateway
		reverse_proxy %s
	}
	# Keys never load: the JWKS address refuses connections.
	handle /nokeys/* {
		gatehouse_auth {
			jwks_url http://127.0.0.1:%s/.well-known/jwks.json
			issuer gatehouse
			audience gatehouse
		}
		reverse_proxy %s
	}
}
`, reports.url(), authsvc.srv.URL, authsvc.addr(), freePort(t), authsvc.addr())
	e := startEdge(t, writeConfig(t, "", cfg), nil)
	admin, member := adminToken(t), memberToken(t, "other")
	eventually(t, "reports listed", func() (bool, string) {
		ids := e.pluginIDs(t, admin)
		return len(ids) == 1, fmt.Sprint(ids)
	})
	authsvc.take()

	check := func(name string, r reply, status int, detail string, header ...string) {
		t.Helper()
		if r.status != status || r.body != `{"detail":"`+detail+`"}`+"\n" || r.header.Get("Content-Type") != "application/json" {
			t.Errorf("%s: %d %q (Content-Type %q), want %d {\"detail\":%q}", name, r.status, r.body, r.header.Get("Content-Type"), status, detail)
		}
		for i := 0; i < len(header); i += 2 {
			if got := r.header.Get(header[i]); got != header[i+1] {
				t.Errorf("%s: %s %q, want %q", name, header[i], got, header[i+1])
			}
		}
	}
	const wwwAuth = `Bearer error="invalid_token"`
	check("no token", e.do(t, "GET", "/api/users/me", "", ""), 401, "Not authenticated", "WWW-Authenticate", wwwAuth)
	check("bad token", e.do(t, "GET", "/api/users/me", admin[:len(admin)-4]+"AAAA", ""), 401, "Could not validate credentials", "WWW-Authenticate", wwwAuth)
	r := e.do(t, "GET", "/nokeys/x", admin, "")
	check("no keys yet", r, 503, "Authentication is temporarily unavailable")
	if r.header.Get("Retry-After") == "" {
		t.Errorf("no keys yet: no Retry-After")
	}
	if got := authsvc.take(); len(got) != 0 {
		t.Errorf("refused requests reached authsvc: %+v", got)
	}

	// The plugin gateway's refusals.
	check("plugin route without the group", e.do(t, "GET", "/api/reports/x", member, ""), 403, "Not enough permissions")
	check("unknown plugin", e.do(t, "GET", "/api/plugins/nope/manifest", admin, ""), 404, "Not found")
	check("wrong method", e.do(t, "POST", "/api/services", admin, "{}"), 405, "Method not allowed", "Allow", "GET")
	check("wrong method on settings", e.do(t, "DELETE", "/api/plugins/reports/settings", admin, ""), 405, "Method not allowed", "Allow", "GET, PATCH")
	noneReached := func(step string) {
		t.Helper()
		for _, got := range reports.take() {
			if strings.HasPrefix(got.path, "/api/") || got.path == "/plugin/settings" {
				t.Errorf("%s: a refused request reached the plugin: %s %s", step, got.method, got.path)
			}
		}
	}
	noneReached("gateway refusals")
	reports.healthy.Store(false)
	eventually(t, "reports seen down", func() (bool, string) {
		r := e.do(t, "GET", "/api/reports/x", admin, "")
		return r.status == http.StatusServiceUnavailable, fmt.Sprint(r.status, r.body)
	})
	reports.take() // served while the edge still saw the plugin up
	r = e.do(t, "GET", "/api/reports/x", admin, "")
	check("plugin down", r, 503, "Plugin unavailable")
	if r.header.Get("Retry-After") == "" {
		t.Errorf("plugin down: no Retry-After")
	}
	check("plugin settings while down", e.do(t, "GET", "/api/plugins/reports/settings", admin, ""), 503, "Plugin unavailable")
	noneReached("plugin down")
	if got := authsvc.take(); len(got) != 0 {
		t.Errorf("refused requests reached authsvc: %+v", got)
	}
}
