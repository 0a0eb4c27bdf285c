package e2e

import (
	"encoding/json"
	"os"
	"path/filepath"

	"github.com/rogpeppe/go-internal/testscript"

	"github.com/keyholder/keyholder/pkg/envelope"
)

// Test plumbing for scripts in which a party seals with another OpenPGP
// tool (foreign-transplant.txtar): those tools need the device's public key
// as a file.

// devicekey DEVICEHOME OUT: write the armored public key of the device
// enrolled in DEVICEHOME (device-sim's home) to OUT. The key it reads is
// the one device.json names (the private key stays locked: only its public
// part is written). A real party takes the key from the user's verified
// key chain; the script checks with keyholder keys that it is on it.
func cmdDeviceKey(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 2 {
		ts.Fatalf("usage: devicekey DEVICEHOME OUT")
	}
	home := ts.MkAbs(args[0])
	var cfg struct {
		Fingerprint string `json:"fingerprint"`
	}
	ts.Check(json.Unmarshal([]byte(ts.ReadFile(filepath.Join(home, "device.json"))), &cfg))
	key, err := envelope.ParseKey([]byte(ts.ReadFile(filepath.Join(home, "device.key"))))
	ts.Check(err)
	if key.Fingerprint() != cfg.Fingerprint || cfg.Fingerprint == "" {
		ts.Fatalf("%s holds key %s, but its device.json names %q", home, key.Fingerprint(), cfg.Fingerprint)
	}
	ts.Check(os.WriteFile(ts.MkAbs(args[1]), key.Public().Armor(), 0o644))
}
