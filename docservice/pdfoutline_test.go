package docservice

import (
	"bytes"
	"compress/zlib"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/pdfcpu/pdfcpu/pkg/api"
	"github.com/pdfcpu/pdfcpu/pkg/filter"
	"github.com/pdfcpu/pdfcpu/pkg/pdfcpu/model"
)

// outlineOf runs the outline reader on a whole file, as checkPDF does.
func outlineOf(t *testing.T, pdf []byte, headerOff int) pdfInfo {
	t.Helper()
	frame, facts, err := checkPDFFrame(bytes.NewReader(pdf), int64(len(pdf)), headerOff)
	if err != nil {
		return pdfInfo{} // what the outline reader never sees
	}
	info, err := withOutline(context.Background(), bytes.NewReader(pdf), int64(len(pdf)), headerOff, frame, facts, nil, newParseSlots(1))
	if err != nil {
		t.Fatal(err)
	}
	return info
}

// The outline reader finds what a full pdfcpu parse finds, in a classic
// cross-reference table and, once pdfcpu has rewritten the file, in a
// cross-reference stream with the catalog, page tree and info packed into
// object streams; and after an incremental update that moves them.
func TestOutlineReader(t *testing.T) {
	classic := makePDF("Classic title", 7, 10)
	var packed bytes.Buffer
	conf := model.NewDefaultConfiguration()
	conf.WriteObjectStream, conf.WriteXRefStream = true, true
	if err := api.Optimize(bytes.NewReader(classic), &packed, conf); err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(packed.Bytes(), []byte("/ObjStm")) || !bytes.Contains(packed.Bytes(), []byte("/XRef")) {
		t.Fatal("pdfcpu wrote no object stream or xref stream; the test needs both")
	}
	for name, pdf := range map[string][]byte{"classic": classic, "xref and object streams": packed.Bytes()} {
		full, err := checkPDFFull(context.Background(), bytes.NewReader(pdf))
		if err != nil {
			t.Fatalf("%s: full parse: %v", name, err)
		}
		got := outlineOf(t, pdf, 0)
		if got.Pages == nil || full.Pages == nil || *got.Pages != *full.Pages || *got.Pages != 7 {
			t.Errorf("%s: pages %v, full parse %v", name, deref(got.Pages), deref(full.Pages))
		}
		if got.Title == nil || *got.Title != "Classic title" {
			t.Errorf("%s: title %v", name, deref(got.Title))
		}
	}

	// An incremental update: a new info object and a /Prev chain.
	upd := append([]byte{}, classic...)
	prev := bytes.LastIndex(upd, []byte("startxref"))
	prevOff := strings.TrimSpace(strings.Split(string(upd[prev+len("startxref"):]), "%%EOF")[0])
	infoOff := len(upd)
	upd = append(upd, []byte("99 0 obj\n<< /Title <FEFF0055007000640061007400650064> >>\nendobj\n")...)
	xrefOff := len(upd)
	upd = append(upd, []byte("xref\n99 1\n"+pad10(infoOff)+" 00000 n \ntrailer\n<< /Size 100 /Root 1 0 R /Info 99 0 R /Prev "+prevOff+" >>\nstartxref\n"+itoa(xrefOff)+"\n%%EOF\n")...)
	got := outlineOf(t, upd, 0)
	if got.Title == nil || *got.Title != "Updated" || got.Pages == nil || *got.Pages != 7 {
		t.Errorf("incremental update: pages %v title %v", deref(got.Pages), deref(got.Title))
	}

	// Junk before the header: offsets count from the header.
	junk := append([]byte("JUNK!!"), classic...)
	if got := outlineOf(t, junk, 6); got.Pages == nil || *got.Pages != 7 {
		t.Errorf("junk before the header: pages %v", deref(got.Pages))
	}

	// What it cannot read stays unknown; nothing fails.
	for name, bad := range map[string][]byte{
		"no catalog object": bytes.Replace(classic, []byte("1 0 obj"), []byte("1 0 xbj"), 1),
		"looping /Prev":     bytes.Replace(classic, []byte("/Root 1 0 R"), []byte("/Prev 0 /Root 1 0 R"), 1),
		"cut":               classic[:len(classic)/2],
	} {
		got := outlineOf(t, bad, 0)
		if name == "no catalog object" && got.Pages != nil {
			t.Errorf("%s: pages %v", name, deref(got.Pages))
		}
	}
}

func deref[T any](p *T) any {
	if p == nil {
		return nil
	}
	return *p
}

func pad10(n int) string {
	s := itoa(n)
	return strings.Repeat("0", 10-len(s)) + s
}

func itoa(n int) string { return strconv.Itoa(n) }

// On the real-world samples, the outline reader agrees with pdfcpu's full
// parse wherever both read the file; it never claims a count the full
// parse contradicts.
func TestOutlineReaderSamples(t *testing.T) {
	files, err := filepath.Glob("testdata/pdfs/*.pdf")
	if err != nil || len(files) == 0 {
		t.Fatalf("no samples: %v", err)
	}
	agreed := 0
	for _, path := range files {
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		off := pdfHeaderOffset(data)
		if off < 0 {
			continue
		}
		full, ferr := checkPDFFull(context.Background(), bytes.NewReader(data))
		frame, _, gerr := checkPDFFrame(bytes.NewReader(data), int64(len(data)), off)
		if ferr != nil || gerr != nil || full.Encrypted || frame.Encrypted {
			continue
		}
		got := outlineOf(t, data, off)
		if full.Pages == nil {
			// A file pdfcpu keeps but cannot validate: nothing to compare.
			t.Logf("%s: pages %v, full parse none", filepath.Base(path), deref(got.Pages))
			continue
		}
		if got.Pages == nil || *got.Pages != *full.Pages {
			t.Errorf("%s: pages %v, full parse %v", filepath.Base(path), deref(got.Pages), deref(full.Pages))
			continue
		}
		if got.Title != nil && full.Title != nil && *got.Title != *full.Title {
			t.Logf("%s: title %q, full parse %q (the full parse also reads XMP)", filepath.Base(path), *got.Title, *full.Title)
		}
		agreed++
	}
	if agreed < 5 {
		t.Errorf("only %d samples compared", agreed)
	}
	t.Logf("%d samples agree", agreed)
}

// A crafted object stream whose header lists a million pairs: the catalog
// is still found, and reading it allocates about the stream's size, not a
// slice of every pair.
func TestOutlineReaderObjectStreamHeaderBomb(t *testing.T) {
	const pairs = 1 << 20
	body := "<< /Type /Catalog /Pages 3 0 R >>"
	// Object 1 first; the other pairs all point past it.
	var head bytes.Buffer
	head.WriteString("1 0")
	next := fmt.Sprintf(" 9 %d", len(body))
	for range pairs - 1 {
		head.WriteString(next)
	}
	head.WriteString(" ")
	stm := head.String() + body
	var b bytes.Buffer
	b.WriteString("%PDF-1.5\n")
	off2 := b.Len()
	fmt.Fprintf(&b, "2 0 obj\n<< /Type /ObjStm /N %d /First %d /Length %d >>\nstream\n%s\nendstream\nendobj\n", pairs, head.Len(), len(stm), stm)
	off3 := b.Len()
	b.WriteString("3 0 obj\n<< /Type /Pages /Kids [] /Count 42 >>\nendobj\n")
	// A cross-reference stream (no filter): 1 is in object stream 2.
	var rows bytes.Buffer
	row := func(typ byte, f2, f3 int) {
		rows.WriteByte(typ)
		rows.Write([]byte{byte(f2 >> 24), byte(f2 >> 16), byte(f2 >> 8), byte(f2)})
		rows.WriteByte(byte(f3))
	}
	row(0, 0, 0)
	row(2, 2, 0)
	row(1, off2, 0)
	row(1, off3, 0)
	xref := b.Len()
	row(1, xref, 0)
	fmt.Fprintf(&b, "4 0 obj\n<< /Type /XRef /Size 5 /W [1 4 1] /Root 1 0 R /Length %d >>\nstream\n", rows.Len())
	b.Write(rows.Bytes())
	fmt.Fprintf(&b, "\nendstream\nendobj\nstartxref\n%d\n%%%%EOF\n", xref)
	pdf := b.Bytes()

	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	got := outlineOf(t, pdf, 0)
	runtime.ReadMemStats(&after)
	if got.Pages == nil || *got.Pages != 42 {
		t.Fatalf("pages %v, want 42", deref(got.Pages))
	}
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > uint64(4*len(stm)) {
		t.Errorf("reading the outline allocated %d bytes for a %d-byte object stream", alloc, len(stm))
	}
}

// craftedXRefStreamPDF is a small file whose cross-reference stream, 8 MiB
// once inflated, lists about 1.6 million objects: the catalog, the page
// tree and a title, and then every other number pointing at the catalog.
// sections is how many such streams the /Prev chain holds; with
// onlyOldest, all but the oldest list every object as free.
func craftedXRefStreamPDF(t *testing.T, sections int, onlyOldest bool) []byte {
	t.Helper()
	var b bytes.Buffer
	b.WriteString("%PDF-1.5\n")
	off1 := b.Len()
	b.WriteString("1 0 obj\n<< /Type /Catalog /Pages 2 0 R >>\nendobj\n")
	off2 := b.Len()
	b.WriteString("2 0 obj\n<< /Type /Pages /Kids [] /Count 42 >>\nendobj\n")
	off3 := b.Len()
	b.WriteString("3 0 obj\n<< /Title (Crafted) >>\nendobj\n")
	const rowLen = 5
	rows := make([]byte, 0, outlineMaxDecoded)
	row := func(typ byte, f2 int) {
		rows = append(rows, typ, byte(f2>>24), byte(f2>>16), byte(f2>>8), byte(f2))
	}
	row(0, 0)
	row(1, off1)
	row(1, off2)
	row(1, off3)
	for len(rows)+rowLen <= outlineMaxDecoded {
		row(1, off1)
	}
	deflate := func(b []byte) []byte {
		var z bytes.Buffer
		zw := zlib.NewWriter(&z)
		if _, err := zw.Write(b); err != nil {
			t.Fatal(err)
		}
		if err := zw.Close(); err != nil {
			t.Fatal(err)
		}
		return z.Bytes()
	}
	listed, free := deflate(rows), deflate(make([]byte, len(rows)))
	prev := -1
	for s := range sections {
		z := listed
		if onlyOldest && s > 0 {
			z = free
		}
		xref := b.Len()
		prevKey := ""
		if prev >= 0 {
			prevKey = fmt.Sprintf(" /Prev %d", prev)
		}
		fmt.Fprintf(&b, "%d 0 obj\n<< /Type /XRef /Size %d /W [1 4 0] /Root 1 0 R /Info 3 0 R%s /Filter /FlateDecode /Length %d >>\nstream\n",
			4+s, len(rows)/rowLen, prevKey, len(z))
		b.Write(z)
		b.WriteString("\nendstream\nendobj\n")
		prev = xref
	}
	fmt.Fprintf(&b, "startxref\n%d\n%%%%EOF\n", prev)
	return b.Bytes()
}

// peakHeap runs f and returns the most heap it saw in use meanwhile,
// sampled every 100 µs with the collector made eager, so that garbage
// does not count as use.
func peakHeap(t *testing.T, f func()) uint64 {
	t.Helper()
	old := debug.SetGCPercent(5)
	defer debug.SetGCPercent(old)
	runtime.GC()
	sample := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	var peak atomic.Uint64
	done := make(chan struct{})
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		tick := time.NewTicker(100 * time.Microsecond)
		defer tick.Stop()
		for {
			metrics.Read(sample)
			if v := sample[0].Value.Uint64(); v > peak.Load() {
				peak.Store(v)
			}
			select {
			case <-done:
				return
			case <-tick.C:
			}
		}
	}()
	f()
	close(done)
	<-stopped
	return peak.Load()
}

// A crafted cross-reference stream listing 1.6 million objects (a 50 KB
// file) is read without holding an entry per object: the reader keeps
// only the few entries it looks up.
func TestOutlineReaderXRefStreamBomb(t *testing.T) {
	pdf := craftedXRefStreamPDF(t, 1, false)
	t.Logf("crafted file: %d bytes", len(pdf))
	var got pdfInfo
	peak := peakHeap(t, func() { got = outlineOf(t, pdf, 0) })
	if got.Pages == nil || *got.Pages != 42 || got.Title == nil || *got.Title != "Crafted" {
		t.Fatalf("pages %v, title %v; want 42 and Crafted", deref(got.Pages), deref(got.Title))
	}
	t.Logf("peak heap in use %.1f MiB", float64(peak)/(1<<20))
	if peak > 40<<20 {
		t.Errorf("reading the outline held %.1f MiB of heap", float64(peak)/(1<<20))
	}
}

// A /Prev chain of twenty such streams, the objects listed only in the
// oldest: each lookup would inflate 160 MiB. The reader stops at its
// budget and leaves the outline unknown, with its memory still bounded.
func TestOutlineReaderXRefChainBudget(t *testing.T) {
	pdf := craftedXRefStreamPDF(t, 20, true)
	var got pdfInfo
	peak := peakHeap(t, func() { got = outlineOf(t, pdf, 0) })
	if got.Pages != nil || got.Title != nil {
		t.Errorf("pages %v, title %v; want both unknown once the budget is spent", deref(got.Pages), deref(got.Title))
	}
	t.Logf("peak heap in use %.1f MiB", float64(peak)/(1<<20))
	if peak > 40<<20 {
		t.Errorf("reading the outline held %.1f MiB of heap", float64(peak)/(1<<20))
	}

	// Within the budget, the same layout is read: two sections.
	if got := outlineOf(t, craftedXRefStreamPDF(t, 2, true), 0); got.Pages == nil || *got.Pages != 42 {
		t.Errorf("two sections: pages %v, want 42", deref(got.Pages))
	}
}

// The streaming PNG predictor decoder agrees with pdfcpu's (the oracle)
// on rows encoded with every PNG filter type, in every row width a
// cross-reference stream may use.
func TestPNGRowsMatchPdfcpu(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, columns := range []int{1, 3, 5, 7, 20} {
		const rows = 200
		plain := make([]byte, rows*columns)
		for i := range plain {
			plain[i] = byte(rng.IntN(256))
			if i%columns == 0 {
				plain[i] = byte(rng.IntN(3)) // like a type field
			}
		}
		// PNG-encode each row with filter type row%5 (RFC 2083 §6).
		var enc bytes.Buffer
		above := make([]byte, columns)
		for r := range rows {
			row := plain[r*columns : (r+1)*columns]
			typ := byte(r % 5)
			enc.WriteByte(typ)
			for i := range row {
				var left, upLeft byte
				if i > 0 {
					left, upLeft = row[i-1], above[i-1]
				}
				var pred byte
				switch typ {
				case 1:
					pred = left
				case 2:
					pred = above[i]
				case 3:
					pred = byte((int(left) + int(above[i])) / 2)
				case 4:
					pred = paeth(left, above[i], upLeft)
				}
				enc.WriteByte(row[i] - pred)
			}
			above = row
		}
		var z bytes.Buffer
		zw := zlib.NewWriter(&z)
		zw.Write(enc.Bytes())
		zw.Close()

		zr, err := zlib.NewReader(bytes.NewReader(z.Bytes()))
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(newPNGRows(zr, columns))
		if err != nil {
			t.Fatalf("columns %d: %v", columns, err)
		}
		parms := map[string]int{"Predictor": 12, "Columns": columns}
		fi, err := filter.NewFilter(filter.Flate, parms, 0)
		if err != nil {
			t.Fatal(err)
		}
		oracle, err := fi.Decode(bytes.NewReader(z.Bytes()))
		if err != nil {
			t.Fatal(err)
		}
		want, _ := io.ReadAll(oracle)
		if !bytes.Equal(got, plain) || !bytes.Equal(want, plain) {
			t.Errorf("columns %d: decoded %d bytes (equal %v), pdfcpu %d (equal %v)", columns,
				len(got), bytes.Equal(got, plain), len(want), bytes.Equal(want, plain))
		}
	}
}

// A page tree root whose /Kids lists a million references (6 MB of text):
// the reader parses a bounded window of an object, not all of it.
func TestOutlineReaderKidsBomb(t *testing.T) {
	pdf := pdfWith("<< /Type /Catalog /Pages 2 0 R >>",
		"<< /Type /Pages /Count 42 /Kids ["+strings.Repeat("3 0 R ", 1<<20)+"] >>")
	var got pdfInfo
	peak := peakHeap(t, func() { got = outlineOf(t, pdf, 0) })
	t.Logf("pages %v; peak heap in use %.1f MiB for a %.1f MiB file", deref(got.Pages), float64(peak)/(1<<20), float64(len(pdf))/(1<<20))
	if peak > 24<<20 {
		t.Errorf("reading the outline held %.1f MiB of heap", float64(peak)/(1<<20))
	}
}

// Damaged predictor data: an unknown PNG filter type is an error, not
// garbage, and a last row cut short is dropped, not padded.
func TestPNGRowsDamaged(t *testing.T) {
	// Two rows of 3 columns, filter type None, then a row of type 9.
	got, err := io.ReadAll(newPNGRows(bytes.NewReader([]byte{0, 1, 2, 3, 0, 4, 5, 6, 9, 7, 8, 9}), 3))
	if err == nil || !bytes.Equal(got, []byte{1, 2, 3, 4, 5, 6}) {
		t.Errorf("unknown filter type: %v, %v; want the first two rows and an error", got, err)
	}
	// The third row is one byte short.
	got, err = io.ReadAll(newPNGRows(bytes.NewReader([]byte{0, 1, 2, 3, 2, 1, 1, 1, 0, 7, 8}), 3))
	if err != nil || !bytes.Equal(got, []byte{1, 2, 3, 2, 3, 4}) {
		t.Errorf("short last row: %v, %v; want two rows (the second Up-predicted) and no error", got, err)
	}
}

// FuzzBoundedCheck feeds the hand-written PDF readers with mutations of
// real files: countObjects and the frame check see every upload, the
// outline reader every one too large or costly for pdfcpu. Whatever the
// bytes, they must answer or refuse (415), never panic or fail otherwise
// (a 500), and what they answer must be storable. `go test` runs the
// seeds; `go test -fuzz FuzzBoundedCheck ./docservice` searches further.
func FuzzBoundedCheck(f *testing.F) {
	for _, name := range []string{"simple.pdf", "junk-before-header.pdf", "tagged-no-text.pdf", "truncated.pdf",
		"password-is-test.pdf", "rtl-text.pdf", "with-form.pdf", "multi-page-digital.pdf", "html-rendered.pdf"} {
		b, err := os.ReadFile(filepath.Join("testdata", "pdfs", name))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add(makePDF("fuzz", 3, 0))
	f.Add(pdfWith("<< /Type /Catalog /Pages 2 0 R >>", "<< /Type /Pages /Kids [] /Count 0 >>"))
	f.Fuzz(func(t *testing.T, data []byte) {
		off := pdfHeaderOffset(data)
		if off < 0 {
			return // refused before any of these run
		}
		// A stuck check would hold an upload's parse slot for ever: crash,
		// so that the fuzzer keeps the input.
		stuck := time.AfterFunc(10*time.Second, func() { panic("the bounded check took over 10 s") })
		defer stuck.Stop()
		size := int64(len(data))
		if _, _, err := countObjects(bytes.NewReader(data), size); err != nil {
			var np *errNotPDF
			if !errors.As(err, &np) {
				t.Fatalf("countObjects: %v, not a refusal", err)
			}
		}
		r := bytes.NewReader(data)
		frame, facts, ferr := checkPDFFrame(r, size, off)
		info, err := withOutline(context.Background(), r, size, off, frame, facts, ferr, newParseSlots(1))
		if err != nil {
			var np *errNotPDF
			if !errors.As(err, &np) {
				t.Fatalf("bounded check: %v, not a refusal", err)
			}
			return
		}
		info = info.tidy()
		if info.Title != nil && (!utf8.ValidString(*info.Title) || len(*info.Title) > maxTitleBytes ||
			strings.ContainsRune(*info.Title, 0)) {
			t.Fatalf("title not storable: %q", *info.Title)
		}
		if info.Pages != nil && *info.Pages < 1 {
			t.Fatalf("page count %d", *info.Pages)
		}
	})
}
