package server

import (
	"bytes"
	"errors"

	"github.com/ProtonMail/go-crypto/openpgp/armor"
	"github.com/ProtonMail/go-crypto/openpgp/packet"
)

func readArmoredSig(armored []byte) (*packet.Signature, error) {
	block, err := armor.Decode(bytes.NewReader(armored))
	if err != nil {
		return nil, err
	}
	if block.Type != "PGP SIGNATURE" {
		return nil, errors.New("not a signature")
	}
	p, err := packet.Read(block.Body)
	if err != nil {
		return nil, err
	}
	sig, ok := p.(*packet.Signature)
	if !ok {
		return nil, errors.New("not a signature packet")
	}
	if _, err := packet.Read(block.Body); err == nil {
		return nil, errors.New("more than one packet")
	}
	return sig, nil
}
