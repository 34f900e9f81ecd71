package docservice

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/gatehouse/gatehouse/internal/httpx"
	"github.com/gatehouse/gatehouse/internal/testdb"
)

// With the database unreachable, every call answers 503 and nothing is
// written: no file placed, no temporary file left.
func TestDatabaseDown(t *testing.T) {
	pool, err := pgxpool.New(context.Background(), "postgres://nobody:x@127.0.0.1:1/none?connect_timeout=2")
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	e := newEnvWith(t, pool, t.TempDir())
	u := newUser()
	r := e.upload(u, "a.pdf", makePDF("db down", 1, 0), nil)
	if r.status != http.StatusServiceUnavailable {
		t.Fatalf("upload: %d %s", r.status, r.body)
	}
	if m := r.json(t); !strings.Contains(m["detail"].(string), "request id") || strings.Contains(string(r.body), "127.0.0.1") {
		t.Fatalf("503 body leaks or lacks the request id: %s", r.body)
	}
	if files := e.storedFiles(); len(files) > 0 {
		t.Fatalf("files stored: %v", files)
	}
	if left := e.tempFiles(); len(left) > 0 {
		t.Fatalf("temporary files left: %v", left)
	}
	// The upload is refused before its body is read: this body never
	// ends, and the 503 comes anyway.
	head, ct := multipartBody(t, "endless.pdf", makePDF("endless", 1, 0), nil)
	conn, err := net.Dial("tcp", strings.TrimPrefix(e.srv.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	hdr := http.Header{}
	u.set(hdr)
	fmt.Fprintf(conn, "POST /api/documents HTTP/1.1\r\nHost: docservice\r\nContent-Type: %s\r\nContent-Length: %d\r\n",
		ct, head.Len()+1<<20)
	_ = hdr.Write(conn)
	fmt.Fprintf(conn, "\r\n%s", head.Bytes()[:200]) // and nothing more
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	if res, err := http.ReadResponse(bufio.NewReader(conn), nil); err != nil {
		t.Fatalf("upload with an endless body: %v (not answered before the body ended)", err)
	} else if res.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("upload with an endless body: %d", res.StatusCode)
	}
	for _, c := range []struct{ method, path string }{
		{"GET", "/api/documents"}, {"GET", "/api/documents/6a1f3f9c-5a0e-4e4e-9a53-2f8f3f2b1a11"},
		{"GET", "/api/documents/6a1f3f9c-5a0e-4e4e-9a53-2f8f3f2b1a11/file"},
		{"PATCH", "/api/documents/6a1f3f9c-5a0e-4e4e-9a53-2f8f3f2b1a11"}, {"GET", "/api/documents/categories"},
		{"POST", "/api/documents/categories"}, {"GET", "/ready"},
	} {
		if r := e.doJSON(&u, c.method, c.path, map[string]any{"name": "x", "filename": "x.pdf"}); r.status != http.StatusServiceUnavailable {
			t.Errorf("%s %s: %d %s", c.method, c.path, r.status, r.body)
		}
	}
}

// If the row cannot be inserted after the file was linked into place, the
// placed name goes again: no file without its row.
func TestInsertFailureUndoesPlacement(t *testing.T) {
	e := newEnv(t)
	u := newUser()
	// A trigger makes the insert fail for one file name, after placement.
	beforeInsert(t, "documents", "test_fail_insert",
		`IF NEW.original_filename = 'fail-insert.pdf' THEN RAISE EXCEPTION 'injected failure'; END IF; RETURN NEW;`)
	r := e.upload(u, "fail-insert.pdf", makePDF("fail", 1, 0), nil)
	if r.status != http.StatusInternalServerError || strings.Contains(string(r.body), "injected") {
		t.Fatalf("upload: %d %s", r.status, r.body)
	}
	if files := e.storedFiles(); len(files) > 0 {
		t.Fatalf("placed file kept without its row: %v", files)
	}
	if left := e.tempFiles(); len(left) > 0 {
		t.Fatalf("temporary files left: %v", left)
	}
}

// A row whose file was removed by hand keeps its name: a new upload of
// that name gets a suffix instead of taking over the row's path.
func TestMissingFileKeepsItsName(t *testing.T) {
	e := newEnv(t)
	u := newUser()
	d := e.mustUpload(u, "gone.pdf", makePDF("gone", 1, 0), nil)
	os.Remove(filepath.Join(e.storageDir, "gone.pdf"))
	if r := e.do(&u, "GET", "/api/documents/"+docID(d)+"/file", nil, nil); r.status != http.StatusGone {
		t.Fatalf("download of a missing file: %d %s", r.status, r.body)
	}
	d2 := e.mustUpload(u, "gone.pdf", makePDF("new", 1, 0), nil)
	if d2["filename"] != "gone (2).pdf" {
		t.Fatalf("new upload took the missing file's name: %v", d2["filename"])
	}
}

// failingWriter fails with err once n bytes have been written.
type failingWriter struct {
	w   writerSyncer
	n   int
	err error
}

func (f *failingWriter) Write(p []byte) (int, error) {
	if len(p) > f.n {
		m, _ := f.w.Write(p[:f.n])
		f.n = 0
		return m, f.err
	}
	f.n -= len(p)
	return f.w.Write(p)
}

func (f *failingWriter) Sync() error { return f.w.Sync() }

// A full disk is 507 and leaves nothing: injected, so it runs anywhere.
func TestDiskFullInjected(t *testing.T) {
	e := newEnv(t)
	e.svc.wrapTemp = func(w writerSyncer) writerSyncer { return &failingWriter{w: w, n: 1500 << 10, err: syscall.ENOSPC} }
	r := e.upload(newUser(), "full.pdf", makePDF("full", 1, 3<<20), nil)
	if r.status != http.StatusInsufficientStorage {
		t.Fatalf("upload: %d %s", r.status, r.body)
	}
	if files := e.storedFiles(); len(files) > 0 {
		t.Fatalf("files stored: %v", files)
	}
	if left := e.tempFiles(); len(left) > 0 {
		t.Fatalf("temporary files left: %v", left)
	}
}

// The same on a real, tiny file system (needs root to mount a tmpfs).
func TestDiskFullTmpfs(t *testing.T) {
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", dir).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a tmpfs (TestDiskFullInjected covers the logic): %v %s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", dir).Run() }) // after the env's cleanups (LIFO)
	e := newEnvWith(t, testPool, dir)
	u := newUser()
	small := e.mustUpload(u, "small.pdf", makePDF("fits", 1, 100<<10), nil)
	r := e.upload(u, "big.pdf", makePDF("too big for the disk", 1, 3<<20), nil)
	if r.status != http.StatusInsufficientStorage {
		t.Fatalf("upload: %d %s", r.status, r.body)
	}
	if files := e.storedFiles(); len(files) != 1 || files[0] != "small.pdf" {
		t.Fatalf("files: %v", files)
	}
	if left := e.tempFiles(); len(left) > 0 {
		t.Fatalf("temporary files left: %v", left)
	}
	// The space is back: the next upload works, the first file is intact.
	e.mustUpload(u, "after.pdf", makePDF("after", 1, 100<<10), nil)
	if r := e.do(&u, "GET", "/api/documents/"+docID(small)+"/file", nil, nil); r.status != 200 || len(r.body) != int(small["size"].(float64)) {
		t.Fatalf("first file after the disk filled: %d", r.status)
	}
}

// A change whose COMMIT reached the database is answered as made even if
// the database goes away right after: its answer is read inside its
// transaction (it was read afterwards, and that failure answered 503
// "nothing was changed", or 500, for a change that was saved). If the
// COMMIT's answer never came, the change may be saved: the 503 says so.
func TestChangesWhenTheDatabaseGoesAwayAtCommit(t *testing.T) {
	var category string // made for each case before the database goes
	changes := []struct {
		name   string
		do     func(e *env, u *user, doc string) resp
		status int
		saved  string // counts 1 row once saved
	}{
		{"create category", func(e *env, u *user, _ string) resp {
			return e.doJSON(u, "POST", "/api/documents/categories", map[string]any{"name": "Invoices"})
		}, http.StatusCreated, `SELECT count(*) FROM docs.categories WHERE name = 'Invoices'`},
		{"rename category", func(e *env, u *user, _ string) resp {
			return e.doJSON(u, "PATCH", "/api/documents/categories/"+category, map[string]any{"name": "Invoices"})
		}, http.StatusOK, `SELECT count(*) FROM docs.categories WHERE name = 'Invoices'`},
		{"archive", func(e *env, u *user, doc string) resp {
			return e.doJSON(u, "DELETE", "/api/documents/"+doc, nil)
		}, http.StatusNoContent, `SELECT count(*) FROM docs.documents WHERE archived_at IS NOT NULL`},
		{"retitle", func(e *env, u *user, doc string) resp {
			return e.doJSON(u, "PATCH", "/api/documents/"+doc, map[string]any{"title": "Paid"})
		}, http.StatusOK, `SELECT count(*) FROM docs.documents WHERE title = 'Paid'`},
		{"rename", func(e *env, u *user, doc string) resp {
			return e.doJSON(u, "PATCH", "/api/documents/"+doc, map[string]any{"filename": "paid.pdf"})
		}, http.StatusOK, `SELECT count(*) FROM docs.documents WHERE filename = 'paid.pdf'`},
		// An upload's row is read back before its COMMIT, not after: a
		// read after it failed here and answered "nothing was changed".
		// The name holds "commit", which must not count as the COMMIT.
		{"upload", func(e *env, u *user, _ string) resp {
			return e.upload(*u, "after-commit.pdf", makePDF("receipt", 1, 0), nil)
		}, http.StatusCreated, `SELECT count(*) FROM docs.documents WHERE filename = 'after-commit.pdf'`},
	}
	// The database never comes back here: give up asking after 1 s.
	defer func(d time.Duration) { commitCheckTimeout = d }(commitCheckTimeout)
	commitCheckTimeout = time.Second
	for _, loseAnswer := range []bool{false, true} {
		for _, c := range changes {
			t.Run(fmt.Sprintf("%s/answer lost %v", c.name, loseAnswer), func(t *testing.T) {
				pool, arm, err := testdb.CutAfterCommit(testDB.URL, loseAnswer)
				if err != nil {
					t.Fatal(err)
				}
				defer pool.Close()
				e := newEnvWith(t, pool, t.TempDir())
				u := newUser()
				doc := e.mustUpload(u, "invoice.pdf", makePDF("invoice", 1, 0), nil)["id"].(string)
				category = e.doJSON(&u, "POST", "/api/documents/categories", map[string]any{"name": "Bills"}).json(t)["id"].(string)
				fired := arm()
				r := c.do(e, &u, doc)
				if !fired() {
					t.Fatal("the database did not go away at the COMMIT: nothing was tested")
				}
				want, detail := c.status, ""
				if loseAnswer {
					want, detail = http.StatusServiceUnavailable, "may have been saved"
				}
				if r.status != want || !strings.Contains(string(r.body), detail) {
					t.Errorf("answered %d %s", r.status, r.body)
				}
				var n int
				if err := testPool.QueryRow(context.Background(), c.saved).Scan(&n); err != nil {
					t.Fatal(err)
				}
				if n != 1 {
					t.Errorf("%d rows saved", n)
				}
			})
		}
	}
}

// The server's refusals to serve are "database unavailable" (503), not
// internal errors; errors about a statement stay what they are.
func TestDBErrServerRefusals(t *testing.T) {
	for code, unavailable := range map[string]bool{"53300": true, "57P03": true, "57P01": true, "08006": true,
		"53100": true, "23505": false, "42P01": false, "57014": false} {
		err := dbErr(fmt.Errorf("query: %w", &pgconn.PgError{Code: code}))
		if errors.Is(err, ErrDBUnavailable) != unavailable {
			t.Errorf("%s: %v", code, err)
		}
		var he *httpx.Error
		if unavailable && (!errors.As(storeError(err, "document"), &he) || he.Status != http.StatusServiceUnavailable) {
			t.Errorf("%s: answered %v", code, storeError(err, "document"))
		}
	}
}

// An upload's check of the database does not wait for a pooled
// connection while every one is in use: the database is answering. (It
// used to wait, and answer 503 once the check's time was up.)
func TestUploadWhilePoolBusy(t *testing.T) {
	defer func(d time.Duration) { uploadDBCheckTimeout = d }(uploadDBCheckTimeout)
	uploadDBCheckTimeout = 200 * time.Millisecond
	cfg, err := pgxpool.ParseConfig(testDB.URL)
	if err != nil {
		t.Fatal(err)
	}
	cfg.MaxConns = 1
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	e := newEnvWith(t, pool, t.TempDir())
	u := newUser()
	conn, err := pool.Acquire(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	time.AfterFunc(time.Second, conn.Release) // a slow request elsewhere
	if r := e.upload(u, "busy.pdf", makePDF("busy", 1, 0), nil); r.status != http.StatusCreated {
		t.Fatalf("upload: %d %s", r.status, r.body)
	}
}
