//go:build unix

package docservice

import (
	"errors"
	"os"
	"syscall"
)

// lockTemp takes the lock that marks a temporary upload file as being
// written by a live process. The lock belongs to the open file: a duplicate
// descriptor keeps it after the caller closes f (it does once the bytes are
// written, while the file is still being checked and placed), until release.
func lockTemp(f *os.File) (release func(), err error) {
	hold, err := syscall.Dup(int(f.Fd()))
	if err != nil {
		return nil, err
	}
	syscall.CloseOnExec(hold)
	if err := syscall.Flock(hold, syscall.LOCK_EX|syscall.LOCK_NB); err != nil && !lockUnsupported(err) {
		syscall.Close(hold)
		return nil, err
	}
	return func() { _ = syscall.Close(hold) }, nil
}

// tryLockTemp takes a temporary file's lock if no process holds it; closing
// f drops it again.
func tryLockTemp(f *os.File) (bool, error) {
	err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
	if errors.Is(err, syscall.EWOULDBLOCK) {
		return false, nil
	}
	return err == nil, err
}

// lockUnsupported reports a file system without flock (some network file
// systems): its files get CleanTemp's idle rule only.
func lockUnsupported(err error) bool {
	return errors.Is(err, syscall.ENOLCK) || errors.Is(err, syscall.EOPNOTSUPP) || errors.Is(err, syscall.ENOSYS)
}
