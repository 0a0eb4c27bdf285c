// Package sim is device-sim, the program that plays the user's phone.
// It is a package (with Main) so tests can run it in-process.
package sim

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/keyholder/keyholder/internal/clihome"
	"github.com/keyholder/keyholder/pkg/api"
	"github.com/keyholder/keyholder/pkg/client"
	"github.com/keyholder/keyholder/pkg/envelope"
)

// Main runs device-sim with os.Args and returns the exit code.
func Main() int { return clihome.Main("device-sim", rootCmd()) }

type globals struct {
	home     string
	passFile string
}

func rootCmd() *cobra.Command {
	g := &globals{}
	root := &cobra.Command{
		Use:           "device-sim",
		Short:         "Play the user's phone: hold the device key, approve, reject and grant",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	pf := root.PersistentFlags()
	pf.StringVar(&g.home, "home", "", "device home directory (key, enrollment) (default $KEYHOLDER_DEVICE_HOME or ~/.keyholder-device)")
	pf.StringVar(&g.passFile, "passphrase-file", "", "file holding the device key passphrase (default: ask on the terminal)")
	root.PersistentPreRunE = func(*cobra.Command, []string) error {
		var err error
		if g.home, err = clihome.Dir(g.home, "KEYHOLDER_DEVICE_HOME", ".keyholder-device"); err != nil {
			return err
		}
		if g.passFile == "" {
			g.passFile = os.Getenv("KEYHOLDER_DEVICE_PASSPHRASE_FILE")
		}
		return nil
	}
	root.AddCommand(enrollCmd(g), runCmd(g), requestsCmd(g), recordsCmd(g), grantsCmd(g), revokeCmd(g))
	return root
}

func enrollCmd(g *globals) *cobra.Command {
	var server, code, pushKind, pushToken string
	cmd := &cobra.Command{
		Use:   "enroll --server URL --code CODE",
		Short: "Generate the device key, store it encrypted, and enroll with a one-time code",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if server == "" || code == "" {
				return errors.New("--server and --code are required")
			}
			if _, err := os.Stat(filepath.Join(g.home, configFile)); err == nil {
				return fmt.Errorf("%s already holds an enrolled device", g.home)
			}
			// A key without an enrollment may still be enrolled on the
			// server (device.json was not saved): never replace it.
			if _, err := os.Stat(filepath.Join(g.home, keyFile)); err == nil {
				return fmt.Errorf("%s already holds a device key (%s); move it away to enroll a new one", g.home, keyFile)
			}
			if err := os.MkdirAll(g.home, 0o700); err != nil {
				return err
			}
			pass, err := passphrase(cmd.Context(), g.passFile, true)
			if err != nil {
				return err
			}
			defer clear(pass)
			id, armored, err := client.GenerateIdentity("keyholder device", pass, envelope.S2KArgon2)
			if err != nil {
				return err
			}
			c, err := client.New(server, client.WithIdentity(id))
			if err != nil {
				return err
			}
			keyPath := filepath.Join(g.home, keyFile)
			if err := clihome.WriteFile(keyPath, armored, 0o600); err != nil {
				return err
			}
			r, err := c.Enroll(cmd.Context(), api.EnrollRequest{Code: code, PublicKey: string(id.Key.Public().Armor()), PushKind: pushKind, PushToken: pushToken})
			if err != nil {
				os.Remove(keyPath)
				return fmt.Errorf("enrolling: %w", err)
			}
			cfg := config{Server: c.BaseURL(), DeviceID: r.DeviceID, UserID: r.UserID, Fingerprint: r.Fingerprint}
			if err := clihome.WriteJSON(filepath.Join(g.home, configFile), cfg); err != nil {
				return err
			}
			fmt.Printf("enrolled device %s for user %s\nkey fingerprint %s (private key encrypted in %s)\n", r.DeviceID, r.UserID, r.Fingerprint, keyPath)
			return nil
		},
	}
	cmd.Flags().StringVar(&server, "server", os.Getenv("KEYHOLDER_SERVER"), "server URL")
	cmd.Flags().StringVar(&code, "code", "", "one-time enrollment code from the operator")
	cmd.Flags().StringVar(&pushKind, "push-kind", "local", "push channel: local (server-sent events) or fcm")
	cmd.Flags().StringVar(&pushToken, "push-token", "", "FCM registration token (with --push-kind fcm)")
	return cmd
}

type runOpts struct {
	interactive, autoApprove, autoReject bool
	policyFile                           string
	once                                 bool
	delay                                time.Duration
	logFile                              string
	workers                              int
}

func runCmd(g *globals) *cobra.Command {
	o := &runOpts{}
	cmd := &cobra.Command{
		Use:   "run",
		Short: "Hold the push channel open and answer each request (ask the user, or by policy)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			n := 0
			for _, b := range []bool{o.interactive, o.autoApprove, o.autoReject, o.policyFile != ""} {
				if b {
					n++
				}
			}
			if n > 1 {
				return errors.New("choose one of --interactive, --auto-approve, --auto-reject and --policy")
			}
			pol := &Policy{}
			switch {
			case o.autoApprove:
				pol.Default = Rule{Submissions: approve, Reads: grant}
			case o.autoReject:
				pol.Default = Rule{Submissions: reject, Reads: refuse}
			case o.policyFile != "":
				p, err := loadPolicy(o.policyFile)
				if err != nil {
					return err
				}
				pol = p
			default:
				if !o.interactive && !term.IsTerminal(int(os.Stdin.Fd())) {
					return errors.New("stdin is not a terminal: choose --auto-approve, --auto-reject or --policy FILE")
				}
				pol.Default = Rule{Submissions: askUser, Reads: askUser}
			}
			if o.logFile != "" {
				f, err := os.OpenFile(o.logFile, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
				if err != nil {
					return err
				}
				defer f.Close()
				logOut = io.MultiWriter(os.Stdout, f)
			}
			cfg, c, err := open(cmd.Context(), g.home, g.passFile)
			if err != nil {
				return err
			}
			pins, err := loadPins(g.home)
			if err != nil {
				return err
			}
			d := &device{cfg: cfg, c: c, pol: pol, pins: pins, delay: o.delay, workers: o.workers,
				handled: map[string]bool{}, inflight: map[string]bool{}}
			if o.interactive || (pol.Default.Submissions == askUser || pol.Default.Reads == askUser) && term.IsTerminal(int(os.Stdin.Fd())) {
				d.prompt = newPrompter(os.Stdin)
			}
			if o.once {
				return d.runOnce(cmd.Context())
			}
			return d.run(cmd.Context())
		},
	}
	f := cmd.Flags()
	f.BoolVar(&o.interactive, "interactive", false, "show each request and ask y/n (default on a terminal)")
	f.BoolVar(&o.autoApprove, "auto-approve", false, "approve every checked submission and grant every checked access request")
	f.BoolVar(&o.autoReject, "auto-reject", false, "reject every submission and refuse every access request")
	f.StringVar(&o.policyFile, "policy", "", "JSON policy file: per party, approve/reject/ask submissions and grant/refuse/ask reads")
	f.BoolVar(&o.once, "once", false, "answer the open requests and exit instead of listening")
	f.IntVar(&o.workers, "workers", 1, "answer this many requests at once (automatic policies only)")
	f.StringVar(&o.logFile, "log", "", "also append the log lines to this file")
	f.DurationVar(&o.delay, "delay", 0, "wait this long before answering each request (a slow user)")
	return cmd
}

// listCmd is a command that opens the device and prints the rows that
// list returns under header.
func listCmd(g *globals, use, short, header string, list func(ctx context.Context, c *client.Client) ([]string, error)) *cobra.Command {
	return &cobra.Command{
		Use: use, Short: short, Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, c, err := open(cmd.Context(), g.home, g.passFile)
			if err != nil {
				return err
			}
			rows, err := list(cmd.Context(), c)
			if err != nil {
				return err
			}
			return clihome.PrintTable(header, rows)
		},
	}
}

func requestsCmd(g *globals) *cobra.Command {
	return listCmd(g, "requests", "List the open requests", "REQUEST\tKIND\tRECORD\tEXPIRES",
		func(ctx context.Context, c *client.Client) ([]string, error) {
			rs, err := c.DeviceRequests(ctx)
			var rows []string
			for _, r := range rs {
				rows = append(rows, fmt.Sprintf("%s\t%s\t%s\t%s", r.ID, r.Kind, r.RecordID, r.Expires.Format(time.RFC3339)))
			}
			return rows, err
		})
}

func recordsCmd(g *globals) *cobra.Command {
	return listCmd(g, "records", "List the user's records", "RECORD\tSTATE\tSIZE\tSUBMITTER\tCREATED",
		func(ctx context.Context, c *client.Client) ([]string, error) {
			rs, err := c.DeviceRecords(ctx)
			var rows []string
			for _, r := range rs {
				rows = append(rows, fmt.Sprintf("%s\t%s\t%d\t%s\t%s", r.ID, r.State, r.CiphertextSize, r.SubmitterID, r.Created.Format(time.RFC3339)))
			}
			return rows, err
		})
}

func grantsCmd(g *globals) *cobra.Command {
	return listCmd(g, "grants", "List the grants made on the user's records", "GRANT\tRECORD\tGRANTEE\tPURPOSE\tEXPIRES\tSTATUS",
		func(ctx context.Context, c *client.Client) ([]string, error) {
			gs, err := c.DeviceGrants(ctx)
			var rows []string
			for _, x := range gs {
				st := "active"
				switch {
				case x.Revoked != nil:
					st = "revoked"
				case time.Now().After(x.Expires):
					st = "expired"
				}
				rows = append(rows, fmt.Sprintf("%s\t%s\t%s\t%q\t%s\t%s", x.ID, x.RecordID, x.GranteeFP, x.Purpose, x.Expires.Format(time.RFC3339), st))
			}
			return rows, err
		})
}

func revokeCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use: "revoke GRANT", Short: "Revoke a grant (the server stops serving the record to its grantee)", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			_, c, err := open(cmd.Context(), g.home, g.passFile)
			if err != nil {
				return err
			}
			x, err := c.RevokeGrant(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			fmt.Printf("revoked grant %s on record %s\n", x.ID, x.RecordID)
			return nil
		},
	}
}
