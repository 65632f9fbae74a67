package redis

import (
	"context"
	"testing"
	"time"

	"github.com/keygate/keygate/internal/redistest"
	"github.com/keygate/keygate/store/storetest"
)

// newTestStore is a store on the test Redis under a fresh prefix.
func newTestStore(t *testing.T) *Store {
	t.Helper()
	c := redistest.Require(t)
	s, err := New(c, redistest.Prefix(t, c, ""), 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestStatusLayout: the draft's 2-bit example, written with BITFIELD u2 at
// entryOffset straight into the entries string, reads back as its bytes —
// and the string itself holds them, so what Redis keeps is the draft's
// layout.
func TestStatusLayout(t *testing.T) {
	ctx := context.Background()
	s := newTestStore(t)
	storetest.StatusLayout(t, s, func(idx int64, v uint8) error { return s.pokeStatus(ctx, idx, v) })
	raw, err := s.rdb.Get(ctx, s.statusEntriesKey()).Bytes()
	if err != nil || string(raw) != "\xC9\x44\xF9" {
		t.Fatalf("stored entries % X (%v), want C9 44 F9", raw, err)
	}
}

// TestStatusBitmapKept: storetest.StatusBitmapKept on "status:bits",
// in SETBIT's order.
func TestStatusBitmapKept(t *testing.T) {
	ctx := context.Background()
	s := newTestStore(t)
	storetest.StatusBitmapKept(t, s,
		func(idx int64) (bool, error) {
			b, err := s.rdb.GetBit(ctx, s.statusBitsKey(), idx).Result()
			return b == 1, err
		},
		func(idx int64) error { return s.rdb.SetBit(ctx, s.statusBitsKey(), idx, 1).Err() })
}
