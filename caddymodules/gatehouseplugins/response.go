package gatehouseplugins

import (
	"io"
	"net/http"
	"strings"

	"go.uber.org/zap"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
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
//     rather than guessed (net/http would guess text/html).
//
// Everything else passes unchanged, streaming and upgrades included
// (ResponseWriterWrapper unwraps for them).
type pluginResponse struct {
	caddyhttp.ResponseWriterWrapper           // a value: one allocation per request, not two
	tokenCookies                    [2]string // see Gateway.tokenCookies
	service                         string
	logger                          *zap.Logger
	wrote                           bool
}

func (g *Gateway) guardResponse(w http.ResponseWriter, service string, tokenCookies [2]string) *pluginResponse {
	return &pluginResponse{
		ResponseWriterWrapper: caddyhttp.ResponseWriterWrapper{ResponseWriter: w},
		tokenCookies:          tokenCookies,
		service:               service,
		logger:                g.logger,
	}
}

func (p *pluginResponse) WriteHeader(code int) {
	if p.wrote {
		p.ResponseWriterWrapper.WriteHeader(code) // let net/http report it
		return
	}
	h := p.Header()
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
	if v := h.Get("Clear-Site-Data"); v != "" {
		h.Del("Clear-Site-Data")
		p.refused("Clear-Site-Data", v)
	}
	h.Set("X-Content-Type-Options", "nosniff")
	if _, typed := h["Content-Type"]; !typed && code >= 200 && code != http.StatusNoContent && code != http.StatusNotModified {
		h.Set("Content-Type", "application/octet-stream")
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
	return p.ResponseWriterWrapper.Write(b)
}

func (p *pluginResponse) ReadFrom(r io.Reader) (int64, error) {
	if !p.wrote {
		p.WriteHeader(http.StatusOK)
	}
	return p.ResponseWriterWrapper.ReadFrom(r)
}

// allowedCookies returns the Set-Cookie values a plugin may send, and one
// it may not (the last), if any. A cookie's name is what precedes its
// first '=', spaces trimmed as browsers do; without '=' or with an empty
// name the cookie is nameless.
func (p *pluginResponse) allowedCookies(values []string) (kept []string, dropped string) {
	for _, v := range values {
		n, _, hasEq := strings.Cut(v, "=")
		n = strings.TrimSpace(n)
		if !hasEq || n == "" || (n == p.tokenCookies[0] || n == p.tokenCookies[1]) {
			dropped = v
			continue
		}
		kept = append(kept, v)
	}
	return kept, dropped
}
