package statement

import (
	"errors"
	"fmt"

	"github.com/keyholder/keyholder/pkg/envelope"
)

// Errors returned by this package. Callers test for them with errors.Is; the
// returned error usually wraps one of these with details of what was found.
//
// Their texts, like every error text of this package, keep the "envelope:"
// prefix they had when statements lived in package envelope: the server
// returns them to clients as problem details, and docs/protocol.md quotes
// them.
var (
	// ErrBadSignature means a statement signature does not verify against
	// the given key, or is not a single binary signature.
	ErrBadSignature = errors.New("envelope: invalid signature")

	// ErrStatement means a statement is not in its canonical form.
	ErrStatement = errors.New("envelope: non-canonical statement")
)

// wrapf returns an error that matches sentinel with errors.Is and carries a
// formatted detail.
func wrapf(sentinel error, format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{sentinel}, args...)...)
}

// malformedSig returns an error matching both ErrBadSignature and
// envelope.ErrMalformed (the signature is not well-formed OpenPGP).
func malformedSig(format string, args ...any) error {
	return fmt.Errorf("%w (%w): %s", ErrBadSignature, envelope.ErrMalformed, fmt.Sprintf(format, args...))
}
