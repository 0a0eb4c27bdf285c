package keychain_test

import (
	"errors"
	"fmt"
	"log"
	"time"

	"github.com/keyholder/keyholder/pkg/api"
	"github.com/keyholder/keyholder/pkg/envelope"
	"github.com/keyholder/keyholder/pkg/keychain"
	"github.com/keyholder/keyholder/pkg/statement"
)

// Alice's phone starts her chain, then approves her laptop; a party
// verifies and pins the chain, and notices what the operator tries.
func ExampleState_Sign() {
	phone, err := envelope.GenerateKey("alice's phone")
	if err != nil {
		log.Fatal(err)
	}
	laptop, err := envelope.GenerateKey("alice's laptop")
	if err != nil {
		log.Fatal(err)
	}
	now := time.Date(2025, 3, 1, 9, 0, 0, 0, time.UTC)

	// The phone signs the first link, which adds the phone itself.
	chain := keychain.New("alice")
	first, err := chain.Sign(statement.ActionAddDevice, phone, phone, now)
	if err != nil {
		log.Fatal(err)
	}
	if err := chain.Apply(first); err != nil { // once the server has stored it
		log.Fatal(err)
	}

	// The laptop shows keychain.Code of its key; the phone shows the code
	// of the key the server relays, and the user compares them.
	fmt.Println("same code on both screens:", keychain.Code(laptop) == keychain.Code(laptop.Public()))
	second, err := chain.Sign(statement.ActionAddDevice, laptop.Public(), phone, now.Add(time.Minute))
	if err != nil {
		log.Fatal(err)
	}
	if err := chain.Apply(second); err != nil {
		log.Fatal(err)
	}

	// A party verifies the chain the server serves, seals to its keys and
	// pins it.
	links := []api.ChainLink{first, second}
	state, err := keychain.Verify("alice", links)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("records are sealed to", len(state.Recipients()), "keys")
	pin := state.Pin()

	// The operator cannot add its own key: no device of alice signed it.
	operator, err := envelope.GenerateKey("operator")
	if err != nil {
		log.Fatal(err)
	}
	forged, err := state.Sign(statement.ActionAddDevice, operator, operator, now.Add(2*time.Minute))
	if err != nil {
		log.Fatal(err)
	}
	err = state.Apply(forged)
	fmt.Println("operator's link refused:", errors.Is(err, keychain.ErrChain))

	// Nor serve the chain as it was before the laptop, to hide it.
	old, err := keychain.Verify("alice", links[:1])
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(old.Extends(pin))
	// Output:
	// same code on both screens: true
	// records are sealed to 2 keys
	// operator's link refused: true
	// key chain does not match the pin: user alice's chain has 1 links, fewer than the 2 already seen (rolled back)
}
