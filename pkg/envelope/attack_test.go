package envelope

// Tests as attacks: each one hands pkg/envelope a message an adversary could
// make (a server serving tampered bytes, a submitter crafting odd packets, a
// party replaying key packets) and asserts the specific error, checked with
// errors.Is. The invariant behind all of them: plaintext never comes out
// wrong silently.

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/packet"
)

var allProfiles = []Profile{Compat, Modern}

// testKeys are generated once per test binary: key generation is cheap for
// Cv25519, but the tests make many messages.
var testKeys = sync.OnceValue(func() map[string]*Key {
	m := map[string]*Key{}
	for _, name := range []string{"device", "device2", "recovery", "party", "stranger"} {
		k, err := GenerateKey(name)
		if err != nil {
			panic(err)
		}
		m[name] = k
	}
	return m
})

func namedKey(name string) *Key { return testKeys()[name] }

func noise(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

// splitParts splits msg and returns its raw key packets and its data packet.
func splitParts(t testing.TB, msg []byte) (*Message, []byte) {
	t.Helper()
	m, err := Split(bytes.NewReader(msg))
	if err != nil {
		t.Fatalf("split: %v", err)
	}
	data, err := io.ReadAll(m.Data)
	if err != nil {
		t.Fatalf("draining data: %v", err)
	}
	return m, data
}

// openAll opens msg and reads all of its plaintext. The error is the first
// one met, at Split, Open or Read.
func openAll(msg []byte, ids ...*Key) ([]byte, error) {
	r, err := Open(bytes.NewReader(msg), ids...)
	if err != nil {
		return nil, err
	}
	return io.ReadAll(r)
}

func concat(parts ...[]byte) []byte {
	var out []byte
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

func flipBit(b []byte, bit int) []byte {
	c := bytes.Clone(b)
	c[bit/8] ^= 1 << (bit % 8)
	return c
}

// --- an independent packet framer, so tests do not trust split.go ---

// unframe decodes the first packet of b, old or new format, following
// partial body lengths, and returns its tag, body and the bytes after it.
func unframe(t testing.TB, b []byte) (tag byte, body, rest []byte) {
	t.Helper()
	if len(b) == 0 || b[0]&0x80 == 0 {
		t.Fatalf("unframe: no packet header in % x", b[:min(len(b), 8)])
	}
	if b[0]&0x40 == 0 {
		tag = (b[0] >> 2) & 0xf
		var n, l int
		switch b[0] & 3 {
		case 0:
			n, l = 1, int(b[1])
		case 1:
			n, l = 2, int(binary.BigEndian.Uint16(b[1:]))
		case 2:
			n, l = 4, int(binary.BigEndian.Uint32(b[1:]))
		case 3:
			return tag, b[1:], nil
		}
		return tag, b[1+n : 1+n+l], b[1+n+l:]
	}
	tag = b[0] & 0x3f
	b = b[1:]
	for {
		var l, n int
		partial := false
		switch {
		case b[0] < 192:
			l, n = int(b[0]), 1
		case b[0] < 224:
			l, n = (int(b[0])-192)<<8+int(b[1])+192, 2
		case b[0] < 255:
			l, n, partial = 1<<(b[0]&0x1f), 1, true
		default:
			l, n = int(binary.BigEndian.Uint32(b[1:])), 5
		}
		body = append(body, b[n:n+l]...)
		b = b[n+l:]
		if !partial {
			return tag, body, b
		}
	}
}

// newLen encodes a new-format definite body length in the given number of
// octets (1, 2 or 5); 0 picks the shortest.
func newLen(n, octets int) []byte {
	if octets == 0 {
		switch {
		case n < 192:
			octets = 1
		case n < 8384:
			octets = 2
		default:
			octets = 5
		}
	}
	switch octets {
	case 1:
		return []byte{byte(n)}
	case 2:
		n -= 192
		return []byte{byte(n>>8) + 192, byte(n)}
	}
	return []byte{255, byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n)}
}

// frameNew writes a new-format packet with a definite length of the given
// octet count.
func frameNew(tag byte, body []byte, octets int) []byte {
	return concat([]byte{0xc0 | tag}, newLen(len(body), octets), body)
}

// framePartial writes a new-format packet in partial body chunks of 1<<p
// octets for each p in powers (cycling), ending with a definite length.
func framePartial(tag byte, body []byte, powers ...int) []byte {
	out := []byte{0xc0 | tag}
	for i := 0; ; i++ {
		p := powers[i%len(powers)]
		if len(body) <= 1<<p {
			return concat(out, newLen(len(body), 0), body)
		}
		out = append(out, 224+byte(p))
		out = append(out, body[:1<<p]...)
		body = body[1<<p:]
	}
}

// frameOld writes an old-format packet with a 1, 2 or 4 octet length, or
// an indeterminate length (octets 0).
func frameOld(tag byte, body []byte, octets int) []byte {
	switch octets {
	case 1:
		return concat([]byte{0x80 | tag<<2, byte(len(body))}, body)
	case 2:
		return concat([]byte{0x80 | tag<<2 | 1, byte(len(body) >> 8), byte(len(body))}, body)
	case 4:
		return concat([]byte{0x80 | tag<<2 | 2}, binary.BigEndian.AppendUint32(nil, uint32(len(body))), body)
	}
	return concat([]byte{0x80 | tag<<2 | 3}, body)
}

// sealInner builds PKESK(s) || SEIPD whose decrypted content is exactly
// inner (raw packets chosen by the test), as a submitter holding the session
// key could. chunk is the SEIPDv2 chunk size (0: default).
func sealInner(t testing.TB, profile Profile, inner []byte, chunk uint64, to ...*Key) []byte {
	t.Helper()
	sk := noise(32)
	aead := profile == Modern
	cfg := &packet.Config{AEADConfig: &packet.AEADConfig{DefaultMode: packet.AEADModeGCM, ChunkSize: chunk}}
	var buf bytes.Buffer
	for _, k := range to {
		pub, err := k.encryptionKey()
		if err != nil {
			t.Fatal(err)
		}
		if err := packet.SerializeEncryptedKeyAEAD(&buf, pub, packet.CipherAES256, aead, sk, cfg); err != nil {
			t.Fatal(err)
		}
	}
	w, err := packet.SerializeSymmetricallyEncrypted(&buf, packet.CipherAES256, aead,
		packet.CipherSuite{Cipher: packet.CipherAES256, Mode: packet.AEADModeGCM}, sk, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(inner); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// literal returns a binary literal data packet holding p.
func literalPacket(p []byte) []byte {
	return frameNew(tagLiteral, concat([]byte{'b', 0, 0, 0, 0, 0}, p), 0)
}

// --- round trips ---

func TestRoundTripSeveralRecipients(t *testing.T) {
	devices := []*Key{namedKey("device"), namedKey("device2"), namedKey("recovery")}
	party := namedKey("party")
	for _, profile := range allProfiles {
		for _, size := range []int{0, 1, 100, 2<<20 + 5} {
			t.Run(fmt.Sprintf("%s/%d", profile, size), func(t *testing.T) {
				plaintext := noise(size)
				msg, digest := seal(t, profile, plaintext, devices[0].Public(), devices[1].Public(), devices[2].Public())
				m, data := splitParts(t, msg)
				if len(m.KeyPackets) != 3 || m.Profile() != profile {
					t.Fatalf("split: %d key packets, profile %s", len(m.KeyPackets), m.Profile())
				}
				if !bytes.Equal(concat(keyPacketBytes(m.KeyPackets), data), msg) {
					t.Fatal("key packets || data is not the message")
				}
				d := NewDigester()
				d.Write(data)
				if d.Digest() != digest {
					t.Fatal("split data digest differs from SealWriter.Digest")
				}
				for i, dev := range devices {
					if !m.KeyPackets[i].For(dev) || m.KeyPackets[i].For(party) {
						t.Fatalf("key packet %d: For is wrong", i)
					}
					got, err := openAll(msg, dev)
					if err != nil || !bytes.Equal(got, plaintext) {
						t.Fatalf("device %d: open: %v (plaintext equal: %v)", i, err, bytes.Equal(got, plaintext))
					}
					if err := CanOpen(m.KeyPackets[i], profile, dev); err != nil {
						t.Fatalf("device %d: CanOpen: %v", i, err)
					}
					pkesk, err := Rewrap(m.KeyPackets[i], profile, dev, party.Public())
					if err != nil {
						t.Fatalf("device %d: rewrap: %v", i, err)
					}
					kp, err := ParseKeyPacket(pkesk)
					if err != nil || kp.Version != profile.keyPacketVersion() || !kp.For(party) {
						t.Fatalf("device %d: rewrapped packet: %v %+v", i, err, kp)
					}
					got, err = openAll(concat(pkesk, data), party)
					if err != nil || !bytes.Equal(got, plaintext) {
						t.Fatalf("device %d: party open: %v", i, err)
					}
				}
				// Open tries the identities in turn and the key packets in turn.
				got, err := openAll(msg, party, devices[2])
				if err != nil || !bytes.Equal(got, plaintext) {
					t.Fatalf("open with [party, recovery]: %v", err)
				}
			})
		}
	}
}

func TestSealRefusesBadInput(t *testing.T) {
	var buf bytes.Buffer
	if _, err := Seal(&buf, Compat); err == nil {
		t.Fatal("Seal with no recipients succeeded")
	}
	if _, err := Seal(&buf, Profile("fast"), namedKey("device")); err == nil {
		t.Fatal("Seal with an unknown profile succeeded")
	}
	if _, err := ParseProfile("Compat"); err == nil {
		t.Fatal("ParseProfile is not case-sensitive")
	}
	w, err := Seal(&buf, Compat, namedKey("device"))
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write([]byte("x")); err == nil {
		t.Fatal("Write after Close succeeded")
	}
}

// --- wrong keys ---

func TestWrongKey(t *testing.T) {
	device, stranger := namedKey("device"), namedKey("stranger")
	for _, profile := range allProfiles {
		t.Run(string(profile), func(t *testing.T) {
			msg, _ := seal(t, profile, []byte("secret"), device)
			m, data := splitParts(t, msg)
			kp := m.KeyPackets[0]

			if _, err := openAll(msg, stranger); !errors.Is(err, ErrNoMatchingKey) {
				t.Errorf("open with a stranger's key: %v, want ErrNoMatchingKey", err)
			}
			if _, err := openAll(msg); !errors.Is(err, ErrNoMatchingKey) {
				t.Errorf("open with no key: %v, want ErrNoMatchingKey", err)
			}
			if _, err := Rewrap(kp, profile, stranger, namedKey("party")); !errors.Is(err, ErrNoMatchingKey) {
				t.Errorf("rewrap with a stranger's key: %v, want ErrNoMatchingKey", err)
			}
			if err := CanOpen(kp, profile, stranger); !errors.Is(err, ErrNoMatchingKey) {
				t.Errorf("CanOpen with a stranger's key: %v, want ErrNoMatchingKey", err)
			}
			if _, err := openAll(msg, device.Public()); !errors.Is(err, ErrNoPrivateKey) {
				t.Errorf("open with a public key: %v, want ErrNoPrivateKey", err)
			}
			if _, err := Rewrap(kp, profile, device.Public(), namedKey("party")); !errors.Is(err, ErrNoPrivateKey) {
				t.Errorf("rewrap with a public key: %v, want ErrNoPrivateKey", err)
			}

			// Readdress the packet to the stranger: it names the stranger's
			// key, which cannot decrypt it.
			forged := readdress(t, kp, device, stranger)
			if _, err := Rewrap(forged, profile, stranger, namedKey("party")); !errors.Is(err, ErrWrongKey) {
				t.Errorf("rewrap of a readdressed packet: %v, want ErrWrongKey", err)
			}
			if _, err := openAll(concat(forged.Raw, data), stranger); !errors.Is(err, ErrWrongKey) {
				t.Errorf("open of a readdressed packet: %v, want ErrWrongKey", err)
			}

			// SessionKeyID answers what CanOpen answers, and gives no id.
			for _, c := range []struct {
				what string
				kp   *KeyPacket
				key  *Key
				want error
			}{
				{"a stranger's key", kp, stranger, ErrNoMatchingKey},
				{"a public key", kp, device.Public(), ErrNoPrivateKey},
				{"a readdressed packet", forged, stranger, ErrWrongKey},
			} {
				if id, err := SessionKeyID(c.kp, profile, c.key); !errors.Is(err, c.want) || id != ([32]byte{}) {
					t.Errorf("SessionKeyID with %s: %x, %v; want no id and %v", c.what, id, err, c.want)
				}
			}
		})
	}
}

// readdress returns a copy of kp, a key packet addressed to from, that
// names to as its recipient instead; to's key cannot decrypt it.
func readdress(t testing.TB, kp *KeyPacket, from, to *Key) *KeyPacket {
	t.Helper()
	tpub, _ := to.encryptionKey()
	fpub, _ := from.encryptionKey()
	raw := bytes.Clone(kp.Raw)
	var old, repl []byte
	if kp.Version == 3 {
		old, repl = binary.BigEndian.AppendUint64(nil, fpub.KeyId), binary.BigEndian.AppendUint64(nil, tpub.KeyId)
	} else {
		old, repl = fpub.Fingerprint, tpub.Fingerprint
	}
	i := bytes.Index(raw, old)
	if i < 0 {
		t.Fatal("recipient not found in key packet")
	}
	copy(raw[i:], repl)
	forged, err := ParseKeyPacket(raw)
	if err != nil || !forged.For(to) {
		t.Fatalf("forged key packet: %v", err)
	}
	return forged
}

func TestLockedKey(t *testing.T) {
	device := namedKey("device")
	armored, err := device.MarshalPrivate([]byte("pw"), S2KIterated)
	if err != nil {
		t.Fatal(err)
	}
	locked, err := ParseKey(armored)
	if err != nil {
		t.Fatal(err)
	}
	msg, _ := seal(t, Compat, []byte("x"), device)
	m, _ := splitParts(t, msg)
	if _, err := Rewrap(m.KeyPackets[0], Compat, locked, namedKey("party")); !errors.Is(err, ErrKeyLocked) {
		t.Errorf("rewrap with a locked key: %v, want ErrKeyLocked", err)
	}
	if _, err := openAll(msg, locked); !errors.Is(err, ErrKeyLocked) {
		t.Errorf("open with a locked key: %v, want ErrKeyLocked", err)
	}
	if id, err := SessionKeyID(m.KeyPackets[0], Compat, locked); !errors.Is(err, ErrKeyLocked) || id != ([32]byte{}) {
		t.Errorf("SessionKeyID with a locked key: %x, %v; want no id and ErrKeyLocked", id, err)
	}
}

// --- tampering ---

// checkTampered asserts that a tampered message fails somewhere, with an
// error from the package: at Split, at Open, or while reading with
// ErrIntegrity or ErrMalformed.
func checkTampered(t *testing.T, what string, msg, plaintext []byte, ids ...*Key) {
	t.Helper()
	m, err := Split(bytes.NewReader(msg))
	if err != nil {
		if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrUnsupported) && !errors.Is(err, ErrProfileMismatch) {
			t.Errorf("%s: split: unexpected error %v", what, err)
		}
		return
	}
	r, err := m.Open(ids...)
	if err != nil {
		if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrUnsupported) && !errors.Is(err, ErrIntegrity) &&
			!errors.Is(err, ErrNoMatchingKey) && !errors.Is(err, ErrWrongKey) {
			t.Errorf("%s: open: unexpected error %v", what, err)
		}
		return
	}
	got, err := io.ReadAll(r)
	if err != nil {
		if !errors.Is(err, ErrIntegrity) && !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: read: error %v does not wrap ErrIntegrity or ErrMalformed", what, err)
		}
		return
	}
	if !bytes.Equal(got, plaintext) {
		t.Errorf("%s: WRONG PLAINTEXT returned without error", what)
	} else {
		// Even a flip that leaves the session key intact must fail: key
		// packets are parsed canonically, so each has one encoding.
		t.Errorf("%s: tampered message opened without error", what)
	}
}

func TestBitFlips(t *testing.T) {
	device := namedKey("device")
	for _, profile := range allProfiles {
		for _, size := range []int{0, 5000, 300 << 10} { // 300 KiB spans two SEIPDv2 chunks
			if profile == Compat && size > 5000 {
				continue // SEIPDv1 has no chunks; keep the test fast
			}
			t.Run(fmt.Sprintf("%s/%d", profile, size), func(t *testing.T) {
				plaintext := noise(size)
				msg, _ := seal(t, profile, plaintext, device)
				m, data := splitParts(t, msg)
				kpLen := len(m.KeyPackets[0].Raw)
				_, body, _ := unframe(t, data)
				hdrLen := len(data) - len(body) // header plus partial length octets
				var positions []int
				// Every byte of the key packet and of the first 80 bytes of the
				// data packet (header, version, AEAD header and salt or IV).
				for i := 0; i < kpLen+80 && i < len(msg); i++ {
					positions = append(positions, i)
				}
				// The last 80 bytes: MDC packet or final chunk and tags.
				for i := max(len(msg)-80, kpLen+80); i < len(msg); i++ {
					positions = append(positions, i)
				}
				// A sample of the body in between.
				for i := 0; i < 40 && len(msg) > kpLen+160; i++ {
					positions = append(positions, kpLen+80+mrand.IntN(len(msg)-kpLen-160))
				}
				for _, pos := range positions {
					for bit := 0; bit < 8; bit++ {
						sampled := pos > kpLen+80 && pos < len(msg)-80
						if (sampled || size > 5000 && pos >= kpLen) && bit != mrand.IntN(8) {
							continue // about one random bit per byte: keep the test fast
						}
						what := fmt.Sprintf("bit %d of byte %d/%d (key packet %d, data header ~%d)", bit, pos, len(msg), kpLen, hdrLen)
						checkTampered(t, what, flipBit(msg, pos*8+bit), plaintext, device)
					}
				}
			})
		}
	}
}

func TestTamperedRewrappedRecord(t *testing.T) {
	// The party's view: a server flips bits in the stored data packet.
	device, party := namedKey("device"), namedKey("party")
	for _, profile := range allProfiles {
		plaintext := noise(1000)
		msg, _ := seal(t, profile, plaintext, device)
		m, data := splitParts(t, msg)
		pkesk, err := Rewrap(m.KeyPackets[0], profile, device, party)
		if err != nil {
			t.Fatal(err)
		}
		for _, pos := range []int{len(pkesk), len(pkesk) + 3, len(pkesk) + len(data)/2, len(pkesk) + len(data) - 1} {
			checkTampered(t, fmt.Sprintf("%s: byte %d", profile, pos), flipBit(concat(pkesk, data), pos*8), plaintext, party)
		}
	}
}

func TestTruncated(t *testing.T) {
	device := namedKey("device")
	for _, profile := range allProfiles {
		plaintext := noise(70000)
		msg, _ := seal(t, profile, plaintext, device)
		m, data := splitParts(t, msg)
		kpLen := len(m.KeyPackets[0].Raw)
		cuts := []int{0, 1, kpLen - 1, kpLen, kpLen + 1, kpLen + 2, kpLen + 40, len(msg) / 2,
			len(msg) - 23, len(msg) - 22, len(msg) - 21, len(msg) - 17, len(msg) - 16, len(msg) - 1}
		for _, cut := range cuts {
			got, err := openAll(msg[:cut], device)
			if err == nil {
				t.Errorf("%s: message cut at %d/%d opened (%d bytes)", profile, cut, len(msg), len(got))
			} else if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrIntegrity) {
				t.Errorf("%s: cut at %d: %v, want ErrMalformed or ErrIntegrity", profile, cut, err)
			}
		}
		// Cut the body but rewrite the header so the framing is consistent:
		// only the MDC or the AEAD tags can catch it.
		_, body, _ := unframe(t, data)
		for _, n := range []int{len(body) - 1, len(body) - 16, len(body) - 22, len(body) - 23, len(body) / 2, 60} {
			short := concat(m.KeyPackets[0].Raw, frameNew(tagSEIPD, body[:n], 5))
			if _, err := openAll(short, device); !errors.Is(err, ErrIntegrity) {
				t.Errorf("%s: body cut to %d/%d with a matching header: %v, want ErrIntegrity", profile, n, len(body), err)
			}
		}
	}
}

func TestTrailingData(t *testing.T) {
	device := namedKey("device")
	for _, profile := range allProfiles {
		plaintext := []byte("record")
		msg, _ := seal(t, profile, plaintext, device)
		other, _ := seal(t, profile, plaintext, device)
		_, otherData := splitParts(t, other)
		for name, tail := range map[string][]byte{
			"one zero byte":   {0},
			"garbage":         noise(100),
			"marker packet":   frameNew(tagMarker, []byte("PGP"), 0),
			"a second SEIPD":  otherData,
			"a whole message": other,
		} {
			_, err := openAll(concat(msg, tail), device)
			if !errors.Is(err, ErrMalformed) {
				t.Errorf("%s: trailing %s: %v, want ErrMalformed", profile, name, err)
			}
			// Split's data stream reports it too.
			m, err := Split(bytes.NewReader(concat(msg, tail)))
			if err != nil {
				t.Fatal(err)
			}
			if _, err := io.ReadAll(m.Data); !errors.Is(err, ErrMalformed) {
				t.Errorf("%s: draining data with trailing %s: %v, want ErrMalformed", profile, name, err)
			}
		}
	}
}

func TestSwappedKeyPacket(t *testing.T) {
	// A key packet from record B in front of record A's data packet: the
	// device (or the party it rewraps for) recovers B's session key, which
	// must not open A.
	device, party := namedKey("device"), namedKey("party")
	for _, profile := range allProfiles {
		for i := 0; i < 8; i++ { // garbage decryptions differ; try several
			plainA := noise(3000)
			a, _ := seal(t, profile, plainA, device)
			b, _ := seal(t, profile, []byte("record B"), device)
			_, dataA := splitParts(t, a)
			mb, _ := splitParts(t, b)
			swapped := concat(mb.KeyPackets[0].Raw, dataA)
			if _, err := openAll(swapped, device); !errors.Is(err, ErrIntegrity) {
				t.Errorf("%s: device opened A with B's key packet: %v, want ErrIntegrity", profile, err)
			}
			pkesk, err := Rewrap(mb.KeyPackets[0], profile, device, party)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := openAll(concat(pkesk, dataA), party); !errors.Is(err, ErrIntegrity) {
				t.Errorf("%s: party opened A with a rewrap of B's key packet: %v, want ErrIntegrity", profile, err)
			}
		}
	}
}

func TestProfileMismatch(t *testing.T) {
	device, party := namedKey("device"), namedKey("party")
	compat, _ := seal(t, Compat, []byte("c"), device)
	modern, _ := seal(t, Modern, []byte("m"), device)
	mc, dataC := splitParts(t, compat)
	mm, dataM := splitParts(t, modern)
	v3, v6 := mc.KeyPackets[0], mm.KeyPackets[0]
	if v3.Version != 3 || v6.Version != 6 || mc.DataVersion != 1 || mm.DataVersion != 2 {
		t.Fatalf("versions: v%d/SEIPDv%d, v%d/SEIPDv%d", v3.Version, mc.DataVersion, v6.Version, mm.DataVersion)
	}
	if _, err := Split(bytes.NewReader(concat(v6.Raw, dataC))); !errors.Is(err, ErrProfileMismatch) {
		t.Errorf("v6 PKESK before SEIPDv1: %v, want ErrProfileMismatch", err)
	}
	if _, err := Split(bytes.NewReader(concat(v3.Raw, dataM))); !errors.Is(err, ErrProfileMismatch) {
		t.Errorf("v3 PKESK before SEIPDv2: %v, want ErrProfileMismatch", err)
	}
	if _, err := Split(bytes.NewReader(concat(v3.Raw, v6.Raw, dataM))); !errors.Is(err, ErrProfileMismatch) {
		t.Errorf("v3 and v6 PKESKs before SEIPDv2: %v, want ErrProfileMismatch", err)
	}
	if _, err := Rewrap(v3, Modern, device, party); !errors.Is(err, ErrProfileMismatch) {
		t.Errorf("rewrap of a v3 packet as modern: %v, want ErrProfileMismatch", err)
	}
	if _, err := Rewrap(v6, Compat, device, party); !errors.Is(err, ErrProfileMismatch) {
		t.Errorf("rewrap of a v6 packet as compat: %v, want ErrProfileMismatch", err)
	}
	if err := CanOpen(v6, Compat, device); !errors.Is(err, ErrProfileMismatch) {
		t.Errorf("CanOpen of a v6 packet as compat: %v, want ErrProfileMismatch", err)
	}
	if _, err := SessionKeyID(v6, Compat, device); !errors.Is(err, ErrProfileMismatch) {
		t.Errorf("SessionKeyID of a v6 packet as compat: %v, want ErrProfileMismatch", err)
	}
	if _, err := SessionKeyID(v3, Modern, device); !errors.Is(err, ErrProfileMismatch) {
		t.Errorf("SessionKeyID of a v3 packet as modern: %v, want ErrProfileMismatch", err)
	}
	if _, err := Rewrap(v3, Profile("legacy"), device, party); err == nil {
		t.Error("rewrap with an unknown profile succeeded")
	}
}

func TestProfileV6Recipient(t *testing.T) {
	// A v6 key cannot receive a v3 PKESK: compat refuses it, modern uses it.
	e, err := openpgp.NewEntity("v6", "", "", &packet.Config{V6Keys: true, Algorithm: packet.PubKeyAlgoEd25519})
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := e.SerializePrivateWithoutSigning(&buf, nil); err != nil {
		t.Fatal(err)
	}
	v6, err := ParseKey(buf.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	if len(v6.Fingerprint()) != 64 {
		t.Fatalf("v6 fingerprint %s", v6.Fingerprint())
	}
	device := namedKey("device")
	for _, profile := range allProfiles {
		msg, _ := seal(t, profile, []byte("to v6"), device)
		m, data := splitParts(t, msg)
		pkesk, err := Rewrap(m.KeyPackets[0], profile, device, v6.Public())
		if profile == Compat {
			if !errors.Is(err, ErrProfileMismatch) {
				t.Errorf("compat rewrap to a v6 key: %v, want ErrProfileMismatch", err)
			}
			var sink bytes.Buffer
			if _, err := Seal(&sink, Compat, v6); !errors.Is(err, ErrProfileMismatch) {
				t.Errorf("compat seal to a v6 key: %v, want ErrProfileMismatch", err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("modern rewrap to a v6 key: %v", err)
		}
		if got, err := openAll(concat(pkesk, data), v6); err != nil || string(got) != "to v6" {
			t.Errorf("v6 key opening a modern record: %q, %v", got, err)
		}
	}
}

// --- shapes Split must refuse ---

func TestSplitRefusesShapes(t *testing.T) {
	device := namedKey("device")
	compat, _ := seal(t, Compat, []byte("payload"), device)
	mc, dataC := splitParts(t, compat)
	kp := mc.KeyPackets[0].Raw

	var skesk bytes.Buffer
	w, err := openpgp.SymmetricallyEncrypt(&skesk, []byte("password"), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	w.Write([]byte("hello"))
	w.Close()
	skTag, skBody, skRest := unframe(t, skesk.Bytes())
	if skTag != tagSKESK {
		t.Fatalf("SymmetricallyEncrypt wrote tag %d first", skTag)
	}

	var lit bytes.Buffer
	lw, _ := packet.SerializeLiteral(nopCloser{&lit}, true, "", 0)
	lw.Write([]byte("plain"))
	lw.Close()
	var comp bytes.Buffer
	cw, _ := packet.SerializeCompressed(nopCloser{&comp}, packet.CompressionZLIB, nil)
	cw.Write(literalPacket([]byte("plain")))
	cw.Close()
	_, seBody, _ := unframe(t, dataC)

	cases := []struct {
		name string
		msg  []byte
		want error
	}{
		{"empty", nil, ErrMalformed},
		{"zero byte", []byte{0}, ErrMalformed},
		{"text", []byte("hello, world"), ErrMalformed},
		{"armored message", []byte("-----BEGIN PGP MESSAGE-----\n\nwcBMA\n-----END PGP MESSAGE-----\n"), ErrMalformed},
		{"key packet alone", kp, ErrMalformed},
		{"data packet alone", dataC, ErrMalformed},
		{"SKESK message", skesk.Bytes(), ErrUnsupported},
		{"PKESK, SKESK, data", concat(kp, frameNew(tagSKESK, skBody, 0), skRest), ErrUnsupported},
		{"literal at top level", lit.Bytes(), ErrMalformed},
		{"compressed at top level", comp.Bytes(), ErrMalformed},
		{"PKESK then literal", concat(kp, lit.Bytes()), ErrMalformed},
		{"PKESK then compressed", concat(kp, comp.Bytes()), ErrMalformed},
		{"PKESK then one-pass signature", concat(kp, frameNew(tagOnePass, make([]byte, 13), 0)), ErrMalformed},
		{"PKESK then signature", concat(kp, frameNew(tagSignature, make([]byte, 20), 0)), ErrMalformed},
		{"marker first", concat(frameNew(tagMarker, []byte("PGP"), 0), compat), ErrMalformed},
		{"PKESK, marker, data", concat(kp, frameOld(tagMarker, []byte("PGP"), 1), dataC), ErrMalformed},
		{"tag 9 (no MDC)", concat(kp, frameNew(tagSE, seBody[1:], 0)), ErrUnsupported},
		{"tag 9 old format", concat(kp, frameOld(tagSE, seBody[1:], 0)), ErrUnsupported},
		{"tag 20 (OCB)", concat(kp, frameNew(tagAEAD, seBody, 0)), ErrUnsupported},
		{"SEIPD version 3", concat(kp, frameNew(tagSEIPD, concat([]byte{3}, seBody[1:]), 0)), ErrUnsupported},
		{"SEIPD of length zero", concat(kp, frameNew(tagSEIPD, nil, 1)), ErrMalformed},
		{"PKESK version 5", concat(frameNew(tagPKESK, concat([]byte{5}, mustBody(t, kp)[1:]), 0), dataC), ErrMalformed},
		{"PKESK with partial length", concat(framePartial(tagPKESK, mustBody(t, kp), 5), dataC), ErrMalformed},
		{"PKESK with indeterminate length", concat(frameOld(tagPKESK, mustBody(t, kp), 0), dataC), ErrMalformed},
		{"PKESK truncated", concat(kp[:len(kp)-1]), ErrMalformed},
		{"PKESK header truncated", []byte{0xc1, 0xff, 0, 0}, ErrMalformed},
		{"data header truncated", concat(kp, []byte{0xd2, 0xff, 0}), ErrMalformed},
		{"data header without body", concat(kp, []byte{0xd2, 0x10}), ErrMalformed},
		{"garbage PKESK body", concat(frameNew(tagPKESK, concat([]byte{7}, noise(89)), 0), dataC), ErrMalformed},
	}
	for _, c := range cases {
		_, err := Split(bytes.NewReader(c.msg))
		if !errors.Is(err, c.want) {
			t.Errorf("%s: Split: %v, want %v", c.name, err, c.want)
		}
		if _, err := Open(bytes.NewReader(c.msg), device); !errors.Is(err, c.want) {
			t.Errorf("%s: Open: %v, want %v", c.name, err, c.want)
		}
	}
	// An armored message is named as such, not as a bad header octet.
	if _, err := Split(strings.NewReader("-----BEGIN PGP MESSAGE-----\n\nwcBMA\n-----END PGP MESSAGE-----\n")); err == nil || !strings.Contains(err.Error(), "ASCII-armored; send the binary message") {
		t.Errorf("armored message: Split: %v", err)
	}
	// Random garbage never splits.
	for i := 0; i < 200; i++ {
		if _, err := Split(bytes.NewReader(noise(mrand.IntN(300)))); err == nil {
			t.Error("random bytes split")
		}
	}
}

func mustBody(t testing.TB, pkt []byte) []byte {
	t.Helper()
	_, body, _ := unframe(t, pkt)
	return body
}

type nopCloser struct{ io.Writer }

func (nopCloser) Close() error { return nil }

func TestKeyPacketLimits(t *testing.T) {
	device := namedKey("device")
	for _, profile := range allProfiles {
		msg, _ := seal(t, profile, []byte("many"), device)
		m, data := splitParts(t, msg)
		kp := m.KeyPackets[0].Raw
		many := func(n int) []byte { return concat(bytes.Repeat(kp, n), data) }
		if got, err := openAll(many(MaxKeyPackets), device); err != nil || string(got) != "many" {
			t.Errorf("%s: %d key packets: %v", profile, MaxKeyPackets, err)
		}
		if _, err := Split(bytes.NewReader(many(MaxKeyPackets + 1))); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: %d key packets: %v, want ErrMalformed", profile, MaxKeyPackets+1, err)
		}
	}
	// An oversized key packet is refused from its header, before its body
	// is read (here there is none).
	for _, hdr := range [][]byte{
		{0xc1, 0xff, 0, 0, 0x10, 0x01},       // new format, 4097
		{0xc1, 0xff, 0x7f, 0xff, 0xff, 0xff}, // new format, 2 GiB
		{0x85, 0x10, 0x01},                   // old format, 2-octet length, 4097
		{0x86, 0xff, 0xff, 0xff, 0xff},       // old format, 4-octet length
	} {
		_, err := Split(bytes.NewReader(hdr))
		if !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), "exceeds") {
			t.Errorf("key packet header % x: %v, want ErrMalformed (exceeds)", hdr, err)
		}
	}
	big := frameNew(tagPKESK, noise(MaxKeyPacketSize+1), 0)
	if _, err := Split(bytes.NewReader(big)); !errors.Is(err, ErrMalformed) {
		t.Errorf("oversized key packet: %v, want ErrMalformed", err)
	}
	if _, err := ParseKeyPacket(big); !errors.Is(err, ErrMalformed) {
		t.Errorf("ParseKeyPacket of an oversized key packet: %v, want ErrMalformed", err)
	}
}

func TestParseKeyPacket(t *testing.T) {
	msg, _ := seal(t, Compat, []byte("x"), namedKey("device"))
	m, data := splitParts(t, msg)
	kp := m.KeyPackets[0].Raw
	if _, err := ParseKeyPacket(kp); err != nil {
		t.Fatal(err)
	}
	for name, raw := range map[string][]byte{
		"empty":        nil,
		"trailing":     concat(kp, []byte{0}),
		"two":          concat(kp, kp),
		"data packet":  data,
		"truncated":    kp[:len(kp)-3],
		"header octet": {0x01},
	} {
		if _, err := ParseKeyPacket(raw); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: %v, want ErrMalformed", name, err)
		}
	}
}

// --- what the encrypted packet holds ---

func TestInnerPackets(t *testing.T) {
	device := namedKey("device")
	plain := []byte("inner plaintext")
	var zlib bytes.Buffer
	zw, _ := packet.SerializeCompressed(nopCloser{&zlib}, packet.CompressionZLIB, nil)
	zw.Write(literalPacket(plain))
	zw.Close()
	var nested bytes.Buffer
	nw, _ := packet.SerializeCompressed(nopCloser{&nested}, packet.CompressionZIP, nil)
	nw.Write(zlib.Bytes())
	nw.Close()
	padding := frameNew(21, noise(300), 0)

	for _, profile := range allProfiles {
		cases := []struct {
			name  string
			inner []byte
			want  error // nil: opens to plain
		}{
			{"literal", literalPacket(plain), nil},
			{"old-format literal", frameOld(tagLiteral, concat([]byte{'b', 0, 0, 0, 0, 0}, plain), 1), nil},
			{"compressed literal (as GnuPG writes)", zlib.Bytes(), nil},
			{"literal then padding", concat(literalPacket(plain), padding), nil},
			{"nested compression", nested.Bytes(), ErrUnsupported},
			{"nothing", nil, ErrIntegrity},
			{"one-pass signature", frameNew(tagOnePass, make([]byte, 13), 0), ErrUnsupported},
			{"signature", frameNew(tagSignature, make([]byte, 30), 0), ErrUnsupported},
			{"user id", frameNew(13, []byte("user"), 0), ErrUnsupported},
			{"not a packet", []byte("plain text"), ErrIntegrity},
		}
		for _, c := range cases {
			msg := sealInner(t, profile, c.inner, 0, device)
			got, err := openAll(msg, device)
			if c.want == nil {
				if err != nil || !bytes.Equal(got, plain) {
					t.Errorf("%s: %s: %q, %v", profile, c.name, got, err)
				}
			} else if !errors.Is(err, c.want) {
				t.Errorf("%s: %s: %v, want %v", profile, c.name, err, c.want)
			}
		}
	}
}

func TestPaddingInLaterChunk(t *testing.T) {
	// RFC 9580 senders may pad after the literal data. With a small chunk
	// size the padding packet lands in a later SEIPDv2 chunk; Open must
	// still check the final tag over all chunks, and accept the message.
	device := namedKey("device")
	plain := noise(64 - 8) // literal packet = 2+6+56 = 64 bytes: exactly one chunk
	inner := concat(literalPacket(plain), frameNew(21, noise(500), 0))
	if len(literalPacket(plain)) != 64 {
		t.Fatalf("literal is %d bytes", len(literalPacket(plain)))
	}
	msg := sealInner(t, Modern, inner, 64, device)
	got, err := openAll(msg, device)
	if err != nil || !bytes.Equal(got, plain) {
		t.Fatalf("padded message: %v", err)
	}
	// Dropping the padding's chunks (and keeping the final tag) must fail.
	m, data := splitParts(t, msg)
	_, body, _ := unframe(t, data)
	first := 1 + 3 + 32 + 64 + 16 // version, AEAD header, salt, chunk 0 and its tag
	cut := concat(body[:first], body[len(body)-16:])
	if _, err := openAll(concat(m.KeyPackets[0].Raw, frameNew(tagSEIPD, cut, 0)), device); !errors.Is(err, ErrIntegrity) {
		t.Fatalf("chunks removed: %v, want ErrIntegrity", err)
	}
}

func TestHugeInnerPacketDoesNotBuffer(t *testing.T) {
	// A submitter holding the session key can put any packet inside the
	// encryption. go-crypto reads some packet kinds (user id, user
	// attribute) whole into memory; Open must refuse them from their tag,
	// without memory growing with the record.
	if testing.Short() {
		t.Skip("allocates a 16 MiB message")
	}
	device := namedKey("device")
	const size = 16 << 20
	for _, profile := range allProfiles {
		inner := framePartial(13, make([]byte, size), 20) // a 16 MiB user id
		msg := sealInner(t, profile, inner, 0, device)
		runtime.GC()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		_, err := openAll(msg, device)
		runtime.ReadMemStats(&after)
		if !errors.Is(err, ErrUnsupported) {
			t.Errorf("%s: 16 MiB user id packet: %v, want ErrUnsupported", profile, err)
		}
		if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 4<<20 {
			t.Errorf("%s: opening allocated %d bytes for a %d byte inner packet", profile, alloc, size)
		}
	}
}

// --- OpenFile keeps a file only when the record checks out ---

func TestOpenFile(t *testing.T) {
	device := namedKey("device")
	dir := t.TempDir()
	for _, profile := range allProfiles {
		plaintext := noise(100000)
		msg, _ := seal(t, profile, plaintext, device)
		path := filepath.Join(dir, string(profile)+".out")
		n, err := OpenFile(path, bytes.NewReader(msg), device)
		if err != nil || n != int64(len(plaintext)) {
			t.Fatalf("%s: OpenFile: %d, %v", profile, n, err)
		}
		got, _ := os.ReadFile(path)
		if !bytes.Equal(got, plaintext) {
			t.Fatalf("%s: file content differs", profile)
		}
		if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: file mode %v", profile, fi.Mode())
		}
		bad := filepath.Join(dir, string(profile)+".bad")
		for _, tampered := range [][]byte{flipBit(msg, (len(msg)-30)*8), msg[:len(msg)-5], concat(msg, []byte{0})} {
			if _, err := OpenFile(bad, bytes.NewReader(tampered), device); !errors.Is(err, ErrIntegrity) && !errors.Is(err, ErrMalformed) {
				t.Errorf("%s: OpenFile of a tampered record: %v", profile, err)
			}
			if _, err := os.Stat(bad); !os.IsNotExist(err) {
				t.Errorf("%s: OpenFile left %s behind after an integrity failure", profile, bad)
			}
		}
		// An existing file is replaced only on success.
		os.WriteFile(bad, []byte("previous"), 0o600)
		if _, err := OpenFile(bad, bytes.NewReader(flipBit(msg, (len(msg)-1)*8)), device); err == nil {
			t.Errorf("%s: tampered record opened", profile)
		}
		if got, _ := os.ReadFile(bad); string(got) != "previous" {
			t.Errorf("%s: failed OpenFile changed the existing file", profile)
		}
		os.Remove(bad)
	}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if strings.Contains(e.Name(), ".tmp-") {
			t.Errorf("temporary file %s left behind", e.Name())
		}
	}
}

func TestKeyPacketBitFlipsOtherAlgorithms(t *testing.T) {
	// Every single-bit change to a key packet fails, whatever the
	// recipient's algorithm: RSA (header and MPI length only: each RSA
	// decryption costs milliseconds), ECDH P-256 and X25519 (every bit).
	entities, err := foreignKeys()
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"rsa3072", "p256", "ed25519v4"} {
		k, err := ParseKey(serializeEntity(t, entities[name], false))
		if err != nil {
			t.Fatal(err)
		}
		for _, profile := range allProfiles {
			plaintext := []byte("flip")
			msg, _ := seal(t, profile, plaintext, k)
			m, _ := splitParts(t, msg)
			n := len(m.KeyPackets[0].Raw)
			if name == "rsa3072" {
				n = 2 + 1 + 21 + 1 + 2 + 1 // header, version, v6 recipient, algorithm, MPI length, first MPI octet
			}
			for bit := 0; bit < n*8; bit++ {
				checkTampered(t, fmt.Sprintf("%s/%s: bit %d", name, profile, bit), flipBit(msg, bit), plaintext, k)
			}
		}
	}
}
