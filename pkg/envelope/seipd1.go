package envelope

import (
	"io"

	"github.com/ProtonMail/go-crypto/openpgp/packet"
)

// newSEIPDv1Writer starts a SEIPDv1 (AES-256, MDC) packet on w.
func newSEIPDv1Writer(w io.Writer, key []byte) (io.WriteCloser, error) {
	return packet.SerializeSymmetricallyEncrypted(w, packet.CipherAES256, false, packet.CipherSuite{}, key, nil)
}

// newSEIPDv1Reader decrypts a SEIPDv1 packet.
func newSEIPDv1Reader(se *packet.SymmetricallyEncrypted, c packet.CipherFunction, key []byte) (io.ReadCloser, error) {
	return se.Decrypt(c, key)
}
