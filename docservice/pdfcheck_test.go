package docservice

import (
	"bytes"
	"context"
	"errors"
	"math"
	"regexp"
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
	if n, err := countObjects(bytes.NewReader(liar), int64(len(liar))); err != nil || n < 9000 {
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
		if n, err := countObjects(bytes.NewReader(tc.data), int64(len(tc.data))); err != nil || n != tc.want {
			t.Errorf("%s: %d, %v; want %d", tc.name, n, err, tc.want)
		}
	}
}
