// Command keyholderd is the Keyholder server: `serve` runs the HTTP API,
// `migrate` creates or updates the database tables, and `admin …` drives
// the operator API (users, enrollment codes, parties, devices).
package main

import (
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

func main() {
	if err := rootCmd().Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "keyholderd:", err)
		os.Exit(1)
	}
}

func rootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:           "keyholderd",
		Short:         "Keyholder server: public-key envelope encryption with approval on the user's phone",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(serveCmd(), migrateCmd(), adminCmd())
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
