package authsvc

import (
	"context"
	"errors"
	"net/http"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/internal/httpx"
)

func TestCheckPasswordPolicy(t *testing.T) {
	const (
		short   = "must be at least 8 characters long"
		long    = "must be at most 128 characters long"
		upper   = "must contain an uppercase letter"
		special = "must contain a special character"
		test    = `must not contain "test"`
		control = "must not contain control characters"
	)
	tests := []struct {
		pw   string
		want []string
	}{
		{"Str0ng-Passw0rd!", nil},
		{"Abcdefg!", nil}, // exactly 8
		{"Abcdef!", []string{short}},
		{"", []string{short, upper, special}},
		{"abcdefgh!", []string{upper}},
		{"Abcdefghi", []string{special}},
		{"Abc defgh", []string{special}}, // a space is not special
		{"Abc_defgh", nil},               // punctuation is
		{"Äbcdefg€", nil},                // non-ASCII upper case and symbol
		{"ÄÖÜ€", []string{short}},        // counted in characters, not bytes
		{"My-Test-Pass", []string{test}},
		{"My-tEsT-Pass", []string{test}},
		{"TEST-TEST-1", []string{test}},
		{"A!" + strings.Repeat("a", 126), nil}, // exactly 128
		{"A!" + strings.Repeat("a", 127), []string{long}},
		{"A!" + strings.Repeat("é", 127), []string{long}},
		{"test", []string{short, upper, special, test}},
		// Judged in NFC: 8 code points as sent, 7 characters.
		{"Abcde\u0301f!", []string{short}},
		{"Abcdefgh\u0301", []string{special}}, // a lone combining mark is not special
		{"Abcdefgh\u200b", []string{special}}, // nor an invisible format character
		{"Abcdefgh\x01", []string{control, special}},
		{"Abc\tdefg!", []string{control}},
		{"Abc\ndefg!", []string{control}},
		{"Abc\x00defg!", []string{control}},
	}
	for _, tt := range tests {
		if got := CheckPasswordPolicy(tt.pw); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("CheckPasswordPolicy(%.20q) = %q, want %q", tt.pw, got, tt.want)
		}
	}
	if got := CheckPasswordPolicy("Abcdefg!\xff"); len(got) == 0 || got[0] != "must be valid UTF-8" {
		t.Errorf("invalid UTF-8: %q", got)
	}
}

func TestHasher(t *testing.T) {
	ctx := context.Background()
	h, err := NewHasher(2, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	enc, err := h.Hash(ctx, "Correct-Horse-1!")
	if err != nil {
		t.Fatal(err)
	}
	enc2, err := h.Hash(ctx, "Correct-Horse-1!")
	if err != nil {
		t.Fatal(err)
	}
	if enc == enc2 {
		t.Error("two hashes of a password are equal: salt not random")
	}
	if ok, err := h.Verify(ctx, enc, "Correct-Horse-1!"); !ok || err != nil {
		t.Errorf("right password: %v %v", ok, err)
	}
	if ok, err := h.Verify(ctx, enc, "Correct-Horse-2!"); ok || err != nil {
		t.Errorf("wrong password: %v %v", ok, err)
	}
	// No account: checked against the dummy hash, never true.
	before := h.verifications.Load()
	if ok, err := h.Verify(ctx, "", "dummy password for timing"); ok || err != nil {
		t.Errorf("empty hash with the dummy's own password: %v %v", ok, err)
	}
	if h.verifications.Load() != before+1 {
		t.Error("the dummy check was not counted as a verification")
	}

	parts := strings.Split(enc, "$")
	malformed := []string{
		"plain-text",
		"$2b$12$abcdefghijklmnopqrstuu5xZ4r6WmI8aXr0P6m6XxIzF7NRhh3qa", // bcrypt
		"$argon2i$v=19$m=19456,t=2,p=1$" + parts[4] + "$" + parts[5],
		"$argon2id$v=16$m=19456,t=2,p=1$" + parts[4] + "$" + parts[5],
		"$argon2id$v=19$m=0,t=2,p=1$" + parts[4] + "$" + parts[5],
		"$argon2id$v=19$m=19456,t=0,p=1$" + parts[4] + "$" + parts[5],
		"$argon2id$v=19$m=19456,t=2,p=0$" + parts[4] + "$" + parts[5],
		"$argon2id$v=19$m=99999999,t=2,p=1$" + parts[4] + "$" + parts[5], // absurd memory
		"$argon2id$v=19$m=19456,t=99,p=1$" + parts[4] + "$" + parts[5],
		"$argon2id$v=19$m=19456,t=2,p=1$!!!$" + parts[5],
		"$argon2id$v=19$m=19456,t=2,p=1$" + parts[4] + "$",
		"$argon2id$v=19$m=19456,t=2,p=1$" + parts[4] + "$" + strings.Repeat("A", 200),
		"$argon2id$v=19$m=19456,t=2,p=1$" + parts[4],
		"$argon2id$v=19$junk$" + parts[4] + "$" + parts[5],
		"$$$$$",
	}
	for _, m := range malformed {
		ok, err := h.Verify(ctx, m, "Correct-Horse-1!")
		if ok || err == nil {
			t.Errorf("Verify(%q) = %v, %v; want an error", m, ok, err)
		}
	}
}

func TestHasherBoundedConcurrency(t *testing.T) {
	h, err := NewHasher(1, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for i := range 4 {
		wg.Go(func() {
			var err error
			if i%2 == 0 {
				_, err = h.Hash(context.Background(), "Pass-word-1!")
			} else {
				_, err = h.Verify(context.Background(), "", "Pass-word-1!")
			}
			if err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if p := h.peak.Load(); p != 1 {
		t.Errorf("%d hashes ran at once with a limit of 1", p)
	}
	if n := h.inFlight.Load(); n != 0 {
		t.Errorf("%d still in flight", n)
	}

	h2, err := NewHasher(2, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	start := make(chan struct{})
	for range 4 {
		wg.Go(func() {
			<-start
			_, _ = h2.Hash(context.Background(), "Pass-word-1!")
		})
	}
	close(start)
	wg.Wait()
	if p := h2.peak.Load(); p > 2 || p < 1 {
		t.Errorf("peak %d with a limit of 2", p)
	}
}

func TestHasherWaitLimits(t *testing.T) {
	h, err := NewHasher(1, 30*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	h.slots <- struct{}{} // the only slot is taken
	start := time.Now()
	_, err = h.Hash(context.Background(), "Pass-word-1!")
	var he *httpx.Error
	if !errors.As(err, &he) || he.Status != http.StatusServiceUnavailable {
		t.Fatalf("waiting past maxWait: %v, want a 503", err)
	}
	if d := time.Since(start); d < 30*time.Millisecond || d > 5*time.Second {
		t.Errorf("gave up after %v, want about maxWait", d)
	}
	if _, err := h.Verify(context.Background(), "", "x"); !errors.As(err, &he) || he.Status != 503 {
		t.Errorf("Verify while busy: %v", err)
	}
	// A caller that goes away stops waiting with its context's error.
	h2, err := NewHasher(1, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	h2.slots <- struct{}{}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, err := h2.Hash(ctx, "x"); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("cancelled wait: %v", err)
	}
	// Once the slot frees up, work proceeds.
	<-h.slots
	if _, err := h.Hash(context.Background(), "Pass-word-1!"); err != nil {
		t.Errorf("after the slot freed: %v", err)
	}
	if h.inFlight.Load() != 0 {
		t.Errorf("in flight %d after refusals", h.inFlight.Load())
	}
}
