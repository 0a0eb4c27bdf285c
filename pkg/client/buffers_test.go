package client

import (
	"crypto/rand"
	"errors"
	"io"
	"sync"
	"testing"

	"github.com/keyholder/keyholder/pkg/envelope"
)

// failingReader gives n random bytes, then an error.
type failingReader struct{ n int }

func (f *failingReader) Read(p []byte) (int, error) {
	if f.n <= 0 {
		return 0, errors.New("the plaintext's source failed")
	}
	k := min(len(p), f.n)
	rand.Read(p[:k])
	f.n -= k
	return k, nil
}

// TestUploadsBesideFailedUploads: an upload whose plaintext fails midway
// (the modern profile, whose background writer outlived the failure)
// leaves nothing behind in the pools that the uploads beside it take:
// they succeed, and the failed ones fail. Before the fix the background
// writer wrote into a body writer already back in its pool, and the
// process panicked.
func TestUploadsBesideFailedUploads(t *testing.T) {
	e := newTestEnv(t)
	ctx := ctxT(t)
	user, _, party := e.setup(ctx, "pools")
	for range 12 {
		var wg sync.WaitGroup
		wg.Add(2)
		go func() {
			defer wg.Done()
			if _, err := party.SealAndUpload(ctx, user, &failingReader{n: 3 << 20}, UploadOptions{Profile: envelope.Modern}); err == nil {
				t.Error("an upload whose plaintext failed succeeded")
			}
		}()
		go func() {
			defer wg.Done()
			if _, err := party.SealAndUpload(ctx, user, io.LimitReader(rand.Reader, 1<<20), UploadOptions{Profile: envelope.Modern}); err != nil {
				t.Errorf("an upload beside a failed one: %v", err)
			}
		}()
		wg.Wait()
	}
}
