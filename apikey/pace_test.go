package apikey

import (
	"context"
	"errors"
	"testing"
	"time"
)

// TestWalkPacer: a walk rests nine times as long as each stretch of
// walkPaceEvery keys took, only after a full stretch, and stops when its
// context ends while resting.
func TestWalkPacer(t *testing.T) {
	clock := time.Date(2026, 12, 5, 0, 0, 0, 0, time.UTC)
	var rests []time.Duration
	p := walkPacer{
		now: func() time.Time { return clock },
		rest: func(ctx context.Context, d time.Duration) error {
			rests = append(rests, d)
			clock = clock.Add(d)
			return ctx.Err()
		},
	}
	ctx := context.Background()
	for i := range 3*walkPaceEvery - 1 {
		if err := p.step(ctx); err != nil {
			t.Fatal(err)
		}
		// Each key takes a millisecond; the second stretch two.
		if i >= walkPaceEvery && i < 2*walkPaceEvery {
			clock = clock.Add(2 * time.Millisecond)
		} else {
			clock = clock.Add(time.Millisecond)
		}
	}
	want := []time.Duration{
		9 * (walkPaceEvery - 1) * time.Millisecond,   // the first key's time is not in its stretch yet
		9 * (2*walkPaceEvery - 1) * time.Millisecond, // one key at 1 ms after the rest, then 2 ms each
	}
	if len(rests) != 2 || rests[0] != want[0] || rests[1] != want[1] {
		t.Fatalf("rests %v, want %v (none for the unfinished third stretch)", rests, want)
	}
	// A small walk never rests.
	var small walkPacer
	small.rest = func(context.Context, time.Duration) error {
		t.Fatal("a walk shorter than a stretch rested")
		return nil
	}
	for range walkPaceEvery - 1 {
		small.step(ctx)
	}
	// An ended context stops the walk at its next rest.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	var q walkPacer
	for i := range walkPaceEvery {
		err := q.step(cctx)
		if i < walkPaceEvery-1 && err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
		if i == walkPaceEvery-1 && !errors.Is(err, context.Canceled) {
			t.Fatalf("rest with an ended context: %v, want context.Canceled", err)
		}
	}
}
