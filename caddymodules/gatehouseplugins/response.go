package gatehouseplugins

import (
	"io"
	"mime"
	"net/http"
	"net/url"
	"strings"

	"go.uber.org/zap"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/gatehouse/gatehouse/caddymodules/internal/refusal"
)

// pluginResponse limits what a plugin's answer may do in the platform's
// origin, which the SPA shares:
//   - it may not set the access-token cookie, which would sign the browser
//     in as someone else, nor a nameless cookie, which browsers send back
//     as its bare value ("=gh_token=x" returns as "gh_token=x"), nor any
//     cookie in a trailer;
//   - it may not send Clear-Site-Data, which signs the user out (cookies,
//     storage) of the whole platform;
//   - its content type is never sniffed: nosniff is always set, and an
//     answer without a Content-Type is labelled application/octet-stream
//     rather than guessed (net/http would guess text/html);
//   - it runs sandboxed (Content-Security-Policy: sandbox) in an opaque
//     origin, except a PDF, and may not widen a service worker's scope;
//   - it may not redirect outside the plugin's own route prefixes (see
//     redirectAllowed): a browser's fetch follows a 307 or 308 (and a 301
//     or 302 for anything but POST) with the same method, body and
//     Authorization header, so a redirect to a core route such as
//     /api/admin/users/{id} replays the user's request there. Such an
//     answer becomes a 502 of the gateway's own.
//
// Everything else passes unchanged, streaming and upgrades included
// (ResponseWriterWrapper unwraps for them).
type pluginResponse struct {
	caddyhttp.ResponseWriterWrapper           // a value: one allocation per request, not two
	tokenCookies                    [2]string // see Gateway.tokenCookies
	service                         string
	logger                          *zap.Logger
	wrote                           bool
	// req is the client's request, against whose URL a Location is
	// resolved; routes are the plugin's routes, within whose prefixes a
	// redirect may lead (none for the settings proxy: no redirect at all).
	req    *http.Request
	routes []Route
	// refusedAnswer: the plugin's answer was replaced by the gateway's
	// 502, and what the proxy still writes of it is dropped.
	refusedAnswer bool
}

func (g *Gateway) guardResponse(w http.ResponseWriter, r *http.Request, service string, routes []Route, tokenCookies [2]string) *pluginResponse {
	return &pluginResponse{
		ResponseWriterWrapper: caddyhttp.ResponseWriterWrapper{ResponseWriter: w},
		tokenCookies:          tokenCookies,
		service:               service,
		logger:                g.logger,
		req:                   r,
		routes:                routes,
	}
}

// errBadRedirect is the detail of the 502 that replaces a plugin's
// redirect the gateway does not pass.
const errBadRedirect refusal.Message = "Plugin answered with a redirect outside its routes"

func (p *pluginResponse) WriteHeader(code int) {
	if p.wrote {
		p.ResponseWriterWrapper.WriteHeader(code) // let net/http report it
		return
	}
	h := p.Header()
	if code >= 300 && code < 400 && code != http.StatusNotModified && !p.redirectAllowed(h.Values("Location")) {
		p.refused("a redirect outside its routes", strings.Join(h.Values("Location"), ", "))
		p.refuseAnswer(http.StatusBadGateway, errBadRedirect)
		return
	}
	if kept, dropped := p.allowedCookies(h.Values("Set-Cookie")); dropped != "" {
		h.Del("Set-Cookie")
		for _, v := range kept {
			h.Add("Set-Cookie", v)
		}
		p.refused("a cookie the platform owns (the access-token cookie or a nameless one)", dropped)
	}
	// A trailer is announced before the body; one not announced is not
	// sent, so a Set-Cookie trailer dies here (unannounced ones: finish).
	if trailers := h.Values("Trailer"); len(trailers) > 0 {
		h.Del("Trailer")
		for _, v := range trailers {
			for name := range strings.SplitSeq(v, ",") {
				if name = strings.TrimSpace(name); name != "" && !strings.EqualFold(name, "Set-Cookie") {
					h.Add("Trailer", name)
				}
			}
		}
	}
	// Whatever its values: browsers join the lines, so an empty first
	// line followed by `"cookies"` is still `, "cookies"` to them.
	if vs := h.Values("Clear-Site-Data"); len(vs) > 0 {
		h.Del("Clear-Site-Data")
		p.refused("Clear-Site-Data", strings.Join(vs, ", "))
	}
	h.Set("X-Content-Type-Options", "nosniff")
	if _, typed := h["Content-Type"]; !typed && code >= 200 && code != http.StatusNoContent && code != http.StatusNotModified {
		h.Set("Content-Type", "application/octet-stream")
	}
	// A worker the plugin serves may not claim a scope beyond its path
	// (Service-Worker-Allowed: / would put the whole origin, SPA and
	// login included, under the plugin's worker).
	h.Del("Service-Worker-Allowed")
	switch {
	case code == http.StatusNotModified:
		// A 304 updates the headers of the answer the browser stored:
		// the plugin's CSP would replace the stored sandbox, and a
		// sandbox here would sandbox a stored PDF. It describes no body,
		// so it keeps the stored answer's type and policy.
		h.Del("Content-Security-Policy")
		h.Del("Content-Type")
	case code >= 200 && !isPDF(h.Values("Content-Type")):
		// Whatever the plugin labels text/html (or SVG, XML, ...) would
		// run as a page of the platform's origin, whose cookies carry the
		// user's token (gatehouse_auth's cookie option) and whose APIs
		// trust them. Sandboxed, it runs in an opaque origin: no cookies,
		// storage or same-origin requests of the platform. Added, not set:
		// a plugin's own policy stays, and browsers enforce both.
		h.Add("Content-Security-Policy", "sandbox")
	}
	if code >= 200 || code == http.StatusSwitchingProtocols {
		p.wrote = true
	}
	p.ResponseWriterWrapper.WriteHeader(code)
}

// finish runs when the proxy has returned, before net/http sends the
// trailers: Caddy puts an upstream's unannounced trailers in the header
// map under http.TrailerPrefix, and a cookie may not come that way either.
func (p *pluginResponse) finish() {
	h := p.Header()
	for k := range h {
		if p.refusedAnswer && strings.HasPrefix(k, http.TrailerPrefix) {
			delete(h, k) // the answer they trail was not sent
			continue
		}
		if name, ok := strings.CutPrefix(k, http.TrailerPrefix); ok && strings.EqualFold(name, "Set-Cookie") {
			p.refused("a cookie in a trailer", strings.Join(h[k], "; "))
			delete(h, k)
		}
	}
}

func (p *pluginResponse) refused(what, value string) {
	p.logger.Warn("a plugin's answer tried to send "+what+"; removed",
		zap.String("service", p.service), zap.Int("bytes", len(value)))
}

func (p *pluginResponse) Write(b []byte) (int, error) {
	if !p.wrote {
		p.WriteHeader(http.StatusOK)
	}
	if p.refusedAnswer {
		return len(b), nil // the plugin's body of an answer not sent
	}
	return p.ResponseWriterWrapper.Write(b)
}

func (p *pluginResponse) ReadFrom(r io.Reader) (int64, error) {
	if !p.wrote {
		p.WriteHeader(http.StatusOK)
	}
	if p.refusedAnswer {
		return io.Copy(io.Discard, r)
	}
	return p.ResponseWriterWrapper.ReadFrom(r)
}

// refuseAnswer sends the gateway's own answer, {"detail": msg}, instead
// of the plugin's: none of the plugin's headers go with it, and its body
// is dropped as the proxy writes it.
func (p *pluginResponse) refuseAnswer(status int, msg refusal.Message) {
	h := p.Header()
	clear(h)
	p.wrote, p.refusedAnswer = true, true
	h.Set("Cache-Control", "no-store")
	refusal.Write(p.ResponseWriterWrapper.ResponseWriter, status, msg)
}

// redirectAllowed reports whether a plugin's 3xx answer (other than 304)
// with these Location values may reach the client: exactly one Location,
// which, resolved against the request's URL as a browser resolves it,
// stays in the platform's origin and within one of the plugin's route
// prefixes. A Location with spaces, control characters or backslashes is
// refused outright: browsers strip or reinterpret them ("/\host" is
// "//host" to them), so Go's reading of it would not be theirs; so is a
// path that is not canonical (%2e%2e is a dot segment to a browser).
func (p *pluginResponse) redirectAllowed(locations []string) bool {
	if len(locations) != 1 || len(p.routes) == 0 {
		return false
	}
	loc := locations[0]
	if strings.ContainsFunc(loc, func(r rune) bool { return r <= ' ' || r == 0x7f || r == '\\' }) {
		return false
	}
	scheme := "http"
	if p.req.TLS != nil {
		scheme = "https"
	}
	base := &url.URL{Scheme: scheme, Host: p.req.Host, Path: p.req.URL.Path, RawPath: p.req.URL.RawPath}
	u, err := base.Parse(loc)
	if err != nil || u.Scheme != base.Scheme || !strings.EqualFold(u.Host, base.Host) || u.User != nil {
		return false
	}
	path, ok := canonicalPath(u)
	if !ok {
		return false
	}
	for _, rt := range p.routes {
		if within(path, rt.Prefix) {
			return true
		}
	}
	return false
}

// allowedCookies returns the Set-Cookie values a plugin may send, and one
// it may not (the last), if any. A line is read as browsers read it (RFC
// 6265bis 5.6): the name-value pair is what precedes the first ';', and
// the name what precedes the pair's first '=', spaces trimmed; a pair
// without '=' or with an empty name is a nameless cookie. Reading the name
// from the whole line took "gh_token; Path=/" for a cookie named
// "gh_token; Path", which a browser stores as a nameless "gh_token".
func (p *pluginResponse) allowedCookies(values []string) (kept []string, dropped string) {
	for _, v := range values {
		pair, _, _ := strings.Cut(v, ";")
		n, _, hasEq := strings.Cut(pair, "=")
		n = strings.TrimSpace(n)
		if !hasEq || n == "" || (n == p.tokenCookies[0] || n == p.tokenCookies[1]) {
			dropped = v
			continue
		}
		kept = append(kept, v)
	}
	return kept, dropped
}

// isPDF reports whether an answer with these Content-Type values is a PDF,
// which goes without the sandbox: browsers' PDF viewers refuse sandboxed
// documents, and docservice serves its downloads through the gateway. One
// value, one type: browsers take the last of several types (fetch's
// "extract a MIME type"), so "application/pdf" followed by "text/html"
// is HTML to them.
func isPDF(contentTypes []string) bool {
	if len(contentTypes) != 1 || strings.Contains(contentTypes[0], ",") {
		return false
	}
	mt, _, err := mime.ParseMediaType(contentTypes[0])
	return err == nil && mt == "application/pdf"
}
