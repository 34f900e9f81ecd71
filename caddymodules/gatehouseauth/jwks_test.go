package gatehouseauth

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/go-jose/go-jose/v4"
	"go.uber.org/zap"

	"github.com/gatehouse/gatehouse/internal/accesstoken"
)

func TestParseJWKS(t *testing.T) {
	good := testKey(t, 0)
	goodJWK, _ := accesstoken.PublicJWK(&good.PublicKey)
	small, _ := rsa.GenerateKey(rand.Reader, 1024)
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	edPub, _, _ := ed25519.GenerateKey(rand.Reader)
	entry := func(k jose.JSONWebKey) json.RawMessage {
		b, err := k.MarshalJSON()
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	doc := func(entries ...json.RawMessage) []byte {
		b, _ := json.Marshal(map[string]any{"keys": entries})
		return b
	}
	withKID := func(k jose.JSONWebKey, kid string) jose.JSONWebKey { k.KeyID = kid; return k }
	tests := []struct {
		name     string
		data     []byte
		wantKIDs []string
		wantErr  bool
		skipped  int
	}{
		{"one good key", doc(entry(goodJWK)), []string{goodJWK.KeyID}, false, 0},
		{"use and alg may be absent", doc(entry(jose.JSONWebKey{Key: &good.PublicKey, KeyID: "k"})), []string{"k"}, false, 0},
		{"public keys of every supported kind kept", doc(
			entry(goodJWK),
			entry(jose.JSONWebKey{Key: &ec.PublicKey, KeyID: "ec", Algorithm: "ES256"}),
			entry(jose.JSONWebKey{Key: &ec.PublicKey, KeyID: "ec-no-alg"}),
			entry(jose.JSONWebKey{Key: edPub, KeyID: "ed", Algorithm: "EdDSA"}),
			entry(jose.JSONWebKey{Key: &good.PublicKey, KeyID: "rs512", Algorithm: "RS512"}),
		), []string{goodJWK.KeyID, "ec", "ec-no-alg", "ed", "rs512"}, false, 0},
		{"odd keys skipped, good kept", doc(
			entry(goodJWK),
			entry(jose.JSONWebKey{Key: &small.PublicKey, KeyID: "small"}),
			entry(jose.JSONWebKey{Key: &good.PublicKey, KeyID: "enc", Use: "enc"}),
			entry(jose.JSONWebKey{Key: &good.PublicKey}),
			entry(jose.JSONWebKey{Key: good, KeyID: "private"}),
			json.RawMessage(`{"kty":"RSA","kid":"broken","n":"!!","e":"AQAB"}`),
			// An alg the key cannot serve, or one never allowed.
			entry(jose.JSONWebKey{Key: &ec.PublicKey, KeyID: "ec-rs256", Algorithm: "RS256"}),
			entry(jose.JSONWebKey{Key: &ec.PublicKey, KeyID: "ec-es384", Algorithm: "ES384"}),
			entry(jose.JSONWebKey{Key: &good.PublicKey, KeyID: "rsa-hs256", Algorithm: "HS256"}),
			entry(jose.JSONWebKey{Key: &good.PublicKey, KeyID: "rsa-none", Algorithm: "none"}),
			// A shared secret is not a public key.
			json.RawMessage(`{"kty":"oct","kid":"secret","k":"c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0","alg":"HS256"}`),
		), []string{goodJWK.KeyID}, false, 10},
		{"kid published twice is dropped", doc(entry(withKID(goodJWK, "dup")), entry(withKID(goodJWK, "dup")), entry(goodJWK)),
			[]string{goodJWK.KeyID}, false, 1},
		{"no usable key", doc(entry(jose.JSONWebKey{Key: &small.PublicKey, KeyID: "small"})), nil, true, 1},
		{"empty set", []byte(`{"keys":[]}`), nil, true, 0},
		{"no keys member", []byte(`{}`), nil, true, 0},
		{"not JSON", []byte(`<html>`), nil, true, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ks, skipped, err := parseJWKS(tt.data)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tt.wantErr)
			}
			if len(skipped) != tt.skipped {
				t.Errorf("skipped = %q, want %d entries", skipped, tt.skipped)
			}
			if err != nil {
				return
			}
			if len(ks.keys) != len(tt.wantKIDs) {
				t.Fatalf("keys = %v, want %v", ks.keys, tt.wantKIDs)
			}
			for _, kid := range tt.wantKIDs {
				if ks.get(kid) == nil {
					t.Errorf("kid %q missing", kid)
				}
			}
		})
	}
}

func TestParseMaxAge(t *testing.T) {
	for _, tt := range []struct {
		in   []string
		want time.Duration
	}{
		{nil, 0},
		{[]string{"public"}, 0},
		{[]string{"public, max-age=600"}, 10 * time.Minute},
		{[]string{"MAX-AGE=30"}, 30 * time.Second},
		{[]string{`max-age="120"`}, 2 * time.Minute},
		{[]string{"max-age=99999999"}, maxMaxAge},
		{[]string{"max-age=0"}, time.Nanosecond},
		{[]string{"no-store"}, time.Nanosecond},
		{[]string{"max-age=-5"}, 0},
		{[]string{"max-age=abc", "max-age=60"}, time.Minute},
	} {
		if got := parseMaxAge(tt.in); got != tt.want {
			t.Errorf("parseMaxAge(%q) = %v, want %v", tt.in, got, tt.want)
		}
	}
}

// jwksServer is a JWKS endpoint a test can change, break and count.
type jwksServer struct {
	mu      sync.Mutex
	body    []byte
	status  int
	header  http.Header
	fetches atomic.Int64
	srv     *httptest.Server
}

func newJWKSServer(t *testing.T, body []byte) *jwksServer {
	s := &jwksServer{body: body, status: http.StatusOK, header: http.Header{}}
	s.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.fetches.Add(1)
		s.mu.Lock()
		defer s.mu.Unlock()
		for k, v := range s.header {
			w.Header()[k] = v
		}
		if etag := s.header.Get("ETag"); etag != "" && r.Header.Get("If-None-Match") == etag {
			w.WriteHeader(http.StatusNotModified)
			return
		}
		w.WriteHeader(s.status)
		_, _ = w.Write(s.body)
	}))
	t.Cleanup(s.srv.Close)
	return s
}

func (s *jwksServer) set(status int, body []byte) {
	s.mu.Lock()
	s.status, s.body = status, body
	s.mu.Unlock()
}

func testFetcher(t *testing.T, url string) *jwksFetcher {
	f := newJWKSFetcher(fetcherConfig{URL: url, RefreshInterval: time.Hour, UnknownKIDInterval: time.Hour, Timeout: 2 * time.Second}, zap.NewNop())
	return f
}

// loadedFetcher runs a fetcher of url (refreshing hourly, on an unknown
// kid at most every unknownKID) until the test ends, past its first fetch.
func loadedFetcher(t *testing.T, url string, unknownKID time.Duration) *jwksFetcher {
	t.Helper()
	f := newJWKSFetcher(fetcherConfig{URL: url, RefreshInterval: time.Hour, UnknownKIDInterval: unknownKID,
		Timeout: time.Second}, zap.NewNop())
	f.start()
	t.Cleanup(func() { _ = f.Destruct() })
	<-f.firstDone
	return f
}

func TestFetcherRefresh(t *testing.T) {
	k0, k1 := testKey(t, 0), testKey(t, 1)
	kid0, _ := accesstoken.KeyID(&k0.PublicKey)
	kid1, _ := accesstoken.KeyID(&k1.PublicKey)
	srv := newJWKSServer(t, jwksJSON(t, k0))
	f := testFetcher(t, srv.srv.URL)
	ctx := context.Background()

	// One tick, driven by hand: the loop's logic without its timer.
	if next := f.refresh(ctx, "periodic"); next != time.Hour {
		t.Fatalf("next = %v, want the refresh interval", next)
	}
	first := f.current().get(kid0)
	if first == nil {
		t.Fatal("key not loaded")
	}

	// Cache-Control max-age wins over the interval, within bounds.
	srv.header.Set("Cache-Control", "max-age=5")
	if next := f.refresh(ctx, "periodic"); next != minMaxAge {
		t.Fatalf("next = %v, want %v", next, minMaxAge)
	}
	srv.header.Set("Cache-Control", "max-age=86400")
	if next := f.refresh(ctx, "periodic"); next != maxMaxAge {
		t.Fatalf("next = %v, want %v", next, maxMaxAge)
	}
	// An unchanged key keeps its pointer, so cached tokens stay valid.
	if f.current().get(kid0) != first {
		t.Fatal("unchanged key was replaced")
	}

	// Failures keep the last good set and back off.
	for i, body := range [][]byte{nil, []byte("garbage"), []byte(`{"keys":[]}`), make([]byte, MaxJWKSBytes+10)} {
		status := http.StatusOK
		if body == nil {
			status = http.StatusBadGateway
		}
		srv.set(status, body)
		next := f.refresh(ctx, "periodic")
		if want := firstRetry << i; next != want {
			t.Errorf("failure %d: next = %v, want %v", i, next, want)
		}
		if f.current().get(kid0) != first {
			t.Fatalf("failure %d lost the last good key set", i)
		}
	}

	// Rotation: the new set replaces the old one.
	srv.set(http.StatusOK, jwksJSON(t, k1))
	f.refresh(ctx, "periodic")
	if f.current().get(kid0) != nil || f.current().get(kid1) == nil {
		t.Fatal("rotation not applied")
	}

	// ETag: a 304 keeps the set.
	srv.header.Set("ETag", `"v2"`)
	f.refresh(ctx, "periodic")
	before := f.current()
	f.refresh(ctx, "periodic")
	if f.current() != before {
		t.Fatal("304 replaced the key set")
	}
}

func TestFetcherRefusesRedirect(t *testing.T) {
	good := newJWKSServer(t, jwksJSON(t, testKey(t, 0)))
	redirect := httptest.NewServer(http.RedirectHandler(good.srv.URL, http.StatusFound))
	defer redirect.Close()
	f := testFetcher(t, redirect.URL)
	f.refresh(context.Background(), "periodic")
	if f.current() != nil || good.fetches.Load() != 0 {
		t.Fatal("followed a redirect")
	}
}

// At startup with authsvc down, lookups say "no keys" (503, not 401); once
// it is up, the first requested refresh loads the set.
func TestFetcherDownAtStartThenUp(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens: connection refused

	k0 := testKey(t, 0)
	kid0, _ := accesstoken.KeyID(&k0.PublicKey)
	f := newJWKSFetcher(fetcherConfig{URL: "http://" + addr + "/jwks", RefreshInterval: time.Hour,
		UnknownKIDInterval: 50 * time.Millisecond, Timeout: time.Second}, zap.NewNop())
	f.start()
	defer f.Destruct()

	if _, err := f.key(context.Background(), kid0); !errors.Is(err, accesstoken.ErrNoKeys) {
		t.Fatalf("down: err = %v, want ErrNoKeys", err)
	}
	if ra := f.retryAfter(); ra < time.Second || ra > time.Minute {
		t.Fatalf("retryAfter = %v", ra)
	}

	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write(jwksJSON(t, k0))
	})}
	ln, err = net.Listen("tcp", addr)
	if err != nil {
		t.Skipf("port %s taken meanwhile: %v", addr, err)
	}
	go srv.Serve(ln)
	defer srv.Close()

	deadline := time.Now().Add(5 * time.Second)
	for {
		k, err := f.key(context.Background(), kid0)
		if err == nil && k != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("keys never loaded: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// A new kid is found after one refresh, which the request waits for.
func TestFetcherRotationSingleRefresh(t *testing.T) {
	k0, k1 := testKey(t, 0), testKey(t, 1)
	kid1, _ := accesstoken.KeyID(&k1.PublicKey)
	srv := newJWKSServer(t, jwksJSON(t, k0))
	f := loadedFetcher(t, srv.srv.URL, time.Hour)
	if n := srv.fetches.Load(); n != 1 {
		t.Fatalf("fetches at start = %d", n)
	}

	srv.set(http.StatusOK, jwksJSON(t, k0, k1))
	k, err := f.key(context.Background(), kid1)
	if err != nil || k == nil {
		t.Fatalf("new kid not found after refresh: %v", err)
	}
	if n := srv.fetches.Load(); n != 2 {
		t.Fatalf("fetches = %d, want 2", n)
	}
}

// An unknown kid while authsvc cannot be reached may be a key published
// since (a rotation during an outage): the answer is "keys unavailable"
// (503 and Retry-After at the edge), not "unknown kid" (401, which signs
// the user out). Once authsvc answers again, an unknown kid is unknown.
func TestFetcherUnknownKidWhileFailing(t *testing.T) {
	k0, k1 := testKey(t, 0), testKey(t, 1)
	kid1, _ := accesstoken.KeyID(&k1.PublicKey)
	srv := newJWKSServer(t, jwksJSON(t, k0))
	f := loadedFetcher(t, srv.srv.URL, time.Millisecond)

	srv.set(http.StatusServiceUnavailable, nil)
	if _, err := f.key(context.Background(), kid1); !errors.Is(err, accesstoken.ErrNoKeys) {
		t.Errorf("unknown kid, authsvc down: err = %v, want ErrNoKeys", err)
	}
	srv.set(http.StatusOK, jwksJSON(t, k0))
	time.Sleep(5 * time.Millisecond) // past the unknown-kid interval
	if k, err := f.key(context.Background(), kid1); k != nil || err != nil {
		t.Errorf("unknown kid, authsvc up: %v %v, want nothing", k, err)
	}
}

// The loop refreshes on its own period: a key added to the JWKS (and one
// withdrawn) shows up with no token asking for it, and the fetches keep
// coming at about the interval, not faster.
func TestFetcherPeriodicRefresh(t *testing.T) {
	k0, k1 := testKey(t, 0), testKey(t, 1)
	kid0, _ := accesstoken.KeyID(&k0.PublicKey)
	kid1, _ := accesstoken.KeyID(&k1.PublicKey)
	srv := newJWKSServer(t, jwksJSON(t, k0))
	const interval = 150 * time.Millisecond
	f := newJWKSFetcher(fetcherConfig{URL: srv.srv.URL, RefreshInterval: interval,
		UnknownKIDInterval: time.Hour, Timeout: time.Second}, zap.NewNop())
	f.start()
	defer f.Destruct()
	<-f.firstDone
	start := time.Now()
	srv.set(http.StatusOK, jwksJSON(t, k1))
	for f.keys.Load().get(kid1) == nil {
		if time.Since(start) > 5*time.Second {
			t.Fatalf("rotated key not picked up by the periodic refresh (%d fetches)", srv.fetches.Load())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if f.keys.Load().get(kid0) != nil {
		t.Error("withdrawn key still in the set")
	}
	time.Sleep(4 * interval)
	elapsed := time.Since(start)
	n := srv.fetches.Load() - 1 // after the first
	if max := int64(elapsed/interval) + 1; n < 2 || n > max {
		t.Errorf("%d periodic fetches in %v, want 2..%d", n, elapsed, max)
	}
}

// Made-up kids cannot make the edge hammer authsvc: 1000 concurrent
// lookups of random kids cost at most one fetch per interval.
func TestFetcherRefreshStormBounded(t *testing.T) {
	srv := newJWKSServer(t, jwksJSON(t, testKey(t, 0)))
	f := loadedFetcher(t, srv.srv.URL, time.Hour)

	var wg sync.WaitGroup
	for i := range 1000 {
		wg.Go(func() {
			if k, err := f.key(context.Background(), fmt.Sprintf("random-%d", i)); k != nil || err != nil {
				t.Errorf("random kid: %v %v", k, err)
			}
		})
	}
	wg.Wait()
	if n := srv.fetches.Load(); n > 2 {
		t.Fatalf("fetches = %d, want at most 2", n)
	}
}

func TestStaticKeysFile(t *testing.T) {
	dir := t.TempDir()
	k0 := testKey(t, 0)
	kid0, _ := accesstoken.KeyID(&k0.PublicKey)
	good := writeFile(t, dir, "good.json", jwksJSON(t, k0))
	src, _, err := loadJWKSFile(good)
	if err != nil {
		t.Fatal(err)
	}
	if k, _ := src.key(context.Background(), kid0); k == nil {
		t.Fatal("key missing")
	}
	for name, data := range map[string][]byte{
		"empty.json":   []byte(`{"keys":[]}`),
		"garbage.json": []byte(`nope`),
		"huge.json":    []byte(`{"keys":[` + strings.Repeat(" ", MaxJWKSBytes) + `]}`),
	} {
		if _, _, err := loadJWKSFile(writeFile(t, dir, name, data)); err == nil {
			t.Errorf("%s accepted", name)
		}
	}
	if _, _, err := loadJWKSFile(dir + "/missing.json"); err == nil {
		t.Error("missing file accepted")
	}
}

// Handlers with the same JWKS settings share one fetcher, also across a
// reload (new config provisioned before the old one is cleaned up); the
// last Cleanup stops it. Many provision/cleanup cycles leak no goroutine.
func TestProvisionCleanupSharesFetcherAndLeaksNothing(t *testing.T) {
	srv := newJWKSServer(t, jwksJSON(t, testKey(t, 0)))
	provision := func() (*Handler, context.CancelFunc) {
		t.Helper()
		ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
		h := &Handler{JWKSURL: srv.srv.URL, Issuer: "gatehouse", Audience: "gatehouse"}
		if err := h.Provision(ctx); err != nil {
			t.Fatal(err)
		}
		if err := h.Validate(); err != nil {
			t.Fatal(err)
		}
		return h, cancel
	}

	old, cancelOld := provision()
	f := old.keys.(*jwksFetcher)
	<-f.firstDone
	// The pool's key as Provision built it (defaults filled in), so the
	// final check below looks up the entry that was really used.
	key := *old.fetcherKey
	if n, ok := fetchers.References(key); !ok || n != 1 {
		t.Fatalf("pool after one Provision: %d references, found %v; want 1", n, ok)
	}
	reloaded, cancelNew := provision()
	if reloaded.keys != old.keys {
		t.Fatal("reload started a second fetcher")
	}
	if n, ok := fetchers.References(key); !ok || n != 2 {
		t.Fatalf("pool during a reload: %d references, found %v; want 2", n, ok)
	}
	old.Cleanup()
	cancelOld()
	select {
	case <-f.done:
		t.Fatal("fetcher stopped while a config still uses it")
	default:
	}
	reloaded.Cleanup()
	cancelNew()
	select {
	case <-f.done:
	case <-time.After(5 * time.Second):
		t.Fatal("fetcher still running after the last Cleanup")
	}

	base := runtime.NumGoroutine()
	for range 50 {
		h, cancel := provision()
		<-h.keys.(*jwksFetcher).firstDone
		h.Cleanup()
		cancel()
	}
	// Goroutines of closed idle connections may take a moment to exit.
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > base+2 {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("goroutines: %d before, %d after 50 reloads\n%s", base, runtime.NumGoroutine(), buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(20 * time.Millisecond)
	}
	if n, ok := fetchers.References(key); ok {
		t.Fatalf("pool still holds %d references", n)
	}
}

// A request waiting on a fetch must not outlive the loop that would have
// done it. A loop can end without serving its waiters: a reload destroys
// the fetcher while an unknown kid's refresh is still queued, or before the
// first fetch began. The loops here are stand-ins that end exactly so (the
// real ones end that way only in a narrow race); the waiters must be
// released when the loop ends, not when the client gives up.
func TestWaitersReleasedWhenLoopStops(t *testing.T) {
	idle := func(ctx context.Context) { <-ctx.Done() } // serves nothing
	released := func(name string, stop func() error, wait func()) {
		t.Helper()
		out := make(chan struct{})
		go func() { wait(); close(out) }()
		time.Sleep(50 * time.Millisecond) // let the waiter block
		select {
		case <-out:
			t.Fatalf("%s: the waiter returned before the loop stopped; the test proves nothing", name)
		default:
		}
		go func() { _ = stop() }()
		select {
		case <-out:
		case <-time.After(3 * time.Second):
			t.Fatalf("%s: the waiter still blocks after the loop stopped", name)
		}
	}
	cfg := fetcherConfig{URL: "http://127.0.0.1:1/jwks", RefreshInterval: time.Hour, UnknownKIDInterval: time.Hour, Timeout: time.Second}

	f := newJWKSFetcher(cfg, zap.NewNop())
	f.background.start(idle)
	released("jwks, first fetch", f.Destruct, func() {
		if _, err := f.key(context.Background(), "k"); err != accesstoken.ErrNoKeys {
			t.Errorf("no keys ever loaded: err %v", err)
		}
	})

	f = newJWKSFetcher(cfg, zap.NewNop())
	ks, _, err := parseJWKS(jwksJSON(t, testKey(t, 0)))
	if err != nil {
		t.Fatal(err)
	}
	f.keys.Store(ks)
	f.background.start(idle)
	released("jwks, queued refresh", f.Destruct, func() {
		if k, _ := f.key(context.Background(), "unknown"); k != nil {
			t.Error("a key for an unknown kid")
		}
	})

	rf := newRevocationFollower(revocationConfig{URL: "http://127.0.0.1:1/feed", Interval: time.Hour}, zap.NewNop())
	rf.background.start(idle)
	released("revocations, first fetch", rf.Destruct, func() {
		if s := rf.current(context.Background()); s != nil {
			t.Errorf("a list from nowhere: %+v", s)
		}
	})
}

// No refresh is put off by more than maxDeferral: with a 30 s
// jwks_unknown_kid_interval, a new kid 5 s after the last refresh is 401
// (the next may come only in 25 s), one 20 s after is 503 until the
// put-off refresh (docs/edge.md; found in review, where the docs said
// none would be put off).
func TestFetcherDeferralBound(t *testing.T) {
	srv := newJWKSServer(t, jwksJSON(t, testKey(t, 0)))
	f := newJWKSFetcher(fetcherConfig{URL: srv.srv.URL, RefreshInterval: time.Hour, UnknownKIDInterval: 30 * time.Second,
		Timeout: time.Second}, zap.NewNop())
	var clock atomic.Int64
	clock.Store(time.Now().UnixNano())
	f.now = func() time.Time { return time.Unix(0, clock.Load()) }
	f.start()
	defer f.Destruct()
	<-f.firstDone
	ctx := context.Background()
	if k, err := f.key(ctx, "made-up-1"); k != nil || err != nil {
		t.Fatalf("first made-up kid (refreshed for): %v %v, want nothing", k, err)
	}
	clock.Add(int64(5 * time.Second))
	if k, err := f.key(ctx, "made-up-2"); k != nil || err != nil {
		t.Errorf("a new kid 25 s before the next refresh is allowed: %v %v, want 401 (nothing)", k, err)
	}
	clock.Add(int64(15 * time.Second))
	if _, err := f.key(ctx, "made-up-3"); !errors.Is(err, accesstoken.ErrNoKeys) {
		t.Errorf("a new kid 10 s before the next refresh is allowed: %v, want ErrNoKeys (503, put off)", err)
	}
}
