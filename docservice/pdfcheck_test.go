package docservice

import (
	"bytes"
	"compress/zlib"
	"context"
	"errors"
	"fmt"
	"math"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestMakePDFIsValid(t *testing.T) {
	pdf := makePDF("Hello", 2, 10)
	info, err := checkPDF(context.Background(), bytes.NewReader(pdf), int64(len(pdf)), 0, newParseSlots(1))
	if err != nil {
		t.Fatal(err)
	}
	if info.Pages == nil || *info.Pages != 2 || info.Title == nil || *info.Title != "Hello" {
		t.Fatalf("info = %+v", info)
	}
}

// Large files get the bounded frame check: valid ones pass, cut ones fail.
func TestCheckPDFFrame(t *testing.T) {
	pdf := makePDF("Big", 1, fullCheckMaxBytes+1000)
	info, err := checkPDF(context.Background(), bytes.NewReader(pdf), int64(len(pdf)), 0, newParseSlots(1))
	if err != nil {
		t.Fatalf("valid large PDF refused: %v", err)
	}
	// Page count and title come from the outline reader.
	if info.Pages == nil || *info.Pages != 1 || info.Title == nil || *info.Title != "Big" || info.Encrypted {
		t.Fatalf("info = %+v", info)
	}
	// Junk before the header shifts every offset; still accepted, and read.
	junk := append([]byte("\xef\xbb\xbfjunk"), pdf...)
	info, err = checkPDF(context.Background(), bytes.NewReader(junk), int64(len(junk)), 7, newParseSlots(1))
	if err != nil {
		t.Fatalf("large PDF with junk before the header refused: %v", err)
	}
	if info.Pages == nil || *info.Pages != 1 {
		t.Fatalf("junk before the header: info = %+v", info)
	}
	cut := pdf[:len(pdf)-200]
	if _, err := checkPDF(context.Background(), bytes.NewReader(cut), int64(len(cut)), 0, newParseSlots(1)); err == nil {
		t.Fatal("truncated large PDF accepted")
	}
	enc := bytes.Replace(pdf, []byte("/Info 3 0 R >>\nstartxref"), []byte("/Info 3 0 R /Encrypt 3 0 R >>\nstartxref"), 1)
	// The startxref offset is unchanged (the trailer follows the table).
	info, err = checkPDF(context.Background(), bytes.NewReader(enc), int64(len(enc)), 0, newParseSlots(1))
	if err != nil || !info.Encrypted {
		t.Fatalf("encrypted large PDF: info %+v, err %v", info, err)
	}
	notPDF := append([]byte("%PDF-1.4\n"), bytes.Repeat([]byte{0}, fullCheckMaxBytes+10)...)
	if _, err := checkPDF(context.Background(), bytes.NewReader(notPDF), int64(len(notPDF)), 0, newParseSlots(1)); err == nil {
		t.Fatal("a PDF header followed by zeros was accepted")
	}
}

// parseSlots admits at most its size of parses at once, and a waiter
// gives up as soon as its context ends.
func TestParseSlotsBound(t *testing.T) {
	const n = 2
	slots := newParseSlots(n)
	var running, most atomic.Int32
	var wg sync.WaitGroup
	for range 20 {
		wg.Go(func() {
			if err := slots.acquire(context.Background()); err != nil {
				t.Error(err)
				return
			}
			defer slots.release()
			now := running.Add(1)
			for m := most.Load(); now > m && !most.CompareAndSwap(m, now); m = most.Load() {
			}
			time.Sleep(2 * time.Millisecond)
			running.Add(-1)
		})
	}
	wg.Wait()
	if m := most.Load(); m != n {
		t.Fatalf("%d parses ran at once, want at most (and here exactly) %d", m, n)
	}

	for range n {
		if err := slots.acquire(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	start := time.Now()
	if err := slots.acquire(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("waiter with an expiring context: %v", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("the waiter gave up after %v", d)
	}
	gone, stop := context.WithCancel(context.Background())
	stop()
	if err := slots.acquire(gone); !errors.Is(err, context.Canceled) {
		t.Fatalf("waiter with a cancelled context: %v", err)
	}
	slots.release()
	if err := slots.acquire(context.Background()); err != nil {
		t.Fatalf("a released slot is not free again: %v", err)
	}
}

// checkPDF parses small, cheap files fully, one slot at a time, and gives
// files whose parse would cost more than fullCheckBudget (by their
// object count) the bounded frame check, without waiting for a slot.
func TestCheckPDFCost(t *testing.T) {
	busy := newParseSlots(1)
	busy <- struct{}{} // a parse is running

	pdf := makePDF("Cheap", 2, 10)
	gone, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := checkPDF(gone, bytes.NewReader(pdf), int64(len(pdf)), 0, busy); !errors.Is(err, context.Canceled) {
		t.Fatalf("a full parse did not wait for the busy slot, or the waiter ignored its context: %v", err)
	}

	// The same file claiming as many objects as a long text document.
	many := regexp.MustCompile(`/Size \d+ `).ReplaceAll(pdf, []byte("/Size 9000 "))
	if bytes.Equal(many, pdf) {
		t.Fatal("test PDF has no /Size")
	}
	if fullCheckCost(int64(len(many)), 9000) <= fullCheckBudget {
		t.Fatal("9000 objects are within the budget; raise the test's count")
	}
	// The bounded check runs, not a full parse; the outline reader still
	// finds the metadata. It waits for a slot too (it may inflate two
	// 8 MiB streams), so under the busy slot it gives up with its client.
	if _, err := checkPDF(gone, bytes.NewReader(many), int64(len(many)), 0, busy); !errors.Is(err, context.Canceled) {
		t.Fatalf("the outline reader did not wait for the busy slot: %v", err)
	}
	parses := fullParses.Load()
	info, err := checkPDF(context.Background(), bytes.NewReader(many), int64(len(many)), 0, newParseSlots(1))
	if err != nil {
		t.Fatalf("costly small PDF: %v", err)
	}
	if n := fullParses.Load() - parses; n != 0 {
		t.Fatalf("costly small PDF: %d full parses, want the bounded check", n)
	}
	if info.Pages == nil || *info.Pages != 2 || info.Title == nil || *info.Title != "Cheap" {
		t.Fatalf("costly small PDF: %+v", info)
	}
	cut := many[:len(many)-30]
	if _, err := checkPDF(gone, bytes.NewReader(cut), int64(len(cut)), 0, busy); !errors.Is(err, context.Canceled) {
		// A frame that does not read means a full parse (pdfcpu may
		// repair the file), which waits for the slot.
		t.Fatalf("truncated small PDF: %v", err)
	}

	<-busy
	info, err = checkPDF(context.Background(), bytes.NewReader(pdf), int64(len(pdf)), 0, busy)
	if err != nil || info.Pages == nil || *info.Pages != 2 {
		t.Fatalf("cheap PDF: info %+v, err %v", info, err)
	}
	if len(busy) != 0 {
		t.Fatal("the parse did not release its slot")
	}
}

// A file that understates its object count (its trailer's /Size) is
// judged by the objects it really holds, counted in the file: plain ones
// and those packed into object streams.
func TestCheckPDFUnderstatedObjects(t *testing.T) {
	busy := newParseSlots(1)
	busy <- struct{}{} // a full parse would wait, and give up on gone
	gone, cancel := context.WithCancel(context.Background())
	cancel()

	many := makePDF("Many", 9000, 0)
	liar := regexp.MustCompile(`/Size \d+ `).ReplaceAll(many, []byte("/Size 10 "))
	if bytes.Equal(liar, many) {
		t.Fatal("test PDF has no /Size")
	}
	if n, _, err := countObjects(bytes.NewReader(liar), int64(len(liar))); err != nil || n < 9000 {
		t.Fatalf("countObjects = %d, %v; want at least 9000", n, err)
	}
	parses := fullParses.Load()
	info, err := checkPDF(context.Background(), bytes.NewReader(liar), int64(len(liar)), 0, newParseSlots(1))
	if err != nil || info.Pages == nil || *info.Pages != 9000 {
		t.Fatalf("understated PDF: info %+v, err %v; want the bounded check (and its page count)", info, err)
	}
	if n := fullParses.Load() - parses; n != 0 {
		t.Fatalf("understated PDF: %d full parses, want the bounded check", n)
	}

	// Damaged as well (cut before its trailer): too costly to repair, so
	// refused, not parsed.
	cut := liar[:len(liar)-40]
	if _, err := checkPDF(gone, bytes.NewReader(cut), int64(len(cut)), 0, busy); err == nil || errors.Is(err, context.Canceled) {
		t.Fatalf("damaged costly PDF: %v; want the frame check's refusal", err)
	}

	// Counting: keywords cut by the read window, endobj, object streams.
	for _, tc := range []struct {
		name string
		data []byte
		want int
	}{
		{"plain", []byte("%PDF-1.7\n1 0 obj<<>>endobj\n2 0 obj\n<<>>\nendobj\n"), 2},
		// The first read is 1 KiB + 256 KiB: this "obj" straddles its end.
		{"across the window", append(bytes.Repeat([]byte("x"), 1024+256<<10-6), []byte(" 3 0 obj<<>>endobj 4 0 obj")...), 2},
		{"object stream across the window", append(bytes.Repeat([]byte("x"), 1024+256<<10-20),
			[]byte(" 5 0 obj<</Type /ObjStm /N 5000 /First 10>>stream")...), 5001},
		{"object stream", []byte("5 0 obj<</Type /ObjStm /N 5000 /First 10>>stream\nendstream endobj"), 5001},
		{"object stream, /N first", []byte("5 0 obj<</N 700/Type/ObjStm>>stream\nendstream endobj"), 701},
		{"absurd /N", []byte("5 0 obj<</Type/ObjStm/N 99999999999999999999>>"), 1 + math.MaxInt32},
	} {
		if n, _, err := countObjects(bytes.NewReader(tc.data), int64(len(tc.data))); err != nil || n != tc.want {
			t.Errorf("%s: %d, %v; want %d", tc.name, n, err, tc.want)
		}
	}
}

// deflated is b compressed as FlateDecode data.
func deflated(t *testing.T, b []byte) []byte {
	t.Helper()
	var z bytes.Buffer
	zw, _ := zlib.NewWriterLevel(&z, zlib.BestCompression)
	if _, err := zw.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return z.Bytes()
}

// pdfWith builds a PDF version 1.5 whose numbered objects are objs
// (object 1 the catalog).
func pdfWith(objs ...string) []byte { return pdfObjects("%PDF-1.5\n", "", objs...) }

// Files small and with few objects that would still take pdfcpu's full
// parse far past the memory budget: dense object text, in the file or
// compressed in an object stream, and compressed XMP metadata. Each is
// checked with its memory bounded; the first two get the bounded check.
func TestCheckPDFParseBombs(t *testing.T) {
	kids := "<< /Type /Pages /Count 1 /Kids [3 0 R" + strings.Repeat(" 3 0 R", 1<<20) + "] >>"
	page := "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] >>"
	inStream := "3 0 " + strings.Repeat(" ", 4) // object 3 at offset 0 of the stream
	densePage := "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Dense [" + strings.Repeat("1 ", 3<<19) + "] >>"
	objStm := []byte(inStream + densePage)
	z := deflated(t, objStm)
	xmp := deflated(t, bytes.Repeat([]byte(" "), 200<<20))
	xmp2 := deflated(t, xmp)
	cases := []struct {
		name      string
		pdf       []byte
		fullParse bool
		pages     any // what the check reads; nil: unknown
	}{
		// Too long for the outline reader's window too: no page count.
		{"a /Kids of a million references", pdfWith("<< /Type /Catalog /Pages 2 0 R >>", kids, page), false, nil},
		{"1.5 million numbers in an object stream", pdfWith("<< /Type /Catalog /Pages 2 0 R >>",
			"<< /Type /Pages /Count 1 /Kids [3 0 R] >>", "null",
			fmt.Sprintf("<< /Type /ObjStm /N 1 /First %d /Filter /FlateDecode /Length %d >>\nstream\n%s\nendstream", len(inStream), len(z), z)), false, 1},
		{"200 MiB of XMP", pdfWith("<< /Type /Catalog /Pages 2 0 R /Metadata 4 0 R >>",
			"<< /Type /Pages /Count 1 /Kids [3 0 R] >>", page,
			fmt.Sprintf("<< /Type /Metadata /Subtype /XML /Filter /FlateDecode /Length %d >>\nstream\n%s\nendstream", len(xmp), xmp)), true, 1},
		{"200 MiB of XMP compressed twice (1.4 KB)", pdfWith("<< /Type /Catalog /Pages 2 0 R /Metadata 4 0 R >>",
			"<< /Type /Pages /Count 1 /Kids [3 0 R] >>", page,
			fmt.Sprintf("<< /Type /Metadata /Subtype /XML /Filter [/FlateDecode /FlateDecode] /Length %d >>\nstream\n%s\nendstream", len(xmp2), xmp2)), true, 1},
	}
	for _, tc := range cases {
		parses := fullParses.Load()
		var info pdfInfo
		var err error
		peak := peakHeap(t, func() {
			info, err = checkPDF(context.Background(), bytes.NewReader(tc.pdf), int64(len(tc.pdf)), 0, newParseSlots(1))
		})
		t.Logf("%s: %d-byte file, peak heap %.1f MiB, pages %v, err %v", tc.name, len(tc.pdf), float64(peak)/(1<<20), deref(info.Pages), err)
		if err != nil || deref(info.Pages) != tc.pages {
			t.Errorf("%s: pages %v, err %v; want %v, accepted", tc.name, deref(info.Pages), err, tc.pages)
		}
		if full := fullParses.Load() > parses; full != tc.fullParse {
			t.Errorf("%s: full parse %v, want %v", tc.name, full, tc.fullParse)
		}
		if limit := uint64(len(tc.pdf)) + 24<<20; peak > limit {
			t.Errorf("%s: peak heap %.1f MiB", tc.name, float64(peak)/(1<<20))
		}
	}
}

// objStmPDF builds a PDF whose page tree root (object 2) is packed into an
// object stream (object 3), listed by a cross-reference stream (object 4).
func objStmPDF(t *testing.T, pages string) []byte {
	t.Helper()
	head := "2 0 "
	z := deflated(t, []byte(head+pages))
	var b bytes.Buffer
	b.WriteString("%PDF-1.5\n")
	off1 := b.Len()
	b.WriteString("1 0 obj\n<< /Type /Catalog /Pages 2 0 R >>\nendobj\n")
	off3 := b.Len()
	fmt.Fprintf(&b, "3 0 obj\n<< /Type /ObjStm /N 1 /First %d /Filter /FlateDecode /Length %d >>\nstream\n%s\nendstream\nendobj\n", len(head), len(z), z)
	var rows []byte
	row := func(typ byte, f2, f3 int) {
		rows = append(rows, typ, byte(f2>>24), byte(f2>>16), byte(f2>>8), byte(f2), byte(f3))
	}
	xref := b.Len()
	row(0, 0, 0)
	row(1, off1, 0)
	row(2, 3, 0)
	row(1, off3, 0)
	row(1, xref, 0)
	fmt.Fprintf(&b, "4 0 obj\n<< /Type /XRef /Size 5 /W [1 4 1] /Root 1 0 R /Length %d >>\nstream\n", len(rows))
	b.Write(rows)
	fmt.Fprintf(&b, "\nendstream\nendobj\nstartxref\n%d\n%%%%EOF\n", xref)
	return b.Bytes()
}

// The page tree root, packed in an object stream with 1.5 million
// numbers: pdfcpu's full parse would hold about 10 bytes of heap per byte
// of them. The file gets the bounded check, whose outline reader refuses
// to parse an object that long.
func TestCheckPDFObjectStreamBomb(t *testing.T) {
	plain := objStmPDF(t, "<< /Type /Pages /Count 7 /Kids [] >>")
	info, err := checkPDF(context.Background(), bytes.NewReader(plain), int64(len(plain)), 0, newParseSlots(1))
	if err != nil || deref(info.Pages) != 7 {
		t.Fatalf("the same layout, small: pages %v, err %v; want 7", deref(info.Pages), err)
	}
	// The outline reader too (the page tree is the stream's last object,
	// which runs to the stream's end).
	if got := outlineOf(t, plain, 0); deref(got.Pages) != 7 {
		t.Fatalf("outline reader, small: pages %v, want 7", deref(got.Pages))
	}

	bomb := objStmPDF(t, "<< /Type /Pages /Count 7 /Kids [] /Dense ["+strings.Repeat("1 ", 3<<19)+"] >>")
	full := peakHeap(t, func() { _, _ = checkPDFFull(context.Background(), bytes.NewReader(bomb)) })
	parses := fullParses.Load()
	peak := peakHeap(t, func() {
		info, err = checkPDF(context.Background(), bytes.NewReader(bomb), int64(len(bomb)), 0, newParseSlots(1))
	})
	t.Logf("%d-byte file: full parse alone %.1f MiB of heap; checkPDF %.1f MiB, pages %v, err %v",
		len(bomb), float64(full)/(1<<20), float64(peak)/(1<<20), deref(info.Pages), err)
	if err != nil {
		t.Fatalf("refused: %v", err)
	}
	if fullParses.Load() != parses {
		t.Error("the file got a full parse")
	}
	if info.Pages != nil {
		t.Errorf("pages %v from an object of 3 MiB of text; the outline reader parses at most 1 MiB", *info.Pages)
	}
	if peak > 16<<20 {
		t.Errorf("checkPDF held %.1f MiB of heap", float64(peak)/(1<<20))
	}
}

// costlyPDF is a small PDF whose trailer declares 100 000 objects, so the
// upload takes the bounded check (readOutline) rather than pdfcpu's parse.
func costlyPDF(title, count string) []byte {
	b := pdfObjects("%PDF-1.4\n", " /Info 3 0 R",
		"<< /Type /Catalog /Pages 2 0 R >>",
		"<< /Type /Pages /Kids [4 0 R] /Count "+count+" >>",
		"<< /Title ("+title+") >>",
		"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] >>")
	return bytes.Replace(b, []byte("/Size 5 "), []byte("/Size 100000 "), 1)
}

// The title and page count come from the uploaded file: whatever it claims,
// the upload is stored (201) with a title fit to store and show and a page
// count the column holds. Before, a NUL in the title (PostgreSQL refuses
// it) gave 500, a count over int4 gave 503 "database unavailable", and the
// bounded check stored titles of any length (60 of 1 MB made one listing
// 57 MiB).
func TestUploadUntrustedMetadata(t *testing.T) {
	e := newEnv(t)
	u := newUser()
	long := strings.Repeat("é", 400) // 800 bytes
	full := func(title, count string) []byte {
		return bytes.Replace(makePDF(title, 1, 0), []byte("/Count 1 "), []byte("/Count "+count+" "), 1)
	}
	if !bytes.Contains(full("t", "7"), []byte("/Count 7 ")) || !bytes.Contains(costlyPDF("t", "1"), []byte("/Size 100000 ")) {
		t.Fatal("the fixtures no longer say what the rows assume")
	}
	for _, tc := range []struct {
		name      string
		pdf       []byte
		wantTitle any // string, or nil
		wantPages any // float64, or nil
	}{
		{"NUL in the title (full parse)", full(`abc\000def`, "1"), "abcdef", 1.0},
		{"NUL in the title (bounded check)", costlyPDF(`a\000b`, "1"), "ab", 1.0},
		{"line breaks and tabs", costlyPDF(`a\nb\tc\r`, "1"), "a b c", 1.0},
		{"invalid UTF-16", full(`\376\377\330\000`, "1"), nil, 1.0},
		{"over-long title (bounded check)", costlyPDF(long, "1"), strings.Repeat("é", 250), 1.0},
		{"page count over int4 (full parse)", full("t", "3000000000"), "t", nil},
		{"page count over int4 (bounded check)", costlyPDF("t", "3000000000"), "t", nil},
		{"page count of zero (bounded check)", costlyPDF("t", "0"), "t", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := e.upload(u, "m.pdf", tc.pdf, nil)
			if r.status != http.StatusCreated {
				t.Fatalf("%d %s", r.status, r.body)
			}
			m := r.json(t)
			if m["title"] != tc.wantTitle || m["page_count"] != tc.wantPages {
				t.Fatalf("title %q, page_count %v; want %q, %v", m["title"], m["page_count"], tc.wantTitle, tc.wantPages)
			}
		})
	}
}
