// Package daemon is the keyholderd command: `serve` runs the HTTP API,
// `migrate` creates or updates the database tables, and `admin …` drives
// the operator API (users, enrollment codes, parties, devices). It is a
// package, not a main, so that tests run the command in-process.
package daemon

import (
	"context"
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/keyholder/keyholder/internal/clihome"
)

// Main runs keyholderd with os.Args and returns its exit code. serve
// handles SIGINT and SIGTERM itself (a graceful shutdown).
func Main() int {
	return clihome.Run(context.Background(), "keyholderd", rootCmd(), os.Args[1:])
}

func rootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:   "keyholderd",
		Short: "Keyholder server: public-key envelope encryption with approval on the user's phone",
		Long: `Keyholder server: public-key envelope encryption with approval on the user's phone.

Every flag of serve, migrate and admin can also be set with KEYHOLDER_ and its
name in upper case, - turned into _ (--data-dir: KEYHOLDER_DATA_DIR). The admin
list commands take --json: one JSON document on stdout, in the HTTP API's types
(docs/openapi.yaml). docs/operations.md has the details.

Exit codes:
  0  done
  1  any other error
  2  usage: an unknown command or flag, a missing or malformed argument
  4  timed out: the server did not answer an admin command in time
  5  could not reach the server (admin) or the database (serve, migrate):
     connection refused, host not found, network failure`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(serveCmd(), migrateCmd(), logKeyCmd(), adminCmd())
	clihome.Conventions(root)
	return root
}

// bindEnv sets every flag not given on the command line from its
// KEYHOLDER_* environment variable (--max-record-size ← KEYHOLDER_MAX_RECORD_SIZE).
func bindEnv(fs *pflag.FlagSet) error {
	var err error
	fs.VisitAll(func(f *pflag.Flag) {
		if f.Changed || err != nil {
			return
		}
		name := "KEYHOLDER_" + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		if v, ok := os.LookupEnv(name); ok {
			if e := fs.Set(f.Name, v); e != nil {
				err = fmt.Errorf("%s: %w", name, e)
			}
		}
	})
	return err
}
