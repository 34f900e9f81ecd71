package accesstoken

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

var (
	keysOnce          sync.Once
	goodKey, otherKey *rsa.PrivateKey
)

func keys(t *testing.T) (*rsa.PrivateKey, *rsa.PrivateKey) {
	t.Helper()
	keysOnce.Do(func() {
		var err error
		if goodKey, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
			panic(err)
		}
		if otherKey, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
			panic(err)
		}
	})
	return goodKey, otherKey
}

var testNow = time.Unix(1_800_000_000, 0)

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

func b64JSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b64(b)
}

// rs256 signs a signing input the way a JWS RS256 signer does, so tests
// can build tokens with any header or payload they like.
func rs256(t *testing.T, key *rsa.PrivateKey, input string) string {
	t.Helper()
	sum := sha256.Sum256([]byte(input))
	sig, err := rsa.SignPKCS1v15(rand.Reader, key, crypto.SHA256, sum[:])
	if err != nil {
		t.Fatal(err)
	}
	return b64(sig)
}

func goodPayload() map[string]any {
	return map[string]any{
		"iss": "gatehouse", "aud": "gatehouse", "sub": "u-1",
		"exp": testNow.Add(10 * time.Minute).Unix(), "iat": testNow.Unix(), "nbf": testNow.Unix(),
		"jti": "j-1", "sid": "s-1", "role": "user", "groups": []string{"g"},
	}
}

func TestVerify(t *testing.T) {
	good, other := keys(t)
	kid, err := KeyID(&good.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	otherKID, _ := KeyID(&other.PublicKey)
	goodHeader := func() map[string]any { return map[string]any{"alg": "RS256", "typ": Type, "kid": kid} }

	// build signs header.payload with key (RS256); mutate hooks adjust them.
	build := func(h map[string]any, p map[string]any, key *rsa.PrivateKey) string {
		in := b64JSON(t, h) + "." + b64JSON(t, p)
		return in + "." + rs256(t, key, in)
	}
	with := func(m map[string]any, kv ...any) map[string]any {
		for i := 0; i < len(kv); i += 2 {
			if kv[i+1] == nil {
				delete(m, kv[i].(string))
			} else {
				m[kv[i].(string)] = kv[i+1]
			}
		}
		return m
	}
	valid := build(goodHeader(), goodPayload(), good)
	parts := strings.Split(valid, ".")

	pubDER, _ := x509.MarshalPKIXPublicKey(&good.PublicKey)
	pubPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER})
	hs256 := func(secret []byte) string {
		in := b64JSON(t, with(goodHeader(), "alg", "HS256")) + "." + b64JSON(t, goodPayload())
		m := hmac.New(sha256.New, secret)
		m.Write([]byte(in))
		return in + "." + b64(m.Sum(nil))
	}
	attackerJWK, _ := json.Marshal(jose.JSONWebKey{Key: &other.PublicKey, KeyID: kid, Algorithm: "RS256", Use: "sig"})
	var attackerJWKMap map[string]any
	_ = json.Unmarshal(attackerJWK, &attackerJWKMap)
	tampered := goodPayload()
	tampered["role"] = "admin"

	tests := []struct {
		name   string
		token  string
		reason Reason // "" means valid
	}{
		{"valid", valid, ""},
		{"typ with media type prefix", build(with(goodHeader(), "typ", "application/at+jwt"), goodPayload(), good), ""},
		{"aud as array", build(goodHeader(), with(goodPayload(), "aud", []string{"other", "gatehouse"}), good), ""},
		{"expired within leeway", build(goodHeader(), with(goodPayload(), "exp", testNow.Add(-10*time.Second).Unix()), good), ""},
		{"nbf within leeway", build(goodHeader(), with(goodPayload(), "nbf", testNow.Add(10*time.Second).Unix()), good), ""},

		{"alg none", b64JSON(t, with(goodHeader(), "alg", "none")) + "." + parts[1] + ".", ReasonAlgorithm},
		{"alg None", b64JSON(t, with(goodHeader(), "alg", "None")) + "." + parts[1] + ".", ReasonAlgorithm},
		{"HS256 keyed with the public key PEM", hs256(pubPEM), ReasonAlgorithm},
		{"HS256 keyed with the public key DER", hs256(pubDER), ReasonAlgorithm},
		{"RS512", build(with(goodHeader(), "alg", "RS512"), goodPayload(), good), ReasonAlgorithm},
		{"PS256", build(with(goodHeader(), "alg", "PS256"), goodPayload(), good), ReasonAlgorithm},
		{"alg missing", build(with(goodHeader(), "alg", nil), goodPayload(), good), ReasonAlgorithm},
		{"alg as number", build(with(goodHeader(), "alg", 256), goodPayload(), good), ReasonMalformed},
		// go-jose reads member names case-sensitively; so must we, or "ALG"
		// could smuggle a second opinion past one of the two parsers.
		{"upper-case ALG none", build(with(goodHeader(), "alg", nil, "ALG", "RS256"), goodPayload(), good), ReasonAlgorithm},
		{"crit", build(with(goodHeader(), "crit", []string{"exp"}, "exp", 1), goodPayload(), good), ReasonCritical},
		{"crit empty", build(with(goodHeader(), "crit", []string{}), goodPayload(), good), ReasonCritical},
		// Present, whatever its value: null decoded into a pointer left it
		// nil, and the token passed (found in review).
		{"crit null", build(with(goodHeader(), "crit", json.RawMessage("null")), goodPayload(), good), ReasonCritical},
		{"crit false", build(with(goodHeader(), "crit", false), goodPayload(), good), ReasonCritical},
		{"typ JWT", build(with(goodHeader(), "typ", "JWT"), goodPayload(), good), ReasonType},
		{"typ missing", build(with(goodHeader(), "typ", nil), goodPayload(), good), ReasonType},
		{"kid missing", build(with(goodHeader(), "kid", nil), goodPayload(), good), ReasonMissingKID},
		{"kid empty", build(with(goodHeader(), "kid", ""), goodPayload(), good), ReasonMissingKID},
		{"kid unknown", build(with(goodHeader(), "kid", otherKID), goodPayload(), other), ReasonUnknownKID},
		{"kid path-like", build(with(goodHeader(), "kid", "../../etc/passwd"), goodPayload(), good), ReasonUnknownKID},
		{"embedded jwk with the attacker's key", build(with(goodHeader(), "jwk", attackerJWKMap), goodPayload(), other), ReasonSignature},
		{"jku pointing at the attacker", build(with(goodHeader(), "jku", "http://attacker.invalid/jwks.json"), goodPayload(), other), ReasonSignature},
		{"x5u pointing at the attacker", build(with(goodHeader(), "x5u", "http://attacker.invalid/cert.pem"), goodPayload(), other), ReasonSignature},
		{"signed by another key under our kid", build(goodHeader(), goodPayload(), other), ReasonSignature},
		{"payload tampered", parts[0] + "." + b64JSON(t, tampered) + "." + parts[2], ReasonSignature},
		{"signature stripped", parts[0] + "." + parts[1] + ".", ReasonSignature},
		{"signature garbage", parts[0] + "." + parts[1] + ".AAAA", ReasonSignature},
		{"two segments", parts[0] + "." + parts[1], ReasonMalformed},
		{"four segments", valid + ".x", ReasonMalformed},
		{"header not base64", "!!!." + parts[1] + "." + parts[2], ReasonMalformed},
		{"header not JSON", b64([]byte("nope")) + "." + parts[1] + "." + parts[2], ReasonMalformed},
		{"empty", "", ReasonMalformed},
		{"too large", valid + strings.Repeat("A", MaxTokenBytes), ReasonTooLarge},
		{"expired", build(goodHeader(), with(goodPayload(), "exp", testNow.Add(-time.Minute).Unix()), good), ReasonExpired},
		{"exp missing", build(goodHeader(), with(goodPayload(), "exp", nil), good), ReasonClaims},
		{"exp as string", build(goodHeader(), with(goodPayload(), "exp", "9999999999"), good), ReasonClaims},
		{"exp null", build(goodHeader(), with(goodPayload(), "exp", json.RawMessage("null")), good), ReasonClaims},
		{"exp absurdly large", build(goodHeader(), with(goodPayload(), "exp", 1e300), good), ReasonClaims},
		{"nbf in the future", build(goodHeader(), with(goodPayload(), "nbf", testNow.Add(time.Minute).Unix()), good), ReasonNotYetValid},
		{"nbf as string", build(goodHeader(), with(goodPayload(), "nbf", "0"), good), ReasonClaims},
		{"wrong iss", build(goodHeader(), with(goodPayload(), "iss", "evil"), good), ReasonIssuer},
		{"iss missing", build(goodHeader(), with(goodPayload(), "iss", nil), good), ReasonIssuer},
		{"wrong aud", build(goodHeader(), with(goodPayload(), "aud", "other"), good), ReasonAudience},
		{"aud missing", build(goodHeader(), with(goodPayload(), "aud", nil), good), ReasonAudience},
		{"aud as number", build(goodHeader(), with(goodPayload(), "aud", 1), good), ReasonClaims},
		{"sub missing", build(goodHeader(), with(goodPayload(), "sub", nil), good), ReasonClaims},
		{"sub as number", build(goodHeader(), with(goodPayload(), "sub", 7), good), ReasonClaims},
		{"role missing", build(goodHeader(), with(goodPayload(), "role", nil), good), ReasonClaims},
		{"role unknown", build(goodHeader(), with(goodPayload(), "role", "root"), good), ReasonClaims},
		{"groups as string", build(goodHeader(), with(goodPayload(), "groups", "admins"), good), ReasonClaims},
		{"payload not JSON", func() string {
			in := parts[0] + "." + b64([]byte("not json"))
			return in + "." + rs256(t, good, in)
		}(), ReasonClaims},
	}
	v := &Verifier{
		Issuer: "gatehouse", Audience: "gatehouse",
		Keys: func(k string) (*Key, error) {
			if k == kid {
				return RSAKey(&good.PublicKey), nil
			}
			return nil, nil
		},
		Now: func() time.Time { return testNow },
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := v.Verify(tt.token)
			if tt.reason == "" {
				if err != nil {
					t.Fatalf("Verify: %v", err)
				}
				if c.Subject != "u-1" || c.Role != "user" || c.SessionID != "s-1" {
					t.Fatalf("claims = %+v", c)
				}
				return
			}
			if err == nil {
				t.Fatalf("Verify accepted the token: %+v", c)
			}
			if got := ReasonOf(err); got != tt.reason {
				t.Fatalf("reason = %q, want %q (%v)", got, tt.reason, err)
			}
		})
	}
}

// The header is judged before any key is looked up: a token that fails
// the cheap checks must never cost a JWKS refresh.
func TestVerifyChecksHeaderBeforeKeyLookup(t *testing.T) {
	good, _ := keys(t)
	kid, _ := KeyID(&good.PublicKey)
	calls := 0
	v := &Verifier{Issuer: "gatehouse", Audience: "gatehouse", Now: func() time.Time { return testNow },
		Keys: func(string) (*Key, error) { calls++; return nil, nil }}
	for _, h := range []map[string]any{
		{"alg": "none", "typ": Type, "kid": kid},
		{"alg": "HS256", "typ": Type, "kid": kid},
		{"alg": "RS256", "typ": "JWT", "kid": kid},
		{"alg": "RS256", "typ": Type, "kid": kid, "crit": []string{"x"}},
		{"alg": "RS256", "typ": Type},
	} {
		in := b64JSON(t, h) + "." + b64JSON(t, goodPayload())
		if _, err := v.Verify(in + "." + rs256(t, good, in)); err == nil {
			t.Fatalf("header %v accepted", h)
		}
	}
	if calls != 0 {
		t.Fatalf("key lookups = %d, want 0", calls)
	}
}

func TestVerifyKeyErrors(t *testing.T) {
	good, _ := keys(t)
	s, err := NewSigner(good)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := s.Sign(&Claims{Issuer: "gatehouse", Subject: "u", Audience: []string{"gatehouse"}, Role: "admin",
		Expiry: ptr(testNow.Add(time.Minute))})
	if err != nil {
		t.Fatal(err)
	}
	v := &Verifier{Issuer: "gatehouse", Audience: "gatehouse", Now: func() time.Time { return testNow }}

	v.Keys = func(string) (*Key, error) { return nil, ErrNoKeys }
	if _, err := v.Verify(tok); ReasonOf(err) != ReasonNoKeys || !errors.Is(err, ErrNoKeys) {
		t.Fatalf("no keys: %v", err)
	}
	v.Keys = func(string) (*Key, error) { return nil, errors.New("boom") }
	if _, err := v.Verify(tok); ReasonOf(err) != ReasonUnknownKID {
		t.Fatalf("key error: %v", err)
	}
	v.Keys = func(k string) (*Key, error) {
		if k != s.KeyID() {
			t.Errorf("kid = %q, want %q", k, s.KeyID())
		}
		return RSAKey(&good.PublicKey), nil
	}
	c, err := v.Verify(tok)
	if err != nil {
		t.Fatal(err)
	}
	if c.Role != "admin" || c.Groups == nil {
		t.Fatalf("claims = %+v", c)
	}
}

func TestKeyIDAndPublicJWK(t *testing.T) {
	good, other := keys(t)
	a, _ := KeyID(&good.PublicKey)
	b, _ := KeyID(&good.PublicKey)
	c, _ := KeyID(&other.PublicKey)
	if a != b || a == c || a == "" {
		t.Fatalf("KeyID not a stable thumbprint: %q %q %q", a, b, c)
	}
	jwk, err := PublicJWK(&good.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	if jwk.KeyID != a || jwk.Algorithm != "RS256" || jwk.Use != "sig" || !jwk.IsPublic() {
		t.Fatalf("jwk = %+v", jwk)
	}
}

func ptr(t time.Time) *jwt.NumericDate { return jwt.NewNumericDate(t) }

// signAs signs goodPayload with any algorithm go-jose knows, typ at+jwt and
// the given kid, the way another issuer's tokens would look.
func signAs(t *testing.T, alg jose.SignatureAlgorithm, key any, kid string) string {
	t.Helper()
	opts := (&jose.SignerOptions{}).WithType(Type).WithHeader(jose.HeaderKey("kid"), kid)
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: key}, opts)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := jwt.Signed(s).Claims(goodPayload()).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// The allow-list decides which algorithms are even looked at, and a key
// verifies only what its type and its published alg allow.
func TestVerifyAlgorithms(t *testing.T) {
	good, _ := keys(t)
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ec384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	edPub, edPriv, _ := ed25519.GenerateKey(rand.Reader)
	keyset := map[string]*Key{
		"rsa":        {Public: &good.PublicKey},
		"rsa-rs256":  RSAKey(&good.PublicKey),
		"ec":         {Public: &ec.PublicKey, Algorithm: jose.ES256},
		"ec384-bare": {Public: &ec384.PublicKey},
		"ed":         {Public: edPub},
	}
	lookups := 0
	verifier := func(algs ...jose.SignatureAlgorithm) *Verifier {
		return &Verifier{Issuer: "gatehouse", Audience: "gatehouse", Algorithms: algs,
			Keys: func(kid string) (*Key, error) { lookups++; return keyset[kid], nil },
			Now:  func() time.Time { return testNow }}
	}
	all := verifier(PublicKeyAlgorithms...)
	tests := []struct {
		name    string
		v       *Verifier
		tok     string
		reason  Reason // "" = accepted
		lookups int
	}{
		{"RS256 by default", verifier(), signAs(t, jose.RS256, good, "rsa"), "", 1},
		{"ES256 refused by default, before the key lookup", verifier(), signAs(t, jose.ES256, ec, "ec"), ReasonAlgorithm, 0},
		{"ES256 allowed", verifier(jose.ES256), signAs(t, jose.ES256, ec, "ec"), "", 1},
		{"RS256 refused when only ES256 is allowed", verifier(jose.ES256), signAs(t, jose.RS256, good, "rsa"), ReasonAlgorithm, 0},
		{"EdDSA allowed", verifier(jose.EdDSA), signAs(t, jose.EdDSA, edPriv, "ed"), "", 1},
		{"PS512 with an RSA key without alg", all, signAs(t, jose.PS512, good, "rsa"), "", 1},
		{"ES384 on its curve", all, signAs(t, jose.ES384, ec384, "ec384-bare"), "", 1},
		// The key, not the header, has the last word.
		{"PS256 with a key published for RS256", all, signAs(t, jose.PS256, good, "rsa-rs256"), ReasonAlgorithm, 1},
		{"ES256 header naming an RSA key", all, signAs(t, jose.ES256, ec, "rsa"), ReasonAlgorithm, 1},
		{"ES256 header naming a P-384 key", all, signAs(t, jose.ES256, ec, "ec384-bare"), ReasonAlgorithm, 1},
		{"RS256 header naming an EC key", all, signAs(t, jose.RS256, good, "ec"), ReasonAlgorithm, 1},
		{"ES256 signed by another EC key", verifier(jose.ES256), signAs(t, jose.ES256, otherP256Key(t), "ec"), ReasonSignature, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			lookups = 0
			_, err := tt.v.Verify(tt.tok)
			if got := ReasonOf(err); got != tt.reason {
				t.Fatalf("reason %q (%v), want %q", got, err, tt.reason)
			}
			if lookups != tt.lookups {
				t.Errorf("%d key lookups, want %d", lookups, tt.lookups)
			}
		})
	}
}

// otherP256Key is a P-256 key the table does not publish.
func otherP256Key(t *testing.T) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestParseAlgorithms(t *testing.T) {
	if got, err := ParseAlgorithms(nil); err != nil || len(got) != 1 || got[0] != jose.RS256 {
		t.Errorf("default: %v %v", got, err)
	}
	if got, err := ParseAlgorithms([]string{"ES256", "RS256", "ES256"}); err != nil || len(got) != 2 || got[0] != jose.ES256 || got[1] != jose.RS256 {
		t.Errorf("list: %v %v", got, err)
	}
	for _, bad := range []string{"none", "None", "HS256", "HS384", "HS512", "rs256", "", "RSA-OAEP"} {
		if _, err := ParseAlgorithms([]string{"RS256", bad}); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}
