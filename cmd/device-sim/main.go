// Command device-sim plays the user's phone: it holds the device key,
// enrolls with a one-time code, listens for requests on the server's push
// channel, checks each one, and approves, rejects, grants or refuses it, by
// asking the user or by policy. It never downloads a record body.
package main

import (
	"os"

	"github.com/keyholder/keyholder/cmd/device-sim/sim"
)

func main() { os.Exit(sim.Main()) }
