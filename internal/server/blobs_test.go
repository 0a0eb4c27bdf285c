package server

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"os"
	"testing"
	"time"

	"github.com/keyholder/keyholder/internal/store"
	"github.com/keyholder/keyholder/internal/store/storetest"
	"github.com/keyholder/keyholder/pkg/api"
	"github.com/keyholder/keyholder/pkg/envelope"
)

// TestUploadOnTmpfs: the whole flow with the blob store on tmpfs
// (/dev/shm), where O_DIRECT and fallocate may be refused: the upload
// lands, and the download opens to the same bytes.
func TestUploadOnTmpfs(t *testing.T) {
	if st, err := os.Stat("/dev/shm"); err != nil || !st.IsDir() {
		t.Skip("no /dev/shm: cannot test the blob store on tmpfs here")
	}
	dir, err := os.MkdirTemp("/dev/shm", "keyholder-server-test-")
	if err != nil {
		t.Skipf("/dev/shm is not writable: %v", err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	e := newEnvIn(t, sqlite(), dir, nil)
	dev := e.newUser("alice")
	lab := e.newParty("lab")
	bank := e.newParty("bank")
	// Several copy buffers and an unaligned tail.
	plaintext := randBytes(3<<20 + 12345)
	u := e.prepare(lab, dev.user, plaintext, envelope.Compat)
	resp, data := e.send(lab, dev.user, u)
	if resp.StatusCode != 201 {
		t.Fatalf("upload: %d %s", resp.StatusCode, data)
	}
	var rec api.Record
	e.call("GET", resp.Header.Get("Location"), lab.token, nil, 200, &rec)
	f, err := e.blobs.Open(rec.CiphertextSHA256)
	if err != nil {
		t.Fatal(err)
	}
	stored, _ := io.ReadAll(f)
	f.Close()
	if sum := sha256.Sum256(stored); hex.EncodeToString(sum[:]) != rec.CiphertextSHA256 || int64(len(stored)) != u.digest.Size {
		t.Fatal("the stored blob does not match its digest")
	}
	e.approve(dev, rec.ID)
	e.grantAccess(dev, bank, rec.ID, 600)
	resp, full := e.do("GET", api.Path(api.PathRecordContent, rec.ID), bank.token, nil)
	if resp.StatusCode != 200 {
		t.Fatalf("download: %d", resp.StatusCode)
	}
	r, err := envelope.Open(bytes.NewReader(full), bank.key)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(r)
	if err != nil || !bytes.Equal(got, plaintext) {
		t.Fatalf("the opened record differs (%v)", err)
	}
	if _, temps, _ := e.blobs.Count(); temps != 0 {
		t.Fatalf("%d temporary files left", temps)
	}
}

// TestBlobDeleteWaitsForCommit: deleting a blob that no committed record
// refers to (after a rejection or expiry) waits for a transaction that is
// committing a record with the same blob, and then keeps the blob. Without
// the lock, the deletion would see no reference and remove the file from
// under the new record.
func TestBlobDeleteWaitsForCommit(t *testing.T) {
	for _, b := range storetest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			e := newEnv(t, b, nil)
			data := []byte("same ciphertext bytes")
			sum := sha256.Sum256(data)
			key := hex.EncodeToString(sum[:])
			tmp, _ := e.blobs.Create()
			tmp.Write(data)
			if err := tmp.Commit(key); err != nil {
				t.Fatal(err)
			}
			inTx, release := make(chan struct{}), make(chan struct{})
			committed := make(chan error, 1)
			go func() {
				committed <- e.st.Apply(t.Context(), store.Actor{Kind: store.ActorSystem, ID: "test"}, func(tx *store.Tx) error {
					if err := tx.LockKey(blobLock(key)); err != nil {
						return err
					}
					r := store.Record{ID: store.NewID(), UserID: store.NewID(), PartyID: store.NewID(), State: store.StatePending,
						Profile: "compat", CiphertextSHA256: key, BlobKey: &key, MetadataSHA256: key}
					if err := tx.DB.Create(&r).Error; err != nil {
						return err
					}
					close(inTx)
					<-release
					return nil
				})
			}()
			<-inTx
			deleted := make(chan struct{})
			go func() { e.srv.deleteBlob(key); close(deleted) }()
			select {
			case <-deleted:
			case <-time.After(300 * time.Millisecond):
			}
			close(release)
			if err := <-committed; err != nil {
				t.Fatal(err)
			}
			<-deleted
			if ok, _ := e.blobs.Exists(key); !ok {
				t.Fatal("the blob of a committed record was deleted")
			}
			// With no reference left, it goes.
			e.st.DB(t.Context()).Model(&store.Record{}).Where("blob_key = ?", key).Update("blob_key", nil)
			e.srv.deleteBlob(key)
			if ok, _ := e.blobs.Exists(key); ok {
				t.Fatal("an unreferenced blob was kept")
			}
		})
	}
}
