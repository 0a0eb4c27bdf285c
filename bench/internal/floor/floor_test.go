package floor

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// The floors add up the parts the doc comments name, each part counted
// as often as the protocol needs it: with each part a distinct power of
// two, a wrong count shows as a wrong bit.
func TestFloorsCountTheirParts(t *testing.T) {
	c := Costs{X25519: 1, Sign: 1 << 4, Verify: 1 << 8, Bulk: 1 << 12, Exchange: 1 << 16, Commit: 1 << 20, Read: 1 << 24}
	count := func(d time.Duration) (x, sign, verify, bulk, exchange, commit, read int64) {
		n := int64(d)
		part := func(shift uint) int64 { return (n >> shift) & 0xf }
		return part(0), part(4), part(8), part(12), part(16), part(20), part(24)
	}
	for _, tc := range []struct {
		name string
		got  time.Duration
		want [7]int64
	}{
		{"approval", c.Approval(), [7]int64{3, 2, 4, 2, 4, 2, 2}},
		{"grant", c.Grant(false), [7]int64{3, 1, 1, 0, 3, 2, 1}},
		{"grant fetched", c.Grant(true), [7]int64{4, 1, 2, 1, 4, 2, 2}},
	} {
		x, s, v, b, e, cm, r := count(tc.got)
		if got := [7]int64{x, s, v, b, e, cm, r}; got != tc.want {
			t.Errorf("%s: counts (X25519, sign, verify, bulk, exchange, commit, read) = %v, want %v", tc.name, got, tc.want)
		}
	}
}

// Measure on SQLite gives every part a cost, and leaves no file behind.
func TestMeasureSQLite(t *testing.T) {
	dir := t.TempDir()
	c, err := Measure(context.Background(), dir, 300)
	if err != nil {
		t.Fatal(err)
	}
	checkParts(t, c)
	if ents, err := os.ReadDir(dir); err != nil || len(ents) != 0 {
		t.Errorf("left in %s: %v (%v)", dir, ents, err)
	}
}

// Measure on PostgreSQL (KEYHOLDER_TEST_POSTGRES) gives every part a
// cost, and drops its table.
func TestMeasurePostgres(t *testing.T) {
	dsn := os.Getenv("KEYHOLDER_TEST_POSTGRES")
	if dsn == "" {
		t.Skip("KEYHOLDER_TEST_POSTGRES is not set")
	}
	ctx := context.Background()
	c, err := Measure(ctx, dsn, 300)
	if err != nil {
		t.Fatal(err)
	}
	checkParts(t, c)
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var n int
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM pg_tables WHERE tablename LIKE 'keyholder_floor_%'").Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Errorf("%d floor tables left", n)
	}
}

func checkParts(t *testing.T, c Costs) {
	t.Helper()
	t.Log(c)
	for name, d := range map[string]time.Duration{"X25519": c.X25519, "sign": c.Sign, "verify": c.Verify,
		"bulk": c.Bulk, "exchange": c.Exchange, "commit": c.Commit, "read": c.Read} {
		if d <= 0 || d > time.Second {
			t.Errorf("%s costs %v", name, d)
		}
	}
	if a, g := c.Approval(), c.Grant(false); a <= g {
		t.Errorf("approval floor %v not above the unfetched grant's %v", a, g)
	}
}
