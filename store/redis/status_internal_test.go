package redis

import (
	"context"
	"testing"
	"time"

	"github.com/keygate/keygate/internal/redistest"
	"github.com/keygate/keygate/store"
	"github.com/keygate/keygate/store/storetest"
)

func newStatusStore(t *testing.T) *Store {
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
	s := newStatusStore(t)
	storetest.StatusLayout(t, s, func(idx int64, v uint8) error { return s.pokeStatus(ctx, idx, v) })
	raw, err := s.rdb.Get(ctx, s.statusEntriesKey()).Bytes()
	if err != nil || string(raw) != "\xC9\x44\xF9" {
		t.Fatalf("stored entries % X (%v), want C9 44 F9", raw, err)
	}
}

// TestStatusBitmapKept: a revocation still sets the bitmap a keygate of the
// release before reads (SETBIT's order), and an index revoked only there
// reads INVALID and stays so.
func TestStatusBitmapKept(t *testing.T) {
	ctx := context.Background()
	s := newStatusStore(t)
	if err := s.RevokeStatus(ctx, 10); err != nil {
		t.Fatal(err)
	}
	if bit, err := s.rdb.GetBit(ctx, s.statusBitsKey(), 10).Result(); err != nil || bit != 1 {
		t.Fatalf("bitmap bit 10 after RevokeStatus(10): %d, %v", bit, err)
	}
	if err := s.rdb.SetBit(ctx, s.statusBitsKey(), 21, 1).Err(); err != nil { // the old way only
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
