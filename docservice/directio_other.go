//go:build !linux

package docservice

import "os"

// newDirectFile is the file itself where O_DIRECT is not used.
func newDirectFile(f *os.File) writerSyncer { return f }
