// Package witnesstest runs a real C2SP tlog-witness for tests: litewitness
// from filippo.io/torchwood (v0.6.1), a separate binary that .ci/run
// installs. Its ssh-agent, which holds the witness key, is served
// in-process (golang.org/x/crypto/ssh/agent), so no ssh-agent is needed.
package witnesstest

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"database/sql"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"
	_ "modernc.org/sqlite" // registers "sqlite"
)

// A Witness is a running litewitness.
type Witness struct {
	// URL is where it serves tlog-witness (POST URL/add-checkpoint).
	URL string
	// Name is its name in cosignature lines; VKey its cosignature/v1
	// verifier key.
	Name, VKey string
	db         string
}

// Binary returns the litewitness binary: $KEYHOLDER_TEST_LITEWITNESS,
// litewitness on $PATH, or ~/.cache/keyholder/bin/litewitness (where
// .ci/run installs it). Outside CI a test without it is skipped; in CI
// ($CI set) it fails.
func Binary(t testing.TB) string {
	t.Helper()
	if p := os.Getenv("KEYHOLDER_TEST_LITEWITNESS"); p != "" {
		return p
	}
	if p, err := exec.LookPath("litewitness"); err == nil {
		return p
	}
	if home, err := os.UserHomeDir(); err == nil {
		p := filepath.Join(home, ".cache", "keyholder", "bin", "litewitness")
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("litewitness not found (go install filippo.io/torchwood/cmd/litewitness@v0.6.1)")
	}
	t.Skip("litewitness not found; .ci/run installs it (go install filippo.io/torchwood/cmd/litewitness@v0.6.1)")
	return ""
}

// VKey is the cosignature/v1 verifier key of an Ed25519 witness key
// (c2sp.org/signed-note: name+keyhash+base64(0x04 || key)).
func VKey(name string, pub ed25519.PublicKey) string {
	key := append([]byte{0x04}, pub...)
	h := sha256.New()
	h.Write([]byte(name + "\n"))
	h.Write(key)
	return fmt.Sprintf("%s+%08x+%s", name, binary.BigEndian.Uint32(h.Sum(nil)), base64.StdEncoding.EncodeToString(key))
}

// Start runs a litewitness named name that knows the log origin with
// verifier key logVKey, starting from the empty tree. It stops when the
// test ends.
func Start(t testing.TB, name, origin, logVKey string) *Witness {
	t.Helper()
	bin := Binary(t)
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	// A short directory: unix socket paths are limited to ~100 bytes.
	dir, err := os.MkdirTemp("", "kw")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	sock := filepath.Join(dir, "agent.sock")
	keyring := agent.NewKeyring()
	if err := keyring.Add(agent.AddedKey{PrivateKey: priv}); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); agent.ServeAgent(keyring, c) }()
		}
	}()
	sshPub, err := ssh.NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}

	addr := freeAddr(t)
	w := &Witness{URL: "http://" + addr, Name: name, VKey: VKey(name, pub), db: filepath.Join(dir, "witness.db")}
	var out bytes.Buffer
	cmd := exec.Command(bin, "-name", name, "-db", w.db, "-ssh-agent", sock,
		"-key", ssh.FingerprintSHA256(sshPub), "-listen", addr)
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		if t.Failed() {
			t.Logf("litewitness %s output:\n%s", name, out.String())
		}
	})
	deadline := time.Now().Add(15 * time.Second)
	for {
		resp, err := http.Get(w.URL + "/")
		if err == nil {
			resp.Body.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("litewitness did not start: %v\n%s", err, out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	// What witnessctl add-log and add-key do (witnessctl does not build
	// from the module proxy: one of its dependencies is not served).
	db, err := sql.Open("sqlite", w.db)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	empty := sha256.Sum256(nil)
	if _, err := db.Exec("INSERT INTO log (origin, tree_size, tree_hash) VALUES (?, 0, ?)", origin, base64.StdEncoding.EncodeToString(empty[:])); err != nil {
		t.Fatalf("adding the log to the witness: %v", err)
	}
	if _, err := db.Exec("INSERT INTO key (origin, key) VALUES (?, ?)", origin, logVKey); err != nil {
		t.Fatalf("adding the log key to the witness: %v", err)
	}
	return w
}

// Size is the tree size the witness last cosigned for origin.
func (w *Witness) Size(t testing.TB, origin string) int64 {
	t.Helper()
	db, err := sql.Open("sqlite", w.db)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var n int64
	if err := db.QueryRow("SELECT tree_size FROM log WHERE origin = ?", origin).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func freeAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}
