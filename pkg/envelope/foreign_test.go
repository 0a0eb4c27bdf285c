package envelope

// Records sealed by other OpenPGP implementations — RNP, Sequoia (sq and
// sqop) and OpenPGP.js 6 — as a party using them would seal: to two device
// keys, binary, uncompressed. None of them reports its session key to the
// party, so a device recognizes a session key it has already approved only
// by the id it computes from its own key packet (protocol §3.4, issue 7
// P2). These tests run the real tools (.ci/run installs them; under
// CI=true a missing tool fails the test, elsewhere it skips) and check, for
// each tool: both devices compute one id from their own packets; a second
// message has another id; X's key packets in front of another data packet
// (the transplant) still give X's id; the key packets digest is the
// SHA-256 of the tool's bytes before the data packet; and the id is the
// HMAC of the session key as an implementation that can report it reads
// it (OpenPGP.js, which the script gives the session key; Sequoia's sqop
// decrypt --session-key-out for RNP's, sq's and sqop's messages).

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// foreign runs other OpenPGP implementations in a private scratch
// directory, which is also their HOME (so nothing touches the user's
// keyrings or stores).
type foreign struct {
	t   testing.TB
	dir string
	env []string // added to the tools' environment
}

func newForeign(t testing.TB) *foreign {
	return &foreign{t: t, dir: t.TempDir()}
}

// need returns the path of prog. When prog is not installed it fails the
// test under CI (CI=true), where the interop tests must run, and skips it
// elsewhere.
func (f *foreign) need(prog, install string) string {
	f.t.Helper()
	path, err := exec.LookPath(prog)
	if err != nil {
		if os.Getenv("CI") == "true" {
			f.t.Fatalf("%s is not installed, and CI=true requires the interop tests to run (%s; .ci/run does): %v", prog, install, err)
		}
		f.t.Skipf("%s is not installed: skipping (%s to run it; under CI=true this is a failure)", prog, install)
	}
	return path
}

// run runs prog with args (stdin as its standard input, if not nil) and
// returns its standard output; the test fails, with prog's messages, if it
// exits non-zero.
func (f *foreign) run(stdin []byte, prog string, args ...string) []byte {
	f.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, prog, args...)
	cmd.Dir = f.dir
	cmd.Env = append(append(os.Environ(), "HOME="+f.dir, "LC_ALL=C", "LANGUAGE="), f.env...)
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Run(); err != nil {
		f.t.Fatalf("%s %s: %v\n%s", prog, strings.Join(args, " "), err, errOut.Bytes())
	}
	return out.Bytes()
}

// file writes data to a scratch file (mode 0600) and returns its path.
func (f *foreign) file(name string, data []byte) string {
	f.t.Helper()
	path := filepath.Join(f.dir, name)
	if err := os.WriteFile(path, data, 0o600); err != nil {
		f.t.Fatal(err)
	}
	return path
}

// certs writes each key's armored public key to a file and returns the
// paths, in order.
func (f *foreign) certs(keys ...*Key) []string {
	f.t.Helper()
	paths := make([]string, len(keys))
	for i, k := range keys {
		paths[i] = f.file(k.Fingerprint()+".asc", k.Armor())
	}
	return paths
}

// sequoiaSessionKey decrypts msg with key's secret key using Sequoia
// (sqop decrypt --session-key-out) and returns the session key Sequoia
// reports ("9:HEX"), without its algorithm octet.
func (f *foreign) sequoiaSessionKey(msg []byte, key *Key) []byte {
	f.t.Helper()
	f.need("sqop", "apt-get install sqop")
	secret := f.file("secret-"+key.Fingerprint()+".pgp", serializeEntity(f.t, key.entity, false))
	out := filepath.Join(f.dir, fmt.Sprintf("session-key-%d", time.Now().UnixNano()))
	f.run(msg, "sqop", "decrypt", "--session-key-out", out, secret)
	b, err := os.ReadFile(out)
	if err != nil {
		f.t.Fatal(err)
	}
	_, hexKey, ok := strings.Cut(strings.TrimSpace(string(b)), ":")
	sk, err := hex.DecodeString(hexKey)
	if !ok || err != nil || len(sk) == 0 {
		f.t.Fatalf("sqop --session-key-out wrote %q", b)
	}
	return sk
}

// A foreignSealer is one way a party seals a record with another tool.
type foreignSealer struct {
	name    string
	profile Profile // what the tool writes for Keyholder's device keys
	// seal encrypts plaintext to keys and returns the binary message and
	// its session key: reported by the tool where it can, otherwise by
	// Sequoia reading the message.
	seal func(f *foreign, plaintext []byte, keys ...*Key) (msg, sessionKey []byte)
	// version reports the tool's version, for the log.
	version func(f *foreign) string
}

// firstLine is the first line of out, for version reports.
func firstLine(out []byte) string {
	line, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
	return line
}

var foreignSealers = []foreignSealer{
	{
		// rnp -z 0: no compression (RNP compresses by default). RNP
		// writes v3 key packets and SEIPDv1 (its --aead writes the
		// LibrePGP OCB packet, tag 20, which Split refuses). It cannot
		// report the session key.
		name: "rnp", profile: Compat,
		seal: func(f *foreign, plaintext []byte, keys ...*Key) ([]byte, []byte) {
			f.need("rnp", "apt-get install rnp")
			ring := f.file("rnp-keys.asc", concat(armorAll(keys)...))
			args := []string{"--homedir", filepath.Join(f.dir, "rnp"), "--keyfile", ring, "--encrypt", "-z", "0"}
			for _, k := range keys {
				args = append(args, "--recipient", k.Fingerprint())
			}
			msg := f.run(nil, "rnp", append(args, "--output", "-", f.file("record.txt", plaintext))...)
			return msg, f.sequoiaSessionKey(msg, keys[0])
		},
		version: func(f *foreign) string { return firstLine(f.run(nil, "rnp", "--version")) },
	},
	{
		// sq encrypt --compression none (sq's default, "pad", puts the
		// literal packet in a compressed packet). Sequoia 1.12 writes v3
		// key packets and SEIPDv1 only.
		name: "sq", profile: Compat,
		seal: func(f *foreign, plaintext []byte, keys ...*Key) ([]byte, []byte) {
			f.need("sq", "apt-get install sq")
			args := []string{"encrypt", "--binary", "--compression", "none"}
			for _, c := range f.certs(keys...) {
				args = append(args, "--recipient-cert", c)
			}
			msg := f.run(plaintext, "sq", args...)
			return msg, f.sequoiaSessionKey(msg, keys[0])
		},
		version: func(f *foreign) string { return firstLine(f.run(nil, "sq", "--version")) },
	},
	{
		// sqop encrypt (the Stateless OpenPGP interface) has no
		// compression option and does not compress.
		name: "sqop", profile: Compat,
		seal: func(f *foreign, plaintext []byte, keys ...*Key) ([]byte, []byte) {
			f.need("sqop", "apt-get install sqop")
			msg := f.run(plaintext, "sqop", append([]string{"encrypt", "--no-armor"}, f.certs(keys...)...)...)
			return msg, f.sequoiaSessionKey(msg, keys[0])
		},
		version: func(f *foreign) string { return firstLine(f.run(nil, "sqop", "version")) },
	},
	{
		// OpenPGP.js 6 picks SEIPDv2 for keys that advertise it, as
		// device keys do; a compat record needs an explicit AES-256
		// session key with no AEAD algorithm.
		name: "openpgpjs-compat", profile: Compat,
		seal:    openpgpjsSeal("compat"),
		version: openpgpjsVersion,
	},
	{
		// Left to itself OpenPGP.js 6 seals a modern record: v6 key
		// packets and SEIPDv2 (AES-256, GCM from the keys' preferences).
		name: "openpgpjs-modern", profile: Modern,
		seal:    openpgpjsSeal("modern"),
		version: openpgpjsVersion,
	},
}

func armorAll(keys []*Key) [][]byte {
	out := make([][]byte, len(keys))
	for i, k := range keys {
		out[i] = k.Armor()
	}
	return out
}

// openpgpjs returns the node_modules directory holding OpenPGP.js:
// $KEYHOLDER_TEST_OPENPGPJS, or where .ci/run installs it. It needs node.
func (f *foreign) openpgpjs() string {
	f.t.Helper()
	f.need("node", "apt-get install nodejs")
	dir := os.Getenv("KEYHOLDER_TEST_OPENPGPJS")
	if dir == "" {
		if home, err := os.UserHomeDir(); err == nil {
			dir = filepath.Join(home, ".cache", "keyholder", "openpgpjs", "node_modules")
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "openpgp", "package.json")); err != nil {
		if os.Getenv("CI") == "true" {
			f.t.Fatalf("OpenPGP.js is not installed (KEYHOLDER_TEST_OPENPGPJS=%q), and CI=true requires the interop tests to run (.ci/run installs it): %v", os.Getenv("KEYHOLDER_TEST_OPENPGPJS"), err)
		}
		f.t.Skipf("OpenPGP.js is not installed: skipping (npm ci in a copy of testdata/foreign and set KEYHOLDER_TEST_OPENPGPJS to its node_modules, as .ci/run does; under CI=true this is a failure)")
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		f.t.Fatal(err)
	}
	return abs
}

// openpgpjsResult is the line testdata/foreign/seal.js prints.
type openpgpjsResult struct {
	Version       string  `json:"version"`
	Algorithm     string  `json:"algorithm"`
	AEADAlgorithm *string `json:"aeadAlgorithm"`
	SessionKey    string  `json:"sessionKey"`
}

func (f *foreign) runOpenPGPjs(mode string, plaintext []byte, keys ...*Key) ([]byte, openpgpjsResult) {
	f.t.Helper()
	script, err := filepath.Abs(filepath.Join("testdata", "foreign", "seal.js"))
	if err != nil {
		f.t.Fatal(err)
	}
	out := filepath.Join(f.dir, "openpgpjs-"+mode+".pgp")
	args := append([]string{script, mode, f.file("record.txt", plaintext), out}, f.certs(keys...)...)
	f.env = []string{"KEYHOLDER_TEST_OPENPGPJS=" + f.openpgpjs()}
	var res openpgpjsResult
	if err := json.Unmarshal(f.run(nil, "node", args...), &res); err != nil {
		f.t.Fatalf("seal.js: %v", err)
	}
	if !strings.HasPrefix(res.Version, "6.") {
		f.t.Fatalf("OpenPGP.js %s, want 6.x (testdata/foreign/package.json pins it)", res.Version)
	}
	msg, err := os.ReadFile(out)
	if err != nil {
		f.t.Fatal(err)
	}
	return msg, res
}

func openpgpjsSeal(mode string) func(*foreign, []byte, ...*Key) ([]byte, []byte) {
	return func(f *foreign, plaintext []byte, keys ...*Key) ([]byte, []byte) {
		msg, res := f.runOpenPGPjs(mode, plaintext, keys...)
		sk, err := hex.DecodeString(res.SessionKey)
		if err != nil || res.Algorithm != "aes256" || (res.AEADAlgorithm != nil) != (mode == "modern") {
			f.t.Fatalf("seal.js reported session key %q (%s, AEAD %v): %v", res.SessionKey, res.Algorithm, res.AEADAlgorithm, err)
		}
		return msg, sk
	}
}

func openpgpjsVersion(f *foreign) string {
	var pkg struct{ Version string }
	b, err := os.ReadFile(filepath.Join(f.openpgpjs(), "openpgp", "package.json"))
	if err == nil {
		err = json.Unmarshal(b, &pkg)
	}
	if err != nil {
		f.t.Fatal(err)
	}
	return "OpenPGP.js " + pkg.Version
}

// deviceID returns the session key id each device computes from its own
// key packet in m (exactly one each); they must agree.
func deviceID(t *testing.T, m *Message, devices ...*Key) [32]byte {
	t.Helper()
	var id [32]byte
	for i, k := range devices {
		var mine []*KeyPacket
		for _, kp := range m.KeyPackets {
			if kp.For(k) {
				mine = append(mine, kp)
			}
		}
		if len(mine) != 1 {
			t.Fatalf("%d key packets for %s", len(mine), k.Name())
		}
		got, err := SessionKeyID(mine[0], m.Profile(), k)
		if err != nil {
			t.Fatalf("SessionKeyID for %s: %v", k.Name(), err)
		}
		if i == 0 {
			id = got
		} else if got != id {
			t.Errorf("%s computes %x, %s %x", k.Name(), got, devices[0].Name(), id)
		}
	}
	return id
}

// TestForeignSessionKeyID: issue 7 P2 for records other tools seal. For
// each tool, records X and Y sealed to two devices; X's key packets
// transplanted in front of Y's data packet, and in front of a data packet
// pkg/envelope sealed, carry X's id, so a device that approved X refuses
// them; and neither opens with X's session key.
func TestForeignSessionKeyID(t *testing.T) {
	devices := []*Key{namedKey("device"), namedKey("device2")}
	for _, s := range foreignSealers {
		t.Run(s.name, func(t *testing.T) {
			t.Parallel()
			f := newForeign(t)
			px, py := []byte("record X, sealed by "+s.name+"\n"), []byte("record Y, sealed by "+s.name+"\n")
			x, skX := s.seal(f, px, devices...)
			y, skY := s.seal(f, py, devices...)
			t.Logf("%s: %d-byte message", s.version(f), len(x))

			mx, dataX := splitParts(t, x)
			my, dataY := splitParts(t, y)
			for _, c := range []struct {
				name           string
				msg, data      []byte
				m              *Message
				sessionKey, pt []byte
			}{{"X", x, dataX, mx, skX, px}, {"Y", y, dataY, my, skY, py}} {
				if c.m.Profile() != s.profile || len(c.m.KeyPackets) != len(devices) {
					t.Fatalf("%s: a %s record with %d key packets, want %s with %d", c.name, c.m.Profile(), len(c.m.KeyPackets), s.profile, len(devices))
				}
				if !bytes.Equal(concat(keyPacketBytes(c.m.KeyPackets), c.data), c.msg) {
					t.Fatalf("%s: key packets || data differs from the tool's message", c.name)
				}
				if KeyPacketsDigest(c.m.KeyPackets) != sha256.Sum256(c.msg[:len(c.msg)-len(c.data)]) {
					t.Errorf("%s: KeyPacketsDigest is not the SHA-256 of the bytes before the data packet", c.name)
				}
				if id := deviceID(t, c.m, devices...); id != hmacSessionKeyID(c.sessionKey) {
					t.Errorf("%s: session key id %x, want the HMAC of the reported session key %x", c.name, id, hmacSessionKeyID(c.sessionKey))
				}
				for _, k := range devices {
					if got, err := openAll(c.msg, k); err != nil || !bytes.Equal(got, c.pt) {
						t.Fatalf("%s: %s opens %q, %v", c.name, k.Name(), got, err)
					}
				}
				if c.m.Profile() == Compat {
					if tag := innerTag(t, c.msg, devices[0]); tag != tagLiteral {
						t.Errorf("%s: the first packet inside the encryption has tag %d, want a literal packet (no compression)", c.name, tag)
					}
				}
			}
			idX, idY := deviceID(t, mx, devices...), deviceID(t, my, devices...)
			if idX == idY {
				t.Fatal("two messages have the same session key id")
			}

			// What a device remembers of the records it approved.
			approved := map[[32]byte]string{idX: "X"}
			lunch, _ := seal(t, s.profile, []byte("the operator's lunch menu"), devices...)
			_, ours := splitParts(t, lunch)
			for _, c := range []struct {
				name string
				data []byte
			}{
				{"Y's data packet", dataY},
				{"a data packet pkg/envelope sealed", ours},
			} {
				forged := concat(keyPacketBytes(mx.KeyPackets), c.data)
				m, _ := splitParts(t, forged)
				if KeyPacketsDigest(m.KeyPackets) != KeyPacketsDigest(mx.KeyPackets) {
					t.Errorf("X's key packets before %s: another key packets digest", c.name)
				}
				if id := deviceID(t, m, devices...); approved[id] != "X" {
					t.Errorf("X's key packets before %s: id %x, not X's %x", c.name, id, idX)
				}
				if _, err := openAll(forged, devices[0]); !errors.Is(err, ErrIntegrity) {
					t.Errorf("X's key packets before %s opened: %v, want ErrIntegrity", c.name, err)
				}
			}
		})
	}
}
