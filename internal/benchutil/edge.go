package benchutil

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/gatehouse/gatehouse/internal/accesstoken"
)

// BuildCaddy builds ./cmd/caddy of this module into dir and returns the
// binary's path, so a bench measures the code it is run from.
func BuildCaddy(ctx context.Context, dir string) (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return "", fmt.Errorf("run the bench inside the gatehouse module")
	}
	path := filepath.Join(dir, "caddy")
	build := exec.CommandContext(ctx, "go", "build", "-o", path, "./cmd/caddy")
	build.Dir = filepath.Dir(gomod)
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		return "", fmt.Errorf("build caddy: %w", err)
	}
	return path, nil
}

// Issuer signs tokens as authsvc would, with a key whose JWKS is in a file
// for gatehouse_auth's jwks_file.
type Issuer struct {
	Key      *rsa.PrivateKey
	Signer   *accesstoken.Signer
	JWKSPath string
}

// NewIssuer makes a 2048-bit key and writes its JWKS into dir.
func NewIssuer(dir string) (*Issuer, error) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, err
	}
	signer, err := accesstoken.NewSigner(key)
	if err != nil {
		return nil, err
	}
	jwk, err := accesstoken.PublicJWK(&key.PublicKey)
	if err != nil {
		return nil, err
	}
	data, err := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{jwk}})
	if err != nil {
		return nil, err
	}
	path := filepath.Join(dir, "jwks.json")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		return nil, err
	}
	return &Issuer{Key: key, Signer: signer, JWKSPath: path}, nil
}

// BenchUserID is the subject of the benches' tokens.
const BenchUserID = "5b0c7a4e-0d5e-4b8f-9a57-8d1c2f9e6a11"

// Token signs a valid token for BenchUserID (issuer and audience
// "gatehouse", one hour, group doc-service-admin); jti tells tokens apart.
func (i *Issuer) Token(jti string) (string, error) { return i.TokenFor(BenchUserID, jti) }

// TokenFor is Token for another subject.
func (i *Issuer) TokenFor(subject, jti string) (string, error) {
	now := time.Now()
	return i.Signer.Sign(&accesstoken.Claims{
		Issuer: "gatehouse", Audience: []string{"gatehouse"},
		Subject:  subject,
		Expiry:   jwt.NewNumericDate(now.Add(time.Hour)),
		IssuedAt: jwt.NewNumericDate(now), NotBefore: jwt.NewNumericDate(now),
		ID: jti, SessionID: "bench", Role: "user", Groups: []string{"doc-service-admin"},
	})
}
