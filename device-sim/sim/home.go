package sim

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/term"

	"github.com/keyholder/keyholder/pkg/client"
)

const (
	keyFile     = "device.key"
	configFile  = "device.json"
	partiesFile = "parties.json"
)

// config is what enrollment leaves in the home directory.
type config struct {
	Server      string `json:"server"`
	DeviceID    string `json:"device_id"`
	UserID      string `json:"user_id"`
	Fingerprint string `json:"fingerprint"`
}

func loadConfig(home string) (*config, error) {
	b, err := os.ReadFile(filepath.Join(home, configFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%s is not enrolled (run device-sim enroll first)", home)
	}
	if err != nil {
		return nil, err
	}
	var c config
	if err := json.Unmarshal(b, &c); err != nil {
		return nil, fmt.Errorf("%s: %v", filepath.Join(home, configFile), err)
	}
	return &c, nil
}

// writeFile0600 writes data to path atomically with mode 0600.
func writeFile0600(path string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
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
	return writeFile0600(path, append(b, '\n'))
}

// passphrase reads the key passphrase from file, or asks on the terminal
// (twice when confirm is set).
func passphrase(file string, confirm bool) ([]byte, error) {
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
		return nil, errors.New("no passphrase: give --passphrase-file (stdin is not a terminal)")
	}
	fmt.Fprint(os.Stderr, "Device key passphrase: ")
	p, err := term.ReadPassword(fd)
	fmt.Fprintln(os.Stderr)
	if err != nil {
		return nil, err
	}
	if len(p) == 0 {
		return nil, errors.New("empty passphrase")
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
	return p, nil
}

// open loads the enrolled device: its config, unlocked key and a client.
func open(home, passFile string) (*config, *client.Client, error) {
	cfg, err := loadConfig(home)
	if err != nil {
		return nil, nil, err
	}
	armored, err := os.ReadFile(filepath.Join(home, keyFile))
	if err != nil {
		return nil, nil, err
	}
	pass, err := passphrase(passFile, false)
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
	c, err := client.New(cfg.Server, client.WithIdentity(id), client.WithUserAgent("keyholder-device-sim/1"))
	if err != nil {
		return nil, nil, err
	}
	return cfg, c, nil
}

// pins remembers the fingerprint of each party name the device has seen
// (trust on first use), so a server that swaps a party's key is noticed.
type pins struct {
	path string
	m    map[string]string
}

func loadPins(home string) (*pins, error) {
	p := &pins{path: filepath.Join(home, partiesFile), m: map[string]string{}}
	b, err := os.ReadFile(p.path)
	if errors.Is(err, os.ErrNotExist) {
		return p, nil
	}
	if err != nil {
		return nil, err
	}
	if err := json.Unmarshal(b, &p.m); err != nil {
		return nil, fmt.Errorf("%s: %v", p.path, err)
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
	return writeJSON(p.path, p.m)
}

// prompter reads answers from the terminal.
type prompter struct{ r *bufio.Reader }

func (p *prompter) ask(q string) bool {
	fmt.Print(q + " [y/N] ")
	line, _ := p.r.ReadString('\n')
	line = strings.ToLower(strings.TrimSpace(line))
	return line == "y" || line == "yes"
}
