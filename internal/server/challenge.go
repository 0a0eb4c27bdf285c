package server

import (
	"bytes"
	"crypto"
	"errors"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/packet"
)

// verifyChallenge checks an armored detached signature over the auth
// challenge text (api.ChallengeText) with the armored public key.
//
// envelope.Verify only accepts the canonical record statements, so the
// challenge, which is not one, is verified here with go-crypto directly,
// with the same policy: a binary-document signature, SHA-256 or stronger.
// When pkg/envelope grows a challenge statement kind this moves there.
func verifyChallenge(armoredKey, text, signature []byte) error {
	ring, err := openpgp.ReadArmoredKeyRing(bytes.NewReader(armoredKey))
	if err != nil || len(ring) != 1 {
		return errors.New("bad key")
	}
	cfg := &packet.Config{}
	signer, err := openpgp.CheckArmoredDetachedSignature(ring, bytes.NewReader(text), bytes.NewReader(signature), cfg)
	if err != nil || signer == nil {
		return errors.New("bad signature")
	}
	// Re-read the signature packet for its hash and type.
	return checkSigPolicy(signature)
}

func checkSigPolicy(armored []byte) error {
	sig, err := readArmoredSig(armored)
	if err != nil {
		return err
	}
	if sig.SigType != packet.SigTypeBinary {
		return errors.New("not a binary-document signature")
	}
	switch sig.Hash {
	case crypto.SHA256, crypto.SHA384, crypto.SHA512:
		return nil
	}
	return errors.New("weak signature hash")
}
