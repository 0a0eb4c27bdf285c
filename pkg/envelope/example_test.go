package envelope_test

import (
	"bytes"
	"fmt"
	"io"
	"log"

	"github.com/keyholder/keyholder/pkg/envelope"
)

// The life of a record: a party seals it to the user's device, the server
// splits it into key packets and the data packet, the device rewraps its
// session key to another party without reading the record, and that party
// opens `new PKESK || data packet`.
func Example() {
	device, err := envelope.GenerateKey("phone")
	if err != nil {
		log.Fatal(err)
	}
	bank, err := envelope.GenerateKey("bank")
	if err != nil {
		log.Fatal(err)
	}

	// Submitter: seal to the device's public key.
	var sealed bytes.Buffer
	w, err := envelope.Seal(&sealed, envelope.Compat, device.Public())
	if err != nil {
		log.Fatal(err)
	}
	io.WriteString(w, "blood test: all clear\n")
	if err := w.Close(); err != nil {
		log.Fatal(err)
	}
	digest := w.Digest() // what the submission and approval statements sign

	// Server: keep the key packets, stream the data packet to storage.
	msg, err := envelope.Split(&sealed)
	if err != nil {
		log.Fatal(err)
	}
	var stored bytes.Buffer
	d := envelope.NewDigester()
	if _, err := io.Copy(io.MultiWriter(&stored, d), msg.Data); err != nil {
		log.Fatal(err)
	}
	fmt.Println("profile:", msg.Profile(), "key packets:", len(msg.KeyPackets), "digest matches:", d.Digest() == digest)

	// Device: rewrap its key packet to the bank's public key.
	pkesk, err := envelope.Rewrap(msg.KeyPackets[0], msg.Profile(), device, bank.Public())
	if err != nil {
		log.Fatal(err)
	}

	// Bank: open new PKESK || data packet.
	r, err := envelope.Open(io.MultiReader(bytes.NewReader(pkesk), &stored), bank)
	if err != nil {
		log.Fatal(err)
	}
	plaintext, err := io.ReadAll(r) // an error here (ErrIntegrity) voids what was read
	if err != nil {
		log.Fatal(err)
	}
	fmt.Print(string(plaintext))
	// Output:
	// profile: compat key packets: 1 digest matches: true
	// blood test: all clear
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
