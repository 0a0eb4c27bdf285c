// Package statement holds every text Keyholder signs or logs, each in one
// canonical byte form, and the strict OpenPGP signatures over the signed
// ones.
//
// Signed statements (see [ParseStatement] for the canonical form):
//
//   - [Submission]: a party uploads a record;
//   - [Approval] and [Rejection]: a device decides on a pending record;
//   - [Grant]: a device opens one record to one party;
//   - [Challenge]: a device or party logs in;
//   - [ChainLink]: a device adds or revokes a key of its user's key chain.
//
// [Sign] signs only texts that parse as one of these, and [Verify] accepts
// only a single binary signature by the given key over such a text, so a
// key held by Keyholder software never signs arbitrary bytes and a
// signature means exactly one thing. [MetadataDigest] and [PurposeDigest]
// are the digests statements carry for a record's metadata and a grant's
// purpose.
//
// Log leaves, which the server appends to the transparency log for acts
// that no device signs: [Revocation] (a revoked grant) and [ChainReset]
// (the operator's reset of a user's key chain). They share the canonical
// form but are never signed: [Sign], [Verify] and [ParseStatement] refuse
// them.
//
// The formats are specified in docs/protocol.md; testdata/vectors holds test
// vectors (statements, keys, signatures and the verdicts) for
// implementations in other languages.
//
// This package imports package envelope, not the other way round: a
// statement binds envelope values (the record's [envelope.DataDigest]) and
// is signed with an [envelope.Key], while sealing, splitting, rewrapping and
// opening records need no statement. Key validity policy (which algorithms
// and subkeys may sign) stays with the key in envelope; what makes a
// signature acceptable for a statement is here.
package statement
