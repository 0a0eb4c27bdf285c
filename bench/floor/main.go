// Command floor prints the floor of an approval and of a grant on this
// machine, now (package bench/internal/floor): the least CPU the
// protocol's cryptography, HTTP exchanges and durable commits cost with the
// thinnest stack at hand. scripts/bench-cli.sh runs it beside its
// approval round trips and divides their CPU by it.
//
//	floor -db postgres://postgres@127.0.0.1:5432/test?sslmode=disable
//	floor -db /tmp          # SQLite, a file in a new directory under /tmp
//
// The last line is for scripts: floor_approval_ms=… floor_grant_ms=….
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"runtime"
	"syscall"
	"time"

	"github.com/keyholder/keyholder/bench/internal/floor"
)

func main() {
	db := flag.String("db", os.TempDir(), "a postgres:// DSN, or a directory for a SQLite file")
	n := flag.Int("n", 4000, "HTTP exchanges, commits and reads timed")
	flag.Parse()
	// An interrupt cancels the measurement, which then drops its table
	// or removes its directory before the program ends.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	c, err := floor.Measure(ctx, *db, *n)
	if err != nil {
		fmt.Fprintln(os.Stderr, "floor:", err)
		os.Exit(1)
	}
	ms := func(d time.Duration) float64 { return float64(d) / 1e6 }
	cores := float64(runtime.NumCPU())
	fmt.Printf("floor parts: %s\n", c)
	fmt.Printf("floor per approval %.3f ms (%.0f/s on %.0f cores), per grant fetched by its party %.3f ms (%.0f/s)\n",
		ms(c.Approval()), cores*1e3/ms(c.Approval()), cores, ms(c.Grant(true)), cores*1e3/ms(c.Grant(true)))
	fmt.Printf("floor_approval_ms=%.4f floor_grant_ms=%.4f\n", ms(c.Approval()), ms(c.Grant(true)))
}
