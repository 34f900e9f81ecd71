package gatehouseauth

import (
	"net"
	"sync/atomic"
	"testing"
	"time"
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
