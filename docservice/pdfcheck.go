package docservice

import (
	"bufio"
	"bytes"
	"compress/zlib"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"

	"github.com/pdfcpu/pdfcpu/pkg/api"
	"github.com/pdfcpu/pdfcpu/pkg/filter"
	"github.com/pdfcpu/pdfcpu/pkg/pdfcpu"
	"github.com/pdfcpu/pdfcpu/pkg/pdfcpu/model"
	"github.com/pdfcpu/pdfcpu/pkg/pdfcpu/types"
)

// headerWindow is how far into a file "%PDF-" may start. Readers such as
// Acrobat accept up to 1024 bytes of junk before it (a BOM, a mail
// gateway's prefix), and so do we.
const headerWindow = 1024

const (
	// fullCheckMaxBytes is the largest file parsed completely with
	// pdfcpu. pdfcpu loads every stream of a file into memory, so a full
	// parse costs at least the file's size in RAM; above this size
	// docservice checks the structure that frames the file (header,
	// trailer, cross-reference section) instead, keeping memory flat
	// whatever the upload size.
	fullCheckMaxBytes = 16 << 20
	// fullCheckBudget is the most a full parse may cost by
	// fullCheckCost; costlier files, even small ones, get the frame
	// check, without page count and title. It is what keeps docservice
	// under its 64 MiB RSS target together with one parse at a time
	// (parseSlots) and the runtime's memory limit (cmd/docservice).
	// Measured with bench-docservice's document rows: a 15 MiB file of
	// 350 image pages (1 000 objects, cost 19 MiB) is parsed; one of
	// 2 800 text pages (8 300 objects, cost 47 MiB, 32 MiB measured) is
	// not: parsed, it took docservice to 60–66 MiB even with the memory
	// limit (16 MiB files), 74–87 MiB without. Text-heavy files up to
	// about 7 MiB are still parsed.
	fullCheckBudget = 24 << 20
	// objectCost is what pdfcpu keeps per object besides the stream
	// bytes: a copy of the bytes it read to find the object's end, which
	// its parsed names point into, the dictionary and the table entry.
	// Measured (live heap after ReadWithContext): 2.2 KiB per object for
	// text pages, 4.5 KiB for image pages; rounded to 4 KiB.
	objectCost = 4 << 10
	// fullCheckMaxDecode bounds each object stream the full parse
	// inflates (pdfcpu's default is 512 MiB). Page content is left
	// alone; XMP metadata has its own bound (guardXMP).
	fullCheckMaxDecode = 4 << 20
	// xmpMaxDecode bounds the XMP metadata read for a title (see
	// guardXMP); real documents' XMP packets are a few kilobytes.
	xmpMaxDecode = 1 << 20
)

// fullCheckCost estimates the memory a full pdfcpu parse of a file of
// size bytes with the given number of objects holds at its peak.
func fullCheckCost(size int64, objects int) int64 {
	return size + int64(objects)*objectCost
}

// slots is a counting semaphore. parseSlots bounds the full parses
// running at once: each holds its file's streams and objects in memory
// (up to fullCheckBudget), so uploads that arrive together take turns
// rather than add up. chunkSlots bounds the upload chunks in use
// (pipeline.go).
type slots chan struct{}

// parseSlots is kept as the name the parse code and its tests use.
type parseSlots = slots

func newParseSlots(n int) parseSlots { return make(slots, n) }

// tryAcquire takes a slot if one is free, without waiting.
func (s slots) tryAcquire() bool {
	select {
	case s <- struct{}{}:
		return true
	default:
		return false
	}
}

// acquire waits for a slot, or gives up when ctx ends (the client went
// away, the server shuts down); release returns the slot.
func (s slots) acquire(ctx context.Context) error {
	select {
	case s <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (s slots) release() { <-s }

func init() {
	// pdfcpu would otherwise create a configuration directory in $HOME on
	// first use; docservice needs none of it.
	api.DisableConfigDir()
}

// pdfInfo is what the structural check learns about a PDF.
type pdfInfo struct {
	Pages     *int    // nil when unknown (encrypted, or a large file)
	Title     *string // from the document information or XMP metadata
	Encrypted bool    // needs a password to read: stored as an opaque file
}

// errNotPDF is a file that is not a PDF, or one too damaged to open:
// reason is for the user, cause (the parser's words) for the log.
type errNotPDF struct {
	reason string
	cause  error
}

func (e *errNotPDF) Error() string { return e.reason }
func (e *errNotPDF) Unwrap() error { return e.cause }

func notPDF(format string, args ...any) error {
	return &errNotPDF{reason: fmt.Sprintf(format, args...)}
}

// pdfHeaderOffset returns where "%PDF-" starts in head (the first bytes of
// a file), or -1.
func pdfHeaderOffset(head []byte) int {
	if len(head) > headerWindow+5 {
		head = head[:headerWindow+5]
	}
	return bytes.Index(head, []byte("%PDF-"))
}

// checkPDF checks the structure of the PDF in f (size bytes, header found
// at headerOff) and reads its page count and title. Encrypted files are
// accepted as opaque: their cross-reference structure was read, their
// content cannot be without the password. Full parses take a slot of
// slots first.
func checkPDF(ctx context.Context, f io.ReadSeeker, size int64, headerOff int, slots parseSlots) (pdfInfo, error) {
	info, err := inspectPDF(ctx, f, size, headerOff, slots)
	return info.tidy(), err
}

// maxTitleBytes bounds a stored title (PATCH takes no longer one either).
const maxTitleBytes = 500

// tidy makes what a file claims about itself fit to store and show: the
// title and page count come from the file, so an upload chooses them. A
// title loses control characters (PostgreSQL refuses NUL in text) and
// invalid UTF-8 and is cut to maxTitleBytes; a page count outside 1 to
// MaxInt32 (the column's int4) is a lie, so it is unknown instead.
func (i pdfInfo) tidy() pdfInfo {
	if i.Title != nil {
		t := strings.TrimSpace(truncateUTF8(cleanTitle(*i.Title), maxTitleBytes))
		i.Title = nil
		if t != "" {
			i.Title = &t
		}
	}
	if i.Pages != nil && (*i.Pages < 1 || *i.Pages > math.MaxInt32) {
		i.Pages = nil
	}
	return i
}

// cleanTitle drops control characters (tabs and line ends become spaces)
// and invalid UTF-8 from a title, whether a file or a PATCH gave it.
func cleanTitle(s string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r == '\t' || r == '\n' || r == '\r':
			return ' '
		case r < 0x20 || r == 0x7f:
			return -1
		}
		return r
	}, strings.ToValidUTF8(s, ""))
}

// inspectPDF is checkPDF before tidy.
func inspectPDF(ctx context.Context, f io.ReadSeeker, size int64, headerOff int, slots parseSlots) (pdfInfo, error) {
	info, facts, err := checkPDFFrame(f, size, headerOff)
	if size > fullCheckMaxBytes {
		return withOutline(ctx, f, size, headerOff, info, facts, err, slots)
	}
	// The trailer's /Size (how many objects the file has) tells what a
	// full parse would cost before it starts, unless the file understates
	// it: a crafted 8 MiB file of 200 000 tiny objects declaring 10 took
	// docservice past 70 MiB. So the objects the file really holds are
	// counted too, and the larger count decides.
	counted, dense, cerr := countObjects(f, size)
	if cerr != nil {
		return pdfInfo{}, cerr
	}
	if fullCheckCost(size, max(facts.objects, counted))+dense > fullCheckBudget {
		// Too costly to parse: the frame check's verdict stands. That
		// refuses a damaged file here, one pdfcpu might have repaired;
		// repairing it would cost more memory than docservice allows.
		return withOutline(ctx, f, size, headerOff, info, facts, err, slots)
	}
	// A small, cheap file whose frame does not read (a wrong startxref
	// offset, say) may be one pdfcpu repairs: it gets the full parse.
	if err := slots.acquire(ctx); err != nil {
		return pdfInfo{}, err
	}
	defer slots.release()
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return pdfInfo{}, err
	}
	return checkPDFFull(ctx, f)
}

// fullParses counts the full parses started, so that tests can tell one
// from the bounded check (both find the same page count).
var fullParses atomic.Int64

func checkPDFFull(c context.Context, f io.ReadSeeker) (info pdfInfo, err error) {
	fullParses.Add(1)
	defer func() {
		// A damaged file must be a refusal, never a crash of the service.
		if p := recover(); p != nil {
			err = notPDF("the PDF structure could not be read")
		}
	}()
	conf := model.NewDefaultConfiguration()
	conf.ValidationMode = model.ValidationRelaxed
	conf.Limits.MaxDecodeBytes = fullCheckMaxDecode
	ctx, err := pdfcpu.ReadWithContext(c, f, conf)
	if err != nil {
		switch {
		case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
			return info, err
		case errors.Is(err, pdfcpu.ErrWrongPassword):
			return pdfInfo{Encrypted: true}, nil
		case errors.Is(err, pdfcpu.ErrEmptyInput):
			return info, notPDF("the file is empty")
		}
		return info, &errNotPDF{reason: "the file is truncated or damaged and cannot be opened", cause: err}
	}
	// Validation fills in the title (info dictionary or XMP) and the page
	// count. Some real-world files fail strict-ish validation yet open in
	// every reader; they are kept, with what could be read.
	guardXMP(ctx)
	verr := api.ValidateContext(ctx)
	if verr == nil || ctx.PageCount > 0 {
		if n := ctx.PageCount; n > 0 {
			info.Pages = &n
		}
	}
	if info.Pages == nil {
		if err := ctx.EnsurePageCount(); err == nil && ctx.PageCount > 0 {
			n := ctx.PageCount
			info.Pages = &n
		}
	}
	title := strings.TrimSpace(ctx.Title)
	if title == "" {
		title = infoTitle(ctx)
	}
	if title != "" {
		info.Title = &title
	}
	// An owner password alone (empty user password) restricts editing, not
	// reading: such a file is not "encrypted" for a user.
	return info, nil
}

// guardXMP inflates the catalog's XMP metadata, which validation reads
// for the title, within xmpMaxDecode; metadata larger than that is
// ignored (the info dictionary's title still counts). Validation would
// inflate it with pdfcpu's own 512 MiB limit, whatever the
// configuration says: a 200 KB file whose XMP inflates to 200 MiB took
// 705 MiB of heap.
func guardXMP(ctx *model.Context) {
	root, err := ctx.Catalog()
	if err != nil {
		return
	}
	ref, ok := root["Metadata"].(types.IndirectRef)
	if !ok {
		return
	}
	entry, found := ctx.FindTableEntry(ref.ObjectNumber.Value(), ref.GenerationNumber.Value())
	if !found || entry.Object == nil {
		return
	}
	sd, ok := entry.Object.(types.StreamDict)
	if !ok {
		return
	}
	if err := sd.DecodeWithLimit(xmpMaxDecode); err != nil && !errors.Is(err, filter.ErrUnsupportedFilter) {
		delete(root, "Metadata")
		return
	}
	entry.Object = sd // decoded: validation reads Content as it is
}

// infoTitle reads /Title from the document information dictionary when
// validation did not get that far.
func infoTitle(ctx *model.Context) string {
	if ctx.Info == nil {
		return ""
	}
	d, err := ctx.DereferenceDict(*ctx.Info)
	if err != nil || d == nil {
		return ""
	}
	o, ok := d.Find("Title")
	if !ok {
		return ""
	}
	o, err = ctx.Dereference(o)
	if err != nil {
		return ""
	}
	switch v := o.(type) {
	case types.StringLiteral:
		s, _ := types.StringLiteralToString(v)
		return strings.TrimSpace(s)
	case types.HexLiteral:
		s, _ := types.HexLiteralToString(v)
		return strings.TrimSpace(s)
	}
	return ""
}

// withOutline adds the page count and title readOutline finds to the
// result of a frame check that passed, for a file not encrypted (its
// strings, the title among them, are ciphertext). The reader may parse
// 1 MiB of object text (about 10 MiB of heap), so it takes a parse slot
// like a full parse: uploads that arrive together take turns.
func withOutline(ctx context.Context, f io.ReadSeeker, size int64, headerOff int, info pdfInfo, facts frameFacts, err error, slots parseSlots) (pdfInfo, error) {
	ra, ok := f.(io.ReaderAt)
	if err != nil || info.Encrypted || !ok {
		return info, err
	}
	if err := slots.acquire(ctx); err != nil {
		return pdfInfo{}, err
	}
	defer slots.release()
	info.Pages, info.Title = readOutline(ra, size, int64(headerOff), facts.startxref)
	return info, nil
}

// countObjects counts the objects a PDF holds, whatever its trailer says:
// every "obj" keyword after whitespace ("12 0 obj"; "endobj" does not
// count), plus the /N of every object stream, which packs /N objects into
// one compressed stream. Bytes inside streams can look like either, so
// the count may be high, never low: a file it overestimates only gets the
// bounded check.
//
// dense is what the objects' text costs pdfcpu beyond objectCost each:
// it parses every number, name and reference of an object into a value
// of its own, about textCost bytes of heap per byte of text, so one
// object of a million references (6 MB of text) took 55 MiB. Each
// object's text is measured the way pdfcpu finds its end (the first
// "stream" or "endobj" outside strings and comments); object streams
// are inflated, to a limit, and their decoded size counts as text.
func countObjects(f io.ReadSeeker, size int64) (objects int, dense int64, err error) {
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return 0, 0, err
	}
	ra, _ := f.(io.ReaderAt)
	var objStms []int64 // where object stream dictionaries start
	var scratch []byte  // objectTextLen's window, reused
	const window = 256 << 10
	// Each read is scanned with the last keep bytes of the one before, so
	// a keyword or an object stream's dictionary cut by the read boundary
	// is still seen whole; matches that end in the kept bytes were counted
	// already.
	const keep = 1024
	buf := make([]byte, keep+window)
	count, carried := 0, 0
	base := int64(0) // file offset of data[0]
	for {
		n, err := io.ReadFull(f, buf[carried:])
		data := buf[:carried+n]
		for i := bytes.Index(data, []byte("obj")); i >= 0; {
			if i >= carried-3+1 && i > 0 && isPDFSpace(data[i-1]) {
				count++
				// Measured only while the file may still be cheap
				// enough: past the budget the verdict is made.
				if ra != nil && fullCheckCost(size, count)+dense <= fullCheckBudget {
					var l int64
					l, scratch = objectTextLen(ra, base+int64(i)+3, size, data[i+3:], scratch)
					dense += max(0, textCost*l-objectCost)
				}
			}
			j := bytes.Index(data[i+3:], []byte("obj"))
			if j < 0 {
				break
			}
			i += 3 + j
		}
		for _, m := range objStmRE.FindAllSubmatchIndex(data, -1) {
			if m[1] <= carried {
				continue
			}
			if len(objStms) < maxObjStmsInflated {
				objStms = append(objStms, base+int64(m[0]))
			} else {
				dense += fullCheckBudget // too many to inflate: too costly
			}
			g := m[2:4] // /N after /Type, or else before it
			if g[0] < 0 {
				g = m[4:6]
			}
			if v, perr := strconv.Atoi(string(data[g[0]:g[1]])); perr == nil {
				count += v
			} else {
				count += math.MaxInt32 // absurd: certainly too costly
			}
		}
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			break
		}
		if err != nil {
			return 0, 0, err
		}
		carried = copy(buf, data[len(data)-keep:])
		base += int64(len(data) - keep)
	}
	if ra != nil {
		for _, off := range objStms {
			if fullCheckCost(size, count)+dense > fullCheckBudget {
				break // too costly already: inflate no more
			}
			dense += textCost * objStmDecodedLen(ra, off, size)
		}
	}
	return count, dense, nil
}

const (
	// textCost is pdfcpu's heap per byte of object text, rounded up from
	// 9 measured (the million-reference /Kids).
	textCost = 10
	// maxObjectText is the longest object text measured; pdfcpu reads
	// up to 64 MiB. Longer text makes the file too costly to parse.
	maxObjectText = 1 << 20
	// maxObjStmsInflated bounds the object streams inflated to measure.
	maxObjStmsInflated = 10000
)

// objectTextLen returns the length of the object text that starts at off
// (right after "obj"), up to its first "stream" or "endobj", found as
// pdfcpu finds them; fullCheckBudget when it runs past maxObjectText.
// read is what the caller has of the file from off on: most objects end
// within it; the others are read through scratch, which objectTextLen
// returns, grown if it had to.
func objectTextLen(ra io.ReaderAt, off, size int64, read, scratch []byte) (int64, []byte) {
	for n := int64(1 << 10); ; n *= 4 {
		w := min(n, size-off)
		if w <= 0 {
			return 0, scratch
		}
		var b []byte
		if int64(len(read)) >= w {
			b = read[:w]
		} else {
			if int64(cap(scratch)) < w {
				scratch = make([]byte, w)
			}
			b = scratch[:w]
			if m, _ := ra.ReadAt(b, off); m < len(b) {
				b = b[:m]
			}
		}
		end, stream, err := model.DetectKeywordsWithContext(context.Background(), string(b))
		switch {
		case err != nil:
			return int64(len(b)), scratch
		case end >= 0 && (stream < 0 || end < stream):
			return int64(end), scratch
		case stream >= 0:
			return int64(stream), scratch
		case int64(len(b)) < n:
			return int64(len(b)), scratch // no end before the file's: pdfcpu fails there too
		case n >= maxObjectText:
			return fullCheckBudget, scratch
		}
	}
}

// objStmDecodedLen inflates the object stream whose dictionary starts at
// off and returns its decoded length; fullCheckBudget when it decodes
// past fullCheckMaxDecode (pdfcpu would give up), 0 when its data cannot
// be found or is not FlateDecode (pdfcpu cannot read it either).
func objStmDecodedLen(ra io.ReaderAt, off, size int64) int64 {
	head := make([]byte, min(4<<10, size-off))
	m, _ := ra.ReadAt(head, off)
	head = head[:m]
	i := bytes.Index(head, []byte("stream"))
	if i < 0 || !bytes.Contains(head[:i], []byte("FlateDecode")) {
		return 0
	}
	start := int64(i + len("stream"))
	for _, c := range []byte{'\r', '\n'} {
		if start < int64(len(head)) && head[start] == c {
			start++
		}
	}
	zr, err := zlib.NewReader(bufio.NewReader(io.NewSectionReader(ra, off+start, size-off-start)))
	if err != nil {
		return 0
	}
	n, _ := io.Copy(io.Discard, io.LimitReader(zr, fullCheckMaxDecode+1))
	if n > fullCheckMaxDecode {
		return fullCheckBudget
	}
	return n
}

// objStmRE finds an object stream's /N in its dictionary, with /Type
// /ObjStm before or after it.
var objStmRE = regexp.MustCompile(`/Type\s*/ObjStm[^>]{0,512}?/N\s+(\d+)|/N\s+(\d+)[^>]{0,512}?/Type\s*/ObjStm`)

func isPDFSpace(c byte) bool {
	return c == ' ' || c == '\n' || c == '\r' || c == '\t' || c == '\f' || c == 0
}

// tailWindow is how much of a large file's end is read to find the trailer.
const tailWindow = 64 << 10

var (
	startxrefRE = regexp.MustCompile(`startxref\s+(\d+)\s+%%EOF`)
	objHeadRE   = regexp.MustCompile(`^\s*\d+\s+\d+\s+obj\b`)
)

// checkPDFFrame checks a file with bounded memory: the last
// cross-reference section must be where the final startxref says, and its
// trailer (classic or cross-reference stream) must name a catalog. That
// catches truncated and non-PDF files; page count and title are left
// unknown. The trailer's /Encrypt marks encrypted files. It also returns
// the trailer's /Size, the number of objects (0 when absent).
// frameFacts is what the frame check learned for the steps after it: the
// trailer's object count (/Size) and the offset the last startxref names.
type frameFacts struct {
	objects   int
	startxref int64
}

func checkPDFFrame(f io.ReadSeeker, size int64, headerOff int) (pdfInfo, frameFacts, error) {
	var info pdfInfo
	tail := make([]byte, min(size, tailWindow))
	if _, err := f.Seek(size-int64(len(tail)), io.SeekStart); err != nil {
		return info, frameFacts{}, err
	}
	if _, err := io.ReadFull(f, tail); err != nil {
		return info, frameFacts{}, err
	}
	ms := startxrefRE.FindAllSubmatchIndex(tail, -1)
	if len(ms) == 0 {
		return info, frameFacts{}, notPDF("not a complete PDF: no startxref/%%%%EOF at the end (truncated?)")
	}
	m := ms[len(ms)-1]
	off, err := strconv.ParseInt(string(tail[m[2]:m[3]]), 10, 64)
	if err != nil {
		return info, frameFacts{}, notPDF("not a complete PDF: bad startxref")
	}
	// Offsets count from the header when junk precedes it.
	var section []byte
	for _, o := range []int64{off + int64(headerOff), off} {
		if o <= 0 || o >= size {
			continue
		}
		buf := make([]byte, min(4096, size-o))
		if _, err := f.Seek(o, io.SeekStart); err != nil {
			return info, frameFacts{}, err
		}
		if _, err := io.ReadFull(f, buf); err != nil {
			return info, frameFacts{}, err
		}
		if bytes.HasPrefix(bytes.TrimLeft(buf, " \r\n\t"), []byte("xref")) || objHeadRE.Match(buf) {
			section = buf
			break
		}
		if headerOff == 0 {
			break
		}
	}
	if section == nil {
		return info, frameFacts{}, notPDF("not a complete PDF: startxref does not point at a cross-reference section")
	}
	var dictSrc string
	if objHeadRE.Match(section) {
		// Cross-reference stream: its dictionary is the trailer.
		s := string(section)
		i, j := strings.Index(s, "obj"), strings.Index(s, "stream")
		if j < 0 || j < i {
			return info, frameFacts{}, notPDF("not a complete PDF: damaged cross-reference stream")
		}
		dictSrc = s[i+3 : j]
	} else {
		// Classic table: the trailer dictionary is the last one before startxref.
		s := string(tail[:m[0]])
		i := strings.LastIndex(s, "trailer")
		if i < 0 {
			return info, frameFacts{}, notPDF("not a complete PDF: no trailer")
		}
		dictSrc = s[i+len("trailer"):]
	}
	o, err := model.ParseObjectContext(context.Background(), &dictSrc, 0, 16)
	if err != nil {
		return info, frameFacts{}, notPDF("not a complete PDF: damaged trailer")
	}
	d, ok := o.(types.Dict)
	if !ok {
		return info, frameFacts{}, notPDF("not a complete PDF: damaged trailer")
	}
	if _, ok := d.Find("Root"); !ok {
		if _, prev := d.Find("Prev"); !prev {
			return info, frameFacts{}, notPDF("not a complete PDF: the trailer names no document catalog")
		}
	}
	if _, ok := d.Find("Encrypt"); ok {
		info.Encrypted = true
	}
	facts := frameFacts{startxref: off}
	if n, ok := d.Find("Size"); ok {
		if n, ok := n.(types.Integer); ok && n > 0 {
			facts.objects = int(n)
		}
	}
	return info, facts, nil
}
