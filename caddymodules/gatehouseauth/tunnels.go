package gatehouseauth

import (
	"bufio"
	"net"
	"net/http"
	"sync"
	"time"

	"golang.org/x/net/http/httpguts"
)

// An upgraded request (WebSocket, or any Connection: Upgrade) becomes a
// tunnel that reverse_proxy copies both ways for as long as either side
// keeps it open. The token was checked once, when the tunnel opened; the
// tunnel must not outlive it (found in review: a tunnel opened with a
// 3-second token still carried requests 36 s later, and a revoked session
// kept its tunnels). So the handler hands reverse_proxy a ResponseWriter
// whose Hijack wraps the client connection: the edge closes it when the
// token expires (with the same leeway a request gets) and, with a
// revocation feed, as soon as a loaded list revokes the token.

// isUpgrade reports an HTTP/1.1 upgrade request, the only kind
// reverse_proxy turns into a tunnel by hijacking the client connection.
func isUpgrade(r *http.Request) bool {
	return r.Header.Get("Upgrade") != "" && httpguts.HeaderValuesContainsToken(r.Header["Connection"], "Upgrade")
}

// tunnelWriter is the ResponseWriter an upgrade request goes on with.
type tunnelWriter struct {
	http.ResponseWriter
	track func(net.Conn) net.Conn
}

// Hijack hands out the client connection wrapped so that the edge can
// close it. The buffered reader still reads the raw connection; closing
// the wrapper closes that too, which ends both directions of the copy.
func (w *tunnelWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	c, brw, err := http.NewResponseController(w.ResponseWriter).Hijack()
	if err != nil {
		return nil, nil, err
	}
	return w.track(c), brw, nil
}

// Unwrap lets http.ResponseController reach Flush and deadlines.
func (w *tunnelWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// tunnelConn is a tunnel's client connection, closed at the token's
// deadline or on its revocation, whichever comes first.
type tunnelConn struct {
	net.Conn
	id   identity
	set  *tunnelSet // nil without a revocation feed
	once sync.Once
	// mu guards timer: the timer may fire (a deadline already past)
	// before trackTunnel has stored it (found in review: a nil timer
	// stopped from its own callback took the edge down).
	mu    sync.Mutex
	timer *time.Timer
}

// Close is the proxy's: the tunnel ended on its own.
func (c *tunnelConn) Close() error {
	c.forget()
	return c.Conn.Close()
}

// end closes the tunnel for reason (expired, revoked), counted once.
func (c *tunnelConn) end(reason string) {
	if c.forget() {
		metrics.tunnelsClosed.WithLabelValues(reason).Inc()
	}
	_ = c.Conn.Close()
}

// forget stops the timer and leaves the set; it reports whether this was
// the first call, so that a tunnel is counted and closed once.
func (c *tunnelConn) forget() (first bool) {
	c.once.Do(func() {
		first = true
		c.mu.Lock()
		t := c.timer
		c.mu.Unlock()
		if t != nil {
			t.Stop()
		}
		if c.set != nil {
			c.set.remove(c)
		}
	})
	return first
}

// trackTunnel wraps an upgraded client connection opened with id.
func (h *Handler) trackTunnel(conn net.Conn, id identity) net.Conn {
	c := &tunnelConn{Conn: conn, id: id}
	if h.revocations != nil {
		c.set = &h.revocations.tunnels
		c.set.add(c)
	}
	c.mu.Lock()
	c.timer = time.AfterFunc(id.deadline.Sub(h.now()), func() { c.end("expired") })
	c.mu.Unlock()
	// A list loaded between the request's check and now was applied to
	// the tunnels known then, not to this one.
	if h.revocations != nil {
		if rs := h.revocations.set.Load(); rs != nil && rs.revoked(&c.id) {
			c.end("revoked")
		}
	}
	return c
}

// tunnelSet is the open tunnels whose tokens a revocation feed governs.
type tunnelSet struct {
	mu   sync.Mutex
	open map[*tunnelConn]struct{}
}

func (s *tunnelSet) add(c *tunnelConn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.open == nil {
		s.open = map[*tunnelConn]struct{}{}
	}
	s.open[c] = struct{}{}
}

func (s *tunnelSet) remove(c *tunnelConn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.open, c)
}

// closeRevoked closes the tunnels whose tokens rs revokes.
func (s *tunnelSet) closeRevoked(rs *revocationSet) {
	s.mu.Lock()
	var doomed []*tunnelConn
	for c := range s.open {
		if rs.revoked(&c.id) {
			doomed = append(doomed, c)
		}
	}
	s.mu.Unlock()
	for _, c := range doomed { // end takes the lock
		c.end("revoked")
	}
}
