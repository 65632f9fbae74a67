package redis

import (
	"fmt"
	"net/netip"
	"reflect"
	"runtime"
	"testing"
	"time"

	"github.com/keygate/keygate/store"
	"github.com/keygate/keygate/store/storetest"
)

// liveCache is a key cache as EnableKeyCache makes it, marked live, without
// Redis: for the bookkeeping of entries alone.
func liveCache() *keyCache { return liveCacheOf(0) }

// liveCacheOf is liveCache holding at most size records.
func liveCacheOf(size int) *keyCache {
	c := newKeyCache(time.Minute, size)
	c.live.Store(true)
	return c
}

func (c *keyCache) counts() (records, absences int) {
	c.absences.Range(func(string, *absentEntry) bool {
		absences++
		return true
	})
	return int(c.records.EntryCount()), absences
}

// TestKeyCacheAbsencesBounded: unknown IDs are cached in a bound of their
// own. A flood of them (three times the bound) neither evicts a cached
// record nor keeps a new one from being cached, holds at most
// keyCacheMaxAbsent absences (the newest), and leaves the records' count
// (the bound of records) untouched.
func TestKeyCacheAbsencesBounded(t *testing.T) {
	c := liveCache()
	now := time.Now()
	const records = 100
	for i := range records {
		c.put(store.Key{ClientID: fmt.Sprintf("rec-%d", i), SecretHash: []byte{1}}, c.epoch.Load(), now)
	}
	const flood = 3 * keyCacheMaxAbsent
	for i := range flood {
		c.putAbsent(fmt.Sprintf("guess-%d", i), c.absentEpoch.Load(), now)
	}
	for i := range records {
		if _, r := c.get(fmt.Sprintf("rec-%d", i), now); r != cachedKey {
			t.Fatalf("record rec-%d: %v after %d unknown IDs, want still cached", i, r, flood)
		}
	}
	if got, abs := c.counts(); got != records || abs != keyCacheMaxAbsent {
		t.Fatalf("%d records and %d absences cached, want %d and %d", got, abs, records, keyCacheMaxAbsent)
	}
	if _, r := c.get(fmt.Sprintf("guess-%d", flood-1), now); r != cachedAbsent {
		t.Fatalf("the newest absence: %v, want cached", r)
	}
	if _, r := c.get("guess-0", now); r != notCached {
		t.Fatalf("the oldest absence: %v, want gone", r)
	}
	// A new record is still cached in the middle of the flood.
	c.put(store.Key{ClientID: "late", SecretHash: []byte{1}}, c.epoch.Load(), now)
	if _, r := c.get("late", now); r != cachedKey {
		t.Fatalf("a record cached after the flood: %v, want cached", r)
	}
}

// TestKeyCacheRecordReplacesAbsence: a record found for an ID cached as
// absent (its key was created) replaces the absence, and the ring evicting
// that old absence later leaves the record alone.
func TestKeyCacheRecordReplacesAbsence(t *testing.T) {
	c := liveCache()
	now := time.Now()
	c.putAbsent("new-key", c.absentEpoch.Load(), now)
	if _, r := c.get("new-key", now); r != cachedAbsent {
		t.Fatalf("before: %v, want cached absent", r)
	}
	c.put(store.Key{ClientID: "new-key", SecretHash: []byte{1}}, c.epoch.Load(), now)
	for i := range keyCacheMaxAbsent {
		c.putAbsent(fmt.Sprintf("guess-%d", i), c.absentEpoch.Load(), now) // wraps the ring past new-key's slot
	}
	if k, r := c.get("new-key", now); r != cachedKey || k.ClientID != "new-key" {
		t.Fatalf("after the ring wrapped: %v %v, want the record", k.ClientID, r)
	}
	if recs, abs := c.counts(); recs != 1 || abs != keyCacheMaxAbsent {
		t.Fatalf("%d records and %d absences, want 1 and %d", recs, abs, keyCacheMaxAbsent)
	}
	// A creation between the read and the caching of an absence keeps it
	// out; a creation leaves a cached record alone.
	epoch := c.absentEpoch.Load()
	c.created("created-meanwhile")
	c.putAbsent("created-meanwhile", epoch, now)
	if _, r := c.get("created-meanwhile", now); r != notCached {
		t.Fatalf("an absence read before a creation was cached: %v", r)
	}
	c.created("new-key")
	if _, r := c.get("new-key", now); r != cachedKey {
		t.Fatalf("a creation message dropped a cached record: %v", r)
	}
}

// TestKeyCacheAbsenceCostsARecordsCopy: a cached absence does a cached
// record's work: the same allocations (the copy of the decoy).
func TestKeyCacheAbsenceCostsARecordsCopy(t *testing.T) {
	c := liveCache()
	now := time.Now()
	k := store.DecoyKey(false)
	k.ClientID = "kgc_known"
	c.put(k, c.epoch.Load(), now)
	c.putAbsent("kgc_unknown", c.absentEpoch.Load(), now)
	known := testing.AllocsPerRun(100, func() { c.get("kgc_known", now) })
	unknown := testing.AllocsPerRun(100, func() { c.get("kgc_unknown", now) })
	if known != unknown || known == 0 {
		t.Fatalf("a cached record allocates %v times, a cached absence %v: want equal (and not 0)", known, unknown)
	}
}

// TestKeyCacheRecordsEvictLeastRecentlyUsed: past its bound the cache
// keeps caching, evicting records not read recently: a record read every
// second survives a flood of ten times the bound in new records, the
// records of the flood's first seconds (never read again) are gone, and
// the latest ones are cached.
func TestKeyCacheRecordsEvictLeastRecentlyUsed(t *testing.T) {
	const size = 4096 // records of keyCacheRecordBytes: a 1 MiB buffer
	c := liveCacheOf(size)
	now := time.Unix(1_700_000_000, 0)
	put := func(id string) {
		c.put(store.Key{ClientID: id, TeamID: "team", Permissions: []string{"accounting_api"},
			SecretHash: make([]byte, 32), CreatedAt: now}, c.epoch.Load(), now)
	}
	put("hot")
	const perSecond = 1000
	for i := range 10 * size {
		if i%perSecond == 0 {
			now = now.Add(time.Second)
			if _, r := c.get("hot", now); r != cachedKey {
				t.Fatalf("the record read every second: %v after %d new records, want cached", r, i)
			}
		}
		put(fmt.Sprintf("flood-%d", i))
	}
	if _, r := c.get("hot", now); r != cachedKey {
		t.Fatalf("the record read every second: %v after the flood, want cached", r)
	}
	kept := 0
	for i := range perSecond {
		if _, r := c.get(fmt.Sprintf("flood-%d", i), now); r == cachedKey {
			kept++
		}
	}
	if kept != 0 {
		t.Errorf("%d of the first second's %d records still cached, want none", kept, perSecond)
	}
	for i := 10*size - 10; i < 10*size; i++ {
		if _, r := c.get(fmt.Sprintf("flood-%d", i), now); r != cachedKey {
			t.Errorf("flood-%d, among the last put: %v, want cached: a full cache must evict, not refuse", i, r)
		}
	}
	// The bound is bytes: what the records held take fits the buffer, and
	// most of the buffer is in use.
	v, err := encodeValue(store.Key{ClientID: "flood-10000", TeamID: "team", Permissions: []string{"accounting_api"},
		SecretHash: make([]byte, 32), CreatedAt: now}, now)
	if err != nil {
		t.Fatal(err)
	}
	const header = 24 // freecache's per entry
	entry := header + len("flood-10000") + len(v)
	if recs, _ := c.counts(); recs*entry > size*keyCacheRecordBytes || recs*entry < size*keyCacheRecordBytes/2 {
		t.Errorf("%d records of %d bytes cached in a buffer of %d bytes", recs, entry, size*keyCacheRecordBytes)
	}
}

// TestKeyCacheExpiredRecordIsAMiss: a record past the cache's age is a
// miss, and leaves the cache; one still young is a hit.
func TestKeyCacheExpiredRecordIsAMiss(t *testing.T) {
	c := liveCache() // records live a minute
	t0 := time.Unix(1_700_000_000, 0)
	c.put(store.Key{ClientID: "old", SecretHash: []byte{1}}, c.epoch.Load(), t0)
	c.put(store.Key{ClientID: "young", SecretHash: []byte{1}}, c.epoch.Load(), t0.Add(30*time.Second))
	now := t0.Add(time.Minute)
	if _, r := c.get("old", now); r != notCached {
		t.Fatalf("a record a minute old: %v, want a miss", r)
	}
	if _, r := c.get("young", now); r != cachedKey {
		t.Fatalf("a record 30 s old: %v, want a hit", r)
	}
	if recs, _ := c.counts(); recs != 1 {
		t.Fatalf("%d records held, want 1: the expired one must go", recs)
	}
	// A record from the future (a clock stepped back) is not trusted either.
	if _, r := c.get("young", t0); r != notCached {
		t.Fatalf("a record cached after now: %v, want a miss", r)
	}
}

// TestKeyCacheRecordsHoldNoPointers: cached records add no objects for
// the garbage collector to mark, whatever their number (the point of
// keeping them as bytes: the top of cache.go).
func TestKeyCacheRecordsHoldNoPointers(t *testing.T) {
	const n = 50_000
	var before, after runtime.MemStats
	c := liveCacheOf(n)
	now := time.Now()
	keys := make([]store.Key, n)
	for i := range keys {
		keys[i] = store.Key{ClientID: fmt.Sprintf("kgc_bench-%06d_%026d", i/5, i), TeamID: fmt.Sprintf("bench-%06d", i/5),
			Name: fmt.Sprintf("seed %d", i), Permissions: []string{"accounting_api"}, CreatedAt: now,
			SecretHash: make([]byte, 32), StatusIndex: int64(i + 1)}
	}
	runtime.GC()
	runtime.ReadMemStats(&before)
	for _, k := range keys {
		c.put(k, c.epoch.Load(), now)
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	runtime.KeepAlive(keys)
	if recs, _ := c.counts(); recs != n {
		t.Fatalf("%d records cached, want %d", recs, n)
	}
	if grew := int64(after.HeapObjects) - int64(before.HeapObjects); grew > n/100 {
		t.Fatalf("%d records cached added %d heap objects, want under %d", n, grew, n/100)
	}
}

// BenchmarkKeyCacheBytesPerRecord measures the heap a cached record costs
// (a key as `keygate seed` makes them: one permission, no policy), for the
// memory bound redis_key_cache_size sets (docs/scale.md): the buffer is
// allocated with the cache, so bytes/record is keyCacheRecordBytes and
// objects/record near 0.
//
//	go test -run '^$' -bench KeyCacheBytesPerRecord ./store/redis/
func BenchmarkKeyCacheBytesPerRecord(b *testing.B) {
	const n = 100_000
	for b.Loop() {
		var c *keyCache
		now := time.Now()
		storetest.ReportRetained(b, n, func() {
			c = liveCacheOf(n)
			for i := range n {
				k := store.Key{ClientID: fmt.Sprintf("kgc_bench-%06d_%026d", i/5, i), TeamID: fmt.Sprintf("bench-%06d", i/5),
					Name: fmt.Sprintf("seed %d", i), Permissions: []string{"accounting_api"}, CreatedAt: now,
					SecretHash: make([]byte, 32), StatusIndex: int64(i + 1)}
				c.put(k, c.epoch.Load(), now)
			}
		})
		if recs, _ := c.counts(); recs != n {
			b.Fatalf("%d of %d records cached", recs, n)
		}
	}
}

// BenchmarkKeyCacheHit is the token path's read of a cached record.
func BenchmarkKeyCacheHit(b *testing.B) {
	c := liveCache()
	now := time.Now()
	k := store.Key{ClientID: "kgc_bench-000001_00000000000000000000000001", TeamID: "bench-000001",
		Name: "seed 1", Permissions: []string{"accounting_api"}, CreatedAt: now, SecretHash: make([]byte, 32), StatusIndex: 1}
	c.put(k, c.epoch.Load(), now)
	b.ReportAllocs()
	for b.Loop() {
		if _, r := c.get(k.ClientID, now); r != cachedKey {
			b.Fatal(r)
		}
	}
}

// TestKeyCacheHandsOutCopies: a hit hands out the key put cached, a copy
// of its own: a write to it changes nothing cached. A put with a stale
// epoch caches nothing.
func TestKeyCacheHandsOutCopies(t *testing.T) {
	c := liveCache()
	now := time.Unix(1_700_000_000, 0).UTC()
	k := store.Key{ClientID: "kgc_abc", TeamID: "team-7", Name: "n",
		Permissions: []string{"accounting_api"}, SecretHash: []byte{1, 2, 3}, CreatedAt: now, StatusIndex: 7}
	c.put(k, c.epoch.Load(), now)
	hit, r := c.get("kgc_abc", now)
	if r != cachedKey || !reflect.DeepEqual(hit, k) {
		t.Fatalf("a hit: %v %+v, want %+v", r, hit, k)
	}
	hit.SecretHash[0] = 9
	hit.Permissions[0] = "changed"
	if again, _ := c.get("kgc_abc", now); !reflect.DeepEqual(again, k) {
		t.Error("a write to what a hit handed out changed the cached record")
	}

	stale := c.epoch.Load()
	c.invalidate("other")
	k.ClientID = "kgc_def"
	c.put(k, stale, now)
	if _, r := c.get("kgc_def", now); r != notCached {
		t.Fatalf("a put with a stale epoch: %v, want nothing cached", r)
	}
}

// TestKeyCacheRoundTripsEveryField: a key with every field set comes out
// of the cache as it went in, last use included and moved forward by
// touched (never back).
func TestKeyCacheRoundTripsEveryField(t *testing.T) {
	c := liveCache()
	now := time.Unix(1_700_000_000, 0).UTC()
	k := storetest.BulkKeys(t, 1, 1, 0)[0]
	k.Name, k.Role = "every field", ""
	k.LastUsedAt = now.Add(-time.Hour)
	k.PreviousSecretHash = []byte{9, 9, 9}
	k.PreviousSecretExpiresAt = now.Add(time.Hour)
	k.SecretRotatedAt = now.Add(-time.Minute)
	k.PreviousStatusIndex = 3
	k.ExpiresAt = now.Add(48 * time.Hour)
	k.TokenTTL = 5 * time.Minute
	k.Audiences = []string{"https://api.example.com/a"}
	k.AllowedCIDRs = []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}
	k.Metadata = []byte(`{"tenant":"acme"}`)
	k.TokenQuota = store.TokenQuota{Limit: 10, Per: "hour"}
	c.put(k, c.epoch.Load(), now)
	got, r := c.get(k.ClientID, now)
	if r != cachedKey || !reflect.DeepEqual(got, k) {
		t.Fatalf("cached\n %#v\nwant\n %#v", got, k)
	}
	c.touched(k.ClientID, now.Add(-2*time.Hour))
	if got, _ := c.get(k.ClientID, now); !got.LastUsedAt.Equal(k.LastUsedAt) {
		t.Errorf("an earlier write moved the last use back to %v", got.LastUsedAt)
	}
	c.touched(k.ClientID, now)
	if got, _ := c.get(k.ClientID, now); !got.LastUsedAt.Equal(now) {
		t.Errorf("last use %v after touched(%v)", got.LastUsedAt, now)
	}
	// touched never brings back a record an invalidation removed.
	c.invalidate(k.ClientID)
	c.touched(k.ClientID, now.Add(time.Minute))
	if _, r := c.get(k.ClientID, now); r != notCached {
		t.Errorf("after an invalidation and a touch: %v, want nothing cached", r)
	}
}
