package gatehouseauth

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/caddyserver/caddy/v2"
)

func TestParseRevocations(t *testing.T) {
	s, err := parseRevocations([]byte(`{"users":[{"user_id":"u1","not_before":100},{"user_id":"u1","not_before":90},
		{"user_id":"u2","not_before":50}],"sessions":[{"session_id":"s1"}],"future_field":1}`))
	if err != nil {
		t.Fatal(err)
	}
	if s.users["u1"] != 100 || s.users["u2"] != 50 || len(s.sessions) != 1 {
		t.Fatalf("parsed %+v", s)
	}
	for _, bad := range []string{
		``, `null`, `[]`, `{}`, `{"users":[]}`, `{"sessions":[]}`,
		`{"users":[{"user_id":"u1"}],"sessions":[]}`,
		`{"users":[{"not_before":1}],"sessions":[]}`,
		`{"users":[{"user_id":"u1","not_before":"1"}],"sessions":[]}`,
		`{"users":[{"user_id":"u1","not_before":1.5}],"sessions":[]}`,
		`{"users":[],"sessions":[{}]}`,
		`{"users":[],"sessions":["s1"]}`,
	} {
		if _, err := parseRevocations([]byte(bad)); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestRevocationSetRevoked(t *testing.T) {
	s := &revocationSet{
		users:    map[string]int64{"u1": 100},
		sessions: map[string]struct{}{"s-ended": {}},
	}
	tests := []struct {
		name string
		id   identity
		want bool
	}{
		{"issued before the cut-off", identity{userID: "u1", sessionID: "s", issuedAt: 99}, true},
		{"issued at the cut-off", identity{userID: "u1", sessionID: "s", issuedAt: 100}, false},
		{"issued after", identity{userID: "u1", sessionID: "s", issuedAt: 101}, false},
		{"no iat, user with a cut-off", identity{userID: "u1", issuedAt: noIssuedAt}, true},
		{"no iat, other user", identity{userID: "u2", issuedAt: noIssuedAt}, false},
		{"ended session", identity{userID: "u2", sessionID: "s-ended", issuedAt: 500}, true},
		{"other session", identity{userID: "u2", sessionID: "s-live", issuedAt: 500}, false},
		{"no session", identity{userID: "u2", issuedAt: 500}, false},
	}
	for _, tt := range tests {
		if got := s.revoked(&tt.id); got != tt.want {
			t.Errorf("%s: %v, want %v", tt.name, got, tt.want)
		}
	}
}

// feedServer serves a revocation feed the test controls, with ETags.
type feedServer struct {
	srv      *httptest.Server
	mu       sync.Mutex
	status   int
	body     string
	requests atomic.Int64
	notMod   atomic.Int64
}

func newFeedServer(t *testing.T, body string) *feedServer {
	f := &feedServer{status: 200, body: body}
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.requests.Add(1)
		f.mu.Lock()
		status, body := f.status, f.body
		f.mu.Unlock()
		sum := sha256.Sum256([]byte(body))
		etag := `"` + hex.EncodeToString(sum[:8]) + `"`
		if status == 200 && r.Header.Get("If-None-Match") == etag {
			f.notMod.Add(1)
			w.WriteHeader(http.StatusNotModified)
			return
		}
		w.Header().Set("ETag", etag)
		w.WriteHeader(status)
		_, _ = w.Write([]byte(body))
	}))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *feedServer) set(status int, body string) {
	f.mu.Lock()
	f.status, f.body = status, body
	f.mu.Unlock()
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestRevocationFollower(t *testing.T) {
	feed := newFeedServer(t, `{"users":[{"user_id":"u1","not_before":100}],"sessions":[]}`)
	f := newRevocationFollower(revocationConfig{URL: feed.srv.URL, Interval: 20 * time.Millisecond}, zap.NewNop())
	f.start()
	defer f.Destruct()

	if s := f.current(context.Background()); s == nil || s.users["u1"] != 100 {
		t.Fatalf("first list: %+v", s)
	}
	// Unchanged: 304s, same list.
	first := f.set.Load()
	waitFor(t, "a 304", func() bool { return feed.notMod.Load() >= 2 })
	if f.set.Load() != first {
		t.Error("a 304 replaced the list")
	}
	// A new list replaces the old one whole: u1 is gone, s1 is in.
	feed.set(200, `{"users":[],"sessions":[{"session_id":"s1"}]}`)
	waitFor(t, "the new list", func() bool { _, ok := f.set.Load().sessions["s1"]; return ok })
	if len(f.set.Load().users) != 0 {
		t.Error("an entry the feed dropped is still there")
	}
	// A malformed list or an error keeps the last good one.
	good := f.set.Load()
	for _, tc := range []struct {
		status int
		body   string
	}{{200, `{"users":[{"user_id":"u9"}],"sessions":[]}`}, {200, `not json`}, {503, `{"detail":"down"}`}} {
		feed.set(tc.status, tc.body)
		n := feed.requests.Load()
		waitFor(t, "two more polls", func() bool { return feed.requests.Load() >= n+2 })
		if f.set.Load() != good {
			t.Fatalf("%d %q replaced the last good list", tc.status, tc.body)
		}
	}
	// And polling goes on with backoff, not faster than the interval.
	n := feed.requests.Load()
	time.Sleep(200 * time.Millisecond)
	if polls := feed.requests.Load() - n; polls > 10 {
		t.Errorf("%d polls in 200ms of failures at a 20ms interval", polls)
	}
	feed.set(200, `{"users":[{"user_id":"u2","not_before":7}],"sessions":[]}`)
	waitFor(t, "recovery", func() bool { return f.set.Load().users["u2"] == 7 })
}

// After failures the follower waits the interval, then twice as long
// each time, up to maxRevocationsBackoff; a success starts over (the
// polling test above cannot tell a backoff from none: found by test audit).
func TestRevocationBackoff(t *testing.T) {
	feed := newFeedServer(t, `{"users":[],"sessions":[]}`)
	f := newRevocationFollower(revocationConfig{URL: feed.srv.URL, Interval: 20 * time.Millisecond}, zap.NewNop())
	want := []time.Duration{20, 40, 80, 160, 320, 640, 1280, 2560, 5120, 10240, 15000, 15000}
	for i, w := range want {
		if got := f.failed(); got != w*time.Millisecond {
			t.Fatalf("failure %d: backoff %v, want %v", i+1, got, w*time.Millisecond)
		}
	}
	if d := f.refresh(context.Background()); d != 20*time.Millisecond {
		t.Fatalf("after a success: next poll in %v, want the interval", d)
	}
	if got := f.failed(); got != 20*time.Millisecond {
		t.Fatalf("first failure after a success: backoff %v, want the interval", got)
	}
}

func TestRevocationFollowerNeverLoaded(t *testing.T) {
	feed := newFeedServer(t, `x`)
	feed.set(503, "down")
	f := newRevocationFollower(revocationConfig{URL: feed.srv.URL, Interval: 50 * time.Millisecond}, zap.NewNop())
	f.start()
	defer f.Destruct()
	// The first fetch failed: nil, promptly, and a sensible Retry-After.
	if s := f.current(context.Background()); s != nil {
		t.Fatalf("list %+v from a feed that never answered", s)
	}
	if ra := f.retryAfter(); ra < time.Second || ra > time.Minute {
		t.Errorf("retryAfter %v", ra)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if s := f.current(ctx); s != nil {
		t.Fatal("list from nowhere")
	}
}

func TestProvisionSharesRevocationFollower(t *testing.T) {
	feed := newFeedServer(t, `{"users":[],"sessions":[]}`)
	srv := newJWKSServer(t, jwksJSON(t, testKey(t, 0)))
	provision := func() (*Handler, context.CancelFunc) {
		t.Helper()
		ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
		h := &Handler{JWKSURL: srv.srv.URL, Issuer: "gatehouse", Audience: "gatehouse", RevocationsURL: feed.srv.URL}
		if err := h.Provision(ctx); err != nil {
			t.Fatal(err)
		}
		if err := h.Validate(); err != nil {
			t.Fatal(err)
		}
		return h, cancel
	}
	old, cancelOld := provision()
	f := old.revocations
	<-f.firstDone
	reloaded, cancelNew := provision()
	if reloaded.revocations != f {
		t.Fatal("reload started a second follower")
	}
	old.Cleanup()
	cancelOld()
	select {
	case <-f.done:
		t.Fatal("follower stopped while a config still uses it")
	default:
	}
	reloaded.Cleanup()
	cancelNew()
	select {
	case <-f.done:
	case <-time.After(5 * time.Second):
		t.Fatal("follower still running after the last Cleanup")
	}
	if n, ok := followers.References(revocationConfig{URL: feed.srv.URL, Interval: DefaultRevocationsInterval}); ok {
		t.Fatalf("pool still holds %d references", n)
	}
	// strip_only takes no feed, and the URL must be http(s).
	if err := (&Handler{StripOnly: true, RevocationsURL: feed.srv.URL}).Validate(); err == nil {
		t.Error("strip_only with revocations_url validated")
	}
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	defer cancel()
	h := &Handler{JWKSURL: srv.srv.URL, Issuer: "i", Audience: "a", RevocationsURL: "file:///etc/passwd"}
	if err := h.Provision(ctx); err == nil {
		h.Cleanup()
		t.Error("a file: revocations_url provisioned")
	}
}

// revocations_max_age: once the feed has not answered with a list for that
// long, guarded requests get 503 (the edge no longer knows what is
// revoked); without it they keep the last list. The read-time gauge
// stands still while the feed fails (found in review: a feed grown past
// MaxRevocationsBytes failed every poll and the edge kept a stale list
// with nothing to show for it but a warning every 60 failures).
func TestRevocationsMaxAge(t *testing.T) {
	feed := newFeedServer(t, `{"users":[],"sessions":[]}`)
	var clock atomic.Int64
	clock.Store(time.Now().UnixNano())
	interval := caddy.Duration(100 * time.Millisecond)
	bounded := testHandler(t, &clock, func(h *Handler) {
		h.RevocationsURL, h.RevocationsInterval, h.RevocationsMaxAge = feed.srv.URL, interval, caddy.Duration(400*time.Millisecond)
	})
	unbounded := testHandler(t, &clock, func(h *Handler) { h.RevocationsURL, h.RevocationsInterval = feed.srv.URL, interval })
	tok := sign(t, testKey(t, 0), validClaims(time.Now()))
	req := func() *http.Request {
		r := httptest.NewRequest("GET", "http://edge/", nil)
		r.Header.Set("Authorization", "Bearer "+tok)
		return r
	}
	for name, h := range map[string]*Handler{"bounded": bounded, "unbounded": unbounded} {
		if out := serve(h, req()); !out.reached {
			t.Fatalf("%s, feed up: refused: %v", name, out.err)
		}
	}
	if at := gaugeValue(metrics.revocationsReadAt); time.Since(time.Unix(int64(at), 0)) > 5*time.Second {
		t.Errorf("read-time gauge %v, want about now", at)
	}

	stale := metrics.failures.WithLabelValues("stale_revocations")
	before := counterValue(stale)
	feed.set(http.StatusServiceUnavailable, `{"detail":"down"}`)
	n := feed.requests.Load()
	waitFor(t, "a failed poll", func() bool { return feed.requests.Load() > n })
	readAt := gaugeValue(metrics.revocationsReadAt)
	var out served
	waitFor(t, "the bounded handler to refuse", func() bool { out = serve(bounded, req()); return !out.reached })
	if out.status != http.StatusServiceUnavailable || out.header.Get("Retry-After") == "" {
		t.Errorf("stale list: status %d, Retry-After %q; want 503 with Retry-After", out.status, out.header.Get("Retry-After"))
	}
	if age := bounded.revocations.age(); age < 400*time.Millisecond {
		t.Errorf("refused with a list %v old", age)
	}
	if d := counterValue(stale) - before; d < 1 {
		t.Errorf("stale_revocations failures +%v", d)
	}
	if out := serve(unbounded, req()); !out.reached {
		t.Errorf("without revocations_max_age a failing feed keeps the last list; refused: %v", out.err)
	}
	if g := gaugeValue(metrics.revocationsReadAt); g != readAt {
		t.Errorf("read-time gauge moved from %v to %v while the feed failed", readAt, g)
	}

	feed.set(http.StatusOK, `{"users":[],"sessions":[]}`)
	waitFor(t, "the feed back", func() bool { return serve(bounded, req()).reached })
}

func TestRevocationsMaxAgeValidate(t *testing.T) {
	for name, h := range map[string]*Handler{
		"without revocations_url":         {JWKSFile: "k", Issuer: "i", Audience: "a", RevocationsMaxAge: caddy.Duration(time.Minute)},
		"under three intervals":           {JWKSFile: "k", Issuer: "i", Audience: "a", RevocationsURL: "http://a/f", RevocationsMaxAge: caddy.Duration(2 * time.Second)},
		"under three explicit intervals":  {JWKSFile: "k", Issuer: "i", Audience: "a", RevocationsURL: "http://a/f", RevocationsInterval: caddy.Duration(time.Minute), RevocationsMaxAge: caddy.Duration(2 * time.Minute)},
		"strip_only with revocations_max": {StripOnly: true, RevocationsMaxAge: caddy.Duration(time.Minute)},
	} {
		if err := h.Validate(); err == nil {
			t.Errorf("%s: valid", name)
		}
	}
	ok := &Handler{JWKSFile: "k", Issuer: "i", Audience: "a", RevocationsURL: "http://a/f", RevocationsMaxAge: caddy.Duration(3 * time.Second)}
	if err := ok.Validate(); err != nil {
		t.Errorf("three intervals: %v", err)
	}
}
