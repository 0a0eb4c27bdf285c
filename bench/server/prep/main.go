// Command prep sets up one benchmark upload against a running keyholderd:
// it creates a user with an enrolled device and a party, seals SIZE random
// bytes to the user's keys into DIR/body.pgp, writes the metadata, the
// submission statement and its signature next to it, and prints shell
// variables (USER_ID, PARTY_TOKEN) for scripts/bench-server.sh.
package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/keyholder/keyholder/pkg/api"
	"github.com/keyholder/keyholder/pkg/envelope"
	"github.com/keyholder/keyholder/pkg/keychain"
	"github.com/keyholder/keyholder/pkg/statement"
)

var (
	server = flag.String("server", "http://127.0.0.1:8080", "server URL")
	admin  = flag.String("admin-token", os.Getenv("KEYHOLDER_ADMIN_TOKEN"), "admin token")
	size   = flag.Int64("size", 64<<20, "plaintext size in bytes")
	dir    = flag.String("dir", ".", "output directory")
	prof   = flag.String("profile", "compat", "compat or modern")
)

func die(err error) {
	fmt.Fprintln(os.Stderr, "prep:", err)
	os.Exit(1)
}

func call(method, path, token string, in, out any) {
	var body io.Reader
	if in != nil {
		b, _ := json.Marshal(in)
		body = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, *server+path, body)
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		die(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if resp.StatusCode >= 300 {
		die(fmt.Errorf("%s %s: %d %s", method, path, resp.StatusCode, data))
	}
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			die(err)
		}
	}
}

func newKey(name string) *envelope.Key {
	k, err := envelope.GenerateKey(name)
	if err != nil {
		die(err)
	}
	return k
}

func login(k *envelope.Key) string {
	var ch api.ChallengeResponse
	call("POST", api.PathAuthChallenge, "", api.ChallengeRequest{Fingerprint: k.Fingerprint()}, &ch)
	text, err := (&statement.Challenge{Nonce: ch.Nonce, Fingerprint: k.Fingerprint()}).Marshal()
	if err != nil {
		die(err)
	}
	sig, err := statement.Sign(text, k)
	if err != nil {
		die(err)
	}
	var tok api.TokenResponse
	call("POST", api.PathAuthToken, "", api.TokenRequest{Fingerprint: k.Fingerprint(), Nonce: ch.Nonce, Signature: string(sig)}, &tok)
	return tok.Token
}

func main() {
	flag.Parse()
	*server = strings.TrimRight(*server, "/")
	profile, err := envelope.ParseProfile(*prof)
	if err != nil {
		die(err)
	}
	var u api.CreateUserResponse
	call("POST", api.PathAdminUsers, *admin, api.CreateUserRequest{Handle: "bench-" + fmt.Sprint(rand.Uint64())}, &u)
	devKey := newKey("bench device")
	link, err := keychain.New(u.ID).Sign(statement.ActionAddDevice, devKey, devKey, time.Now())
	if err != nil {
		die(err)
	}
	call("POST", api.PathEnroll, "", api.EnrollRequest{Code: u.Code, PublicKey: link.PublicKey, Link: link}, nil)
	partyKey := newKey("bench party")
	call("POST", api.PathAdminParties, *admin, api.CreatePartyRequest{Name: "bench party", PublicKey: string(partyKey.Public().Armor())}, nil)
	token := login(partyKey)

	var uk api.UserKeys
	call("GET", api.Path(api.PathUserKeys, u.ID), token, nil, &uk)
	var keys []*envelope.Key
	for _, k := range uk.Keys {
		key, err := envelope.ParseKey([]byte(k.PublicKey))
		if err != nil {
			die(err)
		}
		keys = append(keys, key)
	}
	f, err := os.Create(filepath.Join(*dir, "body.pgp"))
	if err != nil {
		die(err)
	}
	bw := bufio.NewWriterSize(f, 1<<20)
	w, err := envelope.Seal(bw, profile, keys...)
	if err != nil {
		die(err)
	}
	rng := rand.NewChaCha8([32]byte{1})
	buf := make([]byte, 1<<20)
	for left := *size; left > 0; {
		n := int64(len(buf))
		if n > left {
			n = left
		}
		rng.Read(buf[:n])
		w.Write(buf[:n])
		left -= n
	}
	if err := w.Close(); err != nil {
		die(err)
	}
	bw.Flush()
	f.Close()
	meta := []byte(fmt.Sprintf(`{"content_type":"application/octet-stream","size":%d}`, *size))
	sub := statement.Submission{User: u.ID, Submitter: partyKey.Fingerprint(), KeyPackets: w.KeyPackets(), Ciphertext: w.Digest(),
		MetadataSHA256: statement.MetadataDigest(meta, nil)}
	stmt, err := sub.Marshal()
	if err != nil {
		die(err)
	}
	sig, err := statement.Sign(stmt, partyKey)
	if err != nil {
		die(err)
	}
	for name, data := range map[string][]byte{"metadata.json": meta, "statement.txt": stmt, "signature.asc": sig} {
		if err := os.WriteFile(filepath.Join(*dir, name), data, 0o600); err != nil {
			die(err)
		}
	}
	fmt.Printf("USER_ID=%s\nPARTY_TOKEN=%s\nDATA_SHA256=%s\nDATA_SIZE=%d\n", u.ID, token, w.Digest().Hex(), w.Digest().Size)
}
