package authsvc

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestAttemptLimiter(t *testing.T) {
	var clock atomic.Int64
	clock.Store(time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC).UnixNano())
	now := func() time.Time { return time.Unix(0, clock.Load()) }
	l := newAttemptLimiter(6, now) // one attempt every 10 s, six at once
	for i := range 6 {
		if ok, _ := l.allow("a"); !ok {
			t.Fatalf("attempt %d of a full bucket refused", i+1)
		}
	}
	ok, wait := l.allow("a")
	if ok || wait <= 9*time.Second || wait > 10*time.Second {
		t.Fatalf("seventh attempt: ok %v, wait %v; want refused, about 10 s", ok, wait)
	}
	// Refusals do not push the next attempt back.
	for range 5 {
		l.allow("a")
	}
	if ok, _ := l.allow("b"); !ok {
		t.Fatal("another address shares a's bucket")
	}
	clock.Add(int64(10 * time.Second))
	if ok, _ := l.allow("a"); !ok {
		t.Fatal("no attempt 10 s later")
	}
	if ok, _ := l.allow("a"); ok {
		t.Fatal("two attempts 10 s later")
	}
	if ok, _ := (*attemptLimiter)(nil).allow("a"); !ok {
		t.Fatal("a nil limiter refused")
	}
	if newAttemptLimiter(0, now) != nil {
		t.Fatal("AUTH_RATE_LIMIT=0 made a limiter")
	}
}

// The limiter's memory is bounded: past maxLimiterBuckets it drops idle
// addresses first, and keeps a busy one's state while it can.
func TestAttemptLimiterBounded(t *testing.T) {
	var clock atomic.Int64
	clock.Store(time.Now().UnixNano())
	l := newAttemptLimiter(2, func() time.Time { return time.Unix(0, clock.Load()) })
	l.allow("busy")
	l.allow("busy")
	for i := range maxLimiterBuckets - 1 {
		l.allow(strconv.Itoa(i))
	}
	clock.Add(int64(2 * time.Minute)) // every bucket full again, except...
	l.allow("busy")
	l.allow("busy")
	l.allow("one more") // over the bound: the idle ones go
	if n := len(l.buckets); n > maxLimiterBuckets {
		t.Fatalf("%d buckets, bound %d", n, maxLimiterBuckets)
	}
	if ok, _ := l.allow("busy"); ok {
		t.Fatal("eviction dropped the busy address's empty bucket")
	}
}

func TestClientAddress(t *testing.T) {
	for _, tt := range []struct{ remote, realIP, want string }{
		{"192.0.2.7:5555", "", "192.0.2.7"},
		{"127.0.0.1:5555", "198.51.100.4", "198.51.100.4"},
		{"127.0.0.1:5555", "::ffff:198.51.100.4", "198.51.100.4"},
		{"127.0.0.1:5555", "2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64"},
		{"127.0.0.1:5555", "2001:db8:1:2:ffff::1", "2001:db8:1:2::/64"},
		{"127.0.0.1:5555", "not an address", "127.0.0.1"},
		{"127.0.0.1:5555", "198.51.100.4, 10.0.0.1", "127.0.0.1"},
		{"[2001:db8::1%eth0]:5555", "", "2001:db8::/64"},
	} {
		r := httptest.NewRequest("POST", "/api/auth/login", nil)
		r.RemoteAddr = tt.remote
		if tt.realIP != "" {
			r.Header.Set("X-Real-IP", tt.realIP)
		}
		if got := clientAddress(r); got != tt.want {
			t.Errorf("peer %s, X-Real-IP %q: %q, want %q", tt.remote, tt.realIP, got, tt.want)
		}
	}
}

// AUTH_RATE_LIMIT through the HTTP API: past the limit an address gets 429
// with Retry-After before any password is checked, failed and successful
// attempts alike; other addresses, and registration, have buckets of
// their own; a refused login starts no session.
func TestLoginRateLimit(t *testing.T) {
	cfg := testConfig()
	cfg.AttemptsPerMinute = 3
	e := newEnv(t, testPool, cfg)
	u := newUser(t, "user")
	from := func(addr string) http.Header { return http.Header{"X-Real-Ip": {addr}} }
	login := func(addr, password string) *response {
		return e.do(t, req{Method: http.MethodPost, Path: "/api/auth/login", Header: from(addr),
			Body: url.Values{"username": {u.Email}, "password": {password}}})
	}
	sessions := func() int {
		var n int
		if err := testPool.QueryRow(context.Background(), `SELECT count(*) FROM auth.sessions WHERE user_id = $1`, u.ID).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	login("203.0.113.9", "wrong").expect(t, http.StatusUnauthorized)
	login("203.0.113.9", fixturePassword).expect(t, http.StatusOK)
	login("203.0.113.9", fixturePassword).expect(t, http.StatusOK)
	before := sessions()
	r := login("203.0.113.9", fixturePassword).expectError(t, http.StatusTooManyRequests, "Too many attempts")
	if s, err := strconv.Atoi(r.Header.Get("Retry-After")); err != nil || s < 1 || s > 20 {
		t.Errorf("Retry-After %q, want the seconds until the next attempt (about 20)", r.Header.Get("Retry-After"))
	}
	if n := sessions(); n != before {
		t.Errorf("a refused login started a session (%d, was %d)", n, before)
	}
	login("203.0.113.10", fixturePassword).expect(t, http.StatusOK)
	// The session records the edge's view of the client, not the edge.
	var addr string
	if err := testPool.QueryRow(context.Background(), `SELECT remote_addr FROM auth.sessions WHERE user_id = $1
		ORDER BY created_at DESC LIMIT 1`, u.ID).Scan(&addr); err != nil || addr != "203.0.113.10" {
		t.Errorf("session's remote_addr %q (%v), want the X-Real-IP", addr, err)
	}

	register := func(addr string) *response {
		return e.do(t, req{Method: http.MethodPost, Path: "/api/auth/register", Header: from(addr),
			Body: map[string]string{"email": uniqueEmail("limited"), "password": "Limited-Pass-1!"}})
	}
	for i := range 3 {
		if r := register("203.0.113.9"); r.Status != http.StatusCreated {
			t.Fatalf("registration %d: %d %s", i+1, r.Status, r.Body)
		}
	}
	register("203.0.113.9").expectError(t, http.StatusTooManyRequests, "Too many attempts")
	if r := register("2001:db8:5::1"); r.Status != http.StatusCreated {
		t.Fatalf("registration from another address: %d %s", r.Status, r.Body)
	}
}

// Without AUTH_RATE_LIMIT the default applies, and the message names the
// variable when it is wrong.
func TestAuthRateLimitConfig(t *testing.T) {
	base := map[string]string{"DATABASE_URL": "postgres://u:p@db/x"}
	cfg, err := LoadConfig(envMap(base))
	if err != nil || cfg.AttemptsPerMinute != 10 {
		t.Fatalf("default: %v, %v", cfg, err)
	}
	for v, want := range map[string]int{"0": 0, "60": 60} {
		base["AUTH_RATE_LIMIT"] = v
		if cfg, err := LoadConfig(envMap(base)); err != nil || cfg.AttemptsPerMinute != want {
			t.Errorf("AUTH_RATE_LIMIT=%s: %+v, %v", v, cfg, err)
		}
	}
	for _, v := range []string{"-1", "ten", "1000000"} {
		base["AUTH_RATE_LIMIT"] = v
		if _, err := LoadConfig(envMap(base)); err == nil || !strings.Contains(err.Error(), "AUTH_RATE_LIMIT") {
			t.Errorf("AUTH_RATE_LIMIT=%s: %v", v, err)
		}
	}
}
