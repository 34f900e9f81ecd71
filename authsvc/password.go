package authsvc

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"time"
	"unicode"
	"unicode/utf8"

	"golang.org/x/crypto/argon2"
	"golang.org/x/text/unicode/norm"

	"github.com/gatehouse/gatehouse/internal/httpx"
)

// Password length bounds, in characters. Argon2id has no input limit of its
// own (unlike bcrypt's 72 bytes); the maximum only stops hashing abuse.
const (
	MinPasswordLen = 8
	MaxPasswordLen = 128
)

// CheckPasswordPolicy returns every rule the password breaks (the seed's
// rules plus a length range), so the client can show them all at once. It
// judges the password as it is hashed: in Unicode NFC.
func CheckPasswordPolicy(pw string) []string {
	var v []string
	if !utf8.ValidString(pw) {
		v = append(v, "must be valid UTF-8")
	}
	pw = norm.NFC.String(pw)
	n := utf8.RuneCountInString(pw)
	if n < MinPasswordLen {
		v = append(v, fmt.Sprintf("must be at least %d characters long", MinPasswordLen))
	}
	if n > MaxPasswordLen {
		v = append(v, fmt.Sprintf("must be at most %d characters long", MaxPasswordLen))
	}
	// Special means punctuation or a symbol: not a space, and not an
	// invisible control, format character or lone combining mark, which
	// would satisfy the rule without adding anything a person types.
	var upper, special, control bool
	for _, r := range pw {
		switch {
		case unicode.IsUpper(r):
			upper = true
		case unicode.IsPunct(r) || unicode.IsSymbol(r):
			special = true
		case unicode.IsControl(r):
			control = true
		}
	}
	if control {
		// Tabs, newlines, NUL: a login form cannot type them back.
		v = append(v, "must not contain control characters")
	}
	if !upper {
		v = append(v, "must contain an uppercase letter")
	}
	if !special {
		v = append(v, "must contain a special character")
	}
	if strings.Contains(strings.ToLower(pw), "test") {
		v = append(v, `must not contain "test"`)
	}
	return v
}

// Argon2id parameters: OWASP's recommended minimum (m=19 MiB, t=2, p=1).
// Stored in each hash, so they can be raised later without breaking logins.
const (
	argonMemory  = 19 * 1024
	argonTime    = 2
	argonThreads = 1
	argonKeyLen  = 32
	argonSaltLen = 16
)

// Hasher hashes and checks passwords with bounded concurrency: each hash
// takes ~19 MiB and tens of milliseconds of CPU, so a flood of logins queues
// here instead of starving every other request of CPU and memory.
type Hasher struct {
	slots   chan struct{}
	maxWait time.Duration
	dummy   string // hash checked when the account does not exist

	// Counters for tests and metrics: Argon2id derivations run to check a
	// password (dummy ones included: counted where the key is derived, so
	// the count shows the work was done), and hashes in flight now and at
	// most.
	verifications  atomic.Int64
	inFlight, peak atomic.Int32
}

// NewHasher allows n hashes at once; a caller waiting longer than maxWait
// for a slot gets a 503.
func NewHasher(n int, maxWait time.Duration) (*Hasher, error) {
	h := &Hasher{slots: make(chan struct{}, n), maxWait: maxWait}
	d, err := h.hash([]byte("dummy password for timing"))
	if err != nil {
		return nil, err
	}
	h.dummy = d
	return h, nil
}

var errBusy = &httpx.Error{Status: http.StatusServiceUnavailable, Detail: "too many sign-ins in progress; retry in a moment", Code: "busy"}

func (h *Hasher) acquire(ctx context.Context) error {
	t := time.NewTimer(h.maxWait)
	defer t.Stop()
	select {
	case h.slots <- struct{}{}:
		n := h.inFlight.Add(1)
		for p := h.peak.Load(); n > p && !h.peak.CompareAndSwap(p, n); p = h.peak.Load() {
		}
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return errBusy
	}
}

func (h *Hasher) release() {
	h.inFlight.Add(-1)
	<-h.slots
}

// Hash returns the PHC-format Argon2id hash of pw in Unicode NFC, so that
// "é" typed as one code point or as "e" and a combining accent (keyboards
// and operating systems differ) is the same password (NIST SP 800-63B
// 5.1.1.2).
func (h *Hasher) Hash(ctx context.Context, pw string) (string, error) {
	if err := h.acquire(ctx); err != nil {
		return "", err
	}
	defer h.release()
	return h.hash([]byte(norm.NFC.String(pw)))
}

func (h *Hasher) hash(pw []byte) (string, error) {
	salt := make([]byte, argonSaltLen)
	if _, err := rand.Read(salt); err != nil {
		return "", err
	}
	key := argon2.IDKey(pw, salt, argonTime, argonMemory, argonThreads, argonKeyLen)
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argon2.Version, argonMemory, argonTime, argonThreads,
		base64.RawStdEncoding.EncodeToString(salt), base64.RawStdEncoding.EncodeToString(key)), nil
}

// Verify reports whether pw matches encoded, comparing pw in NFC as Hash
// stores it. A pw that NFC changes is also tried as sent: hashes made
// before passwords were normalised hold the code points the user typed.
// An empty encoded (no such account) is checked against a dummy hash, as
// many times, so that the answer takes the same time whether or not the
// account exists.
func (h *Hasher) Verify(ctx context.Context, encoded, pw string) (bool, error) {
	if err := h.acquire(ctx); err != nil {
		return false, err
	}
	defer h.release()
	candidates := []string{norm.NFC.String(pw)}
	if candidates[0] != pw {
		candidates = append(candidates, pw)
	}
	for _, c := range candidates {
		if encoded == "" {
			_, _ = verifyArgon2id(h.dummy, []byte(c), &h.verifications)
			continue
		}
		ok, err := verifyArgon2id(encoded, []byte(c), &h.verifications)
		if ok || err != nil {
			return ok, err
		}
	}
	return false, nil
}

var errBadHash = errors.New("unrecognised password hash format")

// verifyArgon2id checks pw against encoded, adding one to derived when
// the key was derived (encoded well-formed).
func verifyArgon2id(encoded string, pw []byte, derived *atomic.Int64) (bool, error) {
	parts := strings.Split(encoded, "$")
	if len(parts) != 6 || parts[1] != "argon2id" {
		return false, errBadHash
	}
	var version int
	if _, err := fmt.Sscanf(parts[2], "v=%d", &version); err != nil || version != argon2.Version {
		return false, errBadHash
	}
	var m, t uint32
	var p uint8
	if _, err := fmt.Sscanf(parts[3], "m=%d,t=%d,p=%d", &m, &t, &p); err != nil || m == 0 || t == 0 || p == 0 || m > 1<<20 || t > 16 {
		return false, errBadHash
	}
	salt, err := base64.RawStdEncoding.DecodeString(parts[4])
	if err != nil {
		return false, errBadHash
	}
	want, err := base64.RawStdEncoding.DecodeString(parts[5])
	if err != nil || len(want) == 0 || len(want) > 128 {
		return false, errBadHash
	}
	got := argon2.IDKey(pw, salt, t, m, p, uint32(len(want)))
	derived.Add(1)
	return subtle.ConstantTimeCompare(got, want) == 1, nil
}
