package testdb

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"net"
	"sync/atomic"

	"github.com/jackc/pgx/v5/pgxpool"
)

// CutAfterCommit opens a pool on url whose database "goes away" at a
// chosen moment, for tests of what a service answers when the connection
// breaks around a COMMIT. Once arm has been called, the first write that
// holds a COMMIT still reaches the server; with loseAnswer the connection
// then closes before the answer is read (the outcome unknown to the
// client), without it the answer comes back. Every later write and dial
// fails. fired, which arm returns, reports whether the cut has happened, so
// that a test can tell it tested what it meant to. The caller closes the
// pool.
func CutAfterCommit(url string, loseAnswer bool) (pool *pgxpool.Pool, arm func() (fired func() bool), err error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, nil, err
	}
	var armed, dead atomic.Bool
	cfg.ConnConfig.DialFunc = func(ctx context.Context, network, addr string) (net.Conn, error) {
		if dead.Load() {
			return nil, errors.New("database gone")
		}
		c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return &cutConn{Conn: c, loseAnswer: loseAnswer, armed: &armed, dead: &dead}, nil
	}
	pool, err = pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		return nil, nil, err
	}
	return pool, func() func() bool { armed.Store(true); return dead.Load }, nil
}

type cutConn struct {
	net.Conn
	loseAnswer  bool
	armed, dead *atomic.Bool
}

func (c *cutConn) Write(b []byte) (int, error) {
	if c.dead.Load() {
		c.Conn.Close() // so that reads end too, and the pool closes at once
		return 0, errors.New("database gone")
	}
	if c.armed.Load() && holdsCommit(b) {
		n, err := c.Conn.Write(b)
		c.dead.Store(true)
		if c.loseAnswer {
			c.Conn.Close()
		}
		return n, err
	}
	return c.Conn.Write(b)
}

// holdsCommit reports whether b, bytes pgx writes to the server, holds a
// simple-protocol query ('Q' message) that is COMMIT, which is how pgx
// ends a transaction. "commit" in another statement or in a parameter (a
// file name) is not one.
func holdsCommit(b []byte) bool {
	for len(b) >= 5 {
		n := int(binary.BigEndian.Uint32(b[1:5])) // counts itself, not the type byte
		if n < 4 || len(b) < 1+n {
			return false
		}
		if b[0] == 'Q' && bytes.EqualFold(bytes.TrimRight(b[5:1+n], "\x00; "), []byte("commit")) {
			return true
		}
		b = b[1+n:]
	}
	return false
}
