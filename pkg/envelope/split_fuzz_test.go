package envelope

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"testing"
)

// splitReadLimit bounds what Split may read from its source before it
// returns: every key packet at its largest (with a 6-octet header), the
// data packet's header and version octet, and one fill of Split's 64 KiB
// read buffer.
const splitReadLimit = MaxKeyPackets*(MaxKeyPacketSize+6) + 8 + 64<<10

// splitAllocLimit bounds what Split and draining its data stream may
// allocate: the read buffer, each key packet twice (raw, and go-crypto's
// parse of it) and small change.
const splitAllocLimit = 64<<10 + 2*MaxKeyPackets*(MaxKeyPacketSize+6) + 32<<10

type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// endless yields 0xa5 forever: what a body of unbounded length looks like
// to a reader that would buffer it.
type endless struct{}

func (endless) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = 0xa5
	}
	return len(p), nil
}

// FuzzSplit checks, for any input, that Split and draining its data stream
// never panic; that Split reads (and allocates) no more than its key packet
// limits allow, however long the input; that its errors are the package's;
// and that when it succeeds, the raw key packets followed by the data
// stream are exactly the input (or, if draining fails, a prefix of it).
func FuzzSplit(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte{0xc1, 0x01, 0x03, 0xd2, 0x01, 0x01})
	f.Fuzz(func(t *testing.T, in []byte) {
		// However long the body, Split stops reading after the data
		// packet's header.
		src := &countingReader{r: io.MultiReader(bytes.NewReader(in), endless{})}
		if _, err := Split(src); src.n > splitReadLimit {
			t.Fatalf("Split read %d bytes of an endless input before returning (limit %d, error %v)", src.n, splitReadLimit, err)
		}

		var before, after runtime.MemStats
		src2 := bytes.NewReader(in)
		runtime.ReadMemStats(&before)
		m, err := Split(src2)
		runtime.ReadMemStats(&after)
		if alloc := after.TotalAlloc - before.TotalAlloc; alloc > splitAllocLimit {
			t.Fatalf("Split allocated %d bytes for a %d byte input (limit %d)", alloc, len(in), splitAllocLimit)
		}
		var drained []byte
		var derr error
		if err == nil {
			// The data stream passes bytes through: draining it allocates
			// nothing (the destination is allocated beforehand).
			drained = make([]byte, 0, len(in))
			scratch := make([]byte, 4096)
			runtime.ReadMemStats(&before)
			for {
				n, rerr := m.Data.Read(scratch)
				if len(drained)+n > len(in) {
					t.Fatalf("data stream yields more bytes than the input holds")
				}
				drained = append(drained, scratch[:n]...)
				if rerr == io.EOF {
					break
				}
				if rerr != nil {
					derr = rerr
					break
				}
			}
			runtime.ReadMemStats(&after)
			if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 4096 {
				t.Fatalf("draining the data stream allocated %d bytes", alloc)
			}
		}

		if err != nil {
			if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrUnsupported) && !errors.Is(err, ErrProfileMismatch) {
				t.Fatalf("Split error wraps no package error: %v", err)
			}
			return
		}
		if n := len(m.KeyPackets); n < 1 || n > MaxKeyPackets {
			t.Fatalf("Split returned %d key packets", n)
		}
		if m.DataVersion != 1 && m.DataVersion != 2 {
			t.Fatalf("data version %d", m.DataVersion)
		}
		var raws []byte
		for i, kp := range m.KeyPackets {
			if len(kp.Raw) > MaxKeyPacketSize+6 {
				t.Fatalf("key packet %d is %d bytes", i, len(kp.Raw))
			}
			if kp.Version != m.Profile().keyPacketVersion() {
				t.Fatalf("key packet %d is v%d before SEIPDv%d", i, kp.Version, m.DataVersion)
			}
			again, err := ParseKeyPacket(kp.Raw)
			if err != nil {
				t.Fatalf("key packet %d does not parse again: %v", i, err)
			}
			if again.Version != kp.Version || again.KeyID != kp.KeyID || again.Algorithm != kp.Algorithm || !bytes.Equal(again.Fingerprint, kp.Fingerprint) {
				t.Fatalf("key packet %d parses differently: %+v then %+v", i, kp, again)
			}
			raws = append(raws, kp.Raw...)
		}
		got := append(raws, drained...)
		if derr != nil {
			if !errors.Is(derr, ErrMalformed) {
				t.Fatalf("data stream error wraps no ErrMalformed: %v", derr)
			}
			if !bytes.HasPrefix(in, got) {
				t.Fatalf("key packets || data read before the error is not a prefix of the input")
			}
			return
		}
		if !bytes.Equal(got, in) {
			t.Fatalf("key packets || data (%d bytes) differs from the input (%d bytes)", len(got), len(in))
		}
	})
}

// TestSplitFraming re-encodes one sealed message with every header form
// Split must read: old-format key packet headers (1, 2 and 4 octet
// lengths, as GnuPG writes them), new-format ones (1, 2 and 5 octets), and
// data packets with definite lengths or partial body lengths of various
// chunk sizes. For each, Split's data stream is byte-identical to the data
// packet as framed, its digest is the Digester's, and the record opens.
func TestSplitFraming(t *testing.T) {
	device := namedKey("device")
	for _, profile := range allProfiles {
		for _, size := range []int{0, 700, 70000} {
			plaintext := noise(size)
			msg, digest := seal(t, profile, plaintext, device)
			m, data := splitParts(t, msg)
			d := NewDigester()
			d.Write(data)
			if d.Digest() != digest || digest.Size != int64(len(data)) {
				t.Fatalf("%s/%d: split data digest differs from SealWriter.Digest", profile, size)
			}
			_, kpBody, _ := unframe(t, m.KeyPackets[0].Raw)
			_, body, rest := unframe(t, data)
			if len(rest) != 0 {
				t.Fatal("unframe left bytes after the data packet")
			}
			keyForms := map[string][]byte{
				"old/1": frameOld(tagPKESK, kpBody, 1),
				"old/2": frameOld(tagPKESK, kpBody, 2),
				"old/4": frameOld(tagPKESK, kpBody, 4),
				"new/1": frameNew(tagPKESK, kpBody, 1),
				"new/5": frameNew(tagPKESK, kpBody, 5),
			}
			dataForms := map[string][]byte{
				"sealed":              data,
				"new/5":               frameNew(tagSEIPD, body, 5),
				"partial/512":         framePartial(tagSEIPD, body, 9),
				"partial/1,2,4..":     framePartial(tagSEIPD, body, 0, 1, 2, 3, 9, 13),
				"partial/64K":         framePartial(tagSEIPD, body, 16),
				"partial/zero final":  zeroFinalChunk(body),
				"partial/all in last": framePartial(tagSEIPD, body, 30),
			}
			if len(body) < 192 {
				dataForms["new/1"] = frameNew(tagSEIPD, body, 1)
			}
			if len(body) >= 192 && len(body) < 8384 {
				dataForms["new/2"] = frameNew(tagSEIPD, body, 2)
			}
			for kname, kp := range keyForms {
				for dname, dp := range dataForms {
					what := fmt.Sprintf("%s/%d key %s data %s", profile, size, kname, dname)
					in := concat(kp, dp)
					m, err := Split(bytes.NewReader(in))
					if err != nil {
						t.Fatalf("%s: split: %v", what, err)
					}
					if !bytes.Equal(m.KeyPackets[0].Raw, kp) {
						t.Fatalf("%s: key packet raw bytes differ", what)
					}
					got, err := io.ReadAll(m.Data)
					if err != nil || !bytes.Equal(got, dp) {
						t.Fatalf("%s: data stream differs from the data packet (%v)", what, err)
					}
					pt, err := openAll(in, device)
					if err != nil || !bytes.Equal(pt, plaintext) {
						t.Fatalf("%s: open: %v", what, err)
					}
				}
			}
		}
	}
}

// zeroFinalChunk frames body in 512-octet partial chunks followed by a
// final chunk of length zero, which RFC 9580 allows.
func zeroFinalChunk(body []byte) []byte {
	out := []byte{0xc0 | tagSEIPD}
	for len(body) > 0 {
		n := min(len(body), 512)
		if n < 512 { // only full 512-octet chunks can be partial
			out = append(out, newLen(n, 0)...)
			return append(out, body...)
		}
		out = append(out, 224+9)
		out = append(out, body[:512]...)
		body = body[512:]
	}
	return append(out, 0)
}

func TestSplitTruncatedPartialChunks(t *testing.T) {
	// Truncation at and around every partial length boundary: the data
	// stream reports ErrMalformed and never yields bytes past the input.
	device := namedKey("device")
	msg, _ := seal(t, Compat, noise(3000), device)
	m, data := splitParts(t, msg)
	_, body, _ := unframe(t, data)
	framed := concat(m.KeyPackets[0].Raw, framePartial(tagSEIPD, body, 9))
	for cut := len(m.KeyPackets[0].Raw) + 2; cut < len(framed); cut += 37 {
		m, err := Split(bytes.NewReader(framed[:cut]))
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("cut %d: split: %v", cut, err)
			}
			continue
		}
		got, err := io.ReadAll(m.Data)
		if !errors.Is(err, ErrMalformed) {
			t.Fatalf("cut %d: drained without ErrMalformed: %v", cut, err)
		}
		if !bytes.HasPrefix(framed[len(m.KeyPackets[0].Raw):], got) {
			t.Fatalf("cut %d: data stream is not a prefix of the packet", cut)
		}
	}
}

func TestSplitDoesNotBuffer(t *testing.T) {
	// A message with an endless body: Split returns after the header,
	// having read at most one buffer fill past the key packets.
	device := namedKey("device")
	msg, _ := seal(t, Modern, noise(10), device)
	m, _ := splitParts(t, msg)
	var keyPackets []byte
	for i := 0; i < MaxKeyPackets; i++ {
		keyPackets = append(keyPackets, m.KeyPackets[0].Raw...)
	}
	src := &countingReader{r: io.MultiReader(bytes.NewReader(concat(keyPackets, []byte{0xd2, 0xff, 0x7f, 0xff, 0xff, 0xff, 2})), endless{})}
	got, err := Split(src)
	if err != nil {
		t.Fatal(err)
	}
	if src.n > int64(len(keyPackets))+64<<10+8 {
		t.Fatalf("Split read %d bytes of an endless message", src.n)
	}
	// Reading the data stream proceeds in bounded steps.
	buf := make([]byte, 1000)
	before := src.n
	for i := 0; i < 1000; i++ {
		if _, err := io.ReadFull(got.Data, buf); err != nil {
			t.Fatal(err)
		}
	}
	if src.n-before > 1000*1000+64<<10 {
		t.Fatalf("reading 1 MB of data consumed %d bytes", src.n-before)
	}
}

// --- seed corpus ---

var updateSplitCorpus = flag.Bool("update-split-corpus", false, "regenerate testdata/fuzz/FuzzSplit seeds")

// TestGenerateSplitCorpus writes the FuzzSplit seed corpus when run with
// -update-split-corpus (go test -run TestGenerateSplitCorpus
// -update-split-corpus ./pkg/envelope/). Seeds are real messages (compat,
// modern, several recipients, one written by gpg) and near misses.
// Crashers found by fuzzing are added by go test itself and kept.
func TestGenerateSplitCorpus(t *testing.T) {
	if !*updateSplitCorpus {
		t.Skip("run with -update-split-corpus to regenerate the FuzzSplit seeds")
	}
	write := func(name string, b []byte) { writeFuzzSeed(t, "FuzzSplit", "seed-"+name, b) }
	device, recovery := namedKey("device"), namedKey("recovery")
	compat, _ := seal(t, Compat, []byte("compat record"), device)
	modern, _ := seal(t, Modern, []byte("modern record"), device)
	two, _ := seal(t, Compat, []byte("two recipients"), device, recovery)
	mc, dataC := splitParts(t, compat)
	mm, dataM := splitParts(t, modern)
	kpC, kpM := mc.KeyPackets[0].Raw, mm.KeyPackets[0].Raw
	_, kpBody, _ := unframe(t, kpC)
	_, bodyC, _ := unframe(t, dataC)
	_, bodyM, _ := unframe(t, dataM)

	write("compat", compat)
	write("modern", modern)
	write("compat-two-recipients", two)
	write("compat-old-format-pkesk", concat(frameOld(tagPKESK, kpBody, 1), dataC))
	write("compat-old-format-4-octet", concat(frameOld(tagPKESK, kpBody, 4), frameNew(tagSEIPD, bodyC, 5)))
	write("compat-partial-chunks", concat(kpC, framePartial(tagSEIPD, bodyC, 0, 1, 2)))
	write("modern-zero-final-chunk", concat(kpM, zeroFinalChunk(concat(bodyM, noise(600)))))
	if g := gpgIfInstalled(t); g != nil {
		g.mustRun("--import", g.file("device.asc", device.Armor()))
		src := g.file("plain.txt", []byte("written by gpg\n"))
		write("gpg", g.mustRun("--trust-model", "always", "--encrypt", "--recipient", device.Fingerprint(), "--output", "-", src))
	}
	// Near misses.
	write("truncated", compat[:len(compat)-1])
	write("trailing-byte", concat(compat, []byte{0}))
	write("trailing-packet", concat(compat, frameNew(tagMarker, []byte("PGP"), 0)))
	write("v6-pkesk-seipdv1", concat(kpM, dataC))
	write("v3-pkesk-seipdv2", concat(kpC, dataM))
	write("no-pkesk", dataC)
	write("pkesk-only", kpC)
	write("seventeen-pkesks", concat(bytes.Repeat(kpC, MaxKeyPackets+1), dataC))
	write("oversized-pkesk-header", []byte{0xc1, 0xff, 0, 0, 0x10, 0x01})
	write("old-indeterminate-pkesk", concat(frameOld(tagPKESK, kpBody, 0), dataC))
	write("partial-pkesk", concat(framePartial(tagPKESK, kpBody, 5), dataC))
	write("skesk", concat([]byte{0x8c, 0x0d, 0x04, 0x09, 0x03, 0x08}, noise(9), dataC))
	write("tag9", concat(kpC, frameOld(tagSE, bodyC[1:], 0)))
	write("literal", frameNew(tagLiteral, []byte("b\x00\x00\x00\x00\x00hello"), 0))
	write("seipd-version-3", concat(kpC, frameNew(tagSEIPD, concat([]byte{3}, bodyC[1:]), 0)))
	write("seipd-empty", concat(kpC, []byte{0xd2, 0x00}))
	write("non-canonical-mpi", concat(flipBit(kpC, 13*8), dataC))
	write("truncated-partial", concat(kpC, []byte{0xd2, 0xe9}, bodyC[:min(100, len(bodyC))]))
}

// writeFuzzSeed writes b as the seed called name in the corpus of the fuzz
// target, testdata/fuzz/<target>, in the file format go test reads.
func writeFuzzSeed(t testing.TB, target, name string, b []byte) {
	t.Helper()
	dir := filepath.Join("testdata", "fuzz", target)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	content := "go test fuzz v1\n[]byte(" + strconv.QuoteToASCII(string(b)) + ")\n"
	if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// gpgIfInstalled returns a gpg runner, or nil when gpg is missing.
func gpgIfInstalled(t *testing.T) *gnupg {
	if _, err := exec.LookPath("gpg"); err != nil {
		t.Logf("gpg is not installed: no gpg-written seed")
		return nil
	}
	return newGnuPG(t)
}
