package redis_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/keygate/keygate/quota"
	"github.com/keygate/keygate/store/redis"
)

var _ quota.Shared = (*redis.Store)(nil)

// TestAddQuota: the shared quota counter adds across two stores (two
// instances' clients), gets its time to live once, when it is made, and
// two Limiters on it never allow more than an enforced limit together.
func TestAddQuota(t *testing.T) {
	c, prefix, a, b := twoInstances(t)
	ctx := context.Background()
	if v, err := a.AddQuota(ctx, "k:x:1", 10, time.Hour); err != nil || v != 10 {
		t.Fatalf("first add: %d, %v", v, err)
	}
	if v, err := b.AddQuota(ctx, "k:x:1", 5, time.Minute); err != nil || v != 15 {
		t.Fatalf("second add, other client: %d, %v", v, err)
	}
	ttl, err := c.PTTL(ctx, prefix+"quota:k:x:1").Result()
	if err != nil || ttl <= 59*time.Minute || ttl > time.Hour {
		t.Fatalf("time to live %v (%v): want the first add's hour, not renewed", ttl, err)
	}

	now := time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)
	p := quota.Policy{Limit: 100, Per: quota.Hour, Mode: quota.Enforce}
	la, lb := quota.New(quota.Options{Shared: a, Lease: 7}), quota.New(quota.Options{Shared: b, Lease: 7})
	var mu sync.Mutex
	allowed := 0
	var wg sync.WaitGroup
	for _, l := range []*quota.Limiter{la, lb, la, lb} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			n := 0
			for range 60 {
				if l.Take(ctx, quota.PerKey, "kgc_shared", p, now).Allowed {
					n++
				}
			}
			mu.Lock()
			allowed += n
			mu.Unlock()
		}()
	}
	wg.Wait()
	// 240 asked of a limit of 100: at most 100, and at most one lease of
	// each instance (6 tokens) stranded.
	if allowed > 100 || allowed < 100-2*6 {
		t.Fatalf("%d tokens allowed by two instances, want 88..100", allowed)
	}
}
