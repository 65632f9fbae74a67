package redis_test

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/keygate/keygate/internal/redistest"
	"github.com/keygate/keygate/store"
	"github.com/keygate/keygate/store/redis"
)

var _ store.SharedThrottle = (*redis.Store)(nil)

// TestSharedThrottleBuckets: failures added through two clients (two
// instances) fill one GCRA bucket on the caller's clock; exactly the
// failure that empties it hears Started, once per episode; the TAT keeps
// microseconds across the Lua doubles; the key expires when the bucket is
// full again; and buckets of one call are independent.
func TestSharedThrottleBuckets(t *testing.T) {
	c, prefix, a, b := twoInstances(t)
	ctx := context.Background()
	// Burst 3 at one a second: threshold 2 s, span 3 s.
	pair := store.ThrottleFailure{Bucket: "p/192.0.2.1/abc", Every: time.Second, Threshold: 2 * time.Second, Span: 3 * time.Second}
	src := store.ThrottleFailure{Bucket: "s/192.0.2.1", Every: 100 * time.Millisecond, Threshold: 19 * 100 * time.Millisecond, Span: 2 * time.Second}
	now := time.Date(2026, 12, 4, 10, 0, 0, 123456000, time.UTC)
	var started []bool
	for i, st := range []*redis.Store{a, b, a, b} {
		got, err := st.AddThrottleFailures(ctx, now, "192.0.2.1", []store.ThrottleFailure{pair, src})
		if err != nil || len(got) != 2 {
			t.Fatalf("failure %d: %v, %v", i+1, got, err)
		}
		if want := now.Add(time.Duration(i+1) * time.Second); !got[0].TAT.Equal(want) {
			t.Fatalf("failure %d: pair TAT %v, want %v (exact to the µs)", i+1, got[0].TAT, want)
		}
		if want := now.Add(time.Duration(i+1) * 100 * time.Millisecond); !got[1].TAT.Equal(want) || got[1].Started {
			t.Fatalf("failure %d: source bucket %+v, want TAT %v and not empty", i+1, got[1], want)
		}
		started = append(started, got[0].Started)
	}
	// The 3rd failure spends the burst of 3 (the next request is refused):
	// it alone starts the episode; the 4th, had it come, is the same one.
	if want := []bool{false, false, true, false}; !slices.Equal(started, want) {
		t.Fatalf("Started per failure %v, want %v", started, want)
	}
	// Still empty a little later: the same episode, not started again.
	got, err := b.AddThrottleFailures(ctx, now.Add(500*time.Millisecond), "192.0.2.1", []store.ThrottleFailure{pair})
	if err != nil || got[0].Started {
		t.Fatalf("a failure within the episode: %+v, %v; want not started", got, err)
	}
	ttl, err := c.PTTL(ctx, prefix+"{t:192.0.2.1}:throttle:"+pair.Bucket).Result()
	// TAT is now+5s, the episode ends at TAT−threshold+span = now+6s: the
	// key lives 5.5 s from this caller's now (+1 s margin).
	if err != nil || ttl < 6*time.Second || ttl > 7*time.Second {
		t.Fatalf("bucket time to live %v (%v), want 6–7 s", ttl, err)
	}
	// After the episode and a full refill, the next throttle is a new
	// episode, heard once.
	later := now.Add(time.Minute)
	var n int
	for range 4 {
		got, err := a.AddThrottleFailures(ctx, later, "192.0.2.1", []store.ThrottleFailure{pair})
		if err != nil {
			t.Fatal(err)
		}
		if got[0].Started {
			n++
		}
	}
	if n != 1 {
		t.Fatalf("%d starts in the second episode, want 1", n)
	}
}

// TestSharedThrottleStartedOnce: many instances failing at once on one
// bucket hear Started exactly once between them (the script is atomic).
func TestSharedThrottleStartedOnce(t *testing.T) {
	c := redistest.Require(t)
	prefix := redistest.Prefix(t, c, "")
	now := time.Date(2026, 12, 4, 10, 0, 0, 0, time.UTC)
	f := store.ThrottleFailure{Bucket: "p/2001:db8::/7", Every: time.Second, Threshold: 9 * time.Second, Span: 10 * time.Second}
	var fails sync.WaitGroup
	var mu sync.Mutex
	n := 0
	for range 4 {
		st, err := redis.New(redistest.NewClient(t), prefix, 2*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		fails.Add(1)
		go func() {
			defer fails.Done()
			for range 10 {
				got, err := st.AddThrottleFailures(context.Background(), now, "2001:db8::", []store.ThrottleFailure{f})
				if err != nil {
					t.Error(err)
					return
				}
				if got[0].Started {
					mu.Lock()
					n++
					mu.Unlock()
				}
			}
		}()
	}
	fails.Wait()
	if n != 1 {
		t.Fatalf("40 failures from 4 instances against a burst of 10: %d starts, want 1", n)
	}
}

// TestThrottleAnnouncements: an announcement reaches every listening
// instance, the announcing one included, with its bucket and time to the
// nanosecond; a message in another form on the channel is ignored; a
// listener returns when its context ends.
func TestThrottleAnnouncements(t *testing.T) {
	c, prefix, a, b := twoInstances(t)
	type heard struct {
		bucket string
		until  time.Time
	}
	ctx, cancel := context.WithCancel(context.Background())
	var done sync.WaitGroup
	chans := make([]chan heard, 2)
	for i, st := range []*redis.Store{a, b} {
		ch := make(chan heard, 4)
		chans[i] = ch
		done.Add(1)
		go func() {
			defer done.Done()
			st.ListenThrottles(ctx, func(bucket string, until time.Time) { ch <- heard{bucket, until} })
		}()
	}
	channel := prefix + "{kg}:throttle"
	deadline := time.Now().Add(5 * time.Second)
	for {
		n, err := c.PubSubNumSub(ctx, channel).Result()
		if err == nil && n[channel] == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("two listeners not subscribed within 5 s: %v, %v", n, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := c.Publish(ctx, channel, "not an announcement").Err(); err != nil {
		t.Fatal(err)
	}
	until := time.Date(2026, 12, 4, 10, 0, 3, 123456789, time.UTC)
	if err := a.AnnounceThrottle(ctx, "p/192.0.2.1/abc", until); err != nil {
		t.Fatal(err)
	}
	for i, ch := range chans {
		select {
		case h := <-ch:
			if h.bucket != "p/192.0.2.1/abc" || !h.until.Equal(until) {
				t.Fatalf("listener %d heard %+v, want the announcement", i, h)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("listener %d heard nothing within 5 s", i)
		}
		if len(ch) != 0 {
			t.Fatalf("listener %d heard more than the announcement (the junk message was applied)", i)
		}
	}
	cancel()
	done.Wait()
}

// twoInstances is two stores on one fresh prefix, each with a client of
// its own (two keygate instances), and the first one's client.
func twoInstances(t *testing.T) (c goredis.UniversalClient, prefix string, a, b *redis.Store) {
	t.Helper()
	rc := redistest.Require(t)
	prefix = redistest.Prefix(t, rc, "")
	a, err := redis.New(rc, prefix, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	b, err = redis.New(redistest.NewClient(t), prefix, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	return rc, prefix, a, b
}
