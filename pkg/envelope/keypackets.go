package envelope

import "crypto/sha256"

// KeyPacketsDigest returns the SHA-256 that submission, approval and
// rejection statements carry as key-packets-sha256: the hash of the
// message's key packets, each byte for byte as it appears (Raw), in message
// order. It is the SHA-256 of every byte of the message before the data
// packet, which a party using other tools can compute with sha256sum.
func KeyPacketsDigest(kps []*KeyPacket) [32]byte {
	h := sha256.New()
	for _, kp := range kps {
		h.Write(kp.Raw)
	}
	var out [32]byte
	h.Sum(out[:0])
	return out
}
