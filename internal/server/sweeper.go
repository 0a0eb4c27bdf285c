package server

import (
	"context"
	"time"

	"github.com/keyholder/keyholder/internal/blob"
	"github.com/keyholder/keyholder/internal/store"
)

// Sweep expires what has outlived its TTL: open requests (and link
// requests) past their expiry become "expired"; pending records past theirs become "expired"
// tombstones whose ciphertext, key packets and private metadata are
// deleted. Approved records are never touched. Old nonces and tokens are
// removed. It returns how many records and requests it expired.
func (s *Server) Sweep(ctx context.Context) (records, requests int, err error) {
	now := s.now()
	recs, err := s.st.ExpiredPendingRecords(ctx, now, 500)
	if err != nil {
		return 0, 0, err
	}
	for _, r := range recs {
		id := r.ID
		var blobKey *string
		err := s.st.Apply(ctx, store.Actor{Kind: store.ActorSystem, ID: "sweeper"}, func(tx *store.Tx) error {
			expired, key, err := tx.ExpireRecord(id)
			if err != nil || !expired {
				return err // not expired: decided meanwhile, left alone
			}
			blobKey = key
			tx.Audit("record.expire", "record", id)
			if blobKey != nil {
				k := *blobKey
				tx.AfterCommit(func() { s.deleteBlob(k) })
			}
			records++
			return nil
		})
		if err != nil {
			return records, requests, err
		}
	}
	err = s.st.Apply(ctx, store.Actor{Kind: store.ActorSystem, ID: "sweeper"}, func(tx *store.Tx) error {
		n, err := tx.ExpireStale(now)
		requests = n
		if err == nil && requests > 0 {
			tx.Audit("request.expire", "request", "")
		}
		return err
	})
	// Temporary files of uploads that died with their process (this
	// replica's or another's sharing the blob directory).
	if tc, ok := s.blobs.(blob.TempCleaner); ok {
		if n, e := tc.RemoveStaleTemps(blob.StaleTempAge); e != nil {
			s.log.Error("removing stale temporary files", "error", e.Error())
		} else if n > 0 {
			s.log.Info("removed stale temporary files", "count", n)
		}
	}
	s.metrics.swept.WithLabelValues("record").Add(float64(records))
	s.metrics.swept.WithLabelValues("request").Add(float64(requests))
	return records, requests, err
}

// RunSweeper sweeps every cfg.SweepEvery until ctx ends.
func (s *Server) RunSweeper(ctx context.Context) {
	t := time.NewTicker(s.cfg.SweepEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if r, q, err := s.Sweep(ctx); err != nil {
				s.log.Error("sweep failed", "error", err.Error())
			} else if r+q > 0 {
				s.log.Info("swept", "records", r, "requests", q)
			}
		}
	}
}
