package e2e

import (
	"net"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestDemoPort: `make demo PORT=N` hands the port to scripts/demo.sh,
// which serves on it, and refuses a port in use at once (before building
// anything). Before, the demo always picked a random port.
func TestDemoPort(t *testing.T) {
	root := filepath.Join("..", "..")
	if _, err := exec.LookPath("make"); err == nil {
		out, err := exec.Command("make", "-C", root, "-n", "demo", "PORT=9191").CombinedOutput()
		if err != nil || !strings.Contains(string(out), "PORT='9191' bash scripts/demo.sh") {
			t.Errorf("make -n demo PORT=9191: %v\n%s", err, out)
		}
	}
	if _, err := exec.LookPath("bash"); err != nil {
		t.Skip("no bash")
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	port := strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
	cmd := exec.Command("bash", filepath.Join("scripts", "demo.sh"))
	cmd.Dir = root
	cmd.Env = append(cmd.Environ(), "PORT="+port)
	out, err := cmd.CombinedOutput()
	if err == nil {
		t.Fatalf("the demo ran although port %s is in use:\n%s", port, out)
	}
	if !strings.Contains(string(out), "port "+port+" is in use") || strings.Contains(string(out), "Building") {
		t.Fatalf("demo on a busy port:\n%s", out)
	}
}
