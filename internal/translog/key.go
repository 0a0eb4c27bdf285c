package translog

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/mod/sumdb/note"
)

// LoadOrCreateKey returns the checkpoint signer kept in path (a signed-note
// private key, "PRIVATE+KEY+origin+hash+key"), creating it for origin if
// the file does not exist. An existing key for another origin is an error:
// a log's origin never changes.
func LoadOrCreateKey(path, origin string) (note.Signer, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		skey, _, err := note.GenerateKey(rand.Reader, origin)
		if err != nil {
			return nil, fmt.Errorf("translog: making the log key: %w", err)
		}
		if err := writeFileSync(path, []byte(skey+"\n")); err != nil {
			return nil, fmt.Errorf("translog: writing the log key: %w", err)
		}
		b = []byte(skey)
	} else if err != nil {
		return nil, fmt.Errorf("translog: reading the log key: %w", err)
	}
	s, err := note.NewSigner(strings.TrimSpace(string(b)))
	if err != nil {
		return nil, fmt.Errorf("translog: the log key in %s: %w", path, err)
	}
	if origin != "" && s.Name() != origin {
		return nil, fmt.Errorf("translog: the log key in %s is for origin %q, not %q (a log's origin never changes)", path, s.Name(), origin)
	}
	return s, nil
}

// VerifierKey is the public verifier key of the signer key in path, which
// clients and witnesses are configured with.
func VerifierKey(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("translog: reading the log key: %w", err)
	}
	parts := strings.SplitN(strings.TrimSpace(string(b)), "+", 5)
	if len(parts) != 5 || parts[0] != "PRIVATE" || parts[1] != "KEY" {
		return "", fmt.Errorf("translog: %s is not a signed-note private key", path)
	}
	key, err := base64.StdEncoding.DecodeString(parts[4])
	if err != nil || len(key) != 1+ed25519.SeedSize || key[0] != 1 {
		return "", fmt.Errorf("translog: %s is not an Ed25519 signed-note key", path)
	}
	pub := ed25519.NewKeyFromSeed(key[1:]).Public().(ed25519.PublicKey)
	vkey := parts[2] + "+" + parts[3] + "+" + base64.StdEncoding.EncodeToString(append([]byte{1}, pub...))
	if _, err := note.NewVerifier(vkey); err != nil {
		return "", fmt.Errorf("translog: %s: %w", path, err)
	}
	return vkey, nil
}

// writeFileSync creates path exclusively (O_EXCL: two replicas starting on
// one shared key path never both make a key; pkg/atomicfile replaces) and
// syncs it and its directory.
func writeFileSync(path string, b []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		os.Remove(path)
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		os.Remove(path)
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	d, err := os.Open(filepath.Dir(path))
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
