package gatehouseauth

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// testHandler provisions a handler reading keys 0 and 1 from a file, with a
// clock the test controls.
func testHandler(t *testing.T, clock *atomic.Int64, mutate func(*Handler)) *Handler {
	t.Helper()
	h := &Handler{
		JWKSFile: writeFile(t, t.TempDir(), "jwks.json", jwksJSON(t, testKey(t, 0), testKey(t, 1))),
		Issuer:   "gatehouse",
		Audience: "gatehouse",
		now:      func() time.Time { return time.Unix(0, clock.Load()) },
	}
	if mutate != nil {
		mutate(h)
	}
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	t.Cleanup(cancel)
	if err := h.Provision(ctx); err != nil {
		t.Fatal(err)
	}
	if err := h.Validate(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Cleanup() })
	return h
}

// serve runs one request through h and reports what the next handler saw.
type served struct {
	status  int // of the returned caddyhttp.HandlerError, 0 if next ran
	err     error
	header  http.Header // response headers (WWW-Authenticate, Retry-After)
	reached bool
	seen    http.Header // request headers next saw
	repl    *caddy.Replacer
}

func serve(h *Handler, r *http.Request) served {
	repl := caddy.NewReplacer()
	r = r.WithContext(context.WithValue(r.Context(), caddy.ReplacerCtxKey, repl))
	w := httptest.NewRecorder()
	var out served
	out.repl = repl
	out.err = h.ServeHTTP(w, r, caddyhttp.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
		out.reached = true
		out.seen = r.Header.Clone()
		return nil
	}))
	var he caddyhttp.HandlerError
	if errors.As(out.err, &he) {
		out.status = he.StatusCode
	}
	out.header = w.Header()
	return out
}

func TestServeHTTP(t *testing.T) {
	var clock atomic.Int64
	now := time.Now()
	clock.Store(now.UnixNano())
	h := testHandler(t, &clock, func(h *Handler) {
		h.Cookie = "__Host-gatehouse_at"
		h.AllowPreflight = true
		h.StripHeaders = []string{"X-Tenant-Id"}
	})
	tok := sign(t, testKey(t, 0), validClaims(now))
	other := validClaims(now)
	other.Subject = "someone-else"
	otherTok := sign(t, testKey(t, 1), other)
	unknownKey := sign(t, testKey(t, 2), validClaims(now))

	req := func(method string, hdr ...string) *http.Request {
		r := httptest.NewRequest(method, "http://edge/api/users/me", nil)
		for i := 0; i < len(hdr); i += 2 {
			r.Header.Add(hdr[i], hdr[i+1])
		}
		return r
	}
	tests := []struct {
		name   string
		r      *http.Request
		status int    // 0: reached next with the valid identity
		reason string // for a refusal: the failures_total label it counts under
	}{
		{"bearer", req("GET", "Authorization", "Bearer "+tok), 0, ""},
		{"bearer scheme any case", req("GET", "Authorization", "bearer "+tok), 0, ""},
		{"cookie", req("GET", "Cookie", "__Host-gatehouse_at="+tok), 0, ""},
		{"header wins over cookie", req("GET", "Authorization", "Bearer "+tok, "Cookie", "__Host-gatehouse_at=junk"), 0, ""},
		{"forged identity with a valid token", req("GET", "Authorization", "Bearer "+tok,
			"X-User-Id", "admin", "X-User-Role", "admin", "x_user_groups", "root", "X-Tenant-Id", "t"), 0, ""},
		{"no token", req("GET"), 401, "missing_token"},
		{"basic auth", req("GET", "Authorization", "Basic YTpi"), 401, "missing_token"},
		{"bearer without token", req("GET", "Authorization", "Bearer "), 401, "malformed"},
		{"two tokens in one header", req("GET", "Authorization", "Bearer "+tok+", Bearer "+otherTok), 401, "malformed"},
		{"two tokens folded with a comma only", req("GET", "Authorization", "Bearer "+tok+","+otherTok), 401, "malformed"},
		{"a tab in the token", req("GET", "Authorization", "Bearer "+tok[:10]+"\t"+tok[10:]), 401, "malformed"},
		{"two Authorization headers", req("GET", "Authorization", "Bearer "+tok, "Authorization", "Bearer "+otherTok), 401, "ambiguous_token"},
		{"two cookies", req("GET", "Cookie", "__Host-gatehouse_at="+tok+"; __Host-gatehouse_at="+otherTok), 401, "ambiguous_token"},
		{"token in the query", httptest.NewRequest("GET", "http://edge/api/users/me?access_token="+tok+"&token="+tok, nil), 401, "missing_token"},
		{"unknown key", req("GET", "Authorization", "Bearer "+unknownKey), 401, "unknown_kid"},
		{"oversized", req("GET", "Authorization", "Bearer "+tok+strings.Repeat("A", 9000)), 401, "too_large"},
		{"preflight passes without token", req("OPTIONS", "Access-Control-Request-Method", "GET", "X-User-Id", "forged"), -1, ""},
		{"plain OPTIONS needs a token", req("OPTIONS"), 401, "missing_token"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// Refused for the right reason, not merely refused: each
			// refusal counts once under its reason (the package's tests do
			// not run in parallel, so the counter moves only here).
			before := counterValue(metrics.failures.WithLabelValues(tt.reason))
			out := serve(h, tt.r)
			if tt.reason != "" {
				if d := counterValue(metrics.failures.WithLabelValues(tt.reason)) - before; d != 1 {
					t.Errorf("failures_total{reason=%q} moved by %v, want 1", tt.reason, d)
				}
			}
			switch tt.status {
			case 0:
				if !out.reached {
					t.Fatalf("refused: %v", out.err)
				}
				want := map[string]string{HeaderUserID: "5b0c7a4e-0d5e-4b8f-9a57-8d1c2f9e6a11", HeaderUserRole: "user", HeaderUserGroups: "doc-service-admin,a%2Cb%20c"}
				for k, v := range want {
					if got := out.seen[k]; len(got) != 1 || got[0] != v {
						t.Errorf("%s = %q, want [%q]", k, got, v)
					}
				}
				for k := range out.seen {
					if h.strip.match(k) && want[k] == "" {
						t.Errorf("identity header %s = %q passed", k, out.seen[k])
					}
				}
				if got, _ := out.repl.GetString("http.auth.user.id"); got != want[HeaderUserID] {
					t.Errorf("placeholder id = %q", got)
				}
				if got, _ := out.repl.GetString("http.auth.user.role"); got != "user" {
					t.Errorf("placeholder role = %q", got)
				}
				if got, _ := out.repl.GetString("http.auth.user.groups"); got != want[HeaderUserGroups] {
					t.Errorf("placeholder groups = %q", got)
				}
			case -1:
				if !out.reached {
					t.Fatalf("refused: %v", out.err)
				}
				for k := range out.seen {
					if h.strip.match(k) {
						t.Errorf("identity header %s passed", k)
					}
				}
			default:
				if out.reached || out.status != tt.status {
					t.Fatalf("reached=%v status=%d err=%v, want %d", out.reached, out.status, out.err, tt.status)
				}
				if got := out.header.Get("WWW-Authenticate"); got != `Bearer error="invalid_token"` {
					t.Errorf("WWW-Authenticate = %q", got)
				}
			}
		})
	}
}

// allow_preflight is off by default: a CORS preflight without a token is
// refused like any other request (deny by default), and with the option a
// request that only looks like one (no Access-Control-Request-Method) is not
// let through either.
func TestPreflightNeedsTheOption(t *testing.T) {
	var clock atomic.Int64
	clock.Store(time.Now().UnixNano())
	preflight := func() *http.Request {
		r := httptest.NewRequest("OPTIONS", "http://edge/api/users/me", nil)
		r.Header.Set("Access-Control-Request-Method", "DELETE")
		r.Header.Set("Origin", "https://app.example")
		return r
	}
	off := testHandler(t, &clock, nil)
	if out := serve(off, preflight()); out.reached || out.status != 401 {
		t.Errorf("preflight without allow_preflight: reached=%v status=%d, want 401", out.reached, out.status)
	}
	on := testHandler(t, &clock, func(h *Handler) { h.AllowPreflight = true })
	if out := serve(on, preflight()); !out.reached {
		t.Errorf("preflight with allow_preflight refused: %v", out.err)
	}
	notPreflight := httptest.NewRequest("DELETE", "http://edge/api/users/me", nil)
	notPreflight.Header.Set("Access-Control-Request-Method", "DELETE")
	if out := serve(on, notPreflight); out.reached || out.status != 401 {
		t.Errorf("DELETE with a preflight header: reached=%v status=%d, want 401", out.reached, out.status)
	}
}

// A cached token is re-checked for expiry on every hit, with the
// verifier's leeway, and counts as a hit in the metrics.
func TestCacheHitsAndExpiry(t *testing.T) {
	var clock atomic.Int64
	now := time.Now().Truncate(time.Second)
	clock.Store(now.UnixNano())
	h := testHandler(t, &clock, nil)
	c := validClaims(now)
	c.Expiry = jwtDate(now.Add(time.Minute))
	tok := sign(t, testKey(t, 0), c)
	r := func() *http.Request {
		r := httptest.NewRequest("GET", "http://edge/", nil)
		r.Header.Set("Authorization", "Bearer "+tok)
		return r
	}
	hits := counterValue(metrics.cacheHits)
	verified := counterValue(metrics.verifyOK)
	for range 3 {
		if out := serve(h, r()); !out.reached {
			t.Fatalf("refused: %v", out.err)
		}
	}
	if d := counterValue(metrics.verifyOK) - verified; d != 1 {
		t.Errorf("RSA verifications = %v, want 1", d)
	}
	if d := counterValue(metrics.cacheHits) - hits; d != 2 {
		t.Errorf("cache hits = %v, want 2", d)
	}

	// Inside the leeway the cached token still works ...
	clock.Store(now.Add(time.Minute + 20*time.Second).UnixNano())
	if out := serve(h, r()); !out.reached {
		t.Fatalf("refused inside leeway: %v", out.err)
	}
	// ... past it, the hit is dead and the token refused.
	clock.Store(now.Add(time.Minute + 31*time.Second).UnixNano())
	if out := serve(h, r()); out.reached || out.status != 401 {
		t.Fatalf("expired cached token: reached=%v status=%d", out.reached, out.status)
	}
}

// cache_size 0 turns the cache off: every request pays for a verification
// and none is a hit (an explicit 0 is not "unset, use the default").
func TestCacheSizeZeroVerifiesEveryRequest(t *testing.T) {
	var clock atomic.Int64
	now := time.Now().Truncate(time.Second)
	clock.Store(now.UnixNano())
	h := testHandler(t, &clock, func(h *Handler) { h.CacheSize = ptr(0) })
	tok := sign(t, testKey(t, 0), validClaims(now))
	hits := counterValue(metrics.cacheHits)
	verified := counterValue(metrics.verifyOK)
	for range 3 {
		r := httptest.NewRequest("GET", "http://edge/", nil)
		r.Header.Set("Authorization", "Bearer "+tok)
		if out := serve(h, r); !out.reached {
			t.Fatalf("refused: %v", out.err)
		}
	}
	if d := counterValue(metrics.verifyOK) - verified; d != 3 {
		t.Errorf("RSA verifications = %v, want 3", d)
	}
	if d := counterValue(metrics.cacheHits) - hits; d != 0 {
		t.Errorf("cache hits = %v, want 0", d)
	}
}

func ptr[T any](v T) *T { return &v }

// Withdrawing a key from the JWKS retires the cached tokens it signed.
func TestCacheHitNeedsKeyStillPublished(t *testing.T) {
	srv := newJWKSServer(t, jwksJSON(t, testKey(t, 0)))
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	defer cancel()
	h := &Handler{JWKSURL: srv.srv.URL, Issuer: "gatehouse", Audience: "gatehouse",
		JWKSUnknownKIDInterval: caddy.Duration(time.Hour)}
	if err := h.Provision(ctx); err != nil {
		t.Fatal(err)
	}
	defer h.Cleanup()
	tok := sign(t, testKey(t, 0), validClaims(time.Now()))
	r := func() *http.Request {
		r := httptest.NewRequest("GET", "http://edge/", nil)
		r.Header.Set("Authorization", "Bearer "+tok)
		return r
	}
	if out := serve(h, r()); !out.reached {
		t.Fatalf("refused: %v", out.err)
	}
	srv.set(http.StatusOK, jwksJSON(t, testKey(t, 1)))
	h.keys.(*jwksFetcher).refresh(context.Background(), "periodic")
	if out := serve(h, r()); out.reached {
		t.Fatal("token of a withdrawn key served from the cache")
	}
}

func TestNoKeysIs503WithRetryAfter(t *testing.T) {
	srv := newJWKSServer(t, nil)
	srv.set(http.StatusInternalServerError, nil)
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	defer cancel()
	h := &Handler{JWKSURL: srv.srv.URL, Issuer: "gatehouse", Audience: "gatehouse"}
	if err := h.Provision(ctx); err != nil {
		t.Fatal(err)
	}
	defer h.Cleanup()
	r := httptest.NewRequest("GET", "http://edge/", nil)
	r.Header.Set("Authorization", "Bearer "+sign(t, testKey(t, 0), validClaims(time.Now())))
	out := serve(h, r)
	if out.status != http.StatusServiceUnavailable || out.reached {
		t.Fatalf("status = %d, reached=%v, err=%v", out.status, out.reached, out.err)
	}
	if ra := out.header.Get("Retry-After"); ra == "" || ra == "0" {
		t.Fatalf("Retry-After = %q", ra)
	}
	// A request without a token is still a plain 401.
	if out := serve(h, httptest.NewRequest("GET", "http://edge/", nil)); out.status != 401 {
		t.Fatalf("no token: status %d", out.status)
	}
}

func TestStripOnly(t *testing.T) {
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	defer cancel()
	h := &Handler{StripOnly: true, StripHeaders: []string{"X-Tenant-*"}}
	if err := h.Provision(ctx); err != nil {
		t.Fatal(err)
	}
	if err := h.Validate(); err != nil {
		t.Fatal(err)
	}
	r := httptest.NewRequest("POST", "http://edge/api/auth/login", nil)
	r.Header.Set("X-User-Id", "forged")
	r.Header.Set("X-Tenant-Name", "forged")
	r.Header.Set("Connection", "X-User-Id")
	r.Header.Set("Authorization", "Bearer whatever")
	out := serve(h, r)
	if !out.reached {
		t.Fatalf("strip_only refused: %v", out.err)
	}
	for _, k := range []string{"X-User-Id", "X-Tenant-Name", "Connection"} {
		if v, ok := out.seen[k]; ok {
			t.Errorf("%s = %q passed", k, v)
		}
	}
	if out.seen.Get("Authorization") == "" {
		t.Error("Authorization removed; public routes may need it")
	}
}

func TestValidate(t *testing.T) {
	for _, tt := range []struct {
		name string
		h    Handler
		want string
	}{
		{"ok url", Handler{JWKSURL: "http://x", Issuer: "i", Audience: "a"}, ""},
		{"ok file", Handler{JWKSFile: "/f", Issuer: "i", Audience: "a"}, ""},
		{"ok strip only", Handler{StripOnly: true, StripHeaders: []string{"X-A"}}, ""},
		{"no source", Handler{Issuer: "i", Audience: "a"}, "one of jwks_url or jwks_file"},
		{"both sources", Handler{JWKSURL: "http://x", JWKSFile: "/f", Issuer: "i", Audience: "a"}, "mutually exclusive"},
		{"no issuer", Handler{JWKSURL: "http://x", Audience: "a"}, "issuer is required"},
		{"no audience", Handler{JWKSURL: "http://x", Issuer: "i"}, "audience is required"},
		{"strip only with token settings", Handler{StripOnly: true, Issuer: "i"}, "strip_only takes no token settings"},
		{"empty strip header", Handler{JWKSURL: "http://x", Issuer: "i", Audience: "a", StripHeaders: []string{"*"}}, "names no header"},
		{"negative cache", Handler{JWKSURL: "http://x", Issuer: "i", Audience: "a", CacheSize: ptr(-1)}, "cache_size"},
		{"strip only with cache", Handler{StripOnly: true, CacheSize: ptr(0)}, "strip_only takes no token settings"},
		{"largest cache", Handler{JWKSURL: "http://x", Issuer: "i", Audience: "a", CacheSize: ptr(MaxCacheSize)}, ""},
		{"huge cache", Handler{JWKSURL: "http://x", Issuer: "i", Audience: "a", CacheSize: ptr(MaxCacheSize + 1)}, "cache_size must be at most 1000000"},
		{"shortest intervals", Handler{JWKSURL: "http://x", Issuer: "i", Audience: "a", JWKSRefreshInterval: caddy.Duration(MinFetchInterval),
			JWKSUnknownKIDInterval: caddy.Duration(MinFetchInterval), RevocationsInterval: caddy.Duration(MinFetchInterval)}, ""},
		{"refresh every millisecond", Handler{JWKSURL: "http://x", Issuer: "i", Audience: "a", JWKSRefreshInterval: caddy.Duration(time.Millisecond)},
			"jwks_refresh_interval must be at least 100ms"},
		{"unknown-kid refresh every nanosecond", Handler{JWKSURL: "http://x", Issuer: "i", Audience: "a", JWKSUnknownKIDInterval: 1},
			"jwks_unknown_kid_interval must be at least 100ms"},
		{"revocations every 10ms", Handler{JWKSURL: "http://x", Issuer: "i", Audience: "a", RevocationsURL: "http://x",
			RevocationsInterval: caddy.Duration(10 * time.Millisecond)}, "revocations_interval must be at least 100ms"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.h.Validate()
			if tt.want == "" && err != nil || tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)) {
				t.Fatalf("Validate() = %v, want %q", err, tt.want)
			}
		})
	}
}

func TestProvisionErrors(t *testing.T) {
	dir := t.TempDir()
	for name, h := range map[string]*Handler{
		"unreadable jwks_file": {JWKSFile: dir + "/missing.json", Issuer: "i", Audience: "a"},
		"invalid jwks_file":    {JWKSFile: writeFile(t, dir, "bad.json", []byte(`{"keys":[]}`)), Issuer: "i", Audience: "a"},
		"jwks_url not http":    {JWKSURL: "file:///etc/passwd", Issuer: "i", Audience: "a"},
	} {
		t.Run(name, func(t *testing.T) {
			ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
			defer cancel()
			if err := h.Provision(ctx); err == nil {
				h.Cleanup()
				t.Fatal("Provision succeeded")
			}
		})
	}
}

// Metrics registration survives several handlers in one config and a
// fresh registry per reload.
func TestRegisterMetricsTwice(t *testing.T) {
	for range 2 {
		ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
		for range 2 {
			if err := registerMetrics(ctx.GetMetricsRegistry()); err != nil {
				t.Fatal(err)
			}
		}
		cancel()
	}
}

// Parallel requests with a mix of cached and fresh tokens: run with -race.
func TestServeHTTPParallel(t *testing.T) {
	var clock atomic.Int64
	now := time.Now()
	clock.Store(now.UnixNano())
	h := testHandler(t, &clock, func(h *Handler) { h.CacheSize = ptr(64) })
	toks := make([]string, 8)
	for i := range toks {
		c := validClaims(now)
		c.ID = string(rune('a' + i))
		toks[i] = sign(t, testKey(t, i%2), c)
	}
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			for i := range 50 {
				r := httptest.NewRequest("GET", "http://edge/", nil)
				r.Header.Set("Authorization", "Bearer "+toks[(w+i)%len(toks)])
				if out := serve(h, r); !out.reached {
					t.Errorf("refused: %v", out.err)
					return
				}
			}
		})
	}
	wg.Wait()
}

func counterValue(c prometheus.Counter) float64 {
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		panic(err)
	}
	return m.GetCounter().GetValue()
}

// BenchmarkServeHTTPCached is the handler's own cost per request with a
// cached token: what the edge pays on top of plain Caddy.
func BenchmarkServeHTTPCached(b *testing.B) {
	var clock atomic.Int64
	now := time.Now()
	clock.Store(now.UnixNano())
	h := &Handler{
		JWKSFile: writeFile(b, b.TempDir(), "jwks.json", jwksJSON(b, testKey(b, 0))),
		Issuer:   "gatehouse", Audience: "gatehouse",
	}
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	defer cancel()
	if err := h.Provision(ctx); err != nil {
		b.Fatal(err)
	}
	tok := sign(b, testKey(b, 0), validClaims(now))
	next := caddyhttp.HandlerFunc(func(http.ResponseWriter, *http.Request) error { return nil })
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		repl := caddy.NewReplacer()
		base := httptest.NewRequest("GET", "http://edge/api/users/me", nil)
		base = base.WithContext(context.WithValue(base.Context(), caddy.ReplacerCtxKey, repl))
		hdr := http.Header{"Authorization": {"Bearer " + tok}, "Accept": {"*/*"}, "User-Agent": {"bench"}, "Accept-Encoding": {"gzip"}}
		w := httptest.NewRecorder()
		for pb.Next() {
			r := *base
			r.Header = hdr.Clone()
			if err := h.ServeHTTP(w, &r, next); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// By default the edge consumes the credential it verified: the upstream
// gets the identity, not a bearer token it could replay. forward_token
// keeps it, for upstreams that check tokens themselves (authsvc).
func TestTokenConsumedUnlessForwarded(t *testing.T) {
	var clock atomic.Int64
	now := time.Now()
	clock.Store(now.UnixNano())
	tok := sign(t, testKey(t, 0), validClaims(now))
	const cookie = "__Host-gatehouse_at"
	for _, forward := range []bool{false, true} {
		h := testHandler(t, &clock, func(h *Handler) { h.Cookie = cookie; h.ForwardToken = forward })
		t.Run(fmt.Sprintf("forward_token=%v", forward), func(t *testing.T) {
			// A browser whose SPA sends the header also sends the token
			// cookie: both are credentials, and both go (found in review:
			// the cookie beside a header token reached the upstream).
			r := httptest.NewRequest("GET", "http://edge/x", nil)
			r.Header.Set("Authorization", "Bearer "+tok)
			r.Header.Add("Cookie", cookie+"="+tok+"; theme=dark")
			out := serve(h, r)
			if !out.reached {
				t.Fatalf("refused: %v", out.err)
			}
			if got := out.seen.Get("Authorization"); (got != "") != forward {
				t.Errorf("Authorization %q reached the upstream", got)
			}
			want := []string{"theme=dark"}
			if forward {
				want = []string{cookie + "=" + tok + "; theme=dark"}
			}
			if got := out.seen["Cookie"]; !slices.Equal(got, want) {
				t.Errorf("Cookie = %q, want %q", got, want)
			}

			r = httptest.NewRequest("GET", "http://edge/x", nil)
			r.Header.Add("Cookie", "a=1; "+cookie+"="+tok)
			r.Header.Add("Cookie", "b=2")
			out = serve(h, r)
			if !out.reached {
				t.Fatalf("cookie token refused: %v", out.err)
			}
			want = []string{"a=1", "b=2"}
			if forward {
				want = []string{"a=1; " + cookie + "=" + tok, "b=2"}
			}
			if got := out.seen["Cookie"]; !slices.Equal(got, want) {
				t.Errorf("Cookie = %q, want %q", got, want)
			}

			r = httptest.NewRequest("GET", "http://edge/x", nil)
			r.Header.Set("Cookie", cookie+"="+tok)
			out = serve(h, r)
			if _, ok := out.seen["Cookie"]; ok == !forward {
				t.Errorf("Cookie header = %q", out.seen["Cookie"])
			}
		})
	}
}

// A JSON config (which skips the Caddyfile's checks) cannot enable none or
// HMAC either: Provision refuses it.
func TestProvisionRefusesSymmetricAlgorithms(t *testing.T) {
	for _, algs := range [][]string{{"HS256"}, {"RS256", "none"}, {"rs256"}} {
		h := &Handler{
			JWKSFile: writeFile(t, t.TempDir(), "jwks.json", jwksJSON(t, testKey(t, 0))),
			Issuer:   "gatehouse", Audience: "gatehouse", Algorithms: algs,
		}
		ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
		err := h.Provision(ctx)
		cancel()
		if err == nil || !strings.Contains(err.Error(), "not allowed") {
			t.Errorf("algorithms %q: Provision error %v, want a refusal", algs, err)
		}
	}
}

func gaugeValue(g prometheus.Gauge) float64 {
	var m dto.Metric
	if err := g.Write(&m); err != nil {
		panic(err)
	}
	return m.GetGauge().GetValue()
}
