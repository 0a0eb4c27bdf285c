package statement

import (
	"bytes"
	"crypto"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/armor"
	"github.com/ProtonMail/go-crypto/openpgp/packet"
	"github.com/ProtonMail/go-crypto/openpgp/s2k"

	"github.com/keyholder/keyholder/pkg/envelope"
)

// stmtKey generates a Keyholder key for the statement tests.
func stmtKey(t testing.TB, name string) *envelope.Key {
	t.Helper()
	k, err := envelope.GenerateKey(name)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// stmtEntityKey wraps a go-crypto entity made with cfg (Algorithm, Curve,
// V6Keys, Time, KeyLifetimeSecs...) as a Key, for key shapes GenerateKey
// does not make and ParseKey may refuse (an expired key): it replaces the
// entity behind a generated Key, which Entity returns.
func stmtEntityKey(t testing.TB, cfg *packet.Config) *envelope.Key {
	t.Helper()
	e, err := openpgp.NewEntity("test", "", "", cfg)
	if err != nil {
		t.Fatal(err)
	}
	k := stmtKey(t, "test")
	*k.Entity() = *e
	return k
}

func stmtSign(t testing.TB, statement []byte, k *envelope.Key) []byte {
	t.Helper()
	sig, err := Sign(statement, k)
	if err != nil {
		t.Fatalf("Sign: %v", err)
	}
	return sig
}

// stmtDearmor returns the binary packet of an armored signature.
func stmtDearmor(t testing.TB, sig []byte) []byte {
	t.Helper()
	block, err := armor.Decode(bytes.NewReader(sig))
	if err != nil {
		t.Fatal(err)
	}
	bin, err := io.ReadAll(block.Body)
	if err != nil {
		t.Fatal(err)
	}
	return bin
}

func stmtArmor(t testing.TB, bin []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	w, err := armor.Encode(&buf, openpgp.SignatureType, nil)
	if err != nil {
		t.Fatal(err)
	}
	w.Write(bin)
	w.Close()
	buf.WriteByte('\n')
	return buf.Bytes()
}

// stmtRawSign makes a binary detached signature over msg with priv the way
// Sign does, after edit has had its way with the packet: it lets tests make
// the signatures Sign never makes.
func stmtRawSign(t testing.TB, priv *packet.PrivateKey, msg []byte, now time.Time, edit func(*packet.Signature)) []byte {
	t.Helper()
	return stmtRawSignWith(t, nil, priv, msg, now, edit)
}

// stmtRawSignWith is stmtRawSign drawing randomness from rnd (nil:
// crypto/rand). With rnd set, a v4 signature also carries a salt notation
// drawn from it, as Sign's signatures do, and EdDSA signatures are the same
// bytes on every run.
func stmtRawSignWith(t testing.TB, rnd io.Reader, priv *packet.PrivateKey, msg []byte, now time.Time, edit func(*packet.Signature)) []byte {
	t.Helper()
	keyID := priv.KeyId
	sig := &packet.Signature{
		Version:           priv.PublicKey.Version,
		SigType:           packet.SigTypeBinary,
		PubKeyAlgo:        priv.PubKeyAlgo,
		Hash:              crypto.SHA256,
		CreationTime:      time.Unix(now.Unix(), 0),
		IssuerKeyId:       &keyID,
		IssuerKeyVersion:  uint8(priv.PublicKey.Version),
		IssuerFingerprint: priv.PublicKey.Fingerprint,
	}
	if edit != nil {
		edit(sig)
	}
	salt := rnd != nil && sig.Hash != crypto.SHA1 // go-crypto has no salt size for SHA-1
	cfg := &packet.Config{DefaultHash: sig.Hash, Time: func() time.Time { return now },
		NonDeterministicSignaturesViaNotation: &salt, Rand: rnd}
	h, err := sig.PrepareSign(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if sig.SigType == packet.SigTypeText {
		h2 := openpgp.NewCanonicalTextHash(h)
		h2.Write(msg)
	} else {
		h.Write(msg)
	}
	if err := sig.Sign(h, priv, cfg); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := sig.Serialize(&buf); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// stmtSubpkt is one signature subpacket, for stmtRebuildV4.
type stmtSubpkt struct {
	typ  byte
	body []byte
}

// stmtRebuildV4 re-encodes a v4 signature packet (new-format header) after
// editing its hashed and unhashed subpacket lists. Editing the hashed list
// breaks the signature; editing the unhashed one does not.
func stmtRebuildV4(t testing.TB, bin []byte, editHashed, editUnhashed func([]stmtSubpkt) []stmtSubpkt) []byte {
	t.Helper()
	hdr, n, err := packetBounds(bin)
	if err != nil {
		t.Fatal(err)
	}
	body := bin[hdr : hdr+n]
	if body[0] != 4 {
		t.Fatalf("not a v4 signature")
	}
	parse := func(b []byte) []stmtSubpkt {
		var out []stmtSubpkt
		for len(b) > 0 {
			l := int(b[0])
			if l >= 192 {
				t.Fatalf("long subpacket")
			}
			out = append(out, stmtSubpkt{b[1], b[2 : 1+l]})
			b = b[1+l:]
		}
		return out
	}
	encode := func(list []stmtSubpkt) []byte {
		var b []byte
		for _, sp := range list {
			b = append(b, byte(len(sp.body)+1), sp.typ)
			b = append(b, sp.body...)
		}
		return append([]byte{byte(len(b) >> 8), byte(len(b))}, b...)
	}
	hl := int(body[4])<<8 | int(body[5])
	hashed := parse(body[6 : 6+hl])
	rest := body[6+hl:]
	ul := int(rest[0])<<8 | int(rest[1])
	unhashed := parse(rest[2 : 2+ul])
	tail := rest[2+ul:]
	if editHashed != nil {
		hashed = editHashed(hashed)
	}
	if editUnhashed != nil {
		unhashed = editUnhashed(unhashed)
	}
	nb := append(bytes.Clone(body[:4]), encode(hashed)...)
	nb = append(nb, encode(unhashed)...)
	nb = append(nb, tail...)
	if len(nb) >= 192 {
		t.Fatalf("rebuilt signature too long for this helper")
	}
	return append([]byte{0xc2, byte(len(nb))}, nb...)
}

// stmtDropTypes returns an edit function removing subpackets of the given types.
func stmtDropTypes(types ...byte) func([]stmtSubpkt) []stmtSubpkt {
	return func(list []stmtSubpkt) []stmtSubpkt {
		var out []stmtSubpkt
		for _, sp := range list {
			if !bytes.Contains(types, []byte{sp.typ &^ 0x80}) {
				out = append(out, sp)
			}
		}
		return out
	}
}

func stmtSigningPriv(t testing.TB, k *envelope.Key) *packet.PrivateKey {
	t.Helper()
	p, err := k.SigningKey()
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func stmtWantBadSig(t *testing.T, what string, err error, alsoWant ...error) {
	t.Helper()
	if !errors.Is(err, ErrBadSignature) {
		t.Errorf("%s: got %v, want ErrBadSignature", what, err)
		return
	}
	for _, e := range alsoWant {
		if !errors.Is(err, e) {
			t.Errorf("%s: error %v does not also match %v", what, err, e)
		}
	}
}

func TestSignVerify(t *testing.T) {
	device := stmtKey(t, "device")
	for _, ex := range stmtExamples() {
		st := stmtMarshal(t, ex.s)
		sig := stmtSign(t, st, device)
		if !bytes.HasPrefix(sig, []byte("-----BEGIN PGP SIGNATURE-----\n")) || !bytes.HasSuffix(sig, []byte("-----END PGP SIGNATURE-----\n")) {
			t.Fatalf("Sign did not return an armored signature:\n%s", sig)
		}
		if err := Verify(st, sig, device); err != nil {
			t.Fatalf("Verify(armored): %v", err)
		}
		bin := stmtDearmor(t, sig)
		if err := Verify(st, bin, device); err != nil {
			t.Fatalf("Verify(binary): %v", err)
		}
		// The public half alone verifies, and leading/trailing white space
		// around the armor is tolerated.
		if err := Verify(st, append(append([]byte("\n  "), sig...), "\n\n"...), device.Public()); err != nil {
			t.Fatalf("Verify with public key: %v", err)
		}
		p, err := packet.Read(bytes.NewReader(bin))
		if err != nil {
			t.Fatal(err)
		}
		ps := p.(*packet.Signature)
		if ps.SigType != packet.SigTypeBinary || ps.Hash != crypto.SHA256 || ps.Version != 4 ||
			!bytes.Equal(ps.IssuerFingerprint, device.Entity().PrimaryKey.Fingerprint) ||
			time.Since(ps.CreationTime) > time.Minute {
			t.Errorf("unexpected signature packet: type %x hash %v v%d issuer %X created %v",
				ps.SigType, ps.Hash, ps.Version, ps.IssuerFingerprint, ps.CreationTime)
		}
		// go-crypto's own detached verifier agrees.
		kr := openpgp.EntityList{device.Entity()}
		if _, err := openpgp.CheckArmoredDetachedSignature(kr, bytes.NewReader(st), bytes.NewReader(sig), nil); err != nil {
			t.Errorf("openpgp.CheckArmoredDetachedSignature: %v", err)
		}
	}
}

func TestSignVerifyUnnamedKey(t *testing.T) {
	k := stmtKey(t, "") // GenerateKey allows an empty user id
	st := stmtMarshal(t, stmtSubmission())
	if err := Verify(st, stmtSign(t, st, k), k.Public()); err != nil {
		t.Fatal(err)
	}
}

func TestSignRefuses(t *testing.T) {
	device := stmtKey(t, "device")
	st := stmtMarshal(t, stmtApproval())

	if _, err := Sign(st, device.Public()); !errors.Is(err, envelope.ErrNoPrivateKey) {
		t.Errorf("public key signed: %v", err)
	}
	if _, err := Sign(st, nil); !errors.Is(err, envelope.ErrNoPrivateKey) {
		t.Errorf("nil key signed: %v", err)
	}
	for _, bad := range [][]byte{nil, []byte("hello\n"), append(st[:len(st):len(st)], 'x'), bytes.ReplaceAll(st, []byte("\n"), []byte("\r\n"))} {
		if _, err := Sign(bad, device); !errors.Is(err, ErrStatement) {
			t.Errorf("signed non-statement %q: %v", bad, err)
		}
	}

	// A locked key cannot sign until it is unlocked.
	locked := stmtKey(t, "locked")
	cfg := &packet.Config{S2KConfig: &s2k.Config{S2KMode: s2k.IteratedSaltedS2K, Hash: crypto.SHA256, S2KCount: 1024}}
	if err := locked.Entity().EncryptPrivateKeys([]byte("pass"), cfg); err != nil {
		t.Fatal(err)
	}
	if !locked.Locked() {
		t.Fatal("key not locked")
	}
	if _, err := Sign(st, locked); !errors.Is(err, envelope.ErrKeyLocked) {
		t.Errorf("locked key signed: %v", err)
	}
	if err := locked.Unlock([]byte("pass")); err != nil {
		t.Fatal(err)
	}
	if err := Verify(st, stmtSign(t, st, locked), locked); err != nil {
		t.Errorf("unlocked key: %v", err)
	}
}

func TestVerifyOtherKey(t *testing.T) {
	device, other := stmtKey(t, "device"), stmtKey(t, "other")
	st := stmtMarshal(t, stmtApproval())
	sig := stmtSign(t, st, other)
	err := Verify(st, sig, device)
	stmtWantBadSig(t, "signature by another key", err)
	if err != nil && !strings.Contains(err.Error(), other.Fingerprint()) {
		t.Errorf("error %q does not name the signing key", err)
	}
	stmtWantBadSig(t, "nil key", Verify(st, stmtSign(t, st, device), nil))

	// A signature by the other key that claims the device as issuer (the
	// issuer subpackets are attacker-controlled) still fails.
	forged := stmtRawSign(t, stmtSigningPriv(t, other), st, time.Now(), nil)
	forged = bytes.Replace(forged, other.Entity().PrimaryKey.Fingerprint, device.Entity().PrimaryKey.Fingerprint, -1)
	kid := other.Entity().PrimaryKey.Fingerprint[12:20] // v4 key id: the low 64 bits
	forged = bytes.Replace(forged, kid, device.Entity().PrimaryKey.Fingerprint[12:20], -1)
	stmtWantBadSig(t, "other key claiming the device as issuer", Verify(st, forged, device))
}

// TestVerifyEditedStatement: once a statement is signed, no field of it
// can change. Each kind lists edits that keep the statement canonical; the
// test checks that together they touch every field line, so a field added
// later without an edit here fails the test.
func TestVerifyEditedStatement(t *testing.T) {
	device := stmtKey(t, "device")
	other := stmtHex("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef")
	cases := []struct {
		orig  stmtMarshaler
		edits []func(stmtMarshaler)
	}{
		{stmtSubmission(), []func(stmtMarshaler){
			func(m stmtMarshaler) { m.(*Submission).User = "someone-else" },
			func(m stmtMarshaler) { m.(*Submission).Submitter = stmtDevice },
			func(m stmtMarshaler) { m.(*Submission).KeyPackets[31] ^= 1 },
			func(m stmtMarshaler) { m.(*Submission).Ciphertext.SHA256[31] ^= 1 },
			func(m stmtMarshaler) { m.(*Submission).Ciphertext.Size++ },
			func(m stmtMarshaler) { m.(*Submission).MetadataSHA256[0] ^= 0x80 },
		}},
		{stmtApproval(), []func(stmtMarshaler){
			func(m stmtMarshaler) { m.(*Approval).Record = "another-record" },
			func(m stmtMarshaler) { m.(*Approval).User = "another-user" },
			func(m stmtMarshaler) { m.(*Approval).Device = stmtSubmitter },
			func(m stmtMarshaler) { m.(*Approval).Submitter = stmtDevice },
			func(m stmtMarshaler) { m.(*Approval).KeyPackets[0] ^= 1 },
			func(m stmtMarshaler) { m.(*Approval).SessionKeyID = other },
			func(m stmtMarshaler) { m.(*Approval).Ciphertext.SHA256[5] ^= 1 },
			func(m stmtMarshaler) { m.(*Approval).Ciphertext.Size-- },
			func(m stmtMarshaler) { m.(*Approval).MetadataSHA256[7] ^= 1 },
			func(m stmtMarshaler) { m.(*Approval).Request = "another-request" },
			func(m stmtMarshaler) { m.(*Approval).Time = m.(*Approval).Time.Add(time.Second) },
		}},
		{stmtRejection(), []func(stmtMarshaler){
			func(m stmtMarshaler) { m.(*Rejection).Record = "another-record" },
			func(m stmtMarshaler) { m.(*Rejection).User = "another-user" },
			func(m stmtMarshaler) { m.(*Rejection).Device = stmtSubmitter },
			func(m stmtMarshaler) { m.(*Rejection).Submitter = stmtDevice },
			func(m stmtMarshaler) { m.(*Rejection).KeyPackets[9] ^= 0x10 },
			func(m stmtMarshaler) { m.(*Rejection).Ciphertext.SHA256[0] ^= 1 },
			func(m stmtMarshaler) { m.(*Rejection).Ciphertext.Size = 0 },
			func(m stmtMarshaler) { m.(*Rejection).MetadataSHA256[31] ^= 1 },
			func(m stmtMarshaler) { m.(*Rejection).Request = "another-request" },
			func(m stmtMarshaler) { m.(*Rejection).Reason = ReasonSessionKeyReused },
			func(m stmtMarshaler) { m.(*Rejection).Time = m.(*Rejection).Time.Add(-time.Hour) },
		}},
		{stmtGrant(), []func(stmtMarshaler){
			func(m stmtMarshaler) { m.(*Grant).Record = "another-record" },
			func(m stmtMarshaler) { m.(*Grant).Grantee = stmtSubmitter },
			func(m stmtMarshaler) { m.(*Grant).KeyPacketSHA256[1] ^= 1 },
			func(m stmtMarshaler) { m.(*Grant).PurposeSHA256[2] ^= 1 },
			func(m stmtMarshaler) { m.(*Grant).Expires = m.(*Grant).Expires.Add(24 * time.Hour) },
			func(m stmtMarshaler) { m.(*Grant).Request = "another-request" },
			func(m stmtMarshaler) { m.(*Grant).Time = m.(*Grant).Time.Add(time.Second) },
		}},
		{stmtChainLinkNext(), []func(stmtMarshaler){
			func(m stmtMarshaler) { m.(*ChainLink).User = "another-user" },
			func(m stmtMarshaler) { m.(*ChainLink).Seq = 2 },
			func(m stmtMarshaler) { m.(*ChainLink).Prev = other },
			func(m stmtMarshaler) { m.(*ChainLink).Action = ActionRevokeDevice },
			func(m stmtMarshaler) { m.(*ChainLink).Action = ActionSetRecovery },
			func(m stmtMarshaler) { m.(*ChainLink).Key = stmtSubmitter },
			func(m stmtMarshaler) { m.(*ChainLink).KeySHA256[4] ^= 1 },
			func(m stmtMarshaler) { m.(*ChainLink).Signer = stmtDevice2 },
			func(m stmtMarshaler) { m.(*ChainLink).Time = m.(*ChainLink).Time.Add(time.Second) },
		}},
		{stmtChainLink(), []func(stmtMarshaler){
			func(m stmtMarshaler) { m.(*ChainLink).User = "another-user" },
			// The first link made into a later one: renumbered and chained.
			func(m stmtMarshaler) { m.(*ChainLink).Seq, m.(*ChainLink).Prev = 1, other },
			func(m stmtMarshaler) { m.(*ChainLink).Action = ActionRemoveRecovery },
			func(m stmtMarshaler) { m.(*ChainLink).Key = stmtDevice2 },
			func(m stmtMarshaler) { m.(*ChainLink).KeySHA256 = stmtDevice2Key },
			func(m stmtMarshaler) { m.(*ChainLink).Signer = stmtDevice2 },
			func(m stmtMarshaler) { m.(*ChainLink).Time = m.(*ChainLink).Time.Add(-time.Second) },
		}},
	}
	for _, tc := range cases {
		st := stmtMarshal(t, tc.orig)
		sig := stmtSign(t, st, device)
		lines := strings.SplitAfter(string(st), "\n")
		touched := make([]bool, len(lines))
		for i, edit := range tc.edits {
			got, err := stmtParseAs(tc.orig, st)
			if err != nil {
				t.Fatal(err)
			}
			edit(got.(stmtMarshaler))
			edited := stmtMarshal(t, got.(stmtMarshaler))
			if bytes.Equal(edited, st) {
				t.Fatalf("%T edit %d changed nothing", tc.orig, i)
			}
			for j, l := range strings.SplitAfter(string(edited), "\n") {
				if j < len(lines) && l != lines[j] {
					touched[j] = true
				}
			}
			stmtWantBadSig(t, "edited field", Verify(edited, sig, device))
		}
		for j, l := range lines[1 : len(lines)-1] {
			if !touched[j+1] {
				t.Errorf("%T: no edit changes the line %q", tc.orig, l)
			}
		}
		// The same decision as the other kind: an approval's signature does
		// not make the rejection of the same record, nor the other way round.
		switch s := tc.orig.(type) {
		case *Approval:
			stmtWantBadSig(t, "approval signature on a rejection", Verify(stmtMarshal(t, stmtRejectionOf(s, ReasonDeclined)), sig, device))
		case *Rejection:
			a := s.Decision()
			a.SessionKeyID = stmtSessionKeyID
			stmtWantBadSig(t, "rejection signature on an approval", Verify(stmtMarshal(t, a), sig, device))
		}
		// Every single flipped bit of the statement, and of the signature
		// (including the parts the signature does not cover: the hash tag
		// and the bit counts of its integers).
		for i := range st {
			for _, bit := range []byte{0x01, 0x80} {
				ed := bytes.Clone(st)
				ed[i] ^= bit
				stmtWantBadSig(t, "flipped statement bit", Verify(ed, sig, device))
			}
		}
		bin := stmtDearmor(t, sig)
		for i := range bin {
			ed := bytes.Clone(bin)
			ed[i] ^= 0x01
			if err := Verify(st, ed, device); !errors.Is(err, ErrBadSignature) {
				t.Errorf("signature with byte %d flipped: %v", i, err)
			}
		}
	}
}

func TestVerifyRefusesSignatureShapes(t *testing.T) {
	device := stmtKey(t, "device")
	st := stmtMarshal(t, stmtApproval())
	sig := stmtSign(t, st, device)
	bin := stmtDearmor(t, sig)
	priv := stmtSigningPriv(t, device)
	now := time.Now()

	var textSig bytes.Buffer
	if err := openpgp.DetachSignText(&textSig, device.Entity(), bytes.NewReader(st), nil); err != nil {
		t.Fatal(err)
	}
	// Sanity: go-crypto itself accepts the text signature.
	if _, err := openpgp.CheckDetachedSignature(openpgp.EntityList{device.Entity()}, bytes.NewReader(st), bytes.NewReader(textSig.Bytes()), nil); err != nil {
		t.Fatalf("text signature does not verify in go-crypto: %v", err)
	}
	second := stmtDearmor(t, stmtSign(t, st, device))
	marker := []byte{0xca, 0x03, 'P', 'G', 'P'} // marker packet, new format

	// Bytes inside the packet after the signature MPIs: bump the length.
	padded := append(bytes.Clone(bin), 0)
	if padded[0] != 0xc2 || padded[1] >= 191 {
		t.Fatalf("unexpected header %x", padded[:2])
	}
	padded[1]++

	// An old-format header with an indeterminate length, and a new-format
	// partial body length (0xe0: a first part of 1<<0 bytes).
	oldIndeterminate := append([]byte{0x8b}, bin[2:]...)
	partial := append([]byte{0xc2, 0xe0}, bin[2:]...)

	cases := []struct {
		name      string
		sig       []byte
		malformed bool // also envelope.ErrMalformed
	}{
		{"empty", nil, true},
		{"garbage", []byte("this is not a signature"), true},
		{"zero bytes", make([]byte, 64), true},
		{"text-mode signature (0x01)", textSig.Bytes(), false},
		{"text-mode signature armored", stmtArmor(t, textSig.Bytes()), false},
		{"two signature packets", append(bytes.Clone(bin), second...), true},
		{"two signature packets armored", stmtArmor(t, append(bytes.Clone(bin), second...)), true},
		{"trailing marker packet", append(bytes.Clone(bin), marker...), true},
		{"leading marker packet", append(bytes.Clone(marker), bin...), true},
		{"trailing byte", append(bytes.Clone(bin), 0), true},
		{"bytes after the MPIs inside the packet", padded, true},
		{"two armor blocks", append(bytes.Clone(sig), sig...), true},
		{"text after armor", append(bytes.Clone(sig), "hello\n"...), true},
		{"armor without end", sig[:bytes.Index(sig, []byte("-----END"))], true},
		{"armor of a message", bytes.ReplaceAll(sig, []byte("SIGNATURE"), []byte("MESSAGE")), true},
		{"armor of a key", device.Armor(), true},
		{"armor with bad base64", bytes.Replace(sig, []byte("\n\n"), []byte("\n\n!!!!"), 1), true},
		{"old format indeterminate length", oldIndeterminate, true},
		{"partial body length", partial, true},
		{"SHA-1", stmtRawSign(t, priv, st, now, func(s *packet.Signature) { s.Hash = crypto.SHA1 }), false},
		{"SHA-224", stmtRawSign(t, priv, st, now, func(s *packet.Signature) { s.Hash = crypto.SHA224 }), false},
		{"SHA3-256", stmtRawSign(t, priv, st, now, func(s *packet.Signature) { s.Hash = crypto.SHA3_256 }), false},
		{"created in the future", stmtRawSign(t, priv, st, now.Add(time.Hour), nil), false},
		{"created before the key", stmtRawSign(t, priv, st, device.Entity().PrimaryKey.CreationTime.Add(-time.Hour), nil), false},
		{"expired", stmtRawSign(t, priv, st, now.Add(-time.Minute), func(s *packet.Signature) { l := uint32(10); s.SigLifetimeSecs = &l }), false},
		{"critical notation", stmtRawSign(t, priv, st, now, func(s *packet.Signature) {
			s.Notations = []*packet.Notation{{Name: "policy@example.org", Value: []byte("x"), IsCritical: true, IsHumanReadable: true}}
		}), false},
		{"standalone signature type (0x02)", stmtRawSign(t, priv, st, now, func(s *packet.Signature) { s.SigType = 0x02 }), false},
		{"direct-key signature type", stmtRawSign(t, priv, st, now, func(s *packet.Signature) { s.SigType = packet.SigTypeDirectSignature }), false},
	}
	for _, tc := range cases {
		err := Verify(st, tc.sig, device)
		t.Logf("%s: %v", tc.name, err)
		if tc.malformed {
			stmtWantBadSig(t, tc.name, err, envelope.ErrMalformed)
		} else {
			stmtWantBadSig(t, tc.name, err)
		}
	}
	// Every truncation of a valid signature fails.
	for n := 0; n < len(bin); n++ {
		stmtWantBadSig(t, "truncated binary", Verify(st, bin[:n], device))
	}
	for n := 0; n < len(sig)-len("-----END PGP SIGNATURE-----\n"); n += 7 {
		stmtWantBadSig(t, "truncated armor", Verify(st, sig[:n], device))
	}
	// Oversized input is refused before parsing.
	stmtWantBadSig(t, "huge", Verify(st, bytes.Repeat([]byte{0xc2}, 1<<20), device), envelope.ErrMalformed)

	// Within the allowed clock skew, and with SHA-512, a signature is fine.
	for name, s := range map[string][]byte{
		"a minute ahead": stmtRawSign(t, priv, st, now.Add(time.Minute), nil),
		"SHA-512":        stmtRawSign(t, priv, st, now, func(s *packet.Signature) { s.Hash = crypto.SHA512 }),
		"SHA-384":        stmtRawSign(t, priv, st, now, func(s *packet.Signature) { s.Hash = crypto.SHA384 }),
		"old header":     append([]byte{0x88, bin[1]}, bin[2:]...),
		// RFC 9580 section 6.1: a wrong armor checksum must not make the
		// object rejected; the signature inside decides.
		"bad armor checksum": stmtBadChecksum(t, sig),
		"long lifetime":      stmtRawSign(t, priv, st, now, func(s *packet.Signature) { l := uint32(3600); s.SigLifetimeSecs = &l }),
	} {
		if err := Verify(st, s, device); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// stmtBadChecksum changes the CRC-24 line of an armored block.
func stmtBadChecksum(t testing.TB, sig []byte) []byte {
	t.Helper()
	lines := strings.Split(string(sig), "\n")
	for i, l := range lines {
		if strings.HasPrefix(l, "=") && len(l) == 5 {
			b := []byte(l)
			if b[1] == 'A' {
				b[1] = 'B'
			} else {
				b[1] = 'A'
			}
			lines[i] = string(b)
			return []byte(strings.Join(lines, "\n"))
		}
	}
	t.Fatal("no checksum line in armor")
	return nil
}

func TestVerifyIssuer(t *testing.T) {
	device, other := stmtKey(t, "device"), stmtKey(t, "other")
	st := stmtMarshal(t, stmtApproval())
	priv := stmtSigningPriv(t, device)
	bin := stmtRawSign(t, priv, st, time.Now(), nil)
	if err := Verify(st, stmtRebuildV4(t, bin, nil, nil), device); err != nil {
		t.Fatalf("stmtRebuildV4 broke a signature: %v", err)
	}

	// Only the key id, as older tools write it: the hashed fingerprint is
	// gone (so the math fails), but the issuer check passes.
	err := Verify(st, stmtRebuildV4(t, bin, stmtDropTypes(33), nil), device)
	stmtWantBadSig(t, "key id only, edited", err)
	if err != nil && !strings.Contains(err.Error(), "does not match the statement") {
		t.Errorf("key-id-only issuer not matched: %v", err)
	}

	// No issuer subpacket at all.
	err = Verify(st, stmtRebuildV4(t, bin, stmtDropTypes(16, 33), nil), device)
	stmtWantBadSig(t, "no issuer", err)
	if err != nil && !strings.Contains(err.Error(), "issuer") {
		t.Errorf("no-issuer error does not say so: %v", err)
	}

	// An unhashed (unsigned) issuer key id naming another key, next to the
	// signed fingerprint of the device: every issuer field must agree.
	otherID := stmtU64(other.Entity().PrimaryKey.KeyId)
	mixed := stmtRebuildV4(t, bin, nil, func(l []stmtSubpkt) []stmtSubpkt { return append(l, stmtSubpkt{16, otherID}) })
	stmtWantBadSig(t, "issuer key id of another key", Verify(st, mixed, device))
	// The same with the device's own key id in the unhashed area is fine.
	ownID := stmtU64(device.Entity().PrimaryKey.KeyId)
	if err := Verify(st, stmtRebuildV4(t, bin, nil, func(l []stmtSubpkt) []stmtSubpkt { return append(l, stmtSubpkt{16, ownID}) }), device); err != nil {
		t.Errorf("unhashed issuer key id of the signer: %v", err)
	}

	// Nothing but issuer hints may sit in the unsigned area.
	notation := stmtRebuildV4(t, bin, nil, func(l []stmtSubpkt) []stmtSubpkt {
		return append(l, stmtSubpkt{20, []byte{0x80, 0, 0, 0, 0, 1, 0, 1, 'a', 'b'}})
	})
	err = Verify(st, notation, device)
	stmtWantBadSig(t, "unsigned notation", err)
	if err != nil && !strings.Contains(err.Error(), "unsigned subpacket of type 20") {
		t.Errorf("unsigned notation: %v", err)
	}

	// issuedBy, directly.
	pub := &priv.PublicKey
	keyID := pub.KeyId
	otherKeyID := other.Entity().PrimaryKey.KeyId
	for _, tc := range []struct {
		name string
		sig  packet.Signature
		want bool
	}{
		{"key id", packet.Signature{IssuerKeyId: &keyID}, true},
		{"fingerprint", packet.Signature{IssuerKeyVersion: 4, IssuerFingerprint: pub.Fingerprint}, true},
		{"both", packet.Signature{IssuerKeyId: &keyID, IssuerKeyVersion: 4, IssuerFingerprint: pub.Fingerprint}, true},
		{"none", packet.Signature{}, false},
		{"other key id", packet.Signature{IssuerKeyId: &otherKeyID}, false},
		{"other key id, own fingerprint", packet.Signature{IssuerKeyId: &otherKeyID, IssuerKeyVersion: 4, IssuerFingerprint: pub.Fingerprint}, false},
		{"own key id, other fingerprint", packet.Signature{IssuerKeyId: &keyID, IssuerKeyVersion: 4, IssuerFingerprint: other.Entity().PrimaryKey.Fingerprint}, false},
		{"wrong key version", packet.Signature{IssuerKeyVersion: 6, IssuerFingerprint: pub.Fingerprint}, false},
	} {
		if got := issuedBy(&tc.sig, pub); got != tc.want {
			t.Errorf("issuedBy %s = %v, want %v", tc.name, got, tc.want)
		}
	}
}

func stmtU64(v uint64) []byte {
	return []byte{byte(v >> 56), byte(v >> 48), byte(v >> 40), byte(v >> 32), byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)}
}

func TestVerifyKeyValidity(t *testing.T) {
	st := stmtMarshal(t, stmtApproval())
	now := time.Now()

	// A key that expired an hour after it was made, two hours ago.
	born := now.Add(-2 * time.Hour)
	expiring := stmtEntityKey(t, &packet.Config{
		Algorithm: packet.PubKeyAlgoEdDSA, Curve: packet.Curve25519,
		Time: func() time.Time { return born }, KeyLifetimeSecs: 3600,
	})
	priv := expiring.Entity().PrivateKey
	if err := Verify(st, stmtRawSign(t, priv, st, born.Add(30*time.Minute), nil), expiring); err != nil {
		t.Errorf("signature made while the key was valid: %v", err)
	}
	stmtWantBadSig(t, "signature made after the key expired", Verify(st, stmtRawSign(t, priv, st, now, nil), expiring))
	if _, err := Sign(st, expiring); err == nil {
		t.Error("expired key signed")
	}

	// A key retired (superseded) ten minutes ago: older signatures stand,
	// newer ones do not.
	retired := stmtEntityKey(t, &packet.Config{Algorithm: packet.PubKeyAlgoEdDSA, Curve: packet.Curve25519,
		Time: func() time.Time { return now.Add(-time.Hour) }})
	rpriv := retired.Entity().PrivateKey
	before := stmtRawSign(t, rpriv, st, now.Add(-30*time.Minute), nil)
	if err := retired.Entity().RevokeKey(packet.KeySuperseded, "new phone", &packet.Config{Time: func() time.Time { return now.Add(-10 * time.Minute) }}); err != nil {
		t.Fatal(err)
	}
	if err := Verify(st, before, retired); err != nil {
		t.Errorf("signature made before a soft revocation: %v", err)
	}
	stmtWantBadSig(t, "signature made after revocation", Verify(st, stmtRawSign(t, rpriv, st, now, nil), retired))

	// A key revoked as compromised: no signature stands.
	stolen := stmtEntityKey(t, &packet.Config{Algorithm: packet.PubKeyAlgoEdDSA, Curve: packet.Curve25519,
		Time: func() time.Time { return now.Add(-time.Hour) }})
	old := stmtRawSign(t, stolen.Entity().PrivateKey, st, now.Add(-30*time.Minute), nil)
	if err := stolen.Entity().RevokeKey(packet.KeyCompromised, "lost phone", nil); err != nil {
		t.Fatal(err)
	}
	stmtWantBadSig(t, "signature by a compromised key", Verify(st, old, stolen))

	// A primary key whose flags do not allow signing cannot sign
	// statements, even if the math checks out.
	certOnly := stmtKey(t, "cert-only")
	self, _ := certOnly.Entity().PrimarySelfSignature()
	self.FlagSign = false
	stmtWantBadSig(t, "primary without the sign flag", Verify(st, stmtRawSign(t, certOnly.Entity().PrivateKey, st, now, nil), certOnly))
}

func TestVerifyKeyTypes(t *testing.T) {
	st := stmtMarshal(t, stmtGrant())
	// A key with a separate signing subkey: Sign uses the subkey, and
	// Verify accepts it on behalf of the primary key.
	withSub := stmtKey(t, "subkey")
	if err := withSub.Entity().AddSigningSubkey(&packet.Config{Algorithm: packet.PubKeyAlgoEdDSA, Curve: packet.Curve25519}); err != nil {
		t.Fatal(err)
	}
	sig := stmtSign(t, st, withSub)
	p, _ := packet.Read(bytes.NewReader(stmtDearmor(t, sig)))
	if bytes.Equal(p.(*packet.Signature).IssuerFingerprint, withSub.Entity().PrimaryKey.Fingerprint) {
		t.Error("signature was made by the primary key, not the signing subkey")
	}
	if err := Verify(st, sig, withSub); err != nil {
		t.Errorf("subkey signature: %v", err)
	}
	if err := Verify(st, sig, withSub.Public()); err != nil {
		t.Errorf("subkey signature, public key: %v", err)
	}
	stmtWantBadSig(t, "subkey signature checked against another key", Verify(st, sig, stmtKey(t, "other")))

	// A revoked signing subkey no longer counts.
	sub := &withSub.Entity().Subkeys[len(withSub.Entity().Subkeys)-1]
	if err := withSub.Entity().RevokeSubkey(sub, packet.KeyCompromised, "", nil); err != nil {
		t.Fatal(err)
	}
	stmtWantBadSig(t, "revoked signing subkey", Verify(st, sig, withSub))

	for name, cfg := range map[string]*packet.Config{
		"ECDSA P-256": {Algorithm: packet.PubKeyAlgoECDSA, Curve: packet.CurveNistP256},
		"ECDSA P-384": {Algorithm: packet.PubKeyAlgoECDSA, Curve: packet.CurveNistP384},
		"v6 Ed25519":  {Algorithm: packet.PubKeyAlgoEd25519, V6Keys: true},
	} {
		k := stmtEntityKey(t, cfg)
		sig := stmtSign(t, st, k)
		if err := Verify(st, sig, k); err != nil {
			t.Errorf("%s: %v", name, err)
		}
		p, _ := packet.Read(bytes.NewReader(stmtDearmor(t, sig)))
		if h := p.(*packet.Signature).Hash; name == "ECDSA P-384" && h != crypto.SHA384 {
			t.Errorf("%s: signed with %v", name, h)
		}
		stmtWantBadSig(t, name+" edited", Verify(append(bytes.Clone(st[:len(st)-2]), "1\n"...), sig, k))
		stmtWantBadSig(t, name+" other key", Verify(st, sig, stmtKey(t, "x")))
	}
}

func TestVerifyNonCanonicalStatement(t *testing.T) {
	device := stmtKey(t, "device")
	msg := []byte("I, the device, approve everything.\n")
	sig := stmtRawSign(t, stmtSigningPriv(t, device), msg, time.Now(), nil)
	// The signature is cryptographically fine, but the text is no statement.
	stmtWantBadSig(t, "signature over a non-statement", Verify(msg, sig, device), ErrStatement)
}

// TestVerifyGnuPGFixture checks signatures that GnuPG 2.2 made (see
// testdata/statements/make-gnupg-fixture.sh), without needing gpg: an
// old-format binary signature and its armored form.
func TestVerifyGnuPGFixture(t *testing.T) {
	read := func(name string) []byte { return stmtTestdata(t, name) }
	party, err := envelope.ParseKey(read("gnupg-party.asc"))
	if err != nil {
		t.Fatal(err)
	}
	st := read("gnupg-submission.txt")
	s, err := ParseSubmission(st)
	if err != nil {
		t.Fatal(err)
	}
	if s.Submitter != party.Fingerprint() {
		t.Fatalf("fixture names %s, key is %s", s.Submitter, party.Fingerprint())
	}
	for _, name := range []string{"gnupg-submission.txt.asc", "gnupg-submission.txt.sig"} {
		sig := read(name)
		if err := Verify(st, sig, party); err != nil {
			t.Errorf("%s: %v", name, err)
		}
		stmtWantBadSig(t, name+" with another key", Verify(st, sig, stmtKey(t, "device")))
		if name == "gnupg-submission.txt.sig" {
			// GnuPG puts the issuer key id in the unsigned area: no bit of
			// it, or of anything else, can change without failing.
			for i := range sig {
				for _, bit := range []byte{0x01, 0x10} {
					ed := bytes.Clone(sig)
					ed[i] ^= bit
					stmtWantBadSig(t, "flipped GnuPG signature bit", Verify(st, ed, party))
				}
			}
		}
		s2 := *s
		s2.Ciphertext.Size++
		stmtWantBadSig(t, name+" edited", Verify(stmtMarshal(t, &s2), sig, party))
	}
}

// BenchmarkStatementSign and BenchmarkStatementVerify measure statement
// signatures with a Keyholder key (v4 EdDSA) and a NIST P-256 key.
func BenchmarkStatementSign(b *testing.B) {
	st := stmtMarshal(b, stmtApproval())
	for _, name := range []string{"EdDSA", "P-256"} {
		k := stmtBenchKey(b, name)
		b.Run(name, func(b *testing.B) {
			for b.Loop() {
				if _, err := Sign(st, k); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkStatementVerify(b *testing.B) {
	st := stmtMarshal(b, stmtApproval())
	for _, name := range []string{"EdDSA", "P-256"} {
		k := stmtBenchKey(b, name)
		sig := stmtSign(b, st, k)
		pub := k.Public()
		b.Run(name, func(b *testing.B) {
			for b.Loop() {
				if err := Verify(st, sig, pub); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func stmtBenchKey(b *testing.B, name string) *envelope.Key {
	if name == "P-256" {
		return stmtEntityKey(b, &packet.Config{Algorithm: packet.PubKeyAlgoECDSA, Curve: packet.CurveNistP256})
	}
	return stmtKey(b, "device")
}
