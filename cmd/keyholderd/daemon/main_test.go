package daemon

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func freeAddr(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// startServe runs `serve` with args on a fresh data dir until it is ready;
// stop shuts it down gracefully (and fails the test if it does not).
func startServe(t *testing.T, args ...string) (addr, dir string, stop func()) {
	t.Helper()
	dir = t.TempDir()
	addr = freeAddr(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		cmd := rootCmd()
		cmd.SetArgs(append([]string{"serve", "--listen", addr, "--data-dir", dir, "--log-level", "error"}, args...))
		done <- cmd.ExecuteContext(ctx)
	}()
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := http.Get("http://" + addr + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				break
			}
		}
		if time.Now().After(deadline) {
			cancel()
			t.Fatal("server did not become ready")
		}
		time.Sleep(20 * time.Millisecond)
	}
	return addr, dir, func() {
		t.Helper()
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Fatal(err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("no graceful shutdown")
		}
	}
}

// TestServeAndAdmin starts `serve` on a fresh data dir, checks the admin
// token file, drives `admin user create`, and shuts down gracefully.
func TestServeAndAdmin(t *testing.T) {
	t.Setenv("KEYHOLDER_ADMIN_TOKEN", "")
	os.Unsetenv("KEYHOLDER_ADMIN_TOKEN")
	addr, dir, stop := startServe(t)
	st, err := os.Stat(filepath.Join(dir, "admin-token"))
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("admin token file: %v %v", st, err)
	}
	admin := func(args ...string) ([]byte, error) {
		r, w, _ := os.Pipe()
		stdout := os.Stdout
		os.Stdout = w
		cmd := rootCmd()
		cmd.SetArgs(append([]string{"admin", "--server", "http://" + addr, "--data-dir", dir}, args...))
		err := cmd.Execute()
		w.Close()
		os.Stdout = stdout
		out, _ := io.ReadAll(r)
		return out, err
	}
	// admin user create, capturing stdout.
	out, err := admin("user", "create", "alice")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(out, []byte("enrollment code:")) || !strings.Contains(string(out), "█") {
		t.Fatalf("admin output: %s", out)
	}
	// admin user reset, by handle: a fresh code, with its QR code.
	out2, err := admin("user", "reset", "alice")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(out2, []byte("enrollment code:")) || !strings.Contains(string(out2), "█") || bytes.Equal(out, out2) {
		t.Fatalf("admin user reset output: %s", out2)
	}
	if _, err := admin("user", "reset", "nobody"); err == nil {
		t.Fatal("reset of an unknown handle succeeded")
	}
	// The operator's ways to add or remove keys are gone.
	if c, _, err := rootCmd().Find([]string{"admin", "user", "reset"}); err != nil || c.Name() != "reset" {
		t.Fatalf("admin user reset not found: %v", err)
	}
	for _, args := range [][]string{{"admin", "user", "recovery-key"}, {"admin", "device", "revoke"}} {
		if c, _, err := rootCmd().Find(args); err == nil && c.Name() == args[len(args)-1] {
			t.Fatalf("%v still exists", args)
		}
	}
	stop()
}

// TestServeBodyTimeout: the body timeout set through its environment
// variable reaches the real HTTP server: a JSON body dripped byte by byte
// is cut off with 408.
func TestServeBodyTimeout(t *testing.T) {
	t.Setenv("KEYHOLDER_BODY_TIMEOUT", "300ms")
	addr, _, stop := startServe(t)
	defer stop()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	start := time.Now()
	fmt.Fprintf(conn, "POST /v1/auth/challenge HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{")
	go func() {
		for i := 0; i < 99; i++ {
			time.Sleep(50 * time.Millisecond)
			if _, err := conn.Write([]byte(" ")); err != nil {
				return
			}
		}
	}()
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestTimeout || time.Since(start) > 3*time.Second {
		t.Fatalf("status %d after %s", resp.StatusCode, time.Since(start))
	}
}

// TestServeLimitFlags: the slow-client limits have flags, defaults and
// KEYHOLDER_* variables.
func TestServeLimitFlags(t *testing.T) {
	cmd := serveCmd()
	for flag, want := range map[string]string{"max-uploads-per-party": "4", "body-timeout": "10s", "upload-idle-timeout": "30s"} {
		if f := cmd.Flags().Lookup(flag); f == nil || f.DefValue != want {
			t.Fatalf("--%s: %v", flag, f)
		}
	}
	t.Setenv("KEYHOLDER_MAX_UPLOADS_PER_PARTY", "7")
	t.Setenv("KEYHOLDER_UPLOAD_IDLE_TIMEOUT", "1m")
	if err := bindEnv(cmd.Flags()); err != nil {
		t.Fatal(err)
	}
	if v := cmd.Flags().Lookup("max-uploads-per-party").Value.String(); v != "7" {
		t.Fatalf("max uploads %s", v)
	}
	if v := cmd.Flags().Lookup("upload-idle-timeout").Value.String(); v != "1m0s" {
		t.Fatalf("idle timeout %s", v)
	}
}

// TestDBMaxConns: the pool bound is a flag (--db-max-conns, default 32)
// and a variable (KEYHOLDER_DB_MAX_CONNS), and reaches the store.
func TestDBMaxConns(t *testing.T) {
	cmd := serveCmd()
	f := cmd.Flags().Lookup("db-max-conns")
	if f == nil || f.DefValue != "32" {
		t.Fatalf("--db-max-conns: %+v", f)
	}
	t.Setenv("KEYHOLDER_DB_MAX_CONNS", "5")
	if err := bindEnv(cmd.Flags()); err != nil {
		t.Fatal(err)
	}
	n, err := cmd.Flags().GetInt("db-max-conns")
	if err != nil || n != 5 {
		t.Fatalf("from the environment: %d %v", n, err)
	}
	for _, tc := range []struct{ flag, want int }{{5, 5}, {0, 32}} {
		st, err := openStore(&serveOpts{dataDir: t.TempDir(), dbMaxConns: tc.flag})
		if err != nil {
			t.Fatal(err)
		}
		if got := st.MaxOpenConns(); got != tc.want {
			t.Errorf("--db-max-conns %d: pool bound %d, want %d", tc.flag, got, tc.want)
		}
		st.Close()
	}
}

// runCmd runs keyholderd with args in this process and returns its
// stdout, stderr and error.
func runCmd(t *testing.T, args ...string) (string, string, error) {
	t.Helper()
	outR, outW, _ := os.Pipe()
	errR, errW, _ := os.Pipe()
	stdout, stderr := os.Stdout, os.Stderr
	os.Stdout, os.Stderr = outW, errW
	outc, errc := make(chan []byte), make(chan []byte)
	go func() { b, _ := io.ReadAll(outR); outc <- b }()
	go func() { b, _ := io.ReadAll(errR); errc <- b }()
	cmd := rootCmd()
	cmd.SetArgs(args)
	err := cmd.Execute()
	os.Stdout, os.Stderr = stdout, stderr
	outW.Close()
	errW.Close()
	return string(<-outc), string(<-errc), err
}

// TestServeOnBusyPort: a port in use fails the start before anything is
// made: no admin token is generated or printed for a server that never
// ran (before, a new token was printed, then the bind failed).
func TestServeOnBusyPort(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	dir := t.TempDir()
	t.Setenv("KEYHOLDER_ADMIN_TOKEN", "")
	os.Unsetenv("KEYHOLDER_ADMIN_TOKEN")
	_, errOut, err := runCmd(t, "serve", "--listen", l.Addr().String(), "--data-dir", dir, "--log-level", "error")
	if err == nil || !strings.Contains(err.Error(), "cannot listen on "+l.Addr().String()) {
		t.Fatalf("serve on a busy port: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "admin-token")); !os.IsNotExist(err) {
		t.Errorf("an admin token was generated: %v", err)
	}
	if strings.Contains(errOut, "admin token") {
		t.Errorf("an admin token was printed:\n%s", errOut)
	}
}

// TestMigrateSaysWhatItDid: on an empty database migrate says it created
// the tables; run again, that the database is up to date (before, it said
// "up to date" both times).
func TestMigrateSaysWhatItDid(t *testing.T) {
	dir := t.TempDir()
	out, _, err := runCmd(t, "migrate", "--data-dir", dir)
	if err != nil || !strings.HasPrefix(out, "created the database: ") {
		t.Fatalf("first migrate: %q %v", out, err)
	}
	out, _, err = runCmd(t, "migrate", "--data-dir", dir)
	if err != nil || !strings.Contains(out, "up to date") {
		t.Fatalf("second migrate: %q %v", out, err)
	}
}

// TestAdminErrorsSayWhatToDo: without a token, admin names the file it
// looked in and --data-dir; a server that is not there is asked about.
func TestAdminErrorsSayWhatToDo(t *testing.T) {
	t.Setenv("KEYHOLDER_ADMIN_TOKEN", "")
	os.Unsetenv("KEYHOLDER_ADMIN_TOKEN")
	dir := t.TempDir()
	_, _, err := runCmd(t, "admin", "--data-dir", dir, "user", "list")
	if err == nil || !strings.Contains(err.Error(), "--data-dir") || !strings.Contains(err.Error(), filepath.Join(dir, "admin-token")) {
		t.Fatalf("admin without a token: %v", err)
	}
	server := "http://" + freeAddr(t)
	_, _, err = runCmd(t, "admin", "--server", server, "--admin-token", "x", "user", "list")
	if err == nil || !strings.Contains(err.Error(), "is keyholderd running at "+server+"?") {
		t.Fatalf("admin against a closed port: %v", err)
	}
}
