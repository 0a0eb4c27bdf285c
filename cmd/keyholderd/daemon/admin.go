package daemon

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/mdp/qrterminal/v3"
	"github.com/spf13/cobra"

	"github.com/keyholder/keyholder/internal/clihome"
	"github.com/keyholder/keyholder/pkg/api"
	"github.com/keyholder/keyholder/pkg/client"
)

type adminClient struct {
	server, token, dataDir string
	noQR                   bool
}

// adminTimeout bounds one admin command: an operator at a terminal wants an
// answer or a reason (exit code 4), not a hang.
var adminTimeout = 30 * time.Second

// client returns a client of the admin API with the admin token: --admin-token
// (or KEYHOLDER_ADMIN_TOKEN), else the one in the data dir.
func (a *adminClient) client() (*client.Client, error) {
	tok := a.token
	file := filepath.Join(a.dataDir, "admin-token")
	if tok == "" {
		if b, err := os.ReadFile(file); err == nil {
			tok = strings.TrimSpace(string(b))
		}
	}
	if tok == "" {
		return nil, fmt.Errorf("no admin token: %s does not hold one; point --data-dir (KEYHOLDER_DATA_DIR) at the server's data directory, "+
			"or give the token with --admin-token or KEYHOLDER_ADMIN_TOKEN", file)
	}
	return client.New(a.server, client.WithAdminToken(tok), client.WithUserAgent("keyholderd-admin"))
}

// call runs fn with a client of the admin API, bounded by adminTimeout. fn
// takes the client first so that a method such as (*client.Client).ListUsers
// is one.
func call[T any](ctx context.Context, a *adminClient, fn func(*client.Client, context.Context) (T, error)) (T, error) {
	var zero T
	c, err := a.client()
	if err != nil {
		return zero, err
	}
	ctx, cancel := context.WithTimeout(ctx, adminTimeout)
	defer cancel()
	return fn(c, ctx)
}

func (a *adminClient) printCode(userID, code string, exp time.Time) {
	fmt.Printf("user:            %s\nenrollment code: %s\nexpires:         %s\n", userID, code, exp.Format(time.RFC3339))
	if !a.noQR {
		qrterminal.GenerateHalfBlock(code, qrterminal.L, os.Stdout)
	}
}

// userID returns the id of the user ref names: an id as it is, or the id
// of the user with that handle.
func (a *adminClient) userID(ctx context.Context, ref string) (string, error) {
	if api.IDPattern.MatchString(ref) {
		return ref, nil
	}
	// Every page: the handle may be anywhere in the list.
	users, err := call(ctx, a, func(c *client.Client, ctx context.Context) ([]api.User, error) {
		return client.All(ctx, api.Page{Limit: api.MaxPageSize}, c.ListUsersPage)
	})
	if err != nil {
		return "", err
	}
	for _, u := range users {
		if u.Handle == ref {
			return u.ID, nil
		}
	}
	return "", fmt.Errorf("no user with id or handle %q", ref)
}

// list prints the answer of an admin list call as JSON (with --json, in
// the admin API's own shape) or as the table rows makes of it.
func list[T any](asJSON bool, answer T, header string, rows func(T) []string) error {
	if asJSON {
		return clihome.PrintJSON(answer)
	}
	return clihome.PrintTable(header, rows(answer))
}

// The answers of the admin list routes.
type (
	userList   = api.UserList
	deviceList struct {
		Devices []api.Device `json:"devices"`
	}
	partyList = api.PartyList
)

// readPages reads a paged admin list as pages asks, bounded by adminTimeout.
func readPages[T any](ctx context.Context, a *adminClient, pages clihome.PageFlags, page func(*client.Client) client.PageFunc[T]) ([]T, string, error) {
	c, err := a.client()
	if err != nil {
		return nil, "", err
	}
	ctx, cancel := context.WithTimeout(ctx, adminTimeout)
	defer cancel()
	return clihome.Read(ctx, pages, page(c))
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func timeOrDash(t *time.Time) string {
	if t == nil {
		return "-"
	}
	return t.Format(time.RFC3339)
}

func adminCmd() *cobra.Command {
	a := &adminClient{}
	var asJSON bool
	var userPages, partyPages clihome.PageFlags
	cmd := &cobra.Command{
		Use:   "admin",
		Short: "Operator commands (call the admin API of a running server)",
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			return bindEnv(cmd.Flags())
		},
	}
	pf := cmd.PersistentFlags()
	pf.StringVar(&a.server, "server", "http://127.0.0.1:8080", "server URL")
	pf.StringVar(&a.token, "admin-token", "", "admin token (default: KEYHOLDER_ADMIN_TOKEN, else data-dir/admin-token)")
	pf.StringVar(&a.dataDir, "data-dir", "./data", "data dir to read admin-token from")
	pf.BoolVar(&a.noQR, "no-qr", false, "do not print enrollment codes as QR codes")

	user := &cobra.Command{Use: "user", Short: "Users and enrollment codes"}
	user.AddCommand(&cobra.Command{
		Use: "create HANDLE", Short: "Create a user and print a one-time enrollment code", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			r, err := call(cmd.Context(), a, func(c *client.Client, ctx context.Context) (*api.CreateUserResponse, error) {
				return c.CreateUser(ctx, args[0])
			})
			if err != nil {
				return err
			}
			a.printCode(r.ID, r.Code, r.CodeExpires)
			return nil
		},
	}, &cobra.Command{
		Use: "code USER-ID", Short: "Issue a new enrollment code (for a user without devices)", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			r, err := call(cmd.Context(), a, func(c *client.Client, ctx context.Context) (*api.EnrollmentCode, error) {
				return c.NewEnrollmentCode(ctx, args[0])
			})
			if err != nil {
				return err
			}
			a.printCode(r.UserID, r.Code, r.CodeExpires)
			return nil
		},
	}, withPages(&userPages, withJSON(&asJSON, &cobra.Command{
		Use: "list", Short: "List users", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			users, next, err := readPages(cmd.Context(), a, userPages, func(c *client.Client) client.PageFunc[api.User] { return c.ListUsersPage })
			if err != nil {
				return err
			}
			if !asJSON {
				clihome.NoteNext(cmd.ErrOrStderr(), next)
			}
			return list(asJSON, userList{Users: clihome.NonNil(users), NextCursor: next}, "USER\tHANDLE\tDEVICES\tRECOVERY KEY\tCREATED", func(r userList) []string {
				var rows []string
				for _, u := range r.Users {
					rows = append(rows, fmt.Sprintf("%s\t%s\t%d\t%s\t%s", u.ID, u.Handle, u.Devices, orDash(u.RecoveryFingerprint), u.Created.Format(time.RFC3339)))
				}
				return rows
			})
		},
	})), withJSON(&asJSON, &cobra.Command{
		Use: "devices USER-ID", Short: "List a user's devices", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			devices, err := call(cmd.Context(), a, func(c *client.Client, ctx context.Context) ([]api.Device, error) {
				return c.ListDevices(ctx, args[0])
			})
			if err != nil {
				return err
			}
			return list(asJSON, deviceList{devices}, "DEVICE\tFINGERPRINT\tSTATUS\tPUSH\tCREATED\tREVOKED", func(r deviceList) []string {
				var rows []string
				for _, d := range r.Devices {
					push := d.PushKind
					if d.PushDead {
						push += " (dead)"
					}
					rows = append(rows, fmt.Sprintf("%s\t%s\t%s\t%s\t%s\t%s", d.ID, d.Fingerprint, d.Status, push, d.Created.Format(time.RFC3339), timeOrDash(d.Revoked)))
				}
				return rows
			})
		},
	}), &cobra.Command{
		Use:   "reset USER",
		Short: "End a user's key chain after all its devices are lost, and print a code for a new first device",
		Long: `Revokes every device of the user (id or handle), clears its recovery key and
ends its key chain; the printed one-time code enrolls the first device of a
new chain. Parties and devices that pinned the old chain refuse the new one
until they re-pin on purpose: confirm with the user out of band first.
Devices are never added or removed by the operator otherwise: the user's
devices sign that into the chain.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			id, err := a.userID(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			r, err := call(cmd.Context(), a, func(c *client.Client, ctx context.Context) (*api.EnrollmentCode, error) {
				return c.ResetUser(ctx, id)
			})
			if err != nil {
				return err
			}
			a.printCode(r.UserID, r.Code, r.CodeExpires)
			return nil
		},
	})

	party := &cobra.Command{Use: "party", Short: "Third parties"}
	party.AddCommand(&cobra.Command{
		Use: "create NAME KEY-FILE", Short: "Register a party with its OpenPGP public key (KEY-FILE - for stdin)", Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			k, err := clihome.ReadFile(args[1])
			if err != nil {
				return err
			}
			p, err := call(cmd.Context(), a, func(c *client.Client, ctx context.Context) (*api.Party, error) {
				return c.CreateParty(ctx, args[0], k)
			})
			if err != nil {
				return err
			}
			return clihome.PrintJSON(p)
		},
	}, withPages(&partyPages, withJSON(&asJSON, &cobra.Command{
		Use: "list", Short: "List parties", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			parties, next, err := readPages(cmd.Context(), a, partyPages, func(c *client.Client) client.PageFunc[api.Party] { return c.ListPartiesPage })
			if err != nil {
				return err
			}
			if !asJSON {
				clihome.NoteNext(cmd.ErrOrStderr(), next)
			}
			return list(asJSON, partyList{Parties: clihome.NonNil(parties), NextCursor: next}, "PARTY\tNAME\tFINGERPRINT\tCREATED", func(r partyList) []string {
				var rows []string
				for _, p := range r.Parties {
					rows = append(rows, fmt.Sprintf("%s\t%s\t%s\t%s", p.ID, p.Name, p.Fingerprint, p.Created.Format(time.RFC3339)))
				}
				return rows
			})
		},
	})))
	cmd.AddCommand(user, party)
	return cmd
}

// withPages gives cmd the paging flags (clihome.PageFlags), bound to f.
func withPages(f *clihome.PageFlags, cmd *cobra.Command) *cobra.Command {
	f.Register(cmd.Flags())
	return cmd
}

// withJSON gives cmd the --json flag, bound to asJSON.
func withJSON(asJSON *bool, cmd *cobra.Command) *cobra.Command {
	cmd.Flags().BoolVar(asJSON, "json", false, "print the list as JSON, as the admin API sends it")
	return cmd
}
