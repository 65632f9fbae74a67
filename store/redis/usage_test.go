package redis_test

import (
	"context"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/keygate/keygate/credential"
	"github.com/keygate/keygate/internal/redistest"
	"github.com/keygate/keygate/store"
	"github.com/keygate/keygate/store/redis"
	"github.com/keygate/keygate/store/storetest"
)

// TestUsageBucketsExpire checks what the conformance suite cannot see:
// Redis itself drops a bucket when its retention ends, because AddUsage
// gives each one a time to live computed from the writer's clock (here an
// injected one, far from the real time).
func TestUsageBucketsExpire(t *testing.T) {
	c := redistest.Require(t)
	prefix := redistest.Prefix(t, c, "")
	s, err := redis.New(c, prefix, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	hour := time.Date(2024, 5, 1, 10, 0, 0, 0, time.UTC)
	now := hour.Add(90 * time.Minute) // half an hour into the next hour
	err = s.AddUsage(ctx, now, []store.UsageDelta{{TeamID: "team-a", ClientID: storetest.ID("team-a", "k1"), Hour: hour, Tokens: 3}})
	if err != nil {
		t.Fatal(err)
	}
	tag := "{" + credential.TeamTag("team-a") + "}"
	for name, want := range map[string]time.Duration{
		prefix + tag + ":usage:h:" + itoa(hour.Unix()) + ":team-a":                                        hour.Add(time.Hour + store.UsageHourRetention).Sub(now),
		prefix + tag + ":usage:d:" + itoa(time.Date(2024, 5, 1, 0, 0, 0, 0, time.UTC).Unix()) + ":team-a": time.Date(2024, 5, 2, 0, 0, 0, 0, time.UTC).Add(store.UsageDayRetention).Sub(now),
	} {
		ttl, err := c.PTTL(ctx, name).Result()
		if err != nil {
			t.Fatal(err)
		}
		if ttl > want || ttl < want-5*time.Second {
			t.Errorf("%s: time to live %v, want %v", name, ttl, want)
		}
		if v, err := c.HGet(ctx, name, "t:"+storetest.ID("team-a", "k1")).Result(); err != nil || v != "3" {
			t.Errorf("%s: tokens %q, %v; want 3", name, v, err)
		}
	}
}

// TestUsageDoesNotInvalidateKeyCache: writing usage publishes nothing on
// the key-change channel, so no instance drops a cached key because the key
// was used.
func TestUsageDoesNotInvalidateKeyCache(t *testing.T) {
	c := redistest.Require(t)
	prefix := redistest.Prefix(t, c, "")
	s, err := redis.New(c, prefix, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	sub := c.Subscribe(ctx, prefix+"{kg}:keys:changed")
	defer sub.Close()
	if _, err := sub.Receive(ctx); err != nil { // the subscription confirmation
		t.Fatal(err)
	}
	now := time.Now()
	id := storetest.ID("team-a", "k1")
	if err := s.AddUsage(ctx, now, []store.UsageDelta{{TeamID: "team-a", ClientID: id, Hour: now, Tokens: 1, Failures: 1}}); err != nil {
		t.Fatal(err)
	}
	// A marker published after AddUsage returned: the first message seen
	// must be it, not an invalidation sent by AddUsage.
	if err := c.Publish(ctx, prefix+"{kg}:keys:changed", "marker").Err(); err != nil {
		t.Fatal(err)
	}
	rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	msg, err := sub.ReceiveMessage(rctx)
	if err != nil {
		t.Fatal(err)
	}
	if msg.Payload != "marker" {
		t.Fatalf("AddUsage published %q on the key-change channel", msg.Payload)
	}
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

// TestUsageAddsUpAcrossInstances: two stores with their own connections
// (two keygate instances) adding to the same buckets at once lose nothing.
func TestUsageAddsUpAcrossInstances(t *testing.T) {
	c := redistest.Require(t)
	prefix := redistest.Prefix(t, c, "")
	c2 := redistest.NewClient(t)
	a, err := redis.New(c, prefix, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	b, err := redis.New(c2, prefix, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	now := time.Now()
	id := storetest.ID("team-a", "k1")
	const calls = 50
	errs := make(chan error, 2*calls)
	var wg sync.WaitGroup
	for _, s := range []*redis.Store{a, b} {
		wg.Go(func() {
			for range calls {
				errs <- s.AddUsage(ctx, now, []store.UsageDelta{{TeamID: "team-a", ClientID: id, Hour: now, Tokens: 2, Failures: 1}})
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	for _, s := range []*redis.Store{a, b} {
		for _, g := range []store.Granularity{store.Hour, store.Day} {
			got, err := s.Usage(ctx, store.UsageQuery{TeamID: "team-a", Granularity: g, From: g.Truncate(now), To: now.Add(time.Second), Now: now})
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != 1 || got[0].Tokens != 4*calls || got[0].Failures != 2*calls {
				t.Fatalf("by %v: %+v, want %d tokens and %d failures", g, got, 4*calls, 2*calls)
			}
		}
	}
}
