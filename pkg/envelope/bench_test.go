package envelope

// Benchmarks for `make bench` (scripts/bench.sh runs the Rewrap ones here
// and the Sign and Verify ones in sign_test.go); internal/seipd1 compares
// SEIPDv1 implementations:
//
//	go test -run '^$' -bench . ./pkg/envelope/...

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"io"
	"sync"
	"testing"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/packet"
)

// benchSize is the record size of the throughput benchmarks: large enough
// for the pipelines to reach their steady state.
const benchSize = 64 << 20

var benchData = sync.OnceValue(func() []byte {
	b := make([]byte, benchSize)
	rand.Read(b)
	return b
})

var benchKey = sync.OnceValue(func() *Key {
	k, err := GenerateKey("bench Cv25519")
	if err != nil {
		panic(err)
	}
	return k
})

// benchKeys are one key per algorithm Keyholder accepts: Cv25519 (its own
// keys) and RSA-3072 and NIST P-256 (parties' keys made by other tools).
var benchKeys = sync.OnceValue(func() map[string]*Key {
	m := map[string]*Key{"Cv25519": benchKey()}
	for name, cfg := range map[string]*packet.Config{
		"RSA-3072": {Algorithm: packet.PubKeyAlgoRSA, RSABits: 3072, DefaultHash: crypto.SHA256},
		"P-256":    {Algorithm: packet.PubKeyAlgoECDSA, Curve: packet.CurveNistP256, DefaultHash: crypto.SHA256},
	} {
		e, err := openpgp.NewEntity("bench "+name, "", "", cfg)
		if err != nil {
			panic(err)
		}
		var buf bytes.Buffer
		if err := e.SerializePrivate(&buf, nil); err != nil {
			panic(err)
		}
		if m[name], err = ParseKey(buf.Bytes()); err != nil {
			panic(err)
		}
	}
	return m
})

var benchKeyTypes = []string{"Cv25519", "RSA-3072", "P-256"}

func benchSeal(b *testing.B, profile Profile, to *Key, data []byte) []byte {
	var buf bytes.Buffer
	w, err := Seal(&buf, profile, to)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := w.Write(data); err != nil {
		b.Fatal(err)
	}
	if err := w.Close(); err != nil {
		b.Fatal(err)
	}
	return buf.Bytes()
}

// BenchmarkSeal and BenchmarkOpen measure whole messages, in memory, to
// io.Discard; bench/envelope measures files.
func BenchmarkSeal(b *testing.B) {
	data := benchData()
	key := benchKey()
	for _, profile := range []Profile{Compat, Modern} {
		b.Run(string(profile), func(b *testing.B) {
			b.SetBytes(int64(len(data)))
			for b.Loop() {
				w, err := Seal(io.Discard, profile, key)
				if err != nil {
					b.Fatal(err)
				}
				for p := data; len(p) > 0; p = p[min(len(p), 256<<10):] {
					if _, err := w.Write(p[:min(len(p), 256<<10)]); err != nil {
						b.Fatal(err)
					}
				}
				if err := w.Close(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkOpen(b *testing.B) {
	data := benchData()
	key := benchKey()
	buf := make([]byte, 256<<10)
	for _, profile := range []Profile{Compat, Modern} {
		msg := benchSeal(b, profile, key, data)
		b.Run(string(profile), func(b *testing.B) {
			b.SetBytes(int64(len(data)))
			for b.Loop() {
				r, err := Open(bytes.NewReader(msg), key)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := io.CopyBuffer(io.Discard, r, buf); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkRewrap measures a device rewrapping a record key: decrypting its
// key packet and encrypting the session key to the party. "X" rewraps from
// and to a key of type X; "Cv25519-to-X" is Keyholder's usual case, a
// Cv25519 device and a party key of type X.
func BenchmarkRewrap(b *testing.B) {
	keys := benchKeys()
	names := append([]string{}, benchKeyTypes...)
	names = append(names, "Cv25519-to-RSA-3072", "Cv25519-to-P-256")
	for _, name := range names {
		from, to := name, name
		if len(name) > len("Cv25519-to-") && name[:len("Cv25519-to-")] == "Cv25519-to-" {
			from, to = "Cv25519", name[len("Cv25519-to-"):]
		}
		identity, recipient := keys[from], keys[to].Public()
		msg := benchSeal(b, Compat, identity, []byte("record"))
		m, err := Split(bytes.NewReader(msg))
		if err != nil {
			b.Fatal(err)
		}
		b.Run(name, func(b *testing.B) {
			for b.Loop() {
				if _, err := Rewrap(m.KeyPackets[0], Compat, identity, recipient); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
