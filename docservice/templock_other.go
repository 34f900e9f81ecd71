//go:build !unix

package docservice

import (
	"errors"
	"os"
)

var errNoTempLock = errors.New("temporary file locks are not supported here")

// Without flock, temporary files get CleanTemp's idle rule only.
func lockTemp(*os.File) (func(), error)  { return func() {}, nil }
func tryLockTemp(*os.File) (bool, error) { return false, errNoTempLock }
func lockUnsupported(err error) bool     { return errors.Is(err, errNoTempLock) }
