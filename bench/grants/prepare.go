package main

// Preparation (untimed): the user, the device, the parties and the
// approved records every measurement works on.

import (
	"bytes"
	"context"
	"fmt"

	"github.com/keyholder/keyholder/bench/internal/measure"
	"github.com/keyholder/keyholder/pkg/client"
	"github.com/keyholder/keyholder/pkg/envelope"
	"github.com/keyholder/keyholder/pkg/keychain"
)

type world struct {
	s       *stack
	userID  string
	device  *client.Client
	devID   *client.Identity
	chain   *keychain.State
	parties []*client.Client
	records []string
}

func newKeyClient(url, name string) (*client.Client, *client.Identity, error) {
	k, err := envelope.GenerateKey(name)
	if err != nil {
		return nil, nil, err
	}
	id, err := client.IdentityFromKey(k)
	if err != nil {
		return nil, nil, err
	}
	c, err := client.New(url, client.WithIdentity(id), client.WithUserAgent("keyholder-bench-grants"))
	return c, id, err
}

func prepare(ctx context.Context, s *stack) (*world, error) {
	w, err := setupWorld(ctx, s.url)
	if err != nil {
		return nil, err
	}
	w.s = s
	profile, err := envelope.ParseProfile(*profileFmt)
	if err != nil {
		return nil, err
	}
	recips, err := w.parties[0].RecipientKeys(ctx, w.userID)
	if err != nil {
		return nil, err
	}
	// Uploads by the parties in turn, 1 KiB each, with a private title.
	w.records = make([]string, *recordsN)
	body := bytes.Repeat([]byte("keyholder grants benchmark record\n"), 31)[:1024]
	err = measure.Parallel(ctx, 8, *recordsN, func(ctx context.Context, i int) error {
		up, err := w.parties[i%len(w.parties)].SealAndUpload(ctx, w.userID, bytes.NewReader(body), client.UploadOptions{
			ContentType: "text/plain", Size: int64(len(body)), Purpose: "benchmark", Profile: profile,
			Private: &client.PrivateMetadata{Title: fmt.Sprintf("record %d", i)}, Recipients: recips})
		if err != nil {
			return err
		}
		w.records[i] = up.Record.ID
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("uploads: %w", err)
	}
	// The device approves them all through the API.
	for {
		reqs, err := w.device.DeviceRequests(ctx)
		if err != nil {
			return nil, err
		}
		if len(reqs) == 0 {
			break
		}
		err = measure.Parallel(ctx, 8, len(reqs), func(ctx context.Context, i int) error {
			d, err := w.device.DeviceRequest(ctx, reqs[i].ID)
			if err != nil {
				return err
			}
			cr, err := client.CheckRequest(d, w.devID, w.chain)
			if err != nil {
				return err
			}
			_, err = w.device.ApproveRequest(ctx, cr)
			return err
		})
		if err != nil {
			return nil, fmt.Errorf("approvals: %w", err)
		}
	}
	pending, err := s.st.PendingRecords(ctx)
	if err != nil {
		return nil, err
	}
	if pending != 0 {
		return nil, fmt.Errorf("%d of %d records still pending after their approval", pending, *recordsN)
	}
	return w, nil
}
