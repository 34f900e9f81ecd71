// Package accesstoken owns the format of Gatehouse access tokens: RS256 JWTs
// (the edge may allow other public-key algorithms, for tokens of another
// issuer) with header typ "at+jwt", issued by authsvc and verified by the edge
// (caddymodules) and by authsvc itself with the same rules.
//
// Verification is deny-by-default and cheap checks come first: size, shape,
// a strict look at the protected header (algorithm allow-list, kid, typ,
// crit) before any key lookup or RSA work. Keys are looked up by kid only;
// headers that carry or point at keys (jwk, jku, x5u, x5c) are ignored.
package accesstoken

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/base64"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4"
	josejson "github.com/go-jose/go-jose/v4/json"
	"github.com/go-jose/go-jose/v4/jwt"
)

// Type is the JWT "typ" header of an access token (RFC 9068).
const Type = "at+jwt"

// MaxTokenBytes bounds the size of a token accepted for verification; ours
// are well under 2 KiB, so anything larger is refused before parsing.
const MaxTokenBytes = 8 << 10

// DefaultLeeway is the clock skew tolerated on exp and nbf.
const DefaultLeeway = 30 * time.Second

// Claims are the claims Gatehouse puts in an access token.
type Claims struct {
	Issuer    string           `json:"iss"`
	Subject   string           `json:"sub"`
	Audience  jwt.Audience     `json:"aud"`
	Expiry    *jwt.NumericDate `json:"exp"`
	NotBefore *jwt.NumericDate `json:"nbf,omitempty"`
	IssuedAt  *jwt.NumericDate `json:"iat,omitempty"`
	ID        string           `json:"jti"`
	SessionID string           `json:"sid,omitempty"`
	Role      string           `json:"role"`
	Groups    []string         `json:"groups"`
}

// ExpiresAt is the token's expiry time.
func (c *Claims) ExpiresAt() time.Time { return c.Expiry.Time() }

// KeyID derives a key id from an RSA public key: its RFC 7638 JWK
// thumbprint (SHA-256, base64url), so the same key always gets the same kid.
func KeyID(pub *rsa.PublicKey) (string, error) {
	tp, err := (&jose.JSONWebKey{Key: pub}).Thumbprint(crypto.SHA256)
	if err != nil {
		return "", fmt.Errorf("key thumbprint: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(tp), nil
}

// PublicJWK is the JWKS entry for pub.
func PublicJWK(pub *rsa.PublicKey) (jose.JSONWebKey, error) {
	kid, err := KeyID(pub)
	if err != nil {
		return jose.JSONWebKey{}, err
	}
	return jose.JSONWebKey{Key: pub, KeyID: kid, Algorithm: string(jose.RS256), Use: "sig"}, nil
}

// Signer issues access tokens with one private key.
type Signer struct {
	kid    string
	signer jose.Signer
}

// NewSigner makes a Signer whose tokens carry kid = KeyID(&key.PublicKey).
func NewSigner(key *rsa.PrivateKey) (*Signer, error) {
	kid, err := KeyID(&key.PublicKey)
	if err != nil {
		return nil, err
	}
	opts := (&jose.SignerOptions{}).WithType(Type).WithHeader(jose.HeaderKey("kid"), kid)
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: key}, opts)
	if err != nil {
		return nil, fmt.Errorf("new signer: %w", err)
	}
	return &Signer{kid: kid, signer: s}, nil
}

// KeyID is the kid the Signer puts in its tokens.
func (s *Signer) KeyID() string { return s.kid }

// Sign serialises and signs c.
func (s *Signer) Sign(c *Claims) (string, error) {
	if c.Groups == nil {
		c.Groups = []string{}
	}
	tok, err := jwt.Signed(s.signer).Claims(c).Serialize()
	if err != nil {
		return "", fmt.Errorf("sign token: %w", err)
	}
	return tok, nil
}

// Reason classifies a verification failure, for metrics and logs. The
// client only ever learns that the token is invalid.
type Reason string

// The reasons a token is refused.
const (
	ReasonMalformed   Reason = "malformed"
	ReasonTooLarge    Reason = "too_large"
	ReasonAlgorithm   Reason = "algorithm"
	ReasonMissingKID  Reason = "missing_kid"
	ReasonUnknownKID  Reason = "unknown_kid"
	ReasonType        Reason = "type"
	ReasonCritical    Reason = "crit"
	ReasonSignature   Reason = "signature"
	ReasonClaims      Reason = "claims"
	ReasonIssuer      Reason = "issuer"
	ReasonAudience    Reason = "audience"
	ReasonExpired     Reason = "expired"
	ReasonNotYetValid Reason = "not_yet_valid"
	ReasonNoKeys      Reason = "no_keys"
)

// Error is a verification failure.
type Error struct {
	Reason Reason
	Err    error
}

func (e *Error) Error() string {
	if e.Err != nil {
		return "invalid token: " + string(e.Reason) + ": " + e.Err.Error()
	}
	return "invalid token: " + string(e.Reason)
}

func (e *Error) Unwrap() error { return e.Err }

func fail(r Reason, format string, args ...any) error {
	return &Error{Reason: r, Err: fmt.Errorf(format, args...)}
}

// ReasonOf returns the Reason of a verification error ("" when err is not one).
func ReasonOf(err error) Reason {
	var e *Error
	if errors.As(err, &e) {
		return e.Reason
	}
	return ""
}

// ErrNoKeys is returned by a KeyFunc that has never loaded a key set; the
// edge answers 503 rather than 401 then, since the token may well be good.
var ErrNoKeys = errors.New("no key set loaded yet")

// Key is a verification key: an *rsa.PublicKey, *ecdsa.PublicKey or
// ed25519.PublicKey. Algorithm, when set (the "alg" of its JWKS entry), is
// the only algorithm it verifies (RFC 7517 4.4): a key published for RS256
// is not used for PS256, whatever a token's header says.
type Key struct {
	Public    crypto.PublicKey
	Algorithm jose.SignatureAlgorithm
}

// RSAKey is the Key of an RSA public key used with RS256, as authsvc signs.
func RSAKey(pub *rsa.PublicKey) *Key { return &Key{Public: pub, Algorithm: jose.RS256} }

// KeyFunc returns the verification key for kid. It returns (nil, nil) for
// an unknown kid and ErrNoKeys when no key set is available at all.
type KeyFunc func(kid string) (*Key, error)

// DefaultAlgorithms is what a Verifier accepts when Algorithms is empty.
var DefaultAlgorithms = []jose.SignatureAlgorithm{jose.RS256}

// PublicKeyAlgorithms are the algorithms a Verifier may be configured with:
// public-key signatures only. "none" never, and HMAC never: with HMAC the
// verification key is the signing key, and a public JWKS key used as an
// HMAC secret is the classic forgery.
var PublicKeyAlgorithms = []jose.SignatureAlgorithm{
	jose.RS256, jose.RS384, jose.RS512, jose.PS256, jose.PS384, jose.PS512,
	jose.ES256, jose.ES384, jose.ES512, jose.EdDSA,
}

// ParseAlgorithms checks a configured allow-list; empty means
// DefaultAlgorithms.
func ParseAlgorithms(names []string) ([]jose.SignatureAlgorithm, error) {
	if len(names) == 0 {
		return slices.Clone(DefaultAlgorithms), nil // the caller's to keep, not the package's
	}
	out := make([]jose.SignatureAlgorithm, 0, len(names))
	for _, n := range names {
		a := jose.SignatureAlgorithm(n)
		if !slices.Contains(PublicKeyAlgorithms, a) {
			return nil, fmt.Errorf("algorithm %q is not allowed: only public-key signature algorithms (%s); never none or HMAC", n, joinAlgs(PublicKeyAlgorithms))
		}
		if !slices.Contains(out, a) {
			out = append(out, a)
		}
	}
	return out, nil
}

func joinAlgs(algs []jose.SignatureAlgorithm) string {
	s := make([]string, len(algs))
	for i, a := range algs {
		s[i] = string(a)
	}
	return strings.Join(s, ", ")
}

// KeyFits reports whether pub is the kind of key alg verifies with: RSA for
// RS*/PS*, ECDSA on alg's own curve for ES*, Ed25519 for EdDSA.
func KeyFits(pub crypto.PublicKey, alg jose.SignatureAlgorithm) bool {
	switch k := pub.(type) {
	case *rsa.PublicKey:
		switch alg {
		case jose.RS256, jose.RS384, jose.RS512, jose.PS256, jose.PS384, jose.PS512:
			return true
		}
	case *ecdsa.PublicKey:
		switch alg {
		case jose.ES256:
			return k.Curve == elliptic.P256()
		case jose.ES384:
			return k.Curve == elliptic.P384()
		case jose.ES512:
			return k.Curve == elliptic.P521()
		}
	case ed25519.PublicKey:
		return alg == jose.EdDSA
	}
	return false
}

// Verifier checks access tokens.
type Verifier struct {
	Issuer   string
	Audience string
	Keys     KeyFunc
	// Algorithms a token may be signed with (from ParseAlgorithms);
	// DefaultAlgorithms when empty.
	Algorithms []jose.SignatureAlgorithm
	// Leeway tolerated on exp and nbf; DefaultLeeway when zero.
	Leeway time.Duration
	// Now is the clock; time.Now when nil.
	Now func() time.Time
}

// header is the subset of the protected header we look at before any
// cryptography. Unknown members are ignored (jwk, jku, x5u, x5c included).
//
// It is decoded with go-jose's JSON package, which matches member names
// case-sensitively as go-jose itself does; encoding/json would read "ALG"
// or "Kid" as alg and kid, so the two parsers could disagree on which
// algorithm or key a token names.
type header struct {
	Alg *string `json:"alg"`
	Kid *string `json:"kid"`
	Typ *string `json:"typ"`
	// Crit is a RawMessage, not a pointer: "crit": null must count as
	// present (a pointer stays nil), and any crit is refused.
	Crit josejson.RawMessage `json:"crit"`
}

// Verify checks token and returns its claims.
func (v *Verifier) Verify(token string) (*Claims, error) {
	if len(token) > MaxTokenBytes {
		return nil, &Error{Reason: ReasonTooLarge}
	}
	// Compact serialisation only: three base64url segments.
	if strings.Count(token, ".") != 2 {
		return nil, fail(ReasonMalformed, "not a compact JWS")
	}
	algs := v.Algorithms
	if len(algs) == 0 {
		algs = DefaultAlgorithms
	}
	h, err := parseHeader(token[:strings.IndexByte(token, '.')], algs)
	if err != nil {
		return nil, err
	}
	alg := jose.SignatureAlgorithm(*h.Alg)
	key, err := v.Keys(*h.Kid)
	if errors.Is(err, ErrNoKeys) {
		return nil, &Error{Reason: ReasonNoKeys, Err: err}
	}
	if err != nil {
		return nil, &Error{Reason: ReasonUnknownKID, Err: err}
	}
	if key == nil || key.Public == nil {
		return nil, fail(ReasonUnknownKID, "kid %q", *h.Kid)
	}
	// The key decides the algorithm as much as the header does: an RSA key
	// never verifies an ES256 header, a key published for RS256 never a
	// PS256 one.
	if (key.Algorithm != "" && key.Algorithm != alg) || !KeyFits(key.Public, alg) {
		return nil, fail(ReasonAlgorithm, "alg %s with the key of kid %q", alg, *h.Kid)
	}
	parsed, err := jwt.ParseSigned(token, []jose.SignatureAlgorithm{alg})
	if err != nil {
		return nil, &Error{Reason: ReasonMalformed, Err: err}
	}
	var c Claims
	if err := parsed.Claims(key.Public, &c); err != nil {
		if errors.Is(err, jose.ErrCryptoFailure) {
			return nil, &Error{Reason: ReasonSignature, Err: err}
		}
		// The signature verified but the payload did not decode into our
		// claim types (e.g. exp as a string).
		return nil, &Error{Reason: ReasonClaims, Err: err}
	}
	if err := v.checkClaims(&c); err != nil {
		return nil, err
	}
	return &c, nil
}

func parseHeader(seg string, algs []jose.SignatureAlgorithm) (*header, error) {
	raw, err := base64.RawURLEncoding.DecodeString(seg)
	if err != nil {
		return nil, fail(ReasonMalformed, "header encoding: %v", err)
	}
	var h header
	if err := josejson.Unmarshal(raw, &h); err != nil {
		return nil, fail(ReasonMalformed, "header: %v", err)
	}
	if h.Alg == nil || !slices.Contains(algs, jose.SignatureAlgorithm(*h.Alg)) {
		return nil, &Error{Reason: ReasonAlgorithm}
	}
	if h.Crit != nil {
		// We understand no critical extension, so any crit is refused.
		return nil, &Error{Reason: ReasonCritical}
	}
	if h.Typ == nil || !(strings.EqualFold(*h.Typ, Type) || strings.EqualFold(*h.Typ, "application/"+Type)) {
		return nil, &Error{Reason: ReasonType}
	}
	if h.Kid == nil || *h.Kid == "" {
		return nil, &Error{Reason: ReasonMissingKID}
	}
	return &h, nil
}

func (v *Verifier) checkClaims(c *Claims) error {
	now := time.Now()
	if v.Now != nil {
		now = v.Now()
	}
	leeway := v.Leeway
	if leeway == 0 {
		leeway = DefaultLeeway
	}
	if c.Issuer != v.Issuer {
		return fail(ReasonIssuer, "iss %q", c.Issuer)
	}
	if !c.Audience.Contains(v.Audience) {
		return fail(ReasonAudience, "aud %v", []string(c.Audience))
	}
	if c.Expiry == nil {
		return fail(ReasonClaims, "exp is required")
	}
	if now.After(c.Expiry.Time().Add(leeway)) {
		return &Error{Reason: ReasonExpired}
	}
	if c.NotBefore != nil && now.Add(leeway).Before(c.NotBefore.Time()) {
		return &Error{Reason: ReasonNotYetValid}
	}
	if c.Subject == "" {
		return fail(ReasonClaims, "sub is required")
	}
	if c.Role != "admin" && c.Role != "user" {
		return fail(ReasonClaims, "role %q", c.Role)
	}
	return nil
}
