// Command s3 measures keyholderd with ciphertexts in S3 against the S3
// client library alone on the same server (scripts/bench-s3.sh runs it,
// with keyholderd and versitygw started by the script).
//
// With -size: a record of that many random bytes is sealed to a fresh
// user's device (untimed) and uploaded through keyholderd by a party
// (pkg/client, streaming from the file); the device approves it and grants
// the party access; the party downloads it to io.Discard. Then minio-go
// alone puts the same file into the same bucket (FPutObject, its default
// settings) and gets it back. Each is timed -runs times, the best counts
// (every keyholderd run uploads a freshly sealed file: the server refuses
// the same ciphertext twice).
//
// With -small N: N records of 1 KiB are sealed and uploaded by -workers
// parties at once; uploads per second.
//
// Output: shell assignments (UPLOAD_S, DOWNLOAD_S, BASE_UPLOAD_S,
// BASE_DOWNLOAD_S, BYTES, SMALL_PER_S) for the script to eval.
package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/keyholder/keyholder/pkg/client"
	"github.com/keyholder/keyholder/pkg/envelope"
	"github.com/keyholder/keyholder/pkg/keychain"
)

var (
	server  = flag.String("server", "http://127.0.0.1:8080", "keyholderd URL")
	admin   = flag.String("admin-token", os.Getenv("KEYHOLDER_ADMIN_TOKEN"), "admin token")
	s3URL   = flag.String("s3", "", "S3 server for the baseline, http://ACCESS:SECRET@host:port (empty: no baseline)")
	bucket  = flag.String("bucket", "", "bucket for the baseline")
	size    = flag.Int64("size", 0, "record size in bytes (0: no large record)")
	dir     = flag.String("dir", os.TempDir(), "where the sealed file goes")
	runs    = flag.Int("runs", 2, "timed runs of each large transfer; the best counts")
	small   = flag.Int("small", 0, "small records to upload (0: none)")
	workers = flag.Int("workers", 4, "parties uploading small records at once")
)

func die(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "bench/s3: "+format+"\n", args...)
	os.Exit(1)
}

func check(err error, what string) {
	if err != nil {
		die("%s: %v", what, err)
	}
}

type world struct {
	userID  string
	device  *client.Client
	devID   *client.Identity
	chain   *keychain.State
	parties []*client.Client
	recips  []*envelope.Key
}

func keyClient(name string) (*client.Client, *client.Identity) {
	k, err := envelope.GenerateKey(name)
	check(err, "key")
	id, err := client.IdentityFromKey(k)
	check(err, "identity")
	c, err := client.New(*server, client.WithIdentity(id), client.WithUserAgent("keyholder-bench-s3"))
	check(err, "client")
	return c, id
}

func setup(ctx context.Context, parties int) *world {
	adm, err := client.New(*server, client.WithAdminToken(*admin))
	check(err, "admin client")
	u, err := adm.CreateUser(ctx, fmt.Sprintf("bench-s3-%d", rand.Uint64()))
	check(err, "create user")
	w := &world{userID: u.ID}
	w.device, w.devID = keyClient("bench device")
	_, err = w.device.Enroll(ctx, u.Code, "", "")
	check(err, "enroll")
	check(w.device.Login(ctx), "device login")
	w.chain, err = w.device.OwnChain(ctx)
	check(err, "chain")
	for i := 0; i < parties; i++ {
		c, id := keyClient(fmt.Sprintf("bench party %d", i))
		_, err := adm.CreateParty(ctx, fmt.Sprintf("bench party %d %d", i, rand.Uint64()), id.Key.Public().Armor())
		check(err, "create party")
		check(c.Login(ctx), "party login")
		w.parties = append(w.parties, c)
	}
	w.recips, err = w.parties[0].RecipientKeys(ctx, w.userID)
	check(err, "recipient keys")
	return w
}

// seal writes a fresh sealed record of n random bytes to path.
func (w *world) seal(path string, n int64, seed uint64) {
	f, err := os.Create(path)
	check(err, "create")
	sw, err := envelope.Seal(f, envelope.Modern, w.recips...)
	check(err, "seal")
	rng := rand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8)})
	buf := make([]byte, 1<<20)
	for left := n; left > 0; left -= int64(len(buf)) {
		b := buf[:min(left, int64(len(buf)))]
		rng.Read(b)
		_, err := sw.Write(b)
		check(err, "seal")
	}
	check(sw.Close(), "seal")
	check(f.Close(), "close")
}

// answer approves or grants the device's open requests.
func (w *world) answer(ctx context.Context, kind string) {
	reqs, err := w.device.DeviceRequests(ctx)
	check(err, "device requests")
	for _, r := range reqs {
		d, err := w.device.DeviceRequest(ctx, r.ID)
		check(err, "device request")
		if d.Kind != kind {
			continue
		}
		cr, err := client.CheckRequest(d, w.devID, w.chain)
		check(err, "check request")
		if kind == client.KindAccess {
			_, err = w.device.GrantRequest(ctx, cr, time.Time{})
		} else {
			_, err = w.device.ApproveRequest(ctx, cr)
		}
		check(err, "answer")
	}
}

func best(d *time.Duration, start time.Time) {
	if e := time.Since(start); *d == 0 || e < *d {
		*d = e
	}
}

func main() {
	flag.Parse()
	ctx := context.Background()
	w := setup(ctx, max(*workers, 1))
	if *size > 0 {
		var up, down, baseUp, baseDown time.Duration
		var fileSize int64
		path := filepath.Join(*dir, "bench-s3-record.pgp")
		defer os.Remove(path)
		party := w.parties[0]
		for i := 0; i < *runs; i++ {
			w.seal(path, *size, uint64(i))
			f, err := os.Open(path)
			check(err, "open")
			st, _ := f.Stat()
			fileSize = st.Size()
			t0 := time.Now()
			rec, err := party.Upload(ctx, w.userID, f, client.UploadOptions{ContentType: "application/octet-stream", Size: *size, Recipients: w.recips})
			check(err, "upload through keyholderd")
			best(&up, t0)
			f.Close()
			w.answer(ctx, client.KindApproval)
			_, err = party.RequestAccess(ctx, rec.Record.ID, "benchmark", 3600)
			check(err, "access request")
			w.answer(ctx, client.KindAccess)
			t0 = time.Now()
			n, err := party.Fetch(ctx, rec.Record.ID, io.Discard)
			check(err, "download through keyholderd")
			best(&down, t0)
			if n < rec.Record.CiphertextSize {
				die("downloaded %d bytes, the ciphertext has %d", n, rec.Record.CiphertextSize)
			}
		}
		if *s3URL != "" {
			c := minioClient()
			for i := 0; i < *runs; i++ {
				name := fmt.Sprintf("bench-baseline-%d", i)
				t0 := time.Now()
				_, err := c.FPutObject(ctx, *bucket, name, path, minio.PutObjectOptions{})
				check(err, "minio-go FPutObject")
				best(&baseUp, t0)
				t0 = time.Now()
				obj, err := c.GetObject(ctx, *bucket, name, minio.GetObjectOptions{})
				check(err, "minio-go GetObject")
				n, err := io.Copy(io.Discard, obj)
				check(err, "minio-go GetObject")
				obj.Close()
				best(&baseDown, t0)
				if n != fileSize {
					die("minio-go got %d bytes of %d", n, fileSize)
				}
				check(c.RemoveObject(ctx, *bucket, name, minio.RemoveObjectOptions{}), "remove baseline")
			}
		}
		fmt.Printf("BYTES=%d\nUPLOAD_S=%.4f\nDOWNLOAD_S=%.4f\nBASE_UPLOAD_S=%.4f\nBASE_DOWNLOAD_S=%.4f\n",
			fileSize, up.Seconds(), down.Seconds(), baseUp.Seconds(), baseDown.Seconds())
	}
	if *small > 0 {
		body := bytes.Repeat([]byte("keyholder s3 benchmark record\n"), 35)[:1024]
		var next atomic.Int64
		var wg sync.WaitGroup
		t0 := time.Now()
		for _, p := range w.parties {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for next.Add(1) <= int64(*small) {
					_, err := p.SealAndUpload(ctx, w.userID, bytes.NewReader(body), client.UploadOptions{
						ContentType: "text/plain", Size: int64(len(body)), Recipients: w.recips})
					check(err, "small upload")
				}
			}()
		}
		wg.Wait()
		fmt.Printf("SMALL_PER_S=%.1f\n", float64(*small)/time.Since(t0).Seconds())
	}
}

func minioClient() *minio.Client {
	u, err := url.Parse(*s3URL)
	if err != nil || u.User == nil {
		die("-s3 must be http://ACCESS:SECRET@host:port")
	}
	secret, _ := u.User.Password()
	c, err := minio.New(u.Host, &minio.Options{Creds: credentials.NewStaticV4(u.User.Username(), secret, ""),
		Secure: u.Scheme == "https", Region: "us-east-1", BucketLookup: minio.BucketLookupPath})
	check(err, "minio client")
	return c
}
