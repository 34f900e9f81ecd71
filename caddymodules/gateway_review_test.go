package caddymodules_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"
)

// Tests of what the plugin gateway lets a plugin's answer do, from a
// review that found each of them getting through.

// scriptedPlugin is a feature service whose answers under its routes the
// test writes (h); /health and /plugin/manifest answer as the contract
// says.
func scriptedPlugin(t *testing.T, id string, manifest map[string]any, h http.HandlerFunc) *testPlugin {
	t.Helper()
	b, err := json.Marshal(manifest)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/health":
			_, _ = io.WriteString(w, `{"status":"ok"}`)
		case "/plugin/manifest":
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write(b)
		default:
			h(w, r)
		}
	}))
	t.Cleanup(srv.Close)
	return &testPlugin{id: id, addr: srv.Listener.Addr().String()}
}

// noFollow is a client that hands back redirects instead of following
// them.
var noFollow = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

// A plugin's settings answer may not redirect: a client that follows
// redirects as browsers' fetch does (same origin: method, body and
// Authorization kept) would send the admin's PATCH, whose body the plugin
// shaped through its settings schema, to a core route (here authsvc's
// admin API), and the plugin would have the admin promote whom it likes.
func TestGatewaySettingsRedirectRefused(t *testing.T) {
	t.Parallel()
	authsvc := newUpstream(t, jwks(t, key(t, 0)))
	const victimTarget = "/api/admin/users/00000000-0000-0000-0000-00000000beef"
	evil := scriptedPlugin(t, "evil", pluginManifest("evil",
		"settings", map[string]any{"schema": map[string]any{"type": "object",
			"properties": map[string]any{"role": map[string]any{"type": "string", "enum": []string{"admin"}}}}},
		"routes", route("/api/evil", "authenticated")),
		func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/plugin/settings" && r.Method == http.MethodPatch {
				http.Redirect(w, r, victimTarget, http.StatusTemporaryRedirect)
				return
			}
			w.Header().Set("Content-Type", "application/json")
			_, _ = io.WriteString(w, `{"role":"admin"}`)
		})
	e := startEdge(t, writeConfig(t, "", pluginEdgeConfig(authsvc, evil)), nil)
	admin := adminToken(t)
	waitHealthy(t, e, "evil")
	eventually(t, "evil listed", func() (bool, string) {
		ids := e.pluginIDs(t, admin)
		return len(ids) == 1, fmt.Sprint(ids)
	})
	authsvc.take()

	for _, client := range []*http.Client{noFollow, http.DefaultClient} {
		req, _ := http.NewRequest(http.MethodPatch, "http://"+e.addr+"/api/plugins/evil/settings", strings.NewReader(`{"role":"admin"}`))
		req.Header.Set("Authorization", "Bearer "+admin)
		req.Header.Set("Content-Type", "application/merge-patch+json")
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		var body struct{ Detail string }
		if resp.StatusCode != http.StatusBadGateway || resp.Header.Get("Location") != "" || json.Unmarshal(b, &body) != nil || body.Detail == "" {
			t.Errorf("settings PATCH answered %d Location %q %s, want 502 with a detail", resp.StatusCode, resp.Header.Get("Location"), b)
		}
	}
	for _, r := range authsvc.take() {
		if r.path == victimTarget {
			t.Errorf("authsvc received %s %s as the admin (Authorization %t, X-User-Role %q) after the plugin's redirect",
				r.method, r.path, r.header.Get("Authorization") != "", r.header.Get("X-User-Role"))
		}
	}
	// A GET of the settings works as before.
	if r := e.do(t, "GET", "/api/plugins/evil/settings", admin, ""); r.status != 200 || r.body != `{"role":"admin"}` {
		t.Errorf("settings GET: %d %s", r.status, r.body)
	}
}

// On a plugin's routes a redirect passes only within the plugin's own
// prefixes; one to a core route becomes 502; 304 is no redirect.
func TestGatewayRouteRedirects(t *testing.T) {
	t.Parallel()
	authsvc := newUpstream(t, jwks(t, key(t, 0)))
	evil := scriptedPlugin(t, "evil", pluginManifest("evil", "routes", []any{
		map[string]any{"prefix": "/api/evil", "access": "authenticated"},
		map[string]any{"prefix": "/api/evil-two", "access": "authenticated"},
	}),
		func(w http.ResponseWriter, r *http.Request) {
			switch r.URL.Path {
			case "/api/evil/to-admin":
				http.Redirect(w, r, "/api/admin/users/00000000-0000-0000-0000-00000000beef", http.StatusPermanentRedirect)
			case "/api/evil/up-to-admin":
				http.Redirect(w, r, "../admin/users", http.StatusTemporaryRedirect)
			case "/api/evil/own":
				http.Redirect(w, r, "/api/evil-two/x?y=1", http.StatusTemporaryRedirect)
			case "/api/evil/cached":
				w.Header().Set("ETag", `"1"`)
				w.WriteHeader(http.StatusNotModified)
			default:
				_, _ = io.WriteString(w, "ok")
			}
		})
	e := startEdge(t, writeConfig(t, "", pluginEdgeConfig(authsvc, evil)), nil)
	user := memberToken(t, "staff")
	waitHealthy(t, e, "evil")
	eventually(t, "evil routed", func() (bool, string) {
		r := e.do(t, "GET", "/api/evil/x", user, "")
		return r.status == 200, fmt.Sprint(r.status, r.body)
	})
	for _, tc := range []struct {
		path, method string
		status       int
		location     string
	}{
		{"/api/evil/to-admin", "PATCH", 502, ""},
		{"/api/evil/up-to-admin", "POST", 502, ""},
		{"/api/evil/own", "PATCH", 307, "/api/evil-two/x?y=1"},
		{"/api/evil/cached", "GET", 304, ""},
	} {
		req, _ := http.NewRequest(tc.method, "http://"+e.addr+tc.path, strings.NewReader(`{"role":"admin"}`))
		req.Header.Set("Authorization", "Bearer "+user)
		resp, err := noFollow.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tc.status || resp.Header.Get("Location") != tc.location {
			t.Errorf("%s %s: %d Location %q %s, want %d Location %q", tc.method, tc.path, resp.StatusCode, resp.Header.Get("Location"), b, tc.status, tc.location)
		}
	}
	if reqs := authsvc.take(); len(reqs) != 0 {
		t.Errorf("authsvc got %d requests, first %s %s", len(reqs), reqs[0].method, reqs[0].path)
	}
}

// A plugin's answer labelled text/html would run as a page of the
// platform's origin. With cookie authentication (gatehouse_auth's cookie
// option, as in pluginEdgeConfig), a link to the plugin's route opened by
// a signed-in admin authenticates by the cookie, and the page's script
// could call every same-origin API with it (here: promote a user), and
// Service-Worker-Allowed: / would let it install a worker over the whole
// origin, SPA and login included. Its answers are sandboxed (an opaque
// origin), but for PDFs, which browsers' viewers refuse to show sandboxed.
func TestGatewayPluginAnswersSandboxed(t *testing.T) {
	t.Parallel()
	authsvc := newUpstream(t, jwks(t, key(t, 0)))
	evil := scriptedPlugin(t, "evil", pluginManifest("evil", "routes", route("/api/evil", "authenticated")),
		func(w http.ResponseWriter, r *http.Request) {
			switch {
			case strings.HasSuffix(r.URL.Path, ".js"):
				w.Header().Set("Content-Type", "text/javascript")
				w.Header().Set("Service-Worker-Allowed", "/")
				_, _ = io.WriteString(w, "self.addEventListener('fetch', e => {})")
			case strings.HasSuffix(r.URL.Path, ".pdf"):
				w.Header().Set("Content-Type", "application/pdf")
				_, _ = io.WriteString(w, "%PDF-1.4\n")
			case strings.HasSuffix(r.URL.Path, ".json"):
				w.Header().Set("Content-Type", "application/json")
				_, _ = io.WriteString(w, "{}")
			default:
				w.Header().Set("Content-Type", "text/html; charset=utf-8")
				w.Header().Set("Content-Security-Policy", "img-src 'self'")
				_, _ = io.WriteString(w, `<script>fetch("/api/admin/users/00000000-0000-0000-0000-00000000beef",{method:"PATCH",body:'{"role":"admin"}'});navigator.serviceWorker.register("/api/evil/sw.js",{scope:"/"})</script>`)
			}
		})
	e := startEdge(t, writeConfig(t, "", pluginEdgeConfig(authsvc, evil)), nil)
	user := memberToken(t, "staff")
	waitHealthy(t, e, "evil")
	var r reply
	eventually(t, "evil routed", func() (bool, string) {
		// A top-level navigation: the token cookie, no Authorization.
		r = e.do(t, "GET", "/api/evil/page", "", "", "Cookie", "gh_token="+user, "Sec-Fetch-Mode", "navigate", "Sec-Fetch-Site", "cross-site")
		return r.status == 200, fmt.Sprint(r.status, r.body)
	})
	if csp := r.header.Values("Content-Security-Policy"); !slices.Contains(csp, "sandbox") || !slices.Contains(csp, "img-src 'self'") {
		t.Errorf("plugin HTML: Content-Security-Policy %q, want sandbox and the plugin's own", csp)
	}
	sw := e.do(t, "GET", "/api/evil/sw.js", "", "", "Cookie", "gh_token="+user)
	if v := sw.header.Get("Service-Worker-Allowed"); sw.status != 200 || v != "" {
		t.Errorf("plugin script: %d, Service-Worker-Allowed %q", sw.status, v)
	}
	if j := e.do(t, "GET", "/api/evil/x.json", user, ""); j.status != 200 || !slices.Contains(j.header.Values("Content-Security-Policy"), "sandbox") {
		t.Errorf("plugin JSON: %d, Content-Security-Policy %q, want sandbox", j.status, j.header.Values("Content-Security-Policy"))
	}
	if p := e.do(t, "GET", "/api/evil/x.pdf", user, ""); p.status != 200 || len(p.header.Values("Content-Security-Policy")) != 0 {
		t.Errorf("plugin PDF: %d, Content-Security-Policy %q, want none (a sandboxed PDF is not shown)", p.status, p.header.Values("Content-Security-Policy"))
	}
}

// evilAnswer starts an edge with a plugin "evil" that serves
// /api/evil (any authenticated user) with answer, and returns the edge, a
// member's token and the edge's answer to that member's GET /api/evil/x.
func evilAnswer(t *testing.T, answer http.HandlerFunc) (*edge, string, reply) {
	t.Helper()
	authsvc := newUpstream(t, jwks(t, key(t, 0)))
	evil := scriptedPlugin(t, "evil", pluginManifest("evil", "routes", route("/api/evil", "authenticated")), answer)
	e := startEdge(t, writeConfig(t, "", pluginEdgeConfig(authsvc, evil)), nil)
	user := memberToken(t, "staff")
	waitHealthy(t, e, "evil")
	var r reply
	eventually(t, "evil routed", func() (bool, string) {
		r = e.do(t, "GET", "/api/evil/x", user, "")
		return r.status == 200, fmt.Sprint(r.status, r.body)
	})
	return e, user, r
}

// A plugin that sends an empty Clear-Site-Data line before the real one
// may not have both reach the client, which joins them into `, "cookies"`
// and signs the user out of the whole platform.
func TestGatewayClearSiteDataAfterEmptyLine(t *testing.T) {
	t.Parallel()
	_, _, r := evilAnswer(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header()["Clear-Site-Data"] = []string{"", `"cookies", "storage"`}
		w.Header().Set("Content-Type", "text/plain")
		_, _ = io.WriteString(w, "ok")
	})
	if v := r.header.Values("Clear-Site-Data"); len(v) > 0 {
		t.Errorf("Clear-Site-Data reached the client: %q", v)
	}
}

// browserCookieName is the name a browser gives the cookie of a Set-Cookie
// line (RFC 6265bis 5.6: the name-value pair is everything before the
// first ';'; without '=' in it, the cookie is nameless and its value is the
// whole pair): "" for a nameless cookie.
func browserCookieName(setCookie string) string {
	pair, _, _ := strings.Cut(setCookie, ";")
	name, _, hasEq := strings.Cut(pair, "=")
	if !hasEq {
		return ""
	}
	return strings.Trim(name, " \t")
}

// A plugin may not plant a nameless cookie through its attributes:
// "gh_token; Path=/" is no cookie named "gh_token; Path" but a nameless one
// whose value is "gh_token", which a browser then sends back as a bare
// "gh_token" beside the real token cookie on every request, and the edge
// refuses such an ambiguous pair: the user is locked out until the cookie
// expires.
func TestGatewayNamelessCookieThroughAttributes(t *testing.T) {
	t.Parallel()
	e, user, r := evilAnswer(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Add("Set-Cookie", "gh_token; Path=/; Max-Age=31536000")
		w.Header().Add("Set-Cookie", "gh_token;=x")
		w.Header().Add("Set-Cookie", "theme=dark; Path=/api/evil")
		w.Header().Set("Content-Type", "text/plain")
		_, _ = io.WriteString(w, "ok")
	})
	got := r.header.Values("Set-Cookie")
	for _, sc := range got {
		if browserCookieName(sc) == "" {
			t.Errorf("a nameless cookie reached the client: Set-Cookie: %s", sc)
		}
	}
	if !slices.Contains(got, "theme=dark; Path=/api/evil") {
		t.Errorf("the plugin's own cookie was dropped too: %q", got)
	}
	// Why it matters: what the browser would then send.
	if ctl := e.raw(t, get("/api/users/me", "Cookie: gh_token="+user)); ctl.status != 200 {
		t.Errorf("token cookie alone: %d %s", ctl.status, ctl.body)
	}
	if resp := e.raw(t, get("/api/users/me", "Cookie: gh_token="+user+"; gh_token")); resp.status == 200 {
		t.Errorf("token cookie and a bare gh_token: %d, want the ambiguity refused", resp.status)
	}
}

// nestedSchema is a settings schema depth levels deep: about 21 bytes a
// level, far below the 256 KiB manifest limit.
func nestedSchema(depth int) map[string]any {
	inner := map[string]any{}
	for range depth {
		inner = map[string]any{"properties": map[string]any{"a": inner}}
	}
	return map[string]any{"type": "object", "properties": map[string]any{"a": inner}}
}

// A plugin whose manifest carries a deeply nested settings schema (2000
// levels, ~42 KB) cost the edge minutes of CPU to compile, on every check;
// the round of checks waited for it, so every other service's state
// waited too (a healthy service was not listed as such), and a `caddy
// reload` waited for the round (App.Stop) before it returned. The
// manifest is refused before compiling.
func TestGatewayNestedSettingsSchemaRefused(t *testing.T) {
	t.Parallel()
	authsvc := newUpstream(t, jwks(t, key(t, 0)))
	good := newTestPlugin(t, "good", pluginManifest("good"))
	slow := newTestPlugin(t, "slow", pluginManifest("slow", "settings", map[string]any{"schema": nestedSchema(2000)}))
	if b, _ := json.Marshal(nestedSchema(2000)); len(b) > 64<<10 {
		t.Fatalf("schema %d bytes", len(b))
	}
	cfg := writeConfig(t, "", pluginEdgeConfig(authsvc, good, slow))
	e := startEdge(t, cfg, nil)
	admin := adminToken(t)
	start := time.Now()
	deadline := start.Add(5 * time.Second)
	for !e.services(t, admin)["good"].Healthy {
		if time.Now().After(deadline) {
			t.Errorf("a healthy service is still not listed healthy %v after the edge started: the round waits for another plugin's manifest", time.Since(start))
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if reason := refusedManifest(t, e, "slow"); !strings.Contains(reason, "settings.schema nests deeper than 64 levels") {
		t.Errorf("slow's manifest refused for %q", reason)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	rs := time.Now()
	out, err := exec.CommandContext(ctx, caddyBin, "reload", "--config", cfg, "--adapter", "caddyfile", "--address", e.admin, "--force").CombinedOutput()
	if took := time.Since(rs); err != nil || took > 5*time.Second {
		t.Errorf("caddy reload took %v (err %v %s)", took, err, out)
	}
}
