package gatehouseauth

import (
	"io"
	"net/http"
	"net/url"
	"strings"

	"golang.org/x/net/http/httpguts"
)

// The request headers the edge sets after a successful verification.
// Upstreams trust these and nothing else.
const (
	HeaderUserID     = "X-User-Id"
	HeaderUserRole   = "X-User-Role"
	HeaderUserGroups = "X-User-Groups"
)

// PlaceholderTokenCookie names the configured token cookie on a request
// gatehouse_auth authenticated (set only with the cookie option), so that
// handlers after it (the plugin gateway) know which cookie is a credential.
const PlaceholderTokenCookie = "http.auth.token_cookie"

// Identity header names are compared in a normal form: ASCII lower case,
// with '_' and '.' read as '-'. CGI, FastCGI, WSGI and PHP fold all three
// separators onto one variable, so "X_User_Id" or "x.user.id" would reach
// such an upstream as X-User-Id if we only looked at the canonical spelling.

// defaultIdentityPrefixes are stripped whatever the configuration says:
// every header in these families names a user to someone.
var defaultIdentityPrefixes = []string{"x-user-", "x-auth-"}

// defaultIdentityNames are single identity headers used by common proxies
// and frameworks (Apache/nginx auth modules, oauth2-proxy, Pomerium-style
// gateways). Stripping them costs nothing and closes doors an upstream
// library might open on its own.
var defaultIdentityNames = []string{
	"x-user", "x-auth",
	"x-forwarded-user", "x-forwarded-email", "x-forwarded-groups",
	"x-forwarded-preferred-username", "x-forwarded-access-token",
	"x-remote-user", "x-remote-group", "remote-user",
	"x-authenticated-user", "x-authenticated-groups",
}

// defaultRoutingNames tell an upstream which URL, method or client a
// request has: only the edge (Caddy's X-Forwarded-For, -Host and -Proto) or
// a proxy the operator runs may set them. A client's X-Original-URL or
// X-HTTP-Method-Override would send a framework that honours them (Symfony,
// Laravel, Express's method-override, Spring's forwarded-header filter) to
// a route or method other than the one the edge checked, and a client's
// X-Real-IP or Forwarded would be believed as its address (found in
// review: all reached plugins as sent). They are stripped with the
// identity headers, in the same places (Connection, trailers). Behind a
// load balancer, the client's address reaches upstreams in
// X-Forwarded-For, which Caddy keeps from proxies in trusted_proxies.
var defaultRoutingNames = []string{
	"x-original-url", "x-original-uri", "x-rewrite-url", "x-original-method",
	"x-http-method-override", "x-http-method", "x-method-override",
	"x-forwarded-prefix", "x-forwarded-path", "x-forwarded-uri",
	"x-forwarded-port", "x-forwarded-server", "x-forwarded-scheme", "x-forwarded-ssl",
	"x-envoy-original-path", "x-original-host",
	"forwarded", "x-real-ip", "x-client-ip", "true-client-ip", "x-cluster-client-ip",
}

// identityMatcher decides whether a header name is an identity header.
// It is built once at provision time and only read afterwards.
type identityMatcher struct {
	names    []string // normal form, exact match
	prefixes []string // normal form, prefix match
}

// newIdentityMatcher compiles the default list plus extra names from the
// configuration; an extra name ending in '*' is a prefix.
func newIdentityMatcher(extra []string) identityMatcher {
	m := identityMatcher{
		names:    append(append([]string(nil), defaultIdentityNames...), defaultRoutingNames...),
		prefixes: append([]string(nil), defaultIdentityPrefixes...),
	}
	for _, e := range extra {
		if p, ok := strings.CutSuffix(e, "*"); ok {
			m.prefixes = append(m.prefixes, normalHeaderName(p))
		} else {
			m.names = append(m.names, normalHeaderName(e))
		}
	}
	return m
}

// normalHeaderName is the normal form used for comparisons. It allocates,
// so the hot path uses normalEqual/normalHasPrefix instead.
func normalHeaderName(s string) string {
	b := []byte(s)
	for i, c := range b {
		b[i] = normalByte(c)
	}
	return string(b)
}

func normalByte(c byte) byte {
	switch {
	case 'A' <= c && c <= 'Z':
		return c + ('a' - 'A')
	case c == '_' || c == '.':
		return '-'
	}
	return c
}

// normalHasPrefix reports whether name, in normal form, starts with the
// normal-form prefix p; it does not allocate.
func normalHasPrefix(name, p string) bool {
	if len(name) < len(p) {
		return false
	}
	for i := 0; i < len(p); i++ {
		if normalByte(name[i]) != p[i] {
			return false
		}
	}
	return true
}

func (m *identityMatcher) match(name string) bool {
	for _, n := range m.names {
		if len(name) == len(n) && normalHasPrefix(name, n) {
			return true
		}
	}
	for _, p := range m.prefixes {
		if normalHasPrefix(name, p) {
			return true
		}
	}
	return false
}

// strip removes every identity header a client sent, and every token of
// the Connection header that names one. The latter matters because a
// proxy deletes the headers listed in Connection (they are hop-by-hop,
// RFC 9110 §7.6.1) after we have set ours: "Connection: X-User-Id" would
// otherwise make reverse_proxy delete the verified identity, and an
// upstream that falls back to "anonymous means admin" or similar would be
// one mistake away from a bypass. Trailers are sanitised for the same
// reason: a declared trailer is a header that arrives after the body.
func (m *identityMatcher) strip(h http.Header) {
	for name := range h {
		if m.match(name) {
			delete(h, name)
		}
	}
	if v, ok := h["Connection"]; ok {
		if kept, changed := m.filterTokens(v); changed {
			if len(kept) == 0 {
				delete(h, "Connection")
			} else {
				h["Connection"] = kept
			}
		}
	}
	if v, ok := h["Trailer"]; ok {
		if kept, changed := m.filterTokens(v); changed {
			if len(kept) == 0 {
				delete(h, "Trailer")
			} else {
				h["Trailer"] = kept
			}
		}
	}
}

// filterTokens drops the comma-separated tokens of a list header that
// name identity headers. It allocates only when something is dropped.
func (m *identityMatcher) filterTokens(values []string) (kept []string, changed bool) {
	for _, v := range values {
		for tok := range strings.SplitSeq(v, ",") {
			if m.match(strings.TrimSpace(tok)) {
				changed = true
			}
		}
	}
	if !changed {
		return values, false
	}
	var toks []string
	for _, v := range values {
		for tok := range strings.SplitSeq(v, ",") {
			tok = strings.TrimSpace(tok)
			if tok != "" && !m.match(tok) {
				toks = append(toks, tok)
			}
		}
	}
	if len(toks) == 0 {
		return nil, true
	}
	return []string{strings.Join(toks, ", ")}, true
}

// stripTrailers removes identity names from a request's trailers, so a
// value sent after the body never reaches an upstream. net/http fills
// r.Trailer only when the body has been read to EOF, long after this
// handler ran, and reverse_proxy forwards what it finds there; so the body
// is wrapped to strip again at EOF, before the proxy copies the trailers.
func (m *identityMatcher) stripTrailers(r *http.Request) {
	m.deleteTrailers(r.Trailer)
	if r.Body != nil && r.Body != http.NoBody && (r.Trailer != nil || r.ContentLength < 0) {
		r.Body = &trailerStripper{ReadCloser: r.Body, m: m, r: r}
	}
}

// deleteTrailers also removes credentials and every field RFC 9110 does
// not allow in a trailer (httpguts' list: Authorization, Host,
// Content-Length, ...): the edge consumes the header token, and a copy of
// it sent after the body would otherwise reach the upstream (found in
// review), as would a Cookie trailer.
func (m *identityMatcher) deleteTrailers(t http.Header) {
	for name := range t {
		if m.match(name) || !httpguts.ValidTrailerHeader(name) || strings.EqualFold(name, "Cookie") {
			delete(t, name)
		}
	}
}

// trailerStripper strips identity trailers once the body reaches EOF.
type trailerStripper struct {
	io.ReadCloser
	m *identityMatcher
	r *http.Request
}

func (t *trailerStripper) Read(p []byte) (int, error) {
	n, err := t.ReadCloser.Read(p)
	if err == io.EOF {
		t.m.deleteTrailers(t.r.Trailer)
	}
	return n, err
}

// encodeGroups renders group names for X-User-Groups: each name
// percent-encoded (so a comma, space or non-ASCII letter in a name cannot
// split or corrupt the list), joined with commas.
func encodeGroups(groups []string) string {
	switch len(groups) {
	case 0:
		return ""
	case 1:
		return url.PathEscape(groups[0])
	}
	var b strings.Builder
	for i, g := range groups {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(url.PathEscape(g))
	}
	return b.String()
}

// headerSafe reports whether s can travel as a header value unchanged:
// visible ASCII and spaces only. A subject carrying CR, LF or NUL would
// make the proxy fail or, worse, a lenient upstream split the header.
func headerSafe(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c > 0x7e {
			return false
		}
	}
	return true
}
