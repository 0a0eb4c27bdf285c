package transparency

import (
	"bytes"
	"errors"
	"fmt"

	"github.com/keyholder/keyholder/pkg/statement"
)

// An Attribution says which user history a log leaf belongs to. The
// server builds the map with it and a monitor replays the map with it, so
// both follow one rule.
type Attribution struct {
	// User and History name the history the leaf is folded into; both are
	// empty for a leaf of no history (the map leaf, a grant revocation).
	User    string
	History History
	// Record is set for approvals and rejections: the leaf binds Record to
	// User, and later grants of Record are attributed to User by that
	// binding (a grant names its record, not its user).
	Record string
}

// ErrAttribution is wrapped by the errors of leaves that cannot be
// attributed to a history: a grant of a record that no earlier leaf bound
// to a user, or an approval or rejection of a record bound to another user.
var ErrAttribution = errors.New("transparency: leaf not attributable")

// Attribute returns the history a log leaf belongs to:
//
//   - a chain link or chain reset: the "chain" history of its user;
//   - an approval or rejection: the "decisions" history of its user, and
//     the leaf binds its record to that user (Attribution.Record);
//   - a grant: the "decisions" history of the user its record is bound to,
//     which recordUser returns ("" when the record is bound to no user);
//   - a grant revocation and the map leaf: no history (a revocation names
//     the server's grant id, which no leaf binds to a record or user, so
//     no reader of the log alone could attribute it).
//
// recordUser is the record → user binding of the leaves before this one:
// a monitor keeps it from the Record of earlier attributions; the server
// may answer from its records table, whose user is the one every approval
// and rejection of the record names. An error of recordUser is returned
// as is. Signed kinds must carry a signature and server-written kinds must
// not; any other leaf (a submission, a challenge, bytes not in a leaf
// format) is an error wrapping ErrFormat.
func Attribute(leaf []byte, recordUser func(record string) (user string, err error)) (Attribution, error) {
	stmt, sig, err := SplitLeaf(leaf)
	if err != nil {
		return Attribution{}, err
	}
	if sig == nil {
		return attributeUnsigned(stmt)
	}
	s, err := statement.ParseStatement(stmt)
	if err != nil {
		return Attribution{}, fmt.Errorf("%w leaf: %v", ErrFormat, err)
	}
	switch s := s.(type) {
	case *statement.ChainLink:
		return Attribution{User: s.User, History: Chain}, nil
	case *statement.Approval:
		return attributeDecision(s.Record, s.User, recordUser)
	case *statement.Rejection:
		return attributeDecision(s.Record, s.User, recordUser)
	case *statement.Grant:
		user, err := recordUser(s.Record)
		if err != nil {
			return Attribution{}, err
		}
		if user == "" {
			return Attribution{}, fmt.Errorf("%w: grant of record %s, which no earlier approval or rejection binds to a user", ErrAttribution, s.Record)
		}
		return Attribution{User: user, History: Decisions}, nil
	default:
		return Attribution{}, fmt.Errorf("%w leaf: a %T statement is not a log leaf", ErrFormat, s)
	}
}

func attributeDecision(record, user string, recordUser func(string) (string, error)) (Attribution, error) {
	bound, err := recordUser(record)
	if err != nil {
		return Attribution{}, err
	}
	if bound != "" && bound != user {
		return Attribution{}, fmt.Errorf("%w: decision on record %s names user %s, but the record is bound to user %s", ErrAttribution, record, user, bound)
	}
	return Attribution{User: user, History: Decisions, Record: record}, nil
}

// attributeUnsigned attributes the leaves the server writes itself.
func attributeUnsigned(stmt []byte) (Attribution, error) {
	if bytes.HasPrefix(stmt, []byte(MapLeafHeader+"\n")) {
		if _, err := ParseMapLeaf(stmt); err != nil {
			return Attribution{}, err
		}
		return Attribution{}, nil
	}
	reset, errReset := statement.ParseChainReset(stmt)
	if errReset == nil {
		return Attribution{User: reset.User, History: Chain}, nil
	}
	_, errRevocation := statement.ParseRevocation(stmt)
	if errRevocation == nil {
		return Attribution{}, nil
	}
	if _, err := statement.ParseStatement(stmt); err == nil {
		return Attribution{}, fmt.Errorf("%w leaf: a signed statement without its signature", ErrFormat)
	}
	return Attribution{}, fmt.Errorf("%w leaf: not a map leaf, chain reset (%v) or revocation (%v)", ErrFormat, errReset, errRevocation)
}
