package client_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"time"

	"github.com/keyholder/keyholder/pkg/client"
	"github.com/keyholder/keyholder/pkg/transparency"
)

// A party seals a file to a user's device and uploads it in one stream,
// then waits for the device's approval.
func ExampleClient_SealAndUpload() {
	ctx := context.Background()
	armored, _ := os.ReadFile("party.key")
	id, err := client.ParseIdentity(armored, []byte(os.Getenv("PARTY_PASSPHRASE")))
	if err != nil {
		log.Fatal(err)
	}
	c, err := client.New("https://keyholder.example", client.WithIdentity(id))
	if err != nil {
		log.Fatal(err)
	}
	f, err := os.Open("results.pdf")
	if err != nil {
		log.Fatal(err)
	}
	defer f.Close()
	up, err := c.SealAndUpload(ctx, "0123456789abcdef0123456789abcdef", f, client.UploadOptions{
		ContentType: "application/pdf",
		Purpose:     "lab results",
		Private:     &client.PrivateMetadata{Title: "Blood test, March"},
	})
	if err != nil {
		log.Fatal(err)
	}
	wctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	rec, err := c.WaitDecided(wctx, up.Record.ID)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(rec.ID, rec.State)
}

// A party asks to read an approved record, waits for the grant, and
// decrypts the record into a file, which is kept only if the approval,
// the grant, the approved ciphertext digest and the integrity check pass.
func ExampleClient_OpenRecord() {
	ctx := context.Background()
	var c *client.Client // as in ExampleClient_SealAndUpload
	const record = "fedcba9876543210fedcba9876543210"
	if _, err := c.RequestAccess(ctx, record, "second opinion", 3600); err != nil {
		log.Fatal(err)
	}
	wctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	if _, err := c.WaitGrant(wctx, record); err != nil {
		log.Fatal(err)
	}
	v, n, err := c.OpenRecord(ctx, record, "results.pdf", client.OpenOptions{})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(n, "bytes approved by", v.Approval.Device)
}

// A device holds its event stream open and answers each request after
// checking it.
func ExampleClient_Subscribe() {
	ctx := context.Background()
	var dev *client.Client // built WithIdentity(the device key)
	for ev := range dev.Subscribe(ctx, client.SubscribeOptions{}) {
		d, err := dev.DeviceRequest(ctx, ev.RequestID)
		if err != nil || d.State != "open" {
			continue
		}
		cr, err := dev.Check(ctx, d)
		if err == nil {
			switch d.Kind {
			case client.KindApproval:
				_, err = dev.ApproveRequest(ctx, cr)
			case client.KindAccess:
				_, err = dev.GrantRequest(ctx, cr, time.Now().Add(time.Hour))
			}
		}
		// A record that fails the device's checks (a key packet copied
		// from another record, say) is rejected with the reason, an
		// access request refused: nothing is re-wrapped.
		if reason := client.ReasonOf(err); reason != "" {
			if d.Kind == client.KindApproval {
				_, err = dev.RejectRequest(ctx, d, reason)
			} else {
				_, err = dev.Refuse(ctx, d.ID)
			}
		}
		if err != nil && !client.IsConflict(err) {
			log.Print(err)
		}
	}
}

// A party that checks the transparency log: the log's verifier key (from
// keyholderd log-key), one witness it requires, and the last checkpoint it
// trusted, kept in a file. Every chain it seals to, approval and grant it
// relies on must then be in the log.
func ExampleWithLog() {
	v, err := transparency.NewVerifier("keyholder.example.com/log",
		"keyholder.example.com/log+3f28b15e+AbMQcYf4/axWdWZxz89nAzz0m4ixcQ8bJdgcON/ivHbR",
		[]string{"witness.example.org/w1+5e1a6fef+BJx8rGMhRam7s1XHu4Gz8VJlrWm+YqpUkXZ8S9RFAWFn"}, 1)
	if err != nil {
		log.Fatal(err)
	}
	trust, err := transparency.OpenTrust("log-checkpoint", v)
	if err != nil {
		log.Fatal(err)
	}
	c, err := client.New("https://keyholder.example", client.WithLog(v, trust))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(c.LogEnabled())
}
