// Package gatehouseauth is the gatehouse_auth HTTP handler: the edge's
// identity check. On every request it handles, it removes identity headers
// the client sent; on guarded routes it then verifies the access token
// (internal/accesstoken's rules, keys from authsvc's JWKS) and sets the
// X-User-* headers upstreams trust.
//
// It must never let a client-chosen value of an identity header through,
// never read a token from the URL, and never answer 401 when the fault is
// ours (no key set yet): that is a 503.
package gatehouseauth

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/gatehouse/gatehouse/caddymodules/internal/cookie"
	"github.com/gatehouse/gatehouse/caddymodules/internal/refusal"
	"github.com/gatehouse/gatehouse/internal/accesstoken"
)

func init() {
	caddy.RegisterModule(Handler{})
}

// Handler authenticates requests with Gatehouse access tokens.
//
// Every request it sees first loses its identity headers: X-User-*,
// X-Auth-*, X-Forwarded-User, X-Remote-User and similar (see docs/edge.md),
// plus `strip_headers`, compared case-blind with '_' and '.' read as '-';
// and the Connection and Trailer headers lose any token naming one, so
// a client cannot make a proxy drop the headers set here.
//
// Then, unless `strip_only` is set, the request must carry a valid token
// in `Authorization: Bearer <token>` or in the configured cookie (never the
// query string). On success the placeholders `{http.auth.user.id}`,
// `{http.auth.user.role}`, `{http.auth.user.groups}` and
// `{http.auth.user.sid}` are set, and so are the request headers X-User-Id,
// X-User-Role and X-User-Groups (group names percent-encoded, joined with
// commas). On failure the handler returns a 401 error with
// `WWW-Authenticate: Bearer error="invalid_token"`, or a 503 with
// Retry-After while no key set has been loaded yet; write the body in
// handle_errors.
type Handler struct {
	// URL of the JWKS to verify tokens with, e.g.
	// http://127.0.0.1:8000/.well-known/jwks.json. Fetched in the
	// background; Caddy starts even when it is unreachable. Exactly one of
	// jwks_url and jwks_file is required unless strip_only is set.
	JWKSURL string `json:"jwks_url,omitempty"`

	// Path of a JWKS file, read once at provision time (a reload reads it
	// again); provisioning fails if it is unreadable or holds no usable key.
	JWKSFile string `json:"jwks_file,omitempty"`

	// Required "iss" claim. Required unless strip_only is set.
	Issuer string `json:"issuer,omitempty"`

	// Required member of the "aud" claim. Required unless strip_only is set.
	Audience string `json:"audience,omitempty"`

	// Name of a cookie to read the token from when there is no
	// Authorization header. Default: none (header only).
	Cookie string `json:"cookie,omitempty"`

	// Signature algorithms a token may use, checked before any key lookup:
	// RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, ES512, EdDSA.
	// "none" and HMAC are refused here, in any configuration. A JWKS key
	// verifies only the algorithms its type (and its "alg", if published)
	// allows. Default: RS256 (what authsvc signs with).
	Algorithms []string `json:"algorithms,omitempty"`

	// More identity header names to strip, besides the built-in list. A
	// trailing "*" makes the name a prefix. Matching is case-blind with
	// '_' and '.' read as '-'.
	StripHeaders []string `json:"strip_headers,omitempty"`

	// Only strip identity headers; do not require or check a token. For
	// routes that are public but must not see forged identities either.
	StripOnly bool `json:"strip_only,omitempty"`

	// Let CORS preflight requests (OPTIONS with Access-Control-Request-
	// Method) through without a token; browsers never send credentials on
	// them. Identity headers are still stripped. Default: false.
	AllowPreflight bool `json:"allow_preflight,omitempty"`

	// Keep the credential on the request for the upstream: the
	// Authorization header, or the token cookie. By default the edge
	// consumes it once verified, so upstreams get the identity headers but
	// never a bearer token they could replay elsewhere; set this for an
	// upstream that checks tokens itself (authsvc). Default: false.
	ForwardToken bool `json:"forward_token,omitempty"`

	// How many verified tokens to remember; 0 turns the cache off, so every
	// request is verified anew. A pointer, because an absent cache_size
	// (the default, 10000) and an explicit 0 must stay different things.
	CacheSize *int `json:"cache_size,omitempty"`

	// How often to refresh the JWKS when its response has no Cache-Control
	// max-age (a max-age is honoured between 1m and 1h). Default: 5m.
	JWKSRefreshInterval caddy.Duration `json:"jwks_refresh_interval,omitempty"`

	// Minimum time between the refreshes a token with an unknown kid
	// triggers, so made-up kids cannot turn the edge against authsvc.
	// Default: 10s.
	JWKSUnknownKIDInterval caddy.Duration `json:"jwks_unknown_kid_interval,omitempty"`

	// Timeout of one JWKS fetch. Default: 10s.
	JWKSTimeout caddy.Duration `json:"jwks_timeout,omitempty"`

	// URL of authsvc's revocation feed, e.g.
	// http://127.0.0.1:8000/internal/revocations: user cut-offs (tokens
	// issued before a password, role, group or active-flag change) and
	// ended sessions. Polled in the background; every token is checked
	// against the last list loaded, cached or not. Until a list has loaded
	// once, guarded requests get 503. Default: none (no revocation check;
	// tokens then live until they expire).
	RevocationsURL string `json:"revocations_url,omitempty"`

	// How often to poll the revocation feed. Default: 1s.
	RevocationsInterval caddy.Duration `json:"revocations_interval,omitempty"`

	// How old the last list read from the feed (200 or 304) may be before
	// guarded requests get 503 with Retry-After, as before the first list
	// loads. Default: 0, no bound: a failing feed keeps the last list for
	// as long as it fails, so an authsvc outage does not take the guarded
	// routes down with it, but revocations made meanwhile do not reach the
	// edge (a feed grown past 16 MiB is such a failure). Set it to deny
	// instead once the edge can no longer know about revocations.
	RevocationsMaxAge caddy.Duration `json:"revocations_max_age,omitempty"`

	strip       identityMatcher
	keys        keySource
	fetcherKey  *fetcherConfig // set while this handler holds a pooled fetcher
	revocations *revocationFollower
	followerKey *revocationConfig // set while this handler holds a pooled follower
	cache       *tokenCache
	verifier    accesstoken.Verifier
	now         func() time.Time
	logger      *zap.Logger
}

// CaddyModule returns the Caddy module information.
func (Handler) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.gatehouse_auth",
		New: func() caddy.Module { return new(Handler) },
	}
}

// Provision sets defaults, compiles the header matcher and acquires the key
// source: the JWKS file is read now, a JWKS URL gets a (shared) fetcher.
func (h *Handler) Provision(ctx caddy.Context) error {
	h.logger = ctx.Logger()
	if h.now == nil {
		h.now = time.Now
	}
	h.strip = newIdentityMatcher(h.StripHeaders)
	if err := registerMetrics(ctx.GetMetricsRegistry()); err != nil {
		return err
	}
	if h.StripOnly {
		return nil
	}
	if h.JWKSRefreshInterval == 0 {
		h.JWKSRefreshInterval = caddy.Duration(DefaultRefreshInterval)
	}
	if h.JWKSUnknownKIDInterval == 0 {
		h.JWKSUnknownKIDInterval = caddy.Duration(DefaultUnknownKIDInterval)
	}
	if h.JWKSTimeout == 0 {
		h.JWKSTimeout = caddy.Duration(DefaultFetchTimeout)
	}
	switch {
	case h.CacheSize == nil:
		h.cache = newTokenCache(DefaultCacheSize)
	case *h.CacheSize > 0:
		h.cache = newTokenCache(*h.CacheSize)
	}
	algs, err := accesstoken.ParseAlgorithms(h.Algorithms)
	if err != nil {
		return fmt.Errorf("gatehouse_auth: %w", err)
	}
	h.verifier = accesstoken.Verifier{
		Issuer:     h.Issuer,
		Audience:   h.Audience,
		Algorithms: algs,
		Leeway:     accesstoken.DefaultLeeway,
		Now:        h.now,
	}

	switch {
	case h.JWKSFile != "" && h.JWKSURL != "":
		// Validate reports it; do not start a fetcher for a config that
		// will be refused.
		return nil
	case h.JWKSFile != "":
		src, skipped, err := loadJWKSFile(h.JWKSFile)
		for _, s := range skipped {
			h.logger.Warn("jwks key skipped", zap.String("file", h.JWKSFile), zap.String("reason", s))
		}
		if err != nil {
			return err
		}
		h.keys = src
	case h.JWKSURL != "":
		cfg := fetcherConfig{
			URL:                h.JWKSURL,
			RefreshInterval:    time.Duration(h.JWKSRefreshInterval),
			UnknownKIDInterval: time.Duration(h.JWKSUnknownKIDInterval),
			Timeout:            time.Duration(h.JWKSTimeout),
		}
		if err := cfg.check(); err != nil {
			return err
		}
		logger := h.logger.Named("jwks")
		v, _, err := fetchers.LoadOrNew(cfg, func() (caddy.Destructor, error) {
			f := newJWKSFetcher(cfg, logger)
			f.start()
			return f, nil
		})
		if err != nil {
			return err
		}
		h.fetcherKey = &cfg
		h.keys = v.(*jwksFetcher)
	}
	if h.RevocationsURL != "" {
		if h.RevocationsInterval == 0 {
			h.RevocationsInterval = caddy.Duration(DefaultRevocationsInterval)
		}
		cfg := revocationConfig{URL: h.RevocationsURL, Interval: time.Duration(h.RevocationsInterval)}
		if err := cfg.check(); err != nil {
			return err
		}
		logger := h.logger.Named("revocations")
		v, _, err := followers.LoadOrNew(cfg, func() (caddy.Destructor, error) {
			f := newRevocationFollower(cfg, logger)
			f.start()
			return f, nil
		})
		if err != nil {
			return err
		}
		h.followerKey = &cfg
		h.revocations = v.(*revocationFollower)
	}
	return nil
}

func (c fetcherConfig) check() error {
	if !strings.HasPrefix(c.URL, "http://") && !strings.HasPrefix(c.URL, "https://") {
		return fmt.Errorf("jwks_url %q: want an http or https URL", c.URL)
	}
	if c.RefreshInterval < 0 || c.UnknownKIDInterval < 0 || c.Timeout < 0 {
		return errors.New("jwks intervals and timeout must not be negative")
	}
	return nil
}

// MinFetchInterval is the least jwks_refresh_interval,
// jwks_unknown_kid_interval and revocations_interval accept.
const MinFetchInterval = 100 * time.Millisecond

// Validate checks that the configuration is complete and consistent.
func (h *Handler) Validate() error {
	if h.StripOnly {
		if h.JWKSURL != "" || h.JWKSFile != "" || h.Issuer != "" || h.Audience != "" || h.Cookie != "" || h.AllowPreflight ||
			h.RevocationsURL != "" || h.RevocationsMaxAge != 0 || h.ForwardToken || h.CacheSize != nil {
			return errors.New("strip_only takes no token settings (jwks_url, jwks_file, issuer, audience, cookie, allow_preflight, revocations_url, revocations_max_age, forward_token, cache_size)")
		}
		return nil
	}
	switch {
	case h.JWKSURL == "" && h.JWKSFile == "":
		return errors.New("one of jwks_url or jwks_file is required")
	case h.JWKSURL != "" && h.JWKSFile != "":
		return errors.New("jwks_url and jwks_file are mutually exclusive")
	case h.Issuer == "":
		return errors.New("issuer is required")
	case h.Audience == "":
		return errors.New("audience is required")
	case h.CacheSize != nil && *h.CacheSize < 0:
		return errors.New("cache_size must not be negative")
	case h.CacheSize != nil && *h.CacheSize > MaxCacheSize:
		return fmt.Errorf("cache_size must be at most %d", MaxCacheSize)
	}
	// A lower bound on the background fetches, so that a unit slip ("10ms"
	// for "10m", a bare number read as nanoseconds in JSON) cannot turn
	// every edge against authsvc.
	for name, d := range map[string]caddy.Duration{
		"jwks_refresh_interval":     h.JWKSRefreshInterval,
		"jwks_unknown_kid_interval": h.JWKSUnknownKIDInterval,
		"revocations_interval":      h.RevocationsInterval,
	} {
		if d != 0 && time.Duration(d) < MinFetchInterval {
			return fmt.Errorf("%s must be at least %s", name, MinFetchInterval)
		}
	}
	if h.RevocationsMaxAge != 0 {
		interval := cmp.Or(time.Duration(h.RevocationsInterval), DefaultRevocationsInterval)
		switch {
		case h.RevocationsURL == "":
			return errors.New("revocations_max_age needs revocations_url")
		case time.Duration(h.RevocationsMaxAge) < 3*interval:
			// A list is at most one interval (and a fetch) old between
			// good polls; anything tighter would refuse requests while
			// the feed is fine.
			return fmt.Errorf("revocations_max_age must be at least three revocations_interval (%s)", 3*interval)
		}
	}
	for _, s := range h.StripHeaders {
		if strings.TrimSuffix(s, "*") == "" {
			return fmt.Errorf("strip_headers: %q names no header", s)
		}
	}
	return nil
}

// Cleanup releases the shared JWKS fetcher; the last handler to release it
// stops its goroutine.
func (h *Handler) Cleanup() error {
	var errs []error
	if h.fetcherKey != nil {
		_, err := fetchers.Delete(*h.fetcherKey)
		h.fetcherKey = nil
		errs = append(errs, err)
	}
	if h.followerKey != nil {
		_, err := followers.Delete(*h.followerKey)
		h.followerKey = nil
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// The messages are the ones the seed's FastAPI backend used, which the SPA
// already shows.
const (
	errNotAuthenticated refusal.Message = "Not authenticated"
	errInvalidToken     refusal.Message = "Could not validate credentials"
	errNoKeys           refusal.Message = "Authentication is temporarily unavailable"
	errRevoked          refusal.Message = "Token has been revoked"
)

// errUnsafePath refuses a path that the edge and an upstream could read
// as two different routes (unsafePath).
const errUnsafePath refusal.Message = "Request path must not contain . or .. segments or backslashes"

// unsafePath reports a path with a "." or ".." segment once decoded, or a
// backslash. Caddy's matchers read the path decoded and with dot segments
// removed; reverse_proxy forwards it as sent, and an upstream resolves it
// its own way: "/api/auth/a%2fb/../../../internal/revocations" is the
// public /api/auth/* route to Caddy and /internal/revocations to an
// upstream that resolves ".." before it decodes (found in review; Go's
// ServeMux only redirects such a path, a router that serves it would
// expose the route). Browsers and HTTP clients remove dot segments before
// sending (RFC 3986 §5.2.4), and Windows-minded servers read a backslash
// as a separator, so no well-formed request is refused.
func unsafePath(p string) bool {
	if strings.IndexByte(p, '\\') >= 0 {
		return true
	}
	for seg := range strings.SplitSeq(p, "/") {
		if seg == "." || seg == ".." {
			return true
		}
	}
	return false
}

// ServeHTTP strips identity headers and, unless strip_only, authenticates.
// On every route it runs on, a path with dot segments is refused first.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	if unsafePath(r.URL.Path) {
		metrics.failures.WithLabelValues("unsafe_path").Inc()
		return refusal.Respond(w, r, http.StatusBadRequest, errUnsafePath)
	}
	h.strip.strip(r.Header)
	h.strip.stripTrailers(r)
	if h.StripOnly {
		return next.ServeHTTP(w, r)
	}
	if h.AllowPreflight && r.Method == http.MethodOptions && r.Header.Get("Access-Control-Request-Method") != "" {
		return next.ServeHTTP(w, r)
	}

	token, reason := h.tokenFrom(r)
	if reason != "" {
		return h.refuse(w, r, reason, errNotAuthenticated)
	}
	id, err := h.authenticate(r.Context(), token)
	if err != nil {
		reason := string(accesstoken.ReasonOf(err))
		if reason == "" {
			reason = "invalid"
		}
		if reason == string(accesstoken.ReasonNoKeys) {
			metrics.failures.WithLabelValues(reason).Inc()
			w.Header().Set("Retry-After", strconv.Itoa(int(h.keys.retryAfter().Round(time.Second)/time.Second)))
			return refusal.Respond(w, r, http.StatusServiceUnavailable, errNoKeys)
		}
		if c := h.logger.Check(zapcore.DebugLevel, "token refused"); c != nil {
			c.Write(zap.String("reason", reason), zap.Error(err))
		}
		return h.refuse(w, r, reason, errInvalidToken)
	}
	if h.revocations != nil {
		// Checked on every request, cache hit or not: a revocation
		// arrives after the token was verified and cached.
		rs := h.revocations.current(r.Context())
		stale := rs != nil && h.RevocationsMaxAge > 0 && h.revocations.age() > time.Duration(h.RevocationsMaxAge)
		if rs == nil || stale {
			reason := "no_revocations"
			if stale {
				reason = "stale_revocations"
			}
			metrics.failures.WithLabelValues(reason).Inc()
			w.Header().Set("Retry-After", strconv.Itoa(int(h.revocations.retryAfter().Round(time.Second)/time.Second)))
			return refusal.Respond(w, r, http.StatusServiceUnavailable, errNoKeys)
		}
		if rs.revoked(id) {
			return h.refuse(w, r, "revoked", errRevoked)
		}
	}

	if !h.ForwardToken {
		// Both sources go, whichever held the credential verified: a
		// browser whose SPA sends the header also sends the token cookie,
		// as valid and as replayable (found in review).
		delete(r.Header, "Authorization")
		if h.Cookie != "" {
			cookie.Remove(r.Header, h.Cookie)
		}
	}

	// One allocation for the three values; each slice is capped at one
	// element so that a later append (request_header +X-User-Id) copies
	// instead of overwriting its neighbour.
	vals := []string{id.userID, id.role, id.groups}
	r.Header[HeaderUserID] = vals[0:1:1]
	r.Header[HeaderUserRole] = vals[1:2:2]
	r.Header[HeaderUserGroups] = vals[2:3:3]
	if repl, ok := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer); ok {
		repl.Set("http.auth.user.id", id.placeholders[0])
		repl.Set("http.auth.user.role", id.placeholders[1])
		repl.Set("http.auth.user.groups", id.placeholders[2])
		repl.Set("http.auth.user.sid", id.placeholders[3])
		if h.Cookie != "" {
			// The plugin gateway drops this cookie from plugins' requests
			// and answers, as it drops Authorization, so a cookie source
			// added here is never forwarded by a gateway that was not
			// told its name (found in review).
			repl.Set(PlaceholderTokenCookie, h.Cookie)
		}
	}
	if isUpgrade(r) {
		tunnelID := *id
		w = &tunnelWriter{ResponseWriter: w, track: func(c net.Conn) net.Conn { return h.trackTunnel(c, tunnelID) }}
	} else if isStream(r) {
		ctx, cancel := context.WithCancel(r.Context())
		t := h.openTunnel(*id, cancel)
		defer func() {
			t.forget()
			cancel()
		}()
		r = r.WithContext(ctx)
	}
	return next.ServeHTTP(w, r)
}

func (h *Handler) refuse(w http.ResponseWriter, r *http.Request, reason string, msg refusal.Message) error {
	metrics.failures.WithLabelValues(reason).Inc()
	w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
	return refusal.Respond(w, r, http.StatusUnauthorized, msg)
}

// tokenFrom finds the request's token: the Authorization header, else the
// cookie. It returns a failure reason instead when there is none or when
// the request is ambiguous (two Authorization headers, two cookies of our
// name): guessing which one the client "meant" is how two components end
// up checking different tokens.
func (h *Handler) tokenFrom(r *http.Request) (token, reason string) {
	switch auth := r.Header["Authorization"]; len(auth) {
	case 0:
	case 1:
		scheme, tok, ok := strings.Cut(auth[0], " ")
		if !ok || !strings.EqualFold(scheme, "Bearer") {
			return "", "missing_token"
		}
		tok = strings.TrimLeft(tok, " ")
		// "Bearer a, Bearer b" is two credentials folded into one line.
		// IndexByte (vectorised) rather than ContainsAny: this runs on
		// every request over ~1 KiB of token.
		if tok == "" || strings.IndexByte(tok, ',') >= 0 || strings.IndexByte(tok, ' ') >= 0 || strings.IndexByte(tok, '\t') >= 0 {
			return "", "malformed"
		}
		return tok, ""
	default:
		return "", "ambiguous_token"
	}
	if h.Cookie == "" {
		return "", "missing_token"
	}
	var found string
	n := 0
	for _, c := range r.CookiesNamed(h.Cookie) {
		found = c.Value
		n++
	}
	switch {
	case n == 0 || found == "":
		return "", "missing_token"
	case n > 1:
		return "", "ambiguous_token"
	}
	return found, ""
}

// authenticate returns the identity a token grants, from the cache when
// it has been verified before and is still unexpired under a key still
// published; otherwise it verifies the token and caches the result.
func (h *Handler) authenticate(ctx context.Context, token string) (*identity, error) {
	if len(token) > accesstoken.MaxTokenBytes {
		// Do not even hash an oversized token.
		return nil, &accesstoken.Error{Reason: accesstoken.ReasonTooLarge}
	}
	now := h.now()
	var key [32]byte
	if h.cache != nil {
		key = tokenKey(token)
		if e, ok := h.cache.get(&key, now); ok {
			if h.keys.current().get(e.kid) == e.key {
				metrics.cacheHits.Inc()
				return &e.id, nil
			}
			h.cache.remove(&key)
		}
	}

	// The verifier asks for the key by kid; remember which one it got so
	// the cache entry can be tied to it.
	var usedKID string
	var usedKey *accesstoken.Key
	v := h.verifier
	v.Keys = func(kid string) (*accesstoken.Key, error) {
		k, err := h.keys.key(ctx, kid)
		usedKID, usedKey = kid, k
		return k, err
	}
	claims, err := v.Verify(token)
	if err != nil {
		if accesstoken.ReasonOf(err) != accesstoken.ReasonNoKeys {
			metrics.verifyRejected.Inc()
		}
		return nil, err
	}
	if !headerSafe(claims.Subject) || !headerSafe(claims.SessionID) {
		metrics.verifyRejected.Inc()
		return nil, &accesstoken.Error{Reason: accesstoken.ReasonClaims, Err: errors.New("sub or sid not header-safe")}
	}
	metrics.verifyOK.Inc()
	e := &cacheEntry{
		id: identity{
			userID:    claims.Subject,
			role:      claims.Role,
			groups:    encodeGroups(claims.Groups),
			sessionID: claims.SessionID,
			issuedAt:  noIssuedAt,
		},
		deadline: claims.ExpiresAt().Add(accesstoken.DefaultLeeway),
		kid:      usedKID,
		key:      usedKey,
	}
	if claims.IssuedAt != nil {
		e.id.issuedAt = int64(*claims.IssuedAt)
	}
	e.id.deadline = e.deadline
	e.id.box()
	if h.cache != nil {
		h.cache.put(&key, e, now)
	}
	return &e.id, nil
}

// Interface guards
var (
	_ caddy.Provisioner           = (*Handler)(nil)
	_ caddy.Validator             = (*Handler)(nil)
	_ caddy.CleanerUpper          = (*Handler)(nil)
	_ caddyhttp.MiddlewareHandler = (*Handler)(nil)
)
