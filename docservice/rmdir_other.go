//go:build !unix

package docservice

// rmdir removes the directory rel (Remove on Windows refuses a non-empty one).
func (s *FileStore) rmdir(rel string) error { return s.root.Remove(rel) }
