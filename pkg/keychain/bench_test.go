package keychain_test

import (
	"testing"
	"time"

	"github.com/keyholder/keyholder/pkg/api"
	"github.com/keyholder/keyholder/pkg/envelope"
	"github.com/keyholder/keyholder/pkg/keychain"
	"github.com/keyholder/keyholder/pkg/statement"
)

// BenchmarkVerify measures what a party pays per chain fetch: verifying a
// chain of one device plus n-1 links (devices added by the first).
func BenchmarkVerify(b *testing.B) {
	for _, n := range []int{1, 4, 16} {
		b.Run(map[int]string{1: "links=1", 4: "links=4", 16: "links=16"}[n], func(b *testing.B) {
			first, err := envelope.GenerateKey("first")
			if err != nil {
				b.Fatal(err)
			}
			s := keychain.New("alice")
			var links []api.ChainLink
			now := time.Now()
			for i := 0; i < n; i++ {
				target := first
				if i > 0 {
					if target, err = envelope.GenerateKey("device"); err != nil {
						b.Fatal(err)
					}
				}
				l, err := s.Sign(statement.ActionAddDevice, target, first, now)
				if err != nil {
					b.Fatal(err)
				}
				if err := s.Apply(l); err != nil {
					b.Fatal(err)
				}
				links = append(links, l)
			}
			b.ResetTimer()
			for b.Loop() {
				if _, err := keychain.Verify("alice", links); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
