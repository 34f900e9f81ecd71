package docservice

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"

	"github.com/gatehouse/gatehouse/internal/formdata"
	"github.com/gatehouse/gatehouse/internal/httpx"
)

const (
	// multipartSlack is what an upload's body may hold beyond the file's
	// limit: boundaries, part headers and the small category_id field.
	multipartSlack = 64 << 10
	// bodyBufferSize is formdata's buffer: the most read from the
	// connection, and scanned for the boundary, at once.
	bodyBufferSize = 1 << 20
	// bodyBuffers is how many uploads at once get that buffer; the
	// others read through smallBodyBufferSize. Each upload held its own
	// megabyte before, outside the chunk budget: 128 uploads at once took
	// docservice to 56 MiB RSS.
	bodyBuffers         = 8
	smallBodyBufferSize = 64 << 10
)

// How slowly an upload may arrive, and how many may be in progress: an
// upload holds a temporary file, a body buffer and its chunks (up to
// chunkBuffers of the uploadChunks all uploads share) while it waits for
// its client, so uploads that trickle would otherwise keep every other
// upload waiting, and enough of them would run docservice out of file
// descriptors (found in review: 4 uploads sending a byte a minute blocked
// every other user's upload; 7 000 of them, one account's, exhausted the
// descriptors). Variables, so that tests can shorten them.
var (
	// An upload must deliver uploadMinProgress bytes within every
	// uploadIdleTimeout (at least about 8.7 KB/s on average), else it
	// ends with 408; a large file on a slow link may still take hours.
	// Each such step extends the server's read timeout (bodyReadTimeout).
	uploadIdleTimeout       = 2 * time.Minute
	uploadMinProgress int64 = 1 << 20
	// chunkWait bounds how long an upload waits for a chunk while other
	// uploads hold them all (with maxUploads as below, only a bug or a
	// test makes one wait); then it gets 503 with Retry-After.
	chunkWait = 30 * time.Second
	// Uploads in progress, per user and in all. In all, as many as can
	// each be sure of a chunk: the first ones may take chunkBuffers each
	// until half the budget is held (startPipeline), which leaves room for
	// 10 of 16. More wait their turn, before their body is read or a
	// temporary file made, holding nothing but their connection: at most
	// maxUploadsWaiting of them (maxUploadsWaitingPerUser of one user;
	// 503 at once beyond) and for at most uploadQueueWait (then 429 when
	// the user's own uploads held the turn, else 503). A browser sending a
	// folder's files all at once over HTTP/2 gets them through, in turns.
	maxUploadsPerUser        = 8
	maxUploads               = uploadChunks - (uploadChunks/2 - uploadChunks/2/chunkBuffers)
	maxUploadsWaiting        = 256
	maxUploadsWaitingPerUser = 128
	uploadQueueWait          = time.Minute
	// uploadDBCheckTimeout bounds the database check an upload makes
	// before its body is read.
	uploadDBCheckTimeout = 5 * time.Second
)

// uploadGate lets uploads in, per user and in all, in turns.
type uploadGate struct {
	mu            sync.Mutex
	byUser        map[string]int // in progress
	total         int            // in progress
	waiting       int
	waitingByUser map[string]int
	changed       chan struct{} // closed (and dropped) when an upload leaves
}

// enter waits for user's turn to upload, as long as ctx and
// uploadQueueWait allow, and returns the function that ends the turn.
func (g *uploadGate) enter(ctx context.Context, user string) (leave func(), err error) {
	var timeout <-chan time.Time
	g.mu.Lock()
	for g.byUser[user] >= maxUploadsPerUser || g.total >= maxUploads {
		if timeout == nil { // first time round: join the queue
			if g.waiting >= maxUploadsWaiting || g.waitingByUser[user] >= maxUploadsWaitingPerUser {
				g.mu.Unlock()
				return nil, busy()
			}
			g.join(user, 1)
			t := time.NewTimer(uploadQueueWait)
			defer t.Stop()
			timeout = t.C
		}
		if g.changed == nil {
			g.changed = make(chan struct{})
		}
		changed := g.changed
		g.mu.Unlock()
		select {
		case <-changed:
			g.mu.Lock()
		case <-ctx.Done():
			g.mu.Lock()
			g.join(user, -1)
			g.mu.Unlock()
			return nil, ctx.Err()
		case <-timeout:
			g.mu.Lock()
			g.join(user, -1)
			own := g.byUser[user] >= maxUploadsPerUser
			g.mu.Unlock()
			if own {
				return nil, &httpx.Error{Status: http.StatusTooManyRequests, Code: "too_many_uploads", RetryAfter: 5,
					Detail: fmt.Sprintf("%d uploads of yours are in progress and none finished in %v; try again when one has", maxUploadsPerUser, uploadQueueWait)}
			}
			return nil, busy()
		}
	}
	if timeout != nil {
		g.join(user, -1)
	}
	if g.byUser == nil {
		g.byUser = map[string]int{}
	}
	g.byUser[user]++
	g.total++
	g.mu.Unlock()
	return func() {
		g.mu.Lock()
		defer g.mu.Unlock()
		g.total--
		if g.byUser[user]--; g.byUser[user] == 0 {
			delete(g.byUser, user)
		}
		if g.changed != nil {
			close(g.changed)
			g.changed = nil
		}
	}, nil
}

// join counts user's uploads waiting (d: 1 joins, -1 leaves); g.mu held.
func (g *uploadGate) join(user string, d int) {
	g.waiting += d
	if g.waitingByUser == nil {
		g.waitingByUser = map[string]int{}
	}
	if g.waitingByUser[user] += d; g.waitingByUser[user] == 0 {
		delete(g.waitingByUser, user)
	}
}

// busy is the answer when docservice has no room for another upload now.
func busy() error {
	return &httpx.Error{Status: http.StatusServiceUnavailable, Code: "busy", RetryAfter: 5,
		Detail: "too many uploads in progress; try again shortly"}
}

// bodyBufferPool hands out the large body buffers, bodyBuffers at most.
type bodyBufferPool struct {
	free chan []byte
	made atomic.Int32
}

func newBodyBufferPool() *bodyBufferPool {
	return &bodyBufferPool{free: make(chan []byte, bodyBuffers)}
}

// get returns a large buffer if one is free or may still be made, else a
// small one of its own; put takes back what get gave.
func (p *bodyBufferPool) get() []byte {
	select {
	case b := <-p.free:
		return b
	default:
	}
	if p.made.Add(1) <= bodyBuffers {
		return make([]byte, bodyBufferSize)
	}
	p.made.Add(-1)
	return make([]byte, smallBodyBufferSize)
}

func (p *bodyBufferPool) put(b []byte) {
	if len(b) == bodyBufferSize {
		p.free <- b
	}
}

// writerSyncer is an upload's temporary file as the copy loop sees it.
type writerSyncer interface {
	io.Writer
	Sync() error
}

// uploadResponse is a document plus whether it was already stored.
type uploadResponse struct {
	Document
	Duplicate bool `json:"duplicate"`
}

// received is a finished upload in its temporary file.
type received struct {
	tmp       string
	release   func() // ends the claim on tmp (FileStore.CreateTemp): see discard
	size      int64
	sha256    string
	headerOff int
	name      string // client's file name, raw
}

// uploadDocument handles POST /api/documents: multipart with a "file" part
// and an optional "category_id" part. The file is streamed, never held in
// memory: to a temporary file in STORAGE_DIR while hashing and counting,
// refused as soon as it passes the size limit or turns out not to start
// like a PDF, then checked, linked into place and recorded.
func (s *Service) uploadDocument(w http.ResponseWriter, r *http.Request) (err error) {
	p := principal(r)
	limit := s.settings.Current().MaxPDFBytes()
	bodyDone := false
	defer func() {
		if err != nil && !bodyDone {
			// The rest of the body is not wanted: close the connection
			// rather than read (or let the server read) what is left.
			w.Header().Set("Connection", "close")
		}
	}()
	if r.ContentLength > limit+multipartSlack {
		return tooLarge(limit)
	}
	leave, err := s.uploads.enter(r.Context(), p.ID.String())
	if err != nil {
		return err
	}
	defer leave()
	boundary, err := formdata.Boundary(r.Header.Get("Content-Type"))
	if err != nil {
		return httpx.Errorf(http.StatusUnsupportedMediaType, "expected a multipart/form-data body with a file field")
	}
	// With the database down the row cannot be written: say so before the
	// body comes in rather than after it (1 GiB sent for nothing). When
	// every pooled connection is in use, the database is answering others:
	// the upload goes ahead rather than wait for one (it would get 503 when
	// the wait outlasted the check).
	if st := s.pool.Stat(); st.IdleConns() > 0 || st.TotalConns() < st.MaxConns() {
		pingCtx, cancel := context.WithTimeout(r.Context(), uploadDBCheckTimeout)
		err = s.pool.Ping(pingCtx)
		cancel()
		if err != nil {
			return storeError(dbErr(err), "document")
		}
	}
	// mime/multipart reads through a 4 KiB buffer of its own; formdata
	// reads, scans for the boundary and copies out per 1 MiB (64 KiB
	// costs about 25 % more CPU), unless bodyBuffers uploads already do.
	buf := s.bodyBuffers.get()
	defer s.bodyBuffers.put(buf)
	mr := formdata.NewReaderBuffer(&progressReader{
		r:  http.MaxBytesReader(w, r.Body, limit+multipartSlack),
		rc: http.NewResponseController(w),
	}, boundary, buf)

	var up *received
	defer func() {
		if up != nil {
			if rerr := up.discard(s.files); rerr != nil {
				s.log.Error("remove temporary upload", "file", up.tmp, "err", rerr)
			}
		}
	}()
	var categoryField *string
	for {
		part, err := mr.NextPart()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return bodyError(err, limit)
		}
		switch part.FormName() {
		case "file":
			if up != nil {
				return httpx.Errorf(http.StatusBadRequest, "send one file per upload")
			}
			up, err = s.receive(r.Context(), part, limit)
			if err != nil {
				return err
			}
		case "category_id":
			if categoryField != nil {
				// Which one the client meant is a guess; don't.
				return httpx.Invalid([]httpx.FieldError{{Field: "category_id", Message: "given more than once"}})
			}
			b, err := io.ReadAll(io.LimitReader(part, 101))
			if err != nil {
				return bodyError(err, limit)
			}
			v := strings.TrimSpace(string(b))
			categoryField = &v
		default:
			// Other fields (a client's extras) are read past, within the
			// body limit.
			if _, err := io.Copy(io.Discard, part); err != nil {
				return bodyError(err, limit)
			}
		}
	}
	bodyDone = true
	if up == nil {
		return httpx.Invalid([]httpx.FieldError{{Field: "file", Message: "is required"}})
	}
	var category *uuid.UUID
	if categoryField != nil && *categoryField != "" && *categoryField != "null" {
		id, err := uuid.Parse(*categoryField)
		if err != nil {
			return httpx.Invalid([]httpx.FieldError{{Field: "category_id", Message: "must be a UUID"}})
		}
		category = &id
	}

	info, err := s.inspect(r, up)
	if err != nil {
		return err
	}
	if d, err := s.store.FindBySHA256(r.Context(), p.ID, up.sha256); err == nil {
		httpx.WriteJSON(w, http.StatusOK, uploadResponse{Document: d, Duplicate: true})
		return nil
	} else if !errors.Is(err, ErrNotFound) {
		return storeError(err, "document")
	}

	stored := SanitizePDFName(baseName(up.name))
	nd := NewDocument{
		OwnerID: p.ID, CategoryID: category, OriginalFilename: cleanOriginal(up.name), Title: info.Title,
		Size: up.size, SHA256: up.sha256, PageCount: info.Pages, Encrypted: info.Encrypted,
	}
	d, err := s.store.CreateDocument(r.Context(), nd, func(dir string, reserved func(string) (bool, error)) (string, func() error, error) {
		name, err := s.files.LinkNew(up.tmp, dir, stored, reserved)
		if err != nil {
			return "", nil, &fileError{err}
		}
		placed := joinPath(dir, name)
		// The temporary file is still there, so undoing removes a second
		// name of a file that keeps another.
		return name, func() error { return s.files.Unlink(placed, up.tmp) }, nil
	})
	switch {
	case errors.Is(err, ErrDuplicate):
		// The same content arrived twice at once; the other upload won.
		d, err := s.store.FindBySHA256(r.Context(), p.ID, up.sha256)
		if err != nil {
			return storeError(err, "document")
		}
		httpx.WriteJSON(w, http.StatusOK, uploadResponse{Document: d, Duplicate: true})
		return nil
	case errors.Is(err, ErrNotFound):
		return httpx.Invalid([]httpx.FieldError{{Field: "category_id", Message: "no such category"}})
	case err != nil:
		return storeError(err, "document")
	}
	w.Header().Set("Location", "/api/documents/"+d.ID.String())
	httpx.WriteJSON(w, http.StatusCreated, uploadResponse{Document: d})
	return nil
}

// discard removes the temporary file, then ends the claim on it: in that
// order, so no cleaner sees the file unclaimed while it still has its name.
func (u *received) discard(files *FileStore) error {
	err := files.RemoveTemp(u.tmp)
	u.release()
	return err
}

// receive streams one file part to a new temporary file, hashing and
// counting. The caller removes the temporary file (up.tmp) in all cases.
func (s *Service) receive(ctx context.Context, part *formdata.Part, limit int64) (*received, error) {
	// Unlike part.FileName(), keep what the client sent, for
	// original_filename; the stored name is made from its last element.
	name := part.FileName()
	if _, params, err := mime.ParseMediaType(part.Header.Get("Content-Disposition")); err == nil && params["filename"] != "" {
		name = params["filename"]
	}
	f, tmp, release, err := s.files.CreateTemp()
	if err != nil {
		return nil, storeError(err, "document")
	}
	up := &received{tmp: tmp, release: release, name: name}
	var out writerSyncer = newDirectFile(f)
	if s.wrapTemp != nil {
		out = s.wrapTemp(out)
	}
	h := sha256.New()
	err = func() error {
		defer f.Close()
		// This goroutine reads, checks and counts; the chunks are hashed
		// and written on goroutines of their own, so that the network,
		// SHA-256 and the disk overlap.
		waitCtx, cancel := context.WithTimeout(ctx, chunkWait)
		w, err := startPipeline(waitCtx, s.chunkSlots,
			func(b []byte) error { h.Write(b); return nil },
			func(b []byte) error { _, err := out.Write(b); return err },
		)
		cancel()
		if err != nil {
			if ctx.Err() == nil {
				// Every chunk stayed in use by other uploads.
				return busy()
			}
			// The client went away (or the server is stopping) while
			// waiting for a chunk.
			return err
		}
		defer w.stop()
		first := true
		for {
			bp := w.buffer()
			buf := *bp
			n, rerr := fill(part, buf)
			if n > 0 {
				if first {
					first = false
					off := pdfHeaderOffset(buf[:n])
					if off < 0 {
						_ = w.send(bp, 0)
						return &httpx.Error{Status: http.StatusUnsupportedMediaType, Code: "not_a_pdf",
							Detail: "not a PDF: no %PDF- header in the first 1024 bytes"}
					}
					up.headerOff = off
				}
				up.size += int64(n)
				if up.size > limit {
					_ = w.send(bp, 0)
					return tooLarge(limit)
				}
			}
			if err := w.send(bp, n); err != nil {
				return storeError(err, "document")
			}
			if rerr == io.EOF {
				break
			}
			if rerr != nil {
				return bodyError(rerr, limit)
			}
		}
		if err := w.stop(); err != nil {
			return storeError(err, "document")
		}
		if up.size == 0 {
			return &httpx.Error{Status: http.StatusBadRequest, Code: "empty_file", Detail: "the file is empty"}
		}
		// Durable before it is given its name: a crash after the rename
		// must not leave a named file with missing blocks.
		if err := out.Sync(); err != nil {
			return storeError(err, "document")
		}
		return nil
	}()
	if err != nil {
		_ = up.discard(s.files)
		return nil, err
	}
	up.sha256 = hex.EncodeToString(h.Sum(nil))
	return up, nil
}

// fill reads from r until buf is full or r ends, and returns io.EOF
// (only) when r ended at its end: a part cut short is an error, never a
// complete file.
func fill(r io.Reader, buf []byte) (int, error) {
	n := 0
	for n < len(buf) {
		m, err := r.Read(buf[n:])
		n += m
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// inspect runs the structural check on a received upload.
func (s *Service) inspect(r *http.Request, up *received) (pdfInfo, error) {
	f, err := s.files.Open(up.tmp)
	if err != nil {
		return pdfInfo{}, err
	}
	defer f.Close()
	info, err := checkPDF(r.Context(), f, up.size, up.headerOff, s.parseSlots)
	var np *errNotPDF
	if errors.As(err, &np) {
		return info, &httpx.Error{Status: http.StatusUnsupportedMediaType, Code: "not_a_pdf", Detail: "not a valid PDF: " + np.reason,
			Cause: err}
	}
	return info, err
}

func tooLarge(limit int64) error {
	return &httpx.Error{Status: http.StatusRequestEntityTooLarge, Code: "too_large",
		Detail: fmt.Sprintf("the file is larger than the limit of %d MB", limit>>20)}
}

// bodyError maps a failure to read the request body.
func bodyError(err error, limit int64) error {
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return tooLarge(limit)
	}
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return &httpx.Error{Status: http.StatusRequestTimeout, Code: "upload_too_slow", Cause: err,
			Detail: fmt.Sprintf("the upload arrived too slowly: less than %d KiB in %v", uploadMinProgress>>10, uploadIdleTimeout)}
	}
	return &httpx.Error{Status: http.StatusBadRequest, Detail: "the upload was cut short or is not well-formed multipart", Cause: err}
}

// baseName is the last element of a client's file name, whichever
// separator its system uses ("C:\\scans\\x.pdf", "../../x.pdf").
func baseName(name string) string {
	name = strings.TrimRight(name, `/\`)
	if i := strings.LastIndexAny(name, `/\`); i >= 0 {
		name = name[i+1:]
	}
	return name
}

// cleanOriginal keeps the client's file name for display and search, as
// valid UTF-8 without control characters (PostgreSQL refuses NUL).
func cleanOriginal(name string) string {
	name = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return -1
		}
		return r
	}, strings.ToValidUTF8(name, ""))
	return truncateUTF8(name, 1000)
}

// progressReader moves the connection's read deadline uploadIdleTimeout
// ahead each time uploadMinProgress more bytes have arrived, so an upload
// may take as long as it needs while data flows at a modest rate, and ends
// when its client stalls or trickles (a byte now and then no longer
// counts).
type progressReader struct {
	r       io.Reader
	rc      *http.ResponseController
	since   int64 // bytes read since the deadline last moved
	started bool
}

func (p *progressReader) Read(b []byte) (int, error) {
	if !p.started {
		p.started = true
		_ = p.rc.SetReadDeadline(time.Now().Add(uploadIdleTimeout))
	}
	n, err := p.r.Read(b)
	if p.since += int64(n); p.since >= uploadMinProgress {
		p.since = 0
		_ = p.rc.SetReadDeadline(time.Now().Add(uploadIdleTimeout))
	}
	return n, err
}
