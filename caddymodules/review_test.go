package caddymodules_test

// Security review tests: attacks against the real binary, each a regression
// test for an attack class the edge defends against.

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
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
// (401, nothing reaches an upstream), unrouted (404), or, with a dot
// segment raw, encoded or made by an encoded slash, refused (400, since
// TestReviewDotSegmentsRefused).
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
		{"/API/AUTH/%2e%2e/users/me", nil, 400},
		{"/api/auth/%2E%2E%2Fadmin/users", nil, 400},
		{"/api/auth//../admin/users", nil, 400},
		{"/api/documentsX", nil, 401},
		{"/api/documents%2f..%2fadmin/users", nil, 400},
		{"/api/settings/documents/limits", []string{"X-User-Role: admin"}, 401},
		{"/Internal/revocations", []string{bearer(valid)}, 404},
		{"/INTERNAL", []string{bearer(valid)}, 404},
		{"/api/../internal/revocations", []string{bearer(valid)}, 400},
		{"/api/%2e%2e/internal/revocations", []string{bearer(valid)}, 400},
		{"/api%2f..%2finternal/revocations", []string{bearer(valid)}, 400},
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

// Credentials never travel as request trailers: docservice's routes drop
// the bearer token from the headers (the gateway, and `header_up
// -Authorization` on the static route), but a chunked request could repeat
// it after the body, and Caddy's reverse_proxy forwards declared trailers.
// (Found in review: the token reached docservice that way.)
func TestReviewCredentialTrailersDropped(t *testing.T) {
	e, authsvc, docservice := repoEdge(t)
	valid := signed(t, key(t, 0), hdr(t, key(t, 0)), claims())
	waitHealthy(t, e, "doc-service") // /api/documents goes through the gateway
	for _, path := range []string{
		"/api/documents/1",               // manifest route (gatehouse_plugin_gateway)
		"/api/settings/documents/limits", // static reverse_proxy with header_up -Authorization
		"/api/users/me",                  // authsvc, which gets the header token (forward_token), not a trailer copy
	} {
		t.Run(path, func(t *testing.T) {
			authsvc.take()
			docservice.take()
			req := "POST " + path + " HTTP/1.1\r\nHost: edge.test\r\n" + bearer(valid) + "\r\n" +
				"Transfer-Encoding: chunked\r\nTrailer: Authorization, Proxy-Authorization, Cookie, Host, X-Checksum\r\n" +
				"Connection: close\r\n\r\n" +
				"2\r\nhi\r\n0\r\nAuthorization: Bearer " + valid + "\r\nProxy-Authorization: Basic eDp5\r\n" +
				"Cookie: __Host-gatehouse_at=" + valid + "\r\nHost: internal\r\nX-Checksum: abc\r\n\r\n"
			resp := e.raw(t, req)
			got := append(authsvc.take(), docservice.take()...)
			if resp.status != 200 || len(got) != 1 {
				t.Fatalf("status %d, upstream requests %d", resp.status, len(got))
			}
			for _, name := range []string{"Authorization", "Proxy-Authorization", "Cookie", "Host"} {
				if v := got[0].trailer.Get(name); v != "" {
					t.Errorf("the upstream got a %s trailer (%d bytes)", name, len(v))
				}
			}
			// Other trailers still pass.
			if v := got[0].trailer.Get("X-Checksum"); v != "abc" {
				t.Errorf("trailer X-Checksum %q, want abc (trailers %v)", v, got[0].trailer)
			}
		})
	}
}

// trailerBody sets req.Trailer values once the body has been read.
type trailerBody struct {
	r    io.Reader
	req  *http.Request
	vals http.Header
}

func (b *trailerBody) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	if err == io.EOF {
		for k, v := range b.vals {
			b.req.Trailer[k] = v
		}
	}
	return n, err
}
func (b *trailerBody) Close() error { return nil }

// Held: h2c (prior knowledge) is accepted by the edge on a plain-HTTP site;
// forged identity headers in any spelling and identity trailers (declared,
// undeclared, odd spelling) do not pass over HTTP/2 either.
func TestReviewH2CHeld(t *testing.T) {
	e, authsvc, docservice := repoEdge(t)
	valid := signed(t, key(t, 0), hdr(t, key(t, 0)), claims())
	tr := &http.Transport{Protocols: new(http.Protocols)}
	tr.Protocols.SetUnencryptedHTTP2(true)
	c := &http.Client{Transport: tr, Timeout: 15 * time.Second}
	waitHealthy(t, e, "doc-service")
	for _, path := range []string{"/api/users/me", "/api/documents/1", "/api/auth/login"} {
		t.Run(path, func(t *testing.T) {
			authsvc.take()
			docservice.take()
			req, _ := http.NewRequest("POST", "http://"+e.addr+path, nil)
			req.Header.Set("Authorization", "Bearer "+valid)
			req.Header["x_user_id"] = []string{"forged"}
			req.Header["X-User-Role"] = []string{"admin"}
			req.Header["x.user.groups"] = []string{"root"}
			req.Header["X-Remote-User"] = []string{"root"}
			req.Trailer = http.Header{"X-User-Id": nil, "X-Other": nil, "X_user_role": nil}
			req.Body = &trailerBody{r: strings.NewReader("hello"), req: req, vals: http.Header{
				"X-User-Id": {"forged"}, "X-Other": {"1"}, "X_user_role": {"admin"}, "X-User-Groups": {"undeclared"}}}
			req.ContentLength = -1
			resp, err := c.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.ProtoMajor != 2 {
				t.Fatalf("proto %s", resp.Proto)
			}
			got := append(authsvc.take(), docservice.take()...)
			if len(got) != 1 {
				t.Fatalf("status %d, upstream requests %d", resp.StatusCode, len(got))
			}
			want := verifiedIdentity
			if strings.HasPrefix(path, "/api/auth") {
				want = nil
			}
			checkIdentity(t, got, want)
		})
	}
}

// Held: more path and framing tricks against the repository Caddyfile.
// Nothing reaches /internal, no identity passes without a token, and no
// forged identity passes with one.
func TestReviewPathAndFramingHeld(t *testing.T) {
	e, authsvc, docservice := repoEdge(t)
	valid := signed(t, key(t, 0), hdr(t, key(t, 0)), claims())
	waitHealthy(t, e, "doc-service")
	for _, tc := range []struct{ name, req string }{
		{"/%61pi/users/me", get("/%61pi/users/me", "X-User-Id: x")},
		{"//api/users/me", get("//api/users/me", "X-User-Id: x")},
		{"/api/auth/..%2f..%2fapi/users/me", get("/api/auth/..%2f..%2fapi/users/me", "X-User-Id: x")},
		{"/api/auth/.%2e/users/me", get("/api/auth/.%2e/users/me", "X-User-Id: x")},
		{"/api/auth/..;/users/me", get("/api/auth/..;/users/me", "X-User-Id: x")},
		{"/api/auth/..\\users\\me", get("/api/auth/..\\users\\me", "X-User-Id: x")},
		{"/api/auth/x/../../internal/revocations", get("/api/auth/x/../../internal/revocations")},
		{"/api/auth/%2e%2e/%2e%2e/internal/revocations", get("/api/auth/%2e%2e/%2e%2e/internal/revocations")},
		{"/%69nternal/revocations", get("/%69nternal/revocations")},
		{"/internal%2frevocations", get("/internal%2frevocations")},
		{"/.well-known/jwks.json/../../internal/revocations", get("/.well-known/jwks.json/../../internal/revocations")},
		{"abs-form /api/auth/../users/me", get("http://evil/api/auth/../users/me", "X-User-Id: x")},
		{"abs-form /internal", get("http://edge.test/internal/revocations", bearer(valid))},
		{"valid token, /api/x/..%2f..%2finternal", get("/api/x/..%2f..%2finternal/revocations", bearer(valid))},
		{"HTTP/1.0 forged on public", "GET /api/auth/login HTTP/1.0\r\nX-User-Id: x\r\nx_user_role: admin\r\n\r\n"},
		{"obs-fold", "GET /api/auth/login HTTP/1.1\r\nHost: edge.test\r\nX-Foo: a\r\n X-User-Id: x\r\nConnection: close\r\n\r\n"},
		{"Expect 100-continue forged", "POST /api/documents/1 HTTP/1.1\r\nHost: edge.test\r\n" + bearer(valid) + "\r\nExpect: 100-continue\r\nX-User-Role: admin\r\nContent-Length: 2\r\nConnection: close\r\n\r\nhi"},
		{"CL+TE smuggling", "POST /api/auth/login HTTP/1.1\r\nHost: edge.test\r\nContent-Length: 60\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n0\r\n\r\nGET /internal/revocations HTTP/1.1\r\nHost: x\r\nX-User-Id: a\r\n\r\n"},
		{"CONNECT path form", "CONNECT /api/auth/x/../../internal/revocations HTTP/1.1\r\nHost: edge.test\r\nConnection: close\r\n\r\n"},
		{"Upgrade h2c on public", "GET /api/auth/login HTTP/1.1\r\nHost: edge.test\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\nConnection: Upgrade, HTTP2-Settings, X-User-Id\r\nX-User-Id: a\r\n\r\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			authsvc.take()
			docservice.take()
			e.raw(t, tc.req)
			// raw returns at the first response (a 100 Continue for the
			// Expect case): let the proxied request land before taking.
			time.Sleep(200 * time.Millisecond)
			for _, r := range append(authsvc.take(), docservice.take()...) {
				if strings.Contains(r.path, "internal") {
					t.Errorf("reached %s", r.path)
				}
				id := r.header.Get("X-User-Id")
				if id != "" && (id != testSubject || !strings.Contains(tc.req, "Bearer")) {
					t.Errorf("upstream got X-User-Id %q on %s %s", id, r.method, r.path)
				}
				if r.header.Get("X-User-Role") == "admin" {
					t.Errorf("forged role passed")
				}
			}
		})
	}
}

// A path whose dot segments an upstream resolves differently from Caddy
// is refused at the edge, on every route, before anything else. Found in
// review: "/api/auth/a%2fb%2fc/../../../internal/revocations" is the public
// /api/auth/* route to Caddy (it decodes, then removes dot segments) and
// /internal/revocations to an upstream that removes them first; Go's
// ServeMux only redirected it (307), a router that serves such paths would
// have served the revocation feed without a token. Paths with dots inside
// a segment still pass.
func TestReviewDotSegmentsRefused(t *testing.T) {
	e, authsvc, docservice := repoEdge(t)
	valid := signed(t, key(t, 0), hdr(t, key(t, 0)), claims())
	waitHealthy(t, e, "doc-service")
	for _, tc := range []struct {
		path  string
		lines []string
	}{
		{"/api/auth/a%2fb%2fc/../../../internal/revocations", nil},
		{"/api/settings/documents/a%2fb%2fc%2fd%2fe/../../../../../plugin/settings", []string{bearer(valid)}},
		{"/api/documents/a%2fb/../../../internal/revocations", []string{bearer(valid)}},
		{"/api/auth/../users/me", nil},
		{"/api/auth/./login", nil},
		{"/api/auth/%2e%2e/internal/revocations", nil},
		{"/api/auth/%2E/login", nil},
		{"/api/auth/..%5cinternal%5crevocations", nil},
		{"/api/auth/x\\..\\..\\internal", nil},
		{"/documents/..", nil},
		{"/.", nil},
	} {
		t.Run(tc.path, func(t *testing.T) {
			authsvc.take()
			docservice.take()
			resp := e.raw(t, get(tc.path, tc.lines...))
			if resp.status != 400 || !strings.HasPrefix(resp.body, `{"detail":`) {
				t.Errorf("status %d, want 400; body %q", resp.status, resp.body)
			}
			if got := append(authsvc.take(), docservice.take()...); len(got) != 0 {
				t.Errorf("reached an upstream: %+v", got)
			}
		})
	}
	// Dots inside a segment are names, not dot segments.
	for _, p := range []string{"/api/auth/v1.2/login", "/api/auth/..x/login", "/api/auth/login..."} {
		authsvc.take()
		if resp := e.raw(t, get(p)); resp.status != 200 || len(authsvc.take()) != 1 {
			t.Errorf("%s: %d, want it at authsvc", p, resp.status)
		}
	}
	docservice.take()
	if resp := e.raw(t, get("/api/documents/report.v2..final", bearer(valid))); resp.status != 200 || len(docservice.take()) != 1 {
		t.Errorf("document path with dots: %d, want it at docservice", resp.status)
	}
}

// Headers that tell an upstream which URL, method or client address a
// request has are the edge's to set, not a client's: a client's
// X-Original-URL or X-HTTP-Method-Override would route a framework that
// honours them (Symfony, Laravel, Express, Spring) past the route the
// edge checked, and its X-Real-IP would be believed. Found in review:
// all reached plugins as sent. Caddy's own X-Forwarded-For/-Host/-Proto
// still arrive, with the edge's values.
func TestReviewRoutingHeadersStripped(t *testing.T) {
	e, authsvc, docservice := repoEdge(t)
	valid := signed(t, key(t, 0), hdr(t, key(t, 0)), claims())
	waitHealthy(t, e, "doc-service")
	forged := []string{
		"X-Original-URL: /internal/revocations", "X-Rewrite-URL: /internal/revocations",
		"X-HTTP-Method-Override: DELETE", "X-Method-Override: DELETE", "X-HTTP-Method: DELETE",
		"X-Original-Method: DELETE", "X-Forwarded-Prefix: /admin", "X_Forwarded_Prefix: /admin",
		"Forwarded: for=1.2.3.4;host=evil.example", "X-Real-IP: 1.2.3.4", "True-Client-IP: 1.2.3.4",
		"X-Envoy-Original-Path: /internal/revocations", "X-Forwarded-Port: 1", "X-Forwarded-For: 1.2.3.4",
	}
	for _, tc := range []struct {
		name     string
		req      string
		upstream *upstream
	}{
		{"plugin route", get("/api/documents/7", append([]string{bearer(valid)}, forged...)...), docservice},
		{"public route", get("/api/auth/login", forged...), authsvc},
	} {
		t.Run(tc.name, func(t *testing.T) {
			authsvc.take()
			docservice.take()
			if resp := e.raw(t, tc.req); resp.status != 200 {
				t.Fatalf("status %d %q", resp.status, resp.body)
			}
			got := tc.upstream.take()
			if len(got) != 1 {
				t.Fatalf("upstream got %d requests", len(got))
			}
			for name := range got[0].header {
				switch strings.ToLower(strings.ReplaceAll(name, "_", "-")) {
				case "x-real-ip":
					// The public route's authsvc gets the edge's own
					// (Caddy's {client_ip}), which its login rate limit
					// counts by; the client's never.
					if tc.upstream != authsvc || name != "X-Real-Ip" || !slices.Equal(got[0].header[name], []string{"127.0.0.1"}) {
						t.Errorf("%s reached the upstream: %q", name, got[0].header[name])
					}
				case "x-original-url", "x-rewrite-url", "x-http-method-override", "x-method-override", "x-http-method",
					"x-original-method", "x-forwarded-prefix", "forwarded", "true-client-ip",
					"x-envoy-original-path", "x-forwarded-port":
					t.Errorf("%s reached the upstream: %q", name, got[0].header[name])
				}
			}
			if ip := got[0].header.Get("X-Real-IP"); tc.upstream == authsvc && ip != "127.0.0.1" {
				t.Errorf("authsvc's X-Real-IP %q, want the edge's view of the client", ip)
			}
			if xff := got[0].header.Get("X-Forwarded-For"); xff != "127.0.0.1" {
				t.Errorf("X-Forwarded-For %q, want the edge's view of the client", xff)
			}
			if got[0].header.Get("X-Forwarded-Proto") != "http" || got[0].header.Get("X-Forwarded-Host") == "" {
				t.Errorf("Caddy's forwarding headers missing: %v", got[0].header)
			}
		})
	}
}

// A refusal goes out before the body it refuses. Found in review: Go's
// server, finding the body wrapped (Caddy wraps it), read up to 256 KiB of
// it before sending the 401, so a client waiting for the answer first
// (Expect: 100-continue, a slow or partial upload) got nothing until it
// sent that much or timed out. Refusals of requests with a body now close
// the connection after the answer; bodiless ones keep it.
func TestReviewRefusalDoesNotWaitForTheBody(t *testing.T) {
	e, _, _ := repoEdge(t)
	for _, tc := range []struct{ name, req string }{
		{"Expect: 100-continue", "POST /api/documents HTTP/1.1\r\nHost: edge.test\r\nContent-Type: application/pdf\r\nContent-Length: 20000000\r\nExpect: 100-continue\r\n\r\n"},
		{"part of a large body", "POST /api/documents HTTP/1.1\r\nHost: edge.test\r\nContent-Type: application/pdf\r\nContent-Length: 20000000\r\n\r\n" + strings.Repeat("x", 100000)},
		{"part of a chunked body", "POST /api/users/me HTTP/1.1\r\nHost: edge.test\r\nTransfer-Encoding: chunked\r\n\r\n10\r\n0123456789abcdef\r\n"},
		{"a dot-segment path with a body", "POST /api/auth/../users/me HTTP/1.1\r\nHost: edge.test\r\nContent-Length: 1000000\r\n\r\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := net.DialTimeout("tcp", e.addr, 5*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if _, err := io.WriteString(c, tc.req); err != nil {
				t.Fatal(err)
			}
			_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err != nil {
				t.Fatalf("no answer within 2 s: %v", err)
			}
			resp.Body.Close()
			// ReadResponse moves "Connection: close" into resp.Close.
			if (resp.StatusCode != 401 && resp.StatusCode != 400) || !resp.Close {
				t.Errorf("%d, Connection: close %v", resp.StatusCode, resp.Close)
			}
		})
	}
	// A bodiless refusal keeps the connection: a second request on it is
	// answered too.
	c, err := net.DialTimeout("tcp", e.addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	rd := bufio.NewReader(c)
	for i := range 2 {
		if _, err := io.WriteString(c, "GET /api/users/me HTTP/1.1\r\nHost: edge.test\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(rd, nil)
		if err != nil {
			t.Fatalf("bodiless refusal %d: %v", i+1, err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 401 || resp.Close {
			t.Errorf("bodiless refusal %d: %d, Connection: close %v", i+1, resp.StatusCode, resp.Close)
		}
	}
}

// Behind a load balancer, the Caddyfile's commented servers block (with
// the load balancer's address) makes authsvc's X-Real-IP, which its login
// rate limit counts by, the address the load balancer saw, whatever the
// client wrote into X-Forwarded-For (found in review: with
// trusted_proxies alone, Caddy took the client's left-most entry, and
// every login got a fresh bucket).
func TestReviewTrustedProxiesKeepClientAddress(t *testing.T) {
	src, err := os.ReadFile(filepath.Join(repoRoot, "Caddyfile"))
	if err != nil {
		t.Fatal(err)
	}
	const commented = "\t# servers {\n\t# \ttrusted_proxies static 10.0.0.0/8\n\t# \ttrusted_proxies_strict\n\t# }\n"
	cfg := strings.Replace(string(src), commented,
		"\tservers {\n\t\ttrusted_proxies static 127.0.0.1/32\n\t\ttrusted_proxies_strict\n\t}\n", 1)
	if cfg == string(src) {
		t.Fatal("the Caddyfile has no commented servers block to uncomment")
	}
	path := filepath.Join(t.TempDir(), "Caddyfile")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	authsvc := newUpstream(t, jwks(t, key(t, 0)))
	docservice := newUpstream(t, nil)
	docservice.manifest.Store(&docserviceManifest)
	e := startEdge(t, path, map[string]string{
		"AUTHSVC_UPSTREAM": authsvc.addr(), "DOCSERVICE_UPSTREAM": docservice.addr(), "GATEHOUSE_WEB_ROOT": t.TempDir(),
	})
	for _, forged := range []string{"203.0.113.1", "203.0.113.2, 203.0.113.3", "not-an-address"} {
		resp := e.raw(t, "POST /api/auth/login HTTP/1.1\r\nHost: edge.test\r\nX-Forwarded-For: "+forged+", 198.51.100.7\r\n"+
			"X-Real-IP: 203.0.113.9\r\nContent-Length: 0\r\n\r\n")
		if resp.status != 200 {
			t.Fatalf("status %d", resp.status)
		}
		got := authsvc.take()
		if len(got) != 1 {
			t.Fatalf("%d requests at authsvc", len(got))
		}
		if ip := got[0].header.Values("X-Real-IP"); !slices.Equal(ip, []string{"198.51.100.7"}) {
			t.Errorf("X-Forwarded-For %q: authsvc's X-Real-IP %q, want the address the load balancer saw", forged, ip)
		}
	}
}
