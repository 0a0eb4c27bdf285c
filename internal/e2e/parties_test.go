package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/rogpeppe/go-internal/testscript"
)

// TestParties is the interop matrix (make interop): every script in
// testdata/parties plays a party with another OpenPGP implementation
// (GnuPG, sq, sqop, RNP, OpenPGP.js), through the recipe scripts beside it
// that docs/parties.md walks through, against keyholderd and device-sim.
// Each row runs both directions: records the tool seals, opened by the
// keyholder CLI, and records the keyholder CLI seals, granted to the tool.
func TestParties(t *testing.T) {
	dir, err := filepath.Abs(filepath.Join("..", "..", "testdata", "parties"))
	if err != nil {
		t.Fatal(err)
	}
	p := scriptParams(t, dir)
	setup := p.Setup
	p.Setup = func(env *testscript.Env) error {
		if err := setup(env); err != nil {
			return err
		}
		env.Setenv("PARTIES", dir)
		env.Setenv("KEYHOLDER_TEST_OPENPGPJS", openpgpjsDir())
		return nil
	}
	// [openpgpjs]: OpenPGP.js and node are there; under CI=true their
	// absence fails the script instead of skipping it.
	p.Condition = func(cond string) (bool, error) {
		if cond != "openpgpjs" {
			return false, fmt.Errorf("unknown condition %q", cond)
		}
		_, err := os.Stat(filepath.Join(openpgpjsDir(), "openpgp", "package.json"))
		if err == nil {
			_, err = exec.LookPath("node")
		}
		if err != nil && os.Getenv("CI") == "true" {
			return false, fmt.Errorf("OpenPGP.js is not installed (KEYHOLDER_TEST_OPENPGPJS=%q), and CI=true requires the interop matrix to run (.ci/run installs it): %v", openpgpjsDir(), err)
		}
		return err == nil, nil
	}
	testscript.Run(t, p)
}

// openpgpjsDir is the node_modules directory holding OpenPGP.js:
// $KEYHOLDER_TEST_OPENPGPJS, or where .ci/run installs it.
func openpgpjsDir() string {
	if d := os.Getenv("KEYHOLDER_TEST_OPENPGPJS"); d != "" {
		return d
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return ""
	}
	return filepath.Join(home, ".cache", "keyholder", "openpgpjs", "node_modules")
}
