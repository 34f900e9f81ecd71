package main

import (
	"bufio"
	"bytes"
	"compress/zlib"
	"errors"
	"fmt"
	"image"
	"image/jpeg"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
)

// docRows measures what PDFs small enough for the full pdfcpu parse cost
// docservice, where that parse (not the upload path) sets the memory
// peak: one document, a few uploaded one after the other (a user filing
// a folder) and several at once (several users). Every batch runs on a
// docservice process of its own, so that none inherits another's heap;
// a row shows the median batch time and the median and highest of the
// batches' peak RSS.
func docRows(ds *docservice, size int64, runs int) error {
	const inARow, atOnce = 3, 4
	fmt.Printf("\ndocuments of %d MiB (full pdfcpu parse); each batch on a fresh docservice:\n", size>>20)
	files := map[string][]string{}
	for _, kind := range []docKind{scanLike, textHeavy} {
		for i := range max(inARow, atOnce) {
			p := filepath.Join(ds.work, fmt.Sprintf("%s-%d.pdf", kind.name, i))
			if err := writeDocumentPDF(p, size, kind, uint64(i)); err != nil {
				return fmt.Errorf("generate %s: %w", p, err)
			}
			files[kind.name] = append(files[kind.name], p)
		}
	}
	fmt.Printf("\n%-40s %8s %8s %10s %10s %10s\n", "batch", "time", "MB/s", "doc CPU", "doc RSS", "RSS max")
	var restKB int64
	for _, r := range []struct {
		kind     docKind
		n        int
		parallel bool
	}{
		{scanLike, 1, false}, {textHeavy, 1, false},
		{scanLike, inARow, false}, {textHeavy, inARow, false},
		{scanLike, atOnce, true}, {textHeavy, atOnce, true},
	} {
		name := fmt.Sprintf("1 × %s", r.kind.name)
		if r.n > 1 && r.parallel {
			name = fmt.Sprintf("%d × %s, at once", r.n, r.kind.name)
		} else if r.n > 1 {
			name = fmt.Sprintf("%d × %s, in a row", r.n, r.kind.name)
		}
		var times []time.Duration
		var peaks []int64
		var cpu time.Duration
		var total int64
		for range runs {
			b, err := docBatch(ds, files[r.kind.name][:r.n], r.parallel)
			if err != nil {
				return fmt.Errorf("%s: %w", name, err)
			}
			times, peaks, cpu, total = append(times, b.time), append(peaks, b.peakKB), cpu+b.cpu, b.bytes
			restKB = max(restKB, b.restKB)
		}
		slices.Sort(times)
		slices.Sort(peaks)
		d := times[len(times)/2]
		fmt.Printf("%-40s %7.2fs %8.0f %10s %10s %10s\n", name, d.Seconds(), float64(total)/1e6/d.Seconds(),
			fmt.Sprintf("%.2fs", (cpu/time.Duration(runs*r.n)).Seconds()),
			fmt.Sprintf("%.1f MiB", float64(peaks[len(peaks)/2])/1024), fmt.Sprintf("%.1f MiB", float64(peaks[len(peaks)-1])/1024))
	}
	fmt.Printf("Median of %d batches; CPU per upload; docservice at rest (fresh, before any upload): %.1f MiB RSS at most\n",
		runs, float64(restKB)/1024)
	return nil
}

// batch is what one batch of document uploads took.
type batch struct {
	time   time.Duration
	bytes  int64
	cpu    time.Duration // docservice's, for the whole batch
	peakKB int64         // docservice's VmHWM
	restKB int64         // docservice's RSS before the first upload
}

// docBatch uploads files (each as a new user) on a new docservice, one
// after the other or all at once.
func docBatch(ds *docservice, files []string, parallel bool) (batch, error) {
	var b batch
	doc, addr, stop, err := ds.start()
	if err != nil {
		return b, err
	}
	defer stop()
	var sizes []int64
	for _, f := range files {
		fi, err := os.Stat(f)
		if err != nil {
			return b, err
		}
		sizes = append(sizes, fi.Size())
		b.bytes += fi.Size()
	}
	pid := doc.Process.Pid
	b.restKB = rssKB(pid)
	resetPeak(pid)
	cpu0 := cpuTime(pid)
	start := time.Now()
	errs := make([]error, len(files))
	var wg sync.WaitGroup
	for i, f := range files {
		send := func() {
			_, errs[i] = upload("http://"+addr, "/api/documents", f, sizes[i], "X-User-Id: "+uuid.NewString()+"\r\n")
		}
		if parallel {
			wg.Go(send)
		} else {
			send()
		}
	}
	wg.Wait()
	b.time = time.Since(start)
	b.cpu, b.peakKB = cpuTime(pid)-cpu0, peakRSSKB(pid)
	_ = removeStored(ds.storage())
	return b, errors.Join(errs...)
}

// docKind is the make-up of a generated document.
type docKind struct {
	name      string
	imageSide int // the side of each page's noise JPEG, in pixels
	lines     int // lines of text per page
}

var (
	// scanLike: a few hundred pages, each a ~40 KiB image with a little
	// text (a scanned document with its OCR layer).
	scanLike = docKind{name: "scan-like", imageSide: 220, lines: 70}
	// textHeavy: thousands of pages of compressed text (a long report or
	// an export): several thousand objects, pdfcpu's costliest case per
	// byte, as it keeps a copy of every object's text.
	textHeavy = docKind{name: "text-heavy", imageSide: 24, lines: 200}
)

// writeDocumentPDF writes a valid PDF of about size bytes built like a
// real office or scanned document, so that a full pdfcpu parse has all
// the work a real one has: many pages, each with its own page object,
// Flate-compressed content stream of text operators, a JPEG image
// XObject and a resource dictionary, plus a shared font, a page tree and
// document information. pdfcpu reads every object and loads every stream
// of such a file; writeBigPDF's one huge stream costs it next to nothing.
// seed varies the text, so that two files are never duplicates.
func writeDocumentPDF(path string, size int64, kind docKind, seed uint64) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	bw := bufio.NewWriterSize(f, 1<<20)
	rng := rand.New(rand.NewPCG(seed, 0x9e3779b97f4a7c15))

	// One page image (noise does not compress), reused by every page.
	side := kind.imageSide
	img := image.NewGray(image.Rect(0, 0, side, side))
	for i := range img.Pix {
		img.Pix[i] = uint8(rng.IntN(256))
	}
	var jpg bytes.Buffer
	if err := jpeg.Encode(&jpg, img, &jpeg.Options{Quality: 80}); err != nil {
		return err
	}

	var offs []int64
	var pos int64
	w := func(b []byte) error {
		n, err := bw.Write(b)
		pos += int64(n)
		return err
	}
	// Object numbers: 1 catalog, 2 page tree, 3 font, 4 info, then three
	// per page (page, content, image) from 5 on.
	obj := func(nr int, dict string, stream []byte) error {
		for len(offs) < nr {
			offs = append(offs, 0)
		}
		offs[nr-1] = pos
		if stream == nil {
			return w(fmt.Appendf(nil, "%d 0 obj\n%s\nendobj\n", nr, dict))
		}
		if err := w(fmt.Appendf(nil, "%d 0 obj\n%s\nstream\n", nr, dict)); err != nil {
			return err
		}
		if err := w(stream); err != nil {
			return err
		}
		return w([]byte("\nendstream\nendobj\n"))
	}
	content := func() []byte {
		var text bytes.Buffer
		text.WriteString("q 200 0 0 200 300 300 cm /Im0 Do Q\nBT /F1 9 Tf 11 TL 50 800 Td\n")
		for range kind.lines {
			text.WriteString("(")
			for range 12 {
				text.WriteString(words[rng.IntN(len(words))])
				text.WriteByte(' ')
			}
			text.WriteString(") '\n")
		}
		text.WriteString("ET\n")
		var z bytes.Buffer
		zw := zlib.NewWriter(&z)
		_, _ = zw.Write(text.Bytes())
		_ = zw.Close()
		return z.Bytes()
	}

	if err := w([]byte("%PDF-1.7\n%\xe2\xe3\xcf\xd3\n")); err != nil {
		return err
	}
	perPage := int64(jpg.Len() + len(content()) + 600)
	pages := int(max(1, (size-2000)/perPage))
	var kids strings.Builder
	for p := range pages {
		fmt.Fprintf(&kids, "%d 0 R ", 5+3*p)
	}
	if err := obj(1, "<< /Type /Catalog /Pages 2 0 R >>", nil); err != nil {
		return err
	}
	if err := obj(2, fmt.Sprintf("<< /Type /Pages /Kids [%s] /Count %d >>", kids.String(), pages), nil); err != nil {
		return err
	}
	if err := obj(3, "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>", nil); err != nil {
		return err
	}
	if err := obj(4, fmt.Sprintf("<< /Title (docservice benchmark document %d) /Producer (bench-docservice) >>", seed), nil); err != nil {
		return err
	}
	for p := range pages {
		page, cont, im := 5+3*p, 6+3*p, 7+3*p
		if err := obj(page, fmt.Sprintf("<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] "+
			"/Resources << /Font << /F1 3 0 R >> /XObject << /Im0 %d 0 R >> /ProcSet [/PDF /Text /ImageB] >> "+
			"/Contents %d 0 R >>", im, cont), nil); err != nil {
			return err
		}
		c := content()
		if err := obj(cont, fmt.Sprintf("<< /Length %d /Filter /FlateDecode >>", len(c)), c); err != nil {
			return err
		}
		if err := obj(im, fmt.Sprintf("<< /Type /XObject /Subtype /Image /Width 220 /Height 300 "+
			"/ColorSpace /DeviceGray /BitsPerComponent 8 /Filter /DCTDecode /Length %d >>", jpg.Len()), jpg.Bytes()); err != nil {
			return err
		}
	}
	xref := pos
	var b strings.Builder
	fmt.Fprintf(&b, "xref\n0 %d\n0000000000 65535 f \n", len(offs)+1)
	for _, o := range offs {
		fmt.Fprintf(&b, "%010d 00000 n \n", o)
	}
	fmt.Fprintf(&b, "trailer\n<< /Size %d /Root 1 0 R /Info 4 0 R >>\nstartxref\n%d\n%%%%EOF\n", len(offs)+1, xref)
	if err := w([]byte(b.String())); err != nil {
		return err
	}
	if err := bw.Flush(); err != nil {
		return err
	}
	return f.Close()
}

var words = strings.Fields(`invoice total amount due payment terms net thirty days account number
reference customer address street city postal code country tax rate subtotal quantity unit price
description delivery date order contract agreement party hereby section clause annex schedule
signature witness page report summary figure table result analysis quarter revenue cost margin`)
