package server

import (
	"crypto/aes"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestRequestIDFormat(t *testing.T) {
	if n := requestIDEncoding.EncodedLen(aes.BlockSize); n != requestIDLen {
		t.Fatalf("a 16-byte block encodes to %d characters, requestIDLen is %d", n, requestIDLen)
	}
	g, err := newRequestIDs()
	if err != nil {
		t.Fatal(err)
	}
	for range 1000 {
		v := g.next()
		if len(v) != 1 {
			t.Fatalf("header value %q", v)
		}
		id := v[0]
		if len(id) != requestIDLen || strings.Trim(id, "0123456789abcdefghjkmnpqrstvwxyz") != "" {
			t.Fatalf("ID %q is not %d characters of lowercase Crockford base32", id, requestIDLen)
		}
		// A keygate behind another keygate (trusted) adopts its IDs.
		if !validRequestID(id) {
			t.Fatalf("generated ID %q is not adoptable", id)
		}
	}
}

// IDs are unique across many calls, concurrent callers and generators (a
// second process or server has its own key).
func TestRequestIDsUnique(t *testing.T) {
	g1, err := newRequestIDs()
	if err != nil {
		t.Fatal(err)
	}
	g2, err := newRequestIDs()
	if err != nil {
		t.Fatal(err)
	}
	const perWorker = 25000
	var mu sync.Mutex
	seen := make(map[string]bool, 8*perWorker)
	var wg sync.WaitGroup
	for w := range 8 {
		g := g1
		if w%2 == 1 {
			g = g2
		}
		wg.Go(func() {
			ids := make([]string, perWorker)
			for i := range ids {
				ids[i] = g.next()[0]
			}
			mu.Lock()
			defer mu.Unlock()
			for _, id := range ids {
				if seen[id] {
					t.Errorf("ID %s was made twice", id)
				}
				seen[id] = true
			}
		})
	}
	wg.Wait()
	if len(seen) != 8*perWorker {
		t.Errorf("%d distinct IDs of %d", len(seen), 8*perWorker)
	}
}

// An ID is a pure function of the key drawn at start and a counter: AES
// of the counter, encoded. So no call draws randomness, and the next ID
// cannot be told from the last without the key. Its cost is one
// allocation for the buffers and header value, one for the string.
func TestRequestIDIsKeyedCounter(t *testing.T) {
	key := [16]byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}
	g, err := requestIDsWithKey(key)
	if err != nil {
		t.Fatal(err)
	}
	block, err := aes.NewCipher(key[:])
	if err != nil {
		t.Fatal(err)
	}
	for n := uint64(1); n <= 3; n++ {
		var in, out [16]byte
		for i := range 8 {
			in[15-i] = byte(n >> (8 * i))
		}
		block.Encrypt(out[:], in[:])
		if want, got := requestIDEncoding.EncodeToString(out[:]), g.next()[0]; got != want {
			t.Errorf("ID %d = %s, want AES(key, %d) = %s", n, got, n, want)
		}
	}
	again, _ := requestIDsWithKey(key)
	first := again.next()[0]
	other, _ := requestIDsWithKey([16]byte{})
	if other.next()[0] == first {
		t.Error("two keys make the same first ID")
	}
	if n := testing.AllocsPerRun(1000, func() { g.next() }); n > 2 {
		t.Errorf("next allocates %.0f times, want at most 2", n)
	}
}

func TestAdoptRequestID(t *testing.T) {
	tests := []struct {
		name     string
		incoming []string
		trusted  bool
		adopt    bool
	}{
		{"trusted proxy, well-formed", []string{"req-1.A_b"}, true, true},
		{"trusted proxy, 64 characters", []string{strings.Repeat("a", 64)}, true, true},
		{"untrusted peer, well-formed", []string{"req-1"}, false, false},
		{"trusted proxy, 65 characters", []string{strings.Repeat("a", 65)}, true, false},
		{"trusted proxy, empty", []string{""}, true, false},
		{"trusted proxy, a space", []string{"req 1"}, true, false},
		{"trusted proxy, a slash", []string{"req/1"}, true, false},
		{"trusted proxy, a colon", []string{"trace:1"}, true, false},
		{"trusted proxy, non-ASCII", []string{"réq"}, true, false},
		{"trusted proxy, CR LF", []string{"a\r\nX-Evil: 1"}, true, false},
		{"trusted proxy, two values", []string{"a", "b"}, true, false},
		{"trusted proxy, none", nil, true, false},
		// A proxy that passes the client's header on: a secret pasted
		// there must not become the ID every log line carries.
		{"trusted proxy, a secret", []string{"kgs_m63qebRJPphpYxxJkcUEwaQi9KpBg1tZ5Jz17XOLkeX3KfDXQ"}, true, false},
	}
	for _, tt := range tests {
		if got := adoptRequestID(tt.incoming, tt.trusted); got != tt.adopt {
			t.Errorf("%s: adopt %v, want %v", tt.name, got, tt.adopt)
		}
	}
}

// fakeNow is a clock the limiter tests move by hand.
type fakeNow struct{ t time.Time }

func (f *fakeNow) now() time.Time { return f.t }

func TestLineLimiter(t *testing.T) {
	clock := &fakeNow{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	l := newLineLimiter(clock.now, 3, time.Second, 100)
	a := netip.MustParseAddr("198.51.100.1")
	b := netip.MustParseAddr("198.51.100.2")
	for i := range 3 {
		if ok, dropped, _ := l.allow(a); !ok || dropped != 0 {
			t.Fatalf("line %d of the burst: ok %v dropped %d", i+1, ok, dropped)
		}
	}
	for range 5 {
		if ok, _, _ := l.allow(a); ok {
			t.Fatal("a line over the burst was allowed")
		}
	}
	// Another source has a bucket of its own.
	if ok, _, _ := l.allow(b); !ok {
		t.Fatal("a second source was limited by the first one's lines")
	}
	clock.t = clock.t.Add(999 * time.Millisecond)
	if ok, _, _ := l.allow(a); ok {
		t.Fatal("a line was allowed before a token was back")
	}
	clock.t = clock.t.Add(time.Millisecond)
	ok, dropped, _ := l.allow(a)
	if !ok || dropped != 6 {
		t.Fatalf("after a second: ok %v dropped %d, want the 6 suppressed lines", ok, dropped)
	}
	if ok, _, _ := l.allow(a); ok {
		t.Fatal("one second gave back more than one line")
	}
	// Counts never said on a line go out with drain.
	if got := l.drain(); len(got) != 1 || got[0].source != "198.51.100.1" || got[0].dropped != 1 {
		t.Fatalf("drain = %+v", got)
	}
	if got := l.drain(); len(got) != 0 {
		t.Fatalf("drain said the counts twice: %+v", got)
	}
}

// IPv6 sources share a bucket per /64: whoever holds one address of a /64
// usually holds all of them.
func TestLineLimiterIPv6Prefix(t *testing.T) {
	clock := &fakeNow{t: time.Unix(0, 0)}
	l := newLineLimiter(clock.now, 2, time.Second, 100)
	for i, s := range []string{"2001:db8:1:2::1", "2001:db8:1:2::ffff"} {
		if ok, _, _ := l.allow(netip.MustParseAddr(s)); !ok {
			t.Fatalf("line %d refused", i)
		}
	}
	if ok, _, _ := l.allow(netip.MustParseAddr("2001:db8:1:2:abcd::9")); ok {
		t.Fatal("a third address of the same /64 got a fresh bucket")
	}
	if ok, _, _ := l.allow(netip.MustParseAddr("2001:db8:1:3::1")); !ok {
		t.Fatal("another /64 shares the first one's bucket")
	}
	if got := l.drain(); len(got) != 1 || got[0].source != "2001:db8:1:2::/64" {
		t.Fatalf("drain = %+v", got)
	}
}

// The map is bounded: when full, sources whose bucket has refilled are
// forgotten (their suppressed counts returned, to be said), and while it
// is still full new sources share one bucket.
func TestLineLimiterBounded(t *testing.T) {
	clock := &fakeNow{t: time.Unix(0, 0)}
	l := newLineLimiter(clock.now, 1, time.Second, 2)
	addr := func(i int) netip.Addr { return netip.AddrFrom4([4]byte{10, 0, 0, byte(i)}) }
	l.allow(addr(1))
	l.allow(addr(1)) // suppressed
	l.allow(addr(2))
	// Full, and nobody has refilled: sources 3 and 4 share the overflow.
	if ok, _, _ := l.allow(addr(3)); !ok {
		t.Fatal("the overflow bucket refused its first line")
	}
	if ok, _, _ := l.allow(addr(4)); ok {
		t.Fatal("a second new source got a line of its own while the map was full")
	}
	if len(l.buckets) != 2 {
		t.Fatalf("%d sources tracked, bound 2", len(l.buckets))
	}
	clock.t = clock.t.Add(time.Second)
	ok, _, forgotten := l.allow(addr(5))
	if !ok || len(l.buckets) != 1 {
		t.Fatalf("after a refill: ok %v, %d sources tracked", ok, len(l.buckets))
	}
	if len(forgotten) != 1 || forgotten[0].source != "10.0.0.1" || forgotten[0].dropped != 1 {
		t.Fatalf("forgotten = %+v, want 10.0.0.1's one suppressed line", forgotten)
	}
	if got := l.drain(); len(got) != 1 || got[0].source != "other" || got[0].dropped != 1 {
		t.Fatalf("drain = %+v, want the overflow's one line", got)
	}
}
