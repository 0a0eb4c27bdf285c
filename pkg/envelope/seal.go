package envelope

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash"
	"io"

	"github.com/ProtonMail/go-crypto/openpgp/packet"

	"github.com/keyholder/keyholder/pkg/envelope/internal/asyncwrite"
	"github.com/keyholder/keyholder/pkg/envelope/internal/seipd1"
)

// A Profile fixes the OpenPGP packet versions of a record when it is sealed.
// Each record stores the profile it was sealed with; a deployment takes both
// unless keyholderd serve --profiles restricts it to one.
type Profile string

const (
	// Compat writes v3 PKESKs and SEIPDv1 (AES-256, MDC). GnuPG 2.2 and
	// Sequoia 0.27 open it. It is the default.
	Compat Profile = "compat"
	// Modern writes v6 PKESKs and SEIPDv2 with AES-256-GCM (RFC 9580).
	// It is several times faster, but GnuPG 2.2 cannot open it.
	Modern Profile = "modern"
)

// ParseProfile returns the profile named s ("compat" or "modern").
func ParseProfile(s string) (Profile, error) {
	switch Profile(s) {
	case Compat, Modern:
		return Profile(s), nil
	}
	return "", fmt.Errorf("envelope: unknown profile %q (want %q or %q)", s, Compat, Modern)
}

// keyPacketVersion is the PKESK version the profile's data packet needs.
func (p Profile) keyPacketVersion() int {
	if p == Modern {
		return 6
	}
	return 3
}

// asyncChunk is what the modern profile hands to its second goroutine at a
// time: one AEAD chunk with its tag.
const asyncChunk = aeadChunkSize + 16

// aeadChunkSize is the SEIPDv2 chunk size: large enough to amortize the
// per-chunk tag, small enough that a reader buffers little.
const aeadChunkSize = 1 << 18

// A DataDigest identifies an encrypted data packet: the SHA-256 of its bytes
// (header and body) and their number. It is the same for every recipient of
// a record, whatever key packets stand in front of it.
type DataDigest struct {
	SHA256 [32]byte
	Size   int64
}

// Hex returns the SHA-256 as lower-case hex, as statements write it.
func (d DataDigest) Hex() string { return hex.EncodeToString(d.SHA256[:]) }

// A Digester computes a DataDigest of bytes written to it.
type Digester struct {
	h hash.Hash
	n int64
}

// NewDigester returns a Digester; write the encrypted data packet to it.
func NewDigester() *Digester { return &Digester{h: sha256.New()} }

func (d *Digester) Write(p []byte) (int, error) {
	d.h.Write(p)
	d.n += int64(len(p))
	return len(p), nil
}

// Digest returns the digest of everything written so far.
func (d *Digester) Digest() DataDigest {
	var out DataDigest
	d.h.Sum(out.SHA256[:0])
	out.Size = d.n
	return out
}

// An AsyncDigester is a Digester that hashes on a goroutine of its own, so
// that the SHA-256 runs alongside the caller's work (decrypting what it
// digests) instead of slowing it down. Its buffers are reused: its memory
// is fixed whatever the size of the data.
type AsyncDigester struct {
	w *asyncwrite.Writer
	d *Digester
}

const (
	asyncDigestBuffers = 4
	asyncDigestChunk   = 256 << 10
)

// NewAsyncDigester starts an AsyncDigester. Its goroutine runs until
// Digest is called.
func NewAsyncDigester() *AsyncDigester {
	d := NewDigester()
	return &AsyncDigester{w: asyncwrite.New(d, asyncDigestChunk, asyncDigestBuffers), d: d}
}

// Write hands p to the digester's goroutine. It fails only after Digest.
func (a *AsyncDigester) Write(p []byte) (int, error) { return a.w.Write(p) }

// Digest waits until everything written is hashed and returns the digest.
// Writes after it fail; calling it again returns the same digest.
func (a *AsyncDigester) Digest() DataDigest {
	a.w.Close() // a Digester never fails
	return a.d.Digest()
}

// A SealWriter encrypts a record as it is written. Close must be called to
// finish the message.
type SealWriter struct {
	plaintext  io.WriteCloser
	digester   *Digester
	keyPackets [32]byte
	// sessionKeyID is SessionKeyID of the session key.
	sessionKeyID [32]byte
	tail         *asyncwrite.Writer // nil when the data path writes synchronously
	closed       bool
}

// Seal starts an OpenPGP message to recipients on dst and returns a writer
// for the plaintext. It draws a fresh random session key, writes one key
// packet per recipient and then streams the encrypted data packet, which
// holds one binary literal data packet with an empty file name and a zero
// date: no metadata travels in the clear, and nothing is compressed.
func Seal(dst io.Writer, profile Profile, recipients ...*Key) (*SealWriter, error) {
	if _, err := ParseProfile(string(profile)); err != nil {
		return nil, err
	}
	if len(recipients) == 0 {
		return nil, fmt.Errorf("envelope: seal: no recipients")
	}
	pubs := make([]*packet.PublicKey, len(recipients))
	for i, r := range recipients {
		pub, err := recipientKey(r, profile)
		if err != nil {
			return nil, err
		}
		pubs[i] = pub
	}
	sessionKey := make([]byte, 32)
	defer clear(sessionKey)
	if _, err := io.ReadFull(rand.Reader, sessionKey); err != nil {
		return nil, fmt.Errorf("envelope: seal: drawing session key: %w", err)
	}
	aead := profile == Modern
	cfg := &packet.Config{AEADConfig: &packet.AEADConfig{DefaultMode: packet.AEADModeGCM, ChunkSize: aeadChunkSize}}
	kph := sha256.New()
	for _, pub := range pubs {
		if err := packet.SerializeEncryptedKeyAEAD(io.MultiWriter(dst, kph), pub, packet.CipherAES256, aead, sessionKey, cfg); err != nil {
			return nil, fmt.Errorf("envelope: seal: writing key packet for %X: %w", pub.Fingerprint, err)
		}
	}
	var keyPackets [32]byte
	kph.Sum(keyPackets[:0])
	skID := sessionKeyIDOf(sessionKey)
	d := NewDigester()
	var contents io.WriteCloser
	var tail *asyncwrite.Writer
	var err error
	if aead {
		// GCM runs on the caller's goroutine; SHA-256 of the ciphertext
		// and the write to dst run on another, so both cores work.
		tail = asyncwrite.New(io.MultiWriter(dst, d), asyncChunk, 4)
		contents, err = packet.SerializeSymmetricallyEncrypted(tail, packet.CipherAES256, true,
			packet.CipherSuite{Cipher: packet.CipherAES256, Mode: packet.AEADModeGCM}, sessionKey, cfg)
	} else {
		// The SEIPDv1 writer hashes the packet into d as it encrypts, on
		// the caller's goroutine: stitched into CFB's serial AES chain,
		// SHA-256 costs far less than on a goroutine of its own (see
		// package seipd1).
		contents, err = seipd1.NewWriter(dst, sessionKey, d)
	}
	if err != nil {
		if tail != nil {
			tail.Close()
		}
		return nil, fmt.Errorf("envelope: seal: starting data packet: %w", err)
	}
	lit, err := packet.SerializeLiteral(contents, true, "", 0)
	if err != nil {
		if tail != nil {
			tail.Close()
		}
		return nil, fmt.Errorf("envelope: seal: starting literal packet: %w", err)
	}
	return &SealWriter{plaintext: lit, digester: d, keyPackets: keyPackets, sessionKeyID: skID, tail: tail}, nil
}

// recipientKey returns the encryption key of r that a record of the given
// profile may be sealed or rewrapped to.
func recipientKey(r *Key, profile Profile) (*packet.PublicKey, error) {
	pub, err := r.encryptionKey()
	if err != nil {
		return nil, err
	}
	if profile == Compat {
		if err := compatRecipient(r, pub); err != nil {
			return nil, err
		}
	}
	return pub, nil
}

// compatRecipient refuses an encryption key that a v3 key packet (the
// compat profile's) cannot be addressed to: anything but a v4 key.
func compatRecipient(r *Key, pub *packet.PublicKey) error {
	if pub.Version != 4 {
		return wrapf(ErrProfileMismatch, "key %s is a v%d key; the compat profile's v3 key packets need a v4 key", r.Fingerprint(), pub.Version)
	}
	return nil
}

// Write encrypts p.
func (w *SealWriter) Write(p []byte) (int, error) {
	if w.closed {
		return 0, fmt.Errorf("envelope: write after Close")
	}
	return w.plaintext.Write(p)
}

// Close finishes the literal and encrypted data packets (writing the MDC or
// final AEAD tag). It does not close the destination writer.
func (w *SealWriter) Close() error {
	if w.closed {
		return nil
	}
	w.closed = true
	err := w.plaintext.Close()
	if w.tail != nil {
		if terr := w.tail.Close(); err == nil {
			err = terr
		}
	}
	return err
}

// Digest returns the SHA-256 and size of the encrypted data packet written
// so far; after Close it identifies the record's ciphertext.
func (w *SealWriter) Digest() DataDigest { return w.digester.Digest() }

// KeyPackets returns KeyPacketsDigest of the key packets Seal wrote: the
// submission statement's key-packets-sha256.
func (w *SealWriter) KeyPackets() [32]byte { return w.keyPackets }

// SessionKeyID returns the one-way id of the message's session key (see
// SessionKeyID), which the device's approval will carry.
func (w *SealWriter) SessionKeyID() [32]byte { return w.sessionKeyID }
