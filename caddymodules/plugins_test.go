package caddymodules_test

// The plugin system end to end: the Caddy binary with the gatehouse_plugins
// app and gatehouse_plugin_gateway, in front of test plugins that speak the
// contract (docs/plugins.md) and record what reaches them.

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/caddymodules/gatehouseplugins"
)

// testPlugin is a feature service: /health, /plugin/manifest,
// /plugin/settings (merge patch; "greeting" at most 10 characters;
// "api_key" write-only), and anything else recorded and answered with
// "plugin <id> ok". It can be stopped and started again on its address.
type testPlugin struct {
	id          string
	addr        string
	manifest    atomic.Pointer[string]
	contentType atomic.Pointer[string]
	healthy     atomic.Bool
	checks      atomic.Int64 // GET /health
	// proxyConns counts the open connections that have carried a
	// request other than a check (GET /health, /plugin/manifest): the
	// gateway's proxy connections.
	proxyConns atomic.Int64
	// options go in the service's block of gatehouse_plugins, e.g.
	// "prefix /api/x" or "forward_credentials".
	options []string

	mu       sync.Mutex
	srv      *http.Server
	settings map[string]any
	requests []recorded
}

func newTestPlugin(t *testing.T, id string, manifest map[string]any) *testPlugin {
	p := &testPlugin{id: id, settings: map[string]any{"greeting": "hello"}}
	p.healthy.Store(true)
	p.setManifest(t, manifest)
	ct := "application/json"
	p.contentType.Store(&ct)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p.addr = ln.Addr().String()
	p.serve(ln)
	t.Cleanup(p.stop)
	return p
}

func (p *testPlugin) url() string { return "http://" + p.addr }

func (p *testPlugin) setManifest(t testing.TB, m map[string]any) {
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	p.manifest.Store(&s)
}

// proxiedConn marks a connection that carried a proxied request.
type proxiedConn struct{ proxied atomic.Bool }

type proxiedConnKey struct{}

func (p *testPlugin) serve(ln net.Listener) {
	conns := sync.Map{} // net.Conn → *proxiedConn
	srv := &http.Server{
		Handler: http.HandlerFunc(p.handle),
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			pc := &proxiedConn{}
			conns.Store(c, pc)
			return context.WithValue(ctx, proxiedConnKey{}, pc)
		},
		ConnState: func(c net.Conn, s http.ConnState) {
			if s == http.StateClosed || s == http.StateHijacked {
				if pc, ok := conns.LoadAndDelete(c); ok && pc.(*proxiedConn).proxied.Load() {
					p.proxyConns.Add(-1)
				}
			}
		},
	}
	p.mu.Lock()
	p.srv = srv
	p.mu.Unlock()
	go srv.Serve(ln)
}

func (p *testPlugin) stop() {
	p.mu.Lock()
	srv := p.srv
	p.mu.Unlock()
	if srv != nil {
		_ = srv.Close()
	}
}

// restart listens on the same address again.
func (p *testPlugin) restart(t *testing.T) {
	ln, err := net.Listen("tcp", p.addr)
	if err != nil {
		t.Skipf("port taken meanwhile: %v", err)
	}
	p.serve(ln)
}

func (p *testPlugin) healthChecks() int64 { return p.checks.Load() }

func (p *testPlugin) take() []recorded {
	p.mu.Lock()
	defer p.mu.Unlock()
	r := p.requests
	p.requests = nil
	return r
}

func (p *testPlugin) handle(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case "/health":
		p.checks.Add(1)
		if !p.healthy.Load() {
			http.Error(w, `{"detail":"down"}`, http.StatusServiceUnavailable)
			return
		}
		_, _ = io.WriteString(w, `{"status":"ok"}`)
		return
	case "/plugin/manifest":
		w.Header().Set("Content-Type", *p.contentType.Load())
		_, _ = io.WriteString(w, *p.manifest.Load())
		return
	}
	if pc, ok := r.Context().Value(proxiedConnKey{}).(*proxiedConn); ok && !pc.proxied.Swap(true) {
		p.proxyConns.Add(1)
	}
	body, _ := io.ReadAll(r.Body)
	p.mu.Lock()
	p.requests = append(p.requests, recorded{r.Method, r.URL.RequestURI(), r.Header.Clone(), nil})
	p.mu.Unlock()
	if r.URL.Path == "/plugin/settings" {
		p.handleSettings(w, r, body)
		return
	}
	if r.URL.Path == "/api/"+p.id+"/cookies" {
		// A hostile answer: sets the platform's token cookie (plain and
		// oddly spaced), one of its own, and HTML with no sniffing guard.
		w.Header().Add("Set-Cookie", "gh_token=forged; Path=/; HttpOnly")
		w.Header().Add("Set-Cookie", " gh_token =forged2; Path=/")
		w.Header().Add("Set-Cookie", "=gh_token=forged3; Path=/api") // nameless
		w.Header().Add("Set-Cookie", "theme=dark; Path=/api/"+p.id)
		w.Header().Set("Clear-Site-Data", `"cookies"`)
		w.Header().Set("X-Content-Type-Options", "sniff")
		w.Header().Set("Content-Type", "text/plain")
		_, _ = io.WriteString(w, "<script>alert(1)</script>")
		return
	}
	if r.URL.Path == "/api/"+p.id+"/untyped" {
		// No Content-Type at all, as a service that sets none sends it
		// (nil stops net/http guessing one here).
		w.Header()["Content-Type"] = nil
		_, _ = io.WriteString(w, "<html><script>alert(document.domain)</script>")
		return
	}
	if r.URL.Path == "/api/"+p.id+"/trailer" {
		w.Header().Set("Trailer", "Set-Cookie, X-Checksum")
		_, _ = io.WriteString(w, "ok")
		w.Header().Set("Set-Cookie", "gh_token=forged; Path=/")
		w.Header().Set("X-Checksum", "abc")
		w.Header().Set(http.TrailerPrefix+"Set-Cookie", "gh_token=forged2; Path=/")
		return
	}
	if r.URL.Path == "/api/"+p.id+"/stream" {
		// Two chunks a while apart: a buffering proxy would hold the
		// first until the second is written.
		_, _ = io.WriteString(w, "first\n")
		w.(http.Flusher).Flush()
		time.Sleep(700 * time.Millisecond)
		_, _ = io.WriteString(w, "second\n")
		return
	}
	fmt.Fprintf(w, "plugin %s ok", p.id)
}

func (p *testPlugin) handleSettings(w http.ResponseWriter, r *http.Request, body []byte) {
	w.Header().Set("Content-Type", "application/json")
	p.mu.Lock()
	defer p.mu.Unlock()
	if r.Method == http.MethodPatch {
		var patch map[string]any
		if err := json.Unmarshal(body, &patch); err != nil {
			w.WriteHeader(http.StatusBadRequest)
			_, _ = io.WriteString(w, `{"detail":"Invalid JSON"}`)
			return
		}
		if g, ok := patch["greeting"].(string); ok && len(g) > 10 {
			w.WriteHeader(http.StatusUnprocessableEntity)
			_, _ = io.WriteString(w, `{"detail":[{"loc":["greeting"],"msg":"at most 10 characters","type":"maxLength"}]}`)
			return
		}
		for k, v := range patch {
			if v == nil {
				delete(p.settings, k)
			} else {
				p.settings[k] = v
			}
		}
	}
	_, isSet := p.settings["api_key"]
	_ = json.NewEncoder(w).Encode(map[string]any{"greeting": p.settings["greeting"], "api_key": map[string]bool{"is_set": isSet}})
}

// pluginManifest is a valid manifest for id, with kv applied on top.
func pluginManifest(id string, kv ...any) map[string]any {
	m := map[string]any{
		"manifest_version": 1, "id": id, "name": "Plugin " + id, "version": "1.0.0", "icon": "puzzle",
		"access": map[string]any{"allow_superuser": true, "required_groups": []string{id + "-admin"}},
		"settings": map[string]any{"schema": map[string]any{
			"$schema": "http://json-schema.org/draft-07/schema#", "type": "object",
			"properties": map[string]any{
				"greeting": map[string]any{"type": "string", "maxLength": 10},
				"api_key":  map[string]any{"type": "string", "writeOnly": true},
			},
		}},
		"routes": []any{
			map[string]any{"prefix": "/api/" + id, "access": "plugin"},
			map[string]any{"prefix": "/api/" + id + "-public", "access": "authenticated"},
		},
	}
	for i := 0; i < len(kv); i += 2 {
		m[kv[i].(string)] = kv[i+1]
	}
	return m
}

// route is a manifest's routes: one prefix with its access rule, and kv
// (e.g. "forward_credentials", true) on top.
func route(prefix, access string, kv ...any) []any {
	r := map[string]any{"prefix": prefix, "access": access}
	for i := 0; i < len(kv); i += 2 {
		r[kv[i].(string)] = kv[i+1]
	}
	return []any{r}
}

// pluginEdgeConfig is a site like the repository's /api block: a fake
// authsvc behind gatehouse_auth and the gateway, and the given services.
func pluginEdgeConfig(authsvc *upstream, services ...*testPlugin) string {
	var svc strings.Builder
	for _, p := range services {
		fmt.Fprintf(&svc, "\t\tservice %s %s", p.id, p.url())
		if len(p.options) > 0 {
			fmt.Fprintf(&svc, " {\n\t\t\t%s\n\t\t}", strings.Join(p.options, "\n\t\t\t"))
		}
		svc.WriteString("\n")
	}
	return fmt.Sprintf(`{
	gatehouse_plugins {
%s		interval 200ms
		timeout 1s
	}
}
:{$SITE_PORT} {
	handle /api/* {
		gatehouse_auth {
			jwks_url %s/.well-known/jwks.json
			issuer gatehouse
			audience gatehouse
			cookie gh_token
			# The gateway decides, per manifest, whether a plugin gets it.
			forward_token
		}
		gatehouse_plugin_gateway {
			token_cookie gh_token
		}
		reverse_proxy %s
	}
	handle_errors 401 {
		header Content-Type application/json
		respond `+"`"+`{"detail":"{err.message}"}`+"`"+`
	}
	handle_errors {
		header Content-Type application/json
		respond `+"`"+`{"detail":"{err.status_text}","request_id":"{err.id}"}`+"`"+` {err.status_code}
	}
}
`, svc.String(), authsvc.srv.URL, authsvc.addr())
}

func writeConfig(t *testing.T, path, cfg string) string {
	if path == "" {
		path = filepath.Join(t.TempDir(), "Caddyfile")
	}
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// Tokens for the three kinds of caller.
func adminToken(t *testing.T) string {
	return signed(t, key(t, 0), hdr(t, key(t, 0)), with(claims(), "role", "admin", "groups", []string{}))
}

func memberToken(t *testing.T, groups ...string) string {
	return signed(t, key(t, 0), hdr(t, key(t, 0)), with(claims(), "role", "user", "groups", groups))
}

type reply struct {
	status int
	header http.Header
	body   string
	took   time.Duration
}

var pluginClient = &http.Client{Timeout: 20 * time.Second}

func (e *edge) do(t *testing.T, method, path, token, body string, headers ...string) reply {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, "http://"+e.addr+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Add(headers[i], headers[i+1])
	}
	start := time.Now()
	resp, err := pluginClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return reply{resp.StatusCode, resp.Header, string(b), time.Since(start)}
}

// eventually retries check every 50 ms for up to 10 s.
func eventually(t *testing.T, what string, check func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		ok, detail := check()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: never happened; last: %s", what, detail)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

type serviceEntry struct {
	ID            string   `json:"id"`
	Name          string   `json:"name"`
	Status        string   `json:"status"`
	Healthy       bool     `json:"healthy"`
	CheckedAt     *string  `json:"checked_at"`
	LatencyMS     *float64 `json:"latency_ms"`
	URL           string   `json:"url"`
	LastError     string   `json:"last_error"`
	ManifestError string   `json:"manifest_error"`
}

func (e *edge) services(t *testing.T, token string) map[string]serviceEntry {
	t.Helper()
	r := e.do(t, "GET", "/api/services", token, "")
	if r.status != 200 || r.header.Get("Content-Type") != "application/json" {
		t.Fatalf("/api/services: %d %q", r.status, r.body)
	}
	var list []serviceEntry
	if err := json.Unmarshal([]byte(r.body), &list); err != nil {
		t.Fatal(err)
	}
	out := map[string]serviceEntry{}
	for _, s := range list {
		out[s.ID] = s
	}
	return out
}

func (e *edge) pluginIDs(t *testing.T, token string) []string {
	t.Helper()
	r := e.do(t, "GET", "/api/plugins", token, "")
	if r.status != 200 {
		t.Fatalf("/api/plugins: %d %q", r.status, r.body)
	}
	var list []struct{ ID string }
	if err := json.Unmarshal([]byte(r.body), &list); err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, p := range list {
		ids = append(ids, p.ID)
	}
	return ids
}

func waitHealthy(t *testing.T, e *edge, ids ...string) {
	t.Helper()
	eventually(t, "services healthy", func() (bool, string) {
		s := e.services(t, adminToken(t))
		for _, id := range ids {
			if !s[id].Healthy {
				return false, fmt.Sprintf("%+v", s)
			}
		}
		return true, ""
	})
}

func TestPluginsAppearWhenHealthy(t *testing.T) {
	t.Parallel()
	authsvc := newUpstream(t, jwks(t, key(t, 0)))
	reports := newTestPlugin(t, "reports", pluginManifest("reports"))
	reports.healthy.Store(false)
	e := startEdge(t, writeConfig(t, "", pluginEdgeConfig(authsvc, reports)), nil)
	admin := adminToken(t)

	eventually(t, "reports checked", func() (bool, string) {
		s := e.services(t, admin)["reports"]
		return s.Status == "unhealthy", fmt.Sprintf("%+v", s)
	})
	s := e.services(t, admin)["reports"]
	if s.CheckedAt == nil || s.LatencyMS == nil || !strings.Contains(s.LastError, "status 503") || s.URL != reports.url() {
		t.Errorf("unhealthy entry for an admin: %+v", s)
	}
	if ids := e.pluginIDs(t, admin); len(ids) != 0 {
		t.Errorf("plugins before healthy: %v", ids)
	}
	// No manifest yet, no route: the request takes the site's fallback.
	if r := e.do(t, "GET", "/api/reports/x", admin, ""); r.body != "upstream ok" || len(reports.take()) != 0 {
		t.Errorf("route served before the manifest was accepted: %d %q", r.status, r.body)
	}

	reports.healthy.Store(true)
	eventually(t, "reports listed", func() (bool, string) {
		ids := e.pluginIDs(t, admin)
		return len(ids) == 1 && ids[0] == "reports", fmt.Sprint(ids)
	})
	// A user sees health, not the reasons or the private address.
	s = e.services(t, memberToken(t))["reports"]
	if !s.Healthy || s.Status != "healthy" || s.Name != "Plugin reports" || s.URL != "" || s.LastError != "" {
		t.Errorf("healthy entry for a user: %+v", s)
	}
	if r := e.do(t, "GET", "/api/services", "", ""); r.status != 401 || r.body != `{"detail":"Not authenticated"}` {
		t.Errorf("/api/services without a token: %d %q", r.status, r.body)
	}
}

func TestPluginsAccessAndRoutes(t *testing.T) {
	t.Parallel()
	authsvc := newUpstream(t, jwks(t, key(t, 0)))
	reports := newTestPlugin(t, "reports", pluginManifest("reports"))
	// wiki lets its route see the caller's credentials.
	wiki := newTestPlugin(t, "wiki", pluginManifest("wiki",
		"access", map[string]any{"allow_superuser": false, "required_groups": []string{"editors", "team a,b"}},
		"routes", route("/api/wiki", "authenticated", "forward_credentials", true)))
	wiki.options = []string{"forward_credentials"}
	e := startEdge(t, writeConfig(t, "", pluginEdgeConfig(authsvc, reports, wiki)), nil)
	waitHealthy(t, e, "reports", "wiki")
	eventually(t, "both manifests", func() (bool, string) {
		ids := e.pluginIDs(t, adminToken(t))
		return len(ids) == 1, fmt.Sprint(ids) // admin: reports only (wiki denies superusers)
	})

	admin, reporter, editor, nobody := adminToken(t), memberToken(t, "reports-admin"), memberToken(t, "team a,b"), memberToken(t, "other")
	cases := []struct {
		name, token string
		plugins     string // the ids /api/plugins lists, comma-separated
	}{
		{"admin", admin, "reports"},
		{"reports group", reporter, "reports"},
		{"wiki group with an encoded name", editor, "wiki"},
		{"no group", nobody, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := strings.Join(e.pluginIDs(t, tc.token), ","); got != tc.plugins {
				t.Fatalf("/api/plugins = %q, want %q", got, tc.plugins)
			}
			for _, id := range []string{"reports", "wiki", "nonexistent"} {
				want := 404
				if strings.Contains(","+tc.plugins+",", ","+id+",") {
					want = 200
				}
				r := e.do(t, "GET", "/api/plugins/"+id+"/manifest", tc.token, "")
				if r.status != want {
					t.Errorf("%s manifest: %d, want %d; %q", id, r.status, want, r.body)
				}
				if want == 200 && !strings.Contains(r.body, `"id":"`+id+`"`) {
					t.Errorf("%s manifest body %q", id, r.body)
				}
				if want == 404 && !strings.HasPrefix(r.body, `{"detail":"Not Found"`) {
					t.Errorf("%s 404 body %q", id, r.body)
				}
				r = e.do(t, "GET", "/api/plugins/"+id+"/settings", tc.token, "")
				if r.status != want {
					t.Errorf("%s settings: %d, want %d; %q", id, r.status, want, r.body)
				}
			}
			// reports' own prefix follows the plugin's access; its
			// -public prefix any signed-in user.
			want := 403
			if strings.Contains(tc.plugins, "reports") {
				want = 200
			}
			if r := e.do(t, "GET", "/api/reports/summary?year=2026", tc.token, ""); r.status != want {
				t.Errorf("/api/reports/summary: %d, want %d; %q", r.status, want, r.body)
			}
			if r := e.do(t, "GET", "/api/reports-public/x", tc.token, ""); r.status != 200 || r.body != "plugin reports ok" {
				t.Errorf("/api/reports-public/x: %d %q", r.status, r.body)
			}
			if r := e.do(t, "GET", "/api/wiki/page", tc.token, ""); r.status != 200 || r.body != "plugin wiki ok" {
				t.Errorf("/api/wiki/page: %d %q", r.status, r.body)
			}
		})
	}

	t.Run("what a plugin sees", func(t *testing.T) {
		reports.take()
		wiki.take()
		r := e.do(t, "POST", "/api/reports/run?x=1", reporter, `{"a":1}`,
			"X-User-Id", "forged", "X-User-Role", "admin", "Cookie", "gh_token=abc; theme=dark")
		if r.status != 200 {
			t.Fatalf("POST: %d %q", r.status, r.body)
		}
		got := reports.take()
		if len(got) != 1 || got[0].method != "POST" || got[0].path != "/api/reports/run?x=1" {
			t.Fatalf("reports saw %+v", got)
		}
		checkIdentity(t, got, map[string]string{"X-User-Id": testSubject, "X-User-Role": "user", "X-User-Groups": "reports-admin"})
		if a := got[0].header.Get("Authorization"); a != "" {
			t.Errorf("Authorization forwarded: %q", a)
		}
		if c := got[0].header.Get("Cookie"); c != "theme=dark" {
			t.Errorf("Cookie = %q, want only theme=dark", c)
		}
		if got[0].header.Get("X-Forwarded-For") == "" {
			t.Error("no X-Forwarded-For: not Caddy's proxy?")
		}
		// wiki opted in to credentials.
		e.do(t, "GET", "/api/wiki/page", editor, "", "Cookie", "gh_token=abc")
		got = wiki.take()
		if len(got) != 1 || got[0].header.Get("Authorization") != "Bearer "+editor || got[0].header.Get("Cookie") != "gh_token=abc" {
			t.Fatalf("wiki saw %+v", got)
		}
	})

	t.Run("no token", func(t *testing.T) {
		for _, p := range []string{"/api/plugins", "/api/reports/x", "/api/plugins/reports/manifest"} {
			if r := e.do(t, "GET", p, "", ""); r.status != 401 || r.body != `{"detail":"Not authenticated"}` {
				t.Errorf("%s: %d %q", p, r.status, r.body)
			}
		}
		if n := len(reports.take()); n != 0 {
			t.Errorf("%d unauthenticated requests reached reports", n)
		}
	})

	t.Run("other paths pass on", func(t *testing.T) {
		authsvc.take()
		e.do(t, "GET", "/api/reportsx", admin, "")
		e.do(t, "GET", "/api/users/me", admin, "")
		if got := authsvc.take(); len(got) != 2 {
			t.Errorf("authsvc saw %d requests, want 2", len(got))
		}
		if n := len(reports.take()); n != 0 {
			t.Errorf("reports saw %d", n)
		}
	})

	t.Run("methods", func(t *testing.T) {
		if r := e.do(t, "POST", "/api/plugins", admin, ""); r.status != 405 || r.header.Get("Allow") != "GET" {
			t.Errorf("POST /api/plugins: %d %v", r.status, r.header)
		}
		if r := e.do(t, "DELETE", "/api/plugins/reports/settings", admin, ""); r.status != 405 || r.header.Get("Allow") != "GET, PATCH" {
			t.Errorf("DELETE settings: %d %v", r.status, r.header)
		}
	})

	// A plugin shares the SPA's origin: it must not be able to sign the
	// browser in as someone else by setting the token cookie.
	t.Run("response guard", func(t *testing.T) {
		r := e.do(t, "GET", "/api/reports/cookies", admin, "")
		if r.status != 200 || r.body != "<script>alert(1)</script>" {
			t.Fatalf("%d %q", r.status, r.body)
		}
		if got := r.header.Values("Set-Cookie"); len(got) != 1 || !strings.HasPrefix(got[0], "theme=dark") {
			t.Errorf("Set-Cookie reaching the client: %q", got)
		}
		if got := r.header.Get("X-Content-Type-Options"); got != "nosniff" {
			t.Errorf("X-Content-Type-Options %q", got)
		}
		if got := r.header.Get("Clear-Site-Data"); got != "" {
			t.Errorf("Clear-Site-Data %q reached the client", got)
		}
		eventually(t, "the attempt logged", func() (bool, string) {
			return strings.Contains(e.logs.String(), "tried to send a cookie the platform owns"), ""
		})

		// Untyped HTML is not guessed into text/html at the edge.
		r = e.do(t, "GET", "/api/reports/untyped", admin, "")
		if ct := r.header.Get("Content-Type"); r.status != 200 || ct != "application/octet-stream" {
			t.Errorf("an untyped answer: %d, Content-Type %q", r.status, ct)
		}

		// Nor do cookies come as trailers; other trailers do.
		req, _ := http.NewRequest("GET", "http://"+e.addr+"/api/reports/trailer", nil)
		req.Header.Set("Authorization", "Bearer "+admin)
		resp, err := pluginClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.ReadAll(resp.Body)
		resp.Body.Close()
		if got := resp.Trailer.Values("Set-Cookie"); len(got) != 0 {
			t.Errorf("trailer Set-Cookie reached the client: %q", got)
		}
		if got := resp.Trailer.Get("X-Checksum"); got != "abc" {
			t.Errorf("trailer X-Checksum %q (trailers %v)", got, resp.Trailer)
		}
	})

	t.Run("streaming", func(t *testing.T) {
		req, _ := http.NewRequest("GET", "http://"+e.addr+"/api/reports/stream", nil)
		req.Header.Set("Authorization", "Bearer "+admin)
		start := time.Now()
		resp, err := pluginClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		buf := make([]byte, 6)
		if _, err := io.ReadFull(resp.Body, buf); err != nil || string(buf) != "first\n" {
			t.Fatalf("first chunk %q: %v", buf, err)
		}
		if took := time.Since(start); took > 500*time.Millisecond {
			t.Errorf("first chunk after %v: the proxy buffered", took)
		}
	})
}

func TestPluginsSettingsThroughEdge(t *testing.T) {
	t.Parallel()
	authsvc := newUpstream(t, jwks(t, key(t, 0)))
	reports := newTestPlugin(t, "reports", pluginManifest("reports"))
	e := startEdge(t, writeConfig(t, "", pluginEdgeConfig(authsvc, reports)), nil)
	waitHealthy(t, e, "reports")
	admin := adminToken(t)
	eventually(t, "reports listed", func() (bool, string) {
		ids := e.pluginIDs(t, admin)
		return len(ids) == 1, fmt.Sprint(ids)
	})

	r := e.do(t, "GET", "/api/plugins/reports/settings", admin, "")
	if r.status != 200 || strings.TrimSpace(r.body) != `{"api_key":{"is_set":false},"greeting":"hello"}` {
		t.Fatalf("GET: %d %q", r.status, r.body)
	}
	r = e.do(t, "PATCH", "/api/plugins/reports/settings", admin, `{"greeting":"hi","api_key":"s3cret"}`, "Content-Type", "application/merge-patch+json")
	if r.status != 200 || strings.TrimSpace(r.body) != `{"api_key":{"is_set":true},"greeting":"hi"}` {
		t.Fatalf("PATCH: %d %q", r.status, r.body)
	}
	got := reports.take()
	if len(got) != 2 || got[1].method != "PATCH" || got[1].path != "/plugin/settings" || got[1].header.Get("Authorization") != "" ||
		got[1].header.Get("Content-Type") != "application/merge-patch+json" {
		t.Fatalf("reports saw %+v", got)
	}
	checkIdentity(t, got, map[string]string{"X-User-Id": testSubject, "X-User-Role": "admin", "X-User-Groups": ""})

	// The service's validation error comes back as it sent it.
	r = e.do(t, "PATCH", "/api/plugins/reports/settings", admin, `{"greeting":"far too long a greeting"}`)
	if r.status != 422 || r.body != `{"detail":[{"loc":["greeting"],"msg":"at most 10 characters","type":"maxLength"}]}` {
		t.Fatalf("invalid PATCH: %d %q", r.status, r.body)
	}
	// A user outside the plugin's access cannot write, and the service never hears of it.
	if r := e.do(t, "PATCH", "/api/plugins/reports/settings", memberToken(t, "other"), `{"greeting":"x"}`); r.status != 404 {
		t.Fatalf("PATCH by a stranger: %d %q", r.status, r.body)
	}
	if n := len(reports.take()); n != 1 {
		t.Errorf("reports saw %d requests, want 1 (the invalid PATCH)", n)
	}
}

// Manifests that must be refused, each on its own service; all are
// reported to admins in /api/services and none gets a route.
func TestPluginsMaliciousManifests(t *testing.T) {
	t.Parallel()
	authsvc := newUpstream(t, jwks(t, key(t, 0)))
	good := newTestPlugin(t, "good", pluginManifest("good"))
	cases := []struct {
		plugin *testPlugin
		path   string // a path the manifest tried to claim
		want   string // in manifest_error
	}{
		{newTestPlugin(t, "reserved", pluginManifest("reserved", "routes", route("/api/users", "authenticated"))), "/api/users/me", "reserved prefix /api/users"},
		{newTestPlugin(t, "under-reserved", pluginManifest("under-reserved", "routes", route("/api/admin/x", "authenticated"))), "/api/admin/x", "reserved prefix /api/admin"},
		{newTestPlugin(t, "thief", pluginManifest("thief", "routes", route("/api/good/steal", "authenticated"))), "/api/good/steal", "route /api/good/steal is claimed by plugin good"},
		{newTestPlugin(t, "bad-schema", pluginManifest("bad-schema", "routes", route("/api/bad-schema", "authenticated"),
			"settings", map[string]any{"schema": map[string]any{"type": "object", "properties": map[string]any{"a": map[string]any{"type": "objekt"}}}})), "/api/bad-schema", "settings.schema does not compile"},
		{newTestPlugin(t, "huge", pluginManifest("huge", "routes", route("/api/huge", "authenticated"),
			"description", strings.Repeat("x", 300<<10))), "/api/huge", "manifest larger than 256 KiB"},
		{newTestPlugin(t, "html", pluginManifest("html", "routes", route("/api/html", "authenticated"))), "/api/html", `Content-Type is "text/html; charset=utf-8"`},
		{newTestPlugin(t, "future", pluginManifest("future", "manifest_version", 2, "routes", route("/api/future", "authenticated"))), "/api/future", "unsupported manifest_version 2"},
		{newTestPlugin(t, "impostor", pluginManifest("good", "routes", route("/api/impostor", "authenticated"))), "/api/impostor", `manifest id "good" is not the registered service id "impostor"`},
	}
	html := "text/html; charset=utf-8"
	cases[5].plugin.contentType.Store(&html)
	all := []*testPlugin{good}
	for _, tc := range cases {
		all = append(all, tc.plugin)
	}
	e := startEdge(t, writeConfig(t, "", pluginEdgeConfig(authsvc, all...)), nil)
	admin := adminToken(t)
	eventually(t, "all checked", func() (bool, string) {
		s := e.services(t, admin)
		for _, tc := range cases {
			if s[tc.plugin.id].ManifestError == "" {
				return false, fmt.Sprintf("%+v", s[tc.plugin.id])
			}
		}
		return s["good"].Healthy, ""
	})
	s := e.services(t, admin)
	for _, tc := range cases {
		t.Run(tc.plugin.id, func(t *testing.T) {
			got := s[tc.plugin.id]
			if !strings.Contains(got.ManifestError, tc.want) || !got.Healthy {
				t.Errorf("entry %+v, want manifest_error containing %q", got, tc.want)
			}
			e.do(t, "GET", tc.path, admin, "")
			if n := len(tc.plugin.take()); n != 0 {
				t.Errorf("%s reached the refused plugin", tc.path)
			}
			if r := e.do(t, "GET", "/api/plugins/"+tc.plugin.id+"/manifest", admin, ""); r.status != 404 {
				t.Errorf("manifest of a refused plugin: %d", r.status)
			}
		})
	}
	if ids := e.pluginIDs(t, admin); strings.Join(ids, ",") != "good" {
		t.Errorf("/api/plugins = %v, want only good", ids)
	}
	if r := e.do(t, "GET", "/api/good/steal", admin, ""); r.body != "plugin good ok" {
		t.Errorf("good lost its prefix: %q", r.body)
	}
}

// The operator pins /api/docs to docs. While docs is still starting, a
// registered squatter (listed first, even allowed credentials) declares
// /api/docs with forward_credentials: it is refused, a user's request with
// a bearer token never reaches it, and docs gets the prefix once it answers.
func TestPluginsPinnedPrefixCannotBeSquatted(t *testing.T) {
	t.Parallel()
	authsvc := newUpstream(t, jwks(t, key(t, 0)))
	squatter := newTestPlugin(t, "squatter", pluginManifest("squatter",
		"routes", route("/api/docs", "authenticated", "forward_credentials", true)))
	squatter.options = []string{"forward_credentials"}
	docs := newTestPlugin(t, "docs", pluginManifest("docs", "routes", route("/api/docs", "authenticated")))
	docs.options = []string{"prefix /api/docs"}
	docs.healthy.Store(false)
	e := startEdge(t, writeConfig(t, "", pluginEdgeConfig(authsvc, squatter, docs)), nil)
	user := memberToken(t)
	if got := refusedManifest(t, e, "squatter"); got != "route /api/docs overlaps /api/docs, which the edge configuration gives plugin docs" {
		t.Errorf("squatter's manifest_error = %q", got)
	}
	e.do(t, "GET", "/api/docs/1", user, "")
	if n := len(squatter.take()); n != 0 {
		t.Fatalf("the squatter got %d requests for /api/docs", n)
	}

	docs.healthy.Store(true)
	eventually(t, "docs routed", func() (bool, string) {
		r := e.do(t, "GET", "/api/docs/1", user, "")
		return r.status == 200 && r.body == "plugin docs ok", fmt.Sprint(r.status, r.body)
	})
	for _, r := range docs.take() {
		if a := r.header.Get("Authorization"); a != "" {
			t.Errorf("docs got Authorization %q", a)
		}
	}
	if n := len(squatter.take()); n != 0 {
		t.Errorf("the squatter got %d requests", n)
	}
}

// A manifest route asking for forward_credentials, from a service the
// operator did not allow it: the manifest is refused, and no token leaves.
func TestPluginsForwardCredentialsNeedConsent(t *testing.T) {
	t.Parallel()
	authsvc := newUpstream(t, jwks(t, key(t, 0)))
	wiki := newTestPlugin(t, "wiki", pluginManifest("wiki",
		"routes", route("/api/wiki", "authenticated", "forward_credentials", true)))
	e := startEdge(t, writeConfig(t, "", pluginEdgeConfig(authsvc, wiki)), nil)
	if got := refusedManifest(t, e, "wiki"); got != "route /api/wiki asks for forward_credentials, which the edge configuration does not allow wiki (an operator who agrees adds forward_credentials to its service block)" {
		t.Errorf("manifest_error = %q", got)
	}
	e.do(t, "GET", "/api/wiki/page", memberToken(t), "")
	if n := len(wiki.take()); n != 0 {
		t.Errorf("wiki got %d requests", n)
	}
}

// refusedManifest waits until service id is healthy with its manifest
// refused, and returns the reason admins see.
func refusedManifest(t *testing.T, e *edge, id string) string {
	t.Helper()
	var reason string
	eventually(t, id+"'s manifest refused", func() (bool, string) {
		s := e.services(t, adminToken(t))[id]
		reason = s.ManifestError
		return s.Healthy && reason != "", fmt.Sprintf("%+v", s)
	})
	return reason
}

func TestPluginsDownAndBack(t *testing.T) {
	t.Parallel()
	authsvc := newUpstream(t, jwks(t, key(t, 0)))
	reports := newTestPlugin(t, "reports", pluginManifest("reports"))
	e := startEdge(t, writeConfig(t, "", pluginEdgeConfig(authsvc, reports)), nil)
	admin := adminToken(t)
	eventually(t, "route up", func() (bool, string) {
		r := e.do(t, "GET", "/api/reports/x", admin, "")
		return r.status == 200, fmt.Sprint(r.status, r.body)
	})

	reports.stop()
	eventually(t, "listed unhealthy", func() (bool, string) {
		s := e.services(t, admin)["reports"]
		return !s.Healthy && s.Status == "unhealthy", fmt.Sprintf("%+v", s)
	})
	r := e.do(t, "GET", "/api/reports/x", admin, "")
	if r.status != 503 || r.header.Get("Retry-After") == "" || !strings.HasPrefix(r.body, `{"detail":"Service Unavailable"`) {
		t.Errorf("route of a down service: %d %v %q", r.status, r.header, r.body)
	}
	if r.took > 200*time.Millisecond {
		t.Errorf("503 took %v", r.took)
	}
	if r := e.do(t, "GET", "/api/plugins/reports/settings", admin, ""); r.status != 503 {
		t.Errorf("settings of a down service: %d", r.status)
	}
	// The manifest stays, so the UI can show the plugin as unavailable.
	r = e.do(t, "GET", "/api/plugins", admin, "")
	if !strings.Contains(r.body, `"id":"reports"`) || !strings.Contains(r.body, `"healthy":false`) {
		t.Errorf("/api/plugins while down: %q", r.body)
	}

	reports.restart(t)
	eventually(t, "route back", func() (bool, string) {
		r := e.do(t, "GET", "/api/reports/x", admin, "")
		return r.status == 200 && r.body == "plugin reports ok", fmt.Sprint(r.status, r.body)
	})
}

// A second plugin added by `caddy reload` appears without a restart; one
// removed stops being checked.
func TestPluginsReload(t *testing.T) {
	t.Parallel()
	authsvc := newUpstream(t, jwks(t, key(t, 0)))
	first := newTestPlugin(t, "first", pluginManifest("first"))
	second := newTestPlugin(t, "second", pluginManifest("second"))
	cfg := writeConfig(t, "", pluginEdgeConfig(authsvc, first))
	e := startEdge(t, cfg, nil)
	admin := adminToken(t)
	eventually(t, "first listed", func() (bool, string) {
		ids := e.pluginIDs(t, admin)
		return strings.Join(ids, ",") == "first", fmt.Sprint(ids)
	})

	reload := func(services ...*testPlugin) {
		t.Helper()
		writeConfig(t, cfg, pluginEdgeConfig(authsvc, services...))
		cmd := exec.Command(caddyBin, "reload", "--config", cfg, "--adapter", "caddyfile", "--address", e.admin)
		cmd.Env = append(os.Environ(), "SITE_PORT="+strings.TrimPrefix(e.addr, "127.0.0.1:"))
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("caddy reload: %v\n%s", err, out)
		}
	}

	// A proxied request leaves an idle connection to first.
	if r := e.do(t, "GET", "/api/first/x", admin, ""); r.body != "plugin first ok" {
		t.Fatalf("first's route: %d %q", r.status, r.body)
	}
	if n := first.proxyConns.Load(); n != 1 {
		t.Fatalf("first has %d proxy connections, want 1", n)
	}

	reload(first, second)
	eventually(t, "second added", func() (bool, string) {
		ids := e.pluginIDs(t, admin)
		return strings.Join(ids, ",") == "first,second", fmt.Sprint(ids)
	})
	if r := e.do(t, "GET", "/api/second/x", admin, ""); r.body != "plugin second ok" {
		t.Errorf("second's route: %d %q", r.status, r.body)
	}

	// Removing first: it disappears, its route with it, and no loop
	// (the old app's included) checks it any more.
	reload(second)
	eventually(t, "first removed", func() (bool, string) {
		ids := e.pluginIDs(t, admin)
		return strings.Join(ids, ",") == "second", fmt.Sprint(ids)
	})
	first.take()
	if r := e.do(t, "GET", "/api/first/x", admin, ""); r.body != "upstream ok" || len(first.take()) != 0 {
		t.Errorf("first's route after removal: %d %q", r.status, r.body)
	}
	before := first.healthChecks()
	time.Sleep(600 * time.Millisecond)
	if after := first.healthChecks(); after != before {
		t.Errorf("first still checked after the reload: %d → %d", before, after)
	}
	// Nor does the old gateway keep its proxy connections to first open
	// (idle ones would otherwise linger for minutes after each reload).
	eventually(t, "first's proxy connections closed", func() (bool, string) {
		n := first.proxyConns.Load()
		return n == 0, fmt.Sprint(n, " open")
	})
}

// The gateway trusts only gatehouse_auth's verified identity: placed
// without it, it refuses everything it would serve, forged headers or not.
func TestPluginsGatewayWithoutAuth(t *testing.T) {
	t.Parallel()
	reports := newTestPlugin(t, "reports", pluginManifest("reports",
		"routes", route("/api/reports", "authenticated")))
	cfg := fmt.Sprintf(`{
	gatehouse_plugins {
		service reports %s
		interval 200ms
	}
}
:{$SITE_PORT} {
	gatehouse_plugin_gateway
	respond "fallback"
}
`, reports.url())
	e := startEdge(t, writeConfig(t, "", cfg), nil)
	// Wait for the first check through the only observable: time.
	eventually(t, "checked", func() (bool, string) { return reports.healthChecks() > 0, "" })
	time.Sleep(100 * time.Millisecond)
	for _, p := range []string{"/api/services", "/api/plugins", "/api/plugins/reports/manifest", "/api/reports/x"} {
		r := e.do(t, "GET", p, "", "", "X-User-Id", testSubject, "X-User-Role", "admin", "X-User-Groups", "reports-admin")
		if r.status != 401 || r.header.Get("WWW-Authenticate") == "" {
			t.Errorf("%s: %d %q", p, r.status, r.body)
		}
	}
	if n := len(reports.take()); n != 0 {
		t.Errorf("%d requests reached the plugin", n)
	}
}

// Spellings of a path that could reach a plugin other than the one the
// edge matched, or skip its access rule: each is refused (400) or reaches
// only what its canonical form allows.
func TestPluginsPathCanonicalisation(t *testing.T) {
	t.Parallel()
	authsvc := newUpstream(t, jwks(t, key(t, 0)))
	open := newTestPlugin(t, "open", pluginManifest("open",
		"routes", route("/api/open", "authenticated")))
	vault := newTestPlugin(t, "vault", pluginManifest("vault",
		"access", map[string]any{"required_groups": []string{"vault-admin"}},
		"routes", route("/api/vault", "plugin")))
	e := startEdge(t, writeConfig(t, "", pluginEdgeConfig(authsvc, open, vault)), nil)
	user := memberToken(t, "staff")
	waitHealthy(t, e, "open", "vault")
	eventually(t, "routes up", func() (bool, string) {
		r := e.do(t, "GET", "/api/open/x", user, "")
		return r.status == 200, fmt.Sprint(r.status)
	})
	if r := e.do(t, "GET", "/api/vault/secrets", user, ""); r.status != 403 {
		t.Fatalf("vault for a stranger: %d", r.status)
	}

	for _, p := range []string{
		"/api/open/../vault/secrets",
		"/api/open/%2e%2e/vault/secrets",
		"/api/open/%2E%2E/vault/secrets",
		"/api/open/%252e%252e/vault/secrets",
		"/api/open/..%2fvault%2fsecrets",
		"/api/open/..%2Fvault/secrets",
		"/api/open/..%252fvault/secrets",
		"/api/open/..%5cvault/secrets",
		"/api/open/..\\vault/secrets",
		"/api/open//../vault/secrets",
		"/api/open/./../vault/secrets",
		"//api/vault/secrets",
		"/api/./vault/secrets",
		"/api/x/../vault/secrets",
		"/api/auth/../vault/secrets",
		"/api/vault%2fsecrets",
		"/api/open%2f..%2fvault/secrets",
		"/api/open/%00/../vault/secrets",
	} {
		t.Run(p, func(t *testing.T) {
			open.take()
			vault.take()
			authsvc.take()
			resp := e.raw(t, get(p, bearer(user)))
			if n := len(vault.take()); n != 0 {
				t.Fatalf("reached vault (status %d)", resp.status)
			}
			if resp.status != 400 {
				t.Errorf("status %d, want 400; body %q", resp.status, resp.body)
			} else if !strings.HasPrefix(resp.body, `{"detail":"Bad Request"`) {
				t.Errorf("body %q", resp.body)
			}
			if n := len(open.take()); n != 0 {
				t.Errorf("reached open with an odd spelling")
			}
		})
	}
	// Upper case is another path, not vault's: it passes to the site's
	// fallback (authsvc here), never to vault.
	resp := e.raw(t, get("/api/VAULT/secrets", bearer(user)))
	if n := len(vault.take()); n != 0 || resp.status != 200 {
		t.Errorf("/api/VAULT: status %d, vault saw %d", resp.status, n)
	}
}

// docserviceManifest is docservice's manifest as docservice/server.go
// builds it (settings schema abridged).
var docserviceManifest = []byte(`{
	"manifest_version": 1, "id": "doc-service", "name": "Documents", "version": "1.0.0",
	"description": "Upload, watch and organise PDF documents", "icon": "file-text",
	"access": {"allow_superuser": true, "required_groups": ["doc-service-admin"]},
	"settings": {"schema": {"type": "object", "properties": {"max_pdf_size_mb": {"type": "integer", "minimum": 1}}}, "ui_schema": {}},
	"routes": [{"prefix": "/api/documents", "access": "authenticated"}]
}`)

// The repository's Caddyfile registers docservice as a plugin: it is listed,
// its settings are reachable through the edge, and /api/documents goes
// through the manifest route (which drops the client's Authorization) while
// the undeclared /api/settings/documents/* keeps its static route.
func TestPluginsRepoCaddyfile(t *testing.T) {
	e, authsvc, docservice := repoEdge(t)
	admin := adminToken(t)
	eventually(t, "doc-service listed", func() (bool, string) {
		ids := e.pluginIDs(t, admin)
		return strings.Join(ids, ",") == "doc-service", fmt.Sprint(ids)
	})
	s := e.services(t, admin)["doc-service"]
	if !s.Healthy || s.Name != "Documents" || s.ManifestError != "" {
		t.Fatalf("doc-service entry: %+v", s)
	}
	if ids := e.pluginIDs(t, memberToken(t, "staff")); len(ids) != 0 {
		t.Errorf("a user outside doc-service-admin sees %v", ids)
	}
	if ids := e.pluginIDs(t, memberToken(t, "doc-service-admin")); strings.Join(ids, ",") != "doc-service" {
		t.Errorf("a doc-service-admin sees %v", ids)
	}

	docservice.take()
	user := memberToken(t, "staff")
	if r := e.do(t, "GET", "/api/documents/7", user, ""); r.status != 200 {
		t.Fatalf("/api/documents/7: %d %q", r.status, r.body)
	}
	got := docservice.take()
	if len(got) != 1 || got[0].path != "/api/documents/7" || got[0].header.Get("Authorization") != "" {
		t.Fatalf("documents route (want the manifest route, no Authorization): %+v", got)
	}
	checkIdentity(t, got, map[string]string{"X-User-Id": testSubject, "X-User-Role": "user", "X-User-Groups": "staff"})

	e.do(t, "GET", "/api/settings/documents/limits", user, "", "Cookie", "gh_token="+user+"; theme=dark")
	if got := docservice.take(); len(got) != 1 || got[0].path != "/api/settings/documents/limits" ||
		got[0].header.Get("Authorization") != "" || got[0].header.Get("Cookie") != "" {
		t.Errorf("limits route (want no Authorization, no Cookie): %+v", got)
	}
	e.do(t, "GET", "/api/plugins/doc-service/settings", admin, "")
	if got := docservice.take(); len(got) != 1 || got[0].path != "/plugin/settings" {
		t.Errorf("settings route: %+v", got)
	}
	if n := len(authsvc.take()); n != 0 {
		t.Errorf("authsvc saw %d plugin requests", n)
	}
}

func TestCaddyBinaryListsPluginModules(t *testing.T) {
	out, err := exec.Command(caddyBin, "list-modules").Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range []string{"gatehouse_plugins", "http.handlers.gatehouse_plugin_gateway"} {
		if !strings.Contains(string(out), "\n"+m+"\n") {
			t.Errorf("%s not listed", m)
		}
	}
}

// A route with forward_credentials behind a gatehouse_auth without
// forward_token: the token was consumed at the edge, so the plugin gets
// none, and the operator is told once in the log.
func TestPluginsForwardCredentialsNeedsForwardToken(t *testing.T) {
	t.Parallel()
	authsvc := newUpstream(t, jwks(t, key(t, 0)))
	wiki := newTestPlugin(t, "wiki", pluginManifest("wiki",
		"access", map[string]any{"allow_superuser": false, "required_groups": []string{"editors"}},
		"routes", route("/api/wiki", "authenticated", "forward_credentials", true)))
	wiki.options = []string{"forward_credentials"}
	cfg := pluginEdgeConfig(authsvc, wiki)
	if !strings.Contains(cfg, "\t\t\tforward_token\n") {
		t.Fatal("pluginEdgeConfig no longer sets forward_token; update this test")
	}
	cfg = strings.Replace(cfg, "\t\t\tforward_token\n", "", 1)
	e := startEdge(t, writeConfig(t, "", cfg), nil)
	waitHealthy(t, e, "wiki")
	editor := memberToken(t, "editors")
	eventually(t, "wiki route", func() (bool, string) {
		r := e.do(t, "GET", "/api/wiki/page", editor, "")
		return r.status == 200, fmt.Sprintf("%d %q", r.status, r.body)
	})
	e.do(t, "GET", "/api/wiki/other", editor, "")
	got := wiki.take()
	if len(got) < 2 {
		t.Fatalf("wiki saw %d requests", len(got))
	}
	for _, r := range got {
		if a := r.header.Get("Authorization"); a != "" {
			t.Errorf("wiki got Authorization %q", a)
		}
	}
	if n := strings.Count(e.logs.String(), "set forward_token on it"); n != 1 {
		t.Errorf("misconfiguration warning logged %d times, want once", n)
	}
}

// A gateway not told the token cookie's name still drops the cookie
// gatehouse_auth reads tokens from, from plugin routes and the settings
// proxy, and from what a plugin answers (found in review: with gatehouse_auth's
// cookie option and forward_token, a plugin without forward_credentials got
// the user's token cookie, because only the gateway's own token_cookie
// counted).
func TestPluginsAuthCookieDroppedWithoutGatewayOption(t *testing.T) {
	t.Parallel()
	authsvc := newUpstream(t, jwks(t, key(t, 0)))
	reports := newTestPlugin(t, "reports", pluginManifest("reports",
		"access", map[string]any{"allow_superuser": true, "required_groups": []string{"reports-admin"}},
		"settings", map[string]any{"schema": map[string]any{"type": "object"}},
		"routes", route("/api/reports", "authenticated")))
	cfg := pluginEdgeConfig(authsvc, reports)
	const opt = "\t\tgatehouse_plugin_gateway {\n\t\t\ttoken_cookie gh_token\n\t\t}\n"
	if !strings.Contains(cfg, opt) {
		t.Fatal("pluginEdgeConfig no longer sets token_cookie; update this test")
	}
	cfg = strings.Replace(cfg, opt, "\t\tgatehouse_plugin_gateway\n", 1)
	e := startEdge(t, writeConfig(t, "", cfg), nil)
	waitHealthy(t, e, "reports")
	user := memberToken(t, "reports-admin")
	cookieHeader := "theme=dark; gh_token=" + user + "; lang=en"

	eventually(t, "reports route", func() (bool, string) {
		r := e.do(t, "GET", "/api/reports/x", "", "", "Cookie", cookieHeader)
		return r.status == 200, fmt.Sprintf("%d %q", r.status, r.body)
	})
	reports.take()
	for _, p := range []string{"/api/reports/run", "/api/plugins/reports/settings"} {
		r := e.do(t, "GET", p, "", "", "Cookie", cookieHeader)
		if r.status != 200 {
			t.Fatalf("%s with the token in its cookie: %d %q", p, r.status, r.body)
		}
		got := reports.take()
		if len(got) != 1 {
			t.Fatalf("%s: reports saw %d requests", p, len(got))
		}
		if c := got[0].header.Get("Cookie"); c != "theme=dark; lang=en" {
			t.Errorf("%s: Cookie reaching the plugin = %q, want the other cookies only", p, c)
		}
		checkIdentity(t, got, map[string]string{"X-User-Id": testSubject, "X-User-Role": "user", "X-User-Groups": "reports-admin"})
	}

	r := e.do(t, "GET", "/api/reports/cookies", "", "", "Cookie", cookieHeader)
	if r.status != 200 {
		t.Fatalf("/api/reports/cookies: %d %q", r.status, r.body)
	}
	if got := r.header.Values("Set-Cookie"); len(got) != 1 || got[0] != "theme=dark; Path=/api/reports" {
		t.Errorf("Set-Cookie reaching the client: %q, want the plugin's own cookie only", got)
	}
}

// A prefix pinned to a service the edge has no manifest for (it never
// answered) is answered 503 with Retry-After by the gateway, not passed to
// the next handler (found in review: authsvc's 404, with the user's
// token, came back for a plugin not yet started). When the service starts,
// the next request finds it: the gateway checks it on demand rather than
// waiting for the next round (the interval here is a minute).
func TestPluginsPinnedPrefixBeforeTheServiceAnswers(t *testing.T) {
	t.Parallel()
	authsvc := newUpstream(t, jwks(t, key(t, 0)))
	notes := newTestPlugin(t, "notes", pluginManifest("notes", "routes", route("/api/notes", "authenticated")))
	notes.options = []string{"prefix /api/notes"}
	notes.stop()
	cfg := strings.Replace(pluginEdgeConfig(authsvc, notes), "interval 200ms", "interval 1m", 1)
	e := startEdge(t, writeConfig(t, "", cfg), nil)
	user := memberToken(t, "staff")
	authsvc.take()

	r := e.do(t, "GET", "/api/notes/x", user, "")
	if r.status != 503 || r.header.Get("Retry-After") == "" || !strings.HasPrefix(r.body, `{"detail":"Service Unavailable"`) {
		t.Fatalf("pinned prefix, service never seen: %d %v %q", r.status, r.header, r.body)
	}
	if got := authsvc.take(); len(got) != 0 {
		t.Fatalf("authsvc got the plugin's request: %+v", got)
	}

	notes.restart(t)
	time.Sleep(gatehouseplugins.MinRecheckGap) // past the gap since the last check on demand
	start := time.Now()
	r = e.do(t, "GET", "/api/notes/x", user, "")
	if r.status != 200 || r.body != "plugin notes ok" {
		t.Fatalf("pinned prefix once the service answers: %d %q", r.status, r.body)
	}
	t.Logf("served %v after the service started", time.Since(start).Round(time.Millisecond))
	if got := authsvc.take(); len(got) != 0 {
		t.Fatalf("authsvc got the plugin's request: %+v", got)
	}
}

// notesBetweenRounds is an edge whose rounds of checks are a minute apart,
// with a plugin "notes" routing /api/notes for any signed-in user, up and
// served, and a user's token.
func notesBetweenRounds(t *testing.T) (*edge, *testPlugin, string) {
	authsvc := newUpstream(t, jwks(t, key(t, 0)))
	notes := newTestPlugin(t, "notes", pluginManifest("notes", "routes", route("/api/notes", "authenticated")))
	cfg := strings.Replace(pluginEdgeConfig(authsvc, notes), "interval 200ms", "interval 1m", 1)
	e := startEdge(t, writeConfig(t, "", cfg), nil)
	user := memberToken(t, "staff")
	eventually(t, "route up", func() (bool, string) {
		r := e.do(t, "GET", "/api/notes/x", user, "")
		return r.status == 200, fmt.Sprint(r.status, r.body)
	})
	return e, notes, user
}

// A service that goes down and comes back between two rounds (a minute
// apart here): requests get 502 or 503 with Retry-After while it is down,
// and it is served again at the first request after it is back.
func TestPluginsBackBetweenRounds(t *testing.T) {
	t.Parallel()
	e, notes, user := notesBetweenRounds(t)

	notes.stop()
	// The first request after the stop may find the service gone while
	// the edge still thought it up (502); it has the service checked.
	if r := e.do(t, "GET", "/api/notes/x", user, ""); r.status != 502 && r.status != 503 {
		t.Fatalf("right after the service stopped: %d %q", r.status, r.body)
	}
	eventually(t, "503 with Retry-After", func() (bool, string) {
		r := e.do(t, "GET", "/api/notes/x", user, "")
		return r.status == 503 && r.header.Get("Retry-After") != "", fmt.Sprint(r.status, r.header, r.body)
	})

	notes.restart(t)
	time.Sleep(gatehouseplugins.MinRecheckGap)
	if r := e.do(t, "GET", "/api/notes/x", user, ""); r.status != 200 || r.body != "plugin notes ok" {
		t.Fatalf("first request after the service is back: %d %q", r.status, r.body)
	}
}

// The repository's Caddyfile before docservice's manifest is in:
// /api/documents, pinned to docservice, gets 503 with Retry-After from the
// gateway (not authsvc, not docservice without its manifest's access
// rules); the limits route, outside the pin, still reaches docservice; and
// once a manifest is served, the next request is routed by it.
func TestPluginsRepoCaddyfileBeforeDocserviceManifest(t *testing.T) {
	authsvc := newUpstream(t, jwks(t, key(t, 0)))
	docservice := newUpstream(t, nil) // no manifest yet: /plugin/manifest is 404
	e := startEdge(t, filepath.Join(repoRoot, "Caddyfile"), map[string]string{
		"AUTHSVC_UPSTREAM":    authsvc.addr(),
		"DOCSERVICE_UPSTREAM": docservice.addr(),
		"GATEHOUSE_WEB_ROOT":  t.TempDir(),
	})
	user := memberToken(t, "staff")
	eventually(t, "doc-service checked", func() (bool, string) {
		s := e.services(t, adminToken(t))["doc-service"]
		return s.Healthy && s.ManifestError != "", fmt.Sprintf("%+v", s)
	})
	authsvc.take()
	docservice.take()
	r := e.do(t, "GET", "/api/documents/7", user, "")
	if r.status != 503 || r.header.Get("Retry-After") == "" {
		t.Fatalf("/api/documents without docservice's manifest: %d %v %q", r.status, r.header, r.body)
	}
	if n, m := len(authsvc.take()), len(docservice.take()); n+m != 0 {
		t.Fatalf("the request reached authsvc (%d) or docservice (%d)", n, m)
	}
	if r := e.do(t, "GET", "/api/settings/documents/limits", user, ""); r.status != 200 {
		t.Fatalf("limits route: %d %q", r.status, r.body)
	}
	if got := docservice.take(); len(got) != 1 || got[0].path != "/api/settings/documents/limits" {
		t.Fatalf("limits route reached docservice as %+v", got)
	}

	docservice.manifest.Store(&docserviceManifest)
	time.Sleep(gatehouseplugins.MinRecheckGap)
	if r := e.do(t, "GET", "/api/documents/7", user, ""); r.status != 200 {
		t.Fatalf("/api/documents once the manifest is served: %d %q", r.status, r.body)
	}
	if got := docservice.take(); len(got) != 1 || got[0].path != "/api/documents/7" {
		t.Fatalf("docservice saw %+v", got)
	}
}

// cmd/example-plugin, the plugin docs/plugins.md walks through, behind the
// edge as the documentation registers it: what it promises a plugin
// author holds end to end.
func TestExamplePluginBehindTheEdge(t *testing.T) {
	t.Parallel()
	bin := filepath.Join(t.TempDir(), "example-plugin")
	build := exec.Command("go", "build", "-o", bin, "./cmd/example-plugin")
	build.Dir = repoRoot
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build the example plugin: %v\n%s", err, out)
	}
	addr := "127.0.0.1:" + freePort(t)
	cmd := exec.Command(bin, "-addr", addr)
	var logs syncBuffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("example plugin log:\n%s", logs.String())
		}
	})
	authsvc := newUpstream(t, jwks(t, key(t, 0)))
	hello := &testPlugin{id: "hello", addr: addr, options: []string{"prefix /api/hello"}}
	e := startEdge(t, writeConfig(t, "", pluginEdgeConfig(authsvc, hello)), nil)
	member, user := memberToken(t, "hello-admin"), memberToken(t, "staff")
	waitHealthy(t, e, "hello")

	expect := func(r reply, status int, body string) {
		t.Helper()
		if r.status != status || strings.TrimSpace(r.body) != body {
			t.Fatalf("%d %s, want %d %s", r.status, r.body, status, body)
		}
		if ct := r.header.Get("Content-Type"); ct != "application/json" {
			t.Errorf("Content-Type %q", ct)
		}
	}
	expect(e.do(t, "GET", "/api/hello", user, ""), 200, `{"message":"Hello, `+testSubject+`"}`)
	expect(e.do(t, "GET", "/api/hello/nothing-here", user, ""), 404, `{"detail":"not found"}`)
	if ids := e.pluginIDs(t, member); strings.Join(ids, ",") != "hello" {
		t.Fatalf("a hello-admin member's plugins: %v", ids)
	}
	if ids := e.pluginIDs(t, user); len(ids) != 0 {
		t.Fatalf("another user's plugins: %v", ids)
	}
	if r := e.do(t, "GET", "/api/plugins/hello/settings", user, ""); r.status != 404 {
		t.Fatalf("settings for a user outside the access rule: %d %s", r.status, r.body)
	}

	const settings = "/api/plugins/hello/settings"
	expect(e.do(t, "GET", settings, member, ""), 200, `{"api_key":{"is_set":false},"greeting":"Hello"}`)
	expect(e.do(t, "PATCH", settings, member, `{"greeting":"Grüß dich"}`), 200, `{"api_key":{"is_set":false},"greeting":"Grüß dich"}`)
	expect(e.do(t, "GET", "/api/hello", user, ""), 200, `{"message":"Grüß dich, `+testSubject+`"}`)
	expect(e.do(t, "PATCH", settings, member, `{"greeting":"`+strings.Repeat("é", 41)+`","nope":1}`), 400,
		`{"detail":"greeting: must be 1 to 40 characters; nope: unknown setting","errors":[{"field":"greeting","message":"must be 1 to 40 characters"},{"field":"nope","message":"unknown setting"}]}`)
	expect(e.do(t, "PATCH", settings, member, `{"api_key":"s3cret"}`), 200, `{"api_key":{"is_set":true},"greeting":"Grüß dich"}`)
	// A form that sends GET's answer back keeps the secret.
	got := e.do(t, "GET", settings, member, "")
	expect(e.do(t, "PATCH", settings, member, got.body), 200, `{"api_key":{"is_set":true},"greeting":"Grüß dich"}`)
	// null: back to the default, or removed.
	expect(e.do(t, "PATCH", settings, member, `{"greeting":null,"api_key":null}`), 200, `{"api_key":{"is_set":false},"greeting":"Hello"}`)
	expect(e.do(t, "PATCH", settings, member, `[1]`), 400, `{"detail":"expected a JSON object (a merge patch of the settings)"}`)
	expect(e.do(t, "PATCH", settings, member, `{"greeting":5,"api_key":{"is_set":true,"value":"x"}}`), 400,
		`{"detail":"api_key: must be a string, null, or {\"is_set\": ...} as GET shows it; greeting: must be a string or null","errors":[{"field":"api_key","message":"must be a string, null, or {\"is_set\": ...} as GET shows it"},{"field":"greeting","message":"must be a string or null"}]}`)
}

// `caddy gatehouse-check-manifest` applies the edge's own rules before a
// plugin is deployed: alone (schema, reserved prefixes, settings schema),
// against an edge configuration (pins, consent), and fetched from a
// running service.
func TestCheckManifestCommand(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	file := func(name string, m map[string]any) string {
		b, err := json.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	check := func(wantCode int, want string, args ...string) {
		t.Helper()
		cmd := exec.Command(caddyBin, append([]string{"gatehouse-check-manifest"}, args...)...)
		cmd.Env = append(os.Environ(), "HOME="+dir, "XDG_CONFIG_HOME="+dir, "XDG_DATA_HOME="+dir)
		var stdout, stderr strings.Builder
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		out := stdout.String()
		if code != 0 {
			out = stderr.String()
		}
		if code != wantCode || !strings.Contains(out, want) {
			t.Errorf("%v: exit %d, stdout %q, stderr %q; want exit %d and %q", args, code, stdout.String(), stderr.String(), wantCode, want)
		}
	}

	good := file("good.json", pluginManifest("notes", "routes", route("/api/notes", "authenticated"),
		"settings", map[string]any{"schema": map[string]any{"type": "object"}}))
	check(0, "ok: notes 1.0.0 (Plugin notes), not checked against an edge configuration", good)
	check(0, "  route /api/notes: authenticated\n  settings: schema compiles", good)
	check(1, "refused: manifest does not match the version 1 schema: /routes/0/prefix",
		file("slash.json", pluginManifest("notes", "routes", route("/api/notes/", "authenticated"))))
	check(1, "/api/settings", file("reserved.json", pluginManifest("notes", "routes", route("/api/settings/notes", "authenticated"))))

	// Against the repository's Caddyfile: doc-service is pinned to
	// /api/documents, and gets no forward_credentials.
	repo := filepath.Join(repoRoot, "Caddyfile")
	check(1, `registers no service "notes"`, "--config", repo, good)
	docs := func(name string, kv ...any) string { return file(name, pluginManifest("doc-service", kv...)) }
	check(0, "admitted for service doc-service", "--config", repo, docs("docs.json", "routes", route("/api/documents", "authenticated")))
	check(1, "outside the prefixes the edge configuration gives doc-service", "--config", repo,
		docs("outside.json", "routes", route("/api/notes", "authenticated")))
	check(1, "does not allow doc-service", "--config", repo,
		docs("creds.json", "routes", route("/api/documents", "authenticated", "forward_credentials", true)))
	check(1, `manifest id "doc-service" is not the registered service id "notes"`, "--config", writeConfig(t, "", `{
	gatehouse_plugins {
		service notes http://127.0.0.1:1
	}
}
`), "--service", "notes", docs("other-id.json", "routes", route("/api/documents", "authenticated")))

	// From a running service, with the Content-Type it serves.
	p := newTestPlugin(t, "wiki", pluginManifest("wiki"))
	check(0, "ok: wiki", p.url())
	ct := "text/plain"
	p.contentType.Store(&ct)
	check(1, `Content-Type is "text/plain"`, p.url())
	p.stop()
	check(1, "connection refused", p.url())
	check(1, "no such file or directory", filepath.Join(dir, "missing.json"))
}

// A service that accepts connections and never answers costs a request at
// most a short wait for the check on demand, not the check's timeout: the
// 503 comes at once, the check runs on in the background.
func TestPluginsHangingServiceAnswersQuickly(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var held []net.Conn
	var mu sync.Mutex
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			held = append(held, c) // read nothing, answer nothing
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range held {
			c.Close()
		}
	})
	authsvc := newUpstream(t, jwks(t, key(t, 0)))
	hung := &testPlugin{id: "hung", addr: ln.Addr().String(), options: []string{"prefix /api/hung"}}
	cfg := strings.Replace(pluginEdgeConfig(authsvc, hung), "timeout 1s", "timeout 3s", 1)
	e := startEdge(t, writeConfig(t, "", cfg), nil)
	user := memberToken(t, "staff")
	for i := range 4 {
		r := e.do(t, "GET", "/api/hung/x", user, "")
		if r.status != 503 || r.header.Get("Retry-After") == "" {
			t.Fatalf("request %d to a hanging service: %d %v %q", i, r.status, r.header, r.body)
		}
		if r.took > 1500*time.Millisecond {
			t.Errorf("request %d waited %v for its 503 (the check's timeout is 3 s)", i, r.took)
		}
		time.Sleep(400 * time.Millisecond)
	}
}

// A service that comes back with a stricter manifest is judged by it at
// the first request after the check on demand, not by the manifest it
// had before it went down.
func TestPluginsBackWithAStricterManifest(t *testing.T) {
	t.Parallel()
	e, notes, user := notesBetweenRounds(t)
	notes.stop()
	eventually(t, "503 while down", func() (bool, string) {
		r := e.do(t, "GET", "/api/notes/x", user, "")
		return r.status == 503, fmt.Sprint(r.status, r.body)
	})
	// Back, now for its own group only.
	notes.setManifest(t, pluginManifest("notes", "access", map[string]any{"allow_superuser": true, "required_groups": []string{"notes-admin"}},
		"routes", route("/api/notes", "plugin")))
	notes.restart(t)
	time.Sleep(gatehouseplugins.MinRecheckGap)
	notes.take()
	if r := e.do(t, "GET", "/api/notes/x", user, ""); r.status != 403 {
		t.Fatalf("a user outside the new manifest's group: %d %q", r.status, r.body)
	}
	if got := notes.take(); len(got) != 0 {
		t.Fatalf("the service got the refused request: %+v", got)
	}
	if r := e.do(t, "GET", "/api/notes/x", memberToken(t, "notes-admin"), ""); r.status != 200 {
		t.Fatalf("a member of the new manifest's group: %d %q", r.status, r.body)
	}
}
