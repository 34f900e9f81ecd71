package docservice

import (
	"os"
	"path/filepath"
	"testing"
)

// Unlink removes a second name of a file; given the same name twice it
// would remove the only one.
func TestUnlinkRefusesTheNameToKeep(t *testing.T) {
	dir := t.TempDir()
	fs, err := OpenFileStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer fs.Close()
	if err := os.WriteFile(filepath.Join(dir, "x.pdf"), []byte("%PDF-"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, pair := range [][2]string{{"x.pdf", "x.pdf"}, {"./x.pdf", "x.pdf"}} {
		if err := fs.Unlink(pair[0], pair[1]); err == nil {
			t.Errorf("Unlink(%q, %q) succeeded", pair[0], pair[1])
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "x.pdf")); err != nil {
		t.Fatalf("the file's only name is gone: %v", err)
	}
	// Its second name can go.
	if err := os.Link(filepath.Join(dir, "x.pdf"), filepath.Join(dir, "y.pdf")); err != nil {
		t.Fatal(err)
	}
	if err := fs.Unlink("y.pdf", "x.pdf"); err != nil {
		t.Fatalf("Unlink of a second name: %v", err)
	}
	if _, err := os.Lstat(filepath.Join(dir, "y.pdf")); !os.IsNotExist(err) {
		t.Errorf("the second name is still there: %v", err)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "x.pdf")); err != nil || string(b) != "%PDF-" {
		t.Errorf("the first name after removing the second: %q, %v", b, err)
	}
}
