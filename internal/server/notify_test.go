package server

import (
	"context"
	"testing"
	"time"

	"github.com/keyholder/keyholder/internal/push"
	"github.com/keyholder/keyholder/pkg/envelope"
)

// TestPushIsAsync: a push provider that hangs does not delay the upload's
// response; the push goes out after it.
func TestPushIsAsync(t *testing.T) {
	e := newEnv(t, sqlite(), func(c *Config) { c.PushTimeout = time.Minute })
	dev := e.newUser("alice")
	lab := e.newParty("lab")
	release := make(chan struct{})
	e.pushes.next = push.NotifierFunc(func(ctx context.Context, _ push.Target, _ string) error {
		select {
		case <-release:
		case <-ctx.Done():
		}
		return nil
	})
	u := e.prepare(lab, dev.user, []byte("x"), envelope.Compat)
	start := time.Now()
	done := make(chan int, 1)
	go func() {
		resp, _ := e.send(lab, dev.user, u)
		done <- resp.StatusCode
	}()
	select {
	case code := <-done:
		if code != 201 {
			t.Fatalf("upload: %d", code)
		}
	case <-time.After(5 * time.Second):
		close(release)
		t.Fatal("the upload response waited for the push")
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("upload took %s", d)
	}
	close(release)
	e.srv.waitPushes()
	if n := len(e.pushes.all()); n != 1 {
		t.Fatalf("%d pushes, want 1", n)
	}
}

// TestShutdownCancelsPushes: at shutdown, pushes still in flight see their
// context end, and Shutdown returns by its deadline.
func TestShutdownCancelsPushes(t *testing.T) {
	e := newEnv(t, sqlite(), func(c *Config) { c.PushTimeout = time.Minute })
	dev := e.newUser("alice")
	lab := e.newParty("lab")
	started, canceled := make(chan struct{}), make(chan error, 1)
	e.pushes.next = push.NotifierFunc(func(ctx context.Context, _ push.Target, _ string) error {
		close(started)
		<-ctx.Done()
		canceled <- ctx.Err()
		return ctx.Err()
	})
	e.submit(lab, dev.user, []byte("x"))
	<-started
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	t0 := time.Now()
	if err := e.srv.Shutdown(ctx); err == nil {
		t.Fatal("Shutdown reported a clean drain while a push hung")
	}
	if d := time.Since(t0); d > 5*time.Second {
		t.Fatalf("Shutdown took %s", d)
	}
	select {
	case err := <-canceled:
		if err == nil {
			t.Fatal("the push context did not end")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the push in flight was not canceled")
	}
	// After shutdown nothing more is queued.
	e.srv.notifyUser("0123456789abcdef0123456789abcdef", "0123456789abcdef0123456789abcdef")
	e.srv.waitPushes()
}
