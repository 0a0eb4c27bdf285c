package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/term"

	"github.com/keyholder/keyholder/pkg/client"
	"github.com/keyholder/keyholder/pkg/envelope"
)

const (
	keyFile    = "party.key"
	pubFile    = "party.pub.asc"
	configFile = "party.json"
	recordsDir = "records"
)

type config struct {
	Server      string `json:"server,omitempty"`
	Name        string `json:"name,omitempty"`
	Fingerprint string `json:"fingerprint"`
}

type app struct {
	home     string
	server   string
	passFile string
	cfg      *config
	id       *client.Identity
}

func (a *app) path(name string) string { return filepath.Join(a.home, name) }

func (a *app) loadConfig() (*config, error) {
	if a.cfg != nil {
		return a.cfg, nil
	}
	b, err := os.ReadFile(a.path(configFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("no party key in %s (run keyholder keygen or keyholder import)", a.home)
	}
	if err != nil {
		return nil, err
	}
	var c config
	if err := json.Unmarshal(b, &c); err != nil {
		return nil, fmt.Errorf("%s: %v", a.path(configFile), err)
	}
	a.cfg = &c
	return &c, nil
}

func (a *app) saveConfig(c *config) error {
	a.cfg = c
	return writeJSON(a.path(configFile), c)
}

func (a *app) serverURL() string {
	if a.server != "" {
		return a.server
	}
	if c, err := a.loadConfig(); err == nil && c.Server != "" {
		return c.Server
	}
	return "http://127.0.0.1:8080"
}

// identity loads and unlocks the party key.
func (a *app) identity() (*client.Identity, error) {
	if a.id != nil {
		return a.id, nil
	}
	if _, err := a.loadConfig(); err != nil {
		return nil, err
	}
	armored, err := os.ReadFile(a.path(keyFile))
	if err != nil {
		return nil, err
	}
	id, err := client.ParseIdentity(armored, nil)
	if errors.Is(err, client.ErrPassphrase) {
		var pass []byte
		if pass, err = readPassphrase(a.passFile, false); err != nil {
			return nil, err
		}
		id, err = client.ParseIdentity(armored, pass)
		clear(pass)
	}
	if err != nil {
		return nil, err
	}
	a.id = id
	return id, nil
}

func (a *app) client() (*client.Client, error) {
	id, err := a.identity()
	if err != nil {
		return nil, err
	}
	return client.New(a.serverURL(), client.WithIdentity(id), client.WithUserAgent("keyholder-cli/1"))
}

// recordPin is what seal remembers of a record: the keys it was sealed
// to, so the approval can later be checked against a key the party chose
// rather than one the server names.
type recordPin struct {
	Record string   `json:"record"`
	User   string   `json:"user"`
	Keys   []string `json:"keys"`
}

func (a *app) savePin(rec, user string, keys []*envelope.Key) error {
	if err := os.MkdirAll(a.path(recordsDir), 0o700); err != nil {
		return err
	}
	p := recordPin{Record: rec, User: user}
	for _, k := range keys {
		p.Keys = append(p.Keys, string(k.Armor()))
	}
	return writeJSON(filepath.Join(a.home, recordsDir, rec+".json"), p)
}

// pinned returns the keys seal pinned for a record (nil if it was not
// sealed from this home).
func (a *app) pinned(rec string) ([]*envelope.Key, error) {
	if strings.ContainsAny(rec, `/\.`) {
		return nil, fmt.Errorf("invalid record id %q", rec)
	}
	b, err := os.ReadFile(filepath.Join(a.home, recordsDir, rec+".json"))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var p recordPin
	if err := json.Unmarshal(b, &p); err != nil {
		return nil, err
	}
	var out []*envelope.Key
	for _, s := range p.Keys {
		k, err := envelope.ParseKey([]byte(s))
		if err != nil {
			return nil, err
		}
		out = append(out, k)
	}
	return out, nil
}

func writeFileMode(path string, data []byte, mode os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return err
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

func writeJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return writeFileMode(path, append(b, '\n'), 0o600)
}

func readPassphrase(file string, confirm bool) ([]byte, error) {
	if file != "" {
		b, err := os.ReadFile(file)
		if err != nil {
			return nil, fmt.Errorf("reading passphrase: %w", err)
		}
		p := []byte(strings.TrimRight(string(b), "\r\n"))
		if len(p) == 0 {
			return nil, fmt.Errorf("the passphrase file %s is empty", file)
		}
		return p, nil
	}
	fd := int(os.Stdin.Fd())
	if !term.IsTerminal(fd) {
		return nil, errors.New("the party key is protected: give --passphrase-file or KEYHOLDER_PASSPHRASE_FILE (stdin is not a terminal)")
	}
	fmt.Fprint(os.Stderr, "Party key passphrase: ")
	p, err := term.ReadPassword(fd)
	fmt.Fprintln(os.Stderr)
	if err != nil {
		return nil, err
	}
	if confirm {
		fmt.Fprint(os.Stderr, "Repeat passphrase: ")
		q, err := term.ReadPassword(fd)
		fmt.Fprintln(os.Stderr)
		if err != nil {
			return nil, err
		}
		if string(p) != string(q) {
			return nil, errors.New("the passphrases differ")
		}
	}
	if len(p) == 0 {
		return nil, errors.New("empty passphrase (use --no-passphrase to store the key unprotected)")
	}
	return p, nil
}
