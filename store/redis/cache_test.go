package redis_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/keygate/keygate/internal/redistest"
	"github.com/keygate/keygate/store"
	"github.com/keygate/keygate/store/redis"
	"github.com/keygate/keygate/store/storetest"
)

// The whole contract still holds with the key cache on.
func TestConformanceWithKeyCache(t *testing.T) {
	c := redistest.Require(t)
	storetest.Run(t, func(t *testing.T) store.Store {
		prefix := redistest.Prefix(t, c, "")
		s, err := redis.New(c, prefix, 2*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.EnableKeyCache(0, 0); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		waitCacheLive(t, s, c, prefix)
		return s
	})
}

// hmgetCounter counts HMGETs a client sends.
type hmgetCounter struct{ n atomic.Int64 }

func (h *hmgetCounter) DialHook(next goredis.DialHook) goredis.DialHook { return next }
func (h *hmgetCounter) ProcessHook(next goredis.ProcessHook) goredis.ProcessHook {
	return func(ctx context.Context, cmd goredis.Cmder) error {
		if cmd.Name() == "hmget" {
			h.n.Add(1)
		}
		return next(ctx, cmd)
	}
}

// ProcessPipelineHook counts a pipeline with HMGETs as one read: until
// the compact layout's migration is done, a key is read in both layouts in
// one pipeline.
func (h *hmgetCounter) ProcessPipelineHook(next goredis.ProcessPipelineHook) goredis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []goredis.Cmder) error {
		for _, c := range cmds {
			if c.Name() == "hmget" {
				h.n.Add(1)
				break
			}
		}
		return next(ctx, cmds)
	}
}

// instance is one keygate instance's store: its own client, its own cache.
func instance(t *testing.T, prefix string) (*redis.Store, *hmgetCounter, *goredis.Client) {
	t.Helper()
	return cachedInstance(t, prefix, time.Minute)
}

// cachedInstance is instance with a key cache of maxAge, its subscription
// live.
func cachedInstance(t *testing.T, prefix string, maxAge time.Duration) (*redis.Store, *hmgetCounter, *goredis.Client) {
	t.Helper()
	redistest.Require(t)
	opt, err := goredis.ParseURL(redistest.URL())
	if err != nil {
		t.Fatal(err)
	}
	c := goredis.NewClient(opt)
	h := &hmgetCounter{}
	c.AddHook(h)
	s, err := redis.New(c, prefix, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.EnableKeyCache(maxAge, 0); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close(); c.Close() })
	waitCacheLive(t, s, c, prefix)
	return s, h, c
}

// waitCacheLive waits until the store's invalidation subscription is up
// (a subscriber shows in PUBSUB NUMSUB).
func waitCacheLive(t *testing.T, s *redis.Store, c goredis.UniversalClient, prefix string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if s.KeyCacheLive() {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatal("key cache subscription did not come up within 5 s")
}

func cacheKey(t *testing.T, team string) store.Key {
	t.Helper()
	return store.Key{
		ClientID: storetest.ID(team, "cached"), TeamID: team, Name: "cached",
		Permissions: []string{"accounting_api"}, CreatedAt: time.Now().UTC(),
		SecretHash: []byte("0123456789abcdef0123456789abcdef"), StatusIndex: 1,
	}
}

// TestKeyCacheInvalidationAcrossInstances: B serves a key from its cache
// (no round trip), and refuses it within 1 s of A deleting it; an update
// through A (a rotation) reaches B just as fast.
func TestKeyCacheInvalidationAcrossInstances(t *testing.T) {
	redistest.Require(t)
	prefix := redistest.RandomPrefix(t, "")
	a, _, ca := instance(t, prefix)
	redistest.Cleanup(t, ca, prefix)
	b, hb, _ := instance(t, prefix)
	ctx := context.Background()

	k := cacheKey(t, "acme")
	if err := a.CreateKey(ctx, k, 5); err != nil {
		t.Fatal(err)
	}
	if _, err := b.GetKey(ctx, k.ClientID); err != nil {
		t.Fatal(err)
	}
	before := hb.n.Load()
	for i := 0; i < 50; i++ {
		got, err := b.GetKey(ctx, k.ClientID)
		if err != nil || string(got.SecretHash) != string(k.SecretHash) {
			t.Fatalf("cached GetKey: %v, %v", got, err)
		}
	}
	if n := hb.n.Load() - before; n != 0 {
		t.Fatalf("50 GetKeys of a cached key sent %d HMGETs, want 0", n)
	}

	// A rotation through A: B sees the new hash within 1 s.
	newHash := []byte("fedcba9876543210fedcba9876543210")
	if _, err := a.UpdateKey(ctx, k.ClientID, func(c store.Key) (store.Key, error) {
		c.SecretHash = newHash
		return c, nil
	}); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	for {
		got, err := b.GetKey(ctx, k.ClientID)
		if err == nil && string(got.SecretHash) == string(newHash) {
			break
		}
		if time.Since(start) > time.Second {
			t.Fatalf("B still serves the old secret hash %v after the update", time.Since(start))
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Logf("update reached B's cache in %v", time.Since(start))

	// A deletion through A: B refuses the key within 1 s.
	if _, err := b.GetKey(ctx, k.ClientID); err != nil { // cache it again
		t.Fatal(err)
	}
	if err := a.DeleteKey(ctx, "acme", k.ClientID); err != nil {
		t.Fatal(err)
	}
	start = time.Now()
	for {
		_, err := b.GetKey(ctx, k.ClientID)
		if errors.Is(err, store.ErrNotFound) {
			break
		}
		if time.Since(start) > time.Second {
			t.Fatalf("B still finds the key %v after A deleted it (err %v)", time.Since(start), err)
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Logf("deletion reached B in %v", time.Since(start))
}

// TestKeyCacheBypassedWithoutSubscription: when the invalidation
// subscription breaks, the cache is emptied and not used until Redis
// confirms the subscription again — so no change can be missed.
func TestKeyCacheBypassedWithoutSubscription(t *testing.T) {
	redistest.Require(t)
	prefix := redistest.RandomPrefix(t, "")
	b, hb, cb := instance(t, prefix)
	redistest.Cleanup(t, cb, prefix)
	ctx := context.Background()
	k := cacheKey(t, "beta")
	if err := b.CreateKey(ctx, k, 5); err != nil {
		t.Fatal(err)
	}
	if _, err := b.GetKey(ctx, k.ClientID); err != nil {
		t.Fatal(err)
	}
	// Cut every pub/sub connection of the test Redis (ours among them).
	if err := cb.ClientKillByFilter(ctx, "TYPE", "pubsub").Err(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(3 * time.Second)
	for b.KeyCacheLive() && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	// While down (or just resubscribed, which empties the cache), the next
	// read must go to Redis.
	before := hb.n.Load()
	if _, err := b.GetKey(ctx, k.ClientID); err != nil {
		t.Fatal(err)
	}
	if hb.n.Load() == before {
		t.Fatal("GetKey after the subscription broke was served from the cache")
	}
	waitCacheLive(t, b, cb, prefix)
	if _, err := b.GetKey(ctx, k.ClientID); err != nil {
		t.Fatal(err)
	}
	before = hb.n.Load()
	if _, err := b.GetKey(ctx, k.ClientID); err != nil {
		t.Fatal(err)
	}
	if hb.n.Load() != before {
		t.Fatal("cache not used again after resubscribing")
	}
}

// TestKeyCacheEntriesExpire: past maxAge an entry is read from Redis again
// (and expiring it must not break anything: it once panicked).
func TestKeyCacheEntriesExpire(t *testing.T) {
	prefix := redistest.RandomPrefix(t, "")
	s, h, c := cachedInstance(t, prefix, 100*time.Millisecond)
	redistest.Cleanup(t, c, prefix)
	ctx := context.Background()
	k := cacheKey(t, "gamma")
	if err := s.CreateKey(ctx, k, 5); err != nil {
		t.Fatal(err)
	}
	for round := 0; round < 3; round++ {
		before := h.n.Load()
		for i := 0; i < 5; i++ {
			if _, err := s.GetKey(ctx, k.ClientID); err != nil {
				t.Fatal(err)
			}
		}
		if n := h.n.Load() - before; n != 1 {
			t.Fatalf("round %d: %d HMGETs for 5 reads within maxAge, want 1", round, n)
		}
		time.Sleep(150 * time.Millisecond) // let the entry expire
	}
}

// TestKeyCacheAbsenceInvalidatedByCreate: an unknown ID is cached as
// absent (repeated lookups send no HMGET, as for a cached record), and a
// key created with that ID — on another instance, one by one or in bulk,
// or on this one — is found within 1 s (as soon as the creation's
// invalidation arrives; at once on the instance that created it).
func TestKeyCacheAbsenceInvalidatedByCreate(t *testing.T) {
	redistest.Require(t)
	prefix := redistest.RandomPrefix(t, "")
	a, _, ca := instance(t, prefix)
	redistest.Cleanup(t, ca, prefix)
	b, hb, _ := instance(t, prefix)
	ctx := context.Background()

	cacheAbsent := func(s *redis.Store, h *hmgetCounter, id string) {
		t.Helper()
		for range 2 { // the first reads Redis and caches the absence
			if _, err := s.GetKey(ctx, id); !errors.Is(err, store.ErrNotFound) {
				t.Fatalf("GetKey of the unknown %s: %v, want ErrNotFound", id, err)
			}
		}
		before := h.n.Load()
		for range 50 {
			if _, err := s.GetKey(ctx, id); !errors.Is(err, store.ErrNotFound) {
				t.Fatalf("GetKey of the unknown %s: %v, want ErrNotFound", id, err)
			}
		}
		if n := h.n.Load() - before; n != 0 {
			t.Fatalf("50 GetKeys of an unknown ID sent %d HMGETs, want 0 (its absence cached, like a record)", n)
		}
	}
	foundWithin := func(s *redis.Store, id string, bound time.Duration) {
		t.Helper()
		start := time.Now()
		for {
			k, err := s.GetKey(ctx, id)
			if err == nil && k.ClientID == id {
				t.Logf("%s found %v after its creation", id, time.Since(start))
				return
			}
			if time.Since(start) > bound {
				t.Fatalf("%s still not found %v after its creation (err %v)", id, time.Since(start), err)
			}
			time.Sleep(2 * time.Millisecond)
		}
	}

	one := cacheKey(t, "acme")
	cacheAbsent(b, hb, one.ClientID)
	if err := a.CreateKey(ctx, one, 5); err != nil {
		t.Fatal(err)
	}
	foundWithin(b, one.ClientID, time.Second)

	bulk := cacheKey(t, "bulk")
	cacheAbsent(b, hb, bulk.ClientID)
	if err := a.CreateKeys(ctx, []store.Key{bulk}); err != nil {
		t.Fatal(err)
	}
	foundWithin(b, bulk.ClientID, time.Second)

	own := cacheKey(t, "own")
	cacheAbsent(b, hb, own.ClientID)
	if err := b.CreateKey(ctx, own, 5); err != nil {
		t.Fatal(err)
	}
	if _, err := b.GetKey(ctx, own.ClientID); err != nil {
		t.Fatalf("the instance that created %s does not find it at once: %v", own.ClientID, err)
	}
}

// TestKeyCacheAgeByTopology: a key cache age past a minute is refused on
// Cluster and Sentinel, where an invalidation can be lost unnoticed, before
// Open connects or writes anything (the seeds here answer nothing, so a
// connection attempt would fail otherwise); a single node takes an hour
// and serves from the cache, then drops a key deleted on another instance
// at once.
func TestKeyCacheAgeByTopology(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, url := range []string{
		"redis://127.0.0.1:1/0?addr=127.0.0.1:2&addr=127.0.0.1:3",                  // Cluster
		"redis://127.0.0.1:1/0?master_name=main&addr=127.0.0.1:2",                  // Sentinel
		"redis://127.0.0.1:1/0?master_name=main&addr=127.0.0.1:2&addr=127.0.0.1:3", // Sentinel
	} {
		_, err := redis.Open(ctx, redis.Options{URL: url, KeyCache: redis.MaxReplicatedKeyCacheAge + time.Second})
		if !errors.Is(err, redis.ErrKeyCacheAge) {
			t.Errorf("Open %s with a key cache of 61s: %v, want ErrKeyCacheAge", url, err)
		}
	}
	for name, c := range map[string]goredis.UniversalClient{
		"cluster":  goredis.NewClusterClient(&goredis.ClusterOptions{Addrs: []string{"127.0.0.1:1"}}),
		"sentinel": goredis.NewFailoverClient(&goredis.FailoverOptions{MasterName: "main", SentinelAddrs: []string{"127.0.0.1:1"}}),
	} {
		s, err := redis.New(c, "kg:", time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.EnableKeyCache(2*time.Minute, 0); !errors.Is(err, redis.ErrKeyCacheAge) {
			t.Errorf("%s: EnableKeyCache(2m): %v, want ErrKeyCacheAge", name, err)
		}
		if s.KeyCacheLive() {
			t.Errorf("%s: the refused cache is live", name)
		}
		c.Close()
	}

	prefix := redistest.RandomPrefix(t, "")
	s, h, c := cachedInstance(t, prefix, time.Hour) // fails the test if refused
	redistest.Cleanup(t, c, prefix)
	k := cacheKey(t, "delta")
	if err := s.CreateKey(ctx, k, 5); err != nil {
		t.Fatal(err)
	}
	before := h.n.Load()
	for i := 0; i < 5; i++ {
		if _, err := s.GetKey(ctx, k.ClientID); err != nil {
			t.Fatal(err)
		}
	}
	if n := h.n.Load() - before; n != 1 {
		t.Fatalf("%d HMGETs for 5 reads, want 1 (the rest from the cache)", n)
	}
	// Deleted through another instance: only its message reaches this one.
	other, _, _ := instance(t, prefix)
	if err := other.DeleteKey(ctx, k.TeamID, k.ClientID); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(time.Second); ; time.Sleep(5 * time.Millisecond) {
		_, err := s.GetKey(ctx, k.ClientID)
		if errors.Is(err, store.ErrNotFound) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("a deleted key still read after 1s with a 1h cache: %v", err)
		}
	}
}

// TestKeyCacheKeepsRecordsThroughOwnLastUseWrites: a last use this
// instance writes leaves its cached record in place (no HMGET after it)
// and shows in it, never moving back; another instance, which was sent no
// message, keeps the last use it read.
func TestKeyCacheKeepsRecordsThroughOwnLastUseWrites(t *testing.T) {
	prefix := redistest.RandomPrefix(t, "")
	a, ha, c := instance(t, prefix)
	redistest.Cleanup(t, c, prefix)
	b, _, _ := instance(t, prefix)
	ctx := context.Background()
	k := cacheKey(t, "epsilon")
	if err := a.CreateKey(ctx, k, 5); err != nil {
		t.Fatal(err)
	}
	for _, s := range []*redis.Store{a, b} { // both cache it, unused
		if got, err := s.GetKey(ctx, k.ClientID); err != nil || !got.LastUsedAt.IsZero() {
			t.Fatalf("GetKey: %v, last used %v; want never", err, got.LastUsedAt)
		}
	}
	t1 := time.Now().UTC().Truncate(time.Millisecond)
	before := ha.n.Load()
	for i, at := range []time.Time{t1, t1.Add(-time.Minute)} { // the second is older: ignored
		if err := a.TouchKeys(ctx, map[string]time.Time{k.ClientID: at}); err != nil {
			t.Fatal(err)
		}
		got, err := a.GetKey(ctx, k.ClientID)
		if err != nil || !got.LastUsedAt.Equal(t1) {
			t.Fatalf("write %d: GetKey: %v, last used %v; want %v", i, err, got.LastUsedAt, t1)
		}
	}
	if n := ha.n.Load() - before; n != 0 {
		t.Fatalf("%d HMGETs after the instance's own last-use writes, want 0 (the record stays cached)", n)
	}
	if got, err := b.GetKey(ctx, k.ClientID); err != nil || !got.LastUsedAt.IsZero() {
		t.Fatalf("the other instance: %v, last used %v; want its cached copy (never used)", err, got.LastUsedAt)
	}
	fresh, err := redis.New(c, prefix, 2*time.Second) // no cache: what Redis holds
	if err != nil {
		t.Fatal(err)
	}
	if got, err := fresh.GetKey(ctx, k.ClientID); err != nil || !got.LastUsedAt.Equal(t1) {
		t.Fatalf("Redis: %v, last used %v; want %v", err, got.LastUsedAt, t1)
	}
}
