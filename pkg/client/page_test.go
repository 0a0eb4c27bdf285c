package client_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/keyholder/keyholder/pkg/api"
	"github.com/keyholder/keyholder/pkg/client"
)

// TestAll: All follows the cursors to the end with the page size asked
// for, and stops with an error when a server's cursor does not move on
// (instead of looping for ever).
func TestAll(t *testing.T) {
	rows := []int{1, 2, 3, 4, 5}
	var limits []int
	pages := func(ctx context.Context, p api.Page) ([]int, string, error) {
		limits = append(limits, p.Limit)
		start := 0
		if p.Cursor != "" {
			fmt.Sscan(p.Cursor, &start)
		}
		end := min(start+p.Limit, len(rows))
		next := ""
		if end < len(rows) {
			next = fmt.Sprint(end)
		}
		return rows[start:end], next, nil
	}
	got, err := client.All(t.Context(), api.Page{Limit: 2}, pages)
	if err != nil || !slices.Equal(got, rows) || !slices.Equal(limits, []int{2, 2, 2}) {
		t.Fatalf("All: %v, %v (limits %v)", got, err, limits)
	}
	stuck := func(ctx context.Context, p api.Page) ([]int, string, error) { return []int{1}, "same", nil }
	if _, err := client.All(t.Context(), api.Page{Cursor: "same"}, stuck); err == nil || !strings.Contains(err.Error(), "did not advance") {
		t.Fatalf("a cursor that does not move: %v", err)
	}
}

func TestPageQuery(t *testing.T) {
	for _, tc := range []struct {
		p          api.Page
		path, want string
	}{
		{api.Page{}, "/v1/x", "/v1/x"},
		{api.Page{Limit: 5}, "/v1/x", "/v1/x?limit=5"},
		{api.Page{Limit: 5, Cursor: "a/b"}, "/v1/x", "/v1/x?cursor=a%2Fb&limit=5"},
		{api.Page{Cursor: "c"}, "/v1/x?k=1", "/v1/x?k=1&cursor=c"},
	} {
		if got := tc.p.Query(tc.path); got != tc.want {
			t.Errorf("%+v.Query(%q) = %q, want %q", tc.p, tc.path, got, tc.want)
		}
	}
}
