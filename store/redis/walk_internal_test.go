package redis

import (
	"context"
	"fmt"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	goredis "github.com/redis/go-redis/v9"

	"github.com/keygate/keygate/store"
	"github.com/keygate/keygate/store/storetest"
)

// scanCounter counts the SCAN commands a client sends.
type scanCounter struct{ n atomic.Int64 }

func (c *scanCounter) DialHook(next goredis.DialHook) goredis.DialHook { return next }
func (c *scanCounter) ProcessPipelineHook(next goredis.ProcessPipelineHook) goredis.ProcessPipelineHook {
	return next
}
func (c *scanCounter) ProcessHook(next goredis.ProcessHook) goredis.ProcessHook {
	return func(ctx context.Context, cmd goredis.Cmder) error {
		if strings.EqualFold(cmd.Name(), "scan") {
			c.n.Add(1)
		}
		return next(ctx, cmd)
	}
}

// TestForEachKeyStreams: the walk visits keys while the SCAN is still
// under way (the first visit comes after one SCAN page, not after all of
// them), so it never holds every ID at once; and it still visits each of
// several thousand keys exactly once.
func TestForEachKeyStreams(t *testing.T) {
	ctx := context.Background()
	s := newTestStore(t)
	keys := storetest.BulkKeys(t, 600, 5, 0) // 3000 keys: several SCAN pages of 500
	if err := s.CreateKeys(ctx, keys); err != nil {
		t.Fatal(err)
	}
	var scans scanCounter
	s.rdb.AddHook(&scans)
	visits := map[string]int{}
	var scansAtFirst int64
	if err := s.ForEachKey(ctx, func(k store.Key) error {
		if len(visits) == 0 {
			scansAtFirst = scans.n.Load()
		}
		visits[k.ClientID]++
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	total := scans.n.Load()
	if scansAtFirst != 1 || total < 3 {
		t.Errorf("first key visited after %d SCANs of %d; want after the first of several", scansAtFirst, total)
	}
	if len(visits) != len(keys) {
		t.Errorf("visited %d keys, want %d", len(visits), len(keys))
	}
	for _, k := range keys {
		if visits[k.ClientID] != 1 {
			t.Errorf("key %s visited %d times, want once", k.ClientID, visits[k.ClientID])
		}
	}
}

// TestForEachKeyReturnsFnError: fn's error comes back as it was, and
// stops the walk.
func TestForEachKeyReturnsFnError(t *testing.T) {
	ctx := context.Background()
	s := newTestStore(t)
	if err := s.CreateKeys(ctx, storetest.BulkKeys(t, 10, 5, 0)); err != nil {
		t.Fatal(err)
	}
	stop := &stopErr{}
	calls := 0
	err := s.ForEachKey(ctx, func(store.Key) error { calls++; return stop })
	if err != stop || calls != 1 {
		t.Errorf("ForEachKey = %v after %d calls; want fn's own error after 1", err, calls)
	}
}

type stopErr struct{}

func (*stopErr) Error() string { return "stop" }

// TestWalkSeen: each of more IDs than two merge runs is new once, and
// a repeat of any of them, merged or recent, is not.
func TestWalkSeen(t *testing.T) {
	w := newWalkSeen()
	n := 2*walkSeenRun + 5
	for i := range n {
		if !w.add(strconv.Itoa(i)) {
			t.Fatalf("first add(%d) = false", i)
		}
	}
	if len(w.old) != 2*walkSeenRun || len(w.recent) != 5 {
		t.Fatalf("merged %d, recent %d; want %d and 5", len(w.old), len(w.recent), 2*walkSeenRun)
	}
	if !slices.IsSortedFunc(w.old, compareHash) {
		t.Fatal("merged hashes are not sorted")
	}
	for i := range n {
		if w.add(strconv.Itoa(i)) {
			t.Fatalf("second add(%d) = true", i)
		}
	}
	if !w.add("") || w.add("") {
		t.Error("the empty ID is not reported exactly once")
	}
}

// BenchmarkWalkSeenBytesPerID: the heap a walk keeps per ID visited
// (docs/scale.md quotes it), at a million IDs.
func BenchmarkWalkSeenBytesPerID(b *testing.B) {
	const n = 1_000_000
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("kgc_AbCdEf%022d", i)
	}
	var before, after runtime.MemStats
	for b.Loop() {
		runtime.GC()
		runtime.ReadMemStats(&before)
		w := newWalkSeen()
		for _, id := range ids {
			w.add(id)
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/n, "B/id")
		runtime.KeepAlive(w)
	}
}
