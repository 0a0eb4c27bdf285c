package envelope

// GnuPG interop: records made by pkg/envelope open in gpg, and records made
// by gpg split, rewrap and open in pkg/envelope. Run against GnuPG 2.2.40
// (Debian 12), which reads v4 keys, v3 PKESKs and SEIPDv1 only.

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"os/exec"
	"strings"
	"testing"

	"github.com/ProtonMail/go-crypto/openpgp/armor"
	"github.com/ProtonMail/go-crypto/openpgp/packet"
)

// gpgPartyKey makes a party key in gpg (Ed25519 primary, Cv25519 subkey,
// no passphrase) and returns it parsed, public part only.
func gpgPartyKey(t *testing.T, g *gnupg, uid string) *Key {
	t.Helper()
	g.mustRun("--passphrase", "", "--quick-gen-key", uid, "future-default", "default", "never")
	pub := g.mustRun("--armor", "--export", uid)
	k, err := ParseKey(pub)
	if err != nil {
		t.Fatalf("ParseKey of gpg's exported key: %v\n%s", err, pub)
	}
	if fprs := g.fingerprints(false, uid); len(fprs) != 1 || fprs[0] != k.Fingerprint() {
		t.Fatalf("gpg lists %v, ParseKey says %s", fprs, k.Fingerprint())
	}
	if k.HasPrivate() {
		t.Fatal("exported public key has a private part")
	}
	return k
}

// rewrapFor seals plaintext to a fresh device key (profile), splits it, and
// returns newPKESK || data packet for party, as the server would serve it.
func rewrapFor(t *testing.T, profile Profile, plaintext []byte, party *Key) []byte {
	t.Helper()
	device := namedKey("device")
	msg, _ := seal(t, profile, plaintext, device)
	m, data := splitParts(t, msg)
	pkesk, err := Rewrap(m.KeyPackets[0], profile, device, party)
	if err != nil {
		t.Fatalf("rewrap to the gpg key: %v", err)
	}
	return concat(pkesk, data)
}

func TestGnuPGOpensRewrappedRecord(t *testing.T) {
	g := newGnuPG(t)
	t.Logf("gpg %s", g.version())
	party := gpgPartyKey(t, g, "party")
	for _, size := range []int{0, 13, 1 << 20} {
		plaintext := noise(size)
		if size == 13 {
			plaintext = []byte("hello, gnupg\n")
		}
		msg := rewrapFor(t, Compat, plaintext, party)
		out, errOut, err := g.run("--status-fd", "2", "--decrypt", g.file("record.gpg", msg))
		if err != nil {
			t.Fatalf("%d bytes: gpg --decrypt: %v\n%s", size, err, errOut)
		}
		if !bytes.Equal(out, plaintext) {
			t.Fatalf("%d bytes: gpg decrypted %d bytes that differ from the plaintext", size, len(out))
		}
		for _, status := range []string{"[GNUPG:] DECRYPTION_OKAY", "[GNUPG:] GOODMDC", "[GNUPG:] END_DECRYPTION"} {
			if !bytes.Contains(errOut, []byte(status)) {
				t.Errorf("%d bytes: gpg status lacks %q:\n%s", size, status, errOut)
			}
		}
		// Nothing about the record travels in the literal packet.
		if !bytes.Contains(errOut, []byte("[GNUPG:] PLAINTEXT 62 0 \n")) {
			t.Errorf("%d bytes: literal packet is not binary with date 0 and no name:\n%s", size, errOut)
		}
	}

	// gpg refuses a record whose body was tampered with: a flipped bit in
	// the middle of the body, in the MDC, and a truncated body.
	plaintext := noise(5000)
	msg := rewrapFor(t, Compat, plaintext, party)
	for name, bad := range map[string][]byte{
		"flipped body bit": flipBit(msg, len(msg)/2*8+3),
		"flipped MDC bit":  flipBit(msg, (len(msg)-2)*8),
		"truncated":        msg[:len(msg)-10],
	} {
		out, errOut, err := g.run("--decrypt", g.file("tampered.gpg", bad))
		if err == nil {
			t.Errorf("%s: gpg exited 0 (%d bytes out, plaintext equal: %v)\n%s", name, len(out), bytes.Equal(out, plaintext), errOut)
		}
	}
}

func TestGnuPGOpensRewrapToNISTKey(t *testing.T) {
	// A party key of another common algorithm, made by gpg: NIST P-256.
	g := newGnuPG(t)
	g.mustRun("--passphrase", "", "--quick-gen-key", "p256 party", "nistp256", "sign,cert", "never")
	fpr := g.fingerprints(false, "p256 party")[0]
	g.mustRun("--passphrase", "", "--quick-add-key", fpr, "nistp256", "encr", "never")
	party, err := ParseKey(g.mustRun("--export", fpr))
	if err != nil {
		t.Fatalf("ParseKey of gpg's P-256 key: %v", err)
	}
	plaintext := []byte("to a NIST P-256 key\n")
	out, errOut, err := g.run("--decrypt", g.file("record.gpg", rewrapFor(t, Compat, plaintext, party)))
	if err != nil || !bytes.Equal(out, plaintext) {
		t.Fatalf("gpg --decrypt: %v (%q)\n%s", err, out, errOut)
	}
}

// innerTag returns the tag of the first packet inside the encrypted data
// packet of msg, decrypted with k: 8 if gpg compressed, 11 if not.
func innerTag(t *testing.T, msg []byte, k *Key) byte {
	t.Helper()
	m, err := Split(bytes.NewReader(msg))
	if err != nil {
		t.Fatal(err)
	}
	var ek *packet.EncryptedKey
	for _, kp := range m.KeyPackets {
		if kp.For(k) {
			ek, err = unwrap(kp, m.Profile(), k)
		}
	}
	if ek == nil {
		t.Fatalf("no key packet for %s: %v", k.Fingerprint(), err)
	}
	if err != nil {
		t.Fatal(err)
	}
	p, err := packet.Read(m.Data)
	if err != nil {
		t.Fatal(err)
	}
	dec, err := p.(*packet.SymmetricallyEncrypted).Decrypt(ek.CipherFunc, ek.Key)
	if err != nil {
		t.Fatal(err)
	}
	var first [1]byte
	if _, err := io.ReadFull(dec, first[:]); err != nil {
		t.Fatal(err)
	}
	if first[0]&0x40 != 0 {
		return first[0] & 0x3f
	}
	return (first[0] >> 2) & 0xf
}

func TestGnuPGEncryptedRecordRewrapped(t *testing.T) {
	g := newGnuPG(t)
	device := namedKey("device")
	party := namedKey("party")
	g.mustRun("--import", g.file("device.asc", device.Armor()))
	if fprs := g.fingerprints(false); len(fprs) != 1 || fprs[0] != device.Fingerprint() {
		t.Fatalf("gpg imported %v, want %s", fprs, device.Fingerprint())
	}
	g.mustRun("--import", g.file("party.asc", party.Armor()))
	plaintext := concat([]byte(strings.Repeat("compressible record text. ", 2000)), noise(3000))
	src := g.file("record.txt", plaintext)
	for _, c := range []struct {
		name string
		args []string
		tag  byte // first packet inside the encryption
	}{
		// The device key prefers no compression (keyGenConfig), which gpg
		// honours by default...
		{"default options", nil, tagLiteral},
		{"--compress-algo none", []string{"--compress-algo", "none"}, tagLiteral},
		// ...so compression, which gpg applies for keys without that
		// preference, is forced here.
		{"--compress-algo zlib", []string{"--compress-algo", "zlib"}, tagCompress},
		{"--compress-algo zip", []string{"--compress-algo", "zip"}, tagCompress},
		{"--compress-algo bzip2", []string{"--compress-algo", "bzip2"}, tagCompress},
		{"--armor then dearmored", []string{"--armor"}, tagLiteral},
		{"two recipients", []string{"--recipient", party.Fingerprint()}, tagLiteral},
	} {
		t.Run(c.name, func(t *testing.T) {
			args := append([]string{"--trust-model", "always", "--encrypt", "--recipient", device.Fingerprint(), "--output", "-"}, c.args...)
			msg := g.mustRun(append(args, src)...)
			if bytes.HasPrefix(msg, []byte("-----BEGIN PGP MESSAGE-----")) {
				msg = dearmorMessage(t, msg)
			}
			// gpg writes old-format headers for its PKESKs.
			if msg[0]&0x40 != 0 {
				t.Errorf("first header octet 0x%02x: expected gpg's old format", msg[0])
			}
			if tag := innerTag(t, msg, device); tag != c.tag {
				t.Errorf("gpg wrote inner packet tag %d, expected %d", tag, c.tag)
			}
			m, data := splitParts(t, msg)
			mine := -1
			for i, kp := range m.KeyPackets {
				if kp.For(device) {
					mine = i
				}
			}
			if m.Profile() != Compat || len(m.KeyPackets) != 1+len(c.args)/2*strings.Count(c.name, "recipients") || mine < 0 {
				t.Fatalf("split: profile %s, %d key packets, device's at %d", m.Profile(), len(m.KeyPackets), mine)
			}
			if !bytes.Equal(concat(keyPacketBytes(m.KeyPackets), data), msg) {
				t.Fatal("key packets || data differs from gpg's message")
			}
			if KeyPacketsDigest(m.KeyPackets) != sha256.Sum256(msg[:len(msg)-len(data)]) {
				t.Error("KeyPacketsDigest is not the SHA-256 of gpg's bytes before the data packet")
			}
			if got, err := openAll(msg, device); err != nil || !bytes.Equal(got, plaintext) {
				t.Fatalf("device open: %v", err)
			}
			if err := CanOpen(m.KeyPackets[mine], Compat, device); err != nil {
				t.Fatalf("CanOpen: %v", err)
			}
			pkesk, err := Rewrap(m.KeyPackets[mine], Compat, device, party.Public())
			if err != nil {
				t.Fatalf("rewrap: %v", err)
			}
			if got, err := openAll(concat(pkesk, data), party); err != nil || !bytes.Equal(got, plaintext) {
				t.Fatalf("party open: %v", err)
			}
			// A bit flipped in gpg's body is caught too.
			if _, err := openAll(flipBit(concat(pkesk, data), (len(pkesk)+len(data)/2)*8), party); !errors.Is(err, ErrIntegrity) {
				t.Errorf("tampered gpg record: %v, want ErrIntegrity", err)
			}
		})
	}
}

// TestGnuPGSessionKeyID: a record gpg encrypts to two device keys, as a
// party sealing with its own tools would (it cannot report the session
// key). KeyPacketsDigest is the SHA-256 of gpg's bytes before the data
// packet; each device computes the same session key id from its own key
// packet, and it is the HMAC of the session key gpg itself reports
// (--show-session-key, with the first device's secret key).
func TestGnuPGSessionKeyID(t *testing.T) {
	g := newGnuPG(t)
	device, device2 := namedKey("device"), namedKey("device2")
	secret, err := device.MarshalPrivate([]byte("pw"), S2KIterated)
	if err != nil {
		t.Fatal(err)
	}
	g.mustRun("--passphrase", "pw", "--import", g.file("device-secret.asc", secret))
	g.mustRun("--import", g.file("device2.asc", device2.Armor()))
	plaintext := []byte("sealed by gpg to two devices\n")
	src := g.file("record.txt", plaintext)
	var ids [][32]byte
	for i := 0; i < 2; i++ {
		msg := g.mustRun("--trust-model", "always", "--encrypt", "--recipient", device.Fingerprint(),
			"--recipient", device2.Fingerprint(), "--output", "-", src)
		m, data := splitParts(t, msg)
		if KeyPacketsDigest(m.KeyPackets) != sha256.Sum256(msg[:len(msg)-len(data)]) {
			t.Error("KeyPacketsDigest is not the SHA-256 of gpg's bytes before the data packet")
		}
		var id [32]byte
		for _, k := range []*Key{device, device2} {
			found := 0
			for _, kp := range m.KeyPackets {
				if !kp.For(k) {
					continue
				}
				found++
				got, err := SessionKeyID(kp, Compat, k)
				if err != nil {
					t.Fatalf("SessionKeyID for %s: %v", k.Name(), err)
				}
				if id == ([32]byte{}) {
					id = got
				} else if got != id {
					t.Errorf("%s computes %x, the other device %x", k.Name(), got, id)
				}
			}
			if found != 1 {
				t.Fatalf("%d key packets for %s", found, k.Name())
			}
		}
		// gpg's own account of the session key: "SESSION_KEY <algo>:<hex>".
		out, errOut, err := g.run("--passphrase", "pw", "--status-fd", "2", "--show-session-key", "--decrypt", g.file("record.gpg", msg))
		if err != nil || !bytes.Equal(out, plaintext) {
			t.Fatalf("gpg --decrypt: %v\n%s", err, errOut)
		}
		f := strings.Fields(statusLine(string(errOut), "SESSION_KEY"))
		if len(f) != 3 {
			t.Fatalf("no session key in gpg's status:\n%s", errOut)
		}
		_, hexKey, _ := strings.Cut(f[2], ":")
		sk, err := hex.DecodeString(hexKey)
		if err != nil || len(sk) == 0 {
			t.Fatalf("session key %q in gpg's status: %v", f[2], err)
		}
		if want := hmacSessionKeyID(sk); id != want {
			t.Errorf("session key id %x, want HMAC of gpg's session key %x", id, want)
		}
		ids = append(ids, id)
	}
	if ids[0] == ids[1] {
		t.Error("two gpg messages have the same session key id")
	}
}

func TestGnuPGImportsExportedKey(t *testing.T) {
	g := newGnuPG(t)
	device, err := GenerateKey("exported device")
	if err != nil {
		t.Fatal(err)
	}
	armored, err := device.MarshalPrivate([]byte("pass phrase"), S2KIterated)
	if err != nil {
		t.Fatal(err)
	}
	g.mustRun("--passphrase", "pass phrase", "--import", g.file("device-secret.asc", armored))
	if fprs := g.fingerprints(true); len(fprs) != 1 || fprs[0] != device.Fingerprint() {
		t.Fatalf("gpg has secret keys %v, want %s", fprs, device.Fingerprint())
	}
	plaintext := []byte("sealed by pkg/envelope, opened by gpg with an imported key\n")
	msg, _ := seal(t, Compat, plaintext, device.Public())
	out, errOut, err := g.run("--passphrase", "pass phrase", "--decrypt", g.file("record.gpg", msg))
	if err != nil || !bytes.Equal(out, plaintext) {
		t.Fatalf("gpg --decrypt: %v (%q)\n%s", err, out, errOut)
	}
	// gpg-agent caches the passphrase; flush the cache before trying a
	// wrong one.
	reload := exec.Command("gpgconf", "--reload", "gpg-agent")
	reload.Env = g.env()
	if out, err := reload.CombinedOutput(); err != nil {
		t.Fatalf("gpgconf --reload gpg-agent: %v\n%s", err, out)
	}
	if _, _, err := g.run("--passphrase", "wrong", "--decrypt", g.file("record.gpg", msg)); err == nil {
		t.Error("gpg decrypted with a wrong passphrase")
	}

	// Argon2/AEAD-protected keys are for Keyholder's own programs: GnuPG
	// 2.2 does not import their secret parts.
	if v := g.version(); strings.HasPrefix(v, "2.2.") {
		h := newGnuPG(t)
		argon, err := device.MarshalPrivate([]byte("pass phrase"), S2KArgon2)
		if err != nil {
			t.Fatal(err)
		}
		_, errOut, err := h.run("--passphrase", "pass phrase", "--import", h.file("argon2.asc", argon))
		secrets := h.fingerprints(true)
		t.Logf("gpg %s importing an Argon2-protected key: exit %v, secret keys %v\n%s", v, err, secrets, errOut)
		if err == nil && len(secrets) > 0 {
			if out, _, err := h.run("--passphrase", "pass phrase", "--decrypt", h.file("record.gpg", msg)); err == nil && bytes.Equal(out, plaintext) {
				t.Errorf("gpg %s used an Argon2-protected key; update the docs (S2KIterated is documented as the only form GnuPG 2.2 imports)", v)
			}
		}
	}
}

// TestGnuPGRefusesModernRecord documents why the compat profile exists:
// GnuPG 2.2 cannot read a modern record. Observed with gpg 2.2.40 on a
// modern record rewrapped to a gpg-made Cv25519 key (v6 PKESK to a v4 key,
// then SEIPDv2 with AES-256-GCM): it stops at the key packet with
// "gpg: packet(1) with unknown version 6", exits with status 2 and writes
// no plaintext. Behind a v3 PKESK it reads (a shape Split refuses), it
// stops at the data packet instead: "gpg: encrypted_mdc packet with unknown
// version 2", status 2 (TestGnuPGRefusesSEIPDv2). Deployments whose parties
// use GnuPG 2.2 (or Sequoia 0.27) need the compat profile.
func TestGnuPGRefusesModernRecord(t *testing.T) {
	g := newGnuPG(t)
	party := gpgPartyKey(t, g, "party")
	// What a device asks before it rewraps: a GnuPG key can receive
	// compat records and does not say it reads SEIPDv2.
	if err := party.CanReceive(Compat); err != nil {
		t.Errorf("gpg %s key cannot receive compat records: %v", g.version(), err)
	}
	if err := party.CanReceive(Modern); !errors.Is(err, ErrProfileMismatch) {
		t.Errorf("gpg %s key: CanReceive(modern) = %v; the key advertises SEIPDv2 now, update the docs", g.version(), err)
	}
	plaintext := []byte("modern record\n")
	msg := rewrapFor(t, Modern, plaintext, party)
	out, errOut, err := g.run("--decrypt", g.file("modern.gpg", msg))
	v := g.version()
	t.Logf("gpg %s on a modern record: exit %v, %d bytes out\n%s", v, err, len(out), errOut)
	if strings.HasPrefix(v, "2.2.") {
		if err == nil {
			t.Fatalf("gpg %s opened a SEIPDv2 record; the docs say compat is needed for GnuPG 2.2", v)
		}
		if len(out) != 0 {
			t.Errorf("gpg %s wrote %d bytes while refusing", v, len(out))
		}
	} else if err == nil && !bytes.Equal(out, plaintext) {
		t.Errorf("gpg %s decrypted a modern record to the wrong plaintext", v)
	}
}

func dearmorMessage(t *testing.T, armored []byte) []byte {
	t.Helper()
	block, err := armor.Decode(bytes.NewReader(armored))
	if err != nil || block.Type != "PGP MESSAGE" {
		t.Fatalf("dearmor: %v", err)
	}
	bin, err := io.ReadAll(block.Body)
	if err != nil {
		t.Fatal(err)
	}
	return bin
}

// TestGnuPGRefusesSEIPDv2 feeds gpg a v3 PKESK (which it reads) in front
// of a SEIPDv2 packet, a shape Split refuses (ErrProfileMismatch), to see
// what GnuPG 2.2 does with the data packet itself.
func TestGnuPGRefusesSEIPDv2(t *testing.T) {
	g := newGnuPG(t)
	party := gpgPartyKey(t, g, "party")
	sk := noise(32)
	pub, _ := party.encryptionKey()
	var buf bytes.Buffer
	if err := packet.SerializeEncryptedKeyAEAD(&buf, pub, packet.CipherAES256, false, sk, nil); err != nil {
		t.Fatal(err)
	}
	cfg := &packet.Config{AEADConfig: &packet.AEADConfig{DefaultMode: packet.AEADModeGCM}}
	w, err := packet.SerializeSymmetricallyEncrypted(&buf, packet.CipherAES256, true,
		packet.CipherSuite{Cipher: packet.CipherAES256, Mode: packet.AEADModeGCM}, sk, cfg)
	if err != nil {
		t.Fatal(err)
	}
	w.Write(literalPacket([]byte("v2 data")))
	w.Close()
	if _, err := Split(bytes.NewReader(buf.Bytes())); !errors.Is(err, ErrProfileMismatch) {
		t.Errorf("Split of v3 PKESK || SEIPDv2: %v, want ErrProfileMismatch", err)
	}
	out, errOut, err := g.run("--decrypt", g.file("v2.gpg", buf.Bytes()))
	v := g.version()
	t.Logf("gpg %s on v3 PKESK || SEIPDv2: exit %v, %d bytes out\n%s", v, err, len(out), errOut)
	if strings.HasPrefix(v, "2.2.") && err == nil {
		t.Fatalf("gpg %s opened SEIPDv2", v)
	}
}

// TestGnuPGEncryptsToForeignKeys has gpg encrypt to RSA-3072 and NIST
// P-256 device keys: Split's canonical-encoding checks must accept gpg's
// RSA and ECDH P-256 key packets, and the keys open and rewrap them.
func TestGnuPGEncryptsToForeignKeys(t *testing.T) {
	g := newGnuPG(t)
	entities, err := foreignKeys()
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"rsa3072", "p256"} {
		priv, err := ParseKey(serializeEntity(t, entities[name], false))
		if err != nil {
			t.Fatal(err)
		}
		g.mustRun("--import", g.file(name+".asc", priv.Armor()))
		plaintext := []byte("to a " + name + " key\n")
		src := g.file("plain.txt", plaintext)
		for i := 0; i < 4; i++ {
			msg := g.mustRun("--trust-model", "always", "--encrypt", "--recipient", priv.Fingerprint(), "--output", "-", src)
			m, data := splitParts(t, msg)
			if got, err := openAll(msg, priv); err != nil || !bytes.Equal(got, plaintext) {
				t.Fatalf("%s: open: %v", name, err)
			}
			pkesk, err := Rewrap(m.KeyPackets[0], Compat, priv, namedKey("party"))
			if err != nil {
				t.Fatalf("%s: rewrap: %v", name, err)
			}
			if got, err := openAll(concat(pkesk, data), namedKey("party")); err != nil || !bytes.Equal(got, plaintext) {
				t.Fatalf("%s: party open: %v", name, err)
			}
		}
	}
}

// TestGnuPGMessagesSplitRefuses: gpg messages of other shapes are refused
// with a typed error: password-encrypted (SKESK), password and key, signed
// but not encrypted, and a bare literal packet (--store).
func TestGnuPGMessagesSplitRefuses(t *testing.T) {
	g := newGnuPG(t)
	device := namedKey("device")
	g.mustRun("--import", g.file("device.asc", device.Armor()))
	g.mustRun("--passphrase", "", "--quick-gen-key", "signer", "future-default", "default", "never")
	src := g.file("plain.txt", []byte("not for Keyholder\n"))
	for _, c := range []struct {
		name string
		args []string
		want error
	}{
		{"--symmetric", []string{"--passphrase", "pw", "--s2k-count", "65536", "--symmetric"}, ErrUnsupported},
		{"--encrypt --symmetric", []string{"--passphrase", "pw", "--s2k-count", "65536", "--trust-model", "always", "--encrypt", "--symmetric", "--recipient", device.Fingerprint()}, ErrUnsupported},
		{"--sign", []string{"--local-user", "signer", "--sign"}, ErrMalformed},
		{"--store", []string{"--store"}, ErrMalformed},
	} {
		msg := g.mustRun(append(append([]string{"--output", "-"}, c.args...), src)...)
		if _, err := Split(bytes.NewReader(msg)); !errors.Is(err, c.want) {
			t.Errorf("gpg %s: Split: %v, want %v", c.name, err, c.want)
		}
	}
}
