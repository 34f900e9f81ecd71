package docservice

import (
	"bufio"
	"bytes"
	"compress/zlib"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strconv"

	"github.com/pdfcpu/pdfcpu/pkg/pdfcpu/model"
	"github.com/pdfcpu/pdfcpu/pkg/pdfcpu/types"
)

// The files that get only the bounded frame check (too large or too
// costly for a full pdfcpu parse) still deserve a page count and a title.
// Both sit in a handful of small objects: the trailer names the catalog
// and the document information; the catalog names the page tree, whose
// root holds /Count. outlineReader reads just those, through the
// cross-reference sections (classic tables and streams, following /Prev)
// and object streams, with every read and every decoded stream bounded,
// so its memory does not grow with the file. pdfcpu parses the objects'
// text; it has no way to read a file partially itself.
//
// It never holds the cross-reference as a whole: a 12 KB file can list
// millions of objects in one compressed stream (a map of them took 92 MiB).
// Each lookup walks the sections again, newest first, and keeps only the
// entries it was asked for; the walks share one budget of bytes read and
// inflated.
//
// It is best effort: whatever it cannot read stays unknown (null), and a
// file it cannot read is not refused for that.

const (
	// outlineWindow is the most read to parse one object or trailer.
	outlineWindow = 64 << 10
	// outlineMaxDecoded bounds a decoded cross-reference or object stream.
	outlineMaxDecoded = 8 << 20
	// outlineMaxObjectText bounds the text of one object parsed: pdfcpu
	// turns every token into a value of its own, about 9 bytes of heap
	// per byte of text (a /Kids of a million references, 6 MB, took
	// 55 MiB). A flat page tree's /Kids of 1 MiB lists 170 000 pages.
	outlineMaxObjectText = 1 << 20
	// outlineMaxSections bounds the /Prev chain (incremental updates).
	outlineMaxSections = 64
	// outlineMaxXRefBytes bounds one classic cross-reference table
	// (20 bytes an entry: about 400 000 objects).
	outlineMaxXRefBytes = 8 << 20
	// outlineXRefBudget bounds the cross-reference bytes read and
	// inflated over all lookups of one file: four walks of a file with
	// one full-size section fit; a crafted /Prev chain of big sections
	// ends the reading (the outline stays unknown), not the server.
	outlineXRefBudget = 64 << 20
)

type xrefEntry struct {
	inStream bool  // compressed: object index idx of object stream off
	off      int64 // file offset, or the object stream's number
	idx      int
}

type outlineReader struct {
	f         io.ReaderAt
	size      int64
	base      int64 // added to offsets when junk precedes %PDF- (see readAt)
	startxref int64
	trailer   types.Dict // the newest section's
	// found holds the entries looked up so far: a handful, whatever the
	// number of objects the file lists.
	found map[int]xrefEntry
	// want is what the current walk still looks for.
	want map[int]bool
	// budget is what is left of outlineXRefBudget.
	budget int64
}

// readOutline returns the page count and title of the PDF in f, as far as
// it can tell; startxref is the offset the file's last startxref names.
func readOutline(f io.ReaderAt, size, headerOff, startxref int64) (pages *int, title *string) {
	r := &outlineReader{f: f, size: size, base: headerOff, startxref: startxref,
		found: map[int]xrefEntry{}, budget: outlineXRefBudget}
	if err := r.walk(); err != nil || r.trailer == nil {
		return nil, nil
	}
	if cat, err := r.dict(r.trailer["Root"]); err == nil {
		if root, err := r.dict(cat["Pages"]); err == nil {
			if n, ok := root["Count"].(types.Integer); ok && n >= 0 {
				v := int(n)
				pages = &v
			}
		}
	}
	if info, err := r.dict(r.trailer["Info"]); err == nil {
		var s string
		var err error
		switch t := info["Title"].(type) {
		case types.StringLiteral:
			s, err = types.StringLiteralToString(t)
		case types.HexLiteral:
			s, err = types.HexLiteralToString(t)
		default:
			err = errors.New("no title")
		}
		if err == nil && s != "" {
			title = &s
		}
	}
	return pages, title
}

// window reads up to n bytes at off.
func (r *outlineReader) window(off int64, n int) ([]byte, error) {
	if off < 0 || off >= r.size {
		return nil, fmt.Errorf("offset %d outside the file", off)
	}
	buf := make([]byte, min(int64(n), r.size-off))
	m, err := r.f.ReadAt(buf, off)
	if m == len(buf) {
		err = nil
	}
	return buf[:m], err
}

// at finds what starts at a cross-reference offset: offsets count from
// the start of the file, or, in files with junk before %PDF-, often from
// the header. want says what must be there.
func (r *outlineReader) at(off int64, n int, want func([]byte) bool) ([]byte, int64, error) {
	for _, o := range []int64{off, off + r.base} {
		b, err := r.window(o, n)
		if err == nil && want(b) {
			return b, o, nil
		}
		if r.base == 0 {
			break
		}
	}
	return nil, 0, fmt.Errorf("nothing expected at offset %d", off)
}

// walk reads the cross-reference sections from the newest, looking for
// the entries of objects want, until it has them all or the chain ends.
// With nothing wanted it reads the newest section's trailer only.
func (r *outlineReader) walk(want ...int) error {
	r.want = map[int]bool{}
	for _, n := range want {
		if _, ok := r.found[n]; !ok {
			r.want[n] = true
		}
	}
	if len(want) > 0 && len(r.want) == 0 {
		return nil
	}
	off := r.startxref
	seen := map[int64]bool{}
	for range outlineMaxSections {
		if seen[off] {
			return nil // a /Prev loop: what was read is all there is
		}
		seen[off] = true
		// A peek tells a table from a stream; each reader reads on itself.
		b, o, err := r.at(off, 256, func(b []byte) bool {
			t := bytes.TrimLeft(b, " \t\r\n\f\x00")
			return bytes.HasPrefix(t, []byte("xref")) || objHeadRE.Match(t)
		})
		if err != nil {
			return err
		}
		var trailer types.Dict
		if t := bytes.TrimLeft(b, " \t\r\n\f\x00"); bytes.HasPrefix(t, []byte("xref")) {
			trailer, err = r.readTable(o + int64(len(b)-len(t)))
			if err == nil {
				// A hybrid file's compressed objects are listed in the
				// stream its trailer names.
				if x, ok := trailer["XRefStm"].(types.Integer); ok {
					_, _ = r.readStreamSection(int64(x))
				}
			}
		} else {
			trailer, err = r.readStreamSection(off)
		}
		if err != nil {
			if r.trailer != nil {
				return nil // an older section is damaged: keep the newer ones
			}
			return err
		}
		if r.trailer == nil {
			r.trailer = trailer
		}
		if len(r.want) == 0 {
			return nil
		}
		prev, ok := trailer["Prev"].(types.Integer)
		if !ok {
			return nil
		}
		off = int64(prev)
	}
	return nil
}

// add records the entry of object n if the walk wants it and no later
// section (read first) had one.
func (r *outlineReader) add(n int, e xrefEntry) {
	if r.want[n] {
		r.found[n] = e
		delete(r.want, n)
	}
}

// spend takes n bytes from the budget; false once it is spent.
func (r *outlineReader) spend(n int64) bool {
	r.budget -= n
	return r.budget >= 0
}

// readTable reads a classic section ("xref", subsections of 20-byte
// entries, "trailer" and its dictionary) starting at off.
func (r *outlineReader) readTable(off int64) (d types.Dict, err error) {
	if r.budget <= 0 {
		return nil, errors.New("cross-reference budget spent")
	}
	sr := io.NewSectionReader(r.f, off, min(r.size-off, outlineMaxXRefBytes, r.budget))
	defer func() {
		if read, _ := sr.Seek(0, io.SeekCurrent); !r.spend(read) && err == nil {
			err = errors.New("cross-reference budget spent")
		}
	}()
	br := newLineReader(sr)
	if l, err := br.line(); err != nil || string(bytes.TrimSpace(l)) != "xref" {
		return nil, errors.New("no xref keyword")
	}
	for {
		l, err := br.line()
		if err != nil {
			return nil, err
		}
		l = bytes.TrimSpace(l)
		if bytes.HasPrefix(l, []byte("trailer")) {
			// Copied before rest reads on: l points into the reader's buffer.
			rest := string(l[len("trailer"):])
			rest += br.rest(4096)
			o, err := model.ParseObjectContext(context.Background(), &rest, 0, 16)
			if err != nil {
				return nil, err
			}
			d, ok := o.(types.Dict)
			if !ok {
				return nil, errors.New("trailer is not a dictionary")
			}
			return d, nil
		}
		f := bytes.Fields(l)
		if len(f) != 2 {
			return nil, fmt.Errorf("bad subsection header %q", l)
		}
		start, err1 := strconv.Atoi(string(f[0]))
		count, err2 := strconv.Atoi(string(f[1]))
		if err1 != nil || err2 != nil || start < 0 || count < 0 || count > outlineMaxXRefBytes/20 {
			return nil, fmt.Errorf("bad subsection header %q", l)
		}
		for i := range count {
			e, err := br.entry()
			if err != nil {
				return nil, err
			}
			if !r.want[start+i] {
				continue
			}
			f := bytes.Fields(e)
			if len(f) != 3 || len(f[2]) != 1 {
				return nil, fmt.Errorf("bad entry %q", e)
			}
			if f[2][0] != 'n' {
				continue
			}
			o, err := strconv.ParseInt(string(f[0]), 10, 64)
			if err != nil {
				return nil, err
			}
			r.add(start+i, xrefEntry{off: o})
		}
	}
}

// readStreamSection reads a cross-reference stream at off; its dictionary
// is the section's trailer.
//
// Its entries are only decoded when the walk wants some, and then
// streamed, row by row, until the walk has them: the section is never
// held decoded (8 MiB of rows, inflated from a few kilobytes, cost more
// than twice that in pdfcpu's buffers).
func (r *outlineReader) readStreamSection(off int64) (types.Dict, error) {
	d, dataOff, length, err := r.streamHeader(off)
	if err != nil || len(r.want) == 0 {
		return d, err
	}
	w, ok := d["W"].(types.Array)
	if !ok || len(w) != 3 {
		return nil, errors.New("xref stream without /W")
	}
	var widths [3]int
	for i, v := range w {
		n, ok := v.(types.Integer)
		if !ok || n < 0 || n > 8 {
			return nil, errors.New("bad /W")
		}
		widths[i] = int(n)
	}
	size, _ := d["Size"].(types.Integer)
	index := []int{0, int(size)}
	if a, ok := d["Index"].(types.Array); ok {
		index = index[:0]
		for _, v := range a {
			n, ok := v.(types.Integer)
			if !ok || n < 0 {
				return nil, errors.New("bad /Index")
			}
			index = append(index, int(n))
		}
		if len(index)%2 != 0 {
			return nil, errors.New("bad /Index")
		}
	}
	rowLen := widths[0] + widths[1] + widths[2]
	if rowLen == 0 {
		return nil, errors.New("bad /W")
	}
	data, err := r.streamData(d, dataOff, length)
	if err != nil {
		return nil, err
	}
	field := func(b []byte) int64 {
		var buf [8]byte
		copy(buf[8-len(b):], b)
		return int64(binary.BigEndian.Uint64(buf[:]))
	}
	e := make([]byte, rowLen)
	for k := 0; k < len(index) && len(r.want) > 0; k += 2 {
		for i := range index[k+1] {
			if len(r.want) == 0 {
				break
			}
			if _, err := io.ReadFull(data, e); err != nil {
				return d, nil // a short or damaged stream: keep what it lists
			}
			typ := int64(1) // the default when /W's first width is 0
			if widths[0] > 0 {
				typ = field(e[:widths[0]])
			}
			f2, f3 := field(e[widths[0]:widths[0]+widths[1]]), field(e[widths[0]+widths[1]:])
			switch typ {
			case 1:
				r.add(index[k]+i, xrefEntry{off: f2})
			case 2:
				r.add(index[k]+i, xrefEntry{inStream: true, off: f2, idx: int(f3)})
			}
		}
	}
	return d, nil
}

// objectText returns the text of the object whose header ("N G obj")
// is at off, up to its stream or endobj, what follows in the window, and
// that part's file offset.
//
// A window that holds no end is read again, larger (a flat page tree's
// /Kids can run to hundreds of kilobytes), up to outlineMaxObjectText.
func (r *outlineReader) objectText(off int64) (text string, after []byte, afterOff int64, err error) {
	for n := outlineWindow; ; n *= 4 {
		b, o, err := r.at(off, n, func(b []byte) bool { return objHeadRE.Match(b) })
		if err != nil {
			return "", nil, 0, err
		}
		i := bytes.Index(b, []byte("obj")) + 3
		body := b[i:]
		end := -1
		for _, kw := range []string{"endobj", "stream"} {
			if j := bytes.Index(body, []byte(kw)); j >= 0 && (end < 0 || j < end) {
				end = j
			}
		}
		if end >= 0 {
			return string(body[:end]), body[end:], o + int64(i+end), nil
		}
		if len(b) < n || n >= outlineMaxObjectText {
			return "", nil, 0, errors.New("object without an end")
		}
	}
}

// streamHeader reads the dictionary of the stream object at off, and
// where its data starts and how long it is.
func (r *outlineReader) streamHeader(off int64) (d types.Dict, dataOff, length int64, err error) {
	text, after, afterOff, err := r.objectText(off)
	if err != nil {
		return nil, 0, 0, err
	}
	o, err := model.ParseObjectContext(context.Background(), &text, 0, 16)
	if err != nil {
		return nil, 0, 0, err
	}
	d, ok := o.(types.Dict)
	if !ok || !bytes.HasPrefix(after, []byte("stream")) {
		return nil, 0, 0, errors.New("not a stream")
	}
	l, ok := d["Length"].(types.Integer)
	if !ok || l < 0 || int64(l) > outlineMaxDecoded {
		return nil, 0, 0, errors.New("stream without a usable direct /Length")
	}
	// The data starts after "stream" and its end of line.
	start := len("stream")
	if start < len(after) && after[start] == '\r' {
		start++
	}
	if start < len(after) && after[start] == '\n' {
		start++
	}
	return d, afterOff + int64(start), int64(l), nil
}

// streamData streams the decoded data of a stream (FlateDecode, with
// PNG predictors, or no filter) at constant memory, up to
// outlineMaxDecoded bytes and within the budget.
func (r *outlineReader) streamData(d types.Dict, dataOff, length int64) (io.Reader, error) {
	if !r.spend(length) {
		return nil, errors.New("cross-reference budget spent")
	}
	raw := bufio.NewReaderSize(io.NewSectionReader(r.f, dataOff, length), 32<<10)
	var data io.Reader = raw
	switch f := d["Filter"].(type) {
	case nil:
	case types.Name:
		if f != "FlateDecode" {
			return nil, fmt.Errorf("filter %s", f)
		}
		zr, err := zlib.NewReader(raw)
		if err != nil {
			return nil, err
		}
		data = zr
		parms, _ := d["DecodeParms"].(types.Dict)
		intParm := func(name string, def int) int {
			if v, ok := parms[name].(types.Integer); ok {
				return int(v)
			}
			return def
		}
		switch p := intParm("Predictor", 1); {
		case p == 1:
		case p >= 10 && p <= 15:
			columns := intParm("Columns", 1)
			if intParm("Colors", 1) != 1 || intParm("BitsPerComponent", 8) != 8 || columns < 1 || columns > 64 {
				return nil, errors.New("unsupported predictor parameters")
			}
			data = newPNGRows(zr, columns)
		default:
			return nil, fmt.Errorf("predictor %d", p)
		}
	default:
		return nil, errors.New("filter pipeline")
	}
	return &budgetReader{r: io.LimitReader(data, outlineMaxDecoded), or: r}, nil
}

// budgetReader charges what it reads to the outline reader's budget.
type budgetReader struct {
	r  io.Reader
	or *outlineReader
}

func (b *budgetReader) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	if !b.or.spend(int64(n)) {
		return 0, errors.New("cross-reference budget spent")
	}
	return n, err
}

// pngRows undoes PNG prediction (RFC 2083 §6) on rows of one byte per
// pixel, as cross-reference streams use it: each row is a filter type
// byte and columns bytes, predicted from the row above.
type pngRows struct {
	r    io.Reader
	raw  []byte // the row being read: filter type, then columns bytes
	prev []byte // the last decoded row, served from pos
	pos  int
}

func newPNGRows(r io.Reader, columns int) *pngRows {
	return &pngRows{r: r, raw: make([]byte, 1+columns), prev: make([]byte, columns), pos: columns}
}

func (p *pngRows) Read(b []byte) (int, error) {
	n := 0
	for n < len(b) {
		if p.pos == len(p.prev) {
			if _, err := io.ReadFull(p.r, p.raw); err != nil {
				if n > 0 {
					return n, nil
				}
				if err == io.ErrUnexpectedEOF {
					err = io.EOF // a partial last row is dropped
				}
				return 0, err
			}
			if err := unpredictRow(p.raw[0], p.raw[1:], p.prev); err != nil {
				return n, err
			}
			copy(p.prev, p.raw[1:])
			p.pos = 0
		}
		c := copy(b[n:], p.prev[p.pos:])
		n += c
		p.pos += c
	}
	return n, nil
}

// unpredictRow decodes row in place from its PNG filter type and the
// decoded row above it (all zero for the first).
func unpredictRow(filter byte, row, above []byte) error {
	left := func(i int) byte {
		if i == 0 {
			return 0
		}
		return row[i-1]
	}
	switch filter {
	case 0: // None
	case 1: // Sub
		for i := range row {
			row[i] += left(i)
		}
	case 2: // Up
		for i := range row {
			row[i] += above[i]
		}
	case 3: // Average
		for i := range row {
			row[i] += byte((int(left(i)) + int(above[i])) / 2)
		}
	case 4: // Paeth
		for i := range row {
			var upLeft byte
			if i > 0 {
				upLeft = above[i-1]
			}
			row[i] += paeth(left(i), above[i], upLeft)
		}
	default:
		return fmt.Errorf("PNG filter type %d", filter)
	}
	return nil
}

func paeth(a, b, c byte) byte {
	p := int(a) + int(b) - int(c)
	pa, pb, pc := abs(p-int(a)), abs(p-int(b)), abs(p-int(c))
	switch {
	case pa <= pb && pa <= pc:
		return a
	case pb <= pc:
		return b
	}
	return c
}

func abs(x int) int {
	if x < 0 {
		return -x
	}
	return x
}

// dict resolves o (an indirect reference, or a dictionary itself) to a
// dictionary.
func (r *outlineReader) dict(o types.Object) (types.Dict, error) {
	for range 8 { // a reference to a reference, at most a few deep
		switch v := o.(type) {
		case types.Dict:
			return v, nil
		case types.IndirectRef:
			var err error
			if o, err = r.object(v.ObjectNumber.Value()); err != nil {
				return nil, err
			}
		default:
			return nil, errors.New("not a dictionary")
		}
	}
	return nil, errors.New("reference chain too long")
}

// entry looks up object n's cross-reference entry.
func (r *outlineReader) entry(n int) (xrefEntry, bool, error) {
	if e, ok := r.found[n]; ok {
		return e, true, nil
	}
	if err := r.walk(n); err != nil {
		return xrefEntry{}, false, err
	}
	e, ok := r.found[n]
	return e, ok, nil
}

// object reads object n, from the file or from its object stream.
func (r *outlineReader) object(n int) (types.Object, error) {
	e, ok, err := r.entry(n)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, fmt.Errorf("object %d not in the cross-reference", n)
	}
	var text string
	if e.inStream {
		var err error
		if text, err = r.objectInStream(int(e.off), e.idx); err != nil {
			return nil, err
		}
	} else {
		var err error
		if text, _, _, err = r.objectText(e.off); err != nil {
			return nil, err
		}
	}
	return model.ParseObjectContext(context.Background(), &text, 0, 16)
}

// objectInStream returns the text of object idx of object stream n. Only
// the header pairs up to idx+1 are scanned: a crafted header of millions
// of pairs costs a scan, not a slice of millions of fields. The stream is
// decoded as it is read, up to the object (streamData), so only its
// header and the object's text are held. Nothing is cached; the outline
// needs two or three objects.
func (r *outlineReader) objectInStream(n, idx int) (string, error) {
	e, ok, err := r.entry(n)
	if err != nil {
		return "", err
	}
	if !ok || e.inStream {
		return "", errors.New("object stream not found")
	}
	d, dataOff, length, err := r.streamHeader(e.off)
	if err != nil {
		return "", err
	}
	count, ok1 := d["N"].(types.Integer)
	first, ok2 := d["First"].(types.Integer)
	if !ok1 || !ok2 || idx < 0 || idx >= int(count) || first < 0 || int64(first) > outlineMaxDecoded {
		return "", errors.New("bad object stream")
	}
	data, err := r.streamData(d, dataOff, length)
	if err != nil {
		return "", err
	}
	head := make([]byte, first)
	if _, err := io.ReadFull(data, head); err != nil {
		return "", errors.New("bad object stream")
	}
	// offset returns the offset of the i-th object after the header,
	// scanning on from the pair after the last one asked for.
	pos, pair := 0, -1
	offset := func(i int) (int, bool) {
		var v int
		for pair < i {
			var fields [2][]byte
			for k := range fields {
				for pos < len(head) && isPDFSpace(head[pos]) {
					pos++
				}
				startTok := pos
				for pos < len(head) && !isPDFSpace(head[pos]) {
					pos++
				}
				if startTok == pos {
					return 0, false
				}
				fields[k] = head[startTok:pos]
			}
			var err error
			if v, err = strconv.Atoi(string(fields[1])); err != nil || v < 0 || v > outlineMaxDecoded {
				return 0, false
			}
			pair++
		}
		return v, true
	}
	from, ok := offset(idx)
	if !ok {
		return "", errors.New("bad object stream header")
	}
	// The last object runs to the stream's end; the others to the next.
	limit := outlineMaxObjectText + 1
	last := idx+1 == int(count)
	if !last {
		to, ok := offset(idx + 1)
		if !ok || to < from {
			return "", errors.New("bad object stream header")
		}
		limit = to - from
	}
	// The stream is read on to the object, never held whole.
	if _, err := io.CopyN(io.Discard, data, int64(from)); err != nil {
		return "", errors.New("object stream shorter than its header says")
	}
	text, err := io.ReadAll(io.LimitReader(data, int64(limit)))
	if err != nil {
		return "", err
	}
	switch {
	case len(text) > outlineMaxObjectText:
		return "", errors.New("object too long")
	case !last && len(text) < limit:
		return "", errors.New("object stream shorter than its header says")
	}
	return string(text), nil
}

// lineReader reads a classic cross-reference table: lines, fixed 20-byte
// entries, and the rest.
type lineReader struct {
	r       io.Reader
	buf     []byte // unread bytes, a suffix of store
	store   []byte
	scratch []byte
}

func newLineReader(r io.Reader) *lineReader {
	return &lineReader{r: r, scratch: make([]byte, 32<<10)}
}

func (l *lineReader) fill(n int) {
	for len(l.buf) < n {
		m, err := l.r.Read(l.scratch)
		// Move the unread bytes to the front rather than growing store
		// with every read: it stays about one read large.
		l.store = append(l.store[:0], l.buf...)
		l.store = append(l.store, l.scratch[:m]...)
		l.buf = l.store
		if err != nil {
			return
		}
	}
}

// line returns the next non-empty line (ends: \r, \n or both).
func (l *lineReader) line() ([]byte, error) {
	for {
		l.fill(256)
		if len(l.buf) == 0 {
			return nil, io.ErrUnexpectedEOF
		}
		i := bytes.IndexAny(l.buf, "\r\n")
		if i < 0 {
			i = len(l.buf)
		}
		line := l.buf[:i]
		j := i
		for j < len(l.buf) && (l.buf[j] == '\r' || l.buf[j] == '\n') {
			j++
		}
		l.buf = l.buf[j:]
		if len(bytes.TrimSpace(line)) > 0 {
			return line, nil
		}
	}
}

// entry returns the next entry: "nnnnnnnnnn ggggg n", 18 bytes; the
// two bytes of line end that make it 20 are skipped, whatever they are.
func (l *lineReader) entry() ([]byte, error) {
	l.fill(20)
	for len(l.buf) > 0 && (l.buf[0] == '\r' || l.buf[0] == '\n' || l.buf[0] == ' ') {
		l.buf = l.buf[1:]
		l.fill(20)
	}
	if len(l.buf) < 18 {
		return nil, io.ErrUnexpectedEOF
	}
	e := l.buf[:18]
	l.buf = l.buf[18:]
	return e, nil
}

// rest returns up to n more bytes as text.
func (l *lineReader) rest(n int) string {
	l.fill(n)
	return string(l.buf[:min(n, len(l.buf))])
}
