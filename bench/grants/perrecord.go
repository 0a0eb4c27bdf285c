package main

// Server CPU per record: keyholderd in a process of its own (this program
// re-executed with -serve), driven through pkg/client from this process,
// one kind of request at a time; the CPU time of the server's process
// (and of PostgreSQL's, when local) is read from /proc around each phase.

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"

	"github.com/keyholder/keyholder/bench/internal/floor"
	"github.com/keyholder/keyholder/bench/internal/measure"
	"github.com/keyholder/keyholder/internal/cpuprofile"
	"github.com/keyholder/keyholder/internal/store"
	"github.com/keyholder/keyholder/pkg/api"
	"github.com/keyholder/keyholder/pkg/client"
	"github.com/keyholder/keyholder/pkg/envelope"
)

// serveChild is the -serve mode: the stack on its own, its URL on
// standard output, until standard input closes.
func serveChild(ctx context.Context, db, dsn string) error {
	dir := *dirFlag
	s, err := startStack(ctx, db, dsn, dir)
	if err != nil {
		return err
	}
	defer s.close()
	if *serveProfile != "" {
		stop, err := cpuprofile.Start(*serveProfile)
		if err != nil {
			return err
		}
		defer stop()
	}
	fmt.Println(s.url)
	io.Copy(io.Discard, os.Stdin)
	return nil
}

// child is a server process started by startChild.
type child struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	url   string
}

func startChild(ctx context.Context, db, dsn, dir string, withLog bool, profile string) (*child, error) {
	args := []string{"-serve", "-db", db, "-dsn", dsn, "-dir", dir,
		"-max-open-conns", strconv.Itoa(*maxConns), "-max-idle-conns", strconv.Itoa(*idleConns)}
	if withLog {
		args = append(args, "-log")
	}
	if profile != "" {
		args = append(args, "-serve-cpuprofile", profile)
	}
	cmd := exec.CommandContext(ctx, os.Args[0], args...)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		stdin.Close()
		cmd.Wait()
		return nil, fmt.Errorf("the server process did not start: %v", err)
	}
	return &child{cmd: cmd, stdin: stdin, url: strings.TrimSpace(line)}, nil
}

func (c *child) stop() error {
	c.stdin.Close()
	return c.cmd.Wait()
}

// cpu returns the CPU time (user + system) the child has used so far.
func (c *child) cpu() time.Duration { return measure.PidCPU(c.cmd.Process.Pid) }

// phase is one kind of request timed on its own.
type phase struct {
	name        string
	n           int
	wall        time.Duration
	server, pg  time.Duration
	load        string
	answersPOST bool // one of the four requests of a record's life
}

func (p phase) perOp(d time.Duration) float64 { return float64(d) / float64(p.n) / 1e6 }

// perRecordWarmup is how many records go through their life before the
// measured ones.
const perRecordWarmup = 200

// perRecord runs one record's life, upload → approval → access request →
// grant, for n records, each request kind as a phase of its own, against
// a fresh server process; withLog runs the transparency log's sequencer
// in it.
func perRecord(ctx context.Context, db, dsn string, n int, withLog bool, profile string) ([]phase, error) {
	base := *dirFlag
	if base == "" {
		base = os.TempDir()
	}
	dir, err := os.MkdirTemp(base, "keyholder-bench-perrecord-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	ch, err := startChild(ctx, db, dsn, dir, withLog, profile)
	if err != nil {
		return nil, err
	}
	defer ch.stop()
	pgLocal := db == "postgres" && measure.PostgresIsLocal(dsn)
	w, err := setupWorld(ctx, ch.url)
	if err != nil {
		return nil, err
	}
	var phases []phase
	run := func(name string, c, n int, counts bool, fn func(ctx context.Context, i int) error) error {
		load := loadavg()
		s0, p0, t0 := ch.cpu(), cpuNow(pgLocal).pg, time.Now()
		if err := measure.Parallel(ctx, c, n, fn); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		phases = append(phases, phase{name: name, n: n, wall: time.Since(t0), server: ch.cpu() - s0, pg: cpuNow(pgLocal).pg - p0,
			load: load, answersPOST: counts})
		return nil
	}
	// The floor: an unauthenticated GET that touches nothing, through the
	// same client and server stack, as many and as concurrent as uploads.
	if err := run("GET /healthz (floor)", *concurrent, n, false, func(ctx context.Context, i int) error {
		return w.parties[i%len(w.parties)].Healthz(ctx)
	}); err != nil {
		return nil, err
	}
	// A warm-up round first, not measured: the server's connections to
	// the database are opened, and their statements prepared and planned,
	// as in a server that has run for a while.
	warm := func(_ string, c, n int, _ bool, fn func(ctx context.Context, i int) error) error {
		return measure.Parallel(ctx, c, n, fn)
	}
	if err := lifecycle(ctx, w, min(n, perRecordWarmup), warm); err != nil {
		return nil, fmt.Errorf("warm-up: %w", err)
	}
	if err := lifecycle(ctx, w, n, run); err != nil {
		return nil, err
	}
	return phases, nil
}

// runFunc runs fn for i in [0, n), c at a time, as the phase name (counts:
// the phase's requests are POSTs that answer or create).
type runFunc func(name string, c, n int, counts bool, fn func(ctx context.Context, i int) error) error

// lifecycle takes n new records through their life, one request kind at a
// time, each kind a phase run by run.
func lifecycle(ctx context.Context, w *world, n int, run runFunc) error {
	// Uploads: 1 KiB records sealed by the parties (their sealing runs in
	// this process, not the server's).
	recips, err := w.parties[0].RecipientKeys(ctx, w.userID)
	if err != nil {
		return err
	}
	body := bytes.Repeat([]byte("keyholder per-record benchmark\n"), 34)[:1024]
	records := make([]string, n)
	err = run("upload POST", *concurrent, n, true, func(ctx context.Context, i int) error {
		up, err := w.parties[i%len(w.parties)].SealAndUpload(ctx, w.userID, bytes.NewReader(body), client.UploadOptions{
			ContentType: "text/plain", Size: int64(len(body)), Purpose: "benchmark", Profile: envelope.Compat,
			Private: &client.PrivateMetadata{Title: fmt.Sprintf("record %d", i)}, Recipients: recips})
		if err == nil {
			records[i] = up.Record.ID
		}
		return err
	})
	if err != nil {
		return err
	}
	reqs, err := client.All(ctx, api.Page{Limit: api.MaxPageSize}, w.device.DeviceRequestsPage)
	if err != nil {
		return err
	}
	if len(reqs) != n {
		return fmt.Errorf("%d open requests after %d uploads", len(reqs), n)
	}
	details := make([]*api.RequestDetail, n)
	if err := run("device GET (approval)", *workersN, n, false, func(ctx context.Context, i int) error {
		d, err := w.device.DeviceRequest(ctx, reqs[i].ID)
		details[i] = d
		return err
	}); err != nil {
		return err
	}
	checked := make([]*client.CheckedRequest, n)
	for i, d := range details {
		if checked[i], err = client.CheckRequest(d, w.devID, w.chain); err != nil {
			return err
		}
	}
	if err := run("approval POST", *workersN, n, true, func(ctx context.Context, i int) error {
		_, err := w.device.ApproveRequest(ctx, checked[i])
		return err
	}); err != nil {
		return err
	}
	access := make([]string, n)
	if err := run("access POST", *concurrent, n, true, func(ctx context.Context, i int) error {
		ar, err := w.parties[i%len(w.parties)].RequestAccess(ctx, records[i], "benchmark read", 3600)
		if err == nil {
			access[i] = ar.RequestID
		}
		return err
	}); err != nil {
		return err
	}
	if err := run("device GET (access)", *workersN, n, false, func(ctx context.Context, i int) error {
		d, err := w.device.DeviceRequest(ctx, access[i])
		details[i] = d
		return err
	}); err != nil {
		return err
	}
	answers := make([]answer, n)
	for i, d := range details {
		if answers[i], err = precompute(d, w.devID, w.chain); err != nil {
			return err
		}
	}
	if err := run("grant POST", *workersN, n, true, func(ctx context.Context, i int) error {
		a := &answers[i]
		_, err := w.device.Grant(ctx, a.id, a.kp, a.stmt, a.sig)
		return err
	}); err != nil {
		return err
	}
	return nil
}

// setupWorld makes the user with its device and the parties, through the
// API, on the server at url.
func setupWorld(ctx context.Context, url string) (*world, error) {
	w := &world{}
	admin, err := client.New(url, client.WithAdminToken(adminToken))
	if err != nil {
		return nil, err
	}
	u, err := admin.CreateUser(ctx, "bench-"+store.NewID()[:8])
	if err != nil {
		return nil, err
	}
	w.userID = u.ID
	if w.device, w.devID, err = newKeyClient(url, "bench device"); err != nil {
		return nil, err
	}
	if _, err := w.device.Enroll(ctx, u.Code, "", ""); err != nil {
		return nil, fmt.Errorf("enroll: %w", err)
	}
	w.parties = make([]*client.Client, *partiesN)
	err = measure.Parallel(ctx, 8, *partiesN, func(ctx context.Context, i int) error {
		c, id, err := newKeyClient(url, fmt.Sprintf("bench party %d", i))
		if err != nil {
			return err
		}
		if _, err := admin.CreateParty(ctx, fmt.Sprintf("bench party %d", i), id.Key.Public().Armor()); err != nil {
			return err
		}
		w.parties[i] = c
		return c.Login(ctx)
	})
	if err != nil {
		return nil, fmt.Errorf("parties: %w", err)
	}
	if err := w.device.Login(ctx); err != nil {
		return nil, err
	}
	w.chain, err = w.device.OwnChain(ctx)
	return w, err
}

// cryptoCost is the CPU time of the cryptography the server must do for
// one record: two Ed25519 verifications (the submission's and the
// approval's or grant's statement signature) and a pass over the 1 KiB
// ciphertext (the floor's bulk part, its SHA-256 and AES), each measured
// on one thread as the floor measures it.
func cryptoCost() (time.Duration, error) {
	c, err := floor.MeasureCrypto()
	return 2*c.Verify + c.Bulk, err
}

// printPerRecord prints the phases of one run with the crypto's cost.
func printPerRecord(label string, phases []phase, crypto time.Duration, pg bool) {
	fmt.Printf("  %s\n", label)
	fmt.Printf("    %-22s %8s %10s %14s", "request", "ops/s", "wall", "server CPU/op")
	if pg {
		fmt.Printf(" %14s", "postgres CPU/op")
	}
	fmt.Printf(" %s\n", "load before")
	var total, totalPG, floor float64
	for _, p := range phases {
		if p.name == "GET /healthz (floor)" {
			floor = p.perOp(p.server)
		}
		fmt.Printf("    %-22s %8.0f %9.2fs %11.3f ms", p.name, float64(p.n)/p.wall.Seconds(), p.wall.Seconds(), p.perOp(p.server))
		if pg {
			fmt.Printf(" %12.3f ms", p.perOp(p.pg))
		}
		fmt.Printf(" %s\n", p.load)
		if p.answersPOST {
			total += p.perOp(p.server)
			totalPG += p.perOp(p.pg)
		}
	}
	c := float64(crypto) / 1e6
	fmt.Printf("    per record (the four POSTs): keyholderd %.3f ms CPU", total)
	if pg {
		fmt.Printf(", postgres %.3f ms", totalPG)
	}
	fmt.Printf("; the cryptography alone (2 Ed25519 verifications + SHA-256 and AES of 1 KiB) %.3f ms = %.1f%% of keyholderd's;"+
		" four requests that do nothing (the /healthz floor) %.3f ms = %.1f%%\n", c, 100*c/total, 4*floor, 400*floor/total)
}
