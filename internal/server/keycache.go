package server

import "github.com/keyholder/keyholder/pkg/envelope"

// publicKeys holds the parsed keys of the devices and parties the routes
// check signatures with (see envelope.KeyCache).
var publicKeys = envelope.NewKeyCache(4096)

// storedKey is envelope.ParseKey for keys read from the database, cached.
func storedKey(data []byte) (*envelope.Key, error) { return publicKeys.Parse(data) }
