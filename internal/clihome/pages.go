package clihome

import (
	"context"
	"fmt"
	"io"

	"github.com/spf13/pflag"

	"github.com/keyholder/keyholder/pkg/api"
	"github.com/keyholder/keyholder/pkg/client"
)

// PageFlags are the paging flags every list command has: without them a
// list prints its first page of the server's default size, as lists did
// before they had pages.
type PageFlags struct {
	Limit  int
	Cursor string
	All    bool
}

// Register adds --limit, --cursor and --all to fs.
func (f *PageFlags) Register(fs *pflag.FlagSet) {
	fs.IntVar(&f.Limit, "limit", 0, fmt.Sprintf("rows per page (1-%d; default %d)", api.MaxPageSize, api.DefaultPageSize))
	fs.StringVar(&f.Cursor, "cursor", "", "start after the page that printed this next cursor")
	fs.BoolVar(&f.All, "all", false, "read the whole list, page after page")
}

// Read reads what the flags ask for through page: one page, or with --all
// every page from --cursor on. next is the cursor of the page after (""
// at the end of the list).
func Read[T any](ctx context.Context, f PageFlags, page client.PageFunc[T]) (items []T, next string, err error) {
	if f.Limit < 0 || f.Limit > api.MaxPageSize {
		return nil, "", fmt.Errorf("--limit must be from 1 to %d", api.MaxPageSize)
	}
	p := api.Page{Limit: f.Limit, Cursor: f.Cursor}
	if f.All {
		items, err = client.All(ctx, p, page)
		return items, "", err
	}
	return page(ctx, p)
}

// NoteNext tells w (standard error) how to read the page after, if any.
func NoteNext(w io.Writer, next string) {
	if next != "" {
		fmt.Fprintf(w, "more: run again with --cursor %s (or --all)\n", next)
	}
}
