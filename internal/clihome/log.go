package clihome

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"
	"golang.org/x/mod/sumdb/note"

	"github.com/keyholder/keyholder/pkg/client"
	"github.com/keyholder/keyholder/pkg/transparency"
)

// The files of the log settings in a CLI home.
const (
	// LogFile holds the LogSettings.
	LogFile = "log.json"
	// LogCheckpointFile is the last checkpoint the client trusted.
	LogCheckpointFile = "log-checkpoint"
	// LogHistoriesDir holds how far a device checked its user's histories.
	LogHistoriesDir = "log-histories"
)

// LogSettings are how a CLI checks the transparency log: the log's
// verifier key (`keyholderd log-key`; its name is the log's origin), the
// witnesses' cosignature/v1 verifier keys and how many must cosign.
type LogSettings struct {
	Key       string   `json:"key"`
	Witnesses []string `json:"witnesses,omitempty"`
	Quorum    int      `json:"quorum,omitempty"`
}

// LoadLogSettings reads the log settings of home (nil, nil when none).
func LoadLogSettings(home string) (*LogSettings, error) {
	var s LogSettings
	err := ReadJSON(filepath.Join(home, LogFile), &s)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return &s, nil
}

// Verifier returns the checkpoint verifier of the settings.
func (s *LogSettings) Verifier() (*transparency.Verifier, error) {
	v, err := note.NewVerifier(s.Key)
	if err != nil {
		return nil, fmt.Errorf("log key %q: %v", s.Key, err)
	}
	return transparency.NewVerifier(v.Name(), s.Key, s.Witnesses, s.Quorum)
}

// LogWarning is the line printed on stderr when no log key is configured.
const LogWarning = "warning: the transparency log is not checked (no log key configured: run %s log --key VKEY, with the key keyholderd log-key prints)\n"

// LogOptions returns the client options that make a client of home check
// the log (WithLog, trusting home's checkpoint file; with histories, the
// device's HistoryStore in home). Without log settings it writes
// LogWarning to stderr once and returns none.
func LogOptions(home, prog string, histories bool, stderr io.Writer) ([]client.Option, error) {
	s, err := LoadLogSettings(home)
	if err != nil {
		return nil, err
	}
	if s == nil {
		fmt.Fprintf(stderr, LogWarning, prog)
		return nil, nil
	}
	v, err := s.Verifier()
	if err != nil {
		return nil, err
	}
	trust, err := transparency.OpenTrust(filepath.Join(home, LogCheckpointFile), v)
	if err != nil {
		return nil, err
	}
	opts := []client.Option{client.WithLog(v, trust)}
	if histories {
		opts = append(opts, client.WithHistoryStore(client.FileHistories{Dir: filepath.Join(home, LogHistoriesDir)}))
	}
	return opts, nil
}

// LogCmd is the "log" command of a CLI whose home is given by home():
// with --key it saves the log settings, without it prints them.
func LogCmd(prog string, home func() string) *cobra.Command {
	var s LogSettings
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "log [--key VKEY [--witness VKEY]... [--quorum N]]",
		Short: "Configure the transparency log this client checks (the log key, witnesses and quorum)",
		Long: `Configure the transparency log this client checks. --key is the log's verifier
key, as keyholderd log-key prints it (its name is the log's origin); --witness
(repeatable) the cosignature/v1 verifier keys of the witnesses, and --quorum how
many of them must cosign a checkpoint (0: all). Once a log key is set, every
chain, approval and grant this client relies on must be in the log, and the log
must only grow (the last trusted checkpoint is kept in the home). Without
flags, print the settings.`,
		Args: cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			dir := home()
			if s.Key == "" {
				if len(s.Witnesses) > 0 || s.Quorum != 0 {
					return Usagef("--witness and --quorum need --key")
				}
				cur, err := LoadLogSettings(dir)
				if err != nil {
					return err
				}
				if cur == nil {
					fmt.Printf("no log key configured: the log is not checked\n")
					return nil
				}
				if asJSON {
					return PrintJSON(cur)
				}
				fmt.Printf("log key: %s\nwitnesses: %s\nquorum: %d\n", cur.Key, strings.Join(cur.Witnesses, " "), cur.Quorum)
				return nil
			}
			if _, err := s.Verifier(); err != nil {
				return Usage(err)
			}
			if err := os.MkdirAll(dir, 0o700); err != nil {
				return err
			}
			if err := WriteJSON(filepath.Join(dir, LogFile), &s); err != nil {
				return err
			}
			origin := strings.SplitN(s.Key, "+", 2)[0]
			switch q := s.Quorum; {
			case len(s.Witnesses) == 0:
				fmt.Printf("%s checks the log %s (no witnesses: checkpoints need the log's signature only)\n", prog, origin)
			default:
				if q == 0 {
					q = len(s.Witnesses)
				}
				fmt.Printf("%s checks the log %s (checkpoints need %d of %d witness cosignatures)\n", prog, origin, q, len(s.Witnesses))
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&s.Key, "key", "", "the log's verifier key (keyholderd log-key)")
	f.StringArrayVar(&s.Witnesses, "witness", nil, "a witness's cosignature/v1 verifier key (repeatable)")
	f.IntVar(&s.Quorum, "quorum", 0, "how many witnesses must cosign (0: all configured)")
	f.BoolVar(&asJSON, "json", false, "print the settings as JSON")
	return cmd
}
