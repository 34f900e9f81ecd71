//go:build !unix

package settingsfile

import "io/fs"

func inode(fs.FileInfo) uint64 { return 0 }
