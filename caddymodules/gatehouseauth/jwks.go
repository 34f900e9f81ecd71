package gatehouseauth

import (
	"context"
	"crypto"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-jose/go-jose/v4"
	"go.uber.org/zap"

	"github.com/caddyserver/caddy/v2"

	"github.com/gatehouse/gatehouse/internal/accesstoken"
)

// Defaults and bounds of the JWKS fetcher.
const (
	DefaultRefreshInterval    = 5 * time.Minute
	DefaultUnknownKIDInterval = 10 * time.Second
	DefaultFetchTimeout       = 10 * time.Second
	// MaxJWKSBytes bounds a key set document; ours is a few KiB.
	MaxJWKSBytes = 1 << 20
	// Cache-Control max-age is honoured within these bounds, so a
	// misconfigured authsvc can neither make the edge hammer it nor make
	// it sit on a stale key set for a day.
	minMaxAge = time.Minute
	maxMaxAge = time.Hour
	// firstRetry is the first delay after a failed fetch; it doubles up to
	// the refresh interval (and up to maxColdRetry while no set has ever
	// loaded, so the edge comes up soon after authsvc does).
	firstRetry   = time.Second
	maxColdRetry = 30 * time.Second
	// minRSABits refuses toy keys a mistaken or hostile JWKS could publish.
	minRSABits = 2048
)

// keySet is an immutable snapshot of verification keys by kid.
type keySet struct {
	keys map[string]*accesstoken.Key
}

// carryOver makes ks reuse prev's *accesstoken.Key for every kid whose key
// (and alg) did not change. Cached tokens are tied to the key pointer that verified
// them, so a routine refresh keeps them valid while a replaced or withdrawn
// key retires them.
func (ks *keySet) carryOver(prev *keySet) {
	if prev == nil {
		return
	}
	for kid, k := range ks.keys {
		if old := prev.keys[kid]; old != nil && old.Algorithm == k.Algorithm && sameKey(old.Public, k.Public) {
			ks.keys[kid] = old
		}
	}
}

// sameKey compares public keys of any of the supported types.
func sameKey(a, b crypto.PublicKey) bool {
	e, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && e.Equal(b)
}

func (ks *keySet) get(kid string) *accesstoken.Key {
	if ks == nil {
		return nil
	}
	return ks.keys[kid]
}

// parseJWKS keeps the usable keys of a JWKS document: public RSA (at least
// 2048 bits), ECDSA (P-256, P-384, P-521) and Ed25519 keys with a kid, use
// "sig" (or none), and an alg (or none) that is a public-key algorithm the
// key fits. Whether a token may use the key's algorithm is the handler's
// allow-list's business. Anything else is skipped and reported, so one odd
// entry does not throw away the whole set. A kid published twice is dropped:
// which of the two keys it means is ambiguous.
func parseJWKS(data []byte) (ks *keySet, skipped []string, err error) {
	var doc struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(data, &doc); err != nil {
		return nil, nil, fmt.Errorf("decode jwks: %w", err)
	}
	keys := make(map[string]*accesstoken.Key, len(doc.Keys))
	dup := map[string]bool{}
	for i, raw := range doc.Keys {
		var k jose.JSONWebKey
		if err := k.UnmarshalJSON(raw); err != nil {
			skipped = append(skipped, fmt.Sprintf("key %d: %v", i, err))
			continue
		}
		// Usable if some public-key algorithm can verify with it: KeyFits is
		// the one list of key types (and curves) we support.
		ok := slices.ContainsFunc(accesstoken.PublicKeyAlgorithms, func(a jose.SignatureAlgorithm) bool {
			return accesstoken.KeyFits(k.Key, a)
		})
		rsaPub, _ := k.Key.(*rsa.PublicKey)
		alg := jose.SignatureAlgorithm(k.Algorithm)
		switch {
		case !k.IsPublic():
			// A private key in a public document is a leak upstream; never
			// use it, and make noise about it.
			skipped = append(skipped, fmt.Sprintf("key %d (kid %q): private key published in JWKS", i, k.KeyID))
			continue
		case !ok:
			skipped = append(skipped, fmt.Sprintf("key %d (kid %q): not an RSA, ECDSA or Ed25519 public key", i, k.KeyID))
			continue
		case k.KeyID == "":
			skipped = append(skipped, fmt.Sprintf("key %d: no kid", i))
			continue
		case k.Use != "" && k.Use != "sig":
			skipped = append(skipped, fmt.Sprintf("key %d (kid %q): use %q", i, k.KeyID, k.Use))
			continue
		case alg != "" && (!slices.Contains(accesstoken.PublicKeyAlgorithms, alg) || !accesstoken.KeyFits(k.Key, alg)):
			skipped = append(skipped, fmt.Sprintf("key %d (kid %q): alg %q", i, k.KeyID, k.Algorithm))
			continue
		case rsaPub != nil && rsaPub.N.BitLen() < minRSABits:
			skipped = append(skipped, fmt.Sprintf("key %d (kid %q): %d-bit RSA key", i, k.KeyID, rsaPub.N.BitLen()))
			continue
		}
		if _, seen := keys[k.KeyID]; seen || dup[k.KeyID] {
			delete(keys, k.KeyID)
			dup[k.KeyID] = true
			skipped = append(skipped, fmt.Sprintf("key %d (kid %q): kid published twice", i, k.KeyID))
			continue
		}
		keys[k.KeyID] = &accesstoken.Key{Public: k.Key, Algorithm: alg}
	}
	if len(keys) == 0 {
		return nil, skipped, errors.New("jwks holds no usable key")
	}
	return &keySet{keys: keys}, skipped, nil
}

// keySource is where a handler gets verification keys.
type keySource interface {
	// key returns the key for kid, (nil, nil) when there is none, and
	// accesstoken.ErrNoKeys while no key set has ever loaded. It may wait
	// (bounded by ctx) for a refresh of the key set.
	key(ctx context.Context, kid string) (*accesstoken.Key, error)
	// current is the loaded key set, without side effects; nil if none.
	current() *keySet
	// retryAfter suggests when a client refused with 503 should retry.
	retryAfter() time.Duration
}

// staticKeys is a key set read from a file at provision time.
type staticKeys struct{ ks *keySet }

func loadJWKSFile(path string) (*staticKeys, []string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, fmt.Errorf("open jwks file: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxJWKSBytes+1))
	if err != nil {
		return nil, nil, fmt.Errorf("read jwks file: %w", err)
	}
	if len(data) > MaxJWKSBytes {
		return nil, nil, fmt.Errorf("jwks file %s is larger than %d bytes", path, MaxJWKSBytes)
	}
	ks, skipped, err := parseJWKS(data)
	if err != nil {
		return nil, skipped, fmt.Errorf("jwks file %s: %w", path, err)
	}
	return &staticKeys{ks: ks}, skipped, nil
}

func (s *staticKeys) key(_ context.Context, kid string) (*accesstoken.Key, error) {
	return s.ks.get(kid), nil
}
func (s *staticKeys) current() *keySet          { return s.ks }
func (s *staticKeys) retryAfter() time.Duration { return time.Second }

// fetcherConfig is what makes two fetchers interchangeable; it is the key
// under which handlers share one fetcher (see fetchers).
type fetcherConfig struct {
	URL                string
	RefreshInterval    time.Duration
	UnknownKIDInterval time.Duration
	Timeout            time.Duration
}

// fetchers shares one fetcher per configuration among all handlers, across
// config reloads: the new config's handlers acquire the fetcher before the
// old config's release it, so a reload keeps the loaded key set (and keeps
// working while authsvc is down) and starts no second loop.
var fetchers = caddy.NewUsagePool()

// jwksFetcher keeps a key set fetched from a URL up to date. One goroutine
// (run) does every fetch: periodic ones, and those requested when a token
// names a kid the set lacks. Requests only read an atomic pointer.
type jwksFetcher struct {
	background
	cfg    fetcherConfig
	logger *zap.Logger
	now    func() time.Time

	keys atomic.Pointer[keySet]
	// nextAttempt is when the loop will fetch next (unix nanoseconds), for
	// Retry-After.
	nextAttempt atomic.Int64
	// failing is whether the last fetch failed: an unknown kid may then be
	// a key authsvc published since, which the edge cannot know yet.
	failing atomic.Bool

	// kick asks the loop for an immediate refresh; the channel sent is
	// closed when that refresh is over.
	kick chan chan struct{}
	mu   sync.Mutex
	// inflight is the pending requested refresh, if any: concurrent
	// requests for unknown kids all wait on the same one (single flight).
	inflight chan struct{}
	// lastKick rate-limits requested refreshes, so a stream of made-up kids
	// costs authsvc at most one fetch per UnknownKIDInterval.
	lastKick time.Time
	// deferred is the refresh the rate limit put off (it starts at
	// lastKick + UnknownKIDInterval), for kids seen meanwhile.
	deferred *time.Timer
	// sought are the unknown kids asked about since the current batch's
	// refresh began; absent are those the last finished refresh looked for
	// and did not find. A kid the rate limit keeps from a refresh is
	// refused with 401 only if it is absent: otherwise it may be a key
	// published since (a rotation just after a made-up kid used the
	// interval's refresh), and gets 503 until the put-off refresh, not a
	// 401 that signs its user out (found in review). Both hold at most
	// maxSoughtKIDs.
	sought, absent map[string]struct{}

	// Owned by the loop.
	etag     string
	failures int
}

// maxSoughtKIDs bounds the kids remembered for one refresh: made-up kids
// past it are not remembered, which only costs them a 503 where a 401
// would do.
const maxSoughtKIDs = 64

// maxDeferral is the longest a refresh is put off: a rate-limited unknown
// kid seen earlier than that before the limit allows the next refresh (a
// jwks_unknown_kid_interval over maxDeferral) is refused with 401 as
// before, rather than answered 503 for longer.
const maxDeferral = 15 * time.Second

func newJWKSFetcher(cfg fetcherConfig, logger *zap.Logger) *jwksFetcher {
	return &jwksFetcher{
		background: newBackground(cfg.Timeout),
		cfg:        cfg,
		logger:     logger,
		now:        time.Now,
		kick:       make(chan chan struct{}, 1),
	}
}

// start launches the loop; Destruct ends it.
func (f *jwksFetcher) start() { f.background.start(f.run) }

func (f *jwksFetcher) run(ctx context.Context) {
	first := true
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
			trigger := "periodic"
			if first {
				trigger = "startup"
			}
			batch := f.takeSought()
			timer.Reset(f.refresh(ctx, trigger))
			f.settle(batch, false)
			if first {
				first = false
				close(f.firstDone)
			}
		case done := <-f.kick:
			batch := f.takeSought()
			timer.Reset(f.refresh(ctx, "unknown_kid"))
			f.settle(batch, true)
			close(done)
		}
	}
}

// refresh runs one fetch and returns the delay until the next one. It
// never panics out of the loop: a panic is logged and counts as a failure.
func (f *jwksFetcher) refresh(ctx context.Context, trigger string) (next time.Duration) {
	defer func() {
		if v := recover(); v != nil {
			f.logger.Error("jwks refresh panicked", zap.Any("panic", v), zap.ByteString("stack", debug.Stack()))
			next = f.failed()
		}
		f.nextAttempt.Store(f.now().Add(next).UnixNano())
	}()
	ks, maxAge, err := f.fetch(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return 0 // shutting down; the loop sees ctx.Done next
		}
		metrics.jwksRefreshes.WithLabelValues(trigger, "error").Inc()
		f.failing.Store(true)
		next = f.failed()
		lvl := f.logger.Warn
		if f.keys.Load() == nil {
			lvl = f.logger.Error
		}
		lvl("jwks refresh failed; keeping the last good key set",
			zap.String("url", f.cfg.URL), zap.String("trigger", trigger),
			zap.Bool("have_keys", f.keys.Load() != nil), zap.Duration("retry_in", next), zap.Error(err))
		return next
	}
	f.failures = 0
	f.failing.Store(false)
	if ks == nil {
		metrics.jwksRefreshes.WithLabelValues(trigger, "not_modified").Inc()
	} else {
		metrics.jwksRefreshes.WithLabelValues(trigger, "ok").Inc()
		ks.carryOver(f.keys.Load())
		f.keys.Store(ks)
		if c := f.logger.Check(zap.DebugLevel, "jwks refreshed"); c != nil {
			c.Write(zap.String("url", f.cfg.URL), zap.String("trigger", trigger), zap.Int("keys", len(ks.keys)))
		}
	}
	if maxAge > 0 {
		return min(max(maxAge, minMaxAge), maxMaxAge)
	}
	return f.cfg.RefreshInterval
}

// failed counts a failure and returns the backoff before the next try.
func (f *jwksFetcher) failed() time.Duration {
	f.failures++
	ceiling := f.cfg.RefreshInterval
	if f.keys.Load() == nil {
		ceiling = min(ceiling, maxColdRetry)
	}
	d := firstRetry
	for i := 1; i < f.failures && d < ceiling; i++ {
		d *= 2
	}
	return min(d, ceiling)
}

// fetch GETs the key set. It returns (nil, maxAge, nil) when the server
// answers 304 to our If-None-Match.
func (f *jwksFetcher) fetch(ctx context.Context) (*keySet, time.Duration, error) {
	etag := ""
	if f.keys.Load() != nil {
		etag = f.etag
	}
	data, header, err := f.getDocument(ctx, f.cfg.URL, "application/jwk-set+json, application/json", etag, MaxJWKSBytes)
	if err != nil {
		return nil, 0, err
	}
	maxAge := parseMaxAge(header.Values("Cache-Control"))
	if data == nil {
		return nil, maxAge, nil
	}
	ks, skipped, err := parseJWKS(data)
	for _, s := range skipped {
		f.logger.Warn("jwks key skipped", zap.String("url", f.cfg.URL), zap.String("reason", s))
	}
	if err != nil {
		return nil, 0, err
	}
	f.etag = header.Get("ETag")
	return ks, maxAge, nil
}

// parseMaxAge returns Cache-Control's max-age, or 0 when absent. no-store
// and no-cache mean "ask again soon", which the minimum bound turns into
// one fetch a minute.
func parseMaxAge(values []string) time.Duration {
	for _, v := range values {
		for d := range strings.SplitSeq(v, ",") {
			d = strings.ToLower(strings.TrimSpace(d))
			if d == "no-store" || d == "no-cache" {
				return time.Nanosecond
			}
			if s, ok := strings.CutPrefix(d, "max-age="); ok {
				n, err := strconv.ParseInt(strings.Trim(s, `"`), 10, 64)
				if err != nil || n < 0 {
					continue
				}
				if n == 0 {
					return time.Nanosecond
				}
				return time.Duration(min(n, int64(maxMaxAge/time.Second))) * time.Second
			}
		}
	}
	return 0
}

func (f *jwksFetcher) current() *keySet { return f.keys.Load() }

func (f *jwksFetcher) key(ctx context.Context, kid string) (*accesstoken.Key, error) {
	ks := f.keys.Load()
	if ks == nil {
		// At startup, wait for the first fetch instead of refusing the
		// requests that race it.
		select {
		case <-f.firstDone:
		case <-f.done: // stopped before its first fetch: nothing will come
		case <-ctx.Done():
			return nil, accesstoken.ErrNoKeys
		}
		if ks = f.keys.Load(); ks == nil {
			// Still nothing: ask for a fetch (rate-limited) but do not
			// hold the client while authsvc may be unreachable.
			f.requestRefresh()
			return nil, accesstoken.ErrNoKeys
		}
	}
	if k := ks.get(kid); k != nil {
		return k, nil
	}
	// An unknown kid is normally a key rotation that happened after our
	// last fetch: refresh once and look again.
	wait, absent := f.refreshFor(kid)
	if wait != nil {
		select {
		case <-wait:
		case <-f.done: // stopped (a reload dropped this fetcher) with the kick unserved
		case <-ctx.Done():
			return nil, nil
		}
		if k := f.keys.Load().get(kid); k != nil {
			return k, nil
		}
	} else if !absent {
		// Rate-limited, and no refresh has looked for this kid yet: one
		// is put off until the limit allows it (see sought).
		return nil, accesstoken.ErrNoKeys
	}
	if f.failing.Load() {
		// authsvc cannot be asked: the key may be one it published since
		// (a rotation during an outage). 503 and Retry-After let the
		// client try again, where 401 would sign the user out.
		return nil, accesstoken.ErrNoKeys
	}
	return nil, nil
}

// refreshFor is requestRefresh for an unknown kid. When the rate limit
// refuses a refresh, it returns absent if the last refresh looked for kid
// and did not find it; otherwise, if the limit allows the next refresh
// within maxDeferral, it puts one off until then and returns neither (the
// caller answers 503); else absent.
func (f *jwksFetcher) refreshFor(kid string) (wait <-chan struct{}, absent bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.sought) < maxSoughtKIDs {
		if f.sought == nil {
			f.sought = map[string]struct{}{}
		}
		f.sought[kid] = struct{}{}
	}
	if wait := f.requestRefreshLocked(); wait != nil {
		return wait, false
	}
	if _, ok := f.absent[kid]; ok {
		return nil, true
	}
	delay := f.lastKick.Add(f.cfg.UnknownKIDInterval).Sub(f.now())
	if delay > maxDeferral {
		return nil, true
	}
	if f.deferred == nil {
		f.deferred = time.AfterFunc(delay, f.deferredRefresh)
		if at := f.now().Add(delay).UnixNano(); at < f.nextAttempt.Load() {
			f.nextAttempt.Store(at) // for Retry-After
		}
	}
	return nil, false
}

// deferredRefresh asks for the refresh refreshFor put off; one already
// pending serves instead.
func (f *jwksFetcher) deferredRefresh() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.deferred = nil
	if f.inflight != nil {
		return
	}
	done := make(chan struct{})
	select {
	case f.kick <- done:
		f.lastKick = f.now()
		f.inflight = done
	default:
	}
}

// takeSought starts a refresh's batch: the kids sought before it began.
func (f *jwksFetcher) takeSought() map[string]struct{} {
	f.mu.Lock()
	defer f.mu.Unlock()
	batch := f.sought
	f.sought = nil
	return batch
}

// settle records which of the batch's kids the refresh just finished did
// not find, and, for a requested one, clears the pending request.
func (f *jwksFetcher) settle(batch map[string]struct{}, requested bool) {
	ks := f.keys.Load()
	absent := map[string]struct{}{}
	for kid := range batch {
		if ks.get(kid) == nil {
			absent[kid] = struct{}{}
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.absent = absent
	if requested {
		f.inflight = nil
	}
}

// requestRefresh asks the loop for a refresh and returns a channel closed
// when it is done, or nil when the rate limit refuses one. Callers that
// arrive while a refresh is pending share it.
func (f *jwksFetcher) requestRefresh() <-chan struct{} {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.requestRefreshLocked()
}

func (f *jwksFetcher) requestRefreshLocked() <-chan struct{} {
	if f.inflight != nil {
		return f.inflight
	}
	now := f.now()
	if !f.lastKick.IsZero() && now.Sub(f.lastKick) < f.cfg.UnknownKIDInterval {
		return nil
	}
	done := make(chan struct{})
	select {
	case f.kick <- done:
	default:
		return nil // cannot happen while inflight is nil; be safe anyway
	}
	f.lastKick = now
	f.inflight = done
	return done
}

func (f *jwksFetcher) retryAfter() time.Duration {
	d := time.Duration(f.nextAttempt.Load() - f.now().UnixNano())
	return min(max(d, time.Second), time.Minute)
}

// Interface guards
var _ caddy.Destructor = (*jwksFetcher)(nil)
