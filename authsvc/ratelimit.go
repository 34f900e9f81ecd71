package authsvc

import (
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/gatehouse/gatehouse/internal/httpx"
)

// attemptLimiter limits login and registration attempts per client
// address: a token bucket per address (golang.org/x/time/rate), refilled
// at perMinute a minute, holding at most perMinute. It is checked before
// any password is hashed, so a refused attempt costs no Argon2 time.
//
// Besides slowing password guessing, it bounds the revocation feed: every
// login starts a session and every logout ends one, and the feed lists the
// ended sessions until their tokens expire. Unlimited, one account looping
// login and logout grew it past what the edge reads (found in review).
type attemptLimiter struct {
	perMinute int
	now       func() time.Time

	mu      sync.Mutex
	buckets map[string]*rate.Limiter
}

// maxLimiterBuckets bounds the limiter's memory (a bucket is about 100
// bytes): past it, full buckets (addresses idle for a minute, which hold
// no state worth keeping) are dropped, then arbitrary ones.
const maxLimiterBuckets = 100_000

func newAttemptLimiter(perMinute int, now func() time.Time) *attemptLimiter {
	if perMinute <= 0 {
		return nil
	}
	return &attemptLimiter{perMinute: perMinute, now: now, buckets: map[string]*rate.Limiter{}}
}

// allow takes one attempt from key's bucket; when it is empty it returns
// false and how long until the next attempt may go. A nil limiter allows
// everything.
func (l *attemptLimiter) allow(key string) (bool, time.Duration) {
	if l == nil {
		return true, 0
	}
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.buckets[key]
	if b == nil {
		if len(l.buckets) >= maxLimiterBuckets {
			l.evict(now)
		}
		b = rate.NewLimiter(rate.Every(time.Minute/time.Duration(l.perMinute)), l.perMinute)
		l.buckets[key] = b
	}
	r := b.ReserveN(now, 1)
	if d := r.DelayFrom(now); d > 0 {
		r.CancelAt(now) // a refused attempt does not push the next one back
		return false, d
	}
	return true, 0
}

// evict makes room: full buckets first, then, if an attacker with many
// addresses keeps them all busy, a tenth of the rest, whichever Go's map
// order (random) yields first; their holders start over with a full
// bucket, which is all they can win.
func (l *attemptLimiter) evict(now time.Time) {
	for k, b := range l.buckets {
		if b.TokensAt(now) >= float64(l.perMinute) {
			delete(l.buckets, k)
		}
	}
	for k := range l.buckets {
		if len(l.buckets) < maxLimiterBuckets*9/10 {
			break
		}
		delete(l.buckets, k)
	}
}

// attempt counts one attempt of r's client address against l; past the
// limit it is a 429 with Retry-After, before any body is read or password
// hashed.
func attempt(l *attemptLimiter, r *http.Request) error {
	ok, wait := l.allow(clientAddress(r))
	if ok {
		return nil
	}
	secs := int((wait + time.Second - 1) / time.Second)
	return &httpx.Error{Status: http.StatusTooManyRequests, RetryAfter: secs,
		Detail: fmt.Sprintf("Too many attempts from this address; try again in %d seconds", secs)}
}

// clientAddress is the key a request's attempts count against: its
// client's address (clientIP), IPv6 ones by /64, the block one subscriber
// usually holds.
func clientAddress(r *http.Request) string {
	a := clientIP(r)
	if !a.IsValid() {
		return r.RemoteAddr
	}
	if a.Is6() {
		p, _ := a.Prefix(64)
		return p.String()
	}
	return a.String()
}

// clientIP is the request's client address: the edge's X-Real-IP (Caddy's
// {client_ip}: the peer, or the client behind trusted_proxies; the edge
// drops a client's own X-Real-IP first), else the peer's address. Only the
// edge reaches authsvc's address, so the header is the edge's: the trust
// boundary docs/edge.md draws for X-User-* at the services.
func clientIP(r *http.Request) netip.Addr {
	if a, err := netip.ParseAddr(r.Header.Get("X-Real-IP")); err == nil {
		return a.Unmap().WithZone("")
	}
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	a, _ := netip.ParseAddr(host)
	return a.Unmap().WithZone("")
}
