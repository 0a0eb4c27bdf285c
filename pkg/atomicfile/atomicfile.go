// Package atomicfile replaces a file so that a crash or an error leaves
// either the old file or the whole new one, never a part: the new content
// goes to a temporary file in the same directory, which is synced, renamed
// over the path, and the directory synced so that the rename lasts too.
//
// Keyholder writes keys, home files and decrypted records this way; the
// SDK (pkg/client, pkg/envelope) and the commands share this one copy.
package atomicfile

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// Write copies r into a new file at path with mode (set before any byte is
// written), replacing what was there only if r ended without error and
// the file was synced; on any error the temporary file is removed and path
// is untouched. It returns the number of bytes copied.
func Write(path string, r io.Reader, mode os.FileMode) (n int64, err error) {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	f, err := os.CreateTemp(dir, "."+base+".tmp-*")
	if err != nil {
		return 0, fmt.Errorf("creating temporary file: %w", err)
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	if err = f.Chmod(mode); err != nil {
		return 0, err
	}
	if n, err = io.Copy(f, r); err != nil {
		return n, err
	}
	if err = f.Sync(); err != nil {
		return n, err
	}
	if err = f.Close(); err != nil {
		return n, err
	}
	if err = os.Rename(f.Name(), path); err != nil {
		return n, err
	}
	return n, SyncDir(dir)
}

// SyncDir makes a rename or a new file in dir durable. Where directories
// cannot be synced (os.ErrInvalid), it does nothing.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil && !errors.Is(err, os.ErrInvalid) {
		return err
	}
	return nil
}
