package main

import (
	"bytes"
	"context"
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

// TestServeAndAdmin starts `serve` on a fresh data dir, checks the admin
// token file, drives `admin user create`, and shuts down gracefully.
func TestServeAndAdmin(t *testing.T) {
	dir := t.TempDir()
	addr := freeAddr(t)
	t.Setenv("KEYHOLDER_ADMIN_TOKEN", "")
	os.Unsetenv("KEYHOLDER_ADMIN_TOKEN")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		cmd := rootCmd()
		cmd.SetArgs([]string{"serve", "--listen", addr, "--data-dir", dir, "--log-level", "error"})
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
			t.Fatal("server did not become ready")
		}
		time.Sleep(20 * time.Millisecond)
	}
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
