package gatehouseplugins

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/reverseproxy"

	"github.com/gatehouse/gatehouse/caddymodules/internal/cookie"
	"github.com/gatehouse/gatehouse/caddymodules/internal/refusal"
)

func init() {
	caddy.RegisterModule(Gateway{})
}

// Gateway is the gatehouse_plugin_gateway handler. It must come after
// gatehouse_auth, whose verified identity ({http.auth.user.*}) it reads;
// without one it refuses every request it would serve (401).
//
// It serves, to authenticated users:
//   - GET /api/services: every registered service's health;
//   - GET /api/plugins: the plugins this user may access;
//   - GET /api/plugins/{id}/manifest: 404 unless the user may access it;
//   - GET and PATCH /api/plugins/{id}/settings: proxied to the service's
//     /plugin/settings after the same check;
//
// and every request under a prefix that an accepted manifest declares goes
// to that plugin's service through Caddy's reverse proxy, if the route's
// access rule allows, with X-User-* set from the verified identity and the
// client's credentials removed unless the route opts in. A request under a
// prefix the operator pinned to a service whose manifest the edge does not
// have gets 503. Other requests pass to the next handler. Errors are returned as caddyhttp errors, so
// handle_errors writes their bodies.
type Gateway struct {
	// Name of a cookie that carries the access token, removed from
	// requests to plugins unless a route sets forward_credentials, and
	// never set by a plugin's answer. The cookie of the gatehouse_auth in
	// front (its `cookie` option) is treated so without this; set it only
	// for a token cookie that gatehouse_auth does not read. Default: none.
	// The Authorization header is always removed.
	TokenCookie string `json:"token_cookie,omitempty"`

	app     *App
	proxies map[string]*reverseproxy.Handler // by service id
	logger  *zap.Logger
	// noTokenWarned makes the forward_credentials misconfiguration
	// warning (see proxyRoute) appear once per config, not per request.
	noTokenWarned *sync.Once
}

// CaddyModule returns the Caddy module information.
func (Gateway) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.gatehouse_plugin_gateway",
		New: func() caddy.Module { return new(Gateway) },
	}
}

// Provision finds the gatehouse_plugins app (an empty one when the config
// has none) and sets up a reverse proxy per registered service.
func (g *Gateway) Provision(ctx caddy.Context) error {
	g.logger = ctx.Logger()
	g.noTokenWarned = new(sync.Once)
	appIface, err := ctx.App("gatehouse_plugins")
	if err != nil {
		return err
	}
	g.app = appIface.(*App)
	g.proxies = make(map[string]*reverseproxy.Handler, len(g.app.Services))
	for _, svc := range g.app.Services {
		rp, err := newProxy(ctx, svc, time.Duration(g.app.Timeout))
		if err != nil {
			return fmt.Errorf("service %q: %w", svc.ID, err)
		}
		g.proxies[svc.ID] = rp
	}
	return nil
}

// newProxy provisions Caddy's reverse proxy for one service: streaming in
// both directions (no request or response buffering), hop-by-hop headers
// handled by Caddy, one attempt, and a dial timeout so a vanished service
// fails fast instead of hanging the client.
func newProxy(ctx caddy.Context, svc ServiceConfig, timeout time.Duration) (*reverseproxy.Handler, error) {
	u, err := parseServiceURL(svc.URL)
	if err != nil {
		return nil, err
	}
	host := u.Host
	if u.Port() == "" {
		host += map[string]string{"http": ":80", "https": ":443"}[u.Scheme]
	}
	transport := &reverseproxy.HTTPTransport{DialTimeout: caddy.Duration(timeout)}
	if u.Scheme == "https" {
		transport.TLS = &reverseproxy.TLSConfig{}
	}
	if err := transport.Provision(ctx); err != nil {
		return nil, err
	}
	rp := &reverseproxy.Handler{
		Upstreams: reverseproxy.UpstreamPool{{Dial: host}},
		Transport: transport,
	}
	if err := rp.Provision(ctx); err != nil {
		return nil, err
	}
	return rp, nil
}

// Cleanup releases the proxies' upstreams and connections. Caddy cleans up
// only the modules it loaded itself; these transports were made here, so
// their idle connections to the services are closed here, at each reload,
// rather than left to time out.
func (g *Gateway) Cleanup() error {
	var errs []error
	for _, rp := range g.proxies {
		errs = append(errs, rp.Cleanup())
		if t, ok := rp.Transport.(*reverseproxy.HTTPTransport); ok {
			errs = append(errs, t.Cleanup())
		}
	}
	return errors.Join(errs...)
}

// Client-facing messages (refusal.Respond answers with them).
const (
	errNotAuthenticated refusal.Message = "Not authenticated"
	errBadPath          refusal.Message = "Invalid path"
	errForbidden        refusal.Message = "Not enough permissions"
	errNotFound         refusal.Message = "Not found"
	errUnavailable      refusal.Message = "Plugin unavailable"
	errMethod           refusal.Message = "Method not allowed"
)

// target is what a path means to the gateway.
type target struct {
	kind   targetKind
	plugin string      // kindManifest, kindSettings
	route  *routeEntry // kindRoute
}

type targetKind int

const (
	kindNone targetKind = iota
	kindServices
	kindPlugins
	kindManifest
	kindSettings
	kindPluginOther // under /api/plugins/, nothing there
	kindRoute
	// kindPinned: under a prefix the operator pinned to a service whose
	// manifest does not route it (not fetched yet, refused, or the
	// service down). Only that service may serve it, so it is not passed
	// on to whatever handler comes next.
	kindPinned
)

func classify(st *State, p string, pinned func(string) string) target {
	switch {
	case p == "/api/services":
		return target{kind: kindServices}
	case p == "/api/plugins":
		return target{kind: kindPlugins}
	case strings.HasPrefix(p, "/api/services/"):
		return target{kind: kindPluginOther}
	case strings.HasPrefix(p, "/api/plugins/"):
		rest := p[len("/api/plugins/"):]
		id, sub, _ := strings.Cut(rest, "/")
		switch sub {
		case "manifest":
			return target{kind: kindManifest, plugin: id}
		case "settings":
			return target{kind: kindSettings, plugin: id}
		}
		return target{kind: kindPluginOther}
	}
	if r := st.route(p); r != nil {
		return target{kind: kindRoute, route: r}
	}
	if id := pinned(p); id != "" {
		if svc := st.Service(id); svc == nil || !svc.Healthy || svc.Manifest == nil {
			return target{kind: kindPinned, plugin: id}
		}
		// A healthy service whose manifest leaves this path alone: the
		// operator's own routes under the pin (if any) serve it.
	}
	return target{kind: kindNone}
}

// ServeHTTP serves the plugin API and the manifest routes.
func (g *Gateway) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	st := g.app.State()
	canon, ok := canonicalPath(r.URL)
	t := classify(st, canon, g.app.pinnedTo)
	if !ok {
		// Any reading of an odd spelling that lands on us is refused:
		// the edge will not guess which one the upstream would take.
		for _, p := range readings(r.URL) {
			if classify(st, p, g.app.pinnedTo).kind != kindNone {
				return refusal.Respond(w, r, http.StatusBadRequest, errBadPath)
			}
		}
		return next.ServeHTTP(w, r)
	}
	if t.kind == kindNone {
		return next.ServeHTTP(w, r)
	}

	id, ok := identityFrom(r)
	if !ok {
		w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
		return refusal.Respond(w, r, http.StatusUnauthorized, errNotAuthenticated)
	}
	// A service down at the last check, or without a manifest yet, is
	// looked at again now rather than answered from a picture up to an
	// interval old; then the path is classified anew, so the answer
	// follows the manifest the service serves now. Requests the last
	// manifest's access rule refuses are refused first, without a check.
	if svcID := g.needsRecheck(st, t, id); svcID != "" {
		st = g.recheck(r, svcID)
		t = classify(st, canon, g.app.pinnedTo)
	}
	switch t.kind {
	case kindNone:
		return next.ServeHTTP(w, r)
	case kindPinned:
		g.retryAfter(w)
		return refusal.Respond(w, r, http.StatusServiceUnavailable, errUnavailable)
	case kindServices:
		if ok, err := allowMethods(w, r, http.MethodGet); !ok {
			return err
		}
		return writeJSON(w, servicesView(st, id))
	case kindPlugins:
		if ok, err := allowMethods(w, r, http.MethodGet); !ok {
			return err
		}
		return writeJSON(w, pluginsView(st, id))
	case kindManifest:
		svc := accessible(st, t.plugin, id)
		if svc == nil {
			return refusal.Respond(w, r, http.StatusNotFound, errNotFound)
		}
		if ok, err := allowMethods(w, r, http.MethodGet); !ok {
			return err
		}
		return writeJSON(w, svc.Manifest)
	case kindSettings:
		svc := accessible(st, t.plugin, id)
		if svc == nil || svc.Manifest.Settings == nil {
			return refusal.Respond(w, r, http.StatusNotFound, errNotFound)
		}
		if ok, err := allowMethods(w, r, http.MethodGet, http.MethodPatch); !ok {
			return err
		}
		return g.proxySettings(w, r, next, svc, id)
	case kindPluginOther:
		return refusal.Respond(w, r, http.StatusNotFound, errNotFound)
	case kindRoute:
		return g.proxyRoute(w, r, next, st, t.route, id)
	}
	return next.ServeHTTP(w, r)
}

// needsRecheck returns the id of the service t needs, if the last check
// found it down or without a manifest and the request would not be
// refused anyway; else "".
func (g *Gateway) needsRecheck(st *State, t target, id identity) string {
	switch t.kind {
	case kindPinned:
		return t.plugin
	case kindRoute:
		rt := t.route
		if !rt.service.Healthy && (rt.Access == RouteAccessAuthenticated || rt.service.Manifest.Access.allows(id)) {
			return rt.service.ID
		}
	case kindSettings:
		if svc := accessible(st, t.plugin, id); svc != nil && svc.Manifest.Settings != nil && !svc.Healthy {
			return svc.ID
		}
	}
	return ""
}

func (g *Gateway) proxyRoute(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler, st *State, rt *routeEntry, id identity) error {
	svc := rt.service
	if rt.Access != RouteAccessAuthenticated && !svc.Manifest.Access.allows(id) {
		return refusal.Respond(w, r, http.StatusForbidden, errForbidden)
	}
	if ok, err := g.available(w, r, svc); !ok {
		return err
	}
	cookies := g.tokenCookies(r)
	if !rt.ForwardCredentials {
		dropCredentials(r, cookies)
	} else if r.Header.Get("Authorization") == "" && !hasCookie(r, cookies) {
		// The request was authenticated, so it had a token: the
		// gatehouse_auth in front consumed it (no forward_token), and the
		// plugin gets none although its manifest asks. Say so once.
		g.noTokenWarned.Do(func() {
			g.logger.Warn("a plugin route has forward_credentials, but gatehouse_auth removed the token before the gateway; set forward_token on it",
				zap.String("service", svc.ID), zap.String("prefix", rt.Prefix))
		})
	}
	id.setHeaders(r.Header)
	pw := g.guardResponse(w, r, svc.ID, svc.Manifest.Routes, cookies)
	defer pw.finish()
	return g.proxied(svc.ID, g.proxies[svc.ID].ServeHTTP(pw, r, next))
}

// proxied passes on the proxy's result; a 502 (the service did not
// answer) has the service checked again at once, so that the next
// requests get 503 with Retry-After, or the service back, without waiting
// for the next round.
func (g *Gateway) proxied(service string, err error) error {
	var he caddyhttp.HandlerError
	if errors.As(err, &he) && he.StatusCode == http.StatusBadGateway {
		g.app.Recheck(noWait, service) // starts the check, waits for nothing
	}
	return err
}

// noWait is a context already done: Recheck with it does not wait.
var noWait = func() context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return ctx
}()

// proxySettings sends GET/PATCH to the service's /plugin/settings; the
// service's answer, validation errors included, goes back as it is.
func (g *Gateway) proxySettings(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler, svc *ServiceStatus, id identity) error {
	if ok, err := g.available(w, r, svc); !ok {
		return err
	}
	// A shallow copy with its own URL, so that the access log keeps the
	// path the client asked for.
	r2 := r.WithContext(r.Context())
	r2.URL = &url.URL{Path: "/plugin/settings"}
	r2.RequestURI = ""
	cookies := g.tokenCookies(r)
	dropCredentials(r2, cookies)
	id.setHeaders(r2.Header)
	// No routes: a settings answer may not redirect at all. A browser
	// following one would send the admin's PATCH, a body the plugin
	// shaped through its schema, wherever the plugin chose.
	pw := g.guardResponse(w, r, svc.ID, nil, cookies)
	defer pw.finish()
	return g.proxied(svc.ID, g.proxies[svc.ID].ServeHTTP(pw, r2, next))
}

// available reports whether svc was up at its latest check (ServeHTTP has
// had it checked again if it was down). If not, it has answered 503 rather
// than letting the client wait for a dial to fail, and err is what
// ServeHTTP returns (nil when the refusal was written: see
// refusal.Respond).
func (g *Gateway) available(w http.ResponseWriter, r *http.Request, svc *ServiceStatus) (ok bool, err error) {
	if svc.Healthy {
		return true, nil
	}
	g.retryAfter(w)
	return false, refusal.Respond(w, r, http.StatusServiceUnavailable, errUnavailable)
}

// recheckWait bounds how long a request waits for a check on demand: a
// service that is back (or refuses connections) answers within it; one
// that hangs gets its 503 after it, while the check runs on in the
// background, instead of holding every request for the check's timeout.
const recheckWait = 250 * time.Millisecond

// recheck has service id checked on demand and returns the state after,
// or as it is once recheckWait (or the request) ends.
func (g *Gateway) recheck(r *http.Request, id string) *State {
	ctx, cancel := context.WithTimeout(r.Context(), recheckWait)
	defer cancel()
	return g.app.Recheck(ctx, id)
}

// retryAfter sets Retry-After on a 503 for a service that is not there:
// a request after it has the service checked again (Recheck).
func (g *Gateway) retryAfter(w http.ResponseWriter) {
	w.Header().Set("Retry-After", strconv.Itoa(int(2*MinRecheckGap/time.Second)))
}

// tokenCookies are the names of the cookies that carry access tokens on
// r: the gateway's token_cookie and gatehouse_auth's cookie ("" when not
// configured).
func (g *Gateway) tokenCookies(r *http.Request) [2]string {
	return [2]string{g.TokenCookie, tokenCookieFrom(r)}
}

// dropCredentials removes what could let a plugin act as the user
// elsewhere: the identity it needs is in X-User-*.
func dropCredentials(r *http.Request, cookies [2]string) {
	r.Header.Del("Authorization")
	for _, name := range cookies {
		if name != "" {
			cookie.Remove(r.Header, name)
		}
	}
}

func hasCookie(r *http.Request, cookies [2]string) bool {
	for _, name := range cookies {
		if name != "" && len(r.CookiesNamed(name)) > 0 {
			return true
		}
	}
	return false
}

// allowMethods reports whether r's method is one of methods. If not, it has
// refused r with 405, and err is what ServeHTTP returns (nil when the
// refusal was written: see refusal.Respond).
func allowMethods(w http.ResponseWriter, r *http.Request, methods ...string) (ok bool, err error) {
	for _, m := range methods {
		if r.Method == m {
			return true, nil
		}
	}
	w.Header().Set("Allow", strings.Join(methods, ", "))
	return false, refusal.Respond(w, r, http.StatusMethodNotAllowed, errMethod)
}

func writeJSON(w http.ResponseWriter, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return caddyhttp.Error(http.StatusInternalServerError, err)
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_, err = w.Write(b)
	return err
}

// Interface guards
var (
	_ caddy.Provisioner           = (*Gateway)(nil)
	_ caddy.CleanerUpper          = (*Gateway)(nil)
	_ caddyhttp.MiddlewareHandler = (*Gateway)(nil)
)
