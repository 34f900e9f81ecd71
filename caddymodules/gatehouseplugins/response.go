package gatehouseplugins

import (
	"io"
	"net/http"
	"strings"

	"go.uber.org/zap"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

// pluginResponse limits what a plugin's answer may do in the platform's
// origin, which the SPA shares: it may not set (or clear) the access-token
// cookie, which would sign the browser in as someone else or out, and its
// content type is never sniffed, so a response the plugin labels as data
// does not run as HTML or script. Everything else passes unchanged,
// streaming and upgrades included (ResponseWriterWrapper unwraps for them).
type pluginResponse struct {
	*caddyhttp.ResponseWriterWrapper
	tokenCookie string
	service     string
	logger      *zap.Logger
	wrote       bool
}

func (g *Gateway) guardResponse(w http.ResponseWriter, service string) http.ResponseWriter {
	return &pluginResponse{
		ResponseWriterWrapper: &caddyhttp.ResponseWriterWrapper{ResponseWriter: w},
		tokenCookie:           g.TokenCookie,
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
	if p.tokenCookie != "" {
		if kept, dropped := withoutCookie(h.Values("Set-Cookie"), p.tokenCookie); dropped {
			h.Del("Set-Cookie")
			for _, v := range kept {
				h.Add("Set-Cookie", v)
			}
			p.logger.Warn("a plugin tried to set the access-token cookie; removed",
				zap.String("service", p.service), zap.String("cookie", p.tokenCookie))
		}
	}
	if h.Get("X-Content-Type-Options") == "" {
		h.Set("X-Content-Type-Options", "nosniff")
	}
	if code >= 200 || code == http.StatusSwitchingProtocols {
		p.wrote = true
	}
	p.ResponseWriterWrapper.WriteHeader(code)
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

// withoutCookie returns the Set-Cookie values that do not set name, and
// whether any did. A cookie's name is what precedes its first '=', with
// surrounding spaces ignored as browsers do.
func withoutCookie(values []string, name string) (kept []string, dropped bool) {
	for _, v := range values {
		n, _, _ := strings.Cut(v, "=")
		if strings.TrimSpace(n) == name {
			dropped = true
			continue
		}
		kept = append(kept, v)
	}
	return kept, dropped
}
