// Package clihome is what the party CLI (cmd/keyholder) and device-sim
// share about the home directory that holds a private key: where it is,
// writing its files atomically and privately, reading its JSON files, and
// reading the key's passphrase from a file or the terminal.
package clihome

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"text/tabwriter"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/keyholder/keyholder/pkg/atomicfile"
)

// Dir returns dir if set, else $env if set, else defaultName in the user's
// home directory.
func Dir(dir, env, defaultName string) (string, error) {
	if dir == "" {
		dir = os.Getenv(env)
	}
	if dir == "" {
		h, err := os.UserHomeDir()
		if err != nil {
			return "", err
		}
		dir = filepath.Join(h, defaultName)
	}
	return dir, nil
}

// WriteFile writes data to path atomically with mode (package atomicfile):
// a crash leaves either the old file or the new one, never a partial one.
func WriteFile(path string, data []byte, mode os.FileMode) error {
	_, err := atomicfile.Write(path, bytes.NewReader(data), mode)
	return err
}

// SyncDir makes a rename or a new file in dir durable.
func SyncDir(dir string) error { return atomicfile.SyncDir(dir) }

// WriteJSON writes v as indented JSON to path with WriteFile, mode 0600.
func WriteJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return WriteFile(path, append(b, '\n'), 0o600)
}

// ReadJSON decodes the JSON file at path into v. A missing file is an
// error that wraps os.ErrNotExist; a malformed one names the path.
func ReadJSON(path string, v any) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("%s: %v", path, err)
	}
	return nil
}

// A Prompt reads a key's passphrase.
type Prompt struct {
	// Label is written to stderr before the terminal reads the passphrase.
	Label string
	// NotTerminal is the error when there is no passphrase file and stdin
	// is not a terminal.
	NotTerminal string
	// Empty is the error for an empty passphrase typed on the terminal.
	Empty string
	// In is the terminal (default os.Stdin); Out gets the prompts
	// (default os.Stderr).
	In  *os.File
	Out io.Writer
}

// Read returns the passphrase in file (without its trailing line break),
// or asks on the terminal. confirm is set for a new passphrase: it is
// asked twice, and refused if shorter than MinPassphrase characters. While
// it waits for the terminal, the end of ctx (SIGINT, SIGTERM) ends it,
// with the terminal's echo restored.
func (p Prompt) Read(ctx context.Context, file string, confirm bool) ([]byte, error) {
	if file != "" {
		b, err := os.ReadFile(file)
		if err != nil {
			return nil, fmt.Errorf("reading passphrase: %w", err)
		}
		pass := []byte(strings.TrimRight(string(b), "\r\n"))
		clear(b)
		if len(pass) == 0 {
			return nil, fmt.Errorf("the passphrase file %s is empty", file)
		}
		if confirm {
			if err := CheckPassphrase(pass, "the passphrase in "+file); err != nil {
				clear(pass)
				return nil, err
			}
		}
		return pass, nil
	}
	in, out := p.In, p.Out
	if in == nil {
		in = os.Stdin
	}
	if out == nil {
		out = os.Stderr
	}
	fd := int(in.Fd())
	if !term.IsTerminal(fd) {
		return nil, errors.New(p.NotTerminal)
	}
	fmt.Fprint(out, p.Label)
	pass, err := readPassword(ctx, fd)
	fmt.Fprintln(out)
	if err != nil {
		return nil, err
	}
	if len(pass) == 0 {
		return nil, errors.New(p.Empty)
	}
	if confirm {
		if err := CheckPassphrase(pass, "the passphrase"); err != nil {
			clear(pass)
			return nil, err
		}
		fmt.Fprint(out, "Repeat passphrase: ")
		again, err := readPassword(ctx, fd)
		fmt.Fprintln(out)
		if err != nil {
			clear(pass)
			return nil, err
		}
		same := string(pass) == string(again)
		clear(again)
		if !same {
			clear(pass)
			return nil, errors.New("the passphrases differ")
		}
	}
	return pass, nil
}

// readPassword reads a line from the terminal without echo, or gives up
// when ctx ends: a signal the program catches (to end in order) must not
// leave it blocked on the terminal, nor the terminal without echo.
func readPassword(ctx context.Context, fd int) ([]byte, error) {
	st, err := term.GetState(fd)
	if err != nil {
		return nil, err
	}
	type result struct {
		p   []byte
		err error
	}
	ch := make(chan result, 1)
	go func() {
		p, err := term.ReadPassword(fd)
		ch <- result{p, err}
	}()
	select {
	case r := <-ch:
		return r.p, r.err
	case <-ctx.Done():
		term.Restore(fd, st)
		return nil, ctx.Err()
	}
}

// Main runs root with the program's arguments and a context that ends on
// SIGINT or SIGTERM (a second signal ends the program at once), prints an
// error on one line after "name:", and returns the exit code (see Run).
func Main(name string, root *cobra.Command) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		stop()
	}()
	return Run(ctx, name, root, os.Args[1:])
}

// OneLine is err's message with its white space folded to single spaces.
func OneLine(err error) string {
	return strings.Join(strings.Fields(err.Error()), " ")
}

// PrintTable prints a header line and rows (fields separated by tabs) to
// stdout as aligned columns.
func PrintTable(header string, rows []string) error {
	w := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, header)
	for _, r := range rows {
		fmt.Fprintln(w, r)
	}
	return w.Flush()
}
