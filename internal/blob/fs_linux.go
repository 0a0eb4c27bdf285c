//go:build linux

package blob

import (
	"os"

	"golang.org/x/sys/unix"
)

// preallocate reserves blocks for [off, off+n) so that streaming writes do
// not pay for block allocation piecemeal. Failure is harmless: the writes
// allocate as usual.
func preallocate(f *os.File, off, n int64) bool {
	return unix.Fallocate(int(f.Fd()), 0, off, n) == nil
}

// createTemp creates a temporary file for direct I/O (O_DIRECT), which
// bypasses the page cache: on virtual machines, where the page cache is
// slow to grow, large uploads are several times faster, and a server
// receiving gigabytes does not evict everything else from memory. If the
// filesystem refuses O_DIRECT, the file is opened normally.
func createTemp(dir string) (*os.File, bool, error) {
	f, err := os.CreateTemp(dir, "upload-*")
	if err != nil {
		return nil, false, err
	}
	flags, err := unix.FcntlInt(f.Fd(), unix.F_GETFL, 0)
	if err == nil {
		if _, err = unix.FcntlInt(f.Fd(), unix.F_SETFL, flags|unix.O_DIRECT); err == nil {
			return f, true, nil
		}
	}
	return f, false, nil
}

// setBuffered turns direct I/O off, for writes that are not aligned.
func setBuffered(f *os.File) error {
	flags, err := unix.FcntlInt(f.Fd(), unix.F_GETFL, 0)
	if err != nil {
		return err
	}
	_, err = unix.FcntlInt(f.Fd(), unix.F_SETFL, flags&^unix.O_DIRECT)
	return err
}

// freeSpace returns the bytes available to unprivileged writers on the
// filesystem of dir.
func freeSpace(dir string) (int64, bool) {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return 0, false
	}
	return int64(st.Bavail) * int64(st.Bsize), true
}

// onTmpfs reports whether dir is on tmpfs, where preallocating a file
// allocates memory that a truncate frees right after: cost, no benefit.
func onTmpfs(dir string) bool {
	var st unix.Statfs_t
	return unix.Statfs(dir, &st) == nil && st.Type == unix.TMPFS_MAGIC
}
