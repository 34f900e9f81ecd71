package authsvc

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
)

// KeyBits is the size of generated signing keys, as the seed's script made.
const KeyBits = 4096

// GenerateKeyPEM makes a new RSA signing key as PKCS#8 PEM.
func GenerateKeyPEM() ([]byte, error) {
	key, err := rsa.GenerateKey(rand.Reader, KeyBits)
	if err != nil {
		return nil, fmt.Errorf("generate key: %w", err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// ParsePrivateKeyPEM reads an RSA private key in PKCS#1 or PKCS#8 PEM.
func ParsePrivateKeyPEM(b []byte) (*rsa.PrivateKey, error) {
	block, _ := pem.Decode(b)
	if block == nil {
		return nil, errors.New("no PEM block found")
	}
	switch block.Type {
	case "RSA PRIVATE KEY":
		return x509.ParsePKCS1PrivateKey(block.Bytes)
	case "PRIVATE KEY":
		k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
		if err != nil {
			return nil, err
		}
		rk, ok := k.(*rsa.PrivateKey)
		if !ok {
			return nil, fmt.Errorf("PKCS#8 key is %T, want an RSA key (RS256)", k)
		}
		return rk, nil
	default:
		return nil, fmt.Errorf("PEM block %q is not a private key", block.Type)
	}
}

// LoadOrCreateKey loads the signing key from path; with create, a missing
// file is generated first (mode 0600, directory 0700). It returns whether a
// key was generated.
func LoadOrCreateKey(path string, create bool) (*rsa.PrivateKey, bool, error) {
	b, err := os.ReadFile(path)
	generated := false
	if errors.Is(err, fs.ErrNotExist) && create {
		if b, err = GenerateKeyPEM(); err != nil {
			return nil, false, err
		}
		if err := writeFileExclusive(path, b); err != nil {
			if !errors.Is(err, fs.ErrExist) {
				return nil, false, fmt.Errorf("JWT_PRIVATE_KEY_FILE: write %s: %w", path, err)
			}
			// Another instance created it first: use theirs.
			if b, err = os.ReadFile(path); err != nil {
				return nil, false, err
			}
		} else {
			generated = true
		}
	} else if err != nil {
		return nil, false, fmt.Errorf("JWT_PRIVATE_KEY_FILE: %w", err)
	}
	if err := checkKeyMode(path); err != nil {
		return nil, false, err
	}
	key, err := ParsePrivateKeyPEM(b)
	if err != nil {
		return nil, false, fmt.Errorf("JWT_PRIVATE_KEY_FILE %s: %w", path, err)
	}
	if key.N.BitLen() < 2048 {
		return nil, false, fmt.Errorf("JWT_PRIVATE_KEY_FILE %s: RSA key of %d bits is too weak (want >= 2048)", path, key.N.BitLen())
	}
	return key, generated, nil
}

// checkKeyMode refuses a signing key every user of the machine may read or
// replace: with it, anyone could sign an admin's token. Group access is
// allowed (a container's fsGroup); as PostgreSQL does for its TLS key,
// "other" access is not. Windows has no such bits.
func checkKeyMode(path string) error {
	if runtime.GOOS == "windows" {
		return nil
	}
	st, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("JWT_PRIVATE_KEY_FILE: %w", err)
	}
	if perm := st.Mode().Perm(); perm&0o007 != 0 {
		return fmt.Errorf("JWT_PRIVATE_KEY_FILE %s: mode %04o lets every user read or replace the signing key; "+
			"chmod 600 it (a container's secret: mode 0400, or 0440 with its group)", path, perm)
	}
	return nil
}

// writeFileExclusive writes a new file atomically: a temp file in the same
// directory, synced, then linked into place so that a crash never leaves a
// truncated key and an existing key is never replaced.
func writeFileExclusive(path string, b []byte) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, ".key-*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Link(f.Name(), path)
}
