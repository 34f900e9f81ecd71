package formdata

import (
	"bytes"
	"errors"
	"io"
)

// errLineTooLong is readLine's answer for a line longer than the buffer.
var errLineTooLong = errors.New("line too long")

// buffer is the reader's read buffer: what bufio.Reader would offer here
// (a line, the unread bytes, one more read), plus the two things that let
// a part's body go from the connection straight into the caller's slice
// without a copy: readInto and unread.
type buffer struct {
	src  io.Reader
	buf  []byte
	r, w int   // unread data is buf[r:w]
	err  error // the first error of src; no Read follows it
}

func (b *buffer) unreadBytes() []byte { return b.buf[b.r:b.w] }

func (b *buffer) discard(n int) { b.r += n }

// read calls src.Read once it has something to say: bytes, or an error,
// which sticks (an io.Reader need not answer sensibly after one).
func (b *buffer) read(p []byte) int {
	if b.err != nil || len(p) == 0 {
		return 0
	}
	for range 100 {
		n, err := b.src.Read(p)
		if err != nil {
			b.err = err
		}
		if n > 0 || err != nil {
			return n
		}
	}
	b.err = io.ErrNoProgress
	return 0
}

// fill reads once more into the buffer, at most limit bytes, after moving
// the unread data to its front. It reports whether bytes came; when none
// did, b.err says why.
func (b *buffer) fill(limit int) bool {
	if b.r > 0 {
		b.w = copy(b.buf, b.buf[b.r:b.w])
		b.r = 0
	}
	if b.w == len(b.buf) {
		return false
	}
	n := b.read(b.buf[b.w:min(len(b.buf), b.w+limit)])
	b.w += n
	return n > 0
}

// readLine returns the next line, "\n" included, valid until the next
// call. At the end of the input it returns what is left and b.err.
func (b *buffer) readLine() ([]byte, error) {
	for seen := 0; ; {
		if i := bytes.IndexByte(b.buf[b.r+seen:b.w], '\n'); i >= 0 {
			line := b.buf[b.r : b.r+seen+i+1]
			b.r += seen + i + 1
			return line, nil
		}
		seen = b.w - b.r
		if b.w-b.r == len(b.buf) {
			return nil, errLineTooLong
		}
		if !b.fill(len(b.buf)) {
			line := b.buf[b.r:b.w]
			b.r = b.w
			return line, b.err
		}
	}
}

// readInto moves the unread bytes to the front of p and reads once more
// into the rest of p (at most what the buffer could take back), leaving
// the buffer empty. It returns how much of p is filled.
func (b *buffer) readInto(p []byte) int {
	t := copy(p, b.buf[b.r:b.w])
	b.r, b.w = 0, 0
	return t + b.read(p[t:min(len(p), len(b.buf))])
}

// unread puts back p, which readInto left in the caller's slice, at the
// front of the (empty) buffer.
func (b *buffer) unread(p []byte) {
	b.r, b.w = 0, copy(b.buf, p)
}
