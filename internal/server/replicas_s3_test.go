package server

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/keyholder/keyholder/internal/blob"
	"github.com/keyholder/keyholder/internal/blob/s3test"
	"github.com/keyholder/keyholder/internal/push"
	"github.com/keyholder/keyholder/internal/store"
	"github.com/keyholder/keyholder/pkg/api"
	"github.com/keyholder/keyholder/pkg/envelope"
)

// s3PartSize makes a 12 MiB record a multipart upload.
const s3PartSize = blob.MinPartSize

// s3Replicas is a PostgreSQL schema and a bucket that stateless replicas
// share (and nothing else: each has a data directory of its own).
type s3Replicas struct {
	dsn, schema string
	s3          s3test.Server
	bucket      string
	clk         *clock
	channel     string
}

func newS3Replicas(t *testing.T) *s3Replicas {
	t.Helper()
	dsn := os.Getenv("KEYHOLDER_TEST_POSTGRES")
	if dsn == "" {
		t.Skip("KEYHOLDER_TEST_POSTGRES is not set: replicas need PostgreSQL")
	}
	srv, bucket := s3test.Bucket(t)
	r := &s3Replicas{dsn: dsn, schema: "kh_test_" + store.NewID()[:16], s3: srv, bucket: bucket, clk: &clock{},
		channel: "kh_test_" + store.NewID()[:16]}
	st := r.openStore(t)
	if err := st.Migrate(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.DropSchema(r.schema) })
	return r
}

func (r *s3Replicas) openStore(t testing.TB) *store.Store {
	t.Helper()
	st, err := store.Open(r.dsn, store.Options{Schema: r.schema, Now: r.clk.now, MaxOpenConns: 8})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// blobs opens the bucket as a replica does: its own client.
func (r *s3Replicas) blobs(t testing.TB) *blob.S3 {
	t.Helper()
	o := r.s3.Options()
	o.PartSize = s3PartSize
	s, err := blob.NewS3(context.Background(), r.bucket, "records", o)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// replica starts an in-process server on the shared database and bucket.
func (r *s3Replicas) replica(t *testing.T) *env {
	t.Helper()
	s3 := r.blobs(t)
	broadcaster := func(hub *push.Local) push.Notifier {
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		br, err := push.NewPGBroadcaster(ctx, r.dsn, hub, push.PGOptions{Channel: r.channel, Logger: discardLogger()})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { br.Close() })
		return br
	}
	return newEnvWrapped(t, r.openStore(t), r.clk, t.TempDir(), broadcaster,
		func(*blob.FS) blob.Store { return s3 }, func(c *Config) { c.MaxRecordSize = 64 << 20 })
}

// TestS3Replicas: two replicas on one PostgreSQL database and one bucket,
// with no shared directory. A multipart upload through A is downloaded,
// whole and by ranges, through B; a record rejected through B and one
// expired by B's sweeper lose their ciphertexts in the bucket.
func TestS3Replicas(t *testing.T) {
	r := newS3Replicas(t)
	a, b := r.replica(t), r.replica(t)
	bucket := r.blobs(t)
	dev := a.newUser("alice")
	lab := a.newParty("lab")
	bank := b.newParty("bank")

	plain := randBytes(12 << 20)
	rec, _ := a.submit(lab, dev.user, plain)
	if ok, err := bucket.Exists(rec.CiphertextSHA256); err != nil || !ok {
		t.Fatalf("the ciphertext is not in the bucket: %v %v", ok, err)
	}
	b.approve(dev, rec.ID)
	b.grantAccess(dev, bank, rec.ID, 600)
	path := api.Path(api.PathRecordContent, rec.ID)
	content := b.call("GET", path, bank.token, nil, 200, nil)
	blobPart := content[len(content)-int(rec.CiphertextSize):]
	if sum := sha256.Sum256(blobPart); hex.EncodeToString(sum[:]) != rec.CiphertextSHA256 {
		t.Fatal("the content served by B is not the ciphertext uploaded through A")
	}
	for _, rg := range [][2]int{{0, 99}, {s3PartSize - 10, s3PartSize + 10}, {len(content) - 5, len(content) - 1}} {
		resp, got := b.do("GET", path, bank.token, nil, "Range", fmt.Sprintf("bytes=%d-%d", rg[0], rg[1]))
		if resp.StatusCode != 206 || string(got) != string(content[rg[0]:rg[1]+1]) {
			t.Fatalf("range %v through B: %d, %d bytes", rg, resp.StatusCode, len(got))
		}
	}

	// Rejected through B: the ciphertext uploaded through A goes (larger
	// than InlineMax, so that it is in the bucket).
	small, _ := a.submit(lab, dev.user, randBytes(DefaultInlineMax+1))
	if ok, err := bucket.Exists(small.CiphertextSHA256); err != nil || !ok {
		t.Fatalf("the ciphertext to be rejected is not in the bucket: %v %v", ok, err)
	}
	det := b.findRequest(dev, store.KindApproval, small.ID)
	b.call("POST", api.Path(api.PathDeviceReject, det.ID), dev.token, signStmt(t, rejectionFor(det, dev, r.clk.now()), dev.key), 200, nil)
	waitFor(t, func() bool { ok, _ := bucket.Exists(small.CiphertextSHA256); return !ok })

	// Expired by B's sweeper.
	late, _ := a.submit(lab, dev.user, randBytes(6<<20))
	r.clk.advance(DefaultConfig().PendingTTL + time.Minute)
	if _, _, err := b.srv.Sweep(context.Background()); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { ok, _ := bucket.Exists(late.CiphertextSHA256); return !ok })
	if blobs, temps, err := bucket.Count(); err != nil || blobs != 1 || temps != 0 {
		t.Fatalf("bucket: %d blobs, %d temporaries (%v); want the approved record's only", blobs, temps, err)
	}
}

// TestS3ReplicaKilledMidUpload: a replica process is killed (SIGKILL)
// while a 40 MiB upload streams through it, after parts reached the
// bucket, and while a device's event stream is connected to it. Nothing
// is visible under the ciphertext's key, no row refers to it, the other
// replica's sweeper keeps the dead upload while it is fresh (it could be
// an upload in progress) and removes it once stale; the device reconnects
// to the other replica and gets its open request again.
func TestS3ReplicaKilledMidUpload(t *testing.T) {
	r := newS3Replicas(t)
	a := r.replica(t)
	bucket := r.blobs(t)
	dev := a.newUser("alice")
	lab := a.newParty("lab")

	child := startReplicaProcess(t, r)
	// A pending record whose blob (larger than InlineMax) the sweep keeps.
	waiting, _ := a.submit(lab, dev.user, randBytes(DefaultInlineMax+1))
	open := a.findRequest(dev, store.KindApproval, waiting.ID)
	onChild := *a
	onChild.ts = &httptest.Server{URL: "http://" + child.addr}
	events, stopEvents := onChild.sse(dev)
	defer stopEvents()
	if got := nextEvent(t, events); got != open.ID {
		t.Fatalf("the stream on the replica process got %s, want %s", got, open.ID)
	}

	u := a.prepare(lab, dev.user, randBytes(40<<20), envelope.Modern)
	ct, body := u.multipart()
	pr, pw := io.Pipe()
	req, _ := http.NewRequest("POST", "http://"+child.addr+api.Path(api.PathUserRecords, dev.user), pr)
	req.Header.Set("Content-Type", ct)
	req.Header.Set("Authorization", "Bearer "+lab.token)
	done := make(chan error, 1)
	go func() {
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
			err = fmt.Errorf("the upload got an answer: %d", resp.StatusCode)
		}
		done <- err
	}()
	if _, err := pw.Write(body[:len(body)*3/5]); err != nil {
		t.Fatal(err)
	}
	// Parts are in the bucket: an incomplete multipart upload.
	waitFor(t, func() bool { _, temps, _ := bucket.Count(); return temps > 0 })
	if err := child.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	child.cmd.Wait()
	pw.CloseWithError(io.ErrUnexpectedEOF)
	if err := <-done; err == nil || strings.Contains(err.Error(), "got an answer") {
		t.Fatalf("the upload to the killed replica: %v", err)
	}

	key := u.digest.Hex()
	if ok, err := bucket.Exists(key); err != nil || ok {
		t.Fatalf("after the kill the ciphertext is visible in the bucket (%v)", err)
	}
	var rows int64
	if err := a.st.DB(context.Background()).Model(&store.Record{}).Where("ciphertext_sha256 = ?", key).Count(&rows).Error; err != nil || rows != 0 {
		t.Fatalf("%d record rows for the killed upload (%v)", rows, err)
	}
	// The device's stream ended with the process; it reconnects to A.
	for ended := false; !ended; {
		select {
		case _, ok := <-events:
			ended = !ok
		case <-time.After(10 * time.Second):
			t.Fatal("the event stream outlived its replica")
		}
	}
	eventsA, stopA := a.sse(dev)
	defer stopA()
	if got := nextEvent(t, eventsA); got != open.ID {
		t.Fatalf("the stream on A got %s, want the open request %s", got, open.ID)
	}
	// A's sweeper: the dead upload is fresh, so it stays...
	if _, _, err := a.srv.Sweep(context.Background()); err != nil {
		t.Fatal(err)
	}
	blobs, temps, err := bucket.Count()
	if err != nil || blobs != 1 || temps == 0 {
		t.Fatalf("after a sweep: %d blobs, %d temporaries (%v)", blobs, temps, err)
	}
	// ...until it is stale.
	if n, err := bucket.RemoveStaleTemps(0); err != nil || n != temps {
		t.Fatalf("RemoveStaleTemps removed %d of %d: %v", n, temps, err)
	}
	if blobs, temps, err := bucket.Count(); err != nil || blobs != 1 || temps != 0 {
		t.Fatalf("after removing stale uploads: %d blobs, %d temporaries (%v)", blobs, temps, err)
	}
	// The same upload through A succeeds.
	if resp, data := a.send(lab, dev.user, u); resp.StatusCode != 201 {
		t.Fatalf("the upload through A: %d %s", resp.StatusCode, data)
	}
}

type replicaProcess struct {
	cmd  *exec.Cmd
	addr string
}

// startReplicaProcess runs TestS3ReplicaProcess in a child process: a
// replica that can be killed.
func startReplicaProcess(t *testing.T, r *s3Replicas) *replicaProcess {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestS3ReplicaProcess$")
	cmd.Env = append(os.Environ(), "KEYHOLDER_REPLICA_PROCESS="+strings.Join([]string{r.dsn, r.schema, r.bucket}, " "))
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	addrc := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if a, ok := strings.CutPrefix(sc.Text(), "LISTENING "); ok {
				addrc <- a
			}
		}
		close(addrc)
	}()
	select {
	case a, ok := <-addrc:
		if !ok {
			t.Fatal("the replica process exited before it listened")
		}
		return &replicaProcess{cmd: cmd, addr: a}
	case <-time.After(30 * time.Second):
		t.Fatal("the replica process did not start")
	}
	return nil
}

// TestS3ReplicaProcess is the replica startReplicaProcess runs; it does
// nothing in a normal test run.
func TestS3ReplicaProcess(t *testing.T) {
	spec := os.Getenv("KEYHOLDER_REPLICA_PROCESS")
	if spec == "" {
		t.Skip("the replica process of TestS3ReplicaKilledMidUpload")
	}
	f := strings.Fields(spec)
	r := &s3Replicas{dsn: f[0], schema: f[1], bucket: f[2], s3: s3test.Find(t), clk: &clock{}}
	cfg := DefaultConfig()
	cfg.AdminToken = testAdminToken
	cfg.MaxRecordSize = 64 << 20
	cfg.UploadRate, cfg.AccessRate, cfg.AuthRate = 0, 0, 0
	cfg.Logger = discardLogger()
	hub := push.NewLocal(push.LocalOptions{})
	srv := New(cfg, r.openStore(t), r.blobs(t), hub, hub)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	fmt.Println("LISTENING", ln.Addr())
	go http.Serve(ln, srv.Handler())
	// Killed by the test; the limit is against orphans.
	time.Sleep(2 * time.Minute)
}
