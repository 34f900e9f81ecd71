package authsvc

// The tests of this package run against a real PostgreSQL database (one per
// package run, through internal/testdb) and a real HTTP server
// (httptest.NewServer on the service's handler). Fixture users are written
// through the Store with one precomputed password hash, so that only the
// tests about registration and login pay for Argon2id.

import (
	"bytes"
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
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/gatehouse/gatehouse/internal/accesstoken"
	"github.com/gatehouse/gatehouse/internal/testdb"
)

// fixturePassword is the password of every fixture user; fixtureHash is its
// hash, computed once.
const fixturePassword = "Fixture-Pass-1!"

var (
	testDB      *testdb.DB
	testPool    *pgxpool.Pool
	testKey     *rsa.PrivateKey
	fixtureHash string
	env         *testEnv // the shared service most tests talk to
	// configDir is the services' APP_CONFIG_DIR unless a test gives its
	// own (the AI settings tests do).
	configDir string
)

func TestMain(m *testing.M) {
	os.Exit(runTests(m))
}

func runTests(m *testing.M) int {
	// Request logs are noise in test output; errors still show.
	slog.SetDefault(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError})))
	var err error
	if configDir, err = os.MkdirTemp("", "authsvc-config-"); err != nil {
		fmt.Fprintln(os.Stderr, "config dir:", err)
		return 1
	}
	defer os.RemoveAll(configDir)
	if testDB, err = testdb.New("authsvc"); err != nil {
		fmt.Fprintln(os.Stderr, "testdb:", err)
		return 1
	}
	defer func() {
		if err := testDB.Drop(); err != nil {
			fmt.Fprintln(os.Stderr, "drop test database:", err)
		}
	}()
	ctx := context.Background()
	if testPool, err = OpenDB(ctx, testDB.URL); err != nil {
		fmt.Fprintln(os.Stderr, "OpenDB:", err)
		return 1
	}
	defer testPool.Close()
	if testKey, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
		fmt.Fprintln(os.Stderr, "generate key:", err)
		return 1
	}
	h, err := NewHasher(1, time.Minute)
	if err != nil {
		fmt.Fprintln(os.Stderr, "hasher:", err)
		return 1
	}
	if fixtureHash, err = h.Hash(ctx, fixturePassword); err != nil {
		fmt.Fprintln(os.Stderr, "hash:", err)
		return 1
	}
	e, err := startEnv(testPool, testConfig())
	if err != nil {
		fmt.Fprintln(os.Stderr, "service:", err)
		return 1
	}
	defer e.srv.Close()
	env = e
	return m.Run()
}

func testConfig() *Config {
	return &Config{
		DatabaseURL:     "postgres://unused",
		Addr:            "127.0.0.1:0",
		Issuer:          "gatehouse-test",
		Audience:        "gatehouse-test-aud",
		AccessTokenTTL:  15 * time.Minute,
		HashConcurrency: 2,
		AppConfigDir:    configDir,
	}
}

// testEnv is a Service behind a real HTTP server.
type testEnv struct {
	svc *Service
	srv *httptest.Server
}

func startEnv(pool *pgxpool.Pool, cfg *Config) (*testEnv, error) {
	svc, err := New(cfg, pool, testKey, slog.Default())
	if err != nil {
		return nil, err
	}
	return &testEnv{svc: svc, srv: httptest.NewServer(svc.Handler())}, nil
}

// newEnv starts a Service of its own for a test that changes it.
func newEnv(t *testing.T, pool *pgxpool.Pool, cfg *Config) *testEnv {
	t.Helper()
	e, err := startEnv(pool, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.srv.Close)
	return e
}

// response is an HTTP answer, read whole.
type response struct {
	Status int
	Header http.Header
	Body   []byte
}

// JSON decodes the body into a map (or fails the test).
func (r *response) JSON(t *testing.T) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.Body, &m); err != nil {
		t.Fatalf("status %d: body is not a JSON object: %v\n%s", r.Status, err, r.Body)
	}
	return m
}

// Decode decodes the body into v.
func (r *response) Decode(t *testing.T, v any) {
	t.Helper()
	if err := json.Unmarshal(r.Body, v); err != nil {
		t.Fatalf("status %d: decode %T: %v\n%s", r.Status, v, err, r.Body)
	}
}

// Detail is the error detail of a {"detail": ...} body.
func (r *response) Detail(t *testing.T) string {
	t.Helper()
	d, ok := r.JSON(t)["detail"].(string)
	if !ok {
		t.Fatalf("status %d: no string detail in %s", r.Status, r.Body)
	}
	return d
}

func (r *response) expect(t *testing.T, status int) *response {
	t.Helper()
	if r.Status != status {
		t.Fatalf("status %d, want %d; body: %s", r.Status, status, r.Body)
	}
	return r
}

// expectError checks the status and that the detail contains every part.
func (r *response) expectError(t *testing.T, status int, parts ...string) *response {
	t.Helper()
	r.expect(t, status)
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("error Content-Type %q, want application/json", ct)
	}
	d := r.Detail(t)
	for _, p := range parts {
		if !strings.Contains(d, p) {
			t.Errorf("detail %q does not contain %q", d, p)
		}
	}
	return r
}

// req describes a request; Body is JSON-encoded unless it is a string,
// []byte or url.Values (a form).
type req struct {
	Method, Path string
	Token        string
	Body         any
	ContentType  string // overrides the default of the body kind
	Header       http.Header
}

func (e *testEnv) do(t *testing.T, rq req) *response {
	t.Helper()
	var body io.Reader
	ct := ""
	switch b := rq.Body.(type) {
	case nil:
	case string:
		body, ct = strings.NewReader(b), "application/json"
	case []byte:
		body, ct = bytes.NewReader(b), "application/json"
	case url.Values:
		body, ct = strings.NewReader(b.Encode()), "application/x-www-form-urlencoded"
	default:
		js, err := json.Marshal(b)
		if err != nil {
			t.Fatal(err)
		}
		body, ct = bytes.NewReader(js), "application/json"
	}
	if rq.ContentType != "" {
		ct = rq.ContentType
	}
	hr, err := http.NewRequest(rq.Method, e.srv.URL+rq.Path, body)
	if err != nil {
		t.Fatal(err)
	}
	for k, vs := range rq.Header {
		for _, v := range vs {
			hr.Header.Add(k, v)
		}
	}
	if ct != "" && ct != "-" {
		hr.Header.Set("Content-Type", ct)
	}
	if rq.Token != "" {
		hr.Header.Set("Authorization", "Bearer "+rq.Token)
	}
	res, err := e.srv.Client().Do(hr)
	if err != nil {
		t.Fatalf("%s %s: %v", rq.Method, rq.Path, err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatalf("%s %s: read body: %v", rq.Method, rq.Path, err)
	}
	return &response{Status: res.StatusCode, Header: res.Header, Body: b}
}

func (e *testEnv) get(t *testing.T, path, token string) *response {
	t.Helper()
	return e.do(t, req{Method: http.MethodGet, Path: path, Token: token})
}

var emailSeq atomic.Int64

// uniqueEmail makes an email no other test uses.
func uniqueEmail(tag string) string {
	return fmt.Sprintf("%s-%d-%s@example.com", tag, emailSeq.Add(1), uuid.NewString()[:8])
}

// newUser creates an active user with fixturePassword directly in the store.
func newUser(t *testing.T, role string) User {
	t.Helper()
	name := "Fixture " + role
	u, err := env.svc.store.CreateUser(context.Background(), uniqueEmail(role), fixtureHash, role, &name)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// token issues an access token for u as login does (a session row and the
// same claims) without paying for a password check.
func (e *testEnv) token(t *testing.T, u User) string {
	t.Helper()
	ctx := context.Background()
	now := time.Now()
	exp := now.Add(e.svc.cfg.AccessTokenTTL)
	u, groups, sid, err := e.svc.store.OpenSession(ctx, u.ID, exp, "test", "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	return signClaims(t, e.svc.signer, &accesstoken.Claims{
		Issuer: e.svc.cfg.Issuer, Subject: u.ID.String(), Audience: jwt.Audience{e.svc.cfg.Audience},
		Expiry: jwt.NewNumericDate(exp), NotBefore: jwt.NewNumericDate(now), IssuedAt: jwt.NewNumericDate(now),
		ID: uuid.NewString(), SessionID: sid.String(), Role: u.Role, Groups: groups,
	})
}

func signClaims(t *testing.T, s *accesstoken.Signer, c *accesstoken.Claims) string {
	t.Helper()
	tok, err := s.Sign(c)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// login logs in through the API and returns the access token.
func (e *testEnv) login(t *testing.T, email, password string) string {
	t.Helper()
	r := e.do(t, req{Method: http.MethodPost, Path: "/api/auth/login",
		Body: url.Values{"username": {email}, "password": {password}}}).expect(t, http.StatusOK)
	var tr tokenResponse
	r.Decode(t, &tr)
	if tr.AccessToken == "" {
		t.Fatalf("no access token in %s", r.Body)
	}
	return tr.AccessToken
}

// exec runs SQL on the test database.
func exec(t *testing.T, sql string, args ...any) {
	t.Helper()
	if _, err := testPool.Exec(context.Background(), sql, args...); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

// onlyAdmins demotes every admin but keep, so a test can reason about the
// number of active admins in the shared database.
func onlyAdmins(t *testing.T, keep ...uuid.UUID) {
	t.Helper()
	exec(t, `UPDATE auth.users SET role = 'user' WHERE role = 'admin' AND NOT (id = ANY($1))`, keep)
	exec(t, `UPDATE auth.users SET role = 'admin', is_active = true WHERE id = ANY($1)`, keep)
}

// loginInBackground starts u's login with fixturePassword and returns where
// its answer arrives, for tests that change the account meanwhile.
func (e *testEnv) loginInBackground(u User) <-chan *response {
	got := make(chan *response, 1)
	go func() {
		form := url.Values{"username": {u.Email}, "password": {fixturePassword}}
		res, err := e.srv.Client().PostForm(e.srv.URL+"/api/auth/login", form)
		if err != nil {
			got <- &response{Body: []byte(err.Error())}
			return
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		got <- &response{Status: res.StatusCode, Header: res.Header, Body: b}
	}()
	return got
}
