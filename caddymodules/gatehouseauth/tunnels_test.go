package gatehouseauth

import (
	"net"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/go-jose/go-jose/v4/jwt"
)

// A tunnel whose token's deadline is already past (or passes while the
// timer is being set up) is closed at once, without touching a timer not
// yet stored. Found in review: the timer's callback stopped the nil timer
// and the panic took the whole edge down; run with -race.
func TestTunnelPastDeadlineClosesAtOnce(t *testing.T) {
	var clock atomic.Int64
	h := testHandler(t, &clock, nil)
	for range 200 {
		client, server := net.Pipe()
		id := identity{userID: "u", sessionID: "s", deadline: h.now().Add(-time.Second)}
		c := h.trackTunnel(server, id)
		_ = client.SetReadDeadline(time.Now().Add(2 * time.Second))
		if _, err := client.Read(make([]byte, 1)); err == nil {
			t.Fatal("read from a tunnel past its deadline succeeded")
		} else if ne, ok := err.(net.Error); ok && ne.Timeout() {
			t.Fatal("a tunnel past its deadline was not closed")
		}
		_ = c.Close() // the proxy's own close afterwards is harmless
		client.Close()
	}
}

// An HTTP/2 or HTTP/3 WebSocket (extended CONNECT) is not hijacked:
// reverse_proxy copies the stream until the request's context ends. The
// handler ends that context when the token's deadline passes (found in
// review: such a stream would have outlived its token and its revocation).
// A plain request's context carries no such end.
func TestStreamContextEndsWithItsToken(t *testing.T) {
	var clock atomic.Int64
	now := time.Now()
	clock.Store(now.UnixNano())
	h := testHandler(t, &clock, nil)
	claims := validClaims(now)
	claims.Expiry = jwt.NewNumericDate(now.Add(-29 * time.Second)) // within the 30 s leeway: 1 s left
	tok := sign(t, testKey(t, 0), claims)

	stream := httptest.NewRequest(http.MethodConnect, "http://edge/api/chat", nil)
	stream.ProtoMajor, stream.ProtoMinor, stream.Proto = 3, 0, "HTTP/3.0"
	stream.Header.Set("Authorization", "Bearer "+tok)
	start := time.Now()
	var ended time.Duration
	err := h.ServeHTTP(httptest.NewRecorder(), stream, caddyhttp.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
		select {
		case <-r.Context().Done():
			ended = time.Since(start)
		case <-time.After(5 * time.Second):
		}
		return nil
	}))
	if err != nil {
		t.Fatal(err)
	}
	if ended == 0 || ended > 3*time.Second {
		t.Fatalf("stream's context ended after %v, want about 1 s (0: not within 5 s)", ended)
	}

	plain := httptest.NewRequest(http.MethodGet, "http://edge/api/chat", nil)
	plain.Header.Set("Authorization", "Bearer "+tok)
	err = h.ServeHTTP(httptest.NewRecorder(), plain, caddyhttp.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
		if r.Context() != plain.Context() {
			t.Error("a plain request's context was replaced")
		}
		return nil
	}))
	if err != nil {
		t.Fatal(err)
	}
}
