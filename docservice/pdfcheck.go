package docservice

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strconv"
	"strings"

	"github.com/pdfcpu/pdfcpu/pkg/api"
	"github.com/pdfcpu/pdfcpu/pkg/pdfcpu"
	"github.com/pdfcpu/pdfcpu/pkg/pdfcpu/model"
	"github.com/pdfcpu/pdfcpu/pkg/pdfcpu/types"
)

// headerWindow is how far into a file "%PDF-" may start. Readers such as
// Acrobat accept up to 1024 bytes of junk before it (a BOM, a mail
// gateway's prefix), and so do we.
const headerWindow = 1024

// fullCheckMaxBytes is the largest file parsed completely with pdfcpu.
// pdfcpu loads every stream of a file into memory, so a full parse costs
// about the file's size in RAM; above this size docservice checks the
// structure that frames the file (header, trailer, cross-reference
// section) instead, keeping memory flat whatever the upload size.
const fullCheckMaxBytes = 16 << 20

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
// content cannot be without the password.
func checkPDF(ctx context.Context, f io.ReadSeeker, size int64, headerOff int) (pdfInfo, error) {
	if size > fullCheckMaxBytes {
		return checkPDFFrame(f, size, headerOff)
	}
	return checkPDFFull(ctx, f)
}

func checkPDFFull(c context.Context, f io.ReadSeeker) (info pdfInfo, err error) {
	defer func() {
		// A damaged file must be a refusal, never a crash of the service.
		if p := recover(); p != nil {
			err = notPDF("the PDF structure could not be read")
		}
	}()
	conf := model.NewDefaultConfiguration()
	conf.ValidationMode = model.ValidationRelaxed
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
		title = truncateUTF8(title, 500)
		info.Title = &title
	}
	// An owner password alone (empty user password) restricts editing, not
	// reading: such a file is not "encrypted" for a user.
	return info, nil
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

// tailWindow is how much of a large file's end is read to find the trailer.
const tailWindow = 64 << 10

var (
	startxrefRE = regexp.MustCompile(`startxref\s+(\d+)\s+%%EOF`)
	objHeadRE   = regexp.MustCompile(`^\s*\d+\s+\d+\s+obj\b`)
)

// checkPDFFrame checks a large file with bounded memory: the last
// cross-reference section must be where the final startxref says, and its
// trailer (classic or cross-reference stream) must name a catalog. That
// catches truncated and non-PDF files; page count and title are left
// unknown. The trailer's /Encrypt marks encrypted files.
func checkPDFFrame(f io.ReadSeeker, size int64, headerOff int) (pdfInfo, error) {
	var info pdfInfo
	tail := make([]byte, min(size, tailWindow))
	if _, err := f.Seek(size-int64(len(tail)), io.SeekStart); err != nil {
		return info, err
	}
	if _, err := io.ReadFull(f, tail); err != nil {
		return info, err
	}
	ms := startxrefRE.FindAllSubmatchIndex(tail, -1)
	if len(ms) == 0 {
		return info, notPDF("not a complete PDF: no startxref/%%%%EOF at the end (truncated?)")
	}
	m := ms[len(ms)-1]
	off, err := strconv.ParseInt(string(tail[m[2]:m[3]]), 10, 64)
	if err != nil {
		return info, notPDF("not a complete PDF: bad startxref")
	}
	// Offsets count from the header when junk precedes it.
	var section []byte
	for _, o := range []int64{off + int64(headerOff), off} {
		if o <= 0 || o >= size {
			continue
		}
		buf := make([]byte, min(4096, size-o))
		if _, err := f.Seek(o, io.SeekStart); err != nil {
			return info, err
		}
		if _, err := io.ReadFull(f, buf); err != nil {
			return info, err
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
		return info, notPDF("not a complete PDF: startxref does not point at a cross-reference section")
	}
	var dictSrc string
	if objHeadRE.Match(section) {
		// Cross-reference stream: its dictionary is the trailer.
		s := string(section)
		i, j := strings.Index(s, "obj"), strings.Index(s, "stream")
		if j < 0 || j < i {
			return info, notPDF("not a complete PDF: damaged cross-reference stream")
		}
		dictSrc = s[i+3 : j]
	} else {
		// Classic table: the trailer dictionary is the last one before startxref.
		s := string(tail[:m[0]])
		i := strings.LastIndex(s, "trailer")
		if i < 0 {
			return info, notPDF("not a complete PDF: no trailer")
		}
		dictSrc = s[i+len("trailer"):]
	}
	o, err := model.ParseObjectContext(context.Background(), &dictSrc, 0, 16)
	if err != nil {
		return info, notPDF("not a complete PDF: damaged trailer")
	}
	d, ok := o.(types.Dict)
	if !ok {
		return info, notPDF("not a complete PDF: damaged trailer")
	}
	if _, ok := d.Find("Root"); !ok {
		if _, prev := d.Find("Prev"); !prev {
			return info, notPDF("not a complete PDF: the trailer names no document catalog")
		}
	}
	if _, ok := d.Find("Encrypt"); ok {
		info.Encrypted = true
	}
	return info, nil
}
