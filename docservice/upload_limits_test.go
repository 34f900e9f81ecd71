package docservice

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// setVar sets *p to v for the test.
func setVar[T any](t *testing.T, p *T, v T) {
	old := *p
	*p = v
	t.Cleanup(func() { *p = old })
}

// stalledUpload starts an upload of 5 MiB that sends its file part's
// first bytes and then nothing, as an attacker holding an upload open
// does. It returns once the upload has its temporary file.
func (e *env) stalledUpload(t *testing.T, u user) net.Conn {
	t.Helper()
	before := len(e.tempFiles())
	host := strings.TrimPrefix(e.srv.URL, "http://")
	c, err := net.Dial("tcp", host)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	const boundary = "stall"
	head := "--" + boundary + "\r\nContent-Disposition: form-data; name=\"file\"; filename=\"slow.pdf\"\r\n" +
		"Content-Type: application/pdf\r\n\r\n%PDF-1.4\n"
	fmt.Fprintf(c, "POST /api/documents HTTP/1.1\r\nHost: %s\r\nX-User-Id: %s\r\n"+
		"Content-Type: multipart/form-data; boundary=%s\r\nContent-Length: %d\r\n\r\n%s",
		host, u.id, boundary, 5<<20, head)
	deadline := time.Now().Add(5 * time.Second)
	for len(e.tempFiles()) <= before {
		if time.Now().After(deadline) {
			t.Fatal("the stalled upload never started")
		}
		time.Sleep(10 * time.Millisecond)
	}
	return c
}

func (e *env) uploadsInProgress() int {
	e.svc.uploads.mu.Lock()
	defer e.svc.uploads.mu.Unlock()
	return e.svc.uploads.total
}

// waitNoUploads waits until no upload is in progress and no temporary
// file is left.
func (e *env) waitNoUploads(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for e.uploadsInProgress() > 0 || len(e.tempFiles()) > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d uploads still in progress, temporary files %v", e.uploadsInProgress(), e.tempFiles())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func checkRefusal(t *testing.T, what string, r resp, status int, code string) {
	t.Helper()
	m := r.json(t)
	if r.status != status || m["code"] != code || r.header.Get("Retry-After") == "" {
		t.Fatalf("%s: %d %s (Retry-After %q), want %d with code %q and Retry-After", what, r.status, r.body,
			r.header.Get("Retry-After"), status, code)
	}
}

// A user may have maxUploadsPerUser uploads in progress; one more waits
// its turn (holding no temporary file) and goes through when one of them
// ends, or gets 429 after uploadQueueWait; other users' uploads go on.
func TestUploadsPerUserTakeTurns(t *testing.T) {
	e := newEnv(t)
	setVar(t, &maxUploadsPerUser, 2)
	attacker, other := newUser(), newUser()
	conns := []net.Conn{e.stalledUpload(t, attacker), e.stalledUpload(t, attacker)}
	pdf := makePDF("Third", 1, 0)

	setVar(t, &uploadQueueWait, 300*time.Millisecond)
	start := time.Now()
	checkRefusal(t, "a third upload of the same user", e.upload(attacker, "third.pdf", pdf, nil), 429, "too_many_uploads")
	if d := time.Since(start); d < 250*time.Millisecond || d > 3*time.Second {
		t.Errorf("refused after %v; want after uploadQueueWait", d)
	}
	e.mustUpload(other, "other.pdf", makePDF("Other", 1, 0), nil)

	// With time to wait, the third goes through once a turn frees.
	uploadQueueWait = 10 * time.Second
	done := make(chan resp, 1)
	go func() { done <- e.upload(attacker, "third.pdf", pdf, nil) }()
	e.waitQueued(t, "the third upload never queued")
	if n := len(e.tempFiles()); n != 2 {
		t.Fatalf("%d temporary files while the third waits, want the two in progress", n)
	}
	conns[0].Close()
	landsAfterItsTurn(t, done)
	conns[1].Close()
	e.waitNoUploads(t)
}

// landsAfterItsTurn checks that the upload answering on done, which was
// waiting its turn, lands once a turn frees.
func landsAfterItsTurn(t *testing.T, done <-chan resp) {
	t.Helper()
	select {
	case r := <-done:
		if r.status != 201 {
			t.Fatalf("the waiting upload after a turn freed: %d %s", r.status, r.body)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the waiting upload did not go through when a turn freed")
	}
}

// waitQueued waits until one upload waits its turn at the gate.
func (e *env) waitQueued(t *testing.T, what string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for e.uploadsWaiting() != 1 {
		if time.Now().After(deadline) {
			t.Fatal(what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (e *env) uploadsWaiting() int {
	e.svc.uploads.mu.Lock()
	defer e.svc.uploads.mu.Unlock()
	return e.svc.uploads.waiting
}

// Past maxUploads in progress, any user's upload waits; after
// uploadQueueWait it gets 503 with Retry-After, and with
// maxUploadsWaiting already waiting, at once.
func TestUploadsInAllTakeTurns(t *testing.T) {
	e := newEnv(t)
	setVar(t, &maxUploads, 2)
	setVar(t, &uploadQueueWait, 300*time.Millisecond)
	e.stalledUpload(t, newUser())
	c := e.stalledUpload(t, newUser())
	checkRefusal(t, "an upload past maxUploads", e.upload(newUser(), "x.pdf", makePDF("X", 1, 0), nil), 503, "busy")
	setVar(t, &maxUploadsWaiting, 0)
	start := time.Now()
	checkRefusal(t, "an upload with the queue full", e.upload(newUser(), "x.pdf", makePDF("X", 1, 0), nil), 503, "busy")
	if d := time.Since(start); d > 200*time.Millisecond {
		t.Errorf("refused after %v; want at once", d)
	}
	maxUploadsWaiting = 256
	c.Close()
	deadline := time.Now().Add(5 * time.Second)
	for e.uploadsInProgress() > 1 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	e.mustUpload(newUser(), "y.pdf", makePDF("Y", 1, 0), nil)
}

// An upload that waits for a chunk longer than chunkWait, every chunk
// being held by other uploads, gets 503 with Retry-After and keeps nothing.
func TestUploadChunkWaitBounded(t *testing.T) {
	e := newEnv(t)
	setVar(t, &chunkWait, 200*time.Millisecond)
	for range cap(e.svc.chunkSlots) {
		e.svc.chunkSlots <- struct{}{}
	}
	r := e.upload(newUser(), "waiting.pdf", makePDF("Waiting", 1, 0), nil)
	for range cap(e.svc.chunkSlots) {
		<-e.svc.chunkSlots
	}
	checkRefusal(t, "an upload finding every chunk taken", r, 503, "busy")
	e.waitNoUploads(t)
	if files := e.storedFiles(); len(files) > 0 {
		t.Fatalf("files stored: %v", files)
	}
}

// An upload that trickles (less than uploadMinProgress per
// uploadIdleTimeout) ends with 408 and leaves nothing; one that flows
// faster, with pauses, lands.
func TestUploadTooSlowEnds(t *testing.T) {
	e := newEnv(t)
	setVar(t, &uploadIdleTimeout, 400*time.Millisecond)
	setVar(t, &uploadMinProgress, 64<<10)
	u := newUser()

	c := e.stalledUpload(t, u)
	start := time.Now()
	done := make(chan struct{})
	go func() { // a byte every 50 ms: alive, but far too slow
		defer close(done)
		for time.Since(start) < 5*time.Second {
			if _, err := c.Write([]byte{' '}); err != nil {
				return
			}
			time.Sleep(50 * time.Millisecond)
		}
	}()
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	res, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("no answer to a trickling upload: %v", err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	c.Close()
	<-done
	if res.StatusCode != http.StatusRequestTimeout || !strings.Contains(string(body), `"code":"upload_too_slow"`) {
		t.Fatalf("trickling upload: %d %s", res.StatusCode, body)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("ended after %v; want about uploadIdleTimeout", d)
	}
	e.waitNoUploads(t)

	// 4 MiB in 16 pieces 100 ms apart: each pause shorter than the
	// timeout, each piece more than the minimum progress.
	pdf := makePDF("Flowing", 2, 4<<20)
	whole, ct := multipartBody(t, "flowing.pdf", pdf, nil)
	pr, pw := io.Pipe()
	go func() {
		b := whole.Bytes()
		for i := range 16 {
			if _, err := pw.Write(b[len(b)*i/16 : len(b)*(i+1)/16]); err != nil {
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
		pw.Close()
	}()
	req, _ := http.NewRequest("POST", e.srv.URL+"/api/documents", pr)
	req.ContentLength = int64(whole.Len())
	req.Header.Set("Content-Type", ct)
	u.set(req.Header)
	res, err = e.srv.Client().Do(req)
	if err != nil {
		t.Fatalf("flowing upload: %v", err)
	}
	body, _ = io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != http.StatusCreated {
		t.Fatalf("flowing upload: %d %s", res.StatusCode, body)
	}
}

// A folder's worth of files sent at once by one user (as a browser does
// over HTTP/2) all land: past maxUploadsPerUser they take turns.
func TestUploadBurstOfOneUser(t *testing.T) {
	e := newEnv(t)
	setVar(t, &maxUploadsPerUser, 2) // so that most of the burst waits
	u := newUser()
	const n = 20
	results := make(chan resp, n)
	for i := range n {
		go func() {
			results <- e.upload(u, fmt.Sprintf("f%d.pdf", i), makePDF(fmt.Sprintf("File %d", i), 1, 0), nil)
		}()
	}
	for range n {
		if r := <-results; r.status != 201 {
			t.Errorf("upload in a burst of %d: %d %s", n, r.status, r.body)
		}
	}
	if got := len(e.storedFiles()); got != n {
		t.Errorf("%d files stored, want %d", got, n)
	}
}

// With maxUploads uploads in progress and stalled (the first ones holding
// extra chunks), the next one waits its turn at the gate, with no
// temporary file, never for a chunk, and goes through when one ends.
func TestUploadPastMaxWaitsAtTheGate(t *testing.T) {
	e := newEnv(t)
	setVar(t, &chunkWait, 100*time.Millisecond) // a wait for a chunk would fail fast
	var conns []net.Conn
	for range maxUploads {
		conns = append(conns, e.stalledUpload(t, newUser()))
	}
	done := make(chan resp, 1)
	go func() { done <- e.upload(newUser(), "next.pdf", makePDF("Next", 1, 0), nil) }()
	e.waitQueued(t, "the upload past maxUploads did not wait at the gate")
	time.Sleep(300 * time.Millisecond) // longer than chunkWait
	if n := len(e.tempFiles()); n != maxUploads {
		t.Fatalf("%d temporary files, want the %d in progress", n, maxUploads)
	}
	conns[0].Close()
	landsAfterItsTurn(t, done)
	for _, c := range conns[1:] {
		c.Close()
	}
	e.waitNoUploads(t)
}

// One user's uploads may fill maxUploadsWaitingPerUser places in the
// queue, not all of them: past that, theirs get 503 at once, and other
// users still queue.
func TestUploadQueuePerUserBounded(t *testing.T) {
	e := newEnv(t)
	setVar(t, &maxUploadsPerUser, 1)
	setVar(t, &maxUploadsWaitingPerUser, 1)
	setVar(t, &uploadQueueWait, 10*time.Second)
	u := newUser()
	c := e.stalledUpload(t, u)
	done := make(chan resp, 1)
	go func() { done <- e.upload(u, "second.pdf", makePDF("Second", 1, 0), nil) }()
	e.waitQueued(t, "the second upload never queued")
	start := time.Now()
	checkRefusal(t, "a third upload of a user with one waiting already", e.upload(u, "third.pdf", makePDF("Third", 1, 0), nil), 503, "busy")
	if d := time.Since(start); d > time.Second {
		t.Errorf("refused after %v; want at once", d)
	}
	e.mustUpload(newUser(), "other.pdf", makePDF("Other", 1, 0), nil)
	c.Close()
	landsAfterItsTurn(t, done)
	e.waitNoUploads(t)
}
