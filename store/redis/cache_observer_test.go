package redis_test

import (
	"context"
	"sync/atomic"
	"testing"

	"github.com/keygate/keygate/internal/redistest"
)

type countingObserver struct{ hit, miss, bypassed atomic.Int64 }

func (o *countingObserver) KeyCacheHit()      { o.hit.Add(1) }
func (o *countingObserver) KeyCacheMiss()     { o.miss.Add(1) }
func (o *countingObserver) KeyCacheBypassed() { o.bypassed.Add(1) }

// The key cache's observer hears a miss for each read that went to Redis
// and a hit for each read served from memory, matched against the HMGETs
// the client actually sent.
func TestKeyCacheObserver(t *testing.T) {
	redistest.Require(t)
	prefix := redistest.RandomPrefix(t, "")
	s, h, c := instance(t, prefix)
	redistest.Cleanup(t, c, prefix)
	obs := &countingObserver{}
	s.ObserveKeyCache(obs)
	ctx := context.Background()
	k := cacheKey(t, "observed")
	if err := s.CreateKey(ctx, k, 5); err != nil {
		t.Fatal(err)
	}
	before := h.n.Load()
	for range 4 {
		if _, err := s.GetKey(ctx, k.ClientID); err != nil {
			t.Fatal(err)
		}
	}
	reads := h.n.Load() - before
	if got := obs.miss.Load(); got != reads || got != 1 {
		t.Errorf("misses %d, HMGETs %d: want 1 each (the first read)", got, reads)
	}
	if got := obs.hit.Load(); got != 3 {
		t.Errorf("hits %d, want 3", got)
	}
	if got := obs.bypassed.Load(); got != 0 {
		t.Errorf("bypassed %d with a live cache, want 0", got)
	}

	s.ObserveKeyCache(nil) // stops reporting
	if _, err := s.GetKey(ctx, k.ClientID); err != nil {
		t.Fatal(err)
	}
	if obs.hit.Load() != 3 {
		t.Error("a read was reported after ObserveKeyCache(nil)")
	}
}
