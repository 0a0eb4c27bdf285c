package main

// The server-only ceiling: the same calls with the device's cryptography
// precomputed.

import (
	"context"
	"crypto/sha256"
	"fmt"
	"runtime"
	"runtime/pprof"
	"time"

	"github.com/keyholder/keyholder/bench/internal/measure"
	"github.com/keyholder/keyholder/internal/cpuprofile"
	"github.com/keyholder/keyholder/pkg/api"
	"github.com/keyholder/keyholder/pkg/client"
	"github.com/keyholder/keyholder/pkg/envelope"
	"github.com/keyholder/keyholder/pkg/keychain"
	"github.com/keyholder/keyholder/pkg/statement"
)

type answer struct {
	id            string
	kp, stmt, sig []byte
}

type serverResult struct {
	access, fetch, post, crypto result
}

// combined is the server's rate for whole grants (access + fetch + post).
func (s serverResult) combined() float64 {
	return 1 / (1/s.access.rate() + 1/s.fetch.rate() + 1/s.post.rate())
}

// timed runs fn(0..n-1) on c goroutines labeled side, timing each call.
func timed(ctx context.Context, w *world, c, n int, side string, fn func(ctx context.Context, i int) error) (result, error) {
	lat := make([]time.Duration, n)
	c0, t0 := cpuNow(w.s.pgLocal), time.Now()
	err := measure.Parallel(ctx, c, n, func(ctx context.Context, i int) error {
		var err error
		pprof.Do(ctx, pprof.Labels("side", side), func(ctx context.Context) {
			start := time.Now()
			err = fn(ctx, i)
			lat[i] = time.Since(start)
		})
		return err
	})
	return result{n: n, wall: time.Since(t0), lat: lat, cpu: cpuNow(w.s.pgLocal).sub(c0)}, err
}

func serverCeiling(ctx context.Context, w *world, n int, prof string) (serverResult, error) {
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	var out serverResult
	var err error
	ids := make([]string, n)
	out.access, err = timed(ctx, w, *concurrent, n, "party", func(ctx context.Context, i int) error {
		ar, err := w.parties[i%len(w.parties)].RequestAccess(ctx, w.records[i%len(w.records)], "benchmark read", 3600)
		if err == nil {
			ids[i] = ar.RequestID
		}
		return err
	})
	if err != nil {
		return out, fmt.Errorf("access requests: %w", err)
	}
	details := make([]*api.RequestDetail, n)
	out.fetch, err = timed(ctx, w, *workersN, n, "device", func(ctx context.Context, i int) error {
		d, err := w.device.DeviceRequest(ctx, ids[i])
		details[i] = d
		return err
	})
	if err != nil {
		return out, fmt.Errorf("request fetches: %w", err)
	}
	answers := make([]answer, n)
	out.crypto, err = timed(ctx, w, runtime.GOMAXPROCS(0), n, "device", func(ctx context.Context, i int) error {
		a, err := precompute(details[i], w.devID, w.chain)
		answers[i] = a
		return err
	})
	if err != nil {
		return out, fmt.Errorf("device answers: %w", err)
	}
	if prof != "" {
		stop, err := cpuprofile.Start(prof)
		if err != nil {
			return out, err
		}
		defer stop()
	}
	out.post, err = timed(ctx, w, *workersN, n, "device", func(ctx context.Context, i int) error {
		a := &answers[i]
		_, err := w.device.Grant(ctx, a.id, a.kp, a.stmt, a.sig)
		return err
	})
	if err != nil {
		return out, fmt.Errorf("grant posts: %w", err)
	}
	return out, nil
}

// precompute is the device's side of client.GrantRequest without the POST.
func precompute(d *api.RequestDetail, id *client.Identity, ch *keychain.State) (answer, error) {
	cr, err := client.CheckRequest(d, id, ch)
	if err != nil {
		return answer{}, err
	}
	kp, err := envelope.Rewrap(cr.KeyPacket, cr.Profile, id.Key, cr.RequesterKey)
	if err != nil {
		return answer{}, err
	}
	now := time.Now().UTC().Truncate(time.Second)
	g := statement.Grant{Record: d.RecordID, Grantee: d.RequesterFingerprint, KeyPacketSHA256: sha256.Sum256(kp),
		PurposeSHA256: statement.PurposeDigest(d.Purpose), Expires: d.GrantExpires.UTC().Truncate(time.Second), Request: d.ID, Time: now}
	stmt, err := g.Marshal()
	if err != nil {
		return answer{}, err
	}
	sig, err := statement.Sign(stmt, id.Key)
	if err != nil {
		return answer{}, err
	}
	return answer{id: d.ID, kp: kp, stmt: stmt, sig: sig}, nil
}
