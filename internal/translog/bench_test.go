package translog

import (
	"context"
	"testing"

	"github.com/keyholder/keyholder/internal/store"
	"github.com/keyholder/keyholder/internal/store/storetest"
)

// BenchmarkSequence: sequencing rounds of 1000 chain links of distinct
// users (each one a new map label), as under load.
func BenchmarkSequence(b *testing.B) {
	for _, be := range storetest.Backends() {
		b.Run(be.Name, func(b *testing.B) {
			ctx := context.Background()
			st := storetest.Open(b, be, nil)
			signer, _ := testSigner(b)
			lg, err := New(st, Config{Signer: signer, Logger: discard()})
			if err != nil {
				b.Fatal(err)
			}
			leaves := make([][]byte, 1000)
			b.ResetTimer()
			for range b.N {
				b.StopTimer()
				for i := range leaves {
					leaves[i] = chainLeaf(b, store.NewID(), 0)
				}
				appendLeaves(b, st, store.LogChainLink, leaves...)
				b.StartTimer()
				if _, err := lg.Sequence(ctx); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N*len(leaves)), "µs/leaf")
		})
	}
}
