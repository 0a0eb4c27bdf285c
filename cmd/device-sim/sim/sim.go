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
	"strings"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/keyholder/keyholder/internal/clihome"
	"github.com/keyholder/keyholder/internal/cpuprofile"
	"github.com/keyholder/keyholder/pkg/api"
	"github.com/keyholder/keyholder/pkg/client"
	"github.com/keyholder/keyholder/pkg/envelope"
	"github.com/keyholder/keyholder/pkg/keychain"
	"github.com/keyholder/keyholder/pkg/statement"
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
		Use:   "device-sim",
		Short: "Play the user's phone: hold the device key, approve, reject and grant",
		Long: `Play the user's phone: hold the device key, approve, reject and grant.

The device key is stored encrypted with a passphrase of at least 8 characters
(chosen at enroll or link), read from --passphrase-file, else from the file
KEYHOLDER_DEVICE_PASSPHRASE_FILE names, else asked on the terminal.

A KEYFILE argument of "-" is stdin. Commands that print records, grants or
requests take --json: one JSON document on stdout, in the HTTP API's types
(docs/openapi.yaml).

Environment: KEYHOLDER_DEVICE_HOME (--home), KEYHOLDER_DEVICE_PASSPHRASE_FILE
(--passphrase-file), KEYHOLDER_SERVER (--server of enroll and link).

Exit codes:
  0  done
  1  any other error
  2  usage: an unknown command or flag, a missing or malformed argument
  3  refused: the user's device refused this device's link request (link)
  4  timed out: --timeout ran out, or the link request expired (link)
  5  could not reach the server: connection refused, host not found, network
     failure`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	pf := root.PersistentFlags()
	pf.StringVar(&g.home, "home", "", "device home directory (key, enrollment) (default $KEYHOLDER_DEVICE_HOME or ~/.keyholder-device)")
	pf.StringVar(&g.passFile, "passphrase-file", "", "file holding the device key passphrase (default $KEYHOLDER_DEVICE_PASSPHRASE_FILE, else ask on the terminal)")
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
	root.AddCommand(enrollCmd(g), linkCmd(g), approveDeviceCmd(g), showCmd(g), revokeDeviceCmd(g), recoveryCmd(g),
		runCmd(g), requestsCmd(g), recordsCmd(g), grantsCmd(g), revokeCmd(g),
		clihome.LogCmd("device-sim", func() string { return g.home }))
	clihome.Conventions(root)
	return root
}

func enrollCmd(g *globals) *cobra.Command {
	var server, code, pushKind, pushToken string
	cmd := &cobra.Command{
		Use:   "enroll --server URL --code CODE",
		Short: "Generate the device key, store it encrypted, and enroll as the user's first device with the operator's one-time code",
		Long: `Enroll the user's first device. The operator's one-time code admits only a user's
first device: this device signs the first link of the user's key chain. Further
devices join with device-sim link, approved from a device already enrolled.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if server == "" || code == "" {
				return clihome.Usagef("--server and --code are required")
			}
			return newDevice(cmd.Context(), g, server, func(ctx context.Context, c *client.Client) (*config, error) {
				r, err := c.Enroll(ctx, code, pushKind, pushToken)
				if err != nil {
					return nil, fmt.Errorf("enrolling: %w", err)
				}
				return &config{Server: c.BaseURL(), DeviceID: r.DeviceID, UserID: r.UserID, Fingerprint: r.Fingerprint}, nil
			})
		},
	}
	cmd.Flags().StringVar(&server, "server", os.Getenv("KEYHOLDER_SERVER"), "server URL")
	cmd.Flags().StringVar(&code, "code", "", "one-time enrollment code from the operator")
	cmd.Flags().StringVar(&pushKind, "push-kind", "local", "push channel: local (server-sent events) or fcm")
	cmd.Flags().StringVar(&pushToken, "push-token", "", "FCM registration token (with --push-kind fcm)")
	return cmd
}

// newDevice makes the device key in g.home (refusing to replace one),
// joins the user with join, pins the user's key chain and saves the
// config. The key is removed again if join fails.
func newDevice(ctx context.Context, g *globals, server string, join func(context.Context, *client.Client) (*config, error)) error {
	if _, err := os.Stat(filepath.Join(g.home, configFile)); err == nil {
		return fmt.Errorf("%s already holds an enrolled device", g.home)
	}
	// A key without an enrollment may still be enrolled on the server
	// (device.json was not saved): never replace it.
	if _, err := os.Stat(filepath.Join(g.home, keyFile)); err == nil {
		return fmt.Errorf("%s already holds a device key (%s); move it away to enroll a new one", g.home, keyFile)
	}
	if err := os.MkdirAll(g.home, 0o700); err != nil {
		return err
	}
	pass, err := passphrase(ctx, g.passFile, true)
	if err != nil {
		return err
	}
	defer clear(pass)
	id, armored, err := client.GenerateIdentity("keyholder device", pass, envelope.S2KArgon2)
	if err != nil {
		return err
	}
	c, err := newClient(g.home, server, id)
	if err != nil {
		return err
	}
	keyPath := filepath.Join(g.home, keyFile)
	if err := clihome.WriteFile(keyPath, armored, 0o600); err != nil {
		return err
	}
	cfg, err := join(ctx, c)
	if err != nil {
		os.Remove(keyPath)
		return err
	}
	// Pin the user's chain as this device first sees it.
	ch, err := c.OwnChain(ctx)
	if err != nil {
		return fmt.Errorf("checking the user's key chain: %w", err)
	}
	if err := clihome.WriteJSON(filepath.Join(g.home, configFile), cfg); err != nil {
		return err
	}
	fmt.Printf("enrolled device %s for user %s\nkey fingerprint %s (private key encrypted in %s)\n", cfg.DeviceID, cfg.UserID, cfg.Fingerprint, keyPath)
	fmt.Printf("the user's key chain: %d link(s), first device %s (parties pin it: keyholder pin %s %s)\n",
		ch.Len(), ch.Genesis(), cfg.UserID, ch.Genesis())
	return nil
}

func linkCmd(g *globals) *cobra.Command {
	var server, user, pushKind, pushToken, logFile string
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "link --server URL --user USER",
		Short: "Join a user who has a device already: show a code, and wait until that device approves this one",
		Long: `Add this phone as another device of a user. It generates the device key, asks the
server to put a link request on the user's devices, and prints a code. On a device
already enrolled, run device-sim approve-device CODE with the code shown here: that
device signs the link that adds this key to the user's key chain.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if server == "" || user == "" {
				return clihome.Usagef("--server and --user are required")
			}
			out := io.Writer(os.Stdout)
			if logFile != "" {
				f, err := os.OpenFile(logFile, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
				if err != nil {
					return err
				}
				defer f.Close()
				out = io.MultiWriter(os.Stdout, f)
			}
			return newDevice(cmd.Context(), g, server, func(ctx context.Context, c *client.Client) (*config, error) {
				lr, err := c.RequestLink(ctx, user, pushKind, pushToken)
				if err != nil {
					return nil, fmt.Errorf("asking to join user %s: %w", user, err)
				}
				fmt.Fprintf(out, "link request %s for user %s\n", lr.ID, lr.UserID)
				fmt.Fprintf(out, "code: %s\n", lr.Code)
				fmt.Fprintf(out, "on a device of the user, compare the code it shows and run: device-sim approve-device %s\n", lr.Code)
				ctx, cancel := context.WithTimeout(ctx, timeout)
				defer cancel()
				notApproved := func() error {
					err := fmt.Errorf("no device approved this one within %s", timeout)
					if errors.Is(ctx.Err(), context.DeadlineExceeded) {
						return clihome.TimedOut(err)
					}
					return err
				}
				for {
					st, err := c.LinkState(ctx, lr.ID)
					switch {
					case err != nil && ctx.Err() != nil:
						return nil, notApproved()
					case err != nil:
						return nil, err
					case st.State == "approved":
						return &config{Server: c.BaseURL(), DeviceID: st.DeviceID, UserID: st.UserID, Fingerprint: st.Fingerprint}, nil
					case st.State == "refused":
						return nil, clihome.Refused(fmt.Errorf("the link request was %s", st.State))
					case st.State == "expired":
						return nil, clihome.TimedOut(fmt.Errorf("the link request was %s", st.State))
					case st.State != "open":
						return nil, fmt.Errorf("the link request was %s", st.State)
					}
					select {
					case <-ctx.Done():
						return nil, notApproved()
					case <-time.After(500 * time.Millisecond):
					}
				}
			})
		},
	}
	cmd.Flags().StringVar(&server, "server", os.Getenv("KEYHOLDER_SERVER"), "server URL")
	cmd.Flags().StringVar(&user, "user", "", "the user's id or handle")
	cmd.Flags().StringVar(&pushKind, "push-kind", "local", "push channel: local (server-sent events) or fcm")
	cmd.Flags().StringVar(&pushToken, "push-token", "", "FCM registration token (with --push-kind fcm)")
	cmd.Flags().DurationVar(&timeout, "timeout", 10*time.Minute, "give up after this long")
	cmd.Flags().StringVar(&logFile, "log", "", "also append the code and progress lines to this file")
	return cmd
}

func approveDeviceCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "approve-device CODE",
		Short: "Add a new device to the user: the one whose link request shows CODE",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			_, c, err := open(ctx, g.home, g.passFile)
			if err != nil {
				return err
			}
			// Every page: the link request may follow many others.
			reqs, err := client.All(ctx, api.Page{Limit: api.MaxPageSize}, c.DeviceRequestsPage)
			if err != nil {
				return err
			}
			for _, r := range reqs {
				if r.Kind != client.KindDevice {
					continue
				}
				det, err := c.DeviceRequest(ctx, r.ID)
				if err != nil {
					return err
				}
				cr, err := c.Check(ctx, det)
				if err != nil {
					return err
				}
				if !cr.MatchesCode(args[0]) {
					continue
				}
				if _, err := c.AddDevice(ctx, cr, args[0]); err != nil {
					return err
				}
				fmt.Printf("added device %s to user %s: signed the add-device link of the key chain\n", cr.NewDevice.Fingerprint(), det.UserID)
				return nil
			}
			return fmt.Errorf("no open device request shows code %s", args[0])
		},
	}
}

// openChain opens the device and fetches the user's key chain as this
// device verifies it.
func openChain(ctx context.Context, g *globals) (*config, *client.Client, *keychain.State, error) {
	cfg, c, err := open(ctx, g.home, g.passFile)
	if err != nil {
		return nil, nil, nil, err
	}
	ch, err := c.OwnChain(ctx)
	if err != nil {
		return nil, nil, nil, err
	}
	return cfg, c, ch, nil
}

// shown is show --json: this device and its user's verified key chain.
type shown struct {
	DeviceID    string                `json:"device_id"`
	UserID      string                `json:"user_id"`
	Fingerprint string                `json:"fingerprint"`
	Server      string                `json:"server"`
	Chain       clihome.VerifiedChain `json:"chain"`
}

func showCmd(g *globals) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "show",
		Short: "Show this device, and the user's key chain as this device verified it (the first device is what parties pin)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, _, ch, err := openChain(cmd.Context(), g)
			if err != nil {
				return err
			}
			if asJSON {
				return clihome.PrintJSON(shown{DeviceID: cfg.DeviceID, UserID: cfg.UserID, Fingerprint: cfg.Fingerprint, Server: cfg.Server, Chain: clihome.ChainKeys(ch)})
			}
			fmt.Printf("device %s of user %s, key %s\n", cfg.DeviceID, cfg.UserID, cfg.Fingerprint)
			fmt.Printf("parties pin the first device: keyholder pin %s %s\n", cfg.UserID, ch.Genesis())
			clihome.PrintChain(os.Stdout, ch)
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the device and its verified key chain as JSON")
	return cmd
}

func revokeDeviceCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "revoke-device FINGERPRINT",
		Short: "Revoke a device of the user (this one too): sign the revoke-device link of the key chain",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			_, c, ch, err := openChain(ctx, g)
			if err != nil {
				return err
			}
			m, ok := ch.Device(strings.ToUpper(args[0]))
			if !ok {
				return fmt.Errorf("%s is not a device of the user's key chain", args[0])
			}
			if _, err := c.ExtendChain(ctx, statement.ActionRevokeDevice, m.Key); err != nil {
				return err
			}
			fmt.Printf("revoked device %s: records are no longer sealed to it\n", m.Key.Fingerprint())
			return nil
		},
	}
}

func recoveryCmd(g *globals) *cobra.Command {
	var remove bool
	cmd := &cobra.Command{
		Use:   "recovery [KEYFILE] [--remove]",
		Short: "Set the user's recovery key (an OpenPGP public key file, - for stdin) or --remove it: sign the link of the key chain",
		Args:  cobra.RangeArgs(0, 1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if remove == (len(args) == 1) {
				return clihome.Usagef("give a KEYFILE to set, or --remove")
			}
			ctx := cmd.Context()
			_, c, ch, err := openChain(ctx, g)
			if err != nil {
				return err
			}
			if remove {
				if ch.Recovery() == nil {
					return errors.New("the user has no recovery key")
				}
				if _, err := c.ExtendChain(ctx, statement.ActionRemoveRecovery, ch.Recovery()); err != nil {
					return err
				}
				fmt.Printf("removed recovery key %s\n", ch.Recovery().Fingerprint())
				return nil
			}
			b, err := clihome.ReadFile(args[0])
			if err != nil {
				return err
			}
			k, err := envelope.ParseKey(b)
			if err != nil {
				return err
			}
			if k.HasPrivate() {
				return errors.New("give the recovery key's public key only")
			}
			if _, err := c.ExtendChain(ctx, statement.ActionSetRecovery, k); err != nil {
				return err
			}
			fmt.Printf("set recovery key %s: records are sealed to it too\n", k.Fingerprint())
			return nil
		},
	}
	cmd.Flags().BoolVar(&remove, "remove", false, "remove the recovery key")
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
				return clihome.Usagef("choose one of --interactive, --auto-approve, --auto-reject and --policy")
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
					return clihome.Usagef("stdin is not a terminal: choose --auto-approve, --auto-reject or --policy FILE")
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
			stopProfile, err := cpuprofile.FromEnv() // for measurements, as keyholderd's
			if err != nil {
				return err
			}
			defer stopProfile()
			d := newDeviceRunner(cfg, c, pol, pins)
			d.delay, d.workers = o.delay, o.workers
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

// listCmd is a command that opens the device and prints what list
// returns for the page the paging flags ask for: rows (fields separated
// by tabs) under header, or with --json doc; and how to read the next
// page, if there is one.
func listCmd(g *globals, use, short, header string,
	list func(ctx context.Context, c *client.Client, pages clihome.PageFlags) (doc any, rows []string, next string, err error)) *cobra.Command {
	var asJSON bool
	var pages clihome.PageFlags
	cmd := &cobra.Command{
		Use: use, Short: short, Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, c, err := open(cmd.Context(), g.home, g.passFile)
			if err != nil {
				return err
			}
			doc, rows, next, err := list(cmd.Context(), c, pages)
			if err != nil {
				return err
			}
			if asJSON {
				return clihome.PrintJSON(doc)
			}
			clihome.NoteNext(cmd.ErrOrStderr(), next)
			return clihome.PrintTable(header, rows)
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the list as JSON")
	pages.Register(cmd.Flags())
	return cmd
}

func requestsCmd(g *globals) *cobra.Command {
	return listCmd(g, "requests", "List the open requests", "REQUEST\tKIND\tRECORD\tEXPIRES",
		func(ctx context.Context, c *client.Client, pages clihome.PageFlags) (any, []string, string, error) {
			rs, next, err := clihome.Read(ctx, pages, c.DeviceRequestsPage)
			var rows []string
			for _, r := range rs {
				rows = append(rows, fmt.Sprintf("%s\t%s\t%s\t%s", r.ID, r.Kind, r.RecordID, r.Expires.Format(time.RFC3339)))
			}
			return api.RequestList{Requests: clihome.NonNil(rs), NextCursor: next}, rows, next, err
		})
}

func recordsCmd(g *globals) *cobra.Command {
	return listCmd(g, "records", "List the user's records", "RECORD\tSTATE\tSIZE\tSUBMITTER\tCREATED",
		func(ctx context.Context, c *client.Client, pages clihome.PageFlags) (any, []string, string, error) {
			rs, next, err := clihome.Read(ctx, pages, c.DeviceRecordsPage)
			var rows []string
			for _, r := range rs {
				rows = append(rows, fmt.Sprintf("%s\t%s\t%d\t%s\t%s", r.ID, r.State, r.CiphertextSize, r.SubmitterID, r.Created.Format(time.RFC3339)))
			}
			return api.RecordList{Records: clihome.NonNil(rs), NextCursor: next}, rows, next, err
		})
}

func grantsCmd(g *globals) *cobra.Command {
	return listCmd(g, "grants", "List the grants made on the user's records", "GRANT\tRECORD\tGRANTEE\tPURPOSE\tEXPIRES\tSTATUS",
		func(ctx context.Context, c *client.Client, pages clihome.PageFlags) (any, []string, string, error) {
			gs, next, err := clihome.Read(ctx, pages, c.DeviceGrantsPage)
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
			return api.GrantList{Grants: clihome.NonNil(gs), NextCursor: next}, rows, next, err
		})
}

func revokeCmd(g *globals) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
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
			if asJSON {
				return clihome.PrintJSON(x)
			}
			fmt.Printf("revoked grant %s on record %s\n", x.ID, x.RecordID)
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the revoked grant as JSON")
	return cmd
}
