// Package errs holds the envelope errors that its internal packages return
// too, so that errors.Is matches them whichever package found the fault.
// Package envelope exports them and documents what they mean.
package errs

import (
	"errors"
	"fmt"
)

var (
	ErrMalformed = errors.New("envelope: malformed OpenPGP message")
	ErrIntegrity = errors.New("envelope: integrity check failed")
)

// Wrapf returns an error that matches sentinel with errors.Is and carries a
// formatted detail.
func Wrapf(sentinel error, format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{sentinel}, args...)...)
}

// IntegrityError turns an error met while reading encrypted data into one that
// matches ErrIntegrity, unless it already reports a malformed message or a
// failed check.
func IntegrityError(err error) error {
	if errors.Is(err, ErrMalformed) || errors.Is(err, ErrIntegrity) {
		return err
	}
	return Wrapf(ErrIntegrity, "%v", err)
}
