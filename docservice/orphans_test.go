package docservice

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

// orphanPaths is what Orphans finds, as paths; a folder that cannot be
// read is marked with " (unreadable)".
func orphanPaths(t *testing.T, e *env, pause func(context.Context) error) []string {
	t.Helper()
	found, more, err := e.svc.store.Orphans(context.Background(), e.svc.files, pause)
	if err != nil || more {
		t.Fatalf("orphans: %v (more: %v)", err, more)
	}
	var paths []string
	for _, o := range found {
		if o.Err != nil {
			o.Path += " (unreadable)"
		}
		paths = append(paths, o.Path)
	}
	return paths
}

func noPause(context.Context) error { return nil }

// Files and folders that no row names are reported, and kept; the
// documents' files, the categories' folders and the temporary folder are
// not; a category's folder that is a file, or a symlink out of the tree,
// is reported as unreadable without losing the rest of the report.
func TestOrphans(t *testing.T) {
	e := newEnv(t)
	u := newUser()
	e.mustUpload(u, "kept.pdf", makePDF("kept", 1, 0), nil)
	bills := e.doJSON(&u, "POST", "/api/documents/categories", map[string]any{"name": "Bills"}).json(t)["id"].(string)
	e.mustUpload(u, "paid.pdf", makePDF("paid", 1, 0), map[string]string{"category_id": bills})
	for _, name := range []string{"Empty", "Flat", "Away"} {
		e.doJSON(&u, "POST", "/api/documents/categories", map[string]any{"name": name})
	}
	strays := map[string]string{"stray.pdf": "a file copied in by hand", "Bills/lost.pdf": "left by a crash",
		"Old/inside.pdf": "in a folder no category names"}
	for p, content := range strays {
		full := filepath.Join(e.storageDir, filepath.FromSlash(p))
		if err := os.MkdirAll(filepath.Dir(full), 0o750); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(content), 0o640); err != nil {
			t.Fatal(err)
		}
	}
	for _, name := range []string{"Flat", "Away"} {
		os.Remove(filepath.Join(e.storageDir, name)) // if categories make theirs at once
	}
	if err := os.WriteFile(filepath.Join(e.storageDir, "Flat"), []byte("not a folder"), 0o640); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(t.TempDir(), filepath.Join(e.storageDir, "Away")); err != nil {
		t.Fatal(err)
	}
	want := []string{"Away (unreadable)", "Bills/lost.pdf", "Flat (unreadable)", "Old", "stray.pdf"}
	if got := orphanPaths(t, e, noPause); !slices.Equal(got, want) {
		t.Fatalf("orphans %q, want %q", got, want)
	}
	for p := range strays {
		if _, err := os.Stat(filepath.Join(e.storageDir, filepath.FromSlash(p))); err != nil {
			t.Errorf("%s: %v", p, err)
		}
	}
	// What is gone by the check (a move's old name, removed just after
	// its COMMIT) is not reported.
	got := orphanPaths(t, e, func(context.Context) error {
		return os.Remove(filepath.Join(e.storageDir, "stray.pdf"))
	})
	if want := []string{"Away (unreadable)", "Bills/lost.pdf", "Flat (unreadable)", "Old"}; !slices.Equal(got, want) {
		t.Fatalf("after a removal: %q", got)
	}
	// A folder the first read found unnamed that is a category's by the
	// check (renamed meanwhile) is not reported.
	got = orphanPaths(t, e, func(context.Context) error {
		if err := os.RemoveAll(filepath.Join(e.storageDir, "Old")); err != nil {
			return err
		}
		r := e.doJSON(&u, "PATCH", "/api/documents/categories/"+bills, map[string]any{"name": "Old"})
		if r.status != 200 {
			t.Errorf("rename: %d %s", r.status, r.body)
		}
		return nil
	})
	if want := []string{"Away (unreadable)", "Flat (unreadable)"}; !slices.Equal(got, want) {
		t.Fatalf("after a category rename: %q", got)
	}
}

// A file linked into a folder whose upload has not committed yet is not
// reported: the check waits for the folder's lock, which the upload holds
// until its COMMIT.
func TestOrphansWaitForPlacements(t *testing.T) {
	e := newEnv(t)
	u := newUser()
	doc := e.mustUpload(u, "placed.pdf", makePDF("placed", 1, 0), nil)
	// The upload in progress: its row is not there yet, its file is.
	if _, err := testPool.Exec(context.Background(), `DELETE FROM docs.documents WHERE id = $1`, docID(doc)); err != nil {
		t.Fatal(err)
	}
	tx := holding(t, `SELECT pg_advisory_xact_lock(hashtextextended('docs.folder:', 0))`)
	done := make(chan []string)
	go func() { done <- orphanPaths(t, e, noPause) }()
	time.Sleep(300 * time.Millisecond) // the check is waiting for the lock
	if _, err := tx.Exec(context.Background(), `INSERT INTO docs.documents (id, owner_id, filename, size, sha256, source)
		VALUES (gen_random_uuid(), $1, 'placed.pdf', 1, repeat('0', 64), 'upload')`, u.id); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := <-done; len(got) != 0 {
		t.Fatalf("reported while its upload was committing: %q", got)
	}
}
