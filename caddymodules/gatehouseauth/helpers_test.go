package gatehouseauth

import (
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/gatehouse/gatehouse/internal/accesstoken"
)

// Test keys are generated once per package: RSA key generation is the
// slowest thing these tests would otherwise do.
var (
	keysOnce sync.Once
	testKeys [3]*rsa.PrivateKey
)

func testKey(t testing.TB, i int) *rsa.PrivateKey {
	t.Helper()
	keysOnce.Do(func() {
		for i := range testKeys {
			k, err := rsa.GenerateKey(rand.Reader, 2048)
			if err != nil {
				panic(err)
			}
			testKeys[i] = k
		}
	})
	return testKeys[i]
}

func jwksJSON(t testing.TB, keys ...*rsa.PrivateKey) []byte {
	t.Helper()
	var set jose.JSONWebKeySet
	for _, k := range keys {
		jwk, err := accesstoken.PublicJWK(&k.PublicKey)
		if err != nil {
			t.Fatal(err)
		}
		set.Keys = append(set.Keys, jwk)
	}
	b, err := json.Marshal(set)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func validClaims(now time.Time) *accesstoken.Claims {
	return &accesstoken.Claims{
		Issuer:    "gatehouse",
		Subject:   "5b0c7a4e-0d5e-4b8f-9a57-8d1c2f9e6a11",
		Audience:  []string{"gatehouse"},
		Expiry:    jwt.NewNumericDate(now.Add(15 * time.Minute)),
		IssuedAt:  jwt.NewNumericDate(now),
		NotBefore: jwt.NewNumericDate(now),
		ID:        "jti-1",
		SessionID: "sess-1",
		Role:      "user",
		Groups:    []string{"doc-service-admin", "a,b c"},
	}
}

func sign(t testing.TB, key *rsa.PrivateKey, c *accesstoken.Claims) string {
	t.Helper()
	s, err := accesstoken.NewSigner(key)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := s.Sign(c)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func writeFile(t testing.TB, dir, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func jwtDate(t time.Time) *jwt.NumericDate { return jwt.NewNumericDate(t) }
