// Package blob stores record ciphertexts (encrypted data packets).
//
// The filesystem store is content-addressed: a blob's key is the lower-case
// hex SHA-256 of its bytes. Writers go to a temporary file in the store's
// tmp directory and are renamed into place only once the caller knows the
// hash and has decided to keep the bytes (write-temp, fsync, rename, fsync
// directory), so a crash or a refused upload never leaves a half blob under
// a real key. The S3 store (S3) keeps the same promise in a bucket; Open
// picks one from the --blob setting.
package blob

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"time"
	"unsafe"
)

// ErrNotFound means no blob has the key.
var ErrNotFound = errors.New("blob: not found")

// ErrBadKey means a key is not 64 lower-case hex digits.
var ErrBadKey = errors.New("blob: invalid key")

var keyRE = regexp.MustCompile(`^[0-9a-f]{64}$`)

// ValidKey reports whether key is a valid blob key.
func ValidKey(key string) bool { return keyRE.MatchString(key) }

// Store is where ciphertexts live.
type Store interface {
	// Create starts a new temporary blob.
	Create() (Temp, error)
	// Open opens the blob for reading.
	Open(key string) (File, error)
	// Delete removes the blob; deleting a missing blob is not an error.
	Delete(key string) error
	// Exists reports whether the blob exists.
	Exists(key string) (bool, error)
}

// Temp is a blob being written.
type Temp interface {
	io.Writer
	// Sync makes the written bytes durable (fsync), so that a later Commit
	// is quick. It may be called once all bytes are written; Commit calls
	// it if the caller did not.
	Sync() error
	// Commit syncs the bytes and makes them the blob key: once it returns,
	// the complete blob is durable under its key (file and directory
	// entries fsynced). If a blob with that key exists already (same
	// bytes), it is replaced atomically.
	Commit(key string) error
	// Abort removes the temporary file. It is safe after Commit (no-op) and
	// may be called more than once.
	Abort() error
	// Name is the temporary file's path (for tests and diagnostics).
	Name() string
}

// File is an open blob.
type File interface {
	io.ReadSeekCloser
	Size() int64
}

// FS is a filesystem Store rooted at a directory:
//
//	dir/tmp/upload-*        temporary files
//	dir/ab/abcdef...        blobs, by the first two hex digits of the key
type FS struct {
	dir        string
	noPrealloc bool // tmpfs: reserving blocks only costs memory
}

// StaleTempAge is how long a temporary file must have gone unmodified
// before it counts as left behind by a crashed or killed process. An upload
// in progress writes to its file continuously, so its modification time
// stays fresh; several replicas can share one directory without removing
// each other's uploads.
const StaleTempAge = 24 * time.Hour

// TempCleaner is implemented by stores that can remove stale temporary
// files (the server's sweeper calls it).
type TempCleaner interface {
	RemoveStaleTemps(olderThan time.Duration) (int, error)
}

// Checker is implemented by stores that can tell whether they can take a
// new blob now (the server's readiness check asks).
type Checker interface {
	// Check returns an error unless the store is writable and has at
	// least minFree bytes free.
	Check(minFree int64) error
}

// Check creates and removes a file in the temporary directory (a
// read-only or vanished directory fails), and compares the free space of
// the filesystem with minFree (where the system reports it; an error then
// wraps syscall.ENOSPC).
func (s *FS) Check(minFree int64) error {
	f, err := os.CreateTemp(s.TempDir(), "ready-*")
	if err != nil {
		return fmt.Errorf("blob: %s is not writable: %w", s.TempDir(), err)
	}
	name := f.Name()
	f.Close()
	if err := os.Remove(name); err != nil {
		return fmt.Errorf("blob: %w", err)
	}
	if free, ok := freeSpace(s.dir); ok && free < minFree {
		return fmt.Errorf("blob: %s has %d bytes free, fewer than the %d required: %w", s.dir, free, minFree, syscall.ENOSPC)
	}
	return nil
}

// NewFS returns a filesystem store in dir, creating it (mode 0700) if
// needed. Temporary files left by an earlier run are removed once they are
// older than StaleTempAge (by modification time); younger ones may belong
// to another process sharing the directory and are kept.
func NewFS(dir string) (*FS, error) {
	if err := os.MkdirAll(filepath.Join(dir, "tmp"), 0o700); err != nil {
		return nil, fmt.Errorf("blob: %w", err)
	}
	s := &FS{dir: dir, noPrealloc: onTmpfs(dir)}
	if _, err := s.RemoveStaleTemps(StaleTempAge); err != nil {
		return nil, err
	}
	return s, nil
}

// RemoveStaleTemps removes the temporary files not modified for olderThan
// and returns how many it removed.
func (s *FS) RemoveStaleTemps(olderThan time.Duration) (int, error) {
	ents, err := os.ReadDir(s.TempDir())
	if err != nil {
		return 0, fmt.Errorf("blob: %w", err)
	}
	cutoff := time.Now().Add(-olderThan)
	n := 0
	for _, e := range ents {
		if !strings.HasPrefix(e.Name(), "upload-") {
			continue
		}
		info, err := e.Info()
		if err != nil || !info.Mode().IsRegular() || info.ModTime().After(cutoff) {
			continue // gone meanwhile, not a file, or in use
		}
		if err := os.Remove(filepath.Join(s.TempDir(), e.Name())); err == nil {
			n++
		}
	}
	return n, nil
}

// Dir returns the root directory.
func (s *FS) Dir() string { return s.dir }

// TempDir returns the directory of temporary files.
func (s *FS) TempDir() string { return filepath.Join(s.dir, "tmp") }

func (s *FS) path(key string) string { return filepath.Join(s.dir, key[:2], key) }

// Create starts a temporary blob.
func (s *FS) Create() (Temp, error) {
	f, direct, err := createTemp(s.TempDir())
	if err != nil {
		return nil, fmt.Errorf("blob: creating temporary file: %w", err)
	}
	return &fsTemp{s: s, f: f, direct: direct, noPrealloc: s.noPrealloc}, nil
}

type fsTemp struct {
	s          *FS
	f          *os.File
	done       bool
	synced     bool
	err        error // a failed write: the temporary file is unusable
	written    int64
	allocated  int64 // bytes preallocated (file size may exceed written)
	noPrealloc bool
	direct     bool // O_DIRECT is on: writes must be aligned
}

// Hooks for tests that simulate filesystems without O_DIRECT or fallocate.
var (
	// fallocate reserves blocks (preallocate on Linux).
	fallocate = preallocate
	// directWriteErr, if set, is what a write with O_DIRECT on fails with.
	directWriteErr error
)

// Align is the alignment of offsets, lengths and buffer addresses that
// lets writes go straight to the disk (O_DIRECT). Writers that care about
// speed use buffers from AlignedBuffer, sized in multiples of Align; any
// other write still works, through the page cache.
const Align = 4096

// AlignedBuffer returns a buffer of n bytes whose address is a multiple of Align.
func AlignedBuffer(n int) []byte {
	b := make([]byte, n+Align)
	off := int(uintptr(unsafe.Pointer(&b[0])) & (Align - 1))
	if off != 0 {
		off = Align - off
	}
	return b[off : off+n : off+n]
}

func aligned(p []byte, off int64) bool {
	return len(p)%Align == 0 && off%Align == 0 && uintptr(unsafe.Pointer(&p[0]))&(Align-1) == 0
}

// How far ahead of the writes the file is preallocated: as far as it is
// long already, between preallocMin and preallocStep. A small blob reserves
// little more than its size (a whole step per upload cost 32 ms of CPU
// per small record on tmpfs); a large one reserves in large steps.
const (
	preallocMin  = 1 << 20
	preallocStep = 64 << 20
)

func (t *fsTemp) Name() string { return t.f.Name() }

// Write appends p. With O_DIRECT on, aligned writes go straight to the
// disk; the first unaligned one (the tail of an upload) turns O_DIRECT off
// and goes through the page cache, like everything after it. A filesystem
// that accepted O_DIRECT at open but refuses the write with EINVAL (some
// FUSE and network filesystems, tmpfs on older kernels, devices with larger
// sectors) gets the same fallback. Preallocation that the filesystem does
// not support (EOPNOTSUPP) is simply not done.
func (t *fsTemp) Write(p []byte) (int, error) {
	if t.done {
		return 0, errors.New("blob: write to a finished temporary blob")
	}
	if t.err != nil {
		return 0, t.err
	}
	if end := t.written + int64(len(p)); end > t.allocated && !t.noPrealloc {
		n := max(min(preallocStep, max(t.written, preallocMin)), end-t.allocated)
		if fallocate(t.f, t.allocated, n) {
			t.allocated += n
		} else {
			t.noPrealloc = true
		}
	}
	if len(p) == 0 {
		return 0, nil
	}
	t.synced = false
	if t.direct && !aligned(p, t.written) {
		if err := t.buffered(); err != nil {
			return 0, err
		}
	}
	n, err := t.writeAt(p)
	t.written += int64(n)
	if err != nil && t.direct && errors.Is(err, syscall.EINVAL) {
		if err := t.buffered(); err != nil {
			return n, err
		}
		var m int
		m, err = t.writeAt(p[n:])
		t.written += int64(m)
		n += m
	}
	if err != nil {
		t.err = fmt.Errorf("blob: write: %w", err)
		return n, t.err
	}
	return n, nil
}

func (t *fsTemp) writeAt(p []byte) (int, error) {
	if t.direct && directWriteErr != nil {
		return 0, &os.PathError{Op: "write", Path: t.f.Name(), Err: directWriteErr}
	}
	return t.f.WriteAt(p, t.written)
}

// buffered turns O_DIRECT off for the rest of the file.
func (t *fsTemp) buffered() error {
	if err := setBuffered(t.f); err != nil {
		return fmt.Errorf("blob: turning off direct I/O: %w", err)
	}
	t.direct = false
	return nil
}

// Sync trims the preallocation and fsyncs the file.
func (t *fsTemp) Sync() error {
	if t.done {
		return errors.New("blob: temporary blob already finished")
	}
	if t.err != nil {
		return t.err
	}
	if t.synced {
		return nil
	}
	if t.allocated > t.written {
		if err := t.f.Truncate(t.written); err != nil {
			return fmt.Errorf("blob: truncate: %w", err)
		}
	}
	if err := t.f.Sync(); err != nil {
		t.err = fmt.Errorf("blob: sync: %w", err)
		return t.err
	}
	t.synced = true
	return nil
}

// SeekOffset is the offset io.Seeker.Seek(off, whence) moves to, from cur
// in a stream of size bytes; an error for an unknown whence or a negative
// result.
func SeekOffset(off int64, whence int, cur, size int64) (int64, error) {
	switch whence {
	case io.SeekStart:
	case io.SeekCurrent:
		off += cur
	case io.SeekEnd:
		off += size
	default:
		return 0, errors.New("blob: bad whence")
	}
	if off < 0 {
		return 0, errors.New("blob: negative offset")
	}
	return off, nil
}

// readyToCommit is the start of every Commit: t must be unfinished, key a
// valid key, and t's bytes durable (synced) before they get their name, so
// that a crash never leaves an incomplete blob under a key. On an error t
// is aborted.
func readyToCommit(t Temp, done bool, key string) error {
	if done {
		return errors.New("blob: temporary blob already finished")
	}
	if !ValidKey(key) {
		t.Abort()
		return ErrBadKey
	}
	if err := t.Sync(); err != nil {
		t.Abort()
		return err
	}
	return nil
}

func (t *fsTemp) Commit(key string) error {
	if err := readyToCommit(t, t.done, key); err != nil {
		return err
	}
	t.done = true
	name := t.f.Name()
	if err := t.f.Close(); err != nil {
		os.Remove(name)
		return fmt.Errorf("blob: close: %w", err)
	}
	dir := filepath.Join(t.s.dir, key[:2])
	if err := t.s.mkdirDurable(dir); err != nil {
		os.Remove(name)
		return err
	}
	if err := os.Rename(name, t.s.path(key)); err != nil {
		os.Remove(name)
		return fmt.Errorf("blob: rename: %w", err)
	}
	// The new name is durable when Commit returns, so a database row that
	// refers to the blob and commits afterwards never outlives it.
	if err := syncDir(dir); err != nil {
		return err
	}
	return syncDir(t.s.TempDir())
}

// mkdirDurable creates a key prefix directory if needed, and then fsyncs
// the root so that the new directory entry survives a crash with the blobs
// in it.
func (s *FS) mkdirDurable(dir string) error {
	if _, err := os.Stat(dir); err == nil {
		return nil
	}
	if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, os.ErrExist) {
		return fmt.Errorf("blob: %w", err)
	}
	return syncDir(s.dir)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("blob: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("blob: sync dir: %w", err)
	}
	return nil
}

func (t *fsTemp) Abort() error {
	if t.done {
		return nil
	}
	t.done = true
	t.f.Close()
	if err := os.Remove(t.f.Name()); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("blob: %w", err)
	}
	return nil
}

type fsFile struct {
	*os.File
	size int64
}

func (f *fsFile) Size() int64 { return f.size }

// Open opens a blob.
func (s *FS) Open(key string) (File, error) {
	if !ValidKey(key) {
		return nil, ErrBadKey
	}
	f, err := os.Open(s.path(key))
	if errors.Is(err, os.ErrNotExist) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("blob: %w", err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("blob: %w", err)
	}
	return &fsFile{File: f, size: st.Size()}, nil
}

// Delete removes a blob.
func (s *FS) Delete(key string) error {
	if !ValidKey(key) {
		return ErrBadKey
	}
	err := os.Remove(s.path(key))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("blob: %w", err)
	}
	return nil
}

// Exists reports whether a blob exists.
func (s *FS) Exists(key string) (bool, error) {
	if !ValidKey(key) {
		return false, ErrBadKey
	}
	_, err := os.Stat(s.path(key))
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	return err == nil, err
}

// Count returns the number of committed blobs and temporary files (tests
// use it to check that a refused upload left nothing behind).
func (s *FS) Count() (blobs, temps int, err error) {
	err = filepath.WalkDir(s.dir, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			return nil
		}
		if filepath.Base(filepath.Dir(p)) == "tmp" {
			temps++
		} else {
			blobs++
		}
		return nil
	})
	return
}
