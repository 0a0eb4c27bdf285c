package envelope

import (
	"errors"

	"github.com/keyholder/keyholder/pkg/envelope/internal/errs"
)

// Errors returned by this package. Callers test for them with errors.Is; the
// returned error usually wraps one of these with details of what was found.
var (
	// ErrMalformed means the input is not a well-formed OpenPGP message of the
	// shape PKESK+ || SEIPD: a bad packet header, a truncated packet, an
	// unexpected packet or trailing data.
	ErrMalformed = errs.ErrMalformed // "envelope: malformed OpenPGP message"

	// ErrUnsupported means the input is well-formed OpenPGP but uses a
	// feature this package refuses (a key algorithm, a packet version).
	ErrUnsupported = errors.New("envelope: unsupported OpenPGP feature")

	// ErrNoMatchingKey means no key packet in the message is addressed to
	// any of the given keys.
	ErrNoMatchingKey = errors.New("envelope: no key packet is addressed to the given key")

	// ErrWrongKey means a key packet named the key but the key could not
	// decrypt it.
	ErrWrongKey = errors.New("envelope: the key cannot decrypt the key packet")

	// ErrProfileMismatch means a key packet's version does not match the
	// data packet version that the record's profile fixes.
	ErrProfileMismatch = errors.New("envelope: key packet version does not match the record profile")

	// ErrIntegrity means the encrypted data failed its integrity check (MDC
	// or AEAD tag) or ended early. Plaintext read before it must be discarded.
	ErrIntegrity = errs.ErrIntegrity // "envelope: integrity check failed"

	// ErrKeyLocked means a private key is still encrypted with its passphrase.
	ErrKeyLocked = errors.New("envelope: private key is locked")

	// ErrNoPrivateKey means an operation needed a private key but was given
	// a public key only.
	ErrNoPrivateKey = errors.New("envelope: key has no private part")
)

// wrapf returns an error that matches sentinel with errors.Is and carries a
// formatted detail.
var wrapf = errs.Wrapf
