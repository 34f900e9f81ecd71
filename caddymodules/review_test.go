package caddymodules_test

// Security review tests: attacks against the real binary, each a regression
// test for an attack class the edge defends against.

import (
	"encoding/json"
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"
)

// A ";" path parameter on a dot-dot segment ("..;") must not pass as
// canonical: a plugin whose framework strips ";params" (Tomcat, Spring,
// Jetty) would resolve /api/rep-pub/..;/rep/x to its restricted route
// /api/rep/x after the edge applied only the "authenticated" rule. (Found
// in review; the gateway now answers 400.)
func TestReviewPathParamDotDotSkipsAccessRule(t *testing.T) {
	t.Parallel()
	authsvc := newUpstream(t, jwks(t, key(t, 0)))
	rep := newTestPlugin(t, "rep", pluginManifest("rep",
		"access", map[string]any{"allow_superuser": false, "required_groups": []string{"rep-admin"}},
		"routes", []any{
			map[string]any{"prefix": "/api/rep", "access": "plugin"},
			map[string]any{"prefix": "/api/rep-pub", "access": "authenticated"},
		}))
	e := startEdge(t, writeConfig(t, "", pluginEdgeConfig(authsvc, rep)), nil)
	stranger := memberToken(t, "staff")
	waitHealthy(t, e, "rep")
	eventually(t, "routes up", func() (bool, string) {
		r := e.do(t, "GET", "/api/rep-pub/x", stranger, "")
		return r.status == 200, fmt.Sprint(r.status)
	})
	if r := e.do(t, "GET", "/api/rep/secret", stranger, ""); r.status != 403 {
		t.Fatalf("restricted route for a stranger: %d, want 403", r.status)
	}
	rep.take()
	for _, p := range []string{
		"/api/rep-pub/..;/rep/secret",
		"/api/rep-pub/..%3B/rep/secret",
		"/api/rep-pub/x/..;/..;/rep/secret",
	} {
		t.Run(p, func(t *testing.T) {
			resp := e.raw(t, get(p, bearer(stranger)))
			got := rep.take()
			for _, r := range got {
				if dec, _ := url.PathUnescape(r.path); strings.Contains(dec, "..;") {
					t.Errorf("plugin received %q (a ;-parameter dot-dot that path-parameter-aware frameworks resolve to /api/rep/secret)", r.path)
				}
			}
			if resp.status != 400 {
				t.Errorf("status %d, want 400 like every other odd spelling", resp.status)
			}
		})
	}
}

// Held: the repository Caddyfile's routing under prefix confusion, case,
// encoded dot segments and /internal spellings. Each must stay guarded
// (401, nothing reaches an upstream) or unrouted (404).
func TestReviewRepoRoutingConfusionHeld(t *testing.T) {
	e, authsvc, docservice := repoEdge(t)
	valid := signed(t, key(t, 0), hdr(t, key(t, 0)), claims())
	for _, tc := range []struct {
		path   string
		lines  []string
		status int
	}{
		{"/api/authX/users/me", []string{"X-User-Role: admin"}, 401},
		{"/api/auth", []string{"X-User-Role: admin"}, 401},
		{"/api/auth.", nil, 401},
		{"/API/AUTH/%2e%2e/users/me", nil, 401},
		{"/api/auth/%2E%2E%2Fadmin/users", nil, 401},
		{"/api/auth//../admin/users", nil, 401},
		{"/api/documentsX", nil, 401},
		{"/api/documents%2f..%2fadmin/users", nil, 401},
		{"/api/settings/documents/limits", []string{"X-User-Role: admin"}, 401},
		{"/Internal/revocations", []string{bearer(valid)}, 404},
		{"/INTERNAL", []string{bearer(valid)}, 404},
		{"/api/../internal/revocations", []string{bearer(valid)}, 404},
		{"/api/%2e%2e/internal/revocations", []string{bearer(valid)}, 404},
		{"/api%2f..%2finternal/revocations", []string{bearer(valid)}, 404},
		{"//internal/revocations", []string{bearer(valid)}, 404},
	} {
		t.Run(tc.path, func(t *testing.T) {
			authsvc.take()
			docservice.take()
			resp := e.raw(t, get(tc.path, tc.lines...))
			if resp.status != tc.status {
				t.Errorf("status %d, want %d; body %q", resp.status, tc.status, resp.body)
			}
			if got := append(authsvc.take(), docservice.take()...); len(got) != 0 {
				t.Errorf("reached an upstream: %+v", got)
			}
		})
	}
}

// Held: header smuggling variants alongside a valid token. The upstream
// must see exactly the verified identity (and no identity trailer).
func TestReviewHeaderSmugglingHeld(t *testing.T) {
	e, authsvc, docservice := repoEdge(t)
	valid := signed(t, key(t, 0), hdr(t, key(t, 0)), claims())
	post := func(path string, hdrs ...string) string {
		return "POST " + path + " HTTP/1.1\r\nHost: edge.test\r\n" + bearer(valid) + "\r\n" + strings.Join(hdrs, "\r\n") + "\r\nConnection: close\r\n\r\n"
	}
	for _, tc := range []struct{ name, req string }{
		{"undeclared identity trailer", post("/api/users/me", "Transfer-Encoding: chunked") +
			"2\r\nhi\r\n0\r\nX-User-Role: admin\r\nX-User-Id: admin-uuid\r\n\r\n"},
		{"declared trailer, odd spelling", post("/api/users/me", "Transfer-Encoding: chunked", "Trailer: x_user_role, X-Other") +
			"2\r\nhi\r\n0\r\nX_User_Role: admin\r\nx-user-role: admin\r\n\r\n"},
		{"declared other trailer, identity sent anyway", post("/api/documents", "Transfer-Encoding: chunked", "Trailer: X-Other") +
			"2\r\nhi\r\n0\r\nX-Other: 1\r\nX-User-Groups: doc-service-admin\r\n\r\n"},
		{"HTTP/1.0 keep-alive with Connection naming identity", "GET /api/users/me HTTP/1.0\r\nHost: edge.test\r\n" + bearer(valid) +
			"\r\nConnection: keep-alive, X_User_Id, x.user.groups\r\nX-User-Role: admin\r\n\r\n"},
		{"Connection split over lines with odd spacing", get("/api/documents/1", bearer(valid), "Connection: ,,  X-USER-ROLE ,", "Connection:\tx-user-id")},
		{"Upgrade request with forged identity", get("/api/documents", bearer(valid), "Upgrade: websocket", "Connection: Upgrade, X-User-Role", "X-User-Role: admin")},
		{"strip-only names via Keep-Alive and Proxy-Connection", get("/api/users/me", bearer(valid), "Proxy-Connection: X-User-Id", "Keep-Alive: X-User-Id", "X-Auth-User: root")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			authsvc.take()
			docservice.take()
			resp := e.raw(t, tc.req)
			got := append(authsvc.take(), docservice.take()...)
			if resp.status >= 400 {
				if len(got) != 0 {
					t.Fatalf("refused (%d) but reached an upstream", resp.status)
				}
				return
			}
			if len(got) != 1 {
				t.Fatalf("status %d, upstream requests %d: %+v", resp.status, len(got), got)
			}
			checkIdentity(t, got, verifiedIdentity)
		})
	}
}

// Held: token confusion with tokens signed by the real key. Each carries
// claims that must not grant access (or, for the positive controls, must
// grant exactly the claimed identity).
func TestReviewTokenConfusionHeld(t *testing.T) {
	e, authsvc, docservice := repoEdge(t)
	k := key(t, 0)
	rawHeader := func(s string) string { return b64([]byte(s)) }
	signRaw := func(h, p string) string {
		in := h + "." + p
		sig, err := rsaSign(k, in)
		if err != nil {
			t.Fatal(err)
		}
		return in + "." + b64(sig)
	}
	kidK := kid(t, k)
	okPayload := seg(t, claims())
	for _, tc := range []struct {
		name   string
		tok    string
		status int
	}{
		{"aud array holding ours (control)", signed(t, k, hdr(t, k), with(claims(), "aud", []string{"other", "gatehouse"})), 200},
		{"aud array without ours", signed(t, k, hdr(t, k), with(claims(), "aud", []string{"other", "gatehouse2"})), 401},
		{"aud case", signed(t, k, hdr(t, k), with(claims(), "aud", "Gatehouse")), 401},
		{"role Admin (case)", signed(t, k, hdr(t, k), with(claims(), "role", "Admin")), 401},
		{"role admin with whitespace", signed(t, k, hdr(t, k), with(claims(), "role", "admin ")), 401},
		{"role as array", signed(t, k, hdr(t, k), with(claims(), "role", []string{"admin"})), 401},
		{"groups as a string", signed(t, k, hdr(t, k), with(claims(), "groups", "doc-service-admin")), 401},
		{"exp 1e300", signed(t, k, hdr(t, k), with(claims(), "exp", 1e300)), 401},
		{"exp -1", signed(t, k, hdr(t, k), with(claims(), "exp", -1)), 401},
		{"exp 0", signed(t, k, hdr(t, k), with(claims(), "exp", 0)), 401},
		{"exp null", signed(t, k, hdr(t, k), with(claims(), "exp", nil)), 401},
		{"exp beyond int64 as integer", signDirect(t, signRaw, rawHeader(`{"alg":"RS256","typ":"at+jwt","kid":"`+kidK+`"}`),
			strings.Replace(string(mustJSON(t, with(claims(), "exp", 1))), `"exp":1`, `"exp":99999999999999999999999`, 1)), 401},
		{"sub with CRLF", signed(t, k, hdr(t, k), with(claims(), "sub", "x\r\nX-User-Role: admin")), 401},
		{"sid with NUL", signed(t, k, hdr(t, k), with(claims(), "sid", "a\x00b")), 401},
		{"alg case RS256 vs rs256", signed(t, k, hdr(t, k, "alg", "rs256"), claims()), 401},
		{"duplicate alg, none last", signRaw(rawHeader(`{"alg":"RS256","typ":"at+jwt","kid":"`+kidK+`","alg":"none"}`), okPayload), 401},
		{"ALG upper-case member beside none", signRaw(rawHeader(`{"alg":"none","ALG":"RS256","typ":"at+jwt","kid":"`+kidK+`"}`), okPayload), 401},
		{"crit empty array", signed(t, k, hdr(t, k, "crit", []string{}), claims()), 401},
		{"typ JWT then at+jwt duplicate", signRaw(rawHeader(`{"alg":"RS256","typ":"at+jwt","kid":"`+kidK+`","typ":"JWT"}`), okPayload), 401},
		{"b64 false with crit", signed(t, k, hdr(t, k, "b64", false, "crit", []string{"b64"}), claims()), 401},
		{"JWS JSON serialisation", `{"payload":"` + okPayload + `"}`, 401},
		{"four segments", signed(t, k, hdr(t, k), claims()) + ".x", 401},
		{"padding in segments", signed(t, k, hdr(t, k), claims()) + "==", 401},
	} {
		t.Run(tc.name, func(t *testing.T) {
			authsvc.take()
			docservice.take()
			resp := e.raw(t, get("/api/users/me", bearer(tc.tok)))
			got := append(authsvc.take(), docservice.take()...)
			if resp.status != tc.status {
				t.Fatalf("status %d, want %d", resp.status, tc.status)
			}
			if tc.status == 401 && len(got) != 0 {
				t.Fatalf("refused token reached an upstream: %+v", got)
			}
			if tc.status == 200 {
				checkIdentity(t, got, verifiedIdentity)
			}
		})
	}
}

func signDirect(t *testing.T, signRaw func(h, p string) string, h, payloadJSON string) string {
	return signRaw(h, b64([]byte(payloadJSON)))
}

func mustJSON(t *testing.T, v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// Held: a cached token is re-checked for expiry on every hit. A token valid
// for 1 s past the 30 s leeway is accepted, cached, then refused once
// exp+leeway passes (tests the cache path, not the verifier's).
func TestReviewCacheExpiryRecheckHeld(t *testing.T) {
	if testing.Short() {
		t.Skip("waits ~3 s")
	}
	e, authsvc, _ := repoEdge(t)
	k := key(t, 0)
	exp := time.Now().Add(-30*time.Second + 2*time.Second).Unix()
	tok := signed(t, k, hdr(t, k), with(claims(), "exp", exp))
	if r := e.raw(t, get("/api/users/me", bearer(tok))); r.status != 200 {
		t.Fatalf("fresh: %d", r.status)
	}
	if r := e.raw(t, get("/api/users/me", bearer(tok))); r.status != 200 {
		t.Fatalf("cached: %d", r.status)
	}
	time.Sleep(time.Until(time.Unix(exp, 0).Add(30*time.Second + 1100*time.Millisecond)))
	authsvc.take()
	if r := e.raw(t, get("/api/users/me", bearer(tok))); r.status != 401 {
		t.Fatalf("after exp+leeway: %d, want 401", r.status)
	}
	if n := len(authsvc.take()); n != 0 {
		t.Fatalf("expired cached token reached authsvc")
	}
}
