package statement

import (
	"crypto/sha256"
	"encoding/binary"
)

// MetadataDigest returns the SHA-256 that statements carry as
// metadata-sha256. It binds both the public metadata (JSON bytes exactly as
// uploaded) and the private metadata (an OpenPGP message sealed to the
// device keys, exactly as uploaded; nil if there is none), each prefixed by
// its length as a 64-bit big-endian integer so that no two pairs collide.
func MetadataDigest(public, private []byte) [32]byte {
	h := sha256.New()
	var n [8]byte
	binary.BigEndian.PutUint64(n[:], uint64(len(public)))
	h.Write(n[:])
	h.Write(public)
	binary.BigEndian.PutUint64(n[:], uint64(len(private)))
	h.Write(n[:])
	h.Write(private)
	var out [32]byte
	h.Sum(out[:0])
	return out
}

// PurposeDigest returns the SHA-256 of a purpose text, as grant statements
// carry it.
func PurposeDigest(purpose string) [32]byte { return sha256.Sum256([]byte(purpose)) }
