package gatehouseauth

import (
	"crypto/sha256"
	"sync"
	"time"
	"unsafe"

	"github.com/gatehouse/gatehouse/internal/accesstoken"
)

// DefaultCacheSize is how many verified tokens a handler remembers.
const DefaultCacheSize = 10000

// MaxCacheSize bounds cache_size: an entry is about 200 bytes, so a full
// cache of this size is some 200 MiB. A typo of a few zeros more is
// refused rather than allowed to take the edge's memory.
const MaxCacheSize = 1_000_000

// cacheShards spreads the cache over independent locks so that parallel
// requests rarely wait on each other; a power of two.
const cacheShards = 32

// identity is what a verified token grants, rendered once at verification
// time so a cache hit costs no parsing and no encoding.
type identity struct {
	userID    string
	role      string
	groups    string // X-User-Groups value: percent-encoded, comma-separated
	sessionID string
	// issuedAt is the token's iat (unix seconds; noIssuedAt without one),
	// for the revocation feed's per-user cut-offs.
	issuedAt int64
	// deadline is when the token stops being accepted (exp + leeway): an
	// upgraded connection it opened is closed then (tunnels.go).
	deadline time.Time
	// placeholders holds userID, role, groups and sessionID already
	// converted to interface values: a string stored in an `any` is a heap
	// allocation, and the replacer wants `any`, on every request.
	placeholders [4]any
}

// box fills id.placeholders; call it once the strings are final.
func (id *identity) box() {
	id.placeholders = [4]any{id.userID, id.role, id.groups, id.sessionID}
}

// cacheEntry is one verified token.
type cacheEntry struct {
	id identity
	// deadline is exp + leeway: past it the entry is dead, exactly when the
	// verifier would refuse the token as expired.
	deadline time.Time
	// kid and key are the signing key: a hit is honoured only while the key
	// set still maps kid to the same key, so withdrawing a key from the
	// JWKS also retires the tokens it signed.
	kid string
	key *accesstoken.Key
}

// tokenCache maps SHA-256(token) to what the token granted. The hash, not
// the token, is the key: a collision would hand one user's identity to
// another, so a fast non-cryptographic hash is not an option, and keeping
// only the digest keeps bearer tokens out of the heap.
type tokenCache struct {
	shards   [cacheShards]cacheShard
	perShard int
}

type cacheShard struct {
	mu sync.Mutex
	m  map[[sha256.Size]byte]*cacheEntry
}

// newTokenCache holds size entries, at least one a shard (cacheShards).
// The maps are pre-sized up to the default's share only: Caddy provisions
// before it validates, and a large size should cost memory as tokens
// arrive, not at load.
func newTokenCache(size int) *tokenCache {
	per := max(size/cacheShards, 1)
	c := &tokenCache{perShard: per}
	for i := range c.shards {
		c.shards[i].m = make(map[[sha256.Size]byte]*cacheEntry, min(per, DefaultCacheSize/cacheShards))
	}
	return c
}

// tokenKey hashes a token without copying it: []byte(token) would
// allocate a copy on every request, and Sum256 neither keeps nor changes
// its input.
func tokenKey(token string) [sha256.Size]byte {
	return sha256.Sum256(unsafe.Slice(unsafe.StringData(token), len(token)))
}

func (c *tokenCache) shard(k *[sha256.Size]byte) *cacheShard {
	return &c.shards[k[0]&(cacheShards-1)]
}

// get returns the entry for k if it is still alive at now.
func (c *tokenCache) get(k *[sha256.Size]byte, now time.Time) (*cacheEntry, bool) {
	s := c.shard(k)
	s.mu.Lock()
	e, ok := s.m[*k]
	if ok && now.After(e.deadline) {
		delete(s.m, *k)
		ok = false
	}
	s.mu.Unlock()
	return e, ok
}

// remove forgets k (a hit whose key has been withdrawn).
func (c *tokenCache) remove(k *[sha256.Size]byte) {
	s := c.shard(k)
	s.mu.Lock()
	delete(s.m, *k)
	s.mu.Unlock()
}

// put stores e under k. A full shard first drops its expired entries and,
// if that frees nothing, an arbitrary one (Go's map iteration order is
// randomised): simple, O(1) amortised, and good enough for a cache whose
// misses cost one RSA verification.
func (c *tokenCache) put(k *[sha256.Size]byte, e *cacheEntry, now time.Time) {
	s := c.shard(k)
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.m[*k]; !ok && len(s.m) >= c.perShard {
		evicted := 0
		scanned := 0
		for key, old := range s.m {
			if now.After(old.deadline) {
				delete(s.m, key)
				evicted++
			}
			// Bound the scan so a put stays cheap on a large shard.
			if scanned++; scanned >= 64 {
				break
			}
		}
		if evicted == 0 {
			for key := range s.m {
				delete(s.m, key)
				break
			}
		}
	}
	s.m[*k] = e
}

// len is the number of entries, for tests.
func (c *tokenCache) len() int {
	n := 0
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.Lock()
		n += len(s.m)
		s.mu.Unlock()
	}
	return n
}
