package seipd1

// go test -run '^$' -bench SEIPDv1 ./pkg/envelope/internal/seipd1/

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"io"
	"testing"

	"github.com/ProtonMail/go-crypto/openpgp/packet"
)

// BenchmarkSEIPDv1 compares go-crypto's SEIPDv1 with this package's on the
// data packet alone; "digest" also hashes the packet with SHA-256, as Seal
// does.
func BenchmarkSEIPDv1(b *testing.B) {
	data := make([]byte, 64<<20)
	rand.Read(data)
	key := make([]byte, 32)
	rand.Read(key)
	writers := []struct {
		name string
		new  func(io.Writer) (io.WriteCloser, error)
	}{
		{"go-crypto", func(w io.Writer) (io.WriteCloser, error) {
			return packet.SerializeSymmetricallyEncrypted(w, packet.CipherAES256, false, packet.CipherSuite{}, key, nil)
		}},
		{"ours", func(w io.Writer) (io.WriteCloser, error) {
			return newWriterSize(w, key, nil, seipd1ChunkLog)
		}},
		{"ours+digest", func(w io.Writer) (io.WriteCloser, error) {
			return newWriterSize(w, key, sha256.New(), seipd1ChunkLog)
		}},
	}
	for _, wr := range writers {
		b.Run("seal/"+wr.name, func(b *testing.B) {
			b.SetBytes(int64(len(data)))
			for b.Loop() {
				w, err := wr.new(io.Discard)
				if err != nil {
					b.Fatal(err)
				}
				for p := data; len(p) > 0; p = p[min(len(p), 256<<10):] {
					w.Write(p[:min(len(p), 256<<10)])
				}
				if err := w.Close(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
	var pkt bytes.Buffer
	w, _ := NewWriter(&pkt, key, nil)
	w.Write(data)
	w.Close()
	readers := []struct {
		name string
		new  func(*packet.SymmetricallyEncrypted) (io.ReadCloser, error)
	}{
		{"go-crypto", func(se *packet.SymmetricallyEncrypted) (io.ReadCloser, error) {
			return se.Decrypt(packet.CipherAES256, key)
		}},
		{"ours", func(se *packet.SymmetricallyEncrypted) (io.ReadCloser, error) {
			return newReaderSize(se.Contents, key, seipd1ReadBatch)
		}},
	}
	buf := make([]byte, 256<<10)
	for _, rd := range readers {
		b.Run("open/"+rd.name, func(b *testing.B) {
			b.SetBytes(int64(len(data)))
			for b.Loop() {
				p, err := packet.Read(bytes.NewReader(pkt.Bytes()))
				if err != nil {
					b.Fatal(err)
				}
				r, err := rd.new(p.(*packet.SymmetricallyEncrypted))
				if err != nil {
					b.Fatal(err)
				}
				if _, err := io.CopyBuffer(io.Discard, r, buf); err != nil {
					b.Fatal(err)
				}
				if err := r.Close(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
