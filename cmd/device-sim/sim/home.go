package sim

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/keyholder/keyholder/internal/clihome"
	"github.com/keyholder/keyholder/pkg/client"
)

const (
	keyFile     = "device.key"
	configFile  = "device.json"
	partiesFile = "parties.json"
	// chainPinDir holds the pin of the user's own key chain: a chain the
	// server serves later must extend the one this device has seen.
	chainPinDir = "chain"
)

// config is what enrollment leaves in the home directory.
type config struct {
	Server      string `json:"server"`
	DeviceID    string `json:"device_id"`
	UserID      string `json:"user_id"`
	Fingerprint string `json:"fingerprint"`
}

func loadConfig(home string) (*config, error) {
	var c config
	err := clihome.ReadJSON(filepath.Join(home, configFile), &c)
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%s is not enrolled (run device-sim enroll first)", home)
	}
	if err != nil {
		return nil, err
	}
	return &c, nil
}

// passphrase reads the device key's passphrase (--passphrase-file, or the
// terminal; twice, and at least 8 characters, when confirm is set: a new
// key's).
func passphrase(ctx context.Context, file string, confirm bool) ([]byte, error) {
	return clihome.Prompt{
		Label:       "Device key passphrase: ",
		NotTerminal: "no passphrase: give --passphrase-file or KEYHOLDER_DEVICE_PASSPHRASE_FILE (stdin is not a terminal)",
		Empty:       "empty passphrase",
	}.Read(ctx, file, confirm)
}

// open loads the enrolled device: its config, unlocked key and a client.
func open(ctx context.Context, home, passFile string) (*config, *client.Client, error) {
	cfg, err := loadConfig(home)
	if err != nil {
		return nil, nil, err
	}
	armored, err := os.ReadFile(filepath.Join(home, keyFile))
	if err != nil {
		return nil, nil, err
	}
	pass, err := passphrase(ctx, passFile, false)
	if err != nil {
		return nil, nil, err
	}
	id, err := client.ParseIdentity(armored, pass)
	clear(pass)
	if err != nil {
		return nil, nil, err
	}
	if id.Fingerprint() != cfg.Fingerprint {
		return nil, nil, fmt.Errorf("the key in %s is %s, but the device enrolled %s", home, id.Fingerprint(), cfg.Fingerprint)
	}
	c, err := newClient(home, cfg.Server, id)
	if err != nil {
		return nil, nil, err
	}
	return cfg, c, nil
}

// newClient is the device's client: its key, the pin of its user's key
// chain and its session key index, all kept in home.
func newClient(home, server string, id *client.Identity) (*client.Client, error) {
	idx, err := loadSessionKeys(home)
	if err != nil {
		return nil, err
	}
	logOpts, err := clihome.LogOptions(home, "device-sim", true, os.Stderr)
	if err != nil {
		return nil, err
	}
	return client.New(server, append([]client.Option{client.WithIdentity(id), client.WithUserAgent("keyholder-device-sim/1"),
		client.WithPinStore(clihome.Pins{Dir: filepath.Join(home, chainPinDir)}), client.WithSessionKeys(idx)}, logOpts...)...)
}

// pins remembers the fingerprint of each party name the device has seen
// (trust on first use), so a server that swaps a party's key is noticed.
type pins struct {
	path string
	m    map[string]string
}

func loadPins(home string) (*pins, error) {
	p := &pins{path: filepath.Join(home, partiesFile), m: map[string]string{}}
	if err := clihome.ReadJSON(p.path, &p.m); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	return p, nil
}

// check pins name to fpr on first sight and reports a changed key.
func (p *pins) check(name, fpr string) error {
	if name == "" {
		return nil
	}
	if old, ok := p.m[name]; ok {
		if old != fpr {
			return fmt.Errorf("party %q used key %s before, now %s: refusing (remove it from %s if the change is legitimate)", name, old, fpr, p.path)
		}
		return nil
	}
	p.m[name] = fpr
	return clihome.WriteJSON(p.path, p.m)
}

// prompter reads answers from the terminal. Lines are read on their own
// goroutine, so that the end of the context (SIGINT, SIGTERM) ends a
// question at once instead of leaving the device blocked on the terminal.
type prompter struct{ lines chan string }

func newPrompter(r io.Reader) *prompter {
	p := &prompter{lines: make(chan string)}
	go func() {
		defer close(p.lines)
		br := bufio.NewReader(r)
		for {
			line, err := br.ReadString('\n')
			if line != "" {
				p.lines <- line
			}
			if err != nil {
				return
			}
		}
	}()
	return p
}

// line asks for a line of text; the end of input is "".
func (p *prompter) line(ctx context.Context, q string) (string, error) {
	fmt.Print(q)
	select {
	case line := <-p.lines:
		return strings.TrimSpace(line), nil
	case <-ctx.Done():
		fmt.Println()
		return "", ctx.Err()
	}
}

// ask asks a yes/no question; no answer (or the end of input) is no. It
// returns ctx's error if ctx ends first.
func (p *prompter) ask(ctx context.Context, q string) (bool, error) {
	fmt.Print(q + " [y/N] ")
	select {
	case line := <-p.lines:
		line = strings.ToLower(strings.TrimSpace(line))
		return line == "y" || line == "yes", nil
	case <-ctx.Done():
		fmt.Println()
		return false, ctx.Err()
	}
}
