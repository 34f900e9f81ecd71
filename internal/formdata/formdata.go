// Package formdata reads a multipart/form-data request body part by part,
// as mime/multipart's Reader does, through a buffer of the caller's size.
//
// mime/multipart reads through a fixed 4 KiB buffer of its own, whatever
// reader it is given, so a large file part costs a boundary scan, a buffer
// refill and a copy per 4 KiB: for a 1 GiB upload that was a quarter of
// docservice's CPU. This reader reads up to a buffer (1 MiB in docservice)
// at once, and a large Read of a part goes from the source straight into
// the caller's slice and is scanned for the delimiter there, so a file
// part is not copied once more in memory. Otherwise it accepts what
// mime/multipart accepts: the same delimiter rules (transport padding,
// "\n" instead of "\r\n" line ends when the first delimiter line uses it,
// a preamble, an epilogue, a body that ends after the final delimiter
// without a line end), part headers parsed by net/textproto,
// quoted-printable parts decoded. Its tests compare it
// with mime/multipart on many bodies.
//
// It owns parsing only: it never buffers more than its buffer, and limits
// on the body's size are the caller's (http.MaxBytesReader).
package formdata

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/quotedprintable"
	"net/textproto"
	"path/filepath"
	"strings"
)

// MaxHeaderBytes bounds one part's header block. mime/multipart allows
// 10 MiB; a form field's headers are a few hundred bytes.
const MaxHeaderBytes = 64 << 10

// ErrNotMultipart is returned by Boundary for a body that is not
// multipart/form-data with a boundary.
var ErrNotMultipart = errors.New("formdata: not a multipart/form-data body with a boundary")

// Boundary returns the boundary of a multipart/form-data Content-Type,
// accepting exactly what http.Request.MultipartReader accepts.
func Boundary(contentType string) (string, error) {
	if contentType == "" {
		return "", ErrNotMultipart
	}
	d, params, err := mime.ParseMediaType(contentType)
	if err != nil || d != "multipart/form-data" {
		return "", ErrNotMultipart
	}
	b, ok := params["boundary"]
	if !ok || b == "" {
		return "", ErrNotMultipart
	}
	return b, nil
}

// Reader is a multipart body being read part by part.
type Reader struct {
	b buffer
	// nl is "\r\n", or "\n" once the first delimiter line ends so.
	nl []byte
	// delim is nl + "--" + boundary: what ends a part's body.
	delim []byte
	// dash is "--" + boundary: a delimiter line without the line end
	// before it (the first one, and a part that starts with it).
	dash      []byte
	cur       *Part
	partsRead int
	done      bool
}

// NewReader reads the multipart body r with the given boundary through a
// buffer of bufSize bytes (at least 4 KiB and twice the delimiter's
// length, whatever is asked).
func NewReader(r io.Reader, boundary string, bufSize int) *Reader {
	return NewReaderBuffer(r, boundary, make([]byte, max(bufSize, 0)))
}

// NewReaderBuffer is NewReader reading through buf, which the caller may
// reuse once it is done with the Reader and its parts. A buf shorter than
// NewReader's minimum is replaced.
func NewReaderBuffer(r io.Reader, boundary string, buf []byte) *Reader {
	delim := []byte("\r\n--" + boundary)
	if least := max(4096, 2*len(delim)+64); len(buf) < least {
		buf = make([]byte, least)
	}
	return &Reader{
		b:     buffer{src: r, buf: buf},
		nl:    delim[:2],
		delim: delim,
		dash:  delim[2:],
	}
}

// NextPart skips the rest of the current part and returns the next one,
// or io.EOF after the final delimiter. Unlike mime/multipart's, it never
// returns io.EOF (or an error wrapping it) for a body cut short: a caller
// that stops at io.EOF has read every part.
func (r *Reader) NextPart() (*Part, error) {
	if r.done {
		return nil, io.EOF
	}
	if r.cur != nil {
		if _, err := io.Copy(io.Discard, r.cur.r); err != nil {
			return nil, fmt.Errorf("formdata: skip part: %w", err)
		}
		r.cur = nil
	}
	if len(r.dash) == 2 {
		return nil, errors.New("formdata: empty boundary")
	}
	expectPart := false
	for {
		line, err := r.b.readLine()
		if errors.Is(err, io.EOF) && r.isFinal(line) {
			// "--boundary--" at the very end, without a line end.
			r.done = true
			return nil, io.EOF
		}
		if err != nil {
			return nil, fmt.Errorf("formdata: next part: %w", unexpected(err))
		}
		if r.isDelimiter(line) {
			r.partsRead++
			p, err := r.newPart()
			if err != nil {
				return nil, err
			}
			r.cur = p
			return p, nil
		}
		if r.isFinal(line) {
			r.done = true
			return nil, io.EOF
		}
		switch {
		case expectPart:
			return nil, fmt.Errorf("formdata: expected a part, got line %q", line)
		case r.partsRead == 0:
			continue // preamble
		case bytes.Equal(line, r.nl):
			// The line end between a part's body and the delimiter
			// line; the delimiter line comes next.
			expectPart = true
			continue
		}
		return nil, fmt.Errorf("formdata: unexpected line %q", line)
	}
}

// isDelimiter reports whether line is "--boundary", transport padding
// (spaces and tabs) and the line end. The first delimiter line decides
// whether line ends are "\r\n" or "\n".
func (r *Reader) isDelimiter(line []byte) bool {
	rest, ok := bytes.CutPrefix(line, r.dash)
	if !ok {
		return false
	}
	rest = bytes.TrimLeft(rest, " \t")
	if r.partsRead == 0 && len(rest) == 1 && rest[0] == '\n' {
		r.nl = r.nl[1:]
		r.delim = r.delim[1:]
	}
	return bytes.Equal(rest, r.nl)
}

// isFinal reports whether line is "--boundary--", transport padding and
// a line end or nothing.
func (r *Reader) isFinal(line []byte) bool {
	rest, ok := bytes.CutPrefix(line, r.dash)
	if !ok {
		return false
	}
	rest, ok = bytes.CutPrefix(rest, []byte("--"))
	if !ok {
		return false
	}
	rest = bytes.TrimLeft(rest, " \t")
	return len(rest) == 0 || bytes.Equal(rest, r.nl)
}

// newPart reads a part's header block (up to its empty line) and parses
// it with net/textproto.
func (r *Reader) newPart() (*Part, error) {
	var block []byte
	for {
		line, err := r.b.readLine()
		if err != nil {
			return nil, fmt.Errorf("formdata: read part header: %w", unexpected(err))
		}
		if len(block)+len(line) > MaxHeaderBytes {
			return nil, errors.New("formdata: part header too large")
		}
		block = append(block, line...)
		if bytes.Equal(line, []byte("\r\n")) || bytes.Equal(line, []byte("\n")) {
			break
		}
	}
	h, err := textproto.NewReader(bufio.NewReader(bytes.NewReader(block))).ReadMIMEHeader()
	if err != nil {
		return nil, fmt.Errorf("formdata: part header: %w", err)
	}
	p := &Part{Header: h, mr: r}
	p.r = p.raw()
	const cte = "Content-Transfer-Encoding"
	if strings.EqualFold(h.Get(cte), "quoted-printable") {
		h.Del(cte)
		p.r = quotedprintable.NewReader(p.r)
	}
	return p, nil
}

// unexpected turns the end of input before the final delimiter into
// io.ErrUnexpectedEOF: io.EOF, even wrapped, would read as a complete body.
func unexpected(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}

// Part is one part of the body. Its Read returns the part's body, then
// io.EOF at its delimiter.
type Part struct {
	Header textproto.MIMEHeader

	mr *Reader
	r  io.Reader
	// avail is how many of the buffer's unread bytes are known to be body.
	avail int
	// started is whether any body has been returned (a part may start
	// with "--boundary" directly, without a line end before it).
	started bool
	// err is returned once avail runs out: io.EOF at the delimiter, or
	// the read error that came before one.
	err error
	// readErr is the error that ended the input, once seen.
	readErr error

	disposition       string
	dispositionParams map[string]string
}

// FormName is the name parameter of a form-data Content-Disposition, or "".
func (p *Part) FormName() string {
	p.parseDisposition()
	if p.disposition != "form-data" {
		return ""
	}
	return p.dispositionParams["name"]
}

// FileName is the last element of the filename parameter of the
// Content-Disposition, as mime/multipart's Part.FileName returns it.
func (p *Part) FileName() string {
	p.parseDisposition()
	f := p.dispositionParams["filename"]
	if f == "" {
		return ""
	}
	return filepath.Base(f)
}

func (p *Part) parseDisposition() {
	if p.dispositionParams != nil {
		return
	}
	d, params, err := mime.ParseMediaType(p.Header.Get("Content-Disposition"))
	if err != nil {
		params = map[string]string{}
	}
	p.disposition, p.dispositionParams = d, params
}

// Read reads the part's body.
func (p *Part) Read(b []byte) (int, error) { return p.r.Read(b) }

type rawPart struct{ p *Part }

func (p *Part) raw() io.Reader { return rawPart{p} }

// directMin is the smallest read that goes straight into the caller's
// slice; smaller ones are served from the buffer.
const directMin = 4096

func (rp rawPart) Read(dst []byte) (int, error) {
	p := rp.p
	b := &p.mr.b
	if len(dst) == 0 {
		return 0, nil
	}
	for p.avail == 0 && p.err == nil {
		buffered := b.unreadBytes()
		p.avail, p.err = p.scan(buffered, p.readErr)
		if p.avail > 0 || p.err != nil {
			break
		}
		// Undecided: the buffer is empty or holds only what may be the
		// start of a delimiter.
		if b.err == nil && len(dst) >= max(directMin, 2*len(buffered)) {
			// A large read: into dst directly, then scan it there, and
			// put back what is not (yet) known to be body.
			data := dst[:b.readInto(dst)]
			n, err := p.scan(data, nil)
			b.unread(data[n:])
			p.err = err
			if n == 0 {
				// Still undecided, or a delimiter right away. If the
				// read failed, the buffered path below finds out.
				continue
			}
			p.started = true
			return n, p.err
		}
		// A small read (a form field): fill the buffer only as far as
		// this read needs, so the next large read can go direct.
		if !b.fill(max(len(dst)+len(p.mr.delim)+2, directMin)) {
			p.readErr = unexpected(b.err)
			if p.readErr == nil {
				p.readErr = errLineTooLong // cannot happen: the buffer holds a delimiter twice
			}
		}
	}
	if p.avail == 0 {
		return 0, p.err
	}
	n := copy(dst, b.unreadBytes()[:p.avail])
	b.discard(n)
	p.avail -= n
	p.started = true
	if p.avail == 0 && p.err != nil {
		return n, p.err
	}
	return n, nil
}

// scan finds how much of buf, the start of the part's unread body, is
// certainly body, and what follows it: io.EOF when a delimiter does,
// readErr when buf is all there will be. (0, nil) means undecided: more
// input is needed. readErr is the error that ended the input, if any.
func (p *Part) scan(buf []byte, readErr error) (int, error) {
	mr := p.mr
	if !p.started {
		// A part may end before any body with "--boundary" directly.
		if bytes.HasPrefix(buf, mr.dash) {
			switch endsDelimiter(buf[len(mr.dash):], readErr) {
			case isEnd:
				return 0, io.EOF
			case undecided:
				return 0, nil
			}
		} else if bytes.HasPrefix(mr.dash, buf) {
			return 0, readErr
		}
	}
	for off := 0; ; {
		i := bytes.Index(buf[off:], mr.delim)
		if i < 0 {
			break
		}
		i += off
		switch endsDelimiter(buf[i+len(mr.delim):], readErr) {
		case isEnd:
			return i, io.EOF
		case undecided:
			return i, nil
		}
		// "\r\n--boundary" followed by something else is body.
		off = i + len(mr.delim)
	}
	// The buffer may end in the start of a delimiter: keep that back
	// (and never return it, if no more input comes).
	switch keep := partialSuffix(buf, mr.delim); keep {
	case len(buf):
		return 0, readErr
	case 0:
		return len(buf), readErr
	default:
		return len(buf) - keep, nil
	}
}

const (
	notEnd = iota
	isEnd
	undecided
)

// endsDelimiter tells whether what follows "\r\n--boundary" makes it a
// delimiter: padding, a line end or "--".
func endsDelimiter(after []byte, readErr error) int {
	if len(after) == 0 {
		if readErr != nil {
			return isEnd
		}
		return undecided
	}
	switch after[0] {
	case ' ', '\t', '\r', '\n':
		return isEnd
	case '-':
		if len(after) == 1 {
			if readErr != nil {
				return notEnd
			}
			return undecided
		}
		if after[1] == '-' {
			return isEnd
		}
	}
	return notEnd
}

// partialSuffix is the length of the longest end of buf that is a proper
// start of delim.
func partialSuffix(buf, delim []byte) int {
	start := max(0, len(buf)-len(delim)+1)
	for i := bytes.IndexByte(buf[start:], delim[0]); i >= 0; {
		i += start
		if bytes.HasPrefix(delim, buf[i:]) {
			return len(buf) - i
		}
		start = i + 1
		i = bytes.IndexByte(buf[start:], delim[0])
	}
	return 0
}
