package daemon

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/keyholder/keyholder/internal/witnesstest"
	"github.com/keyholder/keyholder/pkg/client"
	"github.com/keyholder/keyholder/pkg/envelope"
	"github.com/keyholder/keyholder/pkg/transparency"
)

// TestServeWitnessedLog: `log-key` makes the log key and prints its
// verifier key; `serve --log-witness` with a real litewitness that knows
// that key serves a checkpoint the witness cosigned, which a client with
// the log key, the witness key and a quorum of 1 accepts.
func TestServeWitnessedLog(t *testing.T) {
	const origin = "keyholder.test/daemon-log"
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "log.key")
	var out bytes.Buffer
	cmd := rootCmd()
	cmd.SetOut(&out)
	cmd.SetArgs([]string{"log-key", "--log-key", keyFile, "--log-origin", origin})
	if err := cmd.Execute(); err != nil {
		t.Fatal(err)
	}
	vkey := strings.TrimSpace(out.String())
	if !strings.HasPrefix(vkey, origin+"+") {
		t.Fatalf("log-key printed %q", vkey)
	}
	w := witnesstest.Start(t, "witness.test/daemon", origin, vkey)

	const adminToken = "daemon-log-test-admin-token"
	t.Setenv("KEYHOLDER_ADMIN_TOKEN", adminToken)
	addr, _, stop := startServe(t, "--log-key", keyFile, "--log-origin", origin,
		"--log-witness", w.URL+"="+w.VKey, "--log-witness-quorum", "1")
	defer stop()

	v, err := transparency.NewVerifier(origin, vkey, []string{w.VKey}, 1)
	if err != nil {
		t.Fatal(err)
	}
	// An empty log signs nothing: until the first leaf there is no
	// checkpoint.
	resp, err := http.Get("http://" + addr + "/log/checkpoint")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Fatalf("checkpoint of an empty log: %s", resp.Status)
	}

	// A user's first device: the genesis link is the first leaf.
	ctx := context.Background()
	admin, err := client.New("http://"+addr, client.WithAdminToken(adminToken))
	if err != nil {
		t.Fatal(err)
	}
	u, err := admin.CreateUser(ctx, "alice")
	if err != nil {
		t.Fatal(err)
	}
	id, _, err := client.GenerateIdentity("alice's phone", []byte("passphrase"), envelope.S2KIterated)
	if err != nil {
		t.Fatal(err)
	}
	dev, err := client.New("http://"+addr, client.WithIdentity(id))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := dev.Enroll(ctx, u.Code, "local", ""); err != nil {
		t.Fatal(err)
	}

	// Within a few seconds the witness has cosigned a checkpoint holding
	// the link, and a client that requires the witness accepts it.
	deadline := time.Now().Add(15 * time.Second)
	for {
		resp, err := http.Get("http://" + addr + "/log/checkpoint")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			cp, err := v.Verify(body)
			if err != nil {
				t.Fatalf("served checkpoint does not verify with the witness quorum: %v\n%s", err, body)
			}
			if cp.N < 2 || w.Size(t, origin) != cp.N {
				t.Fatalf("checkpoint size %d, witness at %d", cp.N, w.Size(t, origin))
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no witnessed checkpoint after 15 s: %s", resp.Status)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
