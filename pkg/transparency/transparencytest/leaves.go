// Package transparencytest builds transparency logs in memory for tests:
// leaves of every kind, and a log (tree, map leaves, signed and cosigned
// checkpoints, proofs and tiles) that can also be made to lie.
package transparencytest

import (
	"crypto/sha256"
	"fmt"
	"time"

	"github.com/keyholder/keyholder/pkg/envelope"
	"github.com/keyholder/keyholder/pkg/statement"
	"github.com/keyholder/keyholder/pkg/transparency"
)

// Time is the time every leaf built here carries.
var Time = time.Date(2026, 11, 27, 3, 4, 5, 0, time.UTC)

// Signature is the stand-in signature of signed leaves: the log does not
// check statement signatures, readers of the statement do.
var Signature = []byte("not a real OpenPGP signature")

// Fingerprint returns a well-formed key fingerprint derived from name.
func Fingerprint(name string) string {
	return fmt.Sprintf("%X", sha256.Sum256([]byte("fingerprint "+name)))[:40]
}

func digest(name string) [32]byte { return sha256.Sum256([]byte(name)) }

func must(b []byte, err error) []byte {
	if err != nil {
		panic(err)
	}
	return b
}

// ChainLink returns the signed leaf of link seq of user's chain, adding
// the device key named key. Its prev is made up: use a Chain for links
// that follow one another.
func ChainLink(user string, seq int64, key string) []byte {
	var prev [32]byte
	if seq > 0 {
		prev = digest(fmt.Sprintf("%s link %d", user, seq-1))
	}
	return chainLink(user, seq, prev, key, key)
}

func chainLink(user string, seq int64, prev [32]byte, key, signer string) []byte {
	l := &statement.ChainLink{User: user, Seq: seq, Prev: prev, Action: statement.ActionAddDevice, Key: Fingerprint(key),
		KeySHA256: digest(key), Signer: Fingerprint(signer), Time: Time}
	return transparency.Leaf(must(l.Marshal()), Signature)
}

// A Chain makes the leaves of one user's key chain, each link following
// the one before (seq and prev), as pkg/keychain would accept them but
// for the signatures.
type Chain struct {
	User  string
	epoch int64
	seq   int64
	prev  [32]byte
	first string
}

// Add returns the leaf of the next link, adding the device key named key,
// signed by the chain's first device (or by key, for the first link).
func (c *Chain) Add(key string) []byte {
	if c.seq == 0 {
		c.first = key
	}
	leaf := chainLink(c.User, c.seq, c.prev, key, c.first)
	stmt, _, err := transparency.SplitLeaf(leaf)
	if err != nil {
		panic(err)
	}
	c.seq, c.prev = c.seq+1, sha256.Sum256(stmt)
	return leaf
}

// Reset returns the leaf of the reset of the chain to its next epoch,
// after which Add starts a new chain.
func (c *Chain) Reset() []byte {
	c.epoch++
	c.seq, c.prev = 0, [32]byte{}
	return ChainReset(c.User, c.epoch)
}

func approval(record, user string) *statement.Approval {
	return &statement.Approval{Record: record, User: user, Device: Fingerprint(user + " device"),
		Submitter: Fingerprint("party"), KeyPackets: digest("key packets " + record),
		SessionKeyID:   digest("session key " + record),
		Ciphertext:     envelope.DataDigest{SHA256: digest("ciphertext " + record), Size: 1024},
		MetadataSHA256: digest("metadata " + record), Request: "req-" + record, Time: Time}
}

// Approval returns the signed leaf of user's approval of record.
func Approval(record, user string) []byte {
	return transparency.Leaf(must(approval(record, user).Marshal()), Signature)
}

// Rejection returns the signed leaf of user's rejection of record.
func Rejection(record, user string) []byte {
	a := approval(record, user)
	r := &statement.Rejection{Record: a.Record, User: a.User, Device: a.Device, Submitter: a.Submitter,
		KeyPackets: a.KeyPackets, Ciphertext: a.Ciphertext, MetadataSHA256: a.MetadataSHA256,
		Request: a.Request, Reason: statement.ReasonDeclined, Time: a.Time}
	return transparency.Leaf(must(r.Marshal()), Signature)
}

// Grant returns the signed leaf of a grant of record to the party named
// grantee.
func Grant(record, grantee string) []byte {
	g := &statement.Grant{Record: record, Grantee: Fingerprint(grantee), KeyPacketSHA256: digest("packet " + grantee),
		PurposeSHA256: digest("purpose"), Expires: Time.Add(time.Hour), Request: "access-" + record, Time: Time}
	return transparency.Leaf(must(g.Marshal()), Signature)
}

// Revocation returns the unsigned leaf of the revocation of grant id.
func Revocation(id, grantee string) []byte {
	r := &statement.Revocation{Kind: statement.RevokedGrant, ID: id, Fingerprint: Fingerprint(grantee), Time: Time}
	return must(r.Marshal())
}

// ChainReset returns the unsigned leaf of the reset of user's chain.
func ChainReset(user string, epoch int64) []byte {
	return must((&statement.ChainReset{User: user, Epoch: epoch, Time: Time}).Marshal())
}

// Submission returns a signed submission leaf, which is not a log leaf
// kind.
func Submission(user string) []byte {
	s := &statement.Submission{User: user, Submitter: Fingerprint("party"), KeyPackets: digest("kp"),
		Ciphertext: envelope.DataDigest{SHA256: digest("ct"), Size: 1}, MetadataSHA256: digest("md")}
	return transparency.Leaf(must(s.Marshal()), Signature)
}
