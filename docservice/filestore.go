package docservice

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"strings"
	"syscall"
	"time"
)

// tmpDir holds uploads in progress, inside STORAGE_DIR so that placing a
// finished upload is a link on the same file system, never a copy.
const tmpDir = ".tmp"

// maxSuffix bounds the " (n)" collision search before a random suffix.
const maxSuffix = 999

// ErrTargetExists reports a folder move onto an existing path.
var ErrTargetExists = errors.New("target exists")

// FileStore is the document tree under STORAGE_DIR. Every path goes through
// an os.Root, so no name, "..", absolute path or symlink can reach outside
// it. It never overwrites a file: new names are made with link(2), which
// fails when the target exists, and the only names it ever removes are
// temporary files and a second name of a file that it has just verified
// still has another name (the old name after a move, or a placement undone).
type FileStore struct {
	root *os.Root
	dir  string
}

// OpenFileStore opens (creating) dir and its temporary folder.
func OpenFileStore(dir string) (*FileStore, error) {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("STORAGE_DIR: %w", err)
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, fmt.Errorf("STORAGE_DIR: %w", err)
	}
	if err := root.Mkdir(tmpDir, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
		root.Close()
		return nil, fmt.Errorf("STORAGE_DIR: %w", err)
	}
	return &FileStore{root: root, dir: dir}, nil
}

// Close releases the root.
func (s *FileStore) Close() error { return s.root.Close() }

// Temporary upload files are named upload-<random>.part, and each is locked
// (flock) by the process writing it for as long as the name exists: a
// cleaner that can take the lock knows the writer is gone (a crash frees
// its locks), however recent the file. To appear under that name already
// locked, a file is made as creating-<random> and renamed once locked.
const (
	tempPrefix     = "upload-"
	tempSuffix     = ".part"
	creatingPrefix = "creating-"
)

// CreateTemp makes a new, empty temporary file for an upload. release ends
// the claim on it; call it after RemoveTemp (or after the file has been
// placed and its temporary name removed), not before.
func (s *FileStore) CreateTemp() (f *os.File, name string, release func(), err error) {
	var b [12]byte
	_, _ = rand.Read(b[:])
	id := hex.EncodeToString(b[:])
	creating := path.Join(tmpDir, creatingPrefix+id)
	f, err = s.root.OpenFile(creating, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o640)
	if err != nil {
		return nil, "", nil, err
	}
	fail := func(err error) (*os.File, string, func(), error) {
		f.Close()
		_ = s.root.Remove(creating)
		return nil, "", nil, err
	}
	release, err = lockTemp(f)
	if err != nil {
		return fail(err)
	}
	name = path.Join(tmpDir, tempPrefix+id+tempSuffix)
	if err := s.root.Rename(creating, name); err != nil {
		release()
		return fail(err)
	}
	return f, name, release, nil
}

// RemoveTemp removes a temporary file made by CreateTemp.
func (s *FileStore) RemoveTemp(name string) error {
	if !strings.HasPrefix(name, tmpDir+"/") {
		return fmt.Errorf("remove temp: %q is not a temporary file", name)
	}
	err := s.root.Remove(name)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	return err
}

// CleanTemp removes the temporary files of uploads whose process is gone
// (a crash, a kill): at once when no process holds the file's lock,
// whatever its age, so a restart right after a crash cleans up; and any
// other file in the folder not written to for idle (a file system without
// locks, or the instant between creating and locking). A live upload's
// file is never removed, also when other instances share the tree.
func (s *FileStore) CleanTemp(idle time.Duration) (removed int, err error) {
	d, err := s.root.Open(tmpDir)
	if err != nil {
		return 0, err
	}
	defer d.Close()
	entries, err := d.ReadDir(-1)
	if err != nil {
		return 0, err
	}
	cutoff := time.Now().Add(-idle)
	for _, e := range entries {
		fi, err := e.Info()
		if err != nil || !fi.Mode().IsRegular() {
			continue
		}
		name := path.Join(tmpDir, e.Name())
		stale := !fi.ModTime().After(cutoff)
		if strings.HasPrefix(e.Name(), tempPrefix) && strings.HasSuffix(e.Name(), tempSuffix) {
			gone, err := s.removeIfUnlocked(name)
			if gone {
				removed++
			}
			if gone || !lockUnsupported(err) {
				continue // removed, held by a live upload, or gone meanwhile
			}
		}
		if stale {
			if err := s.root.Remove(name); err == nil {
				removed++
			}
		}
	}
	return removed, nil
}

// removeIfUnlocked removes a temporary file if no process holds its lock,
// holding the lock itself meanwhile.
func (s *FileStore) removeIfUnlocked(name string) (bool, error) {
	f, err := s.root.OpenFile(name, os.O_RDONLY, 0)
	if err != nil {
		return false, nil // placed or removed meanwhile
	}
	defer f.Close() // drops the lock
	if locked, err := tryLockTemp(f); !locked {
		return false, err
	}
	if err := s.root.Remove(name); err != nil {
		return false, nil
	}
	return true, nil
}

// Open opens a stored file for reading.
func (s *FileStore) Open(rel string) (*os.File, error) { return s.root.Open(rel) }

// Stat describes a stored file without following a final symlink.
func (s *FileStore) Stat(rel string) (fs.FileInfo, error) { return s.root.Lstat(rel) }

// ReadDirBatches passes folder rel's entries ("" for the top; symlinks as
// themselves), n at a time, to each.
func (s *FileStore) ReadDirBatches(rel string, n int, each func([]fs.DirEntry) error) error {
	f, err := s.openDir(rel)
	if err != nil {
		return err
	}
	defer f.Close()
	for {
		entries, err := f.ReadDir(n)
		if len(entries) > 0 {
			if err := each(entries); err != nil {
				return err
			}
		}
		if errors.Is(err, io.EOF) {
			return nil
		} else if err != nil {
			return err
		}
	}
}

// LinkNew gives the file at src a new name in folder dir (created if
// needed): name, or "name (2)", "name (3)", ... when taken on disk or,
// if reserved is not nil, reserved by it (a row whose file has gone). It
// never replaces an existing file. It returns the name used, relative to dir;
// when that is src's own name, nothing was linked.
func (s *FileStore) LinkNew(src, dir, name string, reserved func(name string) (bool, error)) (string, error) {
	if dir != "" {
		if err := s.root.MkdirAll(dir, 0o750); err != nil {
			return "", fmt.Errorf("create folder: %w", err)
		}
	}
	for n := 1; ; n++ {
		cand := name
		switch {
		case n > maxSuffix+1:
			return "", fmt.Errorf("link %s: no free name for %q", src, name)
		case n == maxSuffix+1:
			var b [4]byte
			_, _ = rand.Read(b[:])
			cand = withSuffix(name, 0)
			cand = strings.Replace(cand, "(0)", "("+hex.EncodeToString(b[:])+")", 1)
		case n > 1:
			cand = withSuffix(name, n)
		}
		if path.Join(dir, cand) == path.Clean(src) {
			// The file's own name: renaming "x (2)" to a taken "x"
			// keeps "x (2)" rather than making "x (3)".
			return cand, nil
		}
		if reserved != nil {
			if r, err := reserved(cand); err != nil {
				return "", err
			} else if r {
				continue
			}
		}
		err := s.root.Link(src, path.Join(dir, cand))
		if errors.Is(err, fs.ErrExist) {
			continue
		}
		if err != nil {
			return "", fmt.Errorf("link: %w", err)
		}
		if err := s.syncDir(dir); err != nil {
			return "", err
		}
		return cand, nil
	}
}

// Unlink removes the name rel only if it is another name of the same file
// as keep: after a move or an undone placement the content stays reachable,
// so this can never lose a user's file.
func (s *FileStore) Unlink(rel, keep string) error {
	if path.Clean(rel) == path.Clean(keep) {
		// One name, not two: removing it would lose the file.
		return fmt.Errorf("unlink %s: refused, it is the name to keep", rel)
	}
	a, err := s.root.Lstat(rel)
	if err != nil {
		return err
	}
	b, err := s.root.Lstat(keep)
	if err != nil {
		return err
	}
	if !a.Mode().IsRegular() || !os.SameFile(a, b) {
		return fmt.Errorf("unlink %s: refused, it is not another name of %s", rel, keep)
	}
	if err := s.root.Remove(rel); err != nil {
		return err
	}
	return s.syncDir(path.Dir(rel))
}

// MoveDir renames folder oldRel to newRel (parents created) with one
// rename(2), so the folder and everything in it move at once. An existing
// target is refused: folders are never merged or replaced. A missing source
// (no document was ever stored there) is not an error.
func (s *FileStore) MoveDir(oldRel, newRel string) error {
	if _, err := s.root.Lstat(newRel); err == nil {
		return ErrTargetExists
	} else if !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	fi, err := s.root.Lstat(oldRel)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if !fi.IsDir() {
		return fmt.Errorf("move folder %s: not a directory", oldRel)
	}
	if parent := path.Dir(newRel); parent != "." {
		if err := s.root.MkdirAll(parent, 0o750); err != nil {
			return err
		}
	}
	if err := s.root.Rename(oldRel, newRel); err != nil {
		if errors.Is(err, syscall.ENOTEMPTY) || errors.Is(err, syscall.EEXIST) {
			return ErrTargetExists
		}
		return err
	}
	if err := s.syncDir(path.Dir(newRel)); err != nil {
		return err
	}
	return s.syncDir(path.Dir(oldRel))
}

// RemoveEmptyDir removes folder rel if it is an empty directory; a folder
// holding anything (a file someone put there by hand) is kept and reported
// with syscall.ENOTEMPTY. A missing folder is not an error.
func (s *FileStore) RemoveEmptyDir(rel string) error {
	fi, err := s.root.Lstat(rel)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if !fi.IsDir() {
		return fmt.Errorf("remove folder %s: not a directory", rel)
	}
	return s.rmdir(rel)
}

// openDir opens folder rel, "" being the top.
func (s *FileStore) openDir(rel string) (*os.File, error) {
	if rel == "" {
		rel = "."
	}
	return s.root.Open(rel)
}

// syncDir makes a link, unlink or rename in dir durable.
func (s *FileStore) syncDir(dir string) error {
	d, err := s.openDir(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil && !errors.Is(err, syscall.EINVAL) {
		return fmt.Errorf("sync folder: %w", err)
	}
	return nil
}
