package throttle

import (
	"context"
	"net/netip"
	"sync"
	"testing"
	"time"
)

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time              { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) advance(d time.Duration)     { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }
func newClock() *clock                       { return &clock{t: time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC)} }
func addr(t *testing.T, s string) netip.Addr { t.Helper(); return netip.MustParseAddr(s) }

func testLimiter(c *clock) *Limiter {
	return New(Config{
		Pair:   Bucket{Burst: 3, Every: time.Second},
		Source: Bucket{Burst: 5, Every: 100 * time.Millisecond},
		Now:    c.now,
	})
}

// TestPairBucket: burst failures pass, then the pair waits one interval
// per further failure; another client ID from another address is not
// touched.
func TestPairBucket(t *testing.T) {
	c := newClock()
	l := New(Config{Pair: Bucket{Burst: 3, Every: time.Second}, Now: c.now})
	p := PairOf(addr(t, "192.0.2.1"), "kgc_victim")
	for i := range 3 {
		if w := l.Check(p); w != 0 {
			t.Fatalf("before failure %d: wait %v, want 0", i+1, w)
		}
		l.Failed(context.Background(), p)
	}
	if w := l.Check(p); w != time.Second {
		t.Fatalf("after the burst: wait %v, want 1s", w)
	}
	if w := l.Check(PairOf(addr(t, "192.0.2.2"), "kgc_victim")); w != 0 {
		t.Fatalf("same client ID from another address: wait %v, want 0 (never locked out everywhere)", w)
	}
	if w := l.Check(PairOf(addr(t, "192.0.2.1"), "kgc_other")); w != 0 {
		t.Fatalf("another client ID from the address (source bucket off): wait %v, want 0", w)
	}
	c.advance(400 * time.Millisecond)
	if w := l.Check(p); w != 600*time.Millisecond {
		t.Fatalf("0.4 s later: wait %v, want 600ms", w)
	}
	c.advance(600 * time.Millisecond)
	if w := l.Check(p); w != 0 {
		t.Fatalf("1 s later: wait %v, want 0", w)
	}
	l.Failed(context.Background(), p)
	if w := l.Check(p); w != time.Second {
		t.Fatalf("one more failure: wait %v, want 1s", w)
	}
}

// TestSourceBucketSparesRecentSuccess: failures of many client IDs from
// one address empty the source's bucket, which then refuses every pair of
// the source — except one that authenticated recently (the NAT case),
// until its success is older than Recent.
func TestSourceBucketSparesRecentSuccess(t *testing.T) {
	c := newClock()
	l := New(Config{
		Pair:   Bucket{Burst: 3, Every: time.Second},
		Source: Bucket{Burst: 5, Every: time.Second},
		Recent: time.Hour,
		Now:    c.now,
	})
	nat := addr(t, "198.51.100.7")
	good := PairOf(nat, "kgc_working_integration")
	l.Succeeded(good)
	for i := range 5 {
		l.Failed(context.Background(), PairOf(nat, "kgc_guess_"+string(rune('a'+i))))
	}
	if w := l.Check(PairOf(nat, "kgc_never_tried")); w != time.Second {
		t.Fatalf("a new client ID from the source: wait %v, want 1s", w)
	}
	if w := l.Check(good); w != 0 {
		t.Fatalf("the pair that succeeded recently: wait %v, want 0", w)
	}
	if w := l.Check(PairOf(addr(t, "198.51.100.8"), "kgc_never_tried")); w != 0 {
		t.Fatalf("another address: wait %v, want 0", w)
	}
	// Keep the source throttled past Recent: the old success no longer
	// clears the pair.
	for range 61 {
		c.advance(time.Minute)
		for range 70 {
			l.Failed(context.Background(), PairOf(nat, "kgc_spray"))
		}
	}
	if w := l.Check(good); w == 0 {
		t.Fatal("a pair whose success is older than Recent passes a throttled source")
	}
	// A pair throttled on its own is refused even if it succeeded.
	p := PairOf(addr(t, "203.0.113.1"), "kgc_x")
	l.Succeeded(p)
	for range 3 {
		l.Failed(context.Background(), p)
	}
	if w := l.Check(p); w == 0 {
		t.Fatal("a pair whose own bucket is empty passes because it once succeeded")
	}
}

// TestIPv6Per64: the addresses of one /64 are one source; the next /64 is
// another; IPv4-mapped addresses are their IPv4 address.
func TestIPv6Per64(t *testing.T) {
	c := newClock()
	l := testLimiter(c)
	for i, a := range []string{"2001:db8:1:2::1", "2001:db8:1:2:ffff:ffff:ffff:fffe", "2001:db8:1:2:abcd::9", "2001:db8:1:2::1%eth0", "2001:db8:1:2:1::"} {
		l.Failed(context.Background(), PairOf(addr(t, a), "kgc_"+string(rune('a'+i))))
	}
	if w := l.Check(PairOf(addr(t, "2001:db8:1:2:5:6:7:8"), "kgc_new")); w != 100*time.Millisecond {
		t.Fatalf("same /64: wait %v, want 100ms", w)
	}
	if w := l.Check(PairOf(addr(t, "2001:db8:1:3::1"), "kgc_new")); w != 0 {
		t.Fatalf("next /64: wait %v, want 0", w)
	}
	if got := SourceOf(addr(t, "2001:db8:1:2:ffff::1")).String(); got != "2001:db8:1:2::/64" {
		t.Fatalf("source string %q", got)
	}
	if SourceOf(addr(t, "::ffff:192.0.2.9")) != SourceOf(addr(t, "192.0.2.9")) {
		t.Fatal("an IPv4-mapped address is another source than its IPv4 address")
	}
}

// TestTablesBounded: a flood of sources and client IDs never grows the
// tables past MaxEntries (LRU: the oldest are forgotten).
func TestTablesBounded(t *testing.T) {
	c := newClock()
	l := New(Config{Pair: Bucket{Burst: 3, Every: time.Second}, Source: Bucket{Burst: 5, Every: time.Second}, MaxEntries: 640, Now: c.now})
	for i := range 20000 {
		a := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
		l.Failed(context.Background(), PairOf(a, "kgc_"+string(rune(i))))
		l.Succeeded(PairOf(a, "kgc_ok"))
	}
	pairs, sources := l.Len()
	if pairs > 640 || sources > 640 {
		t.Fatalf("tables hold %d pairs and %d sources after 20000 of each, over the bound of 640", pairs, sources)
	}
	if succ := l.successes.len(); succ > 640 {
		t.Fatalf("success table holds %d, over 640", succ)
	}
}

// TestEpisodes: one Started per episode of throttling, not one per
// failure; a new one after the bucket refilled.
func TestEpisodes(t *testing.T) {
	c := newClock()
	l := New(Config{Pair: Bucket{Burst: 3, Every: time.Second}, Now: c.now})
	p := PairOf(addr(t, "192.0.2.1"), "kgc_k")
	starts := 0
	for range 50 { // a steady guesser: one failure each time it is let in
		if l.Check(p) == 0 {
			if l.Failed(context.Background(), p).Pair {
				starts++
			}
		}
		c.advance(250 * time.Millisecond)
	}
	if starts != 1 {
		t.Fatalf("%d episodes started during one steady attack, want 1", starts)
	}
	c.advance(time.Minute)
	for range 3 {
		if l.Failed(context.Background(), p).Pair {
			starts++
		}
	}
	if starts != 2 {
		t.Fatalf("after a quiet minute and a new burst: %d episodes, want 2", starts)
	}
}

// TestOffAndNil: both buckets off is a nil Limiter, which never throttles.
func TestOffAndNil(t *testing.T) {
	l := New(Config{})
	if l != nil {
		t.Fatal("New with both buckets off is not nil")
	}
	p := PairOf(netip.MustParseAddr("192.0.2.1"), "x")
	l.Failed(context.Background(), p)
	l.Succeeded(p)
	if l.Check(p) != 0 {
		t.Fatal("nil Limiter throttles")
	}
}

// TestKeyRoundTrip: the names of shared buckets parse back to the pair and
// source they name; junk does not.
func TestKeyRoundTrip(t *testing.T) {
	for _, a := range []string{"192.0.2.1", "2001:db8::7", "::"} {
		p := PairOf(netip.MustParseAddr(a), "kgc_abc")
		kind, src, id, err := parseKey(p.key())
		if err != nil || kind != "p" || src != p.src || id != p.id {
			t.Fatalf("%s: %q → %s %v %x %v", a, p.key(), kind, src, id, err)
		}
		kind, src, _, err = parseKey(p.src.key())
		if err != nil || kind != "s" || src != p.src {
			t.Fatalf("%s: %q → %s %v %v", a, p.src.key(), kind, src, err)
		}
	}
	p := PairOf(netip.Addr{}, "x")
	if kind, src, _, err := parseKey(p.key()); err != nil || kind != "p" || src != p.src {
		t.Fatalf("unknown source: %q → %s %v %v", p.key(), kind, src, err)
	}
	for _, junk := range []string{"", "p", "x/1.2.3.4", "p/1.2.3.4", "p/nope/12", "p/1.2.3.4/zz", "s/1.2.3.4/5"} {
		if _, _, _, err := parseKey(junk); err == nil {
			t.Fatalf("%q parsed", junk)
		}
	}
}

// memShared is Shared in memory, as store/redis does it on Redis: several
// Limiters on one memShared are several instances on one Redis.
type memShared struct {
	mu     sync.Mutex
	b      map[string]*[2]int64 // tat, episode
	listen []func(Notice)
}

func (m *memShared) AddFailures(_ context.Context, now time.Time, _ string, adds []SharedAdd) ([]SharedState, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]SharedState, len(adds))
	for i, a := range adds {
		st := m.b[a.Key]
		if st == nil {
			st = &[2]int64{}
			m.b[a.Key] = st
		}
		n := now.UnixNano()
		st[0] = max(st[0], n) + int64(a.Every)
		if until := st[0] - int64(a.Threshold); until > n {
			out[i].Started = st[1] <= n
			st[1] = until + int64(a.Span)
		}
		out[i].TAT = time.Unix(0, st[0])
	}
	return out, nil
}

func (m *memShared) Announce(_ context.Context, n Notice) error {
	m.mu.Lock()
	fs := append([]func(Notice){}, m.listen...)
	m.mu.Unlock()
	for _, f := range fs {
		f(n)
	}
	return nil
}

func (m *memShared) Listen(_ context.Context, f func(Notice)) {
	m.mu.Lock()
	m.listen = append(m.listen, f)
	m.mu.Unlock()
}

// TestSharedInstances: failures spread over two instances add up, the
// throttle reaches the instance that saw none of the last failures, and
// exactly one instance reports the episode.
func TestSharedInstances(t *testing.T) {
	c := newClock()
	sh := &memShared{b: map[string]*[2]int64{}}
	mk := func() *Limiter {
		l := New(Config{Pair: Bucket{Burst: 4, Every: time.Second}, Source: Bucket{Burst: 100, Every: time.Second}, Now: c.now, Shared: sh})
		l.Listen(context.Background())
		return l
	}
	a, b := mk(), mk()
	p := PairOf(addr(t, "192.0.2.1"), "kgc_k")
	starts := 0
	for i := range 4 {
		l := a
		if i%2 == 1 {
			l = b
		}
		if l.Failed(context.Background(), p).Pair {
			starts++
		}
	}
	if starts != 1 {
		t.Fatalf("%d instances reported the episode, want 1", starts)
	}
	for name, l := range map[string]*Limiter{"a": a, "b": b} {
		if w := l.Check(p); w != time.Second {
			t.Fatalf("instance %s: wait %v, want 1s", name, w)
		}
	}
	// A third instance that joins late hears later notices.
	cInst := mk()
	c.advance(time.Second)
	a.Failed(context.Background(), p)
	if w := cInst.Check(p); w != time.Second {
		t.Fatalf("late instance: wait %v, want 1s", w)
	}
}

// TestSuccessTableKeepsTheRecent: past its bound the success table
// forgets the pairs that succeeded longest ago, not one that keeps
// succeeding: an integration that authenticates every minute stays clear
// of its source's bucket through a flood of one-time pairs, and is
// forgotten once it stops while the flood goes on.
func TestSuccessTableKeepsTheRecent(t *testing.T) {
	c := newClock()
	l := New(Config{Pair: Bucket{Burst: 3, Every: time.Second}, Source: Bucket{Burst: 5, Every: time.Second}, MaxEntries: 640, Now: c.now})
	regular := PairOf(addr(t, "198.51.100.7"), "kgc_regular")
	flood := func(minutes int, from int, regularToo bool) int {
		for range minutes {
			if regularToo {
				l.Succeeded(regular)
			}
			for range 100 { // about one and a half new pairs per set a minute
				a := netip.AddrFrom4([4]byte{10, byte(from >> 16), byte(from >> 8), byte(from)})
				l.Succeeded(PairOf(a, "kgc_once"))
				from++
			}
			c.advance(time.Minute)
		}
		return from
	}
	next := flood(60, 0, true)
	if n := l.successes.len(); n > 640 {
		t.Fatalf("the success table holds %d pairs, over its bound of 640", n)
	}
	if _, ok := l.successes.last(regular); !ok {
		t.Fatal("a pair succeeding every minute was forgotten in a flood of 6 000 one-time pairs")
	}
	last := PairOf(netip.AddrFrom4([4]byte{10, byte((next - 1) >> 16), byte((next - 1) >> 8), byte(next - 1)}), "kgc_once")
	if _, ok := l.successes.last(last); !ok {
		t.Fatal("the latest success is not remembered")
	}
	flood(60, next, false)
	if _, ok := l.successes.last(regular); ok {
		t.Fatal("a pair that stopped an hour ago outlived 6 000 newer successes in a table of 640")
	}
}

// TestSucceededDoesNotAllocate: the success path writes into the table's
// fixed slots, a new pair included.
func TestSucceededDoesNotAllocate(t *testing.T) {
	c := newClock()
	l := testLimiter(c)
	i := 0
	allocs := testing.AllocsPerRun(1000, func() {
		i++
		l.Succeeded(PairOf(netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)}), "kgc_x"))
	})
	if allocs != 0 {
		t.Fatalf("Succeeded of a new pair: %v allocations, want 0", allocs)
	}
}
