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
// whose Hijack wraps the client connection, and gives an HTTP/2 or HTTP/3
// stream (extended CONNECT) a context it can cancel: the edge ends either
// when the token expires (with the same leeway a request gets) and, with
// a revocation feed, as soon as a loaded list revokes the token.

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

// A tunnel is one upgraded connection or extended-CONNECT stream, ended
// at its token's deadline or on its revocation, whichever comes first.
type tunnel struct {
	id   identity
	shut func() // ends it: closes the client connection, or cancels the stream
	set  *tunnelSet
	once sync.Once
	// mu guards timer: the timer may fire (a deadline already past)
	// before openTunnel has stored it (found in review: a nil timer
	// stopped from its own callback took the edge down).
	mu    sync.Mutex
	timer *time.Timer
}

// openTunnel starts watching a tunnel opened with id.
func (h *Handler) openTunnel(id identity, shut func()) *tunnel {
	t := &tunnel{id: id, shut: shut}
	if h.revocations != nil {
		t.set = &h.revocations.tunnels
		t.set.add(t)
	}
	t.mu.Lock()
	t.timer = time.AfterFunc(id.deadline.Sub(h.now()), func() { t.end("expired") })
	t.mu.Unlock()
	// A list loaded between the request's check and now was applied to
	// the tunnels known then, not to this one.
	if h.revocations != nil {
		if rs := h.revocations.set.Load(); rs != nil && rs.revoked(&t.id) {
			t.end("revoked")
		}
	}
	return t
}

// end ends the tunnel for reason (expired, revoked), counted once.
func (t *tunnel) end(reason string) {
	if t.forget() {
		metrics.tunnelsClosed.WithLabelValues(reason).Inc()
	}
	t.shut()
}

// forget stops the timer and leaves the set; it reports whether this was
// the first call, so that a tunnel is counted and ended once.
func (t *tunnel) forget() (first bool) {
	t.once.Do(func() {
		first = true
		t.mu.Lock()
		timer := t.timer
		t.mu.Unlock()
		if timer != nil {
			timer.Stop()
		}
		if t.set != nil {
			t.set.remove(t)
		}
	})
	return first
}

// tunnelConn is an upgraded client connection as reverse_proxy gets it.
type tunnelConn struct {
	net.Conn
	t *tunnel
}

// Close is the proxy's: the tunnel ended on its own.
func (c *tunnelConn) Close() error {
	c.t.forget()
	return c.Conn.Close()
}

// trackTunnel wraps an upgraded client connection opened with id.
func (h *Handler) trackTunnel(conn net.Conn, id identity) net.Conn {
	c := &tunnelConn{Conn: conn}
	c.t = h.openTunnel(id, func() { _ = conn.Close() })
	return c
}

// isStream reports an extended CONNECT (RFC 8441, RFC 9220: WebSockets over
// HTTP/2 and HTTP/3, which Caddy serves by default on HTTPS sites).
// reverse_proxy copies such a stream without hijacking anything, until the
// request's context ends: the handler ends it through that context.
func isStream(r *http.Request) bool {
	return r.Method == http.MethodConnect && r.ProtoMajor >= 2
}

// tunnelSet is the open tunnels whose tokens a revocation feed governs.
type tunnelSet struct {
	mu   sync.Mutex
	open map[*tunnel]struct{}
}

func (s *tunnelSet) add(c *tunnel) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.open == nil {
		s.open = map[*tunnel]struct{}{}
	}
	s.open[c] = struct{}{}
}

func (s *tunnelSet) remove(c *tunnel) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.open, c)
}

// closeRevoked closes the tunnels whose tokens rs revokes.
func (s *tunnelSet) closeRevoked(rs *revocationSet) {
	s.mu.Lock()
	var doomed []*tunnel
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
