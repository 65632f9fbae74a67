package bolt

import (
	"context"
	"testing"

	"github.com/keygate/keygate/store/storetest"
)

func TestBulkConformance(t *testing.T) {
	storetest.RunBulk(t, func(t *testing.T) storetest.BulkStore {
		s, _ := openTemp(t)
		return s
	})
}

// TestBulkDurableAfterReopen: CreateKeys returns only once its keys are on
// disk, so a reopened file has every one of them.
func TestBulkDurableAfterReopen(t *testing.T) {
	ctx := context.Background()
	s, path := openTemp(t)
	keys := storetest.BulkKeys(t, 500, 5, 10)
	first, err := s.NextStatusIndices(ctx, len(keys))
	if err != nil {
		t.Fatal(err)
	}
	for i := range keys {
		keys[i].StatusIndex = first + int64(i)
	}
	if err := s.CreateKeys(ctx, keys); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s2, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	for _, want := range keys {
		got, err := s2.GetKey(ctx, want.ClientID)
		if err != nil {
			t.Fatalf("after reopen, GetKey(%s): %v", want.ClientID, err)
		}
		if d := storetest.KeyDiff(want, got); len(d) > 0 {
			t.Fatalf("after reopen, key %s differs: %v", want.ClientID, d)
		}
	}
	sl, err := s2.StatusList(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if want := first + int64(len(keys)) - 1; sl.Allocated != want {
		t.Fatalf("after reopen, StatusList.Allocated = %d, want %d", sl.Allocated, want)
	}
}
