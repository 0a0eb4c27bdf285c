// Command keyholder is the party's CLI: make and register a key, seal a
// file to a user's device and upload it in one stream, wait for the
// approval, ask to read a record, and open it (download, verify and decrypt
// in one stream).
package main

import (
	"os"

	"github.com/keyholder/keyholder/cmd/keyholder/cli"
)

func main() { os.Exit(cli.Main()) }
