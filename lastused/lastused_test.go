package lastused_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
	"unsafe"

	"github.com/keygate/keygate/lastused"
	"github.com/keygate/keygate/store"
)

var t0 = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

type batch = map[string]time.Time

// barrierPrefix marks the keys the harness records to learn that a flush
// reached the store; they are left out of the recorded batches.
const barrierPrefix = "\x00barrier-"

// fakeStore records every TouchKeys batch, successful or not.
type fakeStore struct {
	mu        sync.Mutex
	err       error // returned by TouchKeys while set
	ok        []batch
	failed    []batch
	deadlines []time.Duration          // time left on each call's context
	waits     map[string]chan struct{} // barrier key → closed when seen
	gate      chan struct{}            // when set, TouchKeys waits for it
	entered   chan struct{}            // when set, signalled as TouchKeys waits on gate

	usageErr   error                // returned by AddUsage while set
	usage      [][]store.UsageDelta // successful AddUsage batches
	usageCalls int
	prunes     []time.Time // PruneUsage calls that succeeded
}

func (s *fakeStore) AddUsage(ctx context.Context, now time.Time, deltas []store.UsageDelta) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.usageCalls++
	if s.usageErr != nil {
		return s.usageErr
	}
	s.usage = append(s.usage, slices.Clone(deltas))
	return nil
}

func (s *fakeStore) PruneUsage(ctx context.Context, now time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.prunes = append(s.prunes, now)
	return nil
}

func (s *fakeStore) TouchKeys(ctx context.Context, lastUsed map[string]time.Time) error {
	s.mu.Lock()
	gate, entered := s.gate, s.entered
	s.mu.Unlock()
	if gate != nil {
		entered <- struct{}{}
		<-gate
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	left := time.Duration(-1)
	if d, ok := ctx.Deadline(); ok {
		left = time.Until(d)
	}
	s.deadlines = append(s.deadlines, left)
	// Copied so the record cannot change should the tracker reuse the map.
	b := maps.Clone(lastUsed)
	for id := range b {
		if strings.HasPrefix(id, barrierPrefix) {
			delete(b, id)
			if ch, ok := s.waits[id]; ok {
				close(ch)
				delete(s.waits, id)
			}
		}
	}
	switch {
	case s.err != nil:
		if len(b) > 0 {
			s.failed = append(s.failed, b)
		}
		return s.err
	case len(b) > 0:
		s.ok = append(s.ok, b)
	}
	return nil
}

func (s *fakeStore) setErr(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.err = err
}

func (s *fakeStore) wait(barrier string) <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.waits == nil {
		s.waits = map[string]chan struct{}{}
	}
	ch := make(chan struct{})
	s.waits[barrier] = ch
	return ch
}

// takeOK returns the successful batches since the last call.
func (s *fakeStore) takeOK() []batch {
	s.mu.Lock()
	defer s.mu.Unlock()
	b := s.ok
	s.ok = nil
	return b
}

func (s *fakeStore) takeFailed() []batch {
	s.mu.Lock()
	defer s.mu.Unlock()
	b := s.failed
	s.failed = nil
	return b
}

type harness struct {
	t        *testing.T
	st       *fakeStore
	ticks    chan time.Time
	tr       *lastused.Tracker
	barriers int
}

func start(t *testing.T, opts lastused.Options) *harness {
	t.Helper()
	h := &harness{t: t, st: &fakeStore{}, ticks: make(chan time.Time)}
	opts.Ticks = h.ticks
	h.tr = lastused.New(h.st, opts)
	t.Cleanup(h.tr.Close)
	return h
}

// tick runs one flush at the given time and returns once that flush has
// called the store. A send on Ticks returns when the loop takes the tick, so
// on its own it says nothing of the flush; and a second send would start a
// second flush racing with whatever the test does next. Instead a fresh,
// never-used barrier key makes every flush call TouchKeys, which the store
// reports. What the flush still does after TouchKeys returns (marking its
// batch written, or logging the failure) touches no state a later Record
// reads, and it completes before the loop takes the next tick.
func (h *harness) tick(at time.Time) {
	h.t.Helper()
	h.barriers++
	barrier := fmt.Sprintf("%s%d", barrierPrefix, h.barriers)
	seen := h.st.wait(barrier)
	h.tr.Record(barrier, "", time.Time{}, at)
	h.ticks <- at
	<-seen
}

// expect asserts the exact successful batches written since the last check.
func (h *harness) expect(when string, want ...batch) {
	h.t.Helper()
	got := h.st.takeOK()
	if !sameBatches(got, want) {
		h.t.Fatalf("%s: batches written\n got  %s\n want %s", when, fmtBatches(got), fmtBatches(want))
	}
}

func sameBatches(got, want []batch) bool {
	if len(got) != len(want) {
		return false
	}
	for i := range got {
		if len(got[i]) != len(want[i]) {
			return false
		}
		for id, w := range want[i] {
			if g, ok := got[i][id]; !ok || !g.Equal(w) {
				return false
			}
		}
	}
	return true
}

func fmtBatches(bs []batch) string {
	if len(bs) == 0 {
		return "(none)"
	}
	var parts []string
	for _, b := range bs {
		var kv []string
		for _, id := range slices.Sorted(maps.Keys(b)) {
			kv = append(kv, fmt.Sprintf("%s:t0%+v", id, b[id].Sub(t0)))
		}
		parts = append(parts, "{"+strings.Join(kv, " ")+"}")
	}
	return strings.Join(parts, " ")
}

func TestFirstUseWrittenAtNextTick(t *testing.T) {
	h := start(t, lastused.Options{})
	h.tick(t0)
	h.expect("tick before any use")

	h.tr.Record("key-new", "", time.Time{}, t0.Add(time.Second))
	h.tick(t0.Add(time.Second + time.Nanosecond))
	h.expect("first tick after the first use", batch{"key-new": t0.Add(time.Second)})
}

func TestCoalescing(t *testing.T) {
	t.Run("after a write", func(t *testing.T) {
		h := start(t, lastused.Options{})
		h.tr.Record("k", "", time.Time{}, t0)
		wroteAt := t0.Add(lastused.Tick)
		h.tick(wroteAt)
		h.expect("first use", batch{"k": t0})

		h.tr.Record("k", "", time.Time{}, t0.Add(10*time.Second))
		h.tick(t0.Add(10*time.Second + lastused.Tick))
		h.expect("use 10s after the write")

		h.tr.Record("k", "", time.Time{}, t0.Add(30*time.Second))
		h.tr.Record("k", "", time.Time{}, t0.Add(40*time.Second))
		h.tick(wroteAt.Add(lastused.Coalesce - time.Nanosecond))
		h.expect("just before the window ends")

		h.tick(wroteAt.Add(lastused.Coalesce))
		h.expect("window ends", batch{"k": t0.Add(40 * time.Second)})

		// The next window runs from that write.
		wroteAt = wroteAt.Add(lastused.Coalesce)
		h.tr.Record("k", "", time.Time{}, wroteAt.Add(time.Second))
		h.tick(wroteAt.Add(lastused.Tick))
		h.tick(wroteAt.Add(lastused.Coalesce - time.Nanosecond))
		h.expect("inside the second window")
		h.tick(wroteAt.Add(lastused.Coalesce))
		h.expect("second window ends", batch{"k": wroteAt.Add(time.Second)})

		h.tick(wroteAt.Add(3 * lastused.Coalesce / 2))
		h.expect("nothing new used")
	})

	t.Run("stored value opens the window", func(t *testing.T) {
		h := start(t, lastused.Options{})
		stored := t0.Add(-20 * time.Second)
		h.tr.Record("recent", "", stored, t0)
		h.tr.Record("old", "", t0.Add(-lastused.Coalesce), t0)
		h.tick(t0.Add(lastused.Tick))
		h.expect("next tick: only the key stored a window ago", batch{"old": t0})

		h.tick(stored.Add(lastused.Coalesce - time.Nanosecond))
		h.expect("just before the stored value's window ends")
		h.tick(stored.Add(lastused.Coalesce))
		h.expect("stored value's window ends", batch{"recent": t0})
	})
}

// TestWriteRate: past the bound, writes of keys used before wait for
// budget, the longest-waiting first; nothing is lost, first uses never
// wait, and Close writes whatever still waits.
func TestWriteRate(t *testing.T) {
	const rate = 2 // keys a second: half a write per tick
	h := start(t, lastused.Options{WriteRate: rate})
	// Five keys last stored a minute or more ago, so each use is due at
	// once; the oldest stored fell due first.
	use := t0
	for i := range 5 {
		stored := t0.Add(-lastused.Coalesce - time.Duration(i)*time.Minute)
		h.tr.Record(fmt.Sprintf("k%d", i), "", stored, use)
	}
	h.tick(t0)
	// The budget starts full (one second's worth): two of the five. Which
	// two the dirty list brings first is not specified; the rest wait.
	first := h.st.takeOK()
	if len(first) != 1 || len(first[0]) != rate {
		t.Fatalf("first tick wrote %s, want one batch of %d keys", fmtBatches(first), rate)
	}
	written := map[string]bool{}
	for id := range first[0] {
		written[id] = true
	}
	// A first use is written at the next tick whatever the budget.
	h.tr.Record("fresh", "", time.Time{}, t0.Add(time.Millisecond))
	h.tick(t0.Add(lastused.Tick))
	h.expect("budget spent: only the first use", batch{"fresh": t0.Add(time.Millisecond)})

	// Half a second later one write's worth has come back: the waiting
	// key that fell due first goes (k4's stored value is the oldest).
	var waiting []string
	for i := 4; i >= 0; i-- {
		if id := fmt.Sprintf("k%d", i); !written[id] {
			waiting = append(waiting, id)
		}
	}
	h.tick(t0.Add(2 * lastused.Tick))
	h.expect("one write of budget back", batch{waiting[0]: use})
	h.tick(t0.Add(3 * lastused.Tick))
	h.expect("half a write of budget")
	h.tick(t0.Add(4 * lastused.Tick))
	h.expect("a second write of budget", batch{waiting[1]: use})

	// Close writes what still waits, whatever the budget.
	h.tr.Close()
	h.expect("Close", batch{waiting[2]: use})
}

// TestWriteRateUnbounded: a negative WriteRate writes every due key at once.
func TestWriteRateUnbounded(t *testing.T) {
	h := start(t, lastused.Options{WriteRate: -1})
	want := batch{}
	for i := range 5000 {
		id := fmt.Sprintf("k%d", i)
		h.tr.Record(id, "", t0.Add(-lastused.Coalesce), t0)
		want[id] = t0
	}
	h.tick(t0)
	h.expect("every due key", want)
}

func TestIdleDrop(t *testing.T) {
	h := start(t, lastused.Options{})
	h.tr.Record("k", "", time.Time{}, t0)
	h.tick(t0) // the first flush sweeps, and so does each one SweepEvery later
	h.expect("first use", batch{"k": t0})

	// Idle for exactly Idle: kept. Proof: a use carrying a recent stored
	// value lands in the existing entry, whose window (from the write above)
	// is long over, so it is written at the next tick. A re-created entry
	// would take its window from that stored value and wait.
	h.tick(t0.Add(lastused.Idle))
	use := t0.Add(lastused.Idle)
	h.tr.Record("k", "", use, use)
	h.tick(use.Add(lastused.Tick))
	h.expect("entry idle exactly Idle is kept", batch{"k": use})

	// Idle for longer than Idle: dropped, and the next use re-creates the
	// entry from the stored value passed with it.
	h.tick(use.Add(lastused.Idle + time.Nanosecond))
	h.expect("dropping writes nothing")
	stored := use.Add(lastused.Idle)
	use2 := stored.Add(time.Second)
	h.tr.Record("k", "", stored, use2)
	h.tick(use2.Add(lastused.Tick))
	h.expect("re-created entry is in the stored value's window")
	h.tick(stored.Add(lastused.Coalesce))
	h.expect("stored value's window ends", batch{"k": use2})

	// A re-created entry whose stored value is out of its window, or which
	// was never stored, is written at the next tick.
	h.tr.Record("other", "", time.Time{}, use2)
	h.tick(use2.Add(lastused.Tick))
	h.expect("other first use", batch{"other": use2})
	h.tick(use2.Add(lastused.Idle + lastused.Tick))
	use3 := use2.Add(lastused.Idle + time.Second)
	h.tr.Record("other", "", use2, use3)
	h.tick(use3.Add(lastused.Tick))
	h.expect("other re-created", batch{"other": use3})
}

func TestFailedTouchKeepsPending(t *testing.T) {
	var logs bytes.Buffer
	h := start(t, lastused.Options{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	h.st.setErr(errors.New("store down"))

	h.tr.Record("client-alpha", "", time.Time{}, t0)
	h.tr.Record("client-beta", "", t0.Add(-2*lastused.Coalesce), t0)
	h.tick(t0.Add(lastused.Tick))
	h.expect("store failing")
	failed := h.st.takeFailed()
	if len(failed) == 0 {
		t.Fatal("no TouchKeys attempt while the store was failing")
	}
	for _, b := range failed {
		if !sameBatches([]batch{b}, []batch{{"client-alpha": t0, "client-beta": t0}}) {
			t.Fatalf("failed attempt %s, want both keys", fmtBatches([]batch{b}))
		}
	}

	// Still failing long after: pending entries are never dropped as idle.
	h.tick(t0.Add(lastused.Idle + time.Second))
	h.expect("store still failing")
	h.tr.Record("client-alpha", "", time.Time{}, t0.Add(5*time.Second))

	h.st.setErr(nil)
	recovered := t0.Add(lastused.Idle + 2*time.Second)
	h.tick(recovered)
	h.expect("store recovered", batch{"client-alpha": t0.Add(5 * time.Second), "client-beta": t0})

	// The window runs from the successful write, not the failed attempts.
	h.tr.Record("client-alpha", "", time.Time{}, recovered.Add(time.Second))
	h.tick(recovered.Add(lastused.Tick))
	h.expect("inside the window of the successful write")

	h.tr.Close() // the log is written by the loop; read it once that has stopped
	out := logs.String()
	// Both keys and the first tick's barrier key.
	if !strings.Contains(out, "level=WARN") || !strings.Contains(out, "keys=3 ") || !strings.Contains(out, "store down") {
		t.Errorf("log lacks a warning with the count and the error:\n%s", out)
	}
	if strings.Contains(out, "client-") {
		t.Errorf("log names a key:\n%s", out)
	}
}

func TestCloseWritesPending(t *testing.T) {
	closeAt := t0.Add(10 * time.Second)
	var clockReads int
	h := start(t, lastused.Options{Now: func() time.Time { clockReads++; return closeAt }})
	h.tr.Record("a", "", time.Time{}, t0)
	h.tick(t0.Add(lastused.Tick))
	h.expect("first use", batch{"a": t0})

	h.tr.Record("a", "", time.Time{}, t0.Add(5*time.Second))           // in the window of the write above
	h.tr.Record("b", "", t0.Add(-time.Second), t0.Add(6*time.Second))  // in the window of its stored value
	h.tr.Record("c", "", time.Time{}, t0.Add(7*time.Second))           // never used, not yet ticked
	h.tr.Record("d", "", t0.Add(-time.Second), t0.Add(-2*time.Second)) // nothing newer than stored
	h.tick(t0.Add(8 * time.Second))
	h.expect("before close", batch{"c": t0.Add(7 * time.Second)})

	h.tr.Record("c", "", time.Time{}, t0.Add(9*time.Second))
	h.tr.Close()
	h.expect("close", batch{"a": t0.Add(5 * time.Second), "b": t0.Add(6 * time.Second), "c": t0.Add(9 * time.Second)})
	if clockReads != 1 {
		t.Errorf("Close read the injected clock %d times, want 1", clockReads)
	}

	select {
	case h.ticks <- closeAt:
		t.Fatal("the loop still takes ticks after Close")
	default:
	}

	h.tr.Close()
	h.expect("second close")
	if clockReads != 1 {
		t.Errorf("second Close read the clock (%d reads in all)", clockReads)
	}
}

func TestConcurrentCloseWritesOnce(t *testing.T) {
	h := start(t, lastused.Options{Now: func() time.Time { return t0 }})
	h.tr.Record("a", "", time.Time{}, t0)
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(h.tr.Close)
	}
	wg.Wait()
	h.expect("concurrent closes", batch{"a": t0})
}

func TestDefaultTickerAndLogger(t *testing.T) {
	st := &fakeStore{}
	tr := lastused.New(st, lastused.Options{})
	use := time.Now()
	tr.Record("a", "", time.Time{}, use)
	tr.Close()
	// The real ticker may or may not have fired before Close; either way
	// the use is written exactly once.
	got := st.takeOK()
	var n int
	for _, b := range got {
		if w, ok := b["a"]; ok {
			n++
			if !w.Equal(use) {
				t.Errorf("wrote %v, want %v", w, use)
			}
		}
	}
	if n != 1 {
		t.Errorf("use written %d times: %s", n, fmtBatches(got))
	}
}

func TestFlushContextHasTimeout(t *testing.T) {
	h := start(t, lastused.Options{})
	h.tr.Record("a", "", time.Time{}, t0)
	h.tick(t0.Add(lastused.Tick))
	h.st.mu.Lock()
	defer h.st.mu.Unlock()
	if len(h.st.deadlines) == 0 {
		t.Fatal("no TouchKeys call")
	}
	for _, left := range h.st.deadlines {
		if left <= 0 || left > 5*time.Second {
			t.Errorf("store context has %v left, want a deadline of at most 5s", left)
		}
	}
}

// The server's tests rely on this: with an unbuffered Ticks channel, the
// loop does not take the next tick while a flush is still running.
func TestNextTickWaitsForFlush(t *testing.T) {
	gate := make(chan struct{})
	st := &fakeStore{gate: gate, entered: make(chan struct{})}
	ticks := make(chan time.Time)
	tr := lastused.New(st, lastused.Options{Ticks: ticks})
	defer tr.Close()
	tr.Record("a", "", time.Time{}, t0)
	ticks <- t0
	<-st.entered // the flush is inside TouchKeys
	select {
	case ticks <- t0.Add(lastused.Tick):
		t.Fatal("the loop took a tick while a flush was running")
	default:
	}
	st.mu.Lock()
	st.gate = nil
	st.mu.Unlock()
	close(gate)
	ticks <- t0.Add(lastused.Tick)
	// That send returned, so the first flush has completed.
	if got, want := st.takeOK(), []batch{{"a": t0}}; !sameBatches(got, want) {
		t.Fatalf("after the second send: %s, want %s", fmtBatches(got), fmtBatches(want))
	}
}

func TestRecordMonotonic(t *testing.T) {
	t.Run("sequential", func(t *testing.T) {
		h := start(t, lastused.Options{})
		h.tr.Record("a", "", time.Time{}, t0.Add(2*time.Second))
		h.tr.Record("a", "", time.Time{}, t0.Add(time.Second))
		h.tick(t0.Add(3 * time.Second))
		h.expect("older use after newer", batch{"a": t0.Add(2 * time.Second)})

		h.tr.Record("a", "", time.Time{}, t0.Add(time.Second))
		h.tr.Close()
		h.expect("older use than the one written")
	})

	t.Run("concurrent", func(t *testing.T) {
		h := start(t, lastused.Options{})
		keys := []string{"a", "b", "c"}
		const goroutines, uses = 8, 500
		var wg sync.WaitGroup
		for g := range goroutines {
			wg.Go(func() {
				for i := range uses {
					// Each goroutine walks the times in a different order,
					// half of them backwards, so later calls often carry
					// older times.
					j := i
					if g%2 == 1 {
						j = uses - 1 - i
					}
					at := t0.Add(time.Duration(j*goroutines+g) * time.Millisecond)
					h.tr.Record(keys[(i+g)%len(keys)], "", time.Time{}, at)
				}
			})
		}
		// Flushes race with the Records (the point of -race here). They
		// stay within Idle of every use: an entry dropped while a Record
		// lands in it loses that use by design, after which a re-created
		// entry may write an older time (the store keeps the newer one).
		for i := range 8 {
			h.ticks <- t0.Add(time.Duration(i) * lastused.Coalesce / 4)
		}
		wg.Wait()
		h.tr.Close()

		got := h.st.takeOK()
		last := map[string]time.Time{}
		for _, b := range got {
			for id, at := range b {
				if !at.After(last[id]) {
					t.Errorf("%s written at %v after %v", id, at, last[id])
				}
				last[id] = at
			}
		}
		// Each key sees every goroutine's times; the latest per key is
		// the largest j*goroutines+g whose key index matches.
		for k, id := range keys {
			var want time.Time
			for g := range goroutines {
				for i := range uses {
					if (i+g)%len(keys) != k {
						continue
					}
					j := i
					if g%2 == 1 {
						j = uses - 1 - i
					}
					if at := t0.Add(time.Duration(j*goroutines+g) * time.Millisecond); at.After(want) {
						want = at
					}
				}
			}
			if !last[id].Equal(want) {
				t.Errorf("%s: last written %v, want %v", id, last[id].Sub(t0), want.Sub(t0))
			}
		}
	})
}

// Concurrent first uses of one key must land in one entry: a second entry
// replacing the first would lose the uses recorded into it.
func TestRecordConcurrentFirstUses(t *testing.T) {
	h := start(t, lastused.Options{})
	const keys, goroutines = 300, 4
	want := batch{}
	for k := range keys {
		id := fmt.Sprintf("k%d", k)
		// The goroutine holding the latest time varies with the key.
		latest := k % goroutines
		want[id] = t0.Add(time.Duration(goroutines) * time.Second)
		begin := make(chan struct{})
		var wg sync.WaitGroup
		for g := range goroutines {
			at := t0.Add(time.Duration(g) * time.Second)
			if g == latest {
				at = want[id]
			}
			wg.Go(func() {
				<-begin
				h.tr.Record(id, "", time.Time{}, at)
			})
		}
		close(begin)
		wg.Wait()
	}
	h.tick(t0.Add(time.Minute))
	got := h.st.takeOK()
	if len(got) != 1 || len(got[0]) != keys {
		t.Fatalf("want one batch of %d keys, got %d batches", keys, len(got))
	}
	for id, w := range want {
		if g := got[0][id]; !g.Equal(w) {
			t.Errorf("%s: wrote t0%+v, want t0%+v (a first use was lost)", id, g.Sub(t0), w.Sub(t0))
		}
	}
}

func TestRecordExistingEntryDoesNotAllocate(t *testing.T) {
	h := start(t, lastused.Options{})
	h.tr.Record("a", "", time.Time{}, t0)
	at := t0
	allocs := testing.AllocsPerRun(1000, func() {
		at = at.Add(time.Nanosecond)
		h.tr.Record("a", "", time.Time{}, at)
	})
	if allocs != 0 {
		t.Errorf("Record of an existing entry: %v allocs, want 0", allocs)
	}
}

// TestEntryKeepsItsOwnIDs: a key's entry, which lives for minutes,
// keeps one copy of its client and team IDs, nothing of the memory the
// caller decoded them from (a whole key record, a request's header), and
// the usage it writes names the key and team all the same.
func TestEntryKeepsItsOwnIDs(t *testing.T) {
	h := start(t, lastused.Options{})
	record := strings.Repeat("r", 200) + "kgc_abc" + "team-7" + strings.Repeat("r", 200)
	clientID, teamID := record[200:207], record[207:213]
	h.tr.Record(clientID, teamID, time.Time{}, t0)
	ids, inline, ok := h.tr.EntryIDs("kgc_abc")
	if !ok || ids != "kgc_abcteam-7" {
		t.Fatalf("entry IDs %q, %v; want %q", ids, ok, "kgc_abcteam-7")
	}
	start, end := uintptr(unsafe.Pointer(unsafe.StringData(record))), uintptr(unsafe.Pointer(unsafe.StringData(record)))+uintptr(len(record))
	if p := uintptr(unsafe.Pointer(unsafe.StringData(ids))); p >= start && p < end {
		t.Fatal("the entry's IDs are a slice of the caller's record: they keep all of it alive")
	}
	if !inline {
		t.Error("a team key's IDs are not kept in its entry")
	}
	// The longest team ID with a generated client ID still fits; an
	// operator-named admin ID longer than the entry's room is kept apart,
	// whole. An admin key (no team) keeps its client ID alone.
	long := "kgc_" + strings.Repeat("x", 28)
	team := strings.Repeat("t", 64)
	h.tr.Record(long, team, time.Time{}, t0)
	if ids, inline, _ := h.tr.EntryIDs(long); ids != long+team || !inline {
		t.Fatalf("entry IDs %q (inline %v), want %q in the entry", ids, inline, long+team)
	}
	header := strings.Repeat("h", 10) + strings.Repeat("a", 120) + strings.Repeat("h", 10)
	admin := header[10:130]
	h.tr.Record(admin, "", time.Time{}, t0)
	ids, inline, _ = h.tr.EntryIDs(admin)
	if ids != admin || inline {
		t.Fatalf("a %d-byte admin ID: entry IDs %q, inline %v", len(admin), ids, inline)
	}
	if unsafe.StringData(ids) == unsafe.StringData(admin) {
		t.Error("the admin entry keeps the caller's string, not a copy")
	}
	// All three are written under their own names.
	h.tick(t0.Add(lastused.Tick))
	h.expect("first uses", batch{"kgc_abc": t0, long: t0, admin: t0})
	sums, _ := h.st.usageSums()
	if u := sums["kgc_abc@12h"]; u.team != "team-7" || u.tokens != 1 {
		t.Errorf("usage of kgc_abc: %+v, want 1 token for team-7", u)
	}
	if u := sums[long+"@12h"]; u.team != team || u.tokens != 1 {
		t.Errorf("usage of the long team's key: %+v, want 1 token for %s", u, team)
	}
}

// TestEntriesHoldNoPointer: a million keys in use must not be a million
// objects the collector follows (table.go): an entry has no pointer field,
// and keys come and go without an allocation of their own each.
func TestEntriesHoldNoPointer(t *testing.T) {
	if p := lastused.EntryPointers(); len(p) > 0 {
		t.Fatalf("entry fields the collector follows: %v", p)
	}
	h := start(t, lastused.Options{})
	const n = 20000
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("kgc_%028d", i)
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for _, id := range ids {
		h.tr.Record(id, "team-1", time.Time{}, t0)
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	if h.tr.Len() < n {
		t.Fatalf("%d entries, want %d", h.tr.Len(), n)
	}
	// Slabs of 64 entries and the shards' index maps: a few thousand
	// objects. An object per key would be 20 000 more.
	if grown := int64(after.HeapObjects) - int64(before.HeapObjects); grown > n/4 {
		t.Errorf("%d keys grew the heap by %d objects, want under %d", n, grown, n/4)
	}
}

// TestSlotsReusedKeepCountsApart: keys that go idle are dropped and their
// slots given to other keys while uses keep coming in; every key's usage is
// still its own, exactly, and a dropped key's slot is reused rather than
// the table growing.
func TestSlotsReusedKeepCountsApart(t *testing.T) {
	h := start(t, lastused.Options{WriteRate: -1})
	const keys, rounds, perRound = 200, 12, 3
	want := map[string]int64{}
	at := t0
	for round := range rounds {
		// A fresh set of keys each round (the last round's go idle), used
		// from several goroutines while flushes run.
		var wg sync.WaitGroup
		for g := range 4 {
			wg.Go(func() {
				for k := g; k < keys; k += 4 {
					id := fmt.Sprintf("kgc_r%d_k%03d", round, k)
					for range perRound {
						h.tr.Record(id, fmt.Sprintf("team-%d", k%7), time.Time{}, at)
					}
					h.tr.RecordFailure(id, fmt.Sprintf("team-%d", k%7), time.Time{}, at)
				}
			})
		}
		for i := range 3 {
			h.tick(at.Add(time.Duration(i+1) * lastused.Tick))
		}
		wg.Wait()
		for k := range keys {
			want[fmt.Sprintf("kgc_r%d_k%03d", round, k)] = perRound
		}
		at = at.Add(lastused.SweepEvery + lastused.Idle) // all of this round's keys idle
		h.tick(at)
		h.tick(at.Add(lastused.Tick))
	}
	h.tr.Close()
	sums, _ := h.st.usageSums()
	got := map[string]int64{}
	fails := map[string]int64{}
	for k, u := range sums {
		id := k[:strings.Index(k, "@")]
		if strings.HasPrefix(id, "kgc_r") {
			var r, n int
			fmt.Sscanf(id, "kgc_r%d_k%03d", &r, &n)
			if wantTeam := fmt.Sprintf("team-%d", n%7); u.team != wantTeam {
				t.Errorf("%s counted for team %q, want %q", id, u.team, wantTeam)
			}
		}
		got[id] += u.tokens
		fails[id] += u.failures
	}
	for id, n := range want {
		if got[id] != n || fails[id] != 1 {
			t.Errorf("%s: %d tokens, %d failures; want %d and 1", id, got[id], fails[id], n)
		}
	}
	for id := range got {
		if _, ok := want[id]; !ok && strings.HasPrefix(id, "kgc_") {
			t.Errorf("usage for %s, a key never used", id)
		}
	}
	// Each round's keys took the slots the rounds before left in their
	// shards: the table holds what the fullest round put in each shard
	// (about three rounds' worth at under one key per shard), not every
	// round's (2 400 and the harness's barrier keys).
	if s := h.tr.Slots(); s > keys*rounds/2 {
		t.Errorf("%d slots handed out for %d keys at a time in %d rounds: dropped slots are not reused", s, keys, rounds)
	}
}

func BenchmarkRecord(b *testing.B) {
	tr := lastused.New(&fakeStore{}, lastused.Options{Ticks: make(chan time.Time)})
	defer tr.Close()
	tr.Record("a", "", time.Time{}, t0)
	at := t0
	b.ReportAllocs()
	for b.Loop() {
		at = at.Add(time.Nanosecond)
		tr.Record("a", "", time.Time{}, at)
	}
}

func BenchmarkRecordParallel(b *testing.B) {
	tr := lastused.New(&fakeStore{}, lastused.Options{Ticks: make(chan time.Time)})
	defer tr.Close()
	keys := []string{"a", "b", "c", "d"}
	for _, k := range keys {
		tr.Record(k, "", time.Time{}, t0)
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		at := t0
		i := 0
		for pb.Next() {
			at = at.Add(time.Nanosecond)
			tr.Record(keys[i%len(keys)], "", time.Time{}, at)
			i++
		}
	})
}

// flushReport is one call of an Observer.
type flushReport struct {
	pending int
	took    time.Duration
}

type chanObserver chan flushReport

func (c chanObserver) LastUsedFlushed(pending int, took time.Duration) {
	c <- flushReport{pending, took}
}

func TestObserverHearsPendingAndFlushTime(t *testing.T) {
	obs := make(chanObserver, 16)
	h := start(t, lastused.Options{Observer: obs})
	// Each tick's barrier key is itself a first use, written at once, so it
	// never counts as pending; the observer is called after the store
	// write, so the test reads its report from the channel, not from a race.
	h.tr.Record("k", "", time.Time{}, t0)
	h.tick(t0.Add(lastused.Tick))
	if r := <-obs; r.pending != 0 || r.took <= 0 {
		t.Fatalf("after writing every use: pending %d, took %v; want 0 and > 0", r.pending, r.took)
	}

	h.tr.Record("k", "", time.Time{}, t0.Add(10*time.Second)) // inside k's window: deferred
	h.tick(t0.Add(10*time.Second + lastused.Tick))
	if r := <-obs; r.pending != 1 {
		t.Fatalf("a use inside the coalescing window: pending %d, want 1", r.pending)
	}

	h.st.setErr(errors.New("store down"))
	h.tr.Record("new", "", time.Time{}, t0.Add(11*time.Second))
	h.tick(t0.Add(11*time.Second + lastused.Tick))
	// k deferred, plus "new" and the barrier whose write failed.
	if r := <-obs; r.pending != 3 {
		t.Fatalf("failed write: pending %d, want 3", r.pending)
	}
}

// TestFlushVisitsOnlyWhatChanged: between sweeps a flush looks at the keys
// used since the last one, not at every key in use; a sweep, every
// SweepEvery, looks at them all (and drops idle ones). A million keys in
// use cost a flush the keys used in the last quarter second.
func TestFlushVisitsOnlyWhatChanged(t *testing.T) {
	h := start(t, lastused.Options{})
	const n = 1000
	for i := range n {
		h.tr.Record(fmt.Sprint("k", i), "team", time.Time{}, t0)
	}
	h.tick(t0.Add(lastused.Tick)) // the first uses are written; the first flush sweeps
	if ok := h.st.takeOK(); len(ok) != 1 || len(ok[0]) != n {
		t.Fatalf("first flush wrote %v, want one batch of the %d keys", ok, n)
	}
	before := h.tr.Visits()
	h.tr.Record("k7", "team", time.Time{}, t0.Add(2*lastused.Tick))
	h.tick(t0.Add(3 * lastused.Tick))
	if got := h.tr.Visits() - before; got != 2 {
		t.Errorf("a flush after one key's use looked at %d entries, want 2 (the key and the barrier)", got)
	}
	h.expect("a use inside the coalescing window")

	before = h.tr.Visits()
	h.tick(t0.Add(lastused.Tick + lastused.SweepEvery))
	if got := h.tr.Visits() - before; got < n {
		t.Errorf("the flush at SweepEvery looked at %d entries, want all %d", got, n)
	}
}
