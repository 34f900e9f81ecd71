package docservice

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// commitCutter sits between docservice and PostgreSQL. Armed, it lets the
// next COMMIT reach the server, drops the server's answer and closes the
// connection: the transaction is committed and docservice sees an error,
// as when the network fails at that moment. With refuse set it also closes
// every new connection, so the database cannot be asked what happened.
type commitCutter struct {
	ln         net.Listener
	up         string
	armed      atomic.Bool
	thenRefuse atomic.Bool // after the cut, close every connection and refuse new ones
	refuse     atomic.Bool
	cuts       atomic.Int32

	mu    sync.Mutex
	conns []net.Conn
}

func newCommitCutter(t *testing.T) (*commitCutter, *pgxpool.Pool) {
	t.Helper()
	cfg := testPool.Config().ConnConfig
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c := &commitCutter{ln: ln, up: net.JoinHostPort(cfg.Host, fmt.Sprint(cfg.Port))}
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			if c.refuse.Load() {
				conn.Close()
				continue
			}
			c.mu.Lock()
			c.conns = append(c.conns, conn)
			c.mu.Unlock()
			go c.serve(conn)
		}
	}()
	t.Cleanup(func() { ln.Close() })
	pcfg := testPool.Config().Copy()
	pcfg.ConnConfig.Host = "127.0.0.1"
	pcfg.ConnConfig.Port = uint16(ln.Addr().(*net.TCPAddr).Port)
	pcfg.ConnConfig.Fallbacks = nil
	pool, err := pgxpool.NewWithConfig(context.Background(), pcfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return c, pool
}

func (c *commitCutter) serve(client net.Conn) {
	server, err := net.Dial("tcp", c.up)
	if err != nil {
		client.Close()
		return
	}
	var drop atomic.Bool
	go func() {
		buf := make([]byte, 32<<10)
		for {
			n, err := server.Read(buf)
			if n > 0 && !drop.Load() {
				client.Write(buf[:n])
			}
			if err != nil {
				client.Close()
				return
			}
		}
	}()
	buf := make([]byte, 32<<10)
	for {
		n, err := client.Read(buf)
		if n > 0 {
			if c.armed.Load() && bytes.Contains(bytes.ToLower(buf[:n]), []byte("commit")) {
				c.armed.Store(false)
				drop.Store(true)
				server.Write(buf[:n])
				time.Sleep(300 * time.Millisecond) // the server commits
				if c.thenRefuse.Load() {
					c.refuse.Store(true)
					c.mu.Lock()
					for _, conn := range c.conns {
						conn.Close()
					}
					c.mu.Unlock()
				}
				c.cuts.Add(1)
				server.Close()
				client.Close()
				return
			}
			server.Write(buf[:n])
		}
		if err != nil {
			server.Close()
			return
		}
	}
}

// A COMMIT whose answer is lost may have taken effect. Before, docservice
// undid the file change anyway: an upload's file was removed under its
// committed row (and the same content could never be uploaded again), a
// renamed document's row named a file that was gone, a renamed category's
// folder went back under its rows' new path. Now it asks the database and
// keeps the files the rows name.
func TestCommitAnswerLost(t *testing.T) {
	cutter, pool := newCommitCutter(t)
	e := newEnvWith(t, pool, t.TempDir())
	u := newUser()
	cat := e.doJSON(&u, "POST", "/api/documents/categories", map[string]any{"name": "Old"}).json(t)["id"].(string)
	inCat := e.mustUpload(u, "a.pdf", makePDF("a", 1, 0), map[string]string{"category_id": cat})
	content := makePDF("lost", 1, 0)
	downloads := func(what, id string) {
		t.Helper()
		if r := e.do(&u, "GET", "/api/documents/"+id+"/file", nil, nil); r.status != 200 {
			t.Errorf("%s: download %d %s; files %v", what, r.status, r.body, e.storedFiles())
		}
	}

	cutter.armed.Store(true)
	r := e.upload(u, "lost.pdf", content, nil)
	if cutter.cuts.Load() != 1 {
		t.Fatal("the upload's COMMIT was not cut")
	}
	if r.status != 201 {
		t.Fatalf("upload whose COMMIT answer was lost: %d %s, want 201 (it was committed)", r.status, r.body)
	}
	up := r.json(t)["id"].(string)
	downloads("upload", up)
	if r := e.upload(u, "lost.pdf", content, nil); r.status != 200 || r.json(t)["id"] != up {
		t.Errorf("the same content again: %d %s, want the duplicate %s", r.status, r.body, up)
	}

	cutter.armed.Store(true)
	r = e.doJSON(&u, "PATCH", "/api/documents/"+up, map[string]any{"filename": "renamed.pdf"})
	if cutter.cuts.Load() != 2 || r.status != 200 || r.json(t)["filename"] != "renamed.pdf" {
		t.Fatalf("rename whose COMMIT answer was lost: %d %s", r.status, r.body)
	}
	downloads("rename", up)

	cutter.armed.Store(true)
	r = e.doJSON(&u, "PATCH", "/api/documents/categories/"+cat, map[string]any{"name": "New"})
	if cutter.cuts.Load() != 3 || r.status != 200 || r.json(t)["name"] != "New" {
		t.Fatalf("category rename whose COMMIT answer was lost: %d %s", r.status, r.body)
	}
	downloads("category rename", inCat["id"].(string))
	if got, want := e.storedFiles(), []string{"New/a.pdf", "renamed.pdf"}; !slices.Equal(got, want) {
		t.Errorf("stored files %q, want %q", got, want)
	}
}

// When the database cannot be asked either, the outcome is unknown: the
// request fails (503) but the files stay, so the committed row still has
// its file.
func TestCommitOutcomeUnknownKeepsFiles(t *testing.T) {
	cutter, pool := newCommitCutter(t)
	e := newEnvWith(t, pool, t.TempDir())
	u := newUser()
	cutter.armed.Store(true)
	cutter.thenRefuse.Store(true)
	r := e.upload(u, "kept.pdf", makePDF("kept", 1, 0), nil)
	cutter.refuse.Store(false)
	if cutter.cuts.Load() != 1 || r.status != 503 || !strings.Contains(r.json(t)["detail"].(string), "may have been saved") {
		t.Fatalf("upload: %d %s (cuts %d), want 503", r.status, r.body, cutter.cuts.Load())
	}
	var id string
	if err := testPool.QueryRow(context.Background(), `SELECT id::text FROM docs.documents WHERE owner_id = $1`, u.id).Scan(&id); err != nil {
		t.Fatalf("the row was committed: %v", err)
	}
	if r := e.do(&u, "GET", "/api/documents/"+id+"/file", nil, nil); r.status != 200 {
		t.Errorf("the committed row's file: %d %s; files %v", r.status, r.body, e.storedFiles())
	}
	if tmp := e.tempFiles(); len(tmp) != 0 {
		t.Errorf("temporary files left: %v", tmp)
	}
}

// Downloads while the document is renamed and its category renamed: each
// one gets the file. Before, a download that read the row just before a
// rename committed opened the old name after it was gone and answered 410
// "the stored file is missing" (and told the operator so): 145 of 3 600
// in the review's run.
func TestDownloadDuringRenames(t *testing.T) {
	e := newEnv(t)
	u := newUser()
	cat := e.mustCategory(u, "c0", "")["id"].(string)
	id := docID(e.mustUpload(u, "a.pdf", makePDF("a", 1, 0), map[string]string{"category_id": cat}))
	var stop atomic.Bool
	var fails atomic.Int64
	var firstFail atomic.Pointer[string]
	var downloads atomic.Int64
	var wg sync.WaitGroup
	for range 3 {
		wg.Go(func() {
			for !stop.Load() {
				r := e.do(&u, "GET", "/api/documents/"+id+"/file", nil, nil)
				downloads.Add(1)
				if r.status != 200 {
					fails.Add(1)
					msg := fmt.Sprintf("%d %s", r.status, r.body)
					firstFail.CompareAndSwap(nil, &msg)
				}
			}
		})
	}
	for i := range 60 {
		path, body := "/api/documents/"+id, map[string]any{"filename": fmt.Sprintf("n%d.pdf", i)}
		if i%2 == 1 {
			path, body = "/api/documents/categories/"+cat, map[string]any{"name": fmt.Sprintf("c%d", i)}
		}
		if r := e.doJSON(&u, "PATCH", path, body); r.status != 200 {
			t.Fatalf("PATCH %s: %d %s", path, r.status, r.body)
		}
	}
	stop.Store(true)
	wg.Wait()
	if n := fails.Load(); n > 0 {
		t.Fatalf("%d of %d downloads failed during renames; first: %s", n, downloads.Load(), *firstFail.Load())
	}
	if downloads.Load() < 60 {
		t.Fatalf("only %d downloads ran alongside the renames", downloads.Load())
	}
}

// A crash in the middle of a category rename: the folder has moved but the
// transaction never committed, or it committed and the note was not yet
// removed. Start-up (and the next rename) put the folder where the
// committed rows say. Before, the first case left every document of the
// category answering 410 until someone moved the folder by hand.
func TestFolderMoveSettledAfterCrash(t *testing.T) {
	e := newEnv(t)
	u := newUser()
	ctx := context.Background()
	cat := e.mustCategory(u, "Old", "")["id"].(string)
	doc := docID(e.mustUpload(u, "a.pdf", makePDF("a", 1, 0), map[string]string{"category_id": cat}))
	note := func(oldPath, newPath string) {
		t.Helper()
		if _, err := testPool.Exec(ctx, `INSERT INTO docs.folder_moves (category_id, old_path, new_path) VALUES ($1, $2, $3)`,
			cat, oldPath, newPath); err != nil {
			t.Fatal(err)
		}
	}
	notes := func() int {
		t.Helper()
		var n int
		if err := testPool.QueryRow(ctx, `SELECT count(*) FROM docs.folder_moves`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	moveOnDisk := func(from, to string) {
		t.Helper()
		if err := os.Rename(filepath.Join(e.storageDir, from), filepath.Join(e.storageDir, to)); err != nil {
			t.Fatal(err)
		}
	}
	download := func(want int, what string) {
		t.Helper()
		if r := e.do(&u, "GET", "/api/documents/"+doc+"/file", nil, nil); r.status != want {
			t.Fatalf("%s: download %d %s; files %v", what, r.status, r.body, e.storedFiles())
		}
	}
	// settled checks that the document downloads from wantFile, with no
	// note left.
	settled := func(what, wantFile string) {
		t.Helper()
		download(200, what)
		if got := e.storedFiles(); !slices.Equal(got, []string{wantFile}) || notes() != 0 {
			t.Fatalf("%s: files %v, %d notes; want %s and none", what, got, notes(), wantFile)
		}
	}
	settle := func() {
		t.Helper()
		if err := e.svc.store.SettleFolderMoves(ctx, e.svc.files.MoveDir); err != nil {
			t.Fatal(err)
		}
	}

	// Moved, never committed: the rows still say Old.
	note("Old", "New")
	moveOnDisk("Old", "New")
	download(410, "folder moved, rename not committed")
	settle()
	settled("after settling an uncommitted move", "Old/a.pdf")

	// Committed, note still there: nothing to move back.
	note("Old", "New")
	if _, err := testPool.Exec(ctx, `UPDATE docs.categories SET name = 'New', path = 'New' WHERE id = $1`, cat); err != nil {
		t.Fatal(err)
	}
	moveOnDisk("Old", "New")
	settle()
	settled("after settling a committed move", "New/a.pdf")

	// A rename settles what a crash left before it moves anything.
	note("New", "Gone")
	moveOnDisk("New", "Gone")
	if r := e.doJSON(&u, "PATCH", "/api/documents/categories/"+cat, map[string]any{"name": "Next"}); r.status != 200 {
		t.Fatalf("rename after a crash: %d %s", r.status, r.body)
	}
	settled("a rename after a crash", "Next/a.pdf")
}

// The note is committed before the folder moves (else a crash right after
// the move would leave none), and goes once the rename is done.
func TestFolderMoveNoteBeforeMove(t *testing.T) {
	e := newEnv(t)
	u := newUser()
	cat := e.mustCategory(u, "Before", "")
	id := uuid.MustParse(cat["id"].(string))
	after := "After"
	sawNote := false
	_, err := e.svc.store.UpdateCategory(context.Background(), id, &after, false, nil, func(oldPath, newPath string) error {
		var n int
		if err := testPool.QueryRow(context.Background(), `SELECT count(*) FROM docs.folder_moves
			WHERE category_id = $1 AND old_path = $2 AND new_path = $3`, id, oldPath, newPath).Scan(&n); err != nil {
			return err
		}
		sawNote = n == 1
		return e.svc.files.MoveDir(oldPath, newPath)
	})
	if err != nil || !sawNote {
		t.Fatalf("rename: %v; note visible to another connection while the folder moved: %v", err, sawNote)
	}
	var left int
	if err := testPool.QueryRow(context.Background(), `SELECT count(*) FROM docs.folder_moves`).Scan(&left); err != nil || left != 0 {
		t.Fatalf("notes left after the rename: %d (%v)", left, err)
	}
}

// A download races changes that free the name its document's file had and
// give it to another user's document: a rename plus an upload of that
// name, and a swap of two categories' names. It gets its own document's
// file. Before, the row was read and its path then opened with nothing
// held, and the other user's PDF went out under the requester's name and
// ETag (found in review: 4 of 34 000 downloads raced against such
// changes). The race runs between the two steps (beforeOpen); with the
// fix, its first change waits for the download's locks.
func TestDownloadNeverServesAnotherDocumentsFile(t *testing.T) {
	for _, tc := range []struct {
		name string
		// setup stores u's document, and returns it and the race, which
		// must leave another document where u's file was.
		setup func(t *testing.T, e *env, u, v user, mine []byte) (doc string, race func() error)
	}{
		{"rename, then another user's upload of the freed name", func(t *testing.T, e *env, u, v user, mine []byte) (string, func() error) {
			doc := docID(e.mustUpload(u, "scan.pdf", mine, nil))
			return doc, func() error {
				if r := e.doJSON(&u, "PATCH", "/api/documents/"+doc, map[string]any{"filename": "z.pdf"}); r.status != 200 {
					return fmt.Errorf("rename: %d %s", r.status, r.body)
				}
				r := e.upload(v, "scan.pdf", makePDF("theirs", 1, 0), nil)
				if r.status != 201 || r.json(t)["filename"] != "scan.pdf" {
					return fmt.Errorf("upload: %d %s", r.status, r.body)
				}
				return nil
			}
		}},
		{"two categories swap names", func(t *testing.T, e *env, u, v user, mine []byte) (string, func() error) {
			a := e.mustCategory(u, "A", "")["id"].(string)
			b := e.mustCategory(u, "B", "")["id"].(string)
			doc := docID(e.mustUpload(u, "x.pdf", mine, map[string]string{"category_id": a}))
			e.mustUpload(v, "x.pdf", makePDF("theirs", 1, 0), map[string]string{"category_id": b})
			return doc, func() error {
				for _, step := range []struct{ id, name string }{{a, "T"}, {b, "A"}, {a, "B"}} {
					if r := e.doJSON(&u, "PATCH", "/api/documents/categories/"+step.id, map[string]any{"name": step.name}); r.status != 200 {
						return fmt.Errorf("rename category to %s: %d %s", step.name, r.status, r.body)
					}
				}
				return nil
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			u, v := newUser(), newUser()
			mine := makePDF("mine", 2, 0)
			doc, race := tc.setup(t, e, u, v, mine)
			// A connection of its own, so that watching for waiters
			// takes none of the service's.
			watch, err := pgx.Connect(context.Background(), testDB.URL)
			if err != nil {
				t.Fatal(err)
			}
			defer watch.Close(context.Background())
			raced := make(chan error, 1)
			var once sync.Once
			e.svc.beforeOpen = func() {
				once.Do(func() {
					go func() { raced <- race() }()
					// Until the race is over (nothing held it back) or
					// one of its changes waits for a lock.
					for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
						var waiting int
						if err := watch.QueryRow(context.Background(), `SELECT count(*) FROM pg_stat_activity
							WHERE wait_event_type = 'Lock' AND datname = current_database()`).Scan(&waiting); err != nil {
							t.Error(err)
							return
						}
						if waiting > 0 || len(raced) > 0 {
							return
						}
					}
					t.Error("the race neither finished nor waited for a lock in 10 s")
				})
			}
			r := e.do(&u, "GET", "/api/documents/"+doc+"/file", nil, nil)
			if err := <-raced; err != nil {
				t.Fatal(err)
			}
			if r.status != 200 || !bytes.Equal([]byte(r.body), mine) {
				t.Fatalf("download: %d, %d bytes, its own document's: %v", r.status, len(r.body), bytes.Equal([]byte(r.body), mine))
			}
			// And after the race, the document still downloads as itself.
			if r := e.do(&u, "GET", "/api/documents/"+doc+"/file", nil, nil); r.status != 200 || !bytes.Equal([]byte(r.body), mine) {
				t.Fatalf("download after the race: %d, %d bytes", r.status, len(r.body))
			}
		})
	}
}

// A download or a second change of a document that waits for a move of
// it reads the document as the move left it. Before, the statement that
// joined the category and locked the document re-read the document after
// the wait but kept the old category row: the document came out with no
// folder, a download opened the top folder's file of the same name
// (another user's), and a rename worked from that wrong path (found in
// review). The move is held up on its target folder's lock, which the
// test holds, so both orders are certain.
func TestWaitersOnAMoveSeeItWhole(t *testing.T) {
	for _, tc := range []struct {
		name string
		// waiter runs while the move waits, and checks the outcome.
		waiter func(t *testing.T, e *env, u user, doc string, mine []byte) (run func() resp, check func(r resp))
	}{
		{"download", func(t *testing.T, e *env, u user, doc string, mine []byte) (func() resp, func(resp)) {
			return func() resp { return e.do(&u, "GET", "/api/documents/"+doc+"/file", nil, nil) },
				func(r resp) {
					if r.status != 200 || !bytes.Equal(r.body, mine) {
						t.Errorf("download: %d, %d bytes, its own: %v", r.status, len(r.body), bytes.Equal(r.body, mine))
					}
				}
		}},
		{"rename", func(t *testing.T, e *env, u user, doc string, mine []byte) (func() resp, func(resp)) {
			return func() resp { return e.doJSON(&u, "PATCH", "/api/documents/"+doc, map[string]any{"filename": "y.pdf"}) },
				func(r resp) {
					if r.status != 200 {
						t.Errorf("rename: %d %s", r.status, r.body)
						return
					}
					if got := e.do(&u, "GET", "/api/documents/"+doc+"/file", nil, nil); got.status != 200 || !bytes.Equal(got.body, mine) {
						t.Errorf("after the rename: %d, its own: %v; files %v", got.status, bytes.Equal(got.body, mine), e.storedFiles())
					}
					if files := e.storedFiles(); !slices.Equal(files, []string{"B/y.pdf", "x.pdf"}) {
						t.Errorf("files %v, want B/y.pdf and the other user's x.pdf", files)
					}
				}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			u, v := newUser(), newUser()
			a := e.mustCategory(u, "A", "")["id"].(string)
			b := e.mustCategory(u, "B", "")["id"].(string)
			mine := makePDF("mine", 2, 0)
			doc := docID(e.mustUpload(u, "x.pdf", mine, map[string]string{"category_id": a}))
			e.mustUpload(v, "x.pdf", makePDF("theirs", 1, 0), nil) // top folder
			ctx := context.Background()
			tx := holding(t, `SELECT pg_advisory_xact_lock(hashtextextended('docs.folder:' || $1::uuid::text, 0))`, b)
			// Watched from a connection of its own: pg_stat_activity is a
			// snapshot taken once per transaction, and the holder's is open.
			watch, err := pgx.Connect(ctx, testDB.URL)
			if err != nil {
				t.Fatal(err)
			}
			defer watch.Close(ctx)
			waiting := func(n int) {
				t.Helper()
				for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(5 * time.Millisecond) {
					var got int
					if err := watch.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity
						WHERE wait_event_type = 'Lock' AND datname = current_database()`).Scan(&got); err != nil {
						t.Fatal(err)
					}
					if got >= n {
						return
					}
					if time.Now().After(deadline) {
						t.Fatalf("%d requests waiting for a lock, want %d", got, n)
					}
				}
			}
			moved := make(chan resp, 1)
			go func() { moved <- e.doJSON(&u, "PATCH", "/api/documents/"+doc, map[string]any{"category_id": b}) }()
			waiting(1) // the move, on B's folder lock, holding the document
			run, check := tc.waiter(t, e, u, doc, mine)
			waited := make(chan resp, 1)
			go func() { waited <- run() }()
			waiting(2) // and the waiter, on the document
			if err := tx.Commit(ctx); err != nil {
				t.Fatal(err)
			}
			if r := <-moved; r.status != 200 {
				t.Fatalf("move: %d %s", r.status, r.body)
			}
			check(<-waited)
		})
	}
}

// A download that cannot have its document within 2 s (a move of it held
// up) answers 503 with Retry-After instead of holding one of the pool's
// connections for as long as the move waits (found in review: six such
// downloads took the pool and /ready failed).
func TestDownloadGivesUpOnAHeldDocument(t *testing.T) {
	e := newEnv(t)
	u := newUser()
	doc := docID(e.mustUpload(u, "x.pdf", makePDF("x", 1, 0), nil))
	ctx := context.Background()
	tx := holding(t, `SELECT 1 FROM docs.documents WHERE id = $1 FOR UPDATE`, doc)
	start := time.Now()
	r := e.do(&u, "GET", "/api/documents/"+doc+"/file", nil, nil)
	if took := time.Since(start); r.status != 503 || r.header.Get("Retry-After") != "1" || took > 5*time.Second {
		t.Fatalf("%d %s, Retry-After %q, after %v", r.status, r.body, r.header.Get("Retry-After"), took)
	}
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	if r := e.do(&u, "GET", "/api/documents/"+doc+"/file", nil, nil); r.status != 200 {
		t.Fatalf("once free: %d %s", r.status, r.body)
	}
}

// holding runs sql (a lock) in a transaction of its own connection, left
// open until the test commits or rolls it back, or ends.
func holding(t *testing.T, sql string, args ...any) pgx.Tx {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, testDB.URL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(ctx) })
	tx, err := conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tx.Rollback(ctx) })
	if _, err := tx.Exec(ctx, sql, args...); err != nil {
		t.Fatal(err)
	}
	return tx
}
