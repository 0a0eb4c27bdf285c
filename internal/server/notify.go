package server

import (
	"context"
	"errors"
	"time"

	"github.com/keyholder/keyholder/internal/push"
	"github.com/keyholder/keyholder/internal/store"
)

// Pushes leave after the commit, asynchronously: a slow push provider (FCM
// is bounded by PushTimeout) must not delay the response of the upload or
// access request that caused it. A bounded queue feeds a fixed number of
// workers; their context outlives the request and ends at Shutdown.

// pushJob is one request to push: to devices, if the job names them (a
// record's request: its handler read them), else, for a device request,
// to every active device of userID.
type pushJob struct {
	userID, requestID string
	devices           []store.Device
	// wake, if set, makes the job wake the parties waiting on this hub
	// key (Server.wake) instead of a push.
	wake string
}

func (s *Server) startPushWorkers() {
	s.pushCtx, s.pushCancel = context.WithCancel(context.Background())
	s.pushIdle.L = &s.pushMu
	if s.notifier == nil && s.waker == nil {
		return
	}
	s.pushQueue = make(chan pushJob, s.cfg.PushQueue)
	for i := 0; i < s.cfg.PushWorkers; i++ {
		s.pushWG.Add(1)
		go func() {
			defer s.pushWG.Done()
			for job := range s.pushQueue {
				n := 1
				if job.wake != "" {
					var after *pushJob
					if n, after = s.wakeQueued(job); after != nil {
						s.deliver(*after)
					}
				} else {
					s.deliver(job)
				}
				s.pushMu.Lock()
				s.pushPending -= n
				if s.pushPending == 0 {
					s.pushIdle.Broadcast()
				}
				s.pushMu.Unlock()
			}
		}()
	}
}

// notifyRecord queues a push of requestID, a request about a record, to
// devices: the active devices that hold a key packet of the record (the
// devices that can answer), which the handler read with the record (an
// upload: the devices it sealed to; an access request: RecordWithDevices),
// saving the push a query. The payload is the request id only. Call it
// after the commit. When the queue is full the push is dropped (and
// counted): the device still finds the request on its next event-stream
// connect or request list.
func (s *Server) notifyRecord(requestID string, devices []store.Device) {
	s.enqueuePush(pushJob{requestID: requestID, devices: devices})
}

// notifyUser queues a push of a device request to every active device of
// the user, like notifyRecord.
func (s *Server) notifyUser(userID, requestID string) {
	s.enqueuePush(pushJob{userID: userID, requestID: requestID})
}

func (s *Server) enqueuePush(job pushJob) {
	if s.pushQueue == nil || (job.wake == "" && s.notifier == nil) {
		return
	}
	s.pushMu.Lock()
	defer s.pushMu.Unlock()
	if s.pushClosed {
		return
	}
	select {
	case s.pushQueue <- job:
		s.pushPending++
	default:
		s.metrics.pushDropped.Inc()
		s.log.Warn("push queue full, push dropped")
	}
}

// deliver sends one job, bounded by PushTimeout in total.
func (s *Server) deliver(job pushJob) {
	ctx, cancel := context.WithTimeout(s.pushCtx, s.cfg.PushTimeout)
	defer cancel()
	ds, err := job.devices, error(nil)
	if ds == nil {
		ds, err = s.st.DevicesToNotify(ctx, job.userID)
	}
	if err != nil {
		if s.pushCtx.Err() == nil {
			s.log.Error("push: listing devices", "error", err.Error())
		}
		return
	}
	for _, d := range ds {
		t := push.Target{DeviceID: d.ID, Kind: d.PushKind}
		if d.PushKind == push.KindFCM && !d.PushDead {
			t.Token = d.PushToken
		} else {
			t.Kind = push.KindLocal
		}
		err := s.notifier.Notify(ctx, t, job.requestID)
		if errors.Is(err, push.ErrTargetGone) {
			s.markPushDead(d.ID)
		} else if err != nil && s.pushCtx.Err() == nil {
			s.log.Warn("push failed", "device", d.ID, "error", err.Error())
		}
	}
}

// markPushDead records that the push provider no longer knows the
// device's token: later pushes to it go over the local channel only.
func (s *Server) markPushDead(deviceID string) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(s.pushCtx), 10*time.Second)
	defer cancel()
	if err := s.st.Apply(ctx, store.Actor{Kind: store.ActorSystem, ID: "push"}, func(tx *store.Tx) error {
		tx.Audit("device.push-dead", "device", deviceID)
		return tx.MarkPushDead(deviceID)
	}); err != nil {
		s.log.Error("push: marking target dead", "error", err.Error())
	}
}

// waitPushes blocks until every queued push has been handled (tests).
func (s *Server) waitPushes() {
	s.pushMu.Lock()
	defer s.pushMu.Unlock()
	for s.pushPending > 0 {
		s.pushIdle.Wait()
	}
}

// Shutdown stops the background work: no new pushes are queued, the
// queued ones are sent until ctx ends, and then the pushes still in flight
// are canceled. Call it after the HTTP server's Shutdown, so the requests
// that finished during it still get their pushes out. It is safe to call
// more than once.
func (s *Server) Shutdown(ctx context.Context) error {
	s.pushMu.Lock()
	if !s.pushClosed {
		s.pushClosed = true
		if s.pushQueue != nil {
			close(s.pushQueue)
		}
	}
	s.pushMu.Unlock()
	done := make(chan struct{})
	go func() { s.pushWG.Wait(); close(done) }()
	var err error
	select {
	case <-done:
	case <-ctx.Done():
		err = ctx.Err()
	}
	s.pushCancel()
	<-done
	return err
}
