//go:build unix

package docservice

import (
	"path"

	"golang.org/x/sys/unix"
)

// rmdir removes the empty directory rel with unlinkat(AT_REMOVEDIR) in its
// parent, opened through the root: unlike a generic remove it can never
// delete a file, whatever was swapped in at that name.
func (s *FileStore) rmdir(rel string) error {
	parent, err := s.root.Open(path.Dir(rel))
	if err != nil {
		return err
	}
	defer parent.Close()
	return unix.Unlinkat(int(parent.Fd()), path.Base(rel), unix.AT_REMOVEDIR)
}
