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
	var recs []store.Record
	if err := s.st.DB(ctx).Where("state = ? AND expires_at <= ?", store.StatePending, now).Limit(500).Find(&recs).Error; err != nil {
		return 0, 0, err
	}
	for _, r := range recs {
		id := r.ID
		var blobKey *string
		err := s.st.Apply(ctx, store.Actor{Kind: store.ActorSystem, ID: "sweeper"}, func(tx *store.Tx) error {
			var cur store.Record
			if err := store.First(tx.Locked(), &cur, "id = ?", id); err != nil {
				return err
			}
			if cur.State != store.StatePending || cur.ExpiresAt.After(tx.Now()) {
				return nil // decided meanwhile: leave it alone
			}
			blobKey = cur.BlobKey
			if err := tx.DB.Model(&store.Record{}).Where("id = ? AND state = ?", id, store.StatePending).
				Updates(map[string]any{"state": store.StateExpired, "blob_key": nil, "private": nil}).Error; err != nil {
				return err
			}
			if err := tx.DB.Where("record_id = ?", id).Delete(&store.RecordKeyPacket{}).Error; err != nil {
				return err
			}
			if err := tx.DB.Model(&store.Request{}).Where("record_id = ? AND state = ?", id, store.RequestOpen).
				Update("state", store.RequestExpired).Error; err != nil {
				return err
			}
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
		res := tx.DB.Model(&store.Request{}).Where("state = ? AND expires_at <= ?", store.RequestOpen, now).Update("state", store.RequestExpired)
		if res.Error != nil {
			return res.Error
		}
		requests = int(res.RowsAffected)
		if requests > 0 {
			tx.Audit("request.expire", "request", "")
		}
		// Link requests after their requests (the order the answer routes
		// lock them in).
		if err := tx.DB.Model(&store.PendingDevice{}).Where("state = ? AND expires_at <= ?", store.LinkOpen, now).
			Update("state", store.LinkExpired).Error; err != nil {
			return err
		}
		if err := tx.DB.Where("expires_at <= ?", now.Add(-time.Hour)).Delete(&store.Nonce{}).Error; err != nil {
			return err
		}
		return tx.DB.Where("expires_at <= ?", now).Delete(&store.Token{}).Error
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
