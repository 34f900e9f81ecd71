package docservice

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"testing"
)

const testBoundary = "docservice-test-boundary"

// rawMultipart is an upload body with testBoundary: the file part, then
// extra fields in order, then the final delimiter unless cut.
func rawMultipart(content []byte, fields [][2]string, final bool) []byte {
	var b bytes.Buffer
	b.WriteString("--" + testBoundary + "\r\n" +
		`Content-Disposition: form-data; name="file"; filename="big.pdf"` + "\r\n" +
		"Content-Type: application/pdf\r\n\r\n")
	b.Write(content)
	for _, f := range fields {
		fmt.Fprintf(&b, "\r\n--%s\r\nContent-Disposition: form-data; name=%q\r\n\r\n%s", testBoundary, f[0], f[1])
	}
	if final {
		b.WriteString("\r\n--" + testBoundary + "--\r\n")
	}
	return b.Bytes()
}

// Files of several MiB, whose ends fall on and around the 1 MiB chunks
// and the 4 KiB blocks of direct writes, and whose content holds near
// misses of the delimiter, are stored byte for byte, hashed right, and a
// field after the file part still counts.
func TestUploadLargeExact(t *testing.T) {
	e := newEnv(t)
	u := newUser()
	cat := e.mustCategory(u, "Large", "")
	rng := rand.New(rand.NewPCG(7, 8))
	for _, size := range []int{1<<20 - 1, 1 << 20, 1<<20 + 1, 2<<20 + 4095, 3<<20 + 12345} {
		// Random bytes (like compressed streams) with the delimiter's
		// near misses sprinkled in.
		stream := make([]byte, size)
		for i := range stream {
			stream[i] = byte(rng.Uint32())
		}
		for _, miss := range []string{"\r\n--" + testBoundary + "x", "\r\n--" + testBoundary + "-a", "\r\n--" + testBoundary[:10]} {
			for range 20 {
				copy(stream[rng.IntN(size-len(miss)):], miss)
			}
		}
		content := makePDFStream("large", 1, stream)
		content = content[:len(content):len(content)]
		body := rawMultipart(content, [][2]string{{"category_id", docID(cat)}, {"extra", "ignored"}}, true)
		r := e.do(&u, "POST", "/api/documents", bytes.NewReader(body),
			map[string]string{"Content-Type": "multipart/form-data; boundary=" + testBoundary})
		if r.status != http.StatusCreated {
			t.Fatalf("size %d: status %d: %s", len(content), r.status, r.body)
		}
		d := r.json(t)
		sum := sha256.Sum256(content)
		if d["sha256"] != hex.EncodeToString(sum[:]) || d["size"] != float64(len(content)) {
			t.Fatalf("size %d: stored as %v bytes, sha256 %v", len(content), d["size"], d["sha256"])
		}
		if d["category_path"] != "Large" {
			t.Fatalf("size %d: the field after the file was lost: category %v", len(content), d["category_path"])
		}
		got := e.do(&u, "GET", "/api/documents/"+docID(d)+"/file", nil, nil)
		if !bytes.Equal(got.body, content) {
			t.Fatalf("size %d: the stored file differs from the upload (%d bytes back)", len(content), len(got.body))
		}
	}
	if left := e.tempFiles(); len(left) > 0 {
		t.Fatalf("temporary files left: %v", left)
	}
}

// Without a length, the limit is found inside a large read: one byte over
// is refused and leaves nothing; exactly the limit is stored.
func TestUploadLimitInsideBuffer(t *testing.T) {
	e := newEnv(t)
	setLimitMB(t, e, 1)
	u := newUser()
	send := func(content []byte) resp {
		body := rawMultipart(content, nil, true)
		// io.MultiReader hides the length: the request is chunked.
		return e.do(&u, "POST", "/api/documents", io.MultiReader(bytes.NewReader(body)),
			map[string]string{"Content-Type": "multipart/form-data; boundary=" + testBoundary})
	}
	exact, over := pdfOfSize(t, 1<<20), pdfOfSize(t, 1<<20+1)
	if r := send(over); r.status != http.StatusRequestEntityTooLarge {
		t.Fatalf("one byte over: %d %s", r.status, r.body)
	}
	if left, files := e.tempFiles(), e.storedFiles(); len(left) > 0 || len(files) > 0 {
		t.Fatalf("left behind: temporary %v, stored %v", left, files)
	}
	if r := send(exact); r.status != http.StatusCreated {
		t.Fatalf("exactly the limit: %d %s", r.status, r.body)
	}
}

// pdfOfSize is a valid PDF of exactly n bytes.
func pdfOfSize(t *testing.T, n int) []byte {
	pad := n - len(makePDF("sized", 1, 0))
	for range 3 { // the stream's /Length has more digits as it grows
		b := makePDF("sized", 1, pad)
		if len(b) == n {
			return b
		}
		pad -= len(b) - n
	}
	t.Fatalf("no PDF of %d bytes", n)
	return nil
}

// A body that ends without its final delimiter was cut short, even when
// the file part looks complete: refused, nothing kept.
func TestUploadWithoutFinalDelimiter(t *testing.T) {
	e := newEnv(t)
	u := newUser()
	content := makePDF("cut", 1, 300<<10)
	for name, body := range map[string][]byte{
		"after the file":          rawMultipart(content, nil, false),
		"after another field":     rawMultipart(content, [][2]string{{"extra", "x"}}, false),
		"inside the delimiter":    append(rawMultipart(content, nil, false), "\r\n--"+testBoundary[:5]...),
		"before a part's headers": append(rawMultipart(content, nil, false), "\r\n--"+testBoundary+"\r\nContent-Dis"...),
	} {
		r := e.do(&u, "POST", "/api/documents", bytes.NewReader(body),
			map[string]string{"Content-Type": "multipart/form-data; boundary=" + testBoundary})
		if r.status != http.StatusBadRequest {
			t.Errorf("%s: status %d: %s", name, r.status, r.body)
		}
	}
	if left, files := e.tempFiles(), e.storedFiles(); len(left) > 0 || len(files) > 0 {
		t.Fatalf("left behind: temporary %v, stored %v", left, files)
	}
}

// The temporary file's writer stores exactly what it is given, whatever
// the lengths and alignment of the writes (O_DIRECT where the file system
// takes it, ordinary writes for the rest).
func TestDirectFileWrites(t *testing.T) {
	for name, sizes := range map[string][]int{
		"aligned chunks then a tail": {chunkSize, chunkSize, 4096, 12345},
		"tail only":                  {100},
		"unaligned then aligned":     {5000, chunkSize},
		"empty writes":               {0, chunkSize, 0},
	} {
		f, err := os.Create(filepath.Join(t.TempDir(), "f"))
		if err != nil {
			t.Fatal(err)
		}
		w := newDirectFile(f)
		var want []byte
		for i, n := range sizes {
			bp := chunkPool.Get().(*[]byte)
			buf := (*bp)[:n]
			for j := range buf {
				buf[j] = byte(i*7 + j)
			}
			if name == "unaligned then aligned" && i == 0 {
				buf = (*bp)[1 : n+1] // an unaligned buffer
				for j := range buf {
					buf[j] = byte(j)
				}
			}
			if m, err := w.Write(buf); err != nil || m != len(buf) {
				t.Fatalf("%s: write %d: %d, %v", name, len(buf), m, err)
			}
			want = append(want, buf...)
			chunkPool.Put(bp)
		}
		if err := w.Sync(); err != nil {
			t.Fatal(err)
		}
		f.Close()
		got, _ := os.ReadFile(f.Name())
		if !bytes.Equal(got, want) {
			t.Fatalf("%s: file holds %d bytes, want %d (or different content)", name, len(got), len(want))
		}
	}
}

// At most bodyBuffers uploads at once read through a large buffer; the
// rest get small ones, so memory does not grow a megabyte per upload.
func TestBodyBufferPool(t *testing.T) {
	p := newBodyBufferPool()
	var got [][]byte
	for range bodyBuffers {
		b := p.get()
		if len(b) != bodyBufferSize {
			t.Fatalf("buffer %d: %d bytes, want %d", len(got), len(b), bodyBufferSize)
		}
		got = append(got, b)
	}
	small := p.get()
	if len(small) != smallBodyBufferSize {
		t.Fatalf("buffer beyond the pool: %d bytes, want %d", len(small), smallBodyBufferSize)
	}
	p.put(small) // not kept
	p.put(got[0])
	if b := p.get(); &b[0] != &got[0][0] {
		t.Fatal("a returned large buffer was not reused")
	}
	if b := p.get(); len(b) != smallBodyBufferSize {
		t.Fatalf("the pool made more than %d large buffers", bodyBuffers)
	}
}
