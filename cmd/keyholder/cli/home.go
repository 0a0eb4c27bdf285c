package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/keyholder/keyholder/internal/clihome"
	"github.com/keyholder/keyholder/pkg/client"
	"github.com/keyholder/keyholder/pkg/envelope"
)

const (
	keyFile    = "party.key"
	pubFile    = "party.pub.asc"
	configFile = "party.json"
	recordsDir = "records"
	pinsDir    = "pins"
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

// pins are the users' key chains this party has seen (pinned on first use,
// or by hand with keyholder pin).
func (a *app) pins() clihome.Pins { return clihome.Pins{Dir: a.path(pinsDir)} }

func (a *app) loadConfig() (*config, error) {
	if a.cfg != nil {
		return a.cfg, nil
	}
	var c config
	err := clihome.ReadJSON(a.path(configFile), &c)
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("no party key in %s (run keyholder keygen or keyholder import)", a.home)
	}
	if err != nil {
		return nil, err
	}
	a.cfg = &c
	return &c, nil
}

func (a *app) saveConfig(c *config) error {
	a.cfg = c
	return clihome.WriteJSON(a.path(configFile), c)
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
func (a *app) identity(ctx context.Context) (*client.Identity, error) {
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
		if pass, err = a.passphrase(ctx, false); err != nil {
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

func (a *app) client(ctx context.Context) (*client.Client, error) {
	id, err := a.identity(ctx)
	if err != nil {
		return nil, err
	}
	logOpts, err := clihome.LogOptions(a.home, "keyholder", false, os.Stderr)
	if err != nil {
		return nil, err
	}
	return client.New(a.serverURL(), append([]client.Option{client.WithIdentity(id), client.WithUserAgent("keyholder-cli/1"),
		client.WithPinStore(a.pins())}, logOpts...)...)
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
	return clihome.WriteJSON(filepath.Join(a.home, recordsDir, rec+".json"), p)
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

// passphrase reads the party key's passphrase (--passphrase-file, or the
// terminal; twice when confirm is set).
func (a *app) passphrase(ctx context.Context, confirm bool) ([]byte, error) {
	return clihome.Prompt{
		Label:       "Party key passphrase: ",
		NotTerminal: "the party key is protected: give --passphrase-file or KEYHOLDER_PASSPHRASE_FILE (stdin is not a terminal)",
		Empty:       "empty passphrase (use --no-passphrase to store the key unprotected)",
	}.Read(ctx, a.passFile, confirm)
}
