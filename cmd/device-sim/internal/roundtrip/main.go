// Command roundtrip measures the approval round trip of Keyholder with
// real processes: N parties upload records concurrently to one user whose
// phone is a running `device-sim run --auto-approve`; for each record it
// times upload done → device notified → approved → the party's wait
// returns. scripts/bench-cli.sh drives it.
package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"flag"
	"fmt"
	"os"
	"sort"
	"sync"
	"time"

	"github.com/keyholder/keyholder/internal/cpuprofile"
	"github.com/keyholder/keyholder/pkg/client"
	"github.com/keyholder/keyholder/pkg/envelope"
)

func main() {
	server := flag.String("server", os.Getenv("KEYHOLDER_SERVER"), "server URL")
	user := flag.String("user", "", "user id (its device must be running device-sim --auto-approve)")
	parties := flag.Int("parties", 16, "concurrent parties")
	records := flag.Int("records", 1000, "records in all")
	size := flag.Int("size", 1024, "plaintext bytes per record")
	pollEvery := flag.Duration("poll", 20*time.Millisecond, "the parties' wait poll interval")
	flag.Parse()
	stop, err := cpuprofile.FromEnv() // for measurements, as keyholderd's
	if err != nil {
		fmt.Fprintln(os.Stderr, "roundtrip:", err)
		os.Exit(1)
	}
	err = run(*server, *user, *parties, *records, *size, *pollEvery)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "roundtrip:", err)
		os.Exit(1)
	}
}

func pct(d []time.Duration, p float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	i := int(p*float64(len(d))+0.5) - 1
	if i < 0 {
		i = 0
	}
	if i >= len(d) {
		i = len(d) - 1
	}
	return d[i]
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d)/float64(time.Millisecond)) }

func run(server, user string, nParties, nRecords, size int, pollEvery time.Duration) error {
	if user == "" {
		return fmt.Errorf("--user is required")
	}
	ctx := context.Background()
	admin, err := client.New(server, client.WithAdminToken(os.Getenv("KEYHOLDER_ADMIN_TOKEN")))
	if err != nil {
		return err
	}
	stamp := time.Now().UnixNano()
	cs := make([]*client.Client, nParties)
	var recips []*envelope.Key
	for i := range cs {
		k, err := envelope.GenerateKey(fmt.Sprintf("bench party %d", i))
		if err != nil {
			return err
		}
		id, err := client.IdentityFromKey(k)
		if err != nil {
			return err
		}
		if _, err := admin.CreateParty(ctx, fmt.Sprintf("bench-%d-%d", stamp, i), k.Public().Armor()); err != nil {
			return err
		}
		if cs[i], err = client.New(server, client.WithIdentity(id), client.WithPollInterval(pollEvery, pollEvery)); err != nil {
			return err
		}
		if i == 0 {
			if recips, err = cs[i].RecipientKeys(ctx, user); err != nil {
				return err
			}
		}
		if err := cs[i].Login(ctx); err != nil {
			return err
		}
	}
	var mu sync.Mutex
	var rts, ups []time.Duration
	var firstErr error
	var wg sync.WaitGroup
	start := time.Now()
	for i, c := range cs {
		n := nRecords / nParties
		if i < nRecords%nParties {
			n++
		}
		wg.Add(1)
		go func(c *client.Client, n int) {
			defer wg.Done()
			buf := make([]byte, size)
			for j := 0; j < n; j++ {
				rand.Read(buf)
				t0 := time.Now()
				up, err := c.SealAndUpload(ctx, user, bytes.NewReader(buf), client.UploadOptions{Recipients: recips})
				t1 := time.Now()
				if err == nil {
					r, werr := c.WaitDecided(ctx, up.Record.ID)
					if werr == nil && r.State != "approved" {
						werr = fmt.Errorf("record %s is %s", r.ID, r.State)
					}
					err = werr
				}
				t2 := time.Now()
				mu.Lock()
				if err != nil {
					if firstErr == nil {
						firstErr = err
					}
					mu.Unlock()
					return
				}
				ups = append(ups, t1.Sub(t0))
				rts = append(rts, t2.Sub(t1))
				mu.Unlock()
			}
		}(c, n)
	}
	wg.Wait()
	el := time.Since(start)
	if firstErr != nil {
		return firstErr
	}
	sort.Slice(rts, func(i, j int) bool { return rts[i] < rts[j] })
	sort.Slice(ups, func(i, j int) bool { return ups[i] < ups[j] })
	fmt.Printf("records %d (%d B each), parties %d, wall %.1fs, %.0f approvals/s\n", len(rts), size, nParties, el.Seconds(), float64(len(rts))/el.Seconds())
	fmt.Printf("approval round trip (upload done -> device notified -> approved -> wait returns, poll %s): p50 %s  p90 %s  p99 %s  max %s\n",
		pollEvery, ms(pct(rts, .5)), ms(pct(rts, .9)), ms(pct(rts, .99)), ms(rts[len(rts)-1]))
	fmt.Printf("seal+upload: p50 %s  p99 %s\n", ms(pct(ups, .5)), ms(pct(ups, .99)))
	return nil
}
