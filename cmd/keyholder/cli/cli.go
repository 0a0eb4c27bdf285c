// Package cli is the keyholder command (the party's CLI). It is a package
// with Main so tests can run it in-process.
package cli

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"mime"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/keyholder/keyholder/internal/clihome"
	"github.com/keyholder/keyholder/pkg/api"
	"github.com/keyholder/keyholder/pkg/client"
	"github.com/keyholder/keyholder/pkg/envelope"
	"github.com/keyholder/keyholder/pkg/keychain"
	"github.com/keyholder/keyholder/pkg/statement"
)

// Main runs keyholder with os.Args and returns the exit code.
func Main() int { return clihome.Main("keyholder", rootCmd()) }

func rootCmd() *cobra.Command {
	a := &app{}
	root := &cobra.Command{
		Use:   "keyholder",
		Short: "Keyholder party CLI: seal records to a user's device, request access, open granted records",
		Long: `Keyholder party CLI: seal records to a user's device, request access, open
granted records.

A file argument or -o of "-" is stdin or stdout (open -o - first checks the
whole record, see keyholder open --help). Commands that print records, grants
or requests take --json: one JSON document on stdout, in the HTTP API's types
(docs/openapi.yaml). Progress bars are drawn on stderr when it is a terminal.

Environment: KEYHOLDER_HOME, KEYHOLDER_SERVER, KEYHOLDER_PASSPHRASE_FILE (the
flags' defaults), KEYHOLDER_ADMIN_TOKEN (register).

Exit codes:
  0  done
  1  any other error
  2  usage: an unknown command or flag, a missing or malformed argument
  3  refused or rejected: the user's device rejected the record (wait), or
     refused this party's access request (request --wait, open, verify);
     monitor found a key it does not know, a broken chain or a log
     inconsistency
  4  timed out: --timeout ran out (wait, request --wait), or the record or
     the access request expired without an answer
  5  could not reach the server: connection refused, host not found, network
     failure`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	pf := root.PersistentFlags()
	pf.StringVar(&a.home, "home", "", "key directory (default $KEYHOLDER_HOME or ~/.keyholder)")
	pf.StringVar(&a.server, "server", "", "server URL (default $KEYHOLDER_SERVER, the one saved in the home, or http://127.0.0.1:8080)")
	pf.StringVar(&a.passFile, "passphrase-file", "", "file holding the party key passphrase (default $KEYHOLDER_PASSPHRASE_FILE, or ask)")
	root.PersistentPreRunE = func(*cobra.Command, []string) error {
		var err error
		if a.home, err = clihome.Dir(a.home, "KEYHOLDER_HOME", ".keyholder"); err != nil {
			return err
		}
		if a.server == "" {
			a.server = os.Getenv("KEYHOLDER_SERVER")
		}
		if a.passFile == "" {
			a.passFile = os.Getenv("KEYHOLDER_PASSPHRASE_FILE")
		}
		return nil
	}
	root.AddCommand(keygenCmd(a), importCmd(a), pubkeyCmd(a), registerCmd(a), sealCmd(a), uploadCmd(a), statusCmd(a), waitCmd(a),
		requestCmd(a), openCmd(a), fetchCmd(a), verifyCmd(a), recordsCmd(a), grantsCmd(a), pinCmd(a), keysCmd(a),
		clihome.LogCmd("keyholder", func() string { return a.home }), monitorCmd(a))
	clihome.Conventions(root)
	return root
}

func (a *app) checkNoKey() error {
	if _, err := os.Stat(a.path(keyFile)); err == nil {
		return fmt.Errorf("%s already holds a party key", a.home)
	}
	return os.MkdirAll(a.home, 0o700)
}

func keygenCmd(a *app) *cobra.Command {
	var name string
	var noPass bool
	cmd := &cobra.Command{
		Use:   "keygen --name NAME",
		Short: "Make the party key (Ed25519 signing, Cv25519 encryption) in the home directory",
		Long: `Make the party key (Ed25519 signing, Cv25519 encryption) in the home directory.
The private key is stored encrypted with a passphrase of at least 8 characters,
read from --passphrase-file (KEYHOLDER_PASSPHRASE_FILE) or asked twice on the
terminal; --no-passphrase stores it unprotected (mode 0600) for unattended use.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := a.checkNoKey(); err != nil {
				return err
			}
			var armored []byte
			var id *client.Identity
			if noPass {
				k, err := envelope.GenerateKey(name)
				if err != nil {
					return err
				}
				// Round-trip through a throw-away passphrase to reach the
				// unprotected serialization.
				tmp := []byte("keyholder-keygen")
				prot, err := k.MarshalPrivate(tmp, envelope.S2KIterated)
				if err != nil {
					return err
				}
				if id, err = client.ParseIdentity(prot, tmp); err != nil {
					return err
				}
				if armored, err = id.MarshalUnprotected(); err != nil {
					return err
				}
			} else {
				pass, err := a.passphrase(cmd.Context(), true)
				if err != nil {
					return err
				}
				defer clear(pass)
				// Iterated S2K: `gpg --import` reads it.
				if id, armored, err = client.GenerateIdentity(name, pass, envelope.S2KIterated); err != nil {
					return err
				}
			}
			return a.install(id, armored, name)
		},
	}
	cmd.Flags().StringVar(&name, "name", "", "the key's user id (the party's name)")
	cmd.Flags().BoolVar(&noPass, "no-passphrase", false, "store the private key without a passphrase (mode 0600), for unattended use")
	return cmd
}

func (a *app) install(id *client.Identity, armored []byte, name string) error {
	if err := clihome.WriteFile(a.path(keyFile), armored, 0o600); err != nil {
		return err
	}
	if err := clihome.WriteFile(a.path(pubFile), id.Key.Public().Armor(), 0o644); err != nil {
		return err
	}
	if err := a.saveConfig(&config{Server: a.server, Name: name, Fingerprint: id.Fingerprint()}); err != nil {
		return err
	}
	fmt.Printf("%s\n", id.Fingerprint())
	fmt.Fprintf(os.Stderr, "party key %s in %s; public key in %s\n", id.Fingerprint(), a.path(keyFile), a.path(pubFile))
	return nil
}

func importCmd(a *app) *cobra.Command {
	var name string
	cmd := &cobra.Command{
		Use:   "import KEY-FILE",
		Short: "Use an existing secret key (armored or binary, e.g. from gpg --export-secret-keys; - for stdin) as the party key",
		Long: `Use an existing secret key (armored or binary, e.g. from gpg --export-secret-keys)
as the party key; KEY-FILE - reads it from stdin (give the passphrase with
--passphrase-file then). The key is kept as protected as it came: unprotected, or
with its passphrase, which must have at least 8 characters.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := a.checkNoKey(); err != nil {
				return err
			}
			data, err := clihome.ReadFile(args[0])
			if err != nil {
				return err
			}
			id, err := client.ParseIdentity(data, nil)
			if errors.Is(err, client.ErrPassphrase) {
				var pass []byte
				if pass, err = a.passphrase(cmd.Context(), false); err != nil {
					return err
				}
				id, err = client.ParseIdentity(data, pass)
				if err == nil {
					if err = clihome.CheckPassphrase(pass, "the key's passphrase"); err != nil {
						err = fmt.Errorf("%w; give the key a longer one first (gpg --change-passphrase KEY-ID), then import it again", err)
					}
				}
				clear(pass)
			}
			if err != nil {
				return err
			}
			if name == "" {
				name = id.Key.Name()
			}
			// Keep the key as protected as it came.
			return a.install(id, data, name)
		},
	}
	cmd.Flags().StringVar(&name, "name", "", "the party's name (default: the key's user id)")
	return cmd
}

func pubkeyCmd(a *app) *cobra.Command {
	return &cobra.Command{
		Use: "pubkey", Short: "Print the party's armored public key", Args: cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			b, err := os.ReadFile(a.path(pubFile))
			if err != nil {
				return err
			}
			_, err = os.Stdout.Write(b)
			return err
		},
	}
}

func registerCmd(a *app) *cobra.Command {
	var name, adminToken string
	cmd := &cobra.Command{
		Use:   "register",
		Short: "Register the party key with the server (with an admin token), or print what the operator must run",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := a.loadConfig()
			if err != nil {
				return err
			}
			if name == "" {
				name = cfg.Name
			}
			if name == "" {
				return clihome.Usagef("--name is required")
			}
			pub, err := os.ReadFile(a.path(pubFile))
			if err != nil {
				return err
			}
			if adminToken == "" {
				adminToken = os.Getenv("KEYHOLDER_ADMIN_TOKEN")
			}
			if adminToken == "" {
				fmt.Printf("Ask the operator of %s to run:\n\n  keyholderd admin party create %q %s\n", a.serverURL(), name, a.path(pubFile))
				fmt.Printf("\n(key fingerprint %s; they should confirm it with you out of band)\n", cfg.Fingerprint)
				return nil
			}
			c, err := client.New(a.serverURL(), client.WithAdminToken(adminToken))
			if err != nil {
				return err
			}
			p, err := c.CreateParty(cmd.Context(), name, pub)
			if err != nil {
				return err
			}
			if p.Fingerprint != cfg.Fingerprint {
				return fmt.Errorf("the server registered key %s, not ours (%s)", p.Fingerprint, cfg.Fingerprint)
			}
			cfg.Server, cfg.Name = a.serverURL(), name
			if err := a.saveConfig(cfg); err != nil {
				return err
			}
			fmt.Printf("registered party %s (%q, key %s) on %s\n", p.ID, p.Name, p.Fingerprint, a.serverURL())
			return nil
		},
	}
	cmd.Flags().StringVar(&name, "name", "", "party name (default: the key's name)")
	cmd.Flags().StringVar(&adminToken, "admin-token", "", "operator token (default $KEYHOLDER_ADMIN_TOKEN); without it, print the operator command")
	return cmd
}

func sealCmd(a *app) *cobra.Command {
	var to, title, purpose, contentType, profile, idem string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "seal FILE --to USER",
		Short: "Encrypt FILE (- for stdin) to the user's device keys and upload it in one stream; print the record id",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkUserID("--to", to); err != nil {
				return err
			}
			prof, err := envelope.ParseProfile(profile)
			if err != nil {
				return clihome.Usage(err)
			}
			c, err := a.client(cmd.Context())
			if err != nil {
				return err
			}
			f, size, err := clihome.OpenInput(args[0])
			if err != nil {
				return err
			}
			defer f.Close()
			filename := ""
			if args[0] != clihome.Stdio {
				filename = filepath.Base(args[0])
			}
			if contentType == "" {
				contentType = mime.TypeByExtension(filepath.Ext(filename))
			}
			if contentType == "" {
				contentType = "application/octet-stream"
			}
			pm := &client.PrivateMetadata{Title: title, Filename: filename}
			bar := newProgress("sealing", size)
			var sealed int64
			up, err := c.SealAndUpload(cmd.Context(), to, f, client.UploadOptions{ContentType: contentType, Size: size,
				Purpose: purpose, Private: pm, Profile: prof, IdempotencyKey: idem, Progress: func(n int64) { sealed = n; bar.set(n) }})
			bar.done()
			if err != nil {
				return err
			}
			if err := a.savePin(up.Record.ID, to, up.Recipients); err != nil {
				return err
			}
			if asJSON {
				if err := clihome.PrintJSON(up.Record); err != nil {
					return err
				}
			} else {
				fmt.Println(up.Record.ID)
			}
			if up.Existing {
				fmt.Fprintf(os.Stderr, "already uploaded with idempotency key %q (an earlier run whose answer was lost); nothing sent again: record %s is %s (ciphertext sha256 %s)\n",
					idem, up.Record.ID, up.Record.State, up.Digest.Hex())
				return nil
			}
			fmt.Fprintf(os.Stderr, "sealed %s to %d key(s) of user %s's verified key chain (%s) and uploaded it: record %s is %s (ciphertext sha256 %s)\n",
				human(sealed), len(up.Recipients), to, fingerprints(up.Recipients), up.Record.ID, up.Record.State, up.Digest.Hex())
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&to, "to", "", "user id")
	f.StringVar(&title, "title", "", "title shown on the user's device (sealed: the server cannot read it)")
	f.StringVar(&purpose, "purpose", "", "public reason for the submission")
	f.StringVar(&contentType, "content-type", "", "media type (default: from the file name)")
	f.StringVar(&profile, "profile", "compat", "compat (GnuPG 2.2 opens it) or modern (SEIPDv2, AES-256-GCM)")
	f.StringVar(&idem, "idempotency-key", "", "makes a retried upload safe: run again with the same key, it reports the record already stored")
	f.BoolVar(&asJSON, "json", false, "print the record (JSON) instead of its id")
	return cmd
}

func uploadCmd(a *app) *cobra.Command {
	var to, purpose, contentType, idem string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "upload MESSAGE --to USER",
		Short: "Upload an OpenPGP message already encrypted to the user's keys (e.g. by gpg --encrypt; - for stdin)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkUserID("--to", to); err != nil {
				return err
			}
			c, err := a.client(cmd.Context())
			if err != nil {
				return err
			}
			f, size, err := clihome.OpenInput(args[0])
			if err != nil {
				return err
			}
			defer f.Close()
			if contentType == "" {
				contentType = "application/octet-stream"
			}
			bar := newProgress("uploading", size)
			up, err := c.Upload(cmd.Context(), to, f, client.UploadOptions{ContentType: contentType, Purpose: purpose, IdempotencyKey: idem, Progress: bar.set})
			bar.done()
			if err != nil {
				return err
			}
			if err := a.savePin(up.Record.ID, to, up.Recipients); err != nil {
				return err
			}
			if asJSON {
				return clihome.PrintJSON(up.Record)
			}
			fmt.Println(up.Record.ID)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&to, "to", "", "user id")
	f.StringVar(&purpose, "purpose", "", "public reason for the submission")
	f.StringVar(&contentType, "content-type", "", "media type of the plaintext")
	f.StringVar(&idem, "idempotency-key", "", "makes a retried upload safe")
	f.BoolVar(&asJSON, "json", false, "print the record (JSON) instead of its id")
	return cmd
}

func statusCmd(a *app) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use: "status RECORD", Short: "Show a record's state", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client(cmd.Context())
			if err != nil {
				return err
			}
			r, err := c.Record(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			if asJSON {
				return clihome.PrintJSON(r)
			}
			fmt.Printf("record %s: %s\n", r.ID, r.State)
			fmt.Printf("  user %s, %s ciphertext, sha256 %s\n", r.UserID, human(r.CiphertextSize), r.CiphertextSHA256)
			if r.Decided != nil {
				fmt.Printf("  decided %s by device %s\n", r.Decided.Format(time.RFC3339), r.DeviceFingerprint)
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the record as JSON")
	return cmd
}

func waitCmd(a *app) *cobra.Command {
	var timeout time.Duration
	var asJSON bool
	cmd := &cobra.Command{
		Use: "wait RECORD", Short: "Wait until the user's device approves or rejects the record; fail unless approved", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client(cmd.Context())
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
			defer cancel()
			fmt.Fprintf(os.Stderr, "waiting up to %s for the user's device to approve or reject record %s (Ctrl-C stops waiting, not the request)\n", timeout, args[0])
			r, err := c.WaitDecided(ctx, args[0])
			if errors.Is(err, context.DeadlineExceeded) {
				return clihome.TimedOut(fmt.Errorf("record %s is still pending after %s", args[0], timeout))
			}
			if err != nil {
				return err
			}
			if r.State != api.RecordApproved {
				if rj, err := statement.ParseRejection([]byte(r.DecisionStatement)); err == nil && r.State == api.RecordRejected {
					return clihome.Refused(fmt.Errorf("record %s was rejected by device %s (reason: %s)", r.ID, rj.Device, rj.Reason))
				}
				err := fmt.Errorf("record %s was %s", r.ID, r.State)
				switch r.State {
				case api.RecordRejected:
					return clihome.Refused(err)
				case api.RecordExpired:
					return clihome.TimedOut(err)
				}
				return err
			}
			pins, err := a.pinned(r.ID)
			if err != nil {
				return err
			}
			v, err := c.VerifyRecord(cmd.Context(), r.ID, false, pins)
			if err != nil {
				return err
			}
			if asJSON {
				return clihome.PrintJSON(v.Record)
			}
			fmt.Printf("record %s approved by device %s of user %s's key chain (signature verified)\n", r.ID, v.ApprovalKey.Fingerprint(), r.UserID)
			return nil
		},
	}
	cmd.Flags().DurationVar(&timeout, "timeout", 10*time.Minute, "give up after this long")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the approved record (JSON)")
	return cmd
}

func requestCmd(a *app) *cobra.Command {
	var purpose, idem string
	var expires, timeout time.Duration
	var wait, asJSON bool
	cmd := &cobra.Command{
		Use: "request RECORD --purpose TEXT", Short: "Ask the user's device to open a record for this party", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if purpose == "" {
				return clihome.Usagef("--purpose is required: the user sees it")
			}
			c, err := a.client(cmd.Context())
			if err != nil {
				return err
			}
			if idem == "" {
				idem = "keyholder-request-" + randomHex(16)
			}
			r, err := requestAccess(cmd.Context(), c, args[0], purpose, int64(expires/time.Second), idem)
			if err != nil {
				return err
			}
			switch {
			case !asJSON:
				fmt.Println(r.RequestID)
			case !wait:
				if err := clihome.PrintJSON(r); err != nil {
					return err
				}
			}
			fmt.Fprintf(os.Stderr, "asked the user's device to open record %s (request %s, open until %s)\n", r.RecordID, r.RequestID, r.Expires.Format(time.RFC3339))
			if !wait {
				return nil
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
			defer cancel()
			fmt.Fprintf(os.Stderr, "waiting up to %s for the user's device to answer request %s\n", timeout, r.RequestID)
			st, err := c.WaitAccess(ctx, r.RequestID)
			if errors.Is(err, context.DeadlineExceeded) {
				return clihome.TimedOut(fmt.Errorf("request %s is still open after %s (the device has not answered yet)", r.RequestID, timeout))
			}
			if err != nil {
				return err
			}
			if asJSON {
				// The request's final state, whatever the answer; the
				// exit code tells a refusal or an expiry as below.
				if err := clihome.PrintJSON(st); err != nil {
					return err
				}
			}
			switch {
			case st.Answer == api.AnswerGranted:
				until := ""
				if st.GrantExpires != nil {
					until = " until " + st.GrantExpires.Format(time.RFC3339)
				}
				fmt.Fprintf(os.Stderr, "granted%s (grant %s)\n", until, st.GrantID)
				return nil
			case st.Answer == api.AnswerRefused:
				return clihome.Refused(fmt.Errorf("the user refused request %s for record %s", st.RequestID, st.RecordID))
			default:
				err := fmt.Errorf("request %s for record %s is %s without an answer", st.RequestID, st.RecordID, st.State)
				if st.State == api.RequestExpired {
					return clihome.TimedOut(err)
				}
				return err
			}
		},
	}
	f := cmd.Flags()
	f.StringVar(&purpose, "purpose", "", "why this party needs the record (shown to the user, signed into the grant)")
	f.DurationVar(&expires, "expires", time.Hour, "grant lifetime asked for")
	f.BoolVar(&wait, "wait", false, "wait for the device's answer to this request (fails unless granted)")
	f.DurationVar(&timeout, "timeout", 10*time.Minute, "with --wait: give up after this long")
	f.StringVar(&idem, "idempotency-key", "", "makes a retried request safe (default: a fresh key, with which this command retries network errors itself)")
	f.BoolVar(&asJSON, "json", false, "print the request (JSON) instead of its id; with --wait, its final state")
	return cmd
}

// requestAccess sends the access request, and sends it again with the
// same Idempotency-Key after a transient error (a network error, a 5xx):
// the server answers a repeat with the request made first, so the phone is
// asked once however often this tries.
func requestAccess(ctx context.Context, c *client.Client, record, purpose string, expiresIn int64, idem string) (*api.AccessResponse, error) {
	wait := 500 * time.Millisecond
	for attempt := 1; ; attempt++ {
		r, err := c.RequestAccessIdempotent(ctx, record, purpose, expiresIn, idem)
		if err == nil || attempt == 4 || !client.IsTransient(err) {
			return r, err
		}
		fmt.Fprintf(os.Stderr, "asking failed (%s); trying again in %s\n", clihome.OneLine(err), wait)
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(wait):
		}
		wait *= 2
	}
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

func openCmd(a *app) *cobra.Command {
	var out string
	cmd := &cobra.Command{
		Use:   "open RECORD -o FILE",
		Short: "Download, verify and decrypt a granted record in one stream; FILE is written only if every check passes",
		Long: `Download, verify and decrypt a granted record in one stream. FILE is written only
if every check passes: the approval and grant signatures by devices of the user's
verified key chain, the key packet is the granted one, the data packet's SHA-256
and size are the approved ones, and the OpenPGP integrity check, which ends the
stream. Until then the plaintext goes to a temporary file beside FILE, renamed
into place at the end.

-o - writes the plaintext to stdout, and writes no byte there before every check
has passed: the message is first downloaded into a temporary file in $TMPDIR
(ciphertext only, removed at the end) and checked in full, decrypting it to
nowhere; then it is decrypted again from that file to stdout. That costs a second
decryption and room for the ciphertext, and writes no plaintext to disk.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if out == "" {
				return clihome.Usagef("-o FILE is required")
			}
			c, err := a.client(cmd.Context())
			if err != nil {
				return err
			}
			pins, err := a.pinned(args[0])
			if err != nil {
				return err
			}
			var bar *progress
			progress := func(n, total int64) {
				if bar == nil {
					bar = newProgress("opening", total)
				}
				bar.set(n)
			}
			var v *client.Verified
			var n int64
			if out == clihome.Stdio {
				v, n, err = c.OpenRecordTo(cmd.Context(), args[0], os.Stdout, client.OpenOptions{Trusted: pins, Progress: progress})
			} else {
				v, n, err = c.OpenRecord(cmd.Context(), args[0], out, client.OpenOptions{Trusted: pins, Progress: progress})
			}
			bar.done()
			if err != nil {
				return err
			}
			to := out
			if out == clihome.Stdio {
				to = "stdout"
			}
			fmt.Fprintf(os.Stderr, "opened record %s into %s (%s): approval and grant signatures by device %s verified, data packet sha256 %s matches the approved one, integrity check passed\n",
				args[0], to, human(n), v.ApprovalKey.Fingerprint(), v.Approval.Ciphertext.Hex())
			return nil
		},
	}
	cmd.Flags().StringVarP(&out, "output", "o", "", "plaintext file to write (- for stdout, after every check)")
	return cmd
}

func fetchCmd(a *app) *cobra.Command {
	var out string
	cmd := &cobra.Command{
		Use:   "fetch RECORD -o MESSAGE",
		Short: "Check the record's approval and this party's grant, then save the record as a standard OpenPGP message (for gpg --decrypt; -o - for stdout)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if out == "" {
				return clihome.Usagef("-o FILE is required")
			}
			c, err := a.client(cmd.Context())
			if err != nil {
				return err
			}
			// The message is only as good as the decisions behind it:
			// the approval and this party's grant, signed by devices on
			// the user's verified chain (and, with a log key, in the log).
			pins, err := a.pinned(args[0])
			if err != nil {
				return err
			}
			if _, err := c.VerifyRecord(cmd.Context(), args[0], true, pins); err != nil {
				return err
			}
			body, total, err := c.Content(cmd.Context(), args[0], 0)
			if err != nil {
				return err
			}
			defer body.Close()
			bar := newProgress("fetching", total)
			src := &progressReader{r: body, fn: bar.set}
			var n int64
			if out == clihome.Stdio {
				// Ciphertext: nothing to check before it is written.
				n, err = io.Copy(os.Stdout, src)
			} else {
				n, err = envelope.WriteFileAtomic(out, src)
			}
			bar.done()
			if err != nil {
				return err
			}
			to := out
			if out == clihome.Stdio {
				to = "stdout"
			}
			fmt.Fprintf(os.Stderr, "saved the OpenPGP message of record %s to %s (%s)\n", args[0], to, human(n))
			return nil
		},
	}
	cmd.Flags().StringVarP(&out, "output", "o", "", "file to write (- for stdout)")
	return cmd
}

// verified is verify --json: the record and this party's grant as the
// server sent them, with the devices whose signatures over them were
// verified.
type verified struct {
	Record         *api.Record `json:"record"`
	ApprovalDevice string      `json:"approval_device"`
	Grant          *api.Grant  `json:"grant,omitempty"`
	GrantDevice    string      `json:"grant_device,omitempty"`
}

func verifyCmd(a *app) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "verify RECORD",
		Short: "Check the record's approval signature, and this party's grant signature if it holds one, against the device key",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client(cmd.Context())
			if err != nil {
				return err
			}
			pins, err := a.pinned(args[0])
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			v, err := c.VerifyRecord(ctx, args[0], false, pins)
			if err != nil {
				return err
			}
			out := verified{Record: v.Record, ApprovalDevice: v.ApprovalKey.Fingerprint()}
			src := "a device on the user's verified key chain"
			if pins != nil {
				src += ", and one this party sealed the record to"
			}
			if !asJSON {
				fmt.Printf("approval: OK — record %s, user %s, ciphertext sha256 %s (%d bytes), signed %s by device %s (%s)\n",
					v.Record.ID, v.Approval.User, v.Approval.Ciphertext.Hex(), v.Approval.Ciphertext.Size,
					v.Approval.Time.Format(time.RFC3339), v.ApprovalKey.Fingerprint(), src)
			}
			if _, err := c.RecordGrant(ctx, args[0]); client.IsNotFound(err) {
				if asJSON {
					return clihome.PrintJSON(out)
				}
				fmt.Println("grant:    none held by this party")
				return nil
			} else if err != nil {
				return err
			}
			v, err = c.VerifyRecord(ctx, args[0], true, pins)
			if err != nil {
				return err
			}
			if asJSON {
				out.Grant, out.GrantDevice = v.GrantInfo, v.GrantKey.Fingerprint()
				return clihome.PrintJSON(out)
			}
			fmt.Printf("grant:    OK — to %s, purpose %q, until %s, signed by device %s\n",
				v.Grant.Grantee, v.GrantInfo.Purpose, v.Grant.Expires.Format(time.RFC3339), v.GrantKey.Fingerprint())
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the verified record and grant as JSON (nothing unless every signature verifies)")
	return cmd
}

func recordsCmd(a *app) *cobra.Command {
	var asJSON bool
	var pages clihome.PageFlags
	cmd := &cobra.Command{
		Use: "records", Short: "List this party's submissions", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := a.client(cmd.Context())
			if err != nil {
				return err
			}
			rs, next, err := clihome.Read(cmd.Context(), pages, c.PartyRecordsPage)
			if err != nil {
				return err
			}
			if asJSON {
				return clihome.PrintJSON(api.RecordList{Records: clihome.NonNil(rs), NextCursor: next})
			}
			clihome.NoteNext(cmd.ErrOrStderr(), next)
			var rows []string
			for _, r := range rs {
				rows = append(rows, fmt.Sprintf("%s\t%s\t%s\t%s\t%s", r.ID, r.UserID, r.State, human(r.CiphertextSize), r.Created.Format(time.RFC3339)))
			}
			return clihome.PrintTable("RECORD\tUSER\tSTATE\tSIZE\tCREATED", rows)
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the list as JSON")
	pages.Register(cmd.Flags())
	return cmd
}

func grantsCmd(a *app) *cobra.Command {
	var asJSON bool
	var pages clihome.PageFlags
	cmd := &cobra.Command{
		Use: "grants", Short: "List this party's grants", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := a.client(cmd.Context())
			if err != nil {
				return err
			}
			gs, next, err := clihome.Read(cmd.Context(), pages, c.PartyGrantsPage)
			if err != nil {
				return err
			}
			if asJSON {
				return clihome.PrintJSON(api.GrantList{Grants: clihome.NonNil(gs), NextCursor: next})
			}
			clihome.NoteNext(cmd.ErrOrStderr(), next)
			var rows []string
			for _, g := range gs {
				rev := "-"
				if g.Revoked != nil {
					rev = g.Revoked.Format(time.RFC3339)
				}
				rows = append(rows, fmt.Sprintf("%s\t%s\t%q\t%s\t%s", g.ID, g.RecordID, g.Purpose, g.Expires.Format(time.RFC3339), rev))
			}
			return clihome.PrintTable("GRANT\tRECORD\tPURPOSE\tEXPIRES\tREVOKED", rows)
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the list as JSON")
	pages.Register(cmd.Flags())
	return cmd
}

func fingerprints(keys []*envelope.Key) string {
	var b strings.Builder
	for i, k := range keys {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(k.Fingerprint())
	}
	return b.String()
}

func pinCmd(a *app) *cobra.Command {
	var reset bool
	cmd := &cobra.Command{
		Use:   "pin USER [FINGERPRINT]",
		Short: "Pin a user's key chain to its first device (read the fingerprint off the user's phone), show the pin, or --reset it",
		Long: `Records are sealed only to the keys of a user's key chain, whose links the user's
devices sign. The first time this party sees a user's chain it pins it: its first
device and the last link seen; later, a chain that does not extend the pinned one is
refused (a replaced or forked chain). Pin by hand, before the first seal, with the
fingerprint the user reads off their phone (device-sim show). --reset forgets the
pin, so the next chain seen is pinned anew: do it only when the user has reset their
devices with the operator, after checking with the user.`,
		Args: cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			user, pins := args[0], a.pins()
			if err := checkUserID("USER", user); err != nil {
				return err
			}
			switch {
			case reset && len(args) == 2:
				return clihome.Usagef("give a fingerprint or --reset, not both")
			case reset:
				if err := pins.Remove(user); err != nil {
					return err
				}
				fmt.Fprintf(os.Stderr, "forgot the pin of user %s: the next chain seen will be pinned\n", user)
				return nil
			case len(args) == 2:
				fpr := strings.ToUpper(strings.ReplaceAll(args[1], " ", ""))
				if !api.FingerprintPattern.MatchString(fpr) {
					return clihome.Usagef("%q is not a key fingerprint (40 or 64 hex digits)", args[1])
				}
				if old, err := pins.Pin(user); err != nil {
					return err
				} else if old != nil && old.Genesis != fpr {
					return fmt.Errorf("user %s is pinned to first device %s; run keyholder pin --reset %s first", user, old.Genesis, user)
				} else if old != nil {
					// Keep what the pin knows beyond the first device.
					fmt.Fprintf(os.Stderr, "user %s is pinned to first device %s already\n", user, fpr)
					return nil
				}
				if err := pins.SetPin(&keychain.Pin{User: user, Genesis: fpr, Seq: -1}); err != nil {
					return err
				}
				fmt.Fprintf(os.Stderr, "pinned user %s to first device %s\n", user, fpr)
				return nil
			}
			p, err := pins.Pin(user)
			if err != nil {
				return err
			}
			if p == nil {
				fmt.Printf("user %s: not pinned (the first chain seen will be)\n", user)
				return nil
			}
			fmt.Printf("user %s: first device %s, %d link(s) seen, head %s\n", user, p.Genesis, p.Seq+1, p.Head)
			return nil
		},
	}
	cmd.Flags().BoolVar(&reset, "reset", false, "forget the user's pin (only after the user reset their devices)")
	return cmd
}

func keysCmd(a *app) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "keys USER",
		Short: "Verify the user's key chain (against the pin) and list the keys records are sealed to",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client(cmd.Context())
			if err != nil {
				return err
			}
			ch, err := c.UserChain(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			if asJSON {
				return clihome.PrintJSON(clihome.ChainKeys(ch))
			}
			clihome.PrintChain(os.Stdout, ch)
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the keys the verified chain makes current as JSON")
	return cmd
}

// checkUserID refuses what is not a user id, such as the user's handle,
// with a usage error that says what is expected (the server would answer
// "user not found").
func checkUserID(what, v string) error {
	switch {
	case v == "":
		return clihome.Usagef("%s USER is required (the user's id: 32 hex digits)", what)
	case !api.IDPattern.MatchString(v):
		return clihome.Usagef("%s: %q is not a user id: give the user's id (32 hex digits, as keyholderd admin user create and admin user list print it), not their handle", what, v)
	}
	return nil
}
