package bolt

import (
	"context"
	"testing"

	bbolt "go.etcd.io/bbolt"

	"github.com/keygate/keygate/store"
	"github.com/keygate/keygate/store/storetest"
)

// TestStatusLayout: the draft's 2-bit example, written straight into the
// status bucket's 2-bit array, reads back as its bytes.
func TestStatusLayout(t *testing.T) {
	s, _ := openTemp(t)
	storetest.StatusLayout(t, s, s.pokeStatus)
}

// TestStatusBitmapKept: a revocation still sets the 1-bit bitmap a keygate
// of the release before reads, and an index revoked only there (a file
// such a keygate wrote) reads INVALID and stays so.
func TestStatusBitmapKept(t *testing.T) {
	ctx := context.Background()
	s, _ := openTemp(t)
	if err := s.RevokeStatus(ctx, 10); err != nil {
		t.Fatal(err)
	}
	if err := s.db.Update(func(tx *bbolt.Tx) error {
		b := tx.Bucket(bucketStatus)
		bits := grown(b.Get(statusBitsKey), 3)
		if bits[1] != 1<<2 {
			t.Errorf("bitmap after RevokeStatus(10): % 08b, want bit 10 set", bits)
		}
		bits[2] |= 1 << 5 // index 21, revoked the old way only
		return b.Put(statusBitsKey, bits)
	}); err != nil {
		t.Fatal(err)
	}
	if err := s.SetStatus(ctx, 21, store.StatusSuspended); err != nil {
		t.Fatal(err)
	}
	l, err := s.StatusList(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for idx, want := range map[int64]store.Status{10: store.StatusInvalid, 21: store.StatusInvalid, 20: store.StatusValid, 22: store.StatusValid} {
		if got := l.Entry(idx); got != want {
			t.Errorf("index %d: %d, want %d", idx, got, want)
		}
	}
}
