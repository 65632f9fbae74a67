package lastused_test

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keygate/keygate/lastused"
	"github.com/keygate/keygate/store"
)

// settle runs one flush at at and returns once it has completed entirely,
// pruning included: the loop takes a second tick only once the first flush
// returned. (tick alone suffices for usage, which a flush writes before its
// TouchKeys barrier.) The second flush, at the same time, runs on while the
// test goes on.
func (h *harness) settle(at time.Time) {
	h.t.Helper()
	h.tick(at)
	h.ticks <- at
}

// usageSums adds up every successful AddUsage batch per key and hour.
type usageSum struct {
	team             string
	tokens, failures int64
}

func (s *fakeStore) usageSums() (map[string]usageSum, int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string]usageSum{}
	for _, b := range s.usage {
		for _, d := range b {
			k := d.ClientID + "@" + d.Hour.UTC().Format("15h")
			u := out[k]
			u.team = d.TeamID
			u.tokens += d.Tokens
			u.failures += d.Failures
			out[k] = u
		}
	}
	return out, len(s.usage)
}

func TestUsageCountedAndWrittenInOneBatch(t *testing.T) {
	h := start(t, lastused.Options{})
	for range 3 {
		h.tr.Record("a", "team-1", time.Time{}, t0)
	}
	h.tr.Record("b", "team-2", t0.Add(-time.Hour), t0)
	h.tr.RecordFailure("a", "team-1", time.Time{}, t0)
	h.tr.RecordFailure("a", "team-1", time.Time{}, t0)
	h.tr.RecordFailure("c", "team-1", time.Time{}, t0) // a key that only fails
	h.tr.Record("admin", "", time.Time{}, t0)          // admin keys: no usage
	h.tr.RecordFailure("admin", "", time.Time{}, t0)
	h.tick(t0.Add(time.Second))

	sums, batches := h.st.usageSums()
	want := map[string]usageSum{
		"a@12h": {"team-1", 3, 2},
		"b@12h": {"team-2", 1, 0},
		"c@12h": {"team-1", 0, 1},
	}
	if batches != 1 || fmt.Sprint(sums) != fmt.Sprint(want) {
		t.Fatalf("usage written in %d batches: %v, want one batch %v", batches, sums, want)
	}
	// A failure changes no last-used time: "c" is not in any TouchKeys batch.
	for _, b := range h.st.takeOK() {
		if _, ok := b["c"]; ok {
			t.Fatalf("a failed authentication touched last_used_at: %s", fmtBatches([]batch{b}))
		}
	}
	// Nothing new: no further AddUsage call.
	h.tick(t0.Add(2 * time.Second))
	if _, n := h.st.usageSums(); n != 1 {
		t.Fatalf("%d AddUsage batches after an idle flush, want still 1", n)
	}
}

// TestUsageHourIsTheFlushHour: counts belong to the hour of the flush that
// collects them, at most one tick after the use.
func TestUsageHourIsTheFlushHour(t *testing.T) {
	h := start(t, lastused.Options{})
	h.tr.Record("a", "team-1", time.Time{}, t0.Add(-time.Second))
	h.tick(t0.Add(-100 * time.Millisecond)) // 11:59:59.9
	h.tr.Record("a", "team-1", time.Time{}, t0.Add(-50*time.Millisecond))
	h.tick(t0.Add(150 * time.Millisecond)) // 12:00:00.15
	sums, _ := h.st.usageSums()
	want := map[string]usageSum{"a@11h": {"team-1", 1, 0}, "a@12h": {"team-1", 1, 0}}
	if fmt.Sprint(sums) != fmt.Sprint(want) {
		t.Fatalf("usage %v, want %v", sums, want)
	}
}

// TestUsageFailedWriteRetriedWithItsHour: counts the store refused stay
// pending, keep the hour they were collected in, and are written with the
// next successful flush.
func TestUsageFailedWriteRetriedWithItsHour(t *testing.T) {
	h := start(t, lastused.Options{})
	h.st.mu.Lock()
	h.st.usageErr = errors.New("store down")
	h.st.mu.Unlock()
	h.tr.Record("a", "team-1", time.Time{}, t0)
	h.tick(t0.Add(time.Second))
	h.tick(t0.Add(time.Hour + time.Second)) // still down, an hour later
	h.st.mu.Lock()
	h.st.usageErr = nil
	calls := h.st.usageCalls
	h.st.mu.Unlock()
	if calls != 2 {
		t.Fatalf("%d AddUsage calls while down, want 2 (one per flush with counts)", calls)
	}
	h.tr.Record("a", "team-1", time.Time{}, t0.Add(2*time.Hour))
	h.tick(t0.Add(2*time.Hour + time.Second))
	sums, batches := h.st.usageSums()
	want := map[string]usageSum{"a@12h": {"team-1", 1, 0}, "a@14h": {"team-1", 1, 0}}
	if batches != 1 || fmt.Sprint(sums) != fmt.Sprint(want) {
		t.Fatalf("after recovery: %d batches %v, want one batch %v", batches, sums, want)
	}
}

// TestUsageConcurrentExact: many goroutines counting tokens and failures
// while flushes run and drop idle entries (every tick is more than Idle
// after the uses it sees) lose and double nothing. Run with -race.
func TestUsageConcurrentExact(t *testing.T) {
	h := start(t, lastused.Options{})
	const goroutines, perG = 8, 2000
	keys := []string{"k0", "k1", "k2"}
	var wg sync.WaitGroup
	begin := make(chan struct{})
	for g := range goroutines {
		wg.Go(func() {
			<-begin
			for i := range perG {
				id := keys[(g+i)%len(keys)]
				if i%4 == 0 {
					h.tr.RecordFailure(id, "team-1", time.Time{}, t0)
				} else {
					h.tr.Record(id, "team-1", time.Time{}, t0)
				}
			}
		})
	}
	close(begin)
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	at := t0
	ticks := 0
loop:
	for {
		select {
		case <-done:
			break loop
		default:
		}
		at = at.Add(3 * time.Minute) // > Idle: idle entries are dropped
		h.ticks <- at
		ticks++
	}
	h.tr.Close()
	sums, _ := h.st.usageSums()
	var tokens, failures int64
	for _, s := range sums {
		tokens += s.tokens
		failures += s.failures
	}
	const total = goroutines * perG
	if tokens != total*3/4 || failures != total/4 {
		t.Fatalf("after %d concurrent flushes: %d tokens, %d failures; want %d and %d", ticks, tokens, failures, total*3/4, total/4)
	}
}

func TestUsagePrunedOncePerHour(t *testing.T) {
	h := start(t, lastused.Options{})
	for _, at := range []time.Duration{0, 10 * time.Minute, 59 * time.Minute, 61 * time.Minute, 62 * time.Minute} {
		h.settle(t0.Add(at))
	}
	h.st.mu.Lock()
	prunes := h.st.prunes
	h.st.mu.Unlock()
	want := []time.Time{t0, t0.Add(61 * time.Minute)}
	if fmt.Sprint(prunes) != fmt.Sprint(want) {
		t.Fatalf("pruned at %v, want %v", prunes, want)
	}
}

func TestRecordWithUsageDoesNotAllocate(t *testing.T) {
	h := start(t, lastused.Options{})
	h.tr.Record("a", "team-1", time.Time{}, t0)
	at := t0
	allocs := testing.AllocsPerRun(1000, func() {
		at = at.Add(time.Nanosecond)
		h.tr.Record("a", "team-1", time.Time{}, at)
		h.tr.RecordFailure("a", "team-1", time.Time{}, at)
	})
	if allocs != 0 {
		t.Errorf("Record and RecordFailure of an existing entry: %v allocs, want 0", allocs)
	}
}

var _ lastused.Store = store.Store(nil)

// TestUnknownFailureCountsNowhere: RecordUnknownFailure does
// RecordFailure's work (issue #14 item 8: equal cost for unknown client
// IDs) and has none of its effects: no usage, no last-used write, no entry
// (so guessing IDs cannot grow the tracker) — and a real key's counts are
// untouched by it, even one of the same ID.
func TestUnknownFailureCountsNowhere(t *testing.T) {
	h := start(t, lastused.Options{})
	h.tr.RecordFailure("known", "team-1", time.Time{}, t0)
	for i := range 1000 {
		h.tr.RecordUnknownFailure(fmt.Sprintf("guess-%d", i), t0)
	}
	h.tr.RecordUnknownFailure("known", t0)
	if n := h.tr.Len(); n != 1 {
		t.Fatalf("the tracker holds %d entries after 1000 unknown IDs failed, want 1 (the known key)", n)
	}
	h.tick(t0.Add(time.Second))
	sums, _ := h.st.usageSums()
	want := map[string]usageSum{"known@12h": {"team-1", 0, 1}}
	if fmt.Sprint(sums) != fmt.Sprint(want) {
		t.Fatalf("usage %v, want only the known key's one failure %v", sums, want)
	}
	for _, b := range h.st.takeOK() {
		for id := range b {
			if !strings.HasPrefix(id, barrierPrefix) {
				t.Fatalf("a failed authentication touched last_used_at: %s", fmtBatches([]batch{b}))
			}
		}
	}
}

// TestUsageWriteRate: past the bound, the counts collected longest ago are
// written first, later counts of a waiting key join it (no extra delta),
// the hour each was collected in is kept, and Close writes the rest.
func TestUsageWriteRate(t *testing.T) {
	const rate = 2
	next := t0.Add(time.Hour)
	h := start(t, lastused.Options{WriteRate: rate, Now: func() time.Time { return next.Add(time.Second) }})
	for _, id := range []string{"a", "b", "c", "d"} {
		h.tr.Record(id, "team-1", time.Time{}, t0)
	}
	h.tick(t0) // the budget starts full: two deltas
	h.st.mu.Lock()
	first := h.st.usage
	h.st.mu.Unlock()
	if len(first) != 1 || len(first[0]) != rate {
		t.Fatalf("first flush wrote %v, want one batch of %d deltas", first, rate)
	}
	written := map[string]bool{}
	for _, d := range first[0] {
		written[d.ClientID] = true
	}
	var waiting []string
	for _, id := range []string{"a", "b", "c", "d"} {
		if !written[id] {
			waiting = append(waiting, id)
		}
	}
	// Two more tokens of a waiting key, in the next hour: they count in
	// that hour, in a delta of their own that waits behind the others.
	h.tr.Record(waiting[0], "team-1", time.Time{}, next)
	h.tr.Record(waiting[0], "team-1", time.Time{}, next)
	h.tick(next) // an hour of budget, one second's worth kept: two deltas
	sums, batches := h.st.usageSums()
	if batches != 2 {
		t.Fatalf("%d AddUsage batches, want 2", batches)
	}
	for _, id := range waiting {
		if sums[id+"@12h"].tokens != 1 {
			t.Fatalf("after the second flush %s@12h = %+v, want its one token: %v", id, sums[id+"@12h"], sums)
		}
	}
	if _, ok := sums[waiting[0]+"@13h"]; ok {
		t.Fatalf("the newest counts were written before older ones: %v", sums)
	}
	h.tr.Close()
	sums, _ = h.st.usageSums()
	want := map[string]usageSum{
		"a@12h": {"team-1", 1, 0}, "b@12h": {"team-1", 1, 0}, "c@12h": {"team-1", 1, 0}, "d@12h": {"team-1", 1, 0},
		waiting[0] + "@13h": {"team-1", 2, 0},
	}
	if fmt.Sprint(sums) != fmt.Sprint(want) {
		t.Fatalf("after Close usage %v, want %v", sums, want)
	}
}

// TestUsageWaitingCountsAddUpAfterTheQueueIsCut: counts collected for a
// key whose earlier counts still wait add to them, in one delta, also
// after the queue's written front was cut away (the waiting ones moved).
func TestUsageWaitingCountsAddUpAfterTheQueueIsCut(t *testing.T) {
	const rate = 3
	h := start(t, lastused.Options{WriteRate: rate, Now: func() time.Time { return t0 }})
	ids := []string{"a", "b", "c", "d", "e"}
	for _, id := range ids {
		h.tr.Record(id, "team-1", time.Time{}, t0)
	}
	h.tick(t0) // three written, two wait: the written front (3 of 5) is cut
	sums, _ := h.st.usageSums()
	var waiting []string
	for _, id := range ids {
		if _, ok := sums[id+"@12h"]; !ok {
			waiting = append(waiting, id)
		}
	}
	if len(waiting) != len(ids)-rate {
		t.Fatalf("after the first flush %v written, want %d", sums, rate)
	}
	// Two more tokens of the last waiting key, the budget spent: collected
	// into its waiting delta.
	h.tr.Record(waiting[1], "team-1", time.Time{}, t0)
	h.tr.Record(waiting[1], "team-1", time.Time{}, t0)
	h.tick(t0)
	h.tr.Close()
	h.st.mu.Lock()
	last := h.st.usage[len(h.st.usage)-1]
	h.st.mu.Unlock()
	got := map[string]int64{}
	for _, d := range last {
		if _, dup := got[d.ClientID]; dup {
			t.Fatalf("%s written twice in one batch: %v", d.ClientID, last)
		}
		got[d.ClientID] = d.Tokens
	}
	want := map[string]int64{waiting[0]: 1, waiting[1]: 3}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("last batch %v, want %v", got, want)
	}
}

// TestParkedSlotsNotRescanned: keys dropped as idle while their usage
// waits behind the write budget are not looked at again by every flush
// until it is written (a million of them cost 3 % of serve's CPU at
// 10 000 000 keys), and are freed once it is: their slots go to other keys
// and every key's counts are its own.
func TestParkedSlotsNotRescanned(t *testing.T) {
	const rate, keys = 10, 200
	h := start(t, lastused.Options{WriteRate: rate, Now: func() time.Time { return t0 }})
	for k := range keys {
		h.tr.Record(fmt.Sprintf("old%03d", k), "team-1", time.Time{}, t0)
	}
	h.tick(t0)
	// Idle past Idle: the sweep drops every key, rate deltas a flush are
	// written, the rest of the usage waits.
	at := t0.Add(lastused.SweepEvery + lastused.Idle)
	h.tick(at)
	h.tick(at.Add(time.Second)) // frees or parks the slots the sweep dropped
	// tick returns once its flush has called the store, and a flush frees
	// slots after that: the next tick's call says this one has ended.
	h.tick(at.Add(2 * time.Second))
	before := h.tr.ReleaseChecks()
	const flushes = 5
	for i := range flushes {
		h.tick(at.Add(time.Duration(3+i) * time.Second))
	}
	// Each flush looks at the slots whose usage the flush before wrote
	// (rate of them), not at the ~170 that still wait; the window holds
	// parts of flushes+1 of them.
	if got, most := h.tr.ReleaseChecks()-before, int64((flushes+1)*rate); got > most {
		t.Fatalf("%d flushes looked at %d dropped slots, want at most %d: parked slots are rescanned", flushes, got, most)
	}
	// Until the usage is all written, one flush more to free the last
	// slots, and one more for that one to have ended.
	for i := range keys/rate + 2 {
		h.tick(at.Add(time.Duration(10+i) * time.Second))
	}
	sums, _ := h.st.usageSums()
	for k := range keys {
		if u := sums[fmt.Sprintf("old%03d@12h", k)]; u.tokens != 1 {
			t.Fatalf("old%03d: %+v, want one token", k, u)
		}
	}
	if slots, inUse, free := h.tr.Slots(), h.tr.Len(), h.tr.FreeSlots(); slots != inUse+free {
		t.Fatalf("%d slots, %d in use and %d free once the usage of the dropped keys is written: %d never freed", slots, inUse, free, slots-inUse-free)
	}
	at = at.Add(time.Minute)
	for k := range keys {
		h.tr.Record(fmt.Sprintf("new%03d", k), "team-2", time.Time{}, at)
	}
	h.tick(at)
	h.tr.Close()
	sums, _ = h.st.usageSums()
	for k := range keys {
		if u := sums[fmt.Sprintf("new%03d@12h", k)]; u.tokens != 1 || u.team != "team-2" {
			t.Fatalf("new%03d: %+v, want one token of team-2", k, u)
		}
	}
}

// TestUsageOfAWrittenKeyCountsAgain: a key whose counts of this hour were
// just written, and are still at the queue's front (not cut away yet),
// counts its next uses of the same hour anew: none is added to what was
// already written and lost.
func TestUsageOfAWrittenKeyCountsAgain(t *testing.T) {
	const rate = 2
	h := start(t, lastused.Options{WriteRate: rate, Now: func() time.Time { return t0 }})
	ids := []string{"a", "b", "c", "d", "e", "f"}
	for _, id := range ids {
		h.tr.Record(id, "team-1", time.Time{}, t0)
	}
	h.tick(t0) // two of six written: the written front is a third, not cut
	sums, _ := h.st.usageSums()
	var written []string
	for _, id := range ids {
		if _, ok := sums[id+"@12h"]; ok {
			written = append(written, id)
		}
	}
	if len(written) != rate {
		t.Fatalf("after the first flush %v written, want %d keys", sums, rate)
	}
	for _, id := range written {
		for range 3 {
			h.tr.Record(id, "team-1", time.Time{}, t0)
		}
	}
	h.tick(t0)
	h.tr.Close()
	sums, _ = h.st.usageSums()
	for _, id := range ids {
		want := int64(1)
		if id == written[0] || id == written[1] {
			want = 4
		}
		if got := sums[id+"@12h"].tokens; got != want {
			t.Fatalf("%s: %d tokens written in all, want %d: %v", id, got, want, sums)
		}
	}
}
