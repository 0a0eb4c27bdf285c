package sim

import (
	"context"
	"errors"
	"io"
	"strings"
	"testing"
	"time"
)

func TestPrompterAnswers(t *testing.T) {
	p := newPrompter(strings.NewReader("y\nNo\n"))
	ctx := context.Background()
	if yes, err := p.ask(ctx, "first?"); !yes || err != nil {
		t.Fatalf("y: %v %v", yes, err)
	}
	if yes, err := p.ask(ctx, "second?"); yes || err != nil {
		t.Fatalf("No: %v %v", yes, err)
	}
	// The end of input answers no.
	if yes, err := p.ask(ctx, "third?"); yes || err != nil {
		t.Fatalf("EOF: %v %v", yes, err)
	}
}

// A question nobody answers must not keep device-sim from stopping on
// SIGINT or SIGTERM (the end of the command's context).
func TestPrompterEndsWithContext(t *testing.T) {
	r, w := io.Pipe()
	defer w.Close()
	p := newPrompter(r)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := p.ask(ctx, "Approve this record?")
		done <- err
	}()
	time.Sleep(50 * time.Millisecond)
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("err %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the question does not end with the context")
	}
}
