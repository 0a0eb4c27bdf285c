package server

import (
	"net/http"
	"testing"
	"time"

	"github.com/keyholder/keyholder/internal/store"
	"github.com/keyholder/keyholder/pkg/api"
	"github.com/keyholder/keyholder/pkg/statement"
)

// streamEnds fails unless the event stream ends within a few seconds.
func streamEnds(t *testing.T, ch <-chan string) {
	t.Helper()
	deadline := time.After(5 * time.Second)
	for {
		select {
		case _, ok := <-ch:
			if !ok {
				return
			}
		case <-deadline:
			t.Fatal("the revoked device's event stream is still open")
		}
	}
}

// TestRevokeEndsStream: revoking a device (a revoke-device link, here
// signed by the device itself) ends its open event stream at once, and it
// cannot open another. Another device's stream stays.
func TestRevokeEndsStream(t *testing.T) {
	e := newEnv(t, sqlite(), nil)
	dev := e.newUser("alice")
	e.addDevice(dev) // the last device cannot be revoked
	other := e.newUser("bob")
	events, stop := e.sse(dev)
	defer stop()
	otherEvents, stop2 := e.sse(other)
	defer stop2()
	waitFor(t, func() bool { return e.hub.Subscribers(dev.id) == 1 && e.hub.Subscribers(other.id) == 1 })

	e.extend(dev, statement.ActionRevokeDevice, dev.key)
	streamEnds(t, events)
	resp, data := e.do("GET", api.PathDeviceEvents, dev.token, nil)
	e.wantProblem(resp, data, http.StatusUnauthorized)
	if e.hub.Subscribers(other.id) != 1 {
		t.Fatal("another device's stream ended")
	}
	select {
	case _, ok := <-otherEvents:
		if !ok {
			t.Fatal("another device's stream ended")
		}
	default:
	}
}

// TestRevokedStreamEndsAtHeartbeat: if the disconnect signal is missed
// (a revocation on a replica whose NOTIFY did not arrive), the stream ends
// at its next heartbeat, which re-reads the device's status.
func TestRevokedStreamEndsAtHeartbeat(t *testing.T) {
	e := newEnv(t, sqlite(), func(c *Config) { c.SSEHeartbeat = 50 * time.Millisecond })
	dev := e.newUser("alice")
	events, stop := e.sse(dev)
	defer stop()
	waitFor(t, func() bool { return e.hub.Subscribers(dev.id) == 1 })
	// Revoke behind the server's back: no Disconnect.
	if err := e.st.DB(t.Context()).Model(&store.Device{}).Where("id = ?", dev.id).Update("status", store.DeviceRevoked).Error; err != nil {
		t.Fatal(err)
	}
	streamEnds(t, events)
}

// TestTwoReplicasRevoke: the stream is on replica B, the device revokes
// itself on replica A: B ends the stream at once (NOTIFY), not only at
// its next heartbeat.
func TestTwoReplicasRevoke(t *testing.T) {
	a, b := replicas(t, nil) // 20 s heartbeat: only the NOTIFY can be quick
	dev := a.newUser("alice")
	a.addDevice(dev)
	events, stop := b.sse(dev)
	defer stop()
	waitFor(t, func() bool { return b.hub.Subscribers(dev.id) == 1 })
	a.extend(dev, statement.ActionRevokeDevice, dev.key)
	streamEnds(t, events)
}
