package gatehouseauth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"runtime/debug"
	"strings"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/caddyserver/caddy/v2"
)

// Defaults and bounds of the revocation follower.
const (
	DefaultRevocationsInterval = time.Second
	// revocationsTimeout bounds one fetch: the feed answers from two
	// indexed queries, so a slow answer is a sick authsvc, and the next
	// poll is due soon anyway.
	revocationsTimeout = 5 * time.Second
	// maxRevocationsBackoff caps the delay between tries while the feed
	// fails, so a revocation made during an outage still reaches the edge
	// within seconds of the feed coming back.
	maxRevocationsBackoff = 15 * time.Second
	// MaxRevocationsBytes bounds one feed document (about 80 bytes an
	// entry: some 200,000 entries).
	MaxRevocationsBytes = 16 << 20
)

// revocationSet is an immutable snapshot of authsvc's revocation feed:
// every revocation young enough to concern a live access token.
type revocationSet struct {
	// users maps a user id to the first iat (unix seconds) still valid:
	// tokens the user got before a password, role, group or active-flag
	// change are void.
	users map[string]int64
	// sessions holds the ids of sessions ended (logout); every token of
	// such a session is void.
	sessions map[string]struct{}
}

// revoked reports whether the feed voids the token behind id.
func (s *revocationSet) revoked(id *identity) bool {
	if len(s.sessions) > 0 && id.sessionID != "" {
		if _, ok := s.sessions[id.sessionID]; ok {
			return true
		}
	}
	if len(s.users) > 0 {
		if nb, ok := s.users[id.userID]; ok && id.issuedAt < nb {
			return true
		}
	}
	return false
}

// feedDocument is the wire format of authsvc's GET /internal/revocations.
type feedDocument struct {
	Users []struct {
		UserID    string `json:"user_id"`
		NotBefore *int64 `json:"not_before"`
	} `json:"users"`
	Sessions []struct {
		SessionID string `json:"session_id"`
	} `json:"sessions"`
}

// parseRevocations decodes a feed document. Anything malformed fails the
// whole document: half a revocation list would silently let revoked
// tokens through, while a failed fetch keeps the last good list and says so.
func parseRevocations(data []byte) (*revocationSet, error) {
	var doc feedDocument
	if err := json.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("decode revocations: %w", err)
	}
	if doc.Users == nil || doc.Sessions == nil {
		return nil, errors.New("revocations: users and sessions are required")
	}
	s := &revocationSet{
		users:    make(map[string]int64, len(doc.Users)),
		sessions: make(map[string]struct{}, len(doc.Sessions)),
	}
	for i, u := range doc.Users {
		if u.UserID == "" || u.NotBefore == nil {
			return nil, fmt.Errorf("revocations: users[%d] needs user_id and not_before", i)
		}
		// Two entries for one user: the later cut-off wins.
		if nb, ok := s.users[u.UserID]; !ok || *u.NotBefore > nb {
			s.users[u.UserID] = *u.NotBefore
		}
	}
	for i, e := range doc.Sessions {
		if e.SessionID == "" {
			return nil, fmt.Errorf("revocations: sessions[%d] needs session_id", i)
		}
		s.sessions[e.SessionID] = struct{}{}
	}
	return s, nil
}

// revocationConfig is what makes two followers interchangeable: handlers
// with the same one share a follower (and its loaded list) across reloads.
type revocationConfig struct {
	URL      string
	Interval time.Duration
}

func (c revocationConfig) check() error {
	if !strings.HasPrefix(c.URL, "http://") && !strings.HasPrefix(c.URL, "https://") {
		return fmt.Errorf("revocations_url %q: want an http or https URL", c.URL)
	}
	if c.Interval < 0 {
		return errors.New("revocations_interval must not be negative")
	}
	return nil
}

var followers = caddy.NewUsagePool()

// revocationFollower polls authsvc's revocation feed. One goroutine
// fetches; requests only read an atomic pointer. The feed is a snapshot
// (authsvc keeps each entry as long as a token it voids could live), so
// every successful fetch replaces the whole list and a missed poll loses
// nothing.
type revocationFollower struct {
	background
	cfg    revocationConfig
	logger *zap.Logger
	now    func() time.Time

	set atomic.Pointer[revocationSet]
	// tunnels are the open upgraded connections whose tokens this feed
	// governs; each new list closes those it revokes.
	tunnels tunnelSet
	// nextAttempt is when the loop will fetch next (unix nanoseconds), for
	// Retry-After.
	nextAttempt atomic.Int64
	// readAt is when the feed last answered with a list (200 or 304; unix
	// nanoseconds): how current the loaded list is known to be.
	readAt atomic.Int64

	// Owned by the loop.
	etag     string
	failures int
}

func newRevocationFollower(cfg revocationConfig, logger *zap.Logger) *revocationFollower {
	return &revocationFollower{
		background: newBackground(revocationsTimeout),
		cfg:        cfg,
		logger:     logger,
		now:        time.Now,
	}
}

// start launches the loop; Destruct ends it.
func (f *revocationFollower) start() { f.background.start(f.run) }

func (f *revocationFollower) run(ctx context.Context) {
	first := true
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
			timer.Reset(f.refresh(ctx))
			if first {
				first = false
				close(f.firstDone)
			}
		}
	}
}

// refresh runs one fetch and returns the delay until the next one.
func (f *revocationFollower) refresh(ctx context.Context) (next time.Duration) {
	defer func() {
		if v := recover(); v != nil {
			f.logger.Error("revocations refresh panicked", zap.Any("panic", v), zap.ByteString("stack", debug.Stack()))
			next = f.failed()
		}
		f.nextAttempt.Store(f.now().Add(next).UnixNano())
	}()
	set, err := f.fetch(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return 0
		}
		metrics.revocationRefreshes.WithLabelValues("error").Inc()
		next = f.failed()
		// The first failures of a running edge are worth a warning, a
		// feed that never loaded an error; repeating either every second
		// would only bury it.
		// A list more than a minute old is an error too: revocations made
		// since do not reach the edge, whatever the cause (authsvc down,
		// or a feed grown past MaxRevocationsBytes, which no retry mends).
		stale := f.set.Load() == nil || f.age() > time.Minute
		if f.failures == 1 || f.failures%60 == 0 || (stale && f.failures%4 == 0) {
			lvl := f.logger.Warn
			if stale {
				lvl = f.logger.Error
			}
			lvl("revocations refresh failed; keeping the last list",
				zap.String("url", f.cfg.URL), zap.Int("failures", f.failures),
				zap.Bool("have_list", f.set.Load() != nil), zap.Duration("list_age", f.age()),
				zap.Duration("retry_in", next), zap.Error(err))
		}
		return next
	}
	now := f.now()
	f.readAt.Store(now.UnixNano())
	metrics.revocationsReadAt.Set(float64(now.UnixNano()) / 1e9)
	if f.failures > 0 {
		f.logger.Info("revocations feed is back", zap.String("url", f.cfg.URL), zap.Int("failures", f.failures))
	}
	f.failures = 0
	if set == nil {
		metrics.revocationRefreshes.WithLabelValues("not_modified").Inc()
	} else {
		metrics.revocationRefreshes.WithLabelValues("ok").Inc()
		f.set.Store(set)
		metrics.revocationEntries.Set(float64(len(set.users) + len(set.sessions)))
		f.tunnels.closeRevoked(set)
	}
	return f.cfg.Interval
}

// failed counts a failure and returns the backoff: the interval, doubling
// up to maxRevocationsBackoff.
func (f *revocationFollower) failed() time.Duration {
	f.failures++
	d := f.cfg.Interval
	for i := 1; i < f.failures && d < maxRevocationsBackoff; i++ {
		d *= 2
	}
	return min(d, max(maxRevocationsBackoff, f.cfg.Interval))
}

// fetch GETs the feed; (nil, nil) means 304 Not Modified.
func (f *revocationFollower) fetch(ctx context.Context) (*revocationSet, error) {
	etag := ""
	if f.set.Load() != nil {
		etag = f.etag
	}
	data, header, err := f.getDocument(ctx, f.cfg.URL, "application/json", etag, MaxRevocationsBytes)
	if err != nil || data == nil {
		return nil, err
	}
	set, err := parseRevocations(data)
	if err != nil {
		return nil, err
	}
	f.etag = header.Get("ETag")
	return set, nil
}

// current returns the loaded list. Before the first fetch has finished it
// waits for it (bounded by ctx), so requests racing startup are not
// refused; nil means no list has ever loaded, and the caller must refuse.
func (f *revocationFollower) current(ctx context.Context) *revocationSet {
	if s := f.set.Load(); s != nil {
		return s
	}
	select {
	case <-f.firstDone:
	case <-f.done: // stopped before its first fetch finished
	case <-ctx.Done():
	}
	return f.set.Load()
}

// age is how long ago the feed last answered with a list; before the
// first list, longer than any bound (since 1970).
func (f *revocationFollower) age() time.Duration {
	return f.now().Sub(time.Unix(0, f.readAt.Load()))
}

func (f *revocationFollower) retryAfter() time.Duration {
	d := time.Duration(f.nextAttempt.Load() - f.now().UnixNano())
	return min(max(d, time.Second), time.Minute)
}

// background is what the JWKS fetcher and the revocation follower share:
// one loop goroutine, started by start and stopped (and waited for) by
// Destruct, so that no goroutine or connection outlives the last config
// that used it; an HTTP client for a fixed upstream of ours; and
// firstDone, which the loop closes when its first fetch has finished,
// successful or not, so that requests arriving at startup wait for it
// rather than fail; and done, closed when the loop has ended, which every
// such waiter also watches: a loop stopped mid-fetch (a reload that drops
// it) closes neither firstDone nor a pending refresh's channel.
type background struct {
	client    *http.Client
	firstDone chan struct{}
	cancel    context.CancelFunc
	done      chan struct{}
}

func newBackground(timeout time.Duration) background {
	return background{client: privateClient(timeout), firstDone: make(chan struct{}), done: make(chan struct{})}
}

func (b *background) start(run func(ctx context.Context)) {
	ctx, cancel := context.WithCancel(context.Background())
	b.cancel = cancel
	go func() {
		defer close(b.done)
		run(ctx)
	}()
}

// Destruct stops the loop and waits for it.
func (b *background) Destruct() error {
	b.cancel()
	<-b.done
	b.client.CloseIdleConnections()
	return nil
}

// getDocument GETs url. With an etag it asks If-None-Match, and a 304
// answer gives nil data and no error. Any other answer but 200, and a body
// over limit bytes, is an error. The response header comes back for
// Cache-Control and ETag.
func (b *background) getDocument(ctx context.Context, url, accept, etag string, limit int64) ([]byte, http.Header, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, nil, err
	}
	req.Header.Set("Accept", accept)
	if etag != "" {
		req.Header.Set("If-None-Match", etag)
	}
	resp, err := b.client.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusNotModified && etag != "" {
		return nil, resp.Header, nil
	}
	if resp.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4<<10))
		return nil, nil, fmt.Errorf("GET %s: status %d", url, resp.StatusCode)
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
	if err != nil {
		return nil, nil, fmt.Errorf("read %s: %w", url, err)
	}
	if int64(len(data)) > limit {
		return nil, nil, fmt.Errorf("%s: larger than %d bytes", url, limit)
	}
	return data, resp.Header, nil
}

// privateClient is an HTTP client for a fixed upstream of ours (JWKS,
// revocation feed): no environment proxy, no redirects (whoever controls
// one answer must not pick where the next comes from), bounded time.
func privateClient(timeout time.Duration) *http.Client {
	return &http.Client{
		Transport: &http.Transport{
			Proxy:                 nil,
			MaxIdleConns:          1,
			IdleConnTimeout:       90 * time.Second,
			TLSHandshakeTimeout:   timeout,
			ResponseHeaderTimeout: timeout,
		},
		Timeout:       timeout,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// noIssuedAt stands for a token without iat: older than any cut-off.
const noIssuedAt = math.MinInt64

// Interface guards
var _ caddy.Destructor = (*revocationFollower)(nil)
