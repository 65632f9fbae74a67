package bolt

import (
	"context"
	"testing"
	"time"

	bbolt "go.etcd.io/bbolt"

	"github.com/keygate/keygate/store"
	"github.com/keygate/keygate/store/storetest"
)

// usageRecords counts the stored usage counters, pruned or not, for tests.
func (s *Store) usageRecords() (int, error) {
	n := 0
	err := s.db.View(func(tx *bbolt.Tx) error {
		root := tx.Bucket(bucketUsage)
		if root == nil {
			return nil
		}
		return root.ForEachBucket(func(name []byte) error {
			n += root.Bucket(name).Stats().KeyN
			return nil
		})
	})
	return n, err
}

// TestPruneUsageFreesStorage checks what the conformance suite cannot see:
// PruneUsage removes the counters from the file, not only from answers,
// and drops a team's bucket once it is empty.
func TestPruneUsageFreesStorage(t *testing.T) {
	s, _ := openTemp(t)
	ctx := context.Background()
	h := time.Date(2025, 3, 1, 10, 0, 0, 0, time.UTC)
	deltas := []store.UsageDelta{
		{TeamID: "a", ClientID: storetest.ID("a", "k1"), Hour: h, Tokens: 2},
		{TeamID: "b", ClientID: storetest.ID("b", "k1"), Hour: h.Add(5 * time.Hour), Failures: 1},
	}
	if err := s.AddUsage(ctx, h.Add(5*time.Hour), deltas); err != nil {
		t.Fatal(err)
	}
	count := func() int {
		t.Helper()
		n, err := s.usageRecords()
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	if n := count(); n != 4 { // two keys, an hourly and a daily counter each
		t.Fatalf("%d counters stored, want 4", n)
	}
	// Team a's hour has aged out, team b's not yet: one counter goes.
	if err := s.PruneUsage(ctx, h.Add(time.Hour+store.UsageHourRetention)); err != nil {
		t.Fatal(err)
	}
	if n := count(); n != 3 {
		t.Fatalf("after pruning a's hour: %d counters, want 3", n)
	}
	// Past every daily retention: nothing left, and no team bucket either.
	if err := s.PruneUsage(ctx, h.Add(48*time.Hour+store.UsageDayRetention)); err != nil {
		t.Fatal(err)
	}
	if n := count(); n != 0 {
		t.Fatalf("after the day retention: %d counters, want 0", n)
	}
	err := s.db.View(func(tx *bbolt.Tx) error {
		if k, _ := tx.Bucket(bucketUsage).Cursor().First(); k != nil {
			t.Errorf("team bucket %q left after its last counter went", k)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
