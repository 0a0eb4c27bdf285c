package translog

import (
	"bytes"
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/keyholder/keyholder/internal/store"
	"github.com/keyholder/keyholder/internal/store/storetest"
)

// TestServeTileHostilePaths: tile paths beyond the published tree — deep
// levels whose span overflows, indexes whose leaf number overflows — are
// 404s, never a panic, an internal error or an error in the server's log.
func TestServeTileHostilePaths(t *testing.T) {
	ctx := context.Background()
	st := storetest.Open(t, storetest.Backends()[0], nil)
	signer, _ := testSigner(t)
	var logged bytes.Buffer
	lg, err := New(st, Config{Signer: signer, Logger: slog.New(slog.NewTextHandler(&logged, nil))})
	if err != nil {
		t.Fatal(err)
	}
	appendLeaves(t, st, store.LogChainLink, chainLeaf(t, store.NewID(), 0))
	if _, err := lg.Sequence(ctx); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(lg.Handler())
	defer srv.Close()
	for _, path := range []string{
		"tile/8/000",
		"tile/9/000",
		"tile/63/000",
		"tile/1000/000.p/1",
		"tile/0/x036/028/925/171/408/000",
		"tile/0/x072/057/594/037/927/936.p/1",
		"tile/1/x036/028/925/171/408/000.p/2",
		"tile/entries/x036/028/925/171/408/000.p/1",
		"tile/entries/x072/057/594/037/927/935.p/255",
		"tile/0/000.p/3",
		"tile/entries/000.p/3",
	} {
		resp, err := http.Get(srv.URL + "/log/" + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotFound && resp.StatusCode != http.StatusBadRequest {
			t.Errorf("GET /log/%s: %s, want 404 or 400", path, resp.Status)
		}
	}
	if logged.Len() > 0 {
		t.Errorf("hostile tile paths were logged as server errors:\n%s", logged.String())
	}
}

func TestTileInTree(t *testing.T) {
	for _, c := range []struct {
		l    int
		n    int64
		w    int
		size int64
		want bool
	}{
		{0, 0, 5, 5, true},
		{0, 0, 6, 5, false},
		{0, 0, 256, 255, false},
		{0, 0, 256, 256, true},
		{0, 1, 1, 256, false},
		{0, 1, 1, 257, true},
		{-1, 1, 256, 512, true},
		{-1, 1, 256, 511, false},
		{1, 0, 1, 255, false},
		{1, 0, 1, 256, true},
		{1, 0, 2, 511, false},
		{1, 0, 2, 512, true},
		{2, 0, 1, 1 << 16, true},
		{7, 0, 1, 1 << 56, true},
		{7, 0, 2, 1 << 56, false},
		{8, 0, 1, 1<<63 - 1, false},
		{0, 1 << 55, 1, 1<<63 - 1, false},
		{0, 1<<55 - 1, 255, 1<<63 - 1, true},
		{0, 1<<55 - 1, 256, 1<<63 - 1, false},
	} {
		if got := tileInTree(tlog.Tile{H: 8, L: c.l, N: c.n, W: c.w}, c.size); got != c.want {
			t.Errorf("tile L=%d N=%d W=%d in a tree of %d: %v, want %v", c.l, c.n, c.w, c.size, got, c.want)
		}
	}
}
