package statement_test

import (
	"errors"
	"fmt"
	"log"
	"time"

	"github.com/keyholder/keyholder/pkg/envelope"
	"github.com/keyholder/keyholder/pkg/statement"
)

// A device approves a record: it writes the canonical approval statement,
// signs it, and anyone holding the device's public key checks it offline.
func ExampleSign() {
	device, err := envelope.GenerateKey("phone")
	if err != nil {
		log.Fatal(err)
	}

	approval := &statement.Approval{
		Record:    "3f2a9c0d1e6b4a7f8c5d2e1b0a9f8e7d",
		User:      "0c1d2e3f4a5b6c7d8e9f0a1b2c3d4e5f",
		Device:    device.Fingerprint(),
		Submitter: "E4F5A6B7C8D9E0F1A2B3C4D5E6F7A8B9C0D1E2F3",
		// In a real approval these come from the submission, the record
		// and the device's key packet (see envelope's ExampleSessionKeyID).
		KeyPackets:     [32]byte{0x67, 0xe0},
		SessionKeyID:   [32]byte{0xa1, 0x9e},
		Ciphertext:     envelope.DataDigest{SHA256: [32]byte{0xb8, 0x52}, Size: 1048576},
		MetadataSHA256: statement.MetadataDigest([]byte(`{"title":"Blood test"}`), nil),
		Request:        "9e8d7c6b5a4f3e2d1c0b0a9f8e7d6c5b",
		Time:           time.Date(2026, 11, 27, 3, 4, 5, 0, time.UTC),
	}
	stmt, err := approval.Marshal()
	if err != nil {
		log.Fatal(err)
	}
	signature, err := statement.Sign(stmt, device)
	if err != nil {
		log.Fatal(err)
	}

	// The verifier (the server, or anyone auditing) has the statement, the
	// signature and the device's public key.
	if err := statement.Verify(stmt, signature, device.Public()); err != nil {
		log.Fatal(err)
	}
	got, err := statement.ParseApproval(stmt)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("approved record", got.Record, "at", got.Time.Format(time.RFC3339))

	// The same signature does not cover any other statement.
	got.Request = "another-request"
	forged, _ := got.Marshal()
	err = statement.Verify(forged, signature, device.Public())
	fmt.Println("edited statement rejected:", errors.Is(err, statement.ErrBadSignature))
	// Output:
	// approved record 3f2a9c0d1e6b4a7f8c5d2e1b0a9f8e7d at 2026-11-27T03:04:05Z
	// edited statement rejected: true
}
