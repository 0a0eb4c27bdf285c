package daemon

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
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

func (a *adminClient) do(method, path string, in, out any) error {
	tok := a.token
	file := filepath.Join(a.dataDir, "admin-token")
	if tok == "" {
		if b, err := os.ReadFile(file); err == nil {
			tok = strings.TrimSpace(string(b))
		}
	}
	if tok == "" {
		return fmt.Errorf("no admin token: %s does not hold one; point --data-dir (KEYHOLDER_DATA_DIR) at the server's data directory, "+
			"or give the token with --admin-token or KEYHOLDER_ADMIN_TOKEN", file)
	}
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, strings.TrimRight(a.server, "/")+path, body)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+tok)
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	c := &http.Client{Timeout: 30 * time.Second}
	resp, err := c.Do(req)
	if err != nil {
		return client.ExplainUnreachable(err, a.server)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode >= 300 {
		var p api.Problem
		if json.Unmarshal(data, &p) == nil && p.Status != 0 {
			return &p
		}
		return fmt.Errorf("%s %s: HTTP %d", method, path, resp.StatusCode)
	}
	if out != nil {
		return json.Unmarshal(data, out)
	}
	return nil
}

func (a *adminClient) printCode(userID, code string, exp time.Time) {
	fmt.Printf("user:            %s\nenrollment code: %s\nexpires:         %s\n", userID, code, exp.Format(time.RFC3339))
	if !a.noQR {
		qrterminal.GenerateHalfBlock(code, qrterminal.L, os.Stdout)
	}
}

// userID returns the id of the user ref names: an id as it is, or the id
// of the user with that handle.
func (a *adminClient) userID(ref string) (string, error) {
	if api.IDPattern.MatchString(ref) {
		return ref, nil
	}
	var r userList
	if err := a.do("GET", api.PathAdminUsers, nil, &r); err != nil {
		return "", err
	}
	for _, u := range r.Users {
		if u.Handle == ref {
			return u.ID, nil
		}
	}
	return "", fmt.Errorf("no user with id or handle %q", ref)
}

// show calls the admin API and prints its answer, decoded as T, as JSON.
func show[T any](a *adminClient, method, path string, in any) error {
	var r T
	if err := a.do(method, path, in, &r); err != nil {
		return err
	}
	return clihome.PrintJSON(r)
}

// list calls the admin API and prints its answer, decoded as T, as JSON
// (with --json) or as the table rows makes of it.
func list[T any](a *adminClient, path string, asJSON *bool, header string, rows func(T) []string) error {
	var r T
	if err := a.do("GET", path, nil, &r); err != nil {
		return err
	}
	if *asJSON {
		return clihome.PrintJSON(r)
	}
	return clihome.PrintTable(header, rows(r))
}

// The answers of the admin list routes.
type (
	userList struct {
		Users []api.User `json:"users"`
	}
	deviceList struct {
		Devices []api.Device `json:"devices"`
	}
	partyList struct {
		Parties []api.Party `json:"parties"`
	}
)

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
		RunE: func(_ *cobra.Command, args []string) error {
			var r api.CreateUserResponse
			if err := a.do("POST", api.PathAdminUsers, api.CreateUserRequest{Handle: args[0]}, &r); err != nil {
				return err
			}
			a.printCode(r.ID, r.Code, r.CodeExpires)
			return nil
		},
	}, &cobra.Command{
		Use: "code USER-ID", Short: "Issue a new enrollment code (for a user without devices)", Args: cobra.ExactArgs(1),
		RunE: func(_ *cobra.Command, args []string) error {
			var r api.EnrollmentCode
			if err := a.do("POST", api.Path(api.PathAdminUserCodes, args[0]), nil, &r); err != nil {
				return err
			}
			a.printCode(r.UserID, r.Code, r.CodeExpires)
			return nil
		},
	}, withJSON(&asJSON, &cobra.Command{
		Use: "list", Short: "List users", Args: cobra.NoArgs,
		RunE: func(_ *cobra.Command, _ []string) error {
			return list(a, api.PathAdminUsers, &asJSON, "USER\tHANDLE\tDEVICES\tRECOVERY KEY\tCREATED", func(r userList) []string {
				var rows []string
				for _, u := range r.Users {
					rows = append(rows, fmt.Sprintf("%s\t%s\t%d\t%s\t%s", u.ID, u.Handle, u.Devices, orDash(u.RecoveryFingerprint), u.Created.Format(time.RFC3339)))
				}
				return rows
			})
		},
	}), withJSON(&asJSON, &cobra.Command{
		Use: "devices USER-ID", Short: "List a user's devices", Args: cobra.ExactArgs(1),
		RunE: func(_ *cobra.Command, args []string) error {
			return list(a, api.Path(api.PathAdminUserDevices, args[0]), &asJSON, "DEVICE\tFINGERPRINT\tSTATUS\tPUSH\tCREATED\tREVOKED", func(r deviceList) []string {
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
		RunE: func(_ *cobra.Command, args []string) error {
			id, err := a.userID(args[0])
			if err != nil {
				return err
			}
			var r api.EnrollmentCode
			if err := a.do("POST", api.Path(api.PathAdminUserReset, id), nil, &r); err != nil {
				return err
			}
			a.printCode(r.UserID, r.Code, r.CodeExpires)
			return nil
		},
	})

	party := &cobra.Command{Use: "party", Short: "Third parties"}
	party.AddCommand(&cobra.Command{
		Use: "create NAME KEY-FILE", Short: "Register a party with its OpenPGP public key (KEY-FILE - for stdin)", Args: cobra.ExactArgs(2),
		RunE: func(_ *cobra.Command, args []string) error {
			k, err := clihome.ReadFile(args[1])
			if err != nil {
				return err
			}
			return show[api.Party](a, "POST", api.PathAdminParties, api.CreatePartyRequest{Name: args[0], PublicKey: string(k)})
		},
	}, withJSON(&asJSON, &cobra.Command{
		Use: "list", Short: "List parties", Args: cobra.NoArgs,
		RunE: func(_ *cobra.Command, _ []string) error {
			return list(a, api.PathAdminParties, &asJSON, "PARTY\tNAME\tFINGERPRINT\tCREATED", func(r partyList) []string {
				var rows []string
				for _, p := range r.Parties {
					rows = append(rows, fmt.Sprintf("%s\t%s\t%s\t%s", p.ID, p.Name, p.Fingerprint, p.Created.Format(time.RFC3339)))
				}
				return rows
			})
		},
	}))
	cmd.AddCommand(user, party)
	return cmd
}

// withJSON gives cmd the --json flag, bound to asJSON.
func withJSON(asJSON *bool, cmd *cobra.Command) *cobra.Command {
	cmd.Flags().BoolVar(asJSON, "json", false, "print the list as JSON, as the admin API sends it")
	return cmd
}
