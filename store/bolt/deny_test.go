package bolt

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	bbolt "go.etcd.io/bbolt"

	"github.com/keygate/keygate/store"
)

// TestDenyListSpaceReused checks what the conformance suite cannot see:
// once deny entries expire and are pruned, the pages they took are reused,
// so a server that revokes at a steady rate has a file that stops growing.
// Each round denies 20 000 tokens (in bulk, as the benchmark seeds them,
// plus a few through DenyToken), then prunes them all.
func TestDenyListSpaceReused(t *testing.T) {
	s, path := openTemp(t)
	ctx := context.Background()
	until := time.Now().Add(time.Hour)
	size := func() int64 {
		t.Helper()
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		return fi.Size()
	}
	var sizes []int64
	for round := range 6 {
		seedDenyListUntil(t, s, 20_000, until, fmt.Sprintf("r%d", round))
		for i := range 5 {
			if err := s.DenyToken(ctx, fmt.Sprintf("r%d-api-%d", round, i), until); err != nil {
				t.Fatal(err)
			}
		}
		// The audit worker's round: bounded batches until one comes short.
		total := 0
		for {
			n, err := s.PruneDeniedTokens(ctx, until.Add(time.Hour))
			if err != nil {
				t.Fatal(err)
			}
			if n > store.MaxDenyPrune {
				t.Fatalf("one prune removed %d entries, more than MaxDenyPrune", n)
			}
			total += n
			if n < store.MaxDenyPrune {
				break
			}
		}
		if total != 20_005 {
			t.Fatalf("round %d: pruned %d entries, want 20005", round, total)
		}
		err := s.db.View(func(tx *bbolt.Tx) error {
			if d, x := tx.Bucket(bucketDeny).Stats().KeyN, tx.Bucket(bucketDenyExpiry).Stats().KeyN; d+x != 0 {
				return fmt.Errorf("%d deny entries and %d index entries left", d, x)
			}
			return nil
		})
		if err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		if denied, err := s.TokenDenied(ctx, fmt.Sprintf("r%d-api-0", round)); err != nil || denied {
			t.Fatalf("round %d: a pruned entry is still denied (%v, %v)", round, denied, err)
		}
		sizes = append(sizes, size())
	}
	// The first rounds may grow the file to its working size (bbolt frees
	// pages a transaction later); after that it must stay put.
	for r := 3; r < len(sizes); r++ {
		if sizes[r] > sizes[2] {
			t.Fatalf("file grew after its entries were pruned: sizes by round %v", sizes)
		}
	}
	t.Logf("file size by round: %v", sizes)
}
