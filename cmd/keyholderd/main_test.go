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
	// admin user create, capturing stdout.
	r, w, _ := os.Pipe()
	stdout := os.Stdout
	os.Stdout = w
	cmd := rootCmd()
	cmd.SetArgs([]string{"admin", "--server", "http://" + addr, "--data-dir", dir, "user", "create", "alice"})
	err = cmd.Execute()
	w.Close()
	os.Stdout = stdout
	out, _ := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(out, []byte("enrollment code:")) || !strings.Contains(string(out), "█") {
		t.Fatalf("admin output: %s", out)
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
