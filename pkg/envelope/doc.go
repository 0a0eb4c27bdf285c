// Package envelope is Keyholder's OpenPGP envelope: it seals records to a
// user's device keys, splits a sealed message into its key packets and its
// encrypted data packet, rewraps one record's session key to another public
// key on the device, and opens messages on the party side. Its [Key] is the
// OpenPGP key of a device or party. The canonical statements that bind a
// record to its ciphertext, and their signatures, are package
// [github.com/keyholder/keyholder/pkg/statement].
//
// Every message this package writes is a standard OpenPGP message (RFC 9580):
//
//	PKESK+ || SEIPD(literal data)
//
// so GnuPG, Sequoia and OpenPGP.js can open it. Two profiles fix the data
// packet at seal time (see [Profile]): [Compat] writes v3 PKESKs and SEIPDv1,
// which GnuPG 2.2 reads; [Modern] writes v6 PKESKs and SEIPDv2 with
// AES-256-GCM.
//
// The API is small on purpose:
//
//	w, err := envelope.Seal(dst, envelope.Compat, deviceKey)   // party or server-side tools
//	msg, err := envelope.Split(src)                             // server: key packets + data stream
//	pkesk, err := envelope.Rewrap(kp, envelope.Compat, device, party) // device
//	r, err := envelope.Open(src, partyKey)                     // party
//
// Bodies are always streamed: memory does not grow with the record size.
// The format is specified in docs/protocol.md at the root of the repository.
package envelope
