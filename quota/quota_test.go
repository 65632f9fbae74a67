package quota

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"
)

var t0 = time.Date(2026, 11, 27, 10, 40, 0, 0, time.UTC) // 20 minutes before the hour ends

func TestParse(t *testing.T) {
	good := map[string]Policy{
		"1000/hour":          {1000, Hour, Enforce},
		" 5 / Day : LOG ":    {5, Day, Log},
		"7/hour:enforce":     {7, Hour, Enforce},
		"off":                {},
		"":                   {},
		"1000000000/day:log": {MaxLimit, Day, Log},
	}
	for in, want := range good {
		got, err := Parse(in)
		if err != nil || got != want {
			t.Errorf("Parse(%q) = %+v, %v; want %+v", in, got, err, want)
		}
		if want.IsZero() {
			continue
		}
		if back, err := Parse(got.String()); err != nil || back != got {
			t.Errorf("Parse(%q.String() = %q) = %+v, %v", in, got.String(), back, err)
		}
	}
	bad := map[string]error{
		"1000":              nil, // no period
		"0/hour":            ErrLimit,
		"-1/hour":           ErrLimit,
		"1.5/hour":          ErrLimit,
		"1000000001/day":    ErrLimit,
		"1000/week":         ErrPeriod,
		"1000/hour:maybe":   ErrMode,
		"1000/hour:log:log": ErrMode,
	}
	for in, want := range bad {
		_, err := Parse(in)
		if err == nil || (want != nil && !errors.Is(err, want)) {
			t.Errorf("Parse(%q) error %v, want %v", in, err, want)
		}
	}
}

func TestWindowAlignment(t *testing.T) {
	w1, end := window(Hour, t0)
	if !end.Equal(time.Date(2026, 11, 27, 11, 0, 0, 0, time.UTC)) {
		t.Errorf("hour window ends %s", end)
	}
	w2, _ := window(Hour, end)
	if w2 != w1+2 {
		t.Errorf("next hour's window %d, want %d", w2, w1+2)
	}
	d, dend := window(Day, t0)
	if !dend.Equal(time.Date(2026, 11, 28, 0, 0, 0, 0, time.UTC)) || d&1 != 1 || w1&1 != 0 {
		t.Errorf("day window %d ends %s", d, dend)
	}
}

func TestLocalEnforce(t *testing.T) {
	l := New(Options{})
	p := Policy{3, Hour, Enforce}
	ctx := context.Background()
	for i := int64(1); i <= 3; i++ {
		d := l.Take(ctx, PerKey, "k", p, t0)
		if !d.Allowed || d.Remaining != 3-i || d.Reset != 20*time.Minute || d.FirstOver || !d.Counted {
			t.Fatalf("token %d: %+v", i, d)
		}
	}
	d := l.Take(ctx, PerKey, "k", p, t0.Add(time.Minute))
	if d.Allowed || d.Remaining != 0 || d.Reset != 19*time.Minute {
		t.Fatalf("4th token: %+v", d)
	}
	// Another key and the team of the same ID are counted apart.
	if d := l.Take(ctx, PerKey, "other", p, t0); !d.Allowed {
		t.Fatalf("another key refused: %+v", d)
	}
	if d := l.Take(ctx, PerTeam, "k", p, t0); !d.Allowed {
		t.Fatalf("a team of the same name refused: %+v", d)
	}
	// Rollover: the next hour starts from zero.
	d = l.Take(ctx, PerKey, "k", p, t0.Add(20*time.Minute))
	if !d.Allowed || d.Remaining != 2 || d.Reset != time.Hour {
		t.Fatalf("first token of the next hour: %+v", d)
	}
	// Return gives one back.
	l.Return(PerKey, "k", p, t0.Add(20*time.Minute))
	if d := l.Take(ctx, PerKey, "k", p, t0.Add(21*time.Minute)); d.Remaining != 2 {
		t.Fatalf("after Return: %+v", d)
	}
	// A raised limit applies at once to the counted window.
	if d := l.Take(ctx, PerKey, "k", Policy{10, Hour, Enforce}, t0.Add(22*time.Minute)); !d.Allowed || d.Remaining != 8 {
		t.Fatalf("raised limit: %+v", d)
	}
}

func TestLocalLogOncePerWindow(t *testing.T) {
	l := New(Options{})
	p := Policy{2, Day, Log}
	ctx := context.Background()
	var first []int
	for i := 1; i <= 10; i++ {
		d := l.Take(ctx, PerKey, "k", p, t0)
		if !d.Allowed {
			t.Fatalf("log mode refused token %d", i)
		}
		if d.FirstOver {
			first = append(first, i)
		}
	}
	if len(first) != 1 || first[0] != 3 {
		t.Fatalf("FirstOver on tokens %v, want [3]", first)
	}
	// The next day: again once.
	next := t0.Add(24 * time.Hour)
	n := 0
	for range 5 {
		if l.Take(ctx, PerKey, "k", p, next).FirstOver {
			n++
		}
	}
	if n != 1 {
		t.Fatalf("FirstOver %d times the next day, want 1", n)
	}
}

func TestLocalConcurrentExact(t *testing.T) {
	l := New(Options{})
	p := Policy{1000, Hour, Enforce}
	var wg sync.WaitGroup
	var mu sync.Mutex
	allowed := 0
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			n := 0
			for range 300 {
				if l.Take(context.Background(), PerKey, "k", p, t0).Allowed {
					n++
				}
			}
			mu.Lock()
			allowed += n
			mu.Unlock()
		}()
	}
	wg.Wait()
	if allowed != 1000 {
		t.Fatalf("%d tokens allowed of 2400 asked, want exactly 1000", allowed)
	}
}

// TestSharedNeverOver: two limiters on one shared counter, leases of 10,
// never allow more than the limit together, and cost one Add per lease.
func TestSharedNeverOver(t *testing.T) {
	m := NewMemory()
	a, b := New(Options{Shared: m, Lease: 10}), New(Options{Shared: m, Lease: 10})
	p := Policy{25, Hour, Enforce}
	ctx := context.Background()
	allowed := 0
	for i := range 60 {
		l := a
		if i%3 == 0 {
			l = b
		}
		if l.Take(ctx, PerKey, "k", p, t0).Allowed {
			allowed++
		}
	}
	if allowed > 25 || allowed < 25-9 {
		t.Fatalf("%d allowed, want at most 25 and at least 16 (one lease stranded)", allowed)
	}
	// Refusals are remembered: no Add per refused token.
	adds := m.Adds
	for range 20 {
		a.Take(ctx, PerKey, "k", p, t0)
	}
	if m.Adds != adds {
		t.Fatalf("%d Adds for 20 refusals, want 0", m.Adds-adds)
	}
	// The next window starts over.
	if d := a.Take(ctx, PerKey, "k", p, t0.Add(time.Hour)); !d.Allowed || d.Remaining != 24 {
		t.Fatalf("next hour: %+v", d)
	}
}

func TestSharedLogOnceAcrossInstances(t *testing.T) {
	m := NewMemory()
	a, b := New(Options{Shared: m, Lease: 4}), New(Options{Shared: m, Lease: 4})
	p := Policy{10, Hour, Log}
	ctx := context.Background()
	over := 0
	for i := range 40 {
		l := a
		if i%2 == 0 {
			l = b
		}
		d := l.Take(ctx, PerKey, "k", p, t0)
		if !d.Allowed {
			t.Fatalf("log mode refused token %d", i)
		}
		if d.FirstOver {
			over++
		}
	}
	if over != 1 {
		t.Fatalf("FirstOver %d times across two instances, want 1", over)
	}
}

func TestSharedFailsOpen(t *testing.T) {
	m := NewMemory()
	m.Fail = errors.New("down")
	var errs int
	l := New(Options{Shared: m, Lease: 5, OnSharedError: func(error) { errs++ }})
	p := Policy{1, Hour, Enforce}
	ctx := context.Background()
	for range 5 {
		if d := l.Take(ctx, PerKey, "k", p, t0); !d.Allowed || d.Counted {
			t.Fatalf("failing counter: %+v, want allowed and uncounted", d)
		}
	}
	if m.Adds != 1 || errs != 1 {
		t.Fatalf("%d Adds, %d errors during the fail-open spell, want 1 and 1", m.Adds, errs)
	}
	m.Fail = nil
	if d := l.Take(ctx, PerKey, "k", p, t0.Add(FailOpenFor)); !d.Allowed || !d.Counted {
		t.Fatalf("after the spell: %+v", d)
	}
	if d := l.Take(ctx, PerKey, "k", p, t0.Add(FailOpenFor)); d.Allowed {
		t.Fatalf("over the limit after the spell: %+v", d)
	}
}

func TestNoEntryForZeroPolicy(t *testing.T) {
	l := New(Options{})
	if d := l.Take(context.Background(), PerKey, "k", Policy{}, t0); !d.Allowed {
		t.Fatal("zero policy refused")
	}
	if _, ok := l.entries[PerKey].Load("k"); ok {
		t.Fatal("zero policy made an entry")
	}
	for _, p := range []Policy{{5, "week", Enforce}, {0, Hour, Enforce}, {-1, Day, Log}} {
		if d := l.Take(context.Background(), PerKey, "k", p, t0); !d.Allowed {
			t.Fatalf("invalid policy %+v refused: %+v", p, d)
		}
	}
}

func TestSweep(t *testing.T) {
	l := New(Options{})
	ctx := context.Background()
	l.Take(ctx, PerKey, "old", Policy{5, Hour, Enforce}, t0)
	l.Take(ctx, PerKey, "oldday", Policy{5, Day, Enforce}, t0)
	later := t0.Add(3 * 24 * time.Hour)
	l.Take(ctx, PerKey, "new", Policy{5, Day, Enforce}, later)
	l.Take(ctx, PerKey, "newhour", Policy{5, Hour, Enforce}, later)
	l.sweep(later)
	for id, want := range map[string]bool{"old": false, "oldday": false, "new": true, "newhour": true} {
		if _, ok := l.entries[PerKey].Load(id); ok != want {
			t.Errorf("entry %s kept %v, want %v", id, ok, want)
		}
	}
}

func BenchmarkTakeLocal(b *testing.B) {
	l := New(Options{})
	p := Policy{MaxLimit, Day, Enforce}
	ctx := context.Background()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			l.Take(ctx, PerKey, "kgc_abcdef", p, t0)
		}
	})
}

// BenchmarkTakeSerial is the cost of counting one token on one instance,
// without contention: what a quota adds to a token request (twice with a
// key and a team quota).
func BenchmarkTakeSerial(b *testing.B) {
	l := New(Options{})
	p := Policy{MaxLimit, Day, Enforce}
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		l.Take(ctx, PerKey, "kgc_abcdef", p, t0)
	}
}
