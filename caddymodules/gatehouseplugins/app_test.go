package gatehouseplugins

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/caddyserver/caddy/v2"
)

// plugin is a test service speaking the contract; the test swaps its
// manifest and health at will.
type plugin struct {
	srv         *httptest.Server
	healthy     atomic.Bool
	manifest    atomic.Pointer[string]
	contentType atomic.Pointer[string]
	healthHits  atomic.Int64
}

func newPlugin(t *testing.T, manifest string) *plugin {
	p := &plugin{}
	p.healthy.Store(true)
	p.setManifest(manifest)
	ct := "application/json"
	p.contentType.Store(&ct)
	p.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/health":
			p.healthHits.Add(1)
			if !p.healthy.Load() {
				http.Error(w, "down", http.StatusServiceUnavailable)
				return
			}
			_, _ = w.Write([]byte(`{"status":"ok"}`))
		case "/plugin/manifest":
			w.Header().Set("Content-Type", *p.contentType.Load())
			_, _ = w.Write([]byte(*p.manifest.Load()))
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(p.srv.Close)
	return p
}

func (p *plugin) setManifest(m string) { p.manifest.Store(&m) }

// fakeClock advances by step on every reading, so latencies are exact.
// Checks run concurrently, hence the lock.
type fakeClock struct {
	mu   sync.Mutex
	t    time.Time
	step time.Duration
}

func (c *fakeClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(c.step)
	return c.t
}

func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func testApp(t *testing.T, services ...ServiceConfig) (*App, *fakeClock) {
	clock := &fakeClock{t: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), step: 7 * time.Millisecond}
	a := &App{Services: services, Timeout: caddy.Duration(time.Second), now: clock.now, logger: zap.NewNop()}
	if err := a.Validate(); err != nil {
		t.Fatal(err)
	}
	a.setup()
	return a, clock
}

func manifestFor(t *testing.T, id string, kv ...any) string {
	return manifestJSON(t, append([]any{"id", id, "routes", routes("/api/" + id)}, kv...)...)
}

func TestTickHealthAndManifest(t *testing.T) {
	docs := newPlugin(t, manifestFor(t, "docs"))
	a, _ := testApp(t, ServiceConfig{ID: "docs", URL: docs.srv.URL})

	st := a.State()
	if s := st.Service("docs"); s.Checked || s.Healthy || s.Manifest != nil {
		t.Fatalf("before the first tick: %+v", s)
	}
	a.Tick(context.Background())
	s := a.State().Service("docs")
	if !s.Checked || !s.Healthy || s.Manifest == nil || s.Manifest.ID != "docs" || s.LastError != "" || s.ManifestError != "" {
		t.Fatalf("after a good tick: %+v", s)
	}
	if s.Latency != 7*time.Millisecond || s.CheckedAt.IsZero() {
		t.Errorf("latency %v, checked at %v", s.Latency, s.CheckedAt)
	}
	if r := a.State().route("/api/docs/7"); r == nil || r.service.ID != "docs" {
		t.Fatalf("route /api/docs/7 = %+v", r)
	}
	if r := a.State().route("/api/docsx"); r != nil {
		t.Fatalf("route /api/docsx = %+v", r)
	}

	// Down: unhealthy at the next tick, the last good manifest kept.
	docs.healthy.Store(false)
	a.Tick(context.Background())
	s = a.State().Service("docs")
	if s.Healthy || s.Manifest == nil || !strings.Contains(s.LastError, "status 503") {
		t.Fatalf("after the service went down: %+v", s)
	}
	// Gone entirely: a transport error, still the manifest.
	docs.srv.Close()
	a.Tick(context.Background())
	s = a.State().Service("docs")
	if s.Healthy || s.Manifest == nil || !strings.Contains(s.LastError, "connection refused") || strings.Contains(s.LastError, "Get ") {
		t.Fatalf("after the service vanished: %+v", s)
	}
}

func TestTickRefusedManifestKeepsLastGood(t *testing.T) {
	docs := newPlugin(t, manifestFor(t, "docs"))
	a, _ := testApp(t, ServiceConfig{ID: "docs", URL: docs.srv.URL})
	a.Tick(context.Background())

	cases := []struct {
		name        string
		manifest    string
		contentType string
		want        string
	}{
		{"future version", manifestFor(t, "docs", "manifest_version", 2), "application/json", "unsupported manifest_version 2"},
		{"wrong content type", manifestFor(t, "docs"), "text/plain", "Content-Type"},
		{"another plugin's id", manifestFor(t, "other"), "application/json", `manifest id "other" is not the registered service id "docs"`},
		{"reserved prefix", manifestFor(t, "docs", "routes", routes("/api/users")), "application/json", "reserved prefix /api/users"},
		{"broken settings schema", manifestFor(t, "docs", "settings", settingsWith(`{"properties": {"a": {"type": 5}}}`)), "application/json", "does not compile"},
		{"huge", manifestFor(t, "docs", "description", strings.Repeat("a", 300<<10)), "application/json", "larger than"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			docs.setManifest(tc.manifest)
			docs.contentType.Store(&tc.contentType)
			a.Tick(context.Background())
			s := a.State().Service("docs")
			if !strings.Contains(s.ManifestError, tc.want) {
				t.Errorf("manifest error %q, want %q", s.ManifestError, tc.want)
			}
			if s.Manifest == nil || s.Manifest.ID != "docs" || s.Manifest.Routes[0].Prefix != "/api/docs" || !s.Healthy {
				t.Errorf("last good manifest not kept: %+v", s)
			}
		})
	}
	ct := "application/json"
	docs.contentType.Store(&ct)
	docs.setManifest(manifestFor(t, "docs", "name", "Docs 2"))
	a.Tick(context.Background())
	if s := a.State().Service("docs"); s.ManifestError != "" || s.Manifest.Name != "Docs 2" {
		t.Errorf("a good manifest after refusals: %+v", s)
	}
}

// First come, first served: a prefix held by one plugin is refused to
// another, whatever the order of the services, until the holder lets go.
func TestTickRouteClaims(t *testing.T) {
	first := newPlugin(t, manifestFor(t, "first", "routes", routes("/api/shared")))
	second := newPlugin(t, manifestFor(t, "second", "routes", routes("/api/second")))
	a, _ := testApp(t, ServiceConfig{ID: "second", URL: second.srv.URL}, ServiceConfig{ID: "first", URL: first.srv.URL})
	a.Tick(context.Background())

	second.setManifest(manifestFor(t, "second", "routes", routes("/api/second", "/api/shared/sub")))
	a.Tick(context.Background())
	st := a.State()
	if got := st.Service("second").ManifestError; got != "route /api/shared/sub is claimed by plugin first" {
		t.Fatalf("second's manifest error = %q", got)
	}
	if r := st.route("/api/shared/sub/x"); r == nil || r.service.ID != "first" {
		t.Fatalf("/api/shared/sub/x goes to %+v", r)
	}
	if r := st.route("/api/second"); r == nil || r.service.ID != "second" {
		t.Fatalf("second lost its own route: %+v", r)
	}

	// first lets go of /api/shared: second may have it at the next tick.
	first.setManifest(manifestFor(t, "first", "routes", routes("/api/first")))
	a.Tick(context.Background())
	a.Tick(context.Background())
	st = a.State()
	if got := st.Service("second").ManifestError; got != "" {
		t.Fatalf("second still refused: %q", got)
	}
	if r := st.route("/api/shared/sub"); r == nil || r.service.ID != "second" {
		t.Fatalf("/api/shared/sub goes to %+v", r)
	}
}

// The loop runs a check at once, then every interval, and Stop waits for it.
// A prefix the operator pins to a service is that service's alone: another
// registered service that is up first (here: doc-service still starting)
// cannot take it, not even for a moment, and the owner gets it as soon as
// it answers. Unpinned, the squatter would have kept it, with the users'
// tokens (forward_credentials), until a restart.
func TestPinnedPrefixCannotBeSquatted(t *testing.T) {
	docs := newPlugin(t, manifestFor(t, "doc-service", "routes", routes("/api/documents")))
	docs.healthy.Store(false)
	evil := newPlugin(t, manifestFor(t, "evil", "routes", []any{
		map[string]any{"prefix": "/api/documents", "access": "authenticated", "forward_credentials": true}}))
	for _, pinned := range []bool{false, true} {
		docs.healthy.Store(false)
		svc := ServiceConfig{ID: "doc-service", URL: docs.srv.URL}
		if pinned {
			svc.Prefixes = []string{"/api/documents"}
		}
		a, _ := testApp(t, svc, ServiceConfig{ID: "evil", URL: evil.srv.URL, ForwardCredentials: true})
		a.Tick(context.Background())
		st := a.State()
		r := st.route("/api/documents/1/file")
		if !pinned {
			// The hole that pinning closes, kept visible: first come wins.
			if r == nil || r.service.ID != "evil" {
				t.Fatalf("unpinned: /api/documents goes to %+v; the test no longer shows why pinning exists", r)
			}
			continue
		}
		if r != nil {
			t.Fatalf("pinned, owner down: /api/documents goes to %s", r.service.ID)
		}
		if got := st.Service("evil").ManifestError; got != "route /api/documents overlaps /api/documents, which the edge configuration gives plugin doc-service" {
			t.Fatalf("evil's manifest error = %q", got)
		}
		docs.healthy.Store(true)
		a.Tick(context.Background())
		if r := a.State().route("/api/documents/1/file"); r == nil || r.service.ID != "doc-service" {
			t.Fatalf("pinned, owner up: /api/documents goes to %+v", r)
		}
		// Under a pinned prefix is refused too, not only the prefix itself.
		evil.setManifest(manifestFor(t, "evil", "routes", routes("/api/documents/shared")))
		a.Tick(context.Background())
		if got := a.State().Service("evil").ManifestError; !strings.Contains(got, "which the edge configuration gives plugin doc-service") {
			t.Fatalf("a route under the pinned prefix: manifest error %q", got)
		}
	}
}

// A pinned service's manifest may route only at or under its pins.
func TestPinnedServiceStaysInsideItsPrefixes(t *testing.T) {
	docs := newPlugin(t, manifestFor(t, "doc-service", "routes", routes("/api/documents", "/api/documents-archive")))
	a, _ := testApp(t, ServiceConfig{ID: "doc-service", URL: docs.srv.URL, Prefixes: []string{"/api/documents"}})
	a.Tick(context.Background())
	s := a.State().Service("doc-service")
	if s.Manifest != nil || s.ManifestError != "route /api/documents-archive is outside the prefixes the edge configuration gives doc-service (/api/documents)" {
		t.Fatalf("a route beside the pin: %+v", s)
	}
	docs.setManifest(manifestFor(t, "doc-service", "routes", routes("/api/documents/v2", "/api/documents/v3")))
	a.Tick(context.Background())
	st := a.State()
	if s := st.Service("doc-service"); s.Manifest == nil || s.ManifestError != "" {
		t.Fatalf("routes under the pin: %+v", s)
	}
	if r := st.route("/api/documents/v2/x"); r == nil || r.service.ID != "doc-service" {
		t.Fatalf("/api/documents/v2/x goes to %+v", r)
	}
}

// forward_credentials needs the operator's consent for that service.
func TestForwardCredentialsNeedsConsent(t *testing.T) {
	wiki := newPlugin(t, manifestFor(t, "wiki", "routes", []any{
		map[string]any{"prefix": "/api/wiki", "access": "authenticated", "forward_credentials": true}}))
	for _, consent := range []bool{false, true} {
		a, _ := testApp(t, ServiceConfig{ID: "wiki", URL: wiki.srv.URL, ForwardCredentials: consent})
		a.Tick(context.Background())
		st := a.State()
		s, r := st.Service("wiki"), st.route("/api/wiki")
		if !consent {
			if s.Manifest != nil || r != nil || s.ManifestError != "route /api/wiki asks for forward_credentials, which the edge configuration does not allow wiki (an operator who agrees adds forward_credentials to its service block)" {
				t.Fatalf("without consent: %+v, route %+v", s, r)
			}
			continue
		}
		if r == nil || !r.ForwardCredentials || s.ManifestError != "" {
			t.Fatalf("with consent: %+v, route %+v", s, r)
		}
	}
}

func TestLoopStartStop(t *testing.T) {
	docs := newPlugin(t, manifestFor(t, "docs"))
	a := &App{Services: []ServiceConfig{{ID: "docs", URL: docs.srv.URL}}, Interval: caddy.Duration(50 * time.Millisecond), logger: zap.NewNop()}
	a.setup()
	if err := a.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for docs.healthHits.Load() < 3 {
		if time.Now().After(deadline) {
			t.Fatalf("health checks: %d", docs.healthHits.Load())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := a.Stop(); err != nil {
		t.Fatal(err)
	}
	n := docs.healthHits.Load()
	time.Sleep(150 * time.Millisecond)
	if m := docs.healthHits.Load(); m != n {
		t.Errorf("checks after Stop: %d → %d", n, m)
	}
	if !a.State().Service("docs").Healthy {
		t.Error("state lost")
	}
}

func TestAppValidate(t *testing.T) {
	cases := []struct {
		name     string
		services []ServiceConfig
		want     string
	}{
		{"ok", []ServiceConfig{{ID: "a", URL: "http://127.0.0.1:1"}, {ID: "b", URL: "https://b.internal/"}}, ""},
		{"duplicate", []ServiceConfig{{ID: "a", URL: "http://x:1"}, {ID: "a", URL: "http://y:1"}}, "registered twice"},
		{"bad id", []ServiceConfig{{ID: "A B", URL: "http://x:1"}}, "service id"},
		{"path", []ServiceConfig{{ID: "a", URL: "http://x:1/api"}}, "no path"},
		{"scheme", []ServiceConfig{{ID: "a", URL: "ftp://x"}}, "no path"},
		{"no host", []ServiceConfig{{ID: "a", URL: "http://"}}, "no path"},
		{"pinned", []ServiceConfig{{ID: "a", URL: "http://x:1", Prefixes: []string{"/api/a", "/api/a-public"}}, {ID: "b", URL: "http://y:1", Prefixes: []string{"/api/b"}}}, ""},
		{"prefix not under /api", []ServiceConfig{{ID: "a", URL: "http://x:1", Prefixes: []string{"/a"}}}, "want a lower-case path under /api/"},
		{"prefix trailing slash", []ServiceConfig{{ID: "a", URL: "http://x:1", Prefixes: []string{"/api/a/"}}}, "without a trailing slash"},
		{"prefix upper case", []ServiceConfig{{ID: "a", URL: "http://x:1", Prefixes: []string{"/api/A"}}}, "lower-case"},
		{"prefix too long", []ServiceConfig{{ID: "a", URL: "http://x:1", Prefixes: []string{"/api/" + strings.Repeat("a", 196)}}}, "at most 200 characters"},
		{"prefix reserved", []ServiceConfig{{ID: "a", URL: "http://x:1", Prefixes: []string{"/api/users/a"}}}, "reserved prefix /api/users"},
		{"prefix over reserved", []ServiceConfig{{ID: "a", URL: "http://x:1", Prefixes: []string{"/api"}}}, "want a lower-case path"},
		{"own prefixes overlap", []ServiceConfig{{ID: "a", URL: "http://x:1", Prefixes: []string{"/api/a", "/api/a/b"}}}, "prefixes /api/a and /api/a/b overlap"},
		{"two services overlap", []ServiceConfig{{ID: "a", URL: "http://x:1", Prefixes: []string{"/api/a"}}, {ID: "b", URL: "http://y:1", Prefixes: []string{"/api/a/b"}}},
			`services "a" and "b" are given overlapping prefixes /api/a and /api/a/b`},
	}
	for _, tc := range cases {
		err := (&App{Services: tc.services}).Validate()
		if (tc.want == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("%s: %v, want %q", tc.name, err, tc.want)
		}
	}
}

func nopLogger() *zap.Logger { return zap.NewNop() }

// A check on demand checks one service and leaves the others as they
// are; a second within MinRecheckGap does not run; and a round's result
// that started before a published check on demand does not overwrite it.
func TestRecheck(t *testing.T) {
	docs := newPlugin(t, manifestFor(t, "docs"))
	wiki := newPlugin(t, manifestFor(t, "wiki"))
	a, clock := testApp(t, ServiceConfig{ID: "docs", URL: docs.srv.URL}, ServiceConfig{ID: "wiki", URL: wiki.srv.URL})
	a.Tick(context.Background())
	docs.healthy.Store(false)
	a.Tick(context.Background())
	if a.State().Service("docs").Healthy {
		t.Fatal("docs still healthy after a failed check")
	}
	wikiBefore := a.State().Service("wiki")

	// A round starts (its result is dated now), then docs comes back and
	// is checked on demand before the round publishes.
	stale := a.checkOne(context.Background(), a.Services[0])
	docs.healthy.Store(true)
	clock.advance(MinRecheckGap)
	st := a.Recheck(context.Background(), "docs")
	if s := st.Service("docs"); !s.Healthy || s.Manifest == nil {
		t.Fatalf("after a check on demand: %+v", s)
	}
	if w := st.Service("wiki"); *w != *wikiBefore {
		t.Errorf("a check on demand of docs changed wiki's status: %+v, was %+v", w, wikiBefore)
	}
	a.publish([]checkResult{stale, {skip: true}})
	if !a.State().Service("docs").Healthy {
		t.Fatal("an older round's result overwrote the newer check on demand")
	}

	// Within the gap, no check runs, whatever the service says now.
	docs.healthy.Store(false)
	if !a.Recheck(context.Background(), "docs").Service("docs").Healthy {
		t.Fatal("a second check on demand ran within MinRecheckGap")
	}
	clock.advance(MinRecheckGap)
	if a.Recheck(context.Background(), "docs").Service("docs").Healthy {
		t.Fatal("no check on demand after the gap")
	}
	if a.Recheck(context.Background(), "nobody") != a.State() {
		t.Error("an unknown service changed the state")
	}
}

// Once the app is stopped (a reload replaced it), a request still in the
// old gateway starts no check: nothing runs on past Stop.
func TestRecheckAfterStop(t *testing.T) {
	docs := newPlugin(t, manifestFor(t, "docs"))
	a, clock := testApp(t, ServiceConfig{ID: "docs", URL: docs.srv.URL})
	if err := a.Start(); err != nil {
		t.Fatal(err)
	}
	if err := a.Stop(); err != nil {
		t.Fatal(err)
	}
	hits := docs.healthHits.Load()
	clock.advance(MinRecheckGap)
	a.Recheck(context.Background(), "docs")
	if n := docs.healthHits.Load(); n != hits {
		t.Fatalf("%d health checks after Stop", n-hits)
	}
}
