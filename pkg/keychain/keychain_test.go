package keychain_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/armor"
	"github.com/ProtonMail/go-crypto/openpgp/packet"

	"github.com/keyholder/keyholder/pkg/api"
	"github.com/keyholder/keyholder/pkg/envelope"
	"github.com/keyholder/keyholder/pkg/keychain"
	"github.com/keyholder/keyholder/pkg/statement"
)

// t0 dates the first link of every test chain; link i is dated i minutes
// later.
var t0 = time.Date(2025, 1, 2, 3, 4, 0, 0, time.UTC)

func at(i int) time.Time { return t0.Add(time.Duration(i) * time.Minute) }

// keyring holds the keys of the tests, made once. A, B and C are alice's
// devices, R and R2 recovery keys. K and K2 are keys the attacks try to
// put on her chain, L the key a valid link adds after each refusal. Op is
// the operator's own key and X bob's device.
type keyring struct{ A, B, C, R, R2, K, K2, L, Op, X *envelope.Key }

var (
	ringOnce sync.Once
	ring     keyring
	ringErr  error
)

func keys(t testing.TB) *keyring {
	t.Helper()
	ringOnce.Do(func() {
		for name, k := range ring.fields() {
			if *k, ringErr = envelope.GenerateKey("test " + name); ringErr != nil {
				return
			}
		}
	})
	if ringErr != nil {
		t.Fatal(ringErr)
	}
	return &ring
}

// name returns the ring's name of the key with fingerprint fpr (A, B, …),
// for readable failures.
func (r *keyring) name(fpr string) string {
	for name, k := range r.fields() {
		if (*k).Fingerprint() == fpr {
			return name
		}
	}
	return fpr
}

// fields returns the ring's fields by name.
func (r *keyring) fields() map[string]**envelope.Key {
	out := map[string]**envelope.Key{}
	v := reflect.ValueOf(r).Elem()
	for i := 0; i < v.NumField(); i++ {
		out[v.Type().Field(i).Name] = v.Field(i).Addr().Interface().(**envelope.Key)
	}
	return out
}

func (r *keyring) names(ks []*envelope.Key) []string {
	out := []string{}
	for _, k := range ks {
		out = append(out, r.name(k.Fingerprint()))
	}
	return out
}

// A step is one link of a test chain: signer does action on target.
type step struct {
	action         string
	target, signer *envelope.Key
}

func addDevice(target, signer *envelope.Key) step {
	return step{statement.ActionAddDevice, target, signer}
}
func revokeDevice(target, signer *envelope.Key) step {
	return step{statement.ActionRevokeDevice, target, signer}
}
func setRecovery(target, signer *envelope.Key) step {
	return step{statement.ActionSetRecovery, target, signer}
}
func removeRecovery(target, signer *envelope.Key) step {
	return step{statement.ActionRemoveRecovery, target, signer}
}

// extend signs the link that extends s with st (dated at(s.Len())) and
// applies it.
func extend(t testing.TB, s *keychain.State, st step) api.ChainLink {
	t.Helper()
	l, err := s.Sign(st.action, st.target, st.signer, at(s.Len()))
	if err != nil {
		t.Fatalf("signing link %d (%s): %v", s.Len(), st.action, err)
	}
	if err := s.Apply(l); err != nil {
		t.Fatalf("applying link %d (%s): %v", s.Len(), st.action, err)
	}
	return l
}

// build makes user's chain of steps.
func build(t testing.TB, user string, steps ...step) (*keychain.State, []api.ChainLink) {
	t.Helper()
	s := keychain.New(user)
	var links []api.ChainLink
	for _, st := range steps {
		links = append(links, extend(t, s, st))
	}
	return s, links
}

// richSteps make a chain with two active devices (A, B), a revoked one
// (C) and a recovery key (R); the chain before its last step has no
// recovery key.
func richSteps(k *keyring) []step {
	return []step{addDevice(k.A, k.A), addDevice(k.B, k.A), addDevice(k.C, k.B), revokeDevice(k.C, k.A), setRecovery(k.R, k.B)}
}

func rich(t testing.TB) *keychain.State {
	s, _ := build(t, "alice", richSteps(keys(t))...)
	return s
}

func noRecovery(t testing.TB) *keychain.State {
	steps := richSteps(keys(t))
	s, _ := build(t, "alice", steps[:len(steps)-1]...)
	return s
}

func empty(testing.TB) *keychain.State { return keychain.New("alice") }

// lone is a chain with one active device, A.
func lone(t testing.TB) *keychain.State {
	s, _ := build(t, "alice", addDevice(keys(t).A, keys(t).A))
	return s
}

// draft returns the link that extends s with signer doing action on
// target, as State.Sign would write it, for an attack to alter before it
// is signed.
func draft(s *keychain.State, st step) statement.ChainLink {
	seq, prev := s.Next()
	return statement.ChainLink{User: s.User(), Seq: seq, Prev: prev, Action: st.action, Key: st.target.Fingerprint(),
		KeySHA256: keychain.KeyHash(st.target), Signer: st.signer.Fingerprint(), Time: at(s.Len())}
}

// forge signs l with signer, whoever that is, and attaches publicKey.
func forge(t testing.TB, l statement.ChainLink, signer *envelope.Key, publicKey string) api.ChainLink {
	t.Helper()
	stmt, err := l.Marshal()
	if err != nil {
		t.Fatalf("marshal: %v", err)
	}
	sig, err := statement.Sign(stmt, signer)
	if err != nil {
		t.Fatalf("sign: %v", err)
	}
	return api.ChainLink{Statement: string(stmt), Signature: string(sig), PublicKey: publicKey}
}

func armored(k *envelope.Key) string { return string(k.Public().Armor()) }

// edit replaces the value of field in link's statement, keeping the
// signature made over the original.
func edit(t testing.TB, link api.ChainLink, field, value string) api.ChainLink {
	t.Helper()
	re := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(field) + `: .*$`)
	if !re.MatchString(link.Statement) {
		t.Fatalf("no field %q in %q", field, link.Statement)
	}
	link.Statement = re.ReplaceAllLiteralString(link.Statement, field+": "+value)
	return link
}

// flipLastByte flips a bit of the last byte of an armored signature (the
// end of its last MPI) and armors it again, so that only the signature
// itself is wrong.
func flipLastByte(t testing.TB, sig string) string {
	t.Helper()
	block, err := armor.Decode(strings.NewReader(sig))
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(block.Body)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)-1] ^= 1
	var out bytes.Buffer
	w, err := armor.Encode(&out, block.Type, nil)
	if err != nil {
		t.Fatal(err)
	}
	w.Write(b)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return out.String()
}

func hexHash(h [32]byte) string { return hex.EncodeToString(h[:]) }

// A snapshot is everything a caller can observe of a state.
type snapshot struct {
	Pin        keychain.Pin
	Len        int
	Next       int64
	Head       [32]byte
	Genesis    string
	Devices    []string
	Recipients []string
	Recovery   string
	Members    map[string]string // ring name → "added/revoked"
}

func snap(t testing.TB, s *keychain.State) snapshot {
	k := keys(t)
	next, _ := s.Next()
	sn := snapshot{Pin: *s.Pin(), Len: s.Len(), Next: next, Head: s.Head(), Genesis: s.Genesis(),
		Devices: k.names(s.Devices()), Recipients: k.names(s.Recipients()), Members: map[string]string{}}
	if r := s.Recovery(); r != nil {
		sn.Recovery = k.name(r.Fingerprint())
	}
	for name, key := range k.fields() {
		if m, ok := s.Device((*key).Fingerprint()); ok {
			sn.Members[name] = fmt.Sprintf("%d/%d", m.Added, m.Revoked)
		}
	}
	return sn
}

// refuse applies link to s and checks that it is refused with an error
// wrapping ErrChain that contains why, and that s is as it was.
func refuse(t testing.TB, s *keychain.State, link api.ChainLink, why string) {
	t.Helper()
	before := snap(t, s)
	err := s.Apply(link)
	if !errors.Is(err, keychain.ErrChain) {
		t.Fatalf("Apply = %v, want an error wrapping ErrChain", err)
	}
	if !strings.Contains(err.Error(), why) {
		t.Errorf("Apply = %q, want it to say %q", err, why)
	}
	if after := snap(t, s); !reflect.DeepEqual(before, after) {
		t.Fatalf("refused link changed the state:\nbefore %+v\nafter  %+v", before, after)
	}
}

func TestValidChain(t *testing.T) {
	k := keys(t)
	s := keychain.New("alice")
	if s.Len() != 0 || s.Genesis() != "" || s.Head() != ([32]byte{}) || len(s.Recipients()) != 0 {
		t.Fatalf("new chain is not empty: %+v", snap(t, s))
	}
	var links []api.ChainLink
	for i, c := range []struct {
		step       step
		recipients []string
		recovery   string
	}{
		{addDevice(k.A, k.A), []string{"A"}, ""},
		{addDevice(k.B, k.A), []string{"A", "B"}, ""},
		{revokeDevice(k.A, k.B), []string{"B"}, ""},
		{setRecovery(k.R, k.B), []string{"B", "R"}, "R"},
		{setRecovery(k.R2, k.B), []string{"B", "R2"}, "R2"},
		{removeRecovery(k.R2, k.B), []string{"B"}, ""},
	} {
		link := extend(t, s, c.step)
		links = append(links, link)
		sn := snap(t, s)
		if !reflect.DeepEqual(sn.Recipients, c.recipients) || sn.Recovery != c.recovery {
			t.Fatalf("after link %d (%s %s): recipients %v recovery %q, want %v %q",
				i, c.step.action, k.name(c.step.target.Fingerprint()), sn.Recipients, sn.Recovery, c.recipients, c.recovery)
		}
		if s.Len() != i+1 || s.Head() != keychain.LinkHash([]byte(link.Statement)) || s.Genesis() != k.A.Fingerprint() {
			t.Fatalf("after link %d: len %d, head %x, genesis %s", i, s.Len(), s.Head(), k.name(s.Genesis()))
		}
		if seq, prev := s.Next(); seq != int64(i+1) || prev != s.Head() {
			t.Fatalf("after link %d: Next = %d, %x", i, seq, prev)
		}
		// Sign attaches the key it adds, and only then.
		adds := c.step.action == statement.ActionAddDevice || c.step.action == statement.ActionSetRecovery
		if (link.PublicKey != "") != adds {
			t.Fatalf("link %d (%s) public key %q", i, c.step.action, link.PublicKey)
		}
		// Each link is a detached signature by its signer over a canonical
		// statement that anyone can check on its own.
		if err := statement.Verify([]byte(link.Statement), []byte(link.Signature), c.step.signer.Public()); err != nil {
			t.Fatalf("link %d: %v", i, err)
		}
	}
	if m, ok := s.Device(k.A.Fingerprint()); !ok || m.Active() || m.Added != 0 || m.Revoked != 2 {
		t.Fatalf("device A: %+v %v", m, ok)
	}
	if m, ok := s.Device(k.B.Fingerprint()); !ok || !m.Active() || m.Added != 1 || m.Revoked != -1 {
		t.Fatalf("device B: %+v %v", m, ok)
	}
	if _, ok := s.Device(k.R.Fingerprint()); ok {
		t.Fatal("the recovery key is a device")
	}
	// Verify replays the links to the same state.
	v, err := keychain.Verify("alice", links)
	if err != nil {
		t.Fatal(err)
	}
	if a, b := snap(t, s), snap(t, v); !reflect.DeepEqual(a, b) {
		t.Fatalf("Verify:\n%+v\nApply:\n%+v", b, a)
	}
}

func TestSign(t *testing.T) {
	k := keys(t)
	s := keychain.New("alice")
	// Any zone and fraction of a second: the link is dated in whole UTC
	// seconds.
	when := time.Date(2025, 6, 1, 14, 0, 0, 999, time.FixedZone("CEST", 2*3600))
	link, err := s.Sign(statement.ActionAddDevice, k.A, k.A, when)
	if err != nil {
		t.Fatal(err)
	}
	l, err := statement.ParseChainLink([]byte(link.Statement))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(link.Statement, "time: 2025-06-01T12:00:00Z\n") || l.Seq != 0 || l.Prev != ([32]byte{}) {
		t.Fatalf("statement %q", link.Statement)
	}
	if s.Len() != 0 {
		t.Fatal("Sign applied the link")
	}
	// Only a key with its private part signs.
	if _, err := s.Sign(statement.ActionAddDevice, k.A, k.A.Public(), at(0)); err == nil {
		t.Fatal("signed with a public key")
	}
	// A revoke names the key-sha256 the device was added with, and
	// carries no key.
	s, _ = build(t, "alice", addDevice(k.A, k.A), addDevice(k.B, k.A))
	link, err = s.Sign(statement.ActionRevokeDevice, k.B, k.A, at(2))
	if err != nil {
		t.Fatal(err)
	}
	if link.PublicKey != "" || !strings.Contains(link.Statement, "key-sha256: "+hexHash(keychain.KeyHash(k.B))+"\n") {
		t.Fatalf("revoke link %+v", link)
	}
}

// A link dated the same second as the one before is accepted.
func TestSameTime(t *testing.T) {
	k := keys(t)
	s, _ := build(t, "alice", addDevice(k.A, k.A))
	link, err := s.Sign(statement.ActionAddDevice, k.B, k.A, at(0))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Apply(link); err != nil {
		t.Fatal(err)
	}
}

// twins returns two public keys with the same primary key: the second has
// one more encryption subkey. They have the same fingerprint and
// different key-sha256.
func twins(t testing.TB) (one, two *envelope.Key) {
	t.Helper()
	cfg := &packet.Config{Algorithm: packet.PubKeyAlgoEdDSA}
	e, err := openpgp.NewEntity("twin", "", "", cfg)
	if err != nil {
		t.Fatal(err)
	}
	parse := func() *envelope.Key {
		var b bytes.Buffer
		if err := e.Serialize(&b); err != nil {
			t.Fatal(err)
		}
		k, err := envelope.ParseKey(b.Bytes())
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	one = parse()
	if err := e.AddEncryptionSubkey(cfg); err != nil {
		t.Fatal(err)
	}
	two = parse()
	if one.Fingerprint() != two.Fingerprint() || keychain.KeyHash(one) == keychain.KeyHash(two) {
		t.Fatal("twins are not twins")
	}
	return one, two
}

// TestAttacks applies links that must be refused (forged, replayed, out of
// order, or changing the chain against its rules) and checks that each
// leaves the state as it was, which a valid link then still extends.
func TestAttacks(t *testing.T) {
	k := keys(t)
	type link func(t testing.TB, s *keychain.State) api.ChainLink
	// signed makes a valid link by st, for an attack to alter.
	signed := func(st step) link {
		return func(t testing.TB, s *keychain.State) api.ChainLink {
			t.Helper()
			l, err := s.Sign(st.action, st.target, st.signer, at(s.Len()))
			if err != nil {
				t.Fatal(err)
			}
			return l
		}
	}
	// forged drafts st, lets change alter it, and has signer sign it with
	// publicKey attached.
	forged := func(st step, change func(*statement.ChainLink), signer *envelope.Key, publicKey string) link {
		return func(t testing.TB, s *keychain.State) api.ChainLink {
			l := draft(s, st)
			if change != nil {
				change(&l)
			}
			return forge(t, l, signer, publicKey)
		}
	}
	// edited makes the valid link st and then changes a field of its
	// statement.
	edited := func(st step, field, value string) link {
		return func(t testing.TB, s *keychain.State) api.ChainLink {
			return edit(t, signed(st)(t, s), field, value)
		}
	}
	addK := addDevice(k.K, k.A) // the valid link most attacks start from
	bobLink := func(t testing.TB, _ *keychain.State) api.ChainLink {
		_, links := build(t, "bob", addDevice(k.X, k.X))
		return links[0]
	}
	// richLinks are the links of every rich state: the statements are
	// the same, whatever the signatures.
	_, richLinks := build(t, "alice", richSteps(k)...)
	replay := func(i int) link {
		return func(testing.TB, *keychain.State) api.ChainLink { return richLinks[i] }
	}
	prevOf := func(i int) func(*statement.ChainLink) {
		return func(l *statement.ChainLink) { l.Prev = keychain.LinkHash([]byte(richLinks[i].Statement)) }
	}
	privateK, err := k.K.MarshalPrivate([]byte("passphrase"), envelope.S2KIterated)
	if err != nil {
		t.Fatal(err)
	}
	one, two := twins(t)

	for _, c := range []struct {
		name string
		from func(testing.TB) *keychain.State
		link link
		why  string
	}{
		// Who signs.
		{"operator's key adds itself", rich, forged(addDevice(k.Op, k.Op), nil, k.Op, armored(k.Op)), "not an active device"},
		{"operator's key signs as device A", rich, forged(addDevice(k.Op, k.A), nil, k.Op, armored(k.Op)), "signature"},
		{"revoked device signs", rich, forged(addDevice(k.K, k.C), nil, k.C, armored(k.K)), "not an active device"},
		{"bob's device signs", rich, forged(addDevice(k.K, k.X), nil, k.X, armored(k.K)), "not an active device"},
		{"recovery key signs", rich, forged(addDevice(k.K, k.R), nil, k.R, armored(k.K)), "not an active device"},
		{"device B signs as device A", rich, forged(addK, nil, k.B, armored(k.K)), "signature"},
		{"key added signs for device A", rich, forged(addK, nil, k.K, armored(k.K)), "signature"},
		// The signature.
		{"signature bytes flipped", rich, func(t testing.TB, s *keychain.State) api.ChainLink {
			l := signed(addK)(t, s)
			l.Signature = flipLastByte(t, l.Signature)
			return l
		}, "signature"},
		{"signature over another link", rich, func(t testing.TB, s *keychain.State) api.ChainLink {
			l := signed(addK)(t, s)
			l.Signature = signed(addDevice(k.K2, k.A))(t, s).Signature
			return l
		}, "signature"},
		{"no signature", rich, func(t testing.TB, s *keychain.State) api.ChainLink {
			l := signed(addK)(t, s)
			l.Signature = ""
			return l
		}, "signature"},
		// The statement edited after signing, field by field.
		{"user edited", rich, edited(addK, "user", "bob"), "for user bob"},
		{"seq edited", rich, edited(addK, "seq", "6"), "has seq 6"},
		{"prev edited", rich, edited(addK, "prev", strings.Repeat("ab", 32)), "does not follow"},
		{"action edited", rich, edited(addK, "action", statement.ActionSetRecovery), "signature"},
		{"key edited", rich, edited(addK, "key", k.K2.Fingerprint()), "names key"},
		{"key-sha256 edited", rich, edited(addK, "key-sha256", hexHash(keychain.KeyHash(k.K2))), "key-sha256"},
		{"signer edited", rich, edited(addK, "signer", k.B.Fingerprint()), "signature"},
		{"time edited", rich, edited(addK, "time", "2026-01-01T00:00:00Z"), "signature"},
		{"statement not canonical", rich, func(t testing.TB, s *keychain.State) api.ChainLink {
			l := signed(addK)(t, s)
			l.Statement += "\n"
			return l
		}, "non-canonical"},
		{"statement of another kind", rich, func(t testing.TB, s *keychain.State) api.ChainLink {
			l := signed(addK)(t, s)
			l.Statement = strings.Replace(l.Statement, "keyholder-chain-link-v1", "keyholder-chain-link-v2", 1)
			return l
		}, "version line"},
		// The first link.
		{"genesis signed by another key", empty, forged(addDevice(k.A, k.Op), nil, k.Op, armored(k.A)), "link 0 must add the first device"},
		{"genesis naming A, signed by another key", empty, forged(addDevice(k.A, k.A), nil, k.Op, armored(k.A)), "signature"},
		{"genesis sets a recovery key", empty, forged(setRecovery(k.R, k.R), nil, k.R, armored(k.R)), "link 0 must add the first device"},
		{"genesis revokes", empty, forged(revokeDevice(k.A, k.A), nil, k.A, ""), "link 0 must add the first device"},
		{"genesis removes recovery", empty, forged(removeRecovery(k.A, k.A), nil, k.A, ""), "link 0 must add the first device"},
		{"genesis of another user", empty, bobLink, "for user bob"},
		{"genesis with seq 1", empty, forged(addDevice(k.A, k.A), func(l *statement.ChainLink) {
			l.Seq, l.Prev = 1, sha256.Sum256([]byte("x"))
		}, k.A, armored(k.A)), "has seq 1"},
		// Order.
		{"link for another user", rich, forged(addK, func(l *statement.ChainLink) { l.User = "bob" }, k.A, armored(k.K)), "for user bob"},
		{"seq skipped", rich, forged(addK, func(l *statement.ChainLink) { l.Seq++ }, k.A, armored(k.K)), "has seq 6"},
		{"seq repeated", rich, forged(addK, func(l *statement.ChainLink) { l.Seq-- }, k.A, armored(k.K)), "has seq 4"},
		{"sibling of the last link", rich, forged(addK, func(l *statement.ChainLink) {
			l.Seq--
			prevOf(3)(l)
		}, k.A, armored(k.K)), "has seq 4"},
		{"last link replayed", rich, replay(4), "has seq 4"},
		{"first link replayed", rich, replay(0), "has seq 0"},
		{"prev of an earlier link", rich, forged(addK, prevOf(3), k.A, armored(k.K)), "does not follow"},
		{"prev of nothing", rich, forged(addK, func(l *statement.ChainLink) { l.Prev = sha256.Sum256(nil) }, k.A, armored(k.K)), "does not follow"},
		{"dated before the previous link", rich, forged(addK, func(l *statement.ChainLink) { l.Time = at(4).Add(-time.Second) }, k.A, armored(k.K)), "before the link it follows"},
		// What add-device and set-recovery add.
		{"add an active device", rich, forged(addDevice(k.B, k.A), nil, k.A, armored(k.B)), "already held"},
		{"add the signer itself", rich, forged(addDevice(k.A, k.A), nil, k.A, armored(k.A)), "already held"},
		{"add a revoked device again", rich, forged(addDevice(k.C, k.A), nil, k.A, armored(k.C)), "already held"},
		{"add the recovery key as a device", rich, forged(addDevice(k.R, k.A), nil, k.A, armored(k.R)), "recovery key"},
		{"set an active device as recovery", rich, forged(setRecovery(k.B, k.A), nil, k.A, armored(k.B)), "already held"},
		{"set a revoked device as recovery", rich, forged(setRecovery(k.C, k.A), nil, k.A, armored(k.C)), "already held"},
		{"set the recovery key again", rich, forged(setRecovery(k.R, k.A), nil, k.A, armored(k.R)), "recovery key"},
		{"carries another key than it names", rich, forged(addK, nil, k.A, armored(k.K2)), "names key"},
		{"recovery carries another key", rich, forged(setRecovery(k.R2, k.A), nil, k.A, armored(k.K2)), "names key"},
		{"carries the key with another subkey", rich, forged(addDevice(one, k.A), nil, k.A, armored(two)), "key-sha256"},
		{"carries the key without a subkey", rich, forged(addDevice(two, k.A), nil, k.A, armored(one)), "key-sha256"},
		{"carries a private key", rich, forged(addK, nil, k.A, string(privateK)), "private key"},
		{"carries no key", rich, forged(addK, nil, k.A, ""), "carries no public key"},
		{"recovery carries no key", rich, forged(setRecovery(k.R2, k.A), nil, k.A, ""), "carries no public key"},
		{"carries no OpenPGP key", rich, forged(addK, nil, k.A, "not a key"), "the key it adds"},
		{"carries two keys", rich, forged(addK, nil, k.A, armored(k.K)+armored(k.K2)), "the key it adds"},
		// What revoke-device and remove-recovery remove.
		{"revoke a non-member", rich, forged(revokeDevice(k.Op, k.A), nil, k.A, ""), "not an active device"},
		{"revoke the last active device", lone, forged(revokeDevice(k.A, k.A), nil, k.A, ""), "last active device"},
		{"revoke a revoked device", rich, forged(revokeDevice(k.C, k.A), nil, k.A, ""), "not an active device"},
		{"revoke the recovery key as a device", rich, forged(revokeDevice(k.R, k.A), nil, k.A, ""), "not an active device"},
		{"revoke with another key-sha256", rich, forged(revokeDevice(k.B, k.A), func(l *statement.ChainLink) {
			l.KeySHA256 = keychain.KeyHash(k.K)
		}, k.A, ""), "another key-sha256"},
		{"revoke carrying a key", rich, forged(revokeDevice(k.B, k.A), nil, k.A, armored(k.B)), "must not carry a key"},
		{"remove recovery when none", noRecovery, forged(removeRecovery(k.R, k.A), nil, k.A, ""), "not the current one"},
		{"remove another recovery key", rich, forged(removeRecovery(k.R2, k.A), nil, k.A, ""), "not the current one"},
		{"remove a device as recovery", rich, forged(removeRecovery(k.B, k.A), nil, k.A, ""), "not the current one"},
		{"remove recovery with another key-sha256", rich, forged(removeRecovery(k.R, k.A), func(l *statement.ChainLink) {
			l.KeySHA256 = keychain.KeyHash(k.R2)
		}, k.A, ""), "not the current one"},
		{"remove recovery carrying a key", rich, forged(removeRecovery(k.R, k.A), nil, k.A, armored(k.R)), "must not carry a key"},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := c.from(t)
			refuse(t, s, c.link(t, s), c.why)
			// Nothing was left half applied: the valid next link applies.
			if s.Len() == 0 {
				extend(t, s, addDevice(k.A, k.A))
			} else {
				extend(t, s, addDevice(k.L, k.A))
			}
		})
	}
}

// TestFork: two links both claiming seq 1; only the first applied is
// accepted, though either alone is valid.
func TestFork(t *testing.T) {
	k := keys(t)
	s, _ := build(t, "alice", addDevice(k.A, k.A))
	other := s.Clone()
	first, err := s.Sign(statement.ActionAddDevice, k.B, k.A, at(1))
	if err != nil {
		t.Fatal(err)
	}
	second, err := s.Sign(statement.ActionAddDevice, k.C, k.A, at(1))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Apply(first); err != nil {
		t.Fatal(err)
	}
	refuse(t, s, second, "has seq 1")
	if err := other.Apply(second); err != nil {
		t.Fatalf("the second link alone: %v", err)
	}
	refuse(t, other, first, "has seq 1")
}

func TestVerify(t *testing.T) {
	k := keys(t)
	for _, links := range [][]api.ChainLink{nil, {}} {
		if s, err := keychain.Verify("alice", links); !errors.Is(err, keychain.ErrChain) || s != nil {
			t.Fatalf("Verify(%#v) = %v, %v; want ErrChain", links, s, err)
		}
	}
	_, links := build(t, "alice", richSteps(k)...)
	if _, err := keychain.Verify("bob", links); !errors.Is(err, keychain.ErrChain) {
		t.Fatalf("alice's chain verified as bob's: %v", err)
	}
	// Verify stops at the first bad link: link 2 has a bad signature,
	// link 4 a bad statement, and the error is about link 2.
	bad := append([]api.ChainLink(nil), links...)
	bad[2].Signature = links[1].Signature
	bad[4].Statement = "garbage"
	s, err := keychain.Verify("alice", bad)
	if !errors.Is(err, keychain.ErrChain) || s != nil || !strings.Contains(err.Error(), "link 2:") {
		t.Fatalf("Verify = %v, %v; want an error about link 2", s, err)
	}
	// Every prefix of a valid chain is a valid chain.
	for i := 1; i <= len(links); i++ {
		s, err := keychain.Verify("alice", links[:i])
		if err != nil || s.Len() != i {
			t.Fatalf("prefix %d: %v", i, err)
		}
	}
	// Links out of order.
	swapped := append([]api.ChainLink(nil), links...)
	swapped[1], swapped[2] = swapped[2], swapped[1]
	if _, err := keychain.Verify("alice", swapped); !errors.Is(err, keychain.ErrChain) || !strings.Contains(err.Error(), "link 1 ") {
		t.Fatalf("swapped links: %v", err)
	}
}

func TestPin(t *testing.T) {
	k := keys(t)
	full, links := build(t, "alice", richSteps(k)...)
	verify := func(t *testing.T, links []api.ChainLink) *keychain.State {
		t.Helper()
		s, err := keychain.Verify("alice", links)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	pinAt := func(t *testing.T, n int) *keychain.Pin { return verify(t, links[:n]).Pin() }
	// A fork: the same first link, then device A adds K at seq 1.
	forked := keychain.New("alice")
	if err := forked.Apply(links[0]); err != nil {
		t.Fatal(err)
	}
	extend(t, forked, addDevice(k.K, k.A))
	// A replacement: the operator's own device starts alice's chain anew.
	replaced, _ := build(t, "alice", addDevice(k.Op, k.Op), addDevice(k.A, k.Op), addDevice(k.B, k.Op))
	bob, _ := build(t, "bob", addDevice(k.A, k.A))
	hand := &keychain.Pin{User: "alice", Genesis: k.A.Fingerprint(), Seq: -1}

	if p := full.Pin(); p.User != "alice" || p.Genesis != k.A.Fingerprint() || p.Seq != 4 || p.Head != hexHash(full.Head()) {
		t.Fatalf("Pin = %+v", p)
	}
	if p := keychain.New("alice").Pin(); p.Genesis != "" || p.Seq != -1 {
		t.Fatalf("Pin of an empty chain = %+v", p)
	}
	for _, c := range []struct {
		name  string
		chain *keychain.State
		pin   *keychain.Pin
		ok    bool
	}{
		{"no pin", full, nil, true},
		{"same chain", full, full.Pin(), true},
		{"extended later", full, pinAt(t, 2), true},
		{"pinned at the first link", full, pinAt(t, 1), true},
		{"rolled back one link", verify(t, links[:4]), full.Pin(), false},
		{"rolled back to the first link", verify(t, links[:1]), pinAt(t, 2), false},
		{"fork", forked, pinAt(t, 2), false},
		{"replaced chain", replaced, full.Pin(), false},
		{"replaced chain, hand pin", replaced, hand, false},
		{"hand pin, full chain", full, hand, true},
		{"hand pin, first link", verify(t, links[:1]), hand, true},
		{"hand pin, fork", forked, hand, true},
		{"hand pin of the operator's device", full, &keychain.Pin{User: "alice", Genesis: k.Op.Fingerprint(), Seq: -1}, false},
		{"bob's pin", full, bob.Pin(), false},
		{"bob's pin with alice's genesis", full, &keychain.Pin{User: "bob", Genesis: k.A.Fingerprint(), Seq: -1}, false},
		{"pin with another head", full, &keychain.Pin{User: "alice", Genesis: k.A.Fingerprint(), Seq: 1, Head: hexHash(sha256.Sum256(nil))}, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			err := c.chain.Extends(c.pin)
			if c.ok && err != nil {
				t.Fatalf("Extends = %v", err)
			}
			if !c.ok && !errors.Is(err, keychain.ErrPin) {
				t.Fatalf("Extends = %v, want ErrPin", err)
			}
			// Only a chain with fewer links than the pin is behind it.
			if behind := strings.HasPrefix(c.name, "rolled back"); errors.Is(err, keychain.ErrBehind) != behind {
				t.Fatalf("Extends = %v: ErrBehind %v, want %v", err, errors.Is(err, keychain.ErrBehind), behind)
			}
		})
	}
	// The fork extended: one more link does not make it pass.
	extend(t, forked, addDevice(k.K2, k.A))
	extend(t, forked, addDevice(k.L, k.A))
	if err := forked.Extends(full.Pin()); !errors.Is(err, keychain.ErrPin) {
		t.Fatalf("a longer fork: %v", err)
	}
}

func TestCode(t *testing.T) {
	k := keys(t)
	format := regexp.MustCompile(`^[0-9]{4}(-[0-9]{4}){4}$`)
	seen := map[string]string{}
	for name, field := range k.fields() {
		key := *field
		code := keychain.Code(key)
		if !format.MatchString(code) {
			t.Fatalf("Code(%s) = %q", name, code)
		}
		if code != keychain.Code(key) || code != keychain.Code(key.Public()) {
			t.Fatalf("Code(%s) differs between calls or between the private and public key", name)
		}
		parsed, err := envelope.ParseKey(key.Public().Armor())
		if err != nil {
			t.Fatal(err)
		}
		if keychain.Code(parsed) != code {
			t.Fatalf("Code(%s) differs for the key read back", name)
		}
		if want := codeOf(key); code != want {
			t.Fatalf("Code(%s) = %s, want %s", name, code, want)
		}
		if other, dup := seen[code]; dup {
			t.Fatalf("keys %s and %s have the same code %s", other, name, code)
		}
		seen[code] = name
	}
	// Codes must not change between releases: a phone and a laptop of
	// different versions show the same code for the same key.
	b, err := os.ReadFile(filepath.Join("testdata", "gnupg-device.asc"))
	if err != nil {
		t.Fatal(err)
	}
	gk, err := envelope.ParseKey(b)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := keychain.Code(gk), codeOf(gk); got != want || got != gnupgDeviceCode {
		t.Fatalf("Code(gnupg-device.asc) = %s, want %s (computed %s)", got, gnupgDeviceCode, want)
	}
}

// gnupgDeviceCode is the code of testdata/gnupg-device.asc.
const gnupgDeviceCode = "0044-7579-5075-2235-6768"

// codeOf computes Code as its documentation says: the first 64 bits of
// SHA-256("keyholder-device-code-v1\n" || key bytes) as 20 decimal digits
// in groups of four.
func codeOf(k *envelope.Key) string {
	sum := sha256.Sum256(append([]byte("keyholder-device-code-v1\n"), k.Public().Bytes()...))
	d := fmt.Sprintf("%020d", binary.BigEndian.Uint64(sum[:8]))
	return strings.Join([]string{d[0:4], d[4:8], d[8:12], d[12:16], d[16:20]}, "-")
}

func TestClone(t *testing.T) {
	k := keys(t)
	s := rich(t)
	before := snap(t, s)
	c := s.Clone()
	if got := snap(t, c); !reflect.DeepEqual(got, before) {
		t.Fatalf("clone:\n%+v\nwant\n%+v", got, before)
	}
	extend(t, c, revokeDevice(k.B, k.A))
	extend(t, c, removeRecovery(k.R, k.A))
	extend(t, c, addDevice(k.K, k.A))
	if got := snap(t, s); !reflect.DeepEqual(got, before) {
		t.Fatalf("Apply on the clone changed the original:\n%+v\nwant\n%+v", got, before)
	}
	if m, _ := s.Device(k.B.Fingerprint()); !m.Active() {
		t.Fatal("the clone revoked the original's device")
	}
	// And the other way round.
	cloned := snap(t, c)
	extend(t, s, addDevice(k.K2, k.B))
	if got := snap(t, c); !reflect.DeepEqual(got, cloned) {
		t.Fatalf("Apply on the original changed the clone:\n%+v\nwant\n%+v", got, cloned)
	}
}

// TestGnuPGVerifiesLinks: a party with only GnuPG can check each link with
// gpg --verify, importing the keys the chain adds.
func TestGnuPGVerifiesLinks(t *testing.T) {
	gpg, err := exec.LookPath("gpg")
	if err != nil {
		t.Skip("gpg not installed")
	}
	if testing.Short() {
		t.Skip("runs gpg")
	}
	k := keys(t)
	_, links := build(t, "alice", addDevice(k.A, k.A), addDevice(k.B, k.A), setRecovery(k.R, k.B), revokeDevice(k.A, k.B))
	home := t.TempDir()
	run := func(stdin string, args ...string) {
		t.Helper()
		cmd := exec.Command(gpg, append([]string{"--homedir", home, "--batch", "--no-tty", "--status-fd", "2"}, args...)...)
		cmd.Stdin = strings.NewReader(stdin)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("gpg %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	t.Cleanup(func() { exec.Command("gpgconf", "--homedir", home, "--kill", "all").Run() })
	for i, l := range links {
		if l.PublicKey != "" {
			run(l.PublicKey, "--import")
		}
		dir := t.TempDir()
		stmt, sig := filepath.Join(dir, "link.txt"), filepath.Join(dir, "link.txt.asc")
		if err := os.WriteFile(stmt, []byte(l.Statement), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(sig, []byte(l.Signature), 0o600); err != nil {
			t.Fatal(err)
		}
		t.Logf("link %d", i)
		run("", "--verify", sig, stmt)
	}
}

// TestGnuPGMadeLink: a device whose key GnuPG made, and which signed its
// chain's first link with gpg, is accepted (testdata/make-gnupg-fixture.sh).
// Its key-sha256 is what docs/openapi.yaml says, the SHA-256 of the key's
// binary public key, computed as `gpg --export KEY | sha256sum`: the bytes
// the link carries, which is also what a party with only GnuPG can check.
func TestGnuPGMadeLink(t *testing.T) {
	read := func(name string) string {
		b, err := os.ReadFile(filepath.Join("testdata", name))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	link := api.ChainLink{Statement: read("gnupg-genesis.txt"), Signature: read("gnupg-genesis.txt.asc"), PublicKey: read("gnupg-device.asc")}
	l, err := statement.ParseChainLink([]byte(link.Statement))
	if err != nil {
		t.Fatal(err)
	}
	block, err := armor.Decode(strings.NewReader(link.PublicKey))
	if err != nil {
		t.Fatal(err)
	}
	carried, err := io.ReadAll(block.Body)
	if err != nil {
		t.Fatal(err)
	}
	if sha256.Sum256(carried) != l.KeySHA256 {
		t.Fatal("the fixture's key-sha256 is not the SHA-256 of the key it carries")
	}
	s, err := keychain.Verify(l.User, []api.ChainLink{link})
	if err != nil {
		k, _ := envelope.ParseKey(carried)
		t.Fatalf("%v\n(keychain.KeyHash hashes go-crypto's re-serialization of the key, %x, not the %d bytes the link carries, %x)",
			err, keychain.KeyHash(k), len(carried), l.KeySHA256)
	}
	if s.Genesis() != l.Key || len(s.Recipients()) != 1 {
		t.Fatalf("genesis %s recipients %d", s.Genesis(), len(s.Recipients()))
	}
}
