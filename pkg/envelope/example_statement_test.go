package envelope_test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log"
	"time"

	"github.com/keyholder/keyholder/pkg/envelope"
)

// A device approves a record: it writes the canonical approval statement,
// signs it, and anyone holding the device's public key checks it offline.
func ExampleSign() {
	device, err := envelope.GenerateKey("phone")
	if err != nil {
		log.Fatal(err)
	}

	approval := &envelope.Approval{
		Record:    "3f2a9c0d1e6b4a7f8c5d2e1b0a9f8e7d",
		User:      "0c1d2e3f4a5b6c7d8e9f0a1b2c3d4e5f",
		Device:    device.Fingerprint(),
		Submitter: "E4F5A6B7C8D9E0F1A2B3C4D5E6F7A8B9C0D1E2F3",
		// In a real approval these come from the submission, the record
		// and the device's key packet (see ExampleSessionKeyID).
		KeyPackets:     [32]byte{0x67, 0xe0},
		SessionKeyID:   [32]byte{0xa1, 0x9e},
		Ciphertext:     envelope.DataDigest{SHA256: [32]byte{0xb8, 0x52}, Size: 1048576},
		MetadataSHA256: envelope.MetadataDigest([]byte(`{"title":"Blood test"}`), nil),
		Request:        "9e8d7c6b5a4f3e2d1c0b0a9f8e7d6c5b",
		Time:           time.Date(2026, 11, 27, 3, 4, 5, 0, time.UTC),
	}
	statement, err := approval.Marshal()
	if err != nil {
		log.Fatal(err)
	}
	signature, err := envelope.Sign(statement, device)
	if err != nil {
		log.Fatal(err)
	}

	// The verifier (the server, or anyone auditing) has the statement, the
	// signature and the device's public key.
	if err := envelope.Verify(statement, signature, device.Public()); err != nil {
		log.Fatal(err)
	}
	got, err := envelope.ParseApproval(statement)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("approved record", got.Record, "at", got.Time.Format(time.RFC3339))

	// The same signature does not cover any other statement.
	got.Request = "another-request"
	forged, _ := got.Marshal()
	err = envelope.Verify(forged, signature, device.Public())
	fmt.Println("edited statement rejected:", errors.Is(err, envelope.ErrBadSignature))
	// Output:
	// approved record 3f2a9c0d1e6b4a7f8c5d2e1b0a9f8e7d at 2026-11-27T03:04:05Z
	// edited statement rejected: true
}

// A party seals a record to both of a user's devices. The submission binds
// the key packets it wrote; the server serves them to each device, which
// checks the digest and, from its own packet alone, computes the record's
// session key id: the same on both devices, and what the approval carries.
// A key packet copied from another record would give that record's id.
func ExampleSessionKeyID() {
	phone, err := envelope.GenerateKey("phone")
	if err != nil {
		log.Fatal(err)
	}
	tablet, err := envelope.GenerateKey("tablet")
	if err != nil {
		log.Fatal(err)
	}

	// Party: seal, and note what the submission statement binds.
	var sealed bytes.Buffer
	w, err := envelope.Seal(&sealed, envelope.Compat, phone.Public(), tablet.Public())
	if err != nil {
		log.Fatal(err)
	}
	io.WriteString(w, "blood test: all clear\n")
	if err := w.Close(); err != nil {
		log.Fatal(err)
	}
	keyPackets := w.KeyPackets() // the submission statement's KeyPackets

	// Server: split the message; it serves the key packets to the devices.
	msg, err := envelope.Split(&sealed)
	if err != nil {
		log.Fatal(err)
	}

	// Each device.
	fmt.Println("key packets as submitted:", envelope.KeyPacketsDigest(msg.KeyPackets) == keyPackets)
	for i, device := range []*envelope.Key{phone, tablet} {
		id, err := envelope.SessionKeyID(msg.KeyPackets[i], msg.Profile(), device)
		if err != nil {
			log.Fatal(err) // not addressed to this device, or it cannot open it
		}
		fmt.Printf("%s: session key id is the sealed one: %v\n", device.Name(), id == w.SessionKeyID())
	}
	// Output:
	// key packets as submitted: true
	// phone: session key id is the sealed one: true
	// tablet: session key id is the sealed one: true
}
