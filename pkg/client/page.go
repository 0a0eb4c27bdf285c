package client

import (
	"context"
	"fmt"

	"github.com/keyholder/keyholder/pkg/api"
)

// PageFunc reads one page of a list, as the client's ...Page methods do
// (with the client bound: c.PartyRecordsPage).
type PageFunc[T any] func(ctx context.Context, p api.Page) (items []T, next string, err error)

// All reads a list from page p to its end, following the cursors, p.Limit
// rows a request (0: the server's default page).
func All[T any](ctx context.Context, p api.Page, page PageFunc[T]) ([]T, error) {
	var out []T
	for {
		items, next, err := page(ctx, p)
		if err != nil {
			return out, err
		}
		out = append(out, items...)
		if next == "" {
			return out, nil
		}
		if next == p.Cursor || len(items) == 0 {
			// A cursor that does not move on would loop for ever.
			return out, fmt.Errorf("client: the server's list did not advance past cursor %q", next)
		}
		p.Cursor = next
	}
}
