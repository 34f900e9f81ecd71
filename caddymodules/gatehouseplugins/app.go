// Package gatehouseplugins is Gatehouse's plugin system at the edge: the
// gatehouse_plugins app, which polls every registered feature service's
// /health and /plugin/manifest and keeps the last good manifest, and the
// gatehouse_plugin_gateway handler, which serves /api/services and
// /api/plugins... and sends the API prefixes that manifests declare to
// their services.
//
// A manifest is data from a service, not configuration: it is validated
// against the published schema (manifest.v1.schema.json), and it must never
// claim a platform prefix or another plugin's, never make the edge load
// anything (no external $ref), and never widen who may call a route beyond
// what its access rule says. Identity comes only from gatehouse_auth.
package gatehouseplugins

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/caddyserver/caddy/v2"
)

func init() {
	caddy.RegisterModule(App{})
}

// Defaults of the app's settings.
const (
	DefaultInterval = 30 * time.Second
	DefaultTimeout  = 5 * time.Second
)

// App is the gatehouse_plugins app: the registry of feature services.
//
// At start, and then every `interval`, it checks each service: GET /health
// (200 means healthy), and when healthy GET /plugin/manifest, which must be
// a valid version 1 manifest whose id is the service's id and whose routes
// claim no reserved prefix, no prefix another plugin holds or the operator
// pinned to another service, and stay inside their own pins. A refused or
// unreachable manifest leaves the last good one in place; the reason is
// kept for /api/services. A reload starts a new app with the new service
// list and stops the old one.
type App struct {
	// The feature services, checked in this order; when two claim the
	// same route prefix, the one holding it keeps it, and at start the
	// first listed wins.
	Services []ServiceConfig `json:"services,omitempty"`

	// Time between two checks of every service. Default: 30s.
	Interval caddy.Duration `json:"interval,omitempty"`

	// Timeout of each request of a check (health, then manifest); also the
	// dial timeout of the gateway's proxy to the service. Default: 5s.
	Timeout caddy.Duration `json:"timeout,omitempty"`

	client *http.Client
	now    func() time.Time
	logger *zap.Logger
	state  *atomic.Pointer[State] // a pointer: App is copied by value in CaddyModule
	// publishMu serialises state changes: a round of checks (Tick) and a
	// check on demand (Recheck) each merge into the latest state.
	publishMu *sync.Mutex
	rechecks  map[string]*recheck // by service id; fixed after setup
	runCtx    context.Context     // ends with Stop; on-demand checks run in it
	inFlight  *inFlight           // on-demand checks running, which Stop waits for
	cancel    context.CancelFunc
	done      chan struct{}
}

// ServiceConfig registers one feature service.
type ServiceConfig struct {
	// The service's id, which its manifest's id must equal: lower-case
	// letters, digits and '-'.
	ID string `json:"id"`

	// Base URL of the service's private address, e.g.
	// http://127.0.0.1:8001: scheme http or https, host and port, no path.
	URL string `json:"url"`

	// Route prefixes the operator gives this service. Its manifest may
	// then declare routes only at or under them, and no other service's
	// manifest may declare a route overlapping them, whichever answers
	// first. Without prefixes the service may take any free prefix (first
	// come, first served), so a registered service that is up while
	// another is still starting could take the other's prefix: pin them.
	Prefixes []string `json:"prefixes,omitempty"`

	// Let this service's manifest routes ask for forward_credentials, i.e.
	// receive the caller's Authorization header and token cookie. A
	// manifest that asks without it is refused: a service gets users'
	// tokens, which it could replay as them, only with the operator's
	// consent.
	ForwardCredentials bool `json:"forward_credentials,omitempty"`
}

// admit applies what the operator configured for svc to a manifest it
// served: its own pinned prefixes, the prefixes pinned to other services,
// and consent to credential forwarding.
func (a *App) admit(svc ServiceConfig, m *Manifest) error {
	for _, r := range m.Routes {
		if len(svc.Prefixes) > 0 && !slices.ContainsFunc(svc.Prefixes, func(p string) bool { return within(r.Prefix, p) }) {
			return refuse("route %s is outside the prefixes the edge configuration gives %s (%s)",
				r.Prefix, svc.ID, strings.Join(svc.Prefixes, ", "))
		}
		for _, o := range a.Services {
			if o.ID == svc.ID {
				continue
			}
			for _, p := range o.Prefixes {
				if overlaps(r.Prefix, p) {
					return refuse("route %s overlaps %s, which the edge configuration gives plugin %s", r.Prefix, p, o.ID)
				}
			}
		}
		if r.ForwardCredentials && !svc.ForwardCredentials {
			return refuse("route %s asks for forward_credentials, which the edge configuration does not allow %s (an operator who agrees adds forward_credentials to its service block)", r.Prefix, svc.ID)
		}
	}
	return nil
}

// pinnedTo returns the id of the service whose pinned prefixes hold the
// canonical path p, or "".
func (a *App) pinnedTo(p string) string {
	for _, s := range a.Services {
		for _, pin := range s.Prefixes {
			if within(p, pin) {
				return s.ID
			}
		}
	}
	return ""
}

// within reports whether prefix a equals b or lies under it.
func within(a, b string) bool { return a == b || strings.HasPrefix(a, b+"/") }

// CaddyModule returns the Caddy module information.
func (App) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "gatehouse_plugins",
		New: func() caddy.Module { return new(App) },
	}
}

var serviceIDPattern = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,62}$`)

// Provision sets defaults and the initial, unchecked state.
func (a *App) Provision(ctx caddy.Context) error {
	a.logger = ctx.Logger()
	a.setup()
	return nil
}

// setup is Provision without Caddy, for tests.
func (a *App) setup() {
	if a.Interval == 0 {
		a.Interval = caddy.Duration(DefaultInterval)
	}
	if a.Timeout == 0 {
		a.Timeout = caddy.Duration(DefaultTimeout)
	}
	if a.now == nil {
		a.now = time.Now
	}
	a.client = &http.Client{
		Timeout: time.Duration(a.Timeout),
		// A service answers for itself; it must not send the edge to
		// another host.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		Transport: &http.Transport{
			Proxy:               nil, // private addresses: never through HTTP_PROXY
			MaxIdleConnsPerHost: 2,
			IdleConnTimeout:     2 * time.Duration(a.Interval),
		},
	}
	st := &State{byID: map[string]*ServiceStatus{}}
	for _, s := range a.Services {
		ss := &ServiceStatus{ID: s.ID, URL: s.URL}
		st.Services = append(st.Services, ss)
		st.byID[s.ID] = ss
	}
	a.state = new(atomic.Pointer[State])
	a.state.Store(st)
	a.publishMu = new(sync.Mutex)
	a.rechecks = make(map[string]*recheck, len(a.Services))
	for _, s := range a.Services {
		a.rechecks[s.ID] = &recheck{svc: s}
	}
	a.runCtx, a.cancel = context.WithCancel(context.Background())
	a.inFlight = new(inFlight)
}

// inFlight counts on-demand checks; once stopped, none starts.
type inFlight struct {
	mu      sync.Mutex
	stopped bool
	wg      sync.WaitGroup
}

// start reports whether a check may start, and counts it if so.
func (f *inFlight) start() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.stopped {
		return false
	}
	f.wg.Add(1)
	return true
}

func (f *inFlight) done() { f.wg.Done() }

// stop lets no more checks start and waits for the running ones.
func (f *inFlight) stop() {
	f.mu.Lock()
	f.stopped = true
	f.mu.Unlock()
	f.wg.Wait()
}

// Validate checks the service list and durations.
func (a *App) Validate() error {
	seen := map[string]bool{}
	for _, s := range a.Services {
		if !serviceIDPattern.MatchString(s.ID) {
			return fmt.Errorf("service id %q: want lower-case letters, digits and '-'", s.ID)
		}
		if seen[s.ID] {
			return fmt.Errorf("service %q registered twice", s.ID)
		}
		seen[s.ID] = true
		if _, err := parseServiceURL(s.URL); err != nil {
			return fmt.Errorf("service %q: %w", s.ID, err)
		}
		// A pin follows the manifest's rules for a route prefix.
		for _, p := range s.Prefixes {
			if prefixSchema.Validate(p) != nil {
				return fmt.Errorf("service %q: prefix %q: want a lower-case path under /api/ without a trailing slash, at most 200 characters", s.ID, p)
			}
		}
		if err := checkPrefixes("prefix", "prefixes", s.Prefixes); err != nil {
			return fmt.Errorf("service %q: %w", s.ID, err)
		}
	}
	// No two services are given overlapping pins.
	var pins [][2]string // service id, prefix
	for _, s := range a.Services {
		for _, p := range s.Prefixes {
			for _, o := range pins {
				if o[0] != s.ID && overlaps(p, o[1]) {
					return fmt.Errorf("services %q and %q are given overlapping prefixes %s and %s", o[0], s.ID, o[1], p)
				}
			}
			pins = append(pins, [2]string{s.ID, p})
		}
	}
	if a.Interval < 0 || a.Timeout < 0 {
		return errors.New("interval and timeout must be positive")
	}
	return nil
}

func parseServiceURL(s string) (*url.URL, error) {
	u, err := url.Parse(s)
	if err != nil {
		return nil, fmt.Errorf("url %q: %w", s, err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil ||
		(u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("url %q: want http(s)://host:port with no path", s)
	}
	return u, nil
}

// Start runs the check loop; the first check starts at once, so a service
// that is up appears within a round trip of the edge starting.
func (a *App) Start() error {
	a.done = make(chan struct{})
	go a.run(a.runCtx)
	return nil
}

// Stop ends the check loop and waits for it, so that a reload never leaves
// an old loop polling services the new config dropped.
func (a *App) Stop() error {
	if a.cancel == nil {
		return nil
	}
	a.cancel()
	if a.done != nil {
		<-a.done
	}
	a.inFlight.stop() // then no check opens a connection after the next line
	a.client.CloseIdleConnections()
	return nil
}

func (a *App) run(ctx context.Context) {
	defer close(a.done)
	a.Tick(ctx)
	t := time.NewTicker(time.Duration(a.Interval))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			a.Tick(ctx)
		}
	}
}

// State returns the latest state; it never changes once returned.
func (a *App) State() *State { return a.state.Load() }

// Interface guards
var (
	_ caddy.App         = (*App)(nil)
	_ caddy.Provisioner = (*App)(nil)
	_ caddy.Validator   = (*App)(nil)
)
