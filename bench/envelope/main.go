// Command envelope is the benchmark driver scripts/bench.sh runs: it seals
// or opens one file with pkg/envelope so that the script can time it and
// read its peak RSS (/usr/bin/time -v) next to gpg and openssl.
//
//	envelope keygen KEYFILE
//	envelope seal -profile compat|modern -key KEYFILE [-o OUT] [-cpuprofile F] IN
//	envelope open -key KEYFILE [-o OUT] [-cpuprofile F] IN
//
// -cpuprofile writes a CPU profile of the seal or open (not of loading the
// key) for go tool pprof.
//
// The key file it writes holds an unprotected secret key: it is for
// benchmarks only (unlocking a passphrase-protected key would add Argon2's
// memory to the measured peak RSS).
package main

import (
	"bytes"
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/packet"

	"github.com/keyholder/keyholder/internal/cpuprofile"
	"github.com/keyholder/keyholder/pkg/envelope"
)

// bufSize is the copy buffer: the size of the writes Seal sees and of the
// reads Open serves.
const bufSize = 256 << 10

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	var err error
	switch cmd, args := os.Args[1], os.Args[2:]; cmd {
	case "keygen":
		err = keygen(args)
	case "seal":
		err = seal(args)
	case "open":
		err = open(args)
	default:
		usage()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "envelope:", err)
		os.Exit(1)
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: envelope keygen KEYFILE | seal -profile P -key KEYFILE [-o OUT] IN | open -key KEYFILE [-o OUT] IN")
	os.Exit(2)
}

// keygen writes a key like envelope.GenerateKey's (EdDSA primary, Cv25519
// subkey), unprotected.
func keygen(args []string) error {
	if len(args) != 1 {
		usage()
	}
	cfg := &packet.Config{
		Algorithm:              packet.PubKeyAlgoEdDSA,
		Curve:                  packet.Curve25519,
		DefaultCipher:          packet.CipherAES256,
		AEADConfig:             &packet.AEADConfig{DefaultMode: packet.AEADModeGCM},
		DefaultCompressionAlgo: packet.CompressionNone,
	}
	e, err := openpgp.NewEntity("keyholder bench", "", "", cfg)
	if err != nil {
		return err
	}
	var buf bytes.Buffer
	if err := e.SerializePrivate(&buf, nil); err != nil {
		return err
	}
	return os.WriteFile(args[0], buf.Bytes(), 0o600)
}

func loadKey(path string) (*envelope.Key, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return envelope.ParseKey(data)
}

type files struct {
	in      *os.File
	out     *os.File
	key     *envelope.Key
	profile string // -cpuprofile
}

// startProfile starts the CPU profile if one was asked for and returns the
// function that stops it.
func (f *files) startProfile() (stop func(), err error) {
	if f.profile == "" {
		return func() {}, nil
	}
	return cpuprofile.Start(f.profile)
}

func parse(name string, args []string, profile *string) (*files, error) {
	fs := flag.NewFlagSet(name, flag.ExitOnError)
	keyPath := fs.String("key", "", "key file (from keygen)")
	outPath := fs.String("o", "/dev/null", "output file")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of the seal or open to this file")
	if profile != nil {
		fs.StringVar(profile, "profile", string(envelope.Compat), "record profile: compat or modern")
	}
	fs.Parse(args)
	if fs.NArg() != 1 || *keyPath == "" {
		usage()
	}
	key, err := loadKey(*keyPath)
	if err != nil {
		return nil, err
	}
	in, err := os.Open(fs.Arg(0))
	if err != nil {
		return nil, err
	}
	out, err := os.Create(*outPath)
	if err != nil {
		in.Close()
		return nil, err
	}
	return &files{in: in, out: out, key: key, profile: *cpuProfile}, nil
}

func seal(args []string) error {
	var profile string
	f, err := parse("seal", args, &profile)
	if err != nil {
		return err
	}
	p, err := envelope.ParseProfile(profile)
	if err != nil {
		return err
	}
	stop, err := f.startProfile()
	if err != nil {
		return err
	}
	defer stop()
	w, err := envelope.Seal(f.out, p, f.key.Public())
	if err != nil {
		return err
	}
	if _, err := io.CopyBuffer(w, struct{ io.Reader }{f.in}, make([]byte, bufSize)); err != nil {
		return err
	}
	if err := w.Close(); err != nil {
		return err
	}
	return f.out.Close()
}

func open(args []string) error {
	f, err := parse("open", args, nil)
	if err != nil {
		return err
	}
	stop, err := f.startProfile()
	if err != nil {
		return err
	}
	defer stop()
	r, err := envelope.Open(f.in, f.key)
	if err != nil {
		return err
	}
	if _, err := io.CopyBuffer(struct{ io.Writer }{f.out}, r, make([]byte, bufSize)); err != nil {
		return err
	}
	return f.out.Close()
}
