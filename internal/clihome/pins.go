package clihome

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/keyholder/keyholder/pkg/api"
	"github.com/keyholder/keyholder/pkg/keychain"
)

// Pins keeps one keychain.Pin per user as a JSON file in a directory: the
// client.PinStore of the party CLI and of device-sim.
type Pins struct{ Dir string }

func (p Pins) file(user string) (string, error) {
	if !validUser(user) {
		return "", fmt.Errorf("invalid user id %q", user)
	}
	return filepath.Join(p.Dir, user+".json"), nil
}

func validUser(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// Pin returns the user's pin, or nil if there is none.
func (p Pins) Pin(user string) (*keychain.Pin, error) {
	f, err := p.file(user)
	if err != nil {
		return nil, err
	}
	var pin keychain.Pin
	if err := ReadJSON(f, &pin); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, nil
		}
		return nil, err
	}
	if pin.User != user {
		return nil, fmt.Errorf("%s holds the pin of user %q", f, pin.User)
	}
	return &pin, nil
}

// SetPin writes the pin (atomically, mode 0600).
func (p Pins) SetPin(pin *keychain.Pin) error {
	f, err := p.file(pin.User)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(p.Dir, 0o700); err != nil {
		return err
	}
	return WriteJSON(f, pin)
}

// Remove forgets the user's pin, so the next chain seen is pinned anew.
func (p Pins) Remove(user string) error {
	f, err := p.file(user)
	if err != nil {
		return err
	}
	if err := os.Remove(f); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

// PrintChain lists the keys a verified chain makes current: each device
// with the code it shows, and the recovery key.
func PrintChain(w io.Writer, ch *keychain.State) {
	fmt.Fprintf(w, "key chain of user %s: %d link(s) verified, first device %s\n", ch.User(), ch.Len(), ch.Genesis())
	for _, k := range ch.Devices() {
		fmt.Fprintf(w, "  device   %s  code %s\n", k.Fingerprint(), keychain.Code(k))
	}
	if r := ch.Recovery(); r != nil {
		fmt.Fprintf(w, "  recovery %s\n", r.Fingerprint())
	}
}

// VerifiedChain is a verified key chain as --json prints it (keyholder
// keys, device-sim show): the keys it makes current, each active device
// in the order added, then the recovery key.
type VerifiedChain struct {
	UserID string `json:"user_id"`
	// Links is how many links were verified; Head is the hash of the
	// last (hex); FirstDevice is the fingerprint parties pin.
	Links       int                `json:"links"`
	Head        string             `json:"head"`
	FirstDevice string             `json:"first_device"`
	Keys        []api.RecipientKey `json:"keys"`
}

// ChainKeys is ch as VerifiedChain.
func ChainKeys(ch *keychain.State) VerifiedChain {
	p := ch.Pin()
	out := VerifiedChain{UserID: ch.User(), Links: ch.Len(), Head: p.Head, FirstDevice: ch.Genesis(), Keys: []api.RecipientKey{}}
	for _, k := range ch.Devices() {
		out.Keys = append(out.Keys, api.RecipientKey{Role: "device", Fingerprint: k.Fingerprint(), PublicKey: string(k.Armor())})
	}
	if r := ch.Recovery(); r != nil {
		out.Keys = append(out.Keys, api.RecipientKey{Role: "recovery", Fingerprint: r.Fingerprint(), PublicKey: string(r.Armor())})
	}
	return out
}
