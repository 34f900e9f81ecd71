package docservice

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// Files and folders that no row names are reported, and kept; the
// documents' files, the categories' folders and the temporary folder are
// not reported.
func TestOrphans(t *testing.T) {
	e := newEnv(t)
	u := newUser()
	e.mustUpload(u, "kept.pdf", makePDF("kept", 1, 0), nil)
	bills := e.doJSON(&u, "POST", "/api/documents/categories", map[string]any{"name": "Bills"}).json(t)["id"].(string)
	e.mustUpload(u, "paid.pdf", makePDF("paid", 1, 0), map[string]string{"category_id": bills})
	e.doJSON(&u, "POST", "/api/documents/categories", map[string]any{"name": "Empty"})
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
	noPause := func(context.Context) error { return nil }
	got, err := e.svc.store.Orphans(context.Background(), e.svc.files, noPause)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"Bills/lost.pdf", "Old", "stray.pdf"}; !slices.Equal(got, want) {
		t.Fatalf("orphans %q, want %q", got, want)
	}
	for p := range strays {
		if _, err := os.Stat(filepath.Join(e.storageDir, filepath.FromSlash(p))); err != nil {
			t.Errorf("%s: %v", p, err)
		}
	}
	// What is gone by the second read (a move's old name, removed just
	// after its COMMIT) is not reported.
	got, err = e.svc.store.Orphans(context.Background(), e.svc.files, func(context.Context) error {
		return os.Remove(filepath.Join(e.storageDir, "stray.pdf"))
	})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, []string{"Bills/lost.pdf", "Old"}) {
		t.Fatalf("after a removal: %q", got)
	}
}
