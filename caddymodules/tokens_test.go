package caddymodules_test

import (
	"crypto"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/pem"
	"testing"
)

func rsaSign(k *rsa.PrivateKey, input string) ([]byte, error) {
	sum := sha256.Sum256([]byte(input))
	return rsa.SignPKCS1v15(rand.Reader, k, crypto.SHA256, sum[:])
}

func publicPEM(pub *rsa.PublicKey) []byte {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		panic(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
}

// hmacToken is the classic key-confusion forgery: HS256 keyed with the
// server's RSA public key, which a verifier that trusts "alg" would accept.
func hmacToken(t testing.TB, secret []byte, header, payload map[string]any) string {
	in := seg(t, header) + "." + seg(t, payload)
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(in))
	return in + "." + b64(m.Sum(nil))
}
