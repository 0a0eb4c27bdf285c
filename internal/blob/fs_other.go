//go:build !linux

package blob

import "os"

func preallocate(f *os.File, off, n int64) bool { return false }

func createTemp(dir string) (*os.File, bool, error) {
	f, err := os.CreateTemp(dir, "upload-*")
	return f, false, err
}

func setBuffered(f *os.File) error { return nil }

// freeSpace is not known here: Check tests writability only.
func freeSpace(dir string) (int64, bool) { return 0, false }

func onTmpfs(dir string) bool { return false }
