package formdata

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"mime/multipart"
	"reflect"
	"strings"
	"testing"
	"testing/iotest"
)

// outcome is what a reader made of a body: each part's name, file name,
// headers and body, and how the reading ended.
type outcome struct {
	Parts []partOutcome
	End   string // "eof" or "error"
}

type partOutcome struct {
	Name, File string
	Header     map[string][]string
	Body       []byte
	Err        bool
}

type anyPart interface {
	io.Reader
	FormName() string
	FileName() string
}

func collect(next func() (anyPart, map[string][]string, error)) outcome {
	var o outcome
	for range 50 {
		p, h, err := next()
		// mime/multipart wraps io.EOF in the error for a body cut short;
		// only the bare io.EOF means the final delimiter was read.
		if err == io.EOF {
			o.End = "eof"
			return o
		}
		if err != nil {
			o.End = "error"
			return o
		}
		// Read with odd sizes, small (served from the buffer) and large
		// (straight into buf), to cross every internal boundary.
		var body bytes.Buffer
		buf := make([]byte, 70000)
		var rerr error
		for i := 0; ; i++ {
			n, err := p.Read(buf[:readSizes[i%len(readSizes)]])
			body.Write(buf[:n])
			if err != nil {
				if !errors.Is(err, io.EOF) {
					rerr = err
				}
				break
			}
		}
		o.Parts = append(o.Parts, partOutcome{Name: p.FormName(), File: p.FileName(), Header: h,
			Body: body.Bytes(), Err: rerr != nil})
	}
	o.End = "too many parts"
	return o
}

var readSizes = []int{777, 70000, 1, 4096, 5000, 9000, 65536}

func readStd(body []byte, boundary string) outcome {
	mr := multipart.NewReader(iotest.HalfReader(bytes.NewReader(body)), boundary)
	return collect(func() (anyPart, map[string][]string, error) {
		p, err := mr.NextPart()
		if err != nil {
			return nil, nil, err
		}
		return p, p.Header, nil
	})
}

func readOurs(body []byte, boundary string, bufSize int, chunk func(io.Reader) io.Reader) outcome {
	mr := NewReader(chunk(bytes.NewReader(body)), boundary, bufSize)
	return collect(func() (anyPart, map[string][]string, error) {
		p, err := mr.NextPart()
		if err != nil {
			return nil, nil, err
		}
		return p, p.Header, nil
	})
}

// randomReader returns what r holds in reads of random sizes.
type randomReader struct {
	r   io.Reader
	rng *rand.Rand
}

func (r *randomReader) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	return r.r.Read(p[:1+r.rng.IntN(min(len(p), 9000))])
}

// randomBody builds a multipart body with the awkward parts real and
// hostile clients send: bodies holding near-delimiters, "\n" line ends,
// transport padding, preamble and epilogue, a missing final line end,
// quoted-printable, truncation.
func randomBody(rng *rand.Rand, boundary string) []byte {
	nl := "\r\n"
	if rng.IntN(5) == 0 {
		nl = "\n"
	}
	pieces := []string{"a", "%PDF-1.7", " ", "\r", "\n", "\r\n", "-", "--", "\r\n--", "\r\n--" + boundary + "X",
		"\r\n--" + boundary + "-x", "--" + boundary + "x", "\n--" + boundary[:len(boundary)/2], "\r\n--" + boundary,
		"=41", "=\r\n", strings.Repeat("z", 3000)}
	var b strings.Builder
	if rng.IntN(3) == 0 {
		b.WriteString("preamble line" + nl + "--not-it" + nl)
	}
	parts := rng.IntN(4)
	for i := range parts {
		pad := ""
		if rng.IntN(4) == 0 {
			pad = " \t "
		}
		b.WriteString("--" + boundary + pad + nl)
		switch rng.IntN(6) {
		case 0:
			b.WriteString(`Content-Disposition: form-data; name="category_id"` + nl)
		case 1:
			b.WriteString(`Content-Disposition: form-data; name="file"; filename="C:\\scans\\x.pdf"` + nl +
				"Content-Type: application/pdf" + nl + "Content-Transfer-Encoding: quoted-printable" + nl)
		case 2:
			b.WriteString(`Content-Disposition: attachment; name="file"` + nl)
		default:
			b.WriteString(fmt.Sprintf(`Content-Disposition: form-data; name="f%d"; filename="../x%d.pdf"`, i, i) + nl +
				"Content-Type: application/pdf" + nl)
		}
		b.WriteString(nl)
		if rng.IntN(4) != 0 {
			for range rng.IntN(40) {
				b.WriteString(pieces[rng.IntN(len(pieces))])
			}
			if rng.IntN(3) == 0 {
				b.WriteString(strings.Repeat("y", rng.IntN(12000)))
			}
			b.WriteString(nl)
		} else if rng.IntN(2) == 0 {
			b.WriteString(nl) // an empty body
		}
	}
	b.WriteString("--" + boundary + "--")
	switch rng.IntN(3) {
	case 0:
		b.WriteString(nl)
	case 1:
		b.WriteString(nl + "epilogue" + nl)
	}
	out := []byte(b.String())
	if rng.IntN(5) == 0 {
		out = out[:rng.IntN(len(out)+1)]
	}
	return out
}

// The reader makes of every body what mime/multipart makes of it, whatever
// the buffer size and however the input arrives.
func TestSameAsMimeMultipart(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	chunkers := map[string]func(io.Reader) io.Reader{
		"whole":    func(r io.Reader) io.Reader { return r },
		"one-byte": iotest.OneByteReader,
		"random":   func(r io.Reader) io.Reader { return &randomReader{r: r, rng: rand.New(rand.NewPCG(3, 4))} },
	}
	for i := range 2000 {
		boundary := []string{"b", "xYz0123", "----WebKitFormBoundary7MA4YWxkTrZu0gW", strings.Repeat("q", 70)}[i%4]
		body := randomBody(rng, boundary)
		want := readStd(body, boundary)
		for name, chunk := range chunkers {
			if name == "one-byte" && i%10 != 0 {
				continue // slow; every tenth body
			}
			for _, size := range []int{0, 5000, 1 << 20} {
				got := readOurs(body, boundary, size, chunk)
				if got.End == "error" && want.End == "eof" && !hasFinal(body, boundary) {
					// mime/multipart returns a bare io.EOF for a body cut
					// inside a part's headers; this reader says it was cut.
					got.End = "eof"
				}
				if !reflect.DeepEqual(got, want) {
					t.Fatalf("body %d (%s reads, buffer %d) %.2000q:\ngot  %.2000v\nwant %.2000v", i, name, size, body, got, want)
				}
			}
		}
	}
}

func hasFinal(body []byte, boundary string) bool {
	return bytes.HasPrefix(body, []byte("--"+boundary+"--")) || bytes.Contains(body, []byte("\n--"+boundary+"--"))
}

func FuzzSameAsMimeMultipart(f *testing.F) {
	f.Add([]byte("--b\r\nContent-Disposition: form-data; name=\"file\"\r\n\r\nabc\r\n--b--\r\n"), 4096)
	f.Add([]byte("--b\nContent-Disposition: form-data; name=\"a\"\n\n--b\n\n--b--"), 1)
	f.Fuzz(func(t *testing.T, body []byte, size int) {
		want := readStd(body, "b")
		got := readOurs(body, "b", size%100000, func(r io.Reader) io.Reader { return r })
		if got.End == "error" && want.End == "eof" && !hasFinal(body, "b") {
			got.End = "eof"
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("%q:\ngot  %+v\nwant %+v", body, got, want)
		}
	})
}

// A delimiter split across two buffer fills at every possible point still
// ends the part where it should, and a field after the file still reads.
func TestDelimiterAcrossBufferEdge(t *testing.T) {
	const boundary = "edge-boundary"
	head := "--" + boundary + "\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.pdf\"\r\n\r\n"
	tail := "\r\n--" + boundary + "\r\nContent-Disposition: form-data; name=\"category_id\"\r\n\r\nnull\r\n--" + boundary + "--\r\n"
	for cut := 4096 - len(tail) - len(head); cut < 4096+40; cut++ {
		content := bytes.Repeat([]byte{'x'}, cut)
		body := append(append([]byte(head), content...), tail...)
		// Reads of 4096 bytes exactly: the buffer's edge falls at every
		// offset of the delimiter as cut grows.
		mr := NewReader(&fixedReader{r: bytes.NewReader(body), n: 4096}, boundary, 4096)
		p, err := mr.NextPart()
		if err != nil || p.FormName() != "file" || p.FileName() != "a.pdf" {
			t.Fatalf("cut %d: first part: %v", cut, err)
		}
		got, err := io.ReadAll(p)
		if err != nil || !bytes.Equal(got, content) {
			t.Fatalf("cut %d: file body %d bytes, err %v", cut, len(got), err)
		}
		p, err = mr.NextPart()
		if err != nil || p.FormName() != "category_id" {
			t.Fatalf("cut %d: second part: %v", cut, err)
		}
		if v, _ := io.ReadAll(p); string(v) != "null" {
			t.Fatalf("cut %d: category_id %q", cut, v)
		}
		if _, err := mr.NextPart(); !errors.Is(err, io.EOF) {
			t.Fatalf("cut %d: after the last part: %v", cut, err)
		}
	}
}

type fixedReader struct {
	r io.Reader
	n int
}

func (f *fixedReader) Read(p []byte) (int, error) { return f.r.Read(p[:min(len(p), f.n)]) }

// A read error (http.MaxBytesReader's, a dropped connection) reaches the
// part's reader after the body before it, and stays.
func TestReadErrorSticks(t *testing.T) {
	boom := errors.New("boom")
	body := "--b\r\nContent-Disposition: form-data; name=\"file\"\r\n\r\n" + strings.Repeat("x", 10000)
	mr := NewReader(io.MultiReader(strings.NewReader(body), iotest.ErrReader(boom)), "b", 4096)
	p, err := mr.NextPart()
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(p)
	if !errors.Is(err, boom) || len(got) != 10000 {
		t.Fatalf("read %d bytes, err %v", len(got), err)
	}
	if _, err := p.Read(make([]byte, 10)); !errors.Is(err, boom) {
		t.Fatalf("second read: %v", err)
	}
	if _, err := mr.NextPart(); !errors.Is(err, boom) {
		t.Fatalf("next part: %v", err)
	}
}

func TestHeaderTooLarge(t *testing.T) {
	body := "--b\r\nContent-Disposition: form-data; name=\"file\"\r\n" +
		strings.Repeat("X-Pad: "+strings.Repeat("p", 1000)+"\r\n", 70) + "\r\nabc\r\n--b--\r\n"
	if _, err := NewReader(strings.NewReader(body), "b", 1<<20).NextPart(); err == nil {
		t.Fatal("a 70 KB part header was accepted")
	}
}

func TestBoundary(t *testing.T) {
	for ct, want := range map[string]string{
		"multipart/form-data; boundary=abc":           "abc",
		`multipart/form-data; boundary="a b:c"`:       "a b:c",
		"Multipart/Form-Data; charset=x; boundary=z":  "z",
		"multipart/form-data":                         "",
		"multipart/form-data; boundary=":              "",
		"multipart/mixed; boundary=abc":               "",
		"application/pdf":                             "",
		"":                                            "",
		"multipart/form-data; boundary=a; boundary=b": "",
	} {
		got, err := Boundary(ct)
		if got != want || (err != nil) != (want == "") {
			t.Errorf("Boundary(%q) = %q, %v; want %q", ct, got, err, want)
		}
	}
}

func benchmarkRead(b *testing.B, read func(body []byte, boundary string, buf []byte)) {
	const size = 64 << 20
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	w, _ := mw.CreateFormFile("file", "x.pdf")
	// Random bytes, like a PDF's compressed streams: a '\r' every 256
	// bytes on average.
	content := make([]byte, size)
	rng := rand.New(rand.NewPCG(5, 6))
	for i := range content {
		content[i] = byte(rng.Uint32())
	}
	_, _ = w.Write(content)
	_ = mw.Close()
	buf := make([]byte, 1<<20)
	b.SetBytes(size)
	for b.Loop() {
		read(body.Bytes(), mw.Boundary(), buf)
	}
}

func BenchmarkFileFormdata(b *testing.B) {
	benchmarkRead(b, func(body []byte, boundary string, buf []byte) {
		p, _ := NewReader(bytes.NewReader(body), boundary, 1<<20).NextPart()
		_, _ = io.CopyBuffer(io.Discard, struct{ io.Reader }{p}, buf)
	})
}

func BenchmarkFileMimeMultipart(b *testing.B) {
	benchmarkRead(b, func(body []byte, boundary string, buf []byte) {
		p, _ := multipart.NewReader(bytes.NewReader(body), boundary).NextPart()
		_, _ = io.CopyBuffer(io.Discard, struct{ io.Reader }{p}, buf)
	})
}
