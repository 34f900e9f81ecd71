package caddymodules_test

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/authsvc"
	"github.com/gatehouse/gatehouse/internal/testdb"
)

// revocationEdge runs a generated Caddyfile whose JWKS and revocation feed
// come from one fake authsvc, in front of a recording upstream; before
// sets the fake authsvc up before the edge starts.
func revocationEdge(t *testing.T, before ...func(auth *upstream)) (*edge, *upstream, *upstream) {
	up := newUpstream(t, nil)
	e, auth := revocationEdgeTo(t, up.addr(), before...)
	return e, auth, up
}

// revocationEdgeTo is revocationEdge in front of the upstream at upAddr.
func revocationEdgeTo(t *testing.T, upAddr string, before ...func(auth *upstream)) (*edge, *upstream) {
	auth := newUpstream(t, jwks(t, key(t, 0)))
	for _, f := range before {
		f(auth)
	}
	cfg := fmt.Sprintf(`:{$SITE_PORT} {
	gatehouse_auth {
		jwks_url http://%[1]s/.well-known/jwks.json
		issuer gatehouse
		audience gatehouse
		revocations_url http://%[1]s/internal/revocations
		revocations_interval 100ms
	}
	reverse_proxy %[2]s
	handle_errors {
		header Content-Type application/json
		respond `+"`"+`{"detail":"{err.message}"}`+"`"+`
	}
}
`, auth.addr(), upAddr)
	path := filepath.Join(t.TempDir(), "Caddyfile")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	return startEdge(t, path, nil), auth
}

// until polls check for up to 5 s (the feed is polled every 100 ms).
func until(t *testing.T, what string, check func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		ok, last := check()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: still %s", what, last)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (u *upstream) setFeed(body string) {
	b := []byte(body)
	u.feed.Store(&b)
}

// The edge enforces authsvc's revocation feed on every request, cached
// token or not: a cut-off voids older tokens of that user, an ended session
// voids its tokens, and neither touches anyone else. Until a list has
// loaded, guarded requests get 503 (deny by default, but not "your token is
// bad"); when the feed fails later, the last list stays in force.
func TestEdgeRevocationFeed(t *testing.T) {
	t.Parallel()
	e, auth, up := revocationEdge(t)
	now := time.Now().Unix()
	tok := func(sub, sid string, iat int64) string {
		return signed(t, key(t, 0), hdr(t, key(t, 0)), with(claims(), "sub", sub, "sid", sid, "iat", iat))
	}
	const alice, bob = "11111111-1111-4111-8111-111111111111", "22222222-2222-4222-8222-222222222222"
	aliceOld := tok(alice, "s-a1", now-10)
	aliceNew := tok(alice, "s-a2", now)
	bobTok := tok(bob, "s-b1", now-10)
	bobOther := tok(bob, "s-b2", now-10)
	status := func(token string) (bool, string) {
		r := e.raw(t, get("/x", bearer(token)))
		return r.status == 200, fmt.Sprintf("%d %q", r.status, r.body)
	}
	for _, tk := range []string{aliceOld, aliceNew, bobTok, bobOther} {
		until(t, "token accepted under an empty list", func() (bool, string) { return status(tk) })
	}
	up.take()

	// Alice's password changed at now-5: her older token dies, the newer
	// lives. Bob's session s-b1 ended: that token dies, s-b2 lives.
	auth.setFeed(fmt.Sprintf(`{"users":[{"user_id":%q,"not_before":%d}],"sessions":[{"session_id":"s-b1"}]}`, alice, now-5))
	for _, tk := range []string{aliceOld, bobTok} {
		until(t, "revoked token refused", func() (bool, string) {
			r := e.raw(t, get("/x", bearer(tk), "X-User-Id: "+alice))
			return r.status == 401, fmt.Sprintf("%d %q", r.status, r.body)
		})
		r := e.raw(t, get("/x", bearer(tk)))
		if r.body != `{"detail":"Token has been revoked"}` || r.header.Get("WWW-Authenticate") != `Bearer error="invalid_token"` {
			t.Errorf("revoked: %d %q, WWW-Authenticate %q", r.status, r.body, r.header.Get("WWW-Authenticate"))
		}
	}
	// Requests sent before the edge's next poll could pass; from now on,
	// none may.
	up.take()
	for range 3 {
		for _, tk := range []string{aliceOld, bobTok} {
			if r := e.raw(t, get("/x", bearer(tk))); r.status != 401 {
				t.Errorf("revoked token: %d %q", r.status, r.body)
			}
		}
	}
	if got := up.take(); len(got) != 0 {
		t.Fatalf("%d revoked requests reached the upstream", len(got))
	}
	for _, tk := range []string{aliceNew, bobOther} {
		if ok, last := status(tk); !ok {
			t.Errorf("unrevoked token refused: %s", last)
		}
	}

	// The feed breaks (503, then garbage): the last list stays in force.
	for _, broken := range []func(){
		func() { auth.feedDown.Store(true) },
		func() { auth.feedDown.Store(false); auth.setFeed(`{"users":[{"user_id":"x"}]}`) },
	} {
		broken()
		n := auth.feedPolls.Load()
		until(t, "two polls of the broken feed", func() (bool, string) {
			return auth.feedPolls.Load() >= n+2, fmt.Sprint(auth.feedPolls.Load() - n)
		})
		if ok, last := status(aliceOld); ok || !strings.Contains(last, "401") {
			t.Errorf("revoked token while the feed is broken: %s", last)
		}
		if ok, last := status(aliceNew); !ok {
			t.Errorf("good token while the feed is broken: %s", last)
		}
	}

	// Entries that leave the feed (their tokens have expired) stop counting.
	auth.setFeed(string(emptyFeed))
	until(t, "entry dropped", func() (bool, string) { return status(bobTok) })

	// Metrics.
	mresp, err := http.Get("http://" + e.admin + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer mresp.Body.Close()
	m, _ := io.ReadAll(mresp.Body)
	for _, want := range []string{`gatehouse_auth_failures_total{reason="revoked"}`, `gatehouse_auth_revocation_refreshes_total{result="error"}`,
		`gatehouse_auth_revocation_refreshes_total{result="ok"}`, `gatehouse_auth_revocation_entries 0`} {
		if !strings.Contains(string(m), want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}

func TestEdgeRevocationFeedDownAtStart(t *testing.T) {
	t.Parallel()
	e, auth, up := revocationEdge(t, func(auth *upstream) { auth.feedDown.Store(true) })
	valid := signed(t, key(t, 0), hdr(t, key(t, 0)), claims())
	r := e.raw(t, get("/x", bearer(valid), "X-User-Id: forged"))
	if r.status != 503 || r.header.Get("Retry-After") == "" {
		t.Fatalf("no list yet: %d %q Retry-After %q, want 503 with Retry-After", r.status, r.body, r.header.Get("Retry-After"))
	}
	if len(up.take()) != 0 {
		t.Fatal("a request passed before any revocation list loaded")
	}
	auth.feedDown.Store(false)
	until(t, "feed up", func() (bool, string) {
		r := e.raw(t, get("/x", bearer(valid), "X-User-Id: forged"))
		return r.status == 200, fmt.Sprintf("%d %q", r.status, r.body)
	})
	got := up.take()
	checkIdentity(t, got, verifiedIdentity)
	// Without forward_token the edge consumes the credential.
	for _, r := range got {
		if a := r.header.Get("Authorization"); a != "" {
			t.Errorf("upstream got Authorization %q", a)
		}
	}
}

// End to end, with the repository's Caddyfile in front of the real authsvc
// on a real PostgreSQL: logging out, and an admin deactivating an account,
// cut the account off at the edge (here: on docservice's route, which
// authsvc never sees) within seconds, not at token expiry.
func TestEdgeRevocationEndToEnd(t *testing.T) {
	t.Parallel()
	db, err := testdb.New("caddymodules")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := db.Drop(); err != nil {
			t.Log(err)
		}
	})
	ctx := context.Background()
	pool, err := authsvc.OpenDB(ctx, db.URL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	svc, err := authsvc.New(&authsvc.Config{AppConfigDir: t.TempDir(), Issuer: "gatehouse", Audience: "gatehouse", AccessTokenTTL: 15 * time.Minute,
		HashConcurrency: 1}, pool, k, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	auth := httptest.NewServer(svc.Handler())
	t.Cleanup(auth.Close)
	docservice := newUpstream(t, nil)
	docservice.manifest.Store(&docserviceManifest)
	e := startEdge(t, filepath.Join(repoRoot, "Caddyfile"), map[string]string{
		"AUTHSVC_UPSTREAM":    auth.Listener.Addr().String(),
		"DOCSERVICE_UPSTREAM": docservice.addr(),
		"GATEHOUSE_WEB_ROOT":  t.TempDir(),
	})
	client := &http.Client{Timeout: 10 * time.Second}
	call := func(method, path, token string, body url.Values) (int, []byte) {
		t.Helper()
		var rd io.Reader
		if body != nil {
			rd = strings.NewReader(body.Encode())
		}
		req, err := http.NewRequest(method, "http://"+e.addr+path, rd)
		if err != nil {
			t.Fatal(err)
		}
		if body != nil {
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		}
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, b
	}
	const password = "Edge-Revocation-1!"
	register := func(email string) string {
		t.Helper()
		js := fmt.Sprintf(`{"email":%q,"password":%q}`, email, password)
		req, _ := http.NewRequest(http.MethodPost, "http://"+e.addr+"/api/auth/register", strings.NewReader(js))
		req.Header.Set("Content-Type", "application/json")
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusCreated && resp.StatusCode != http.StatusOK {
			t.Fatalf("register %s: %d", email, resp.StatusCode)
		}
		return login(t, call, email, password)
	}
	userTok := register("revoked-user@example.com")
	register("revoking-admin@example.com")
	if _, err := pool.Exec(ctx, `UPDATE auth.users SET role = 'admin' WHERE email = 'revoking-admin@example.com'`); err != nil {
		t.Fatal(err)
	}
	// Promoted after login: a fresh token carries the admin role.
	adminTok := login(t, call, "revoking-admin@example.com", password)

	docs := func(token string) (bool, string) {
		st, b := call(http.MethodGet, "/api/documents", token, nil)
		return st == 200, fmt.Sprintf("%d %s", st, b)
	}
	until(t, "user reaches docservice", func() (bool, string) { return docs(userTok) })

	// Logout: the token stops working at the edge.
	if st, b := call(http.MethodPost, "/api/auth/logout", userTok, nil); st != http.StatusNoContent {
		t.Fatalf("logout: %d %s", st, b)
	}
	// Refused for the right reason: revoked, not some other 401.
	revoked := func(token string) func() (bool, string) {
		return func() (bool, string) {
			ok, s := docs(token)
			return !ok && s == `401 {"detail":"Token has been revoked"}`, s
		}
	}
	until(t, "logged-out token refused at the edge", revoked(userTok))
	// Requests before the edge's next poll could pass; none after.
	docservice.take()
	time.Sleep(300 * time.Millisecond)
	if ok, s := revoked(userTok)(); !ok {
		t.Fatalf("logged-out token came back: %s", s)
	}
	if got := docservice.take(); len(got) != 0 {
		t.Fatalf("%d requests with the logged-out token reached docservice", len(got))
	}

	// A new login works; an admin deactivates the account: cut off too.
	userTok = login(t, call, "revoked-user@example.com", password)
	until(t, "fresh login reaches docservice", func() (bool, string) { return docs(userTok) })
	var userID string
	if err := pool.QueryRow(ctx, `SELECT id::text FROM auth.users WHERE email = 'revoked-user@example.com'`).Scan(&userID); err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest(http.MethodPatch, "http://"+e.addr+"/api/admin/users/"+userID, strings.NewReader(`{"is_active":false}`))
	req.Header.Set("Authorization", "Bearer "+adminTok)
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("deactivate: %d", resp.StatusCode)
	}
	start := time.Now()
	// until allows 5 s: the feed is polled every second (the Caddyfile's
	// default), so a deactivation that waited for the token's expiry
	// (15 min) or for a poll that never came fails here.
	until(t, "deactivated user's token refused at the edge", revoked(userTok))
	t.Logf("deactivation reached the edge in %v", time.Since(start).Round(time.Millisecond))
	// The admin is untouched.
	if ok, s := docs(adminTok); !ok {
		t.Errorf("admin refused: %s", s)
	}
}

func login(t *testing.T, call func(string, string, string, url.Values) (int, []byte), email, password string) string {
	t.Helper()
	st, b := call(http.MethodPost, "/api/auth/login", "", url.Values{"username": {email}, "password": {password}})
	if st != 200 {
		t.Fatalf("login %s: %d %s", email, st, b)
	}
	var tr struct {
		AccessToken string `json:"access_token"`
	}
	if err := json.Unmarshal(b, &tr); err != nil || tr.AccessToken == "" {
		t.Fatalf("login %s: %s", email, b)
	}
	return tr.AccessToken
}
