package redis

import (
	"context"
	"fmt"
	"reflect"
	"runtime"
	"strings"
	"testing"
	"time"
	"unsafe"

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
	c.entries.Range(func(_ string, v any) bool {
		if _, ok := v.(*absentEntry); ok {
			absences++
		} else {
			records++
		}
		return true
	})
	return records, absences
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
	if n := c.size.Load(); n != records {
		t.Fatalf("size %d, want %d: absences must not count against the records' bound", n, records)
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
	if n := c.size.Load(); n != 1 {
		t.Fatalf("size %d, want 1", n)
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

// TestKeyCacheRecordsEvictLeastRecentlyUsed: past its size the cache keeps
// caching, evicting records not read since the clock hand last passed:
// recently read records survive a wave of new ones, and the count never
// exceeds the size.
func TestKeyCacheRecordsEvictLeastRecentlyUsed(t *testing.T) {
	const size = 100
	c := liveCacheOf(size)
	now := time.Now()
	put := func(id string) {
		c.put(store.Key{ClientID: id, SecretHash: []byte{1}}, c.epoch.Load(), now)
	}
	for i := range size {
		put(fmt.Sprintf("old-%d", i))
	}
	for i := range size / 2 { // the first half is in use
		if _, r := c.get(fmt.Sprintf("old-%d", i), now); r != cachedKey {
			t.Fatalf("old-%d: %v, want cached", i, r)
		}
	}
	for i := range size / 2 {
		put(fmt.Sprintf("new-%d", i))
		if recs, _ := c.counts(); recs > size {
			t.Fatalf("%d records cached, size %d", recs, size)
		}
	}
	for i := range size / 2 {
		if _, r := c.get(fmt.Sprintf("new-%d", i), now); r != cachedKey {
			t.Errorf("new-%d: %v, want cached: a full cache must evict, not refuse", i, r)
		}
		if _, r := c.get(fmt.Sprintf("old-%d", i), now); r != cachedKey {
			t.Errorf("old-%d, read before the wave: %v, want still cached", i, r)
		}
		if _, r := c.get(fmt.Sprintf("old-%d", size/2+i), now); r != notCached {
			t.Errorf("old-%d, never read: %v, want evicted", size/2+i, r)
		}
	}
	// Ten times the size of distinct records: still at most size, and the
	// count the cache keeps agrees with what it holds.
	for i := range 10 * size {
		put(fmt.Sprintf("flood-%d", i))
	}
	recs, _ := c.counts()
	if recs > size || int64(recs) != c.size.Load() {
		t.Fatalf("%d records cached (size counter %d), bound %d", recs, c.size.Load(), size)
	}
	// An invalidated record's slot is taken without disturbing the record
	// cached again under the same ID.
	put("again")
	c.invalidate("again")
	put("again")
	for i := range 2 * size {
		if i%3 == 0 {
			c.get("again", now)
		}
		put(fmt.Sprintf("more-%d", i))
	}
	if _, r := c.get("again", now); r != cachedKey {
		t.Errorf("a record read throughout was evicted: %v", r)
	}
}

// TestKeyCacheSweepsExpiredRecords: records past the cache's age leave it,
// slot and all, as placements go on, without waiting to be displaced: a
// cache sized far beyond the keys read within its age holds those keys,
// not its size in expired records. Records still young stay.
func TestKeyCacheSweepsExpiredRecords(t *testing.T) {
	const size = 1000
	c := liveCacheOf(size) // records live a minute
	t0 := time.Now()
	put := func(id string, at time.Time) {
		c.put(store.Key{ClientID: id, SecretHash: []byte{1}}, c.epoch.Load(), at)
	}
	for i := range size - 10 {
		put(fmt.Sprintf("old-%d", i), t0)
	}
	young := t0.Add(90 * time.Second)
	for i := range 10 {
		put(fmt.Sprintf("young-%d", i), young)
	}
	// Two minutes on, enough placements to take the sweep round the clock
	// once: a tenth of the size in new records.
	now := t0.Add(2 * time.Minute)
	for i := range size/sweepPerPlace + 1 {
		put(fmt.Sprintf("new-%d", i), now)
	}
	held := 0
	for i := range c.records {
		if e := c.records[i].Load(); e != nil {
			held++
			if e.at.Equal(t0) {
				t.Fatalf("slot %d still holds %s, expired a minute ago", i, e.clientID)
			}
		}
	}
	recs, _ := c.counts()
	want := 10 + size/sweepPerPlace + 1
	if held != want || recs != want || c.size.Load() != int64(want) {
		t.Errorf("%d slots held, %d records, size counter %d; want %d (the young and the new)", held, recs, c.size.Load(), want)
	}
	for i := range 10 {
		if _, r := c.get(fmt.Sprintf("young-%d", i), now); r != cachedKey {
			t.Errorf("young-%d, 30 s old: %v, want cached", i, r)
		}
	}
}

// BenchmarkKeyCacheBytesPerRecord measures the heap a cached record costs
// (a key as `keygate seed` makes them: one permission, no policy), for the
// memory bound redis_key_cache_size sets (docs/scale.md):
//
//	go test -run '^$' -bench KeyCacheBytesPerRecord ./store/redis/
func BenchmarkKeyCacheBytesPerRecord(b *testing.B) {
	const n = 100_000
	for b.Loop() {
		c := liveCacheOf(n)
		now := time.Now()
		storetest.ReportRetained(b, n, func() {
			// Each record's strings made here, as decoding a reply makes
			// them: the cache keeps them.
			for i := range n {
				k := store.Key{ClientID: fmt.Sprintf("kgc_bench-%06d_%026d", i/5, i), TeamID: fmt.Sprintf("bench-%06d", i/5),
					Name: fmt.Sprintf("seed %d", i), Permissions: []string{"accounting_api"}, CreatedAt: now,
					SecretHash: make([]byte, 32), StatusIndex: int64(i + 1)}
				c.put(k, c.epoch.Load(), now)
			}
		})
		runtime.KeepAlive(c)
	}
}

// TestKeyCachePutHandsOutThePackedCopy: put returns what GetKey hands out
// on a miss, a copy of the packed entry: its IDs are the cache's strings,
// not slices of the memory the caller decoded them from (the last-use
// tracker keeps them for minutes), and its byte slices are its own.
func TestKeyCachePutHandsOutThePackedCopy(t *testing.T) {
	c := liveCache()
	now := time.Now()
	record := strings.Repeat("r", 300) + "team-7" + strings.Repeat("r", 300)
	k := store.Key{ClientID: strings.Clone("kgc_abc"), TeamID: record[300:306],
		Permissions: []string{"accounting_api"}, SecretHash: []byte{1, 2, 3}}

	got := c.put(k, c.epoch.Load(), now)
	v, _ := c.entries.Load("kgc_abc")
	e, ok := v.(*cacheEntry)
	if !ok {
		t.Fatalf("cached %T, want a record", v)
	}
	if !reflect.DeepEqual(got, k) {
		t.Fatalf("handed out %+v, want %+v", got, k)
	}
	if unsafe.StringData(got.TeamID) != unsafe.StringData(e.key.TeamID) ||
		unsafe.StringData(got.ClientID) != unsafe.StringData(e.key.ClientID) {
		t.Error("the IDs handed out are not the cached entry's: they keep the decoded record alive")
	}
	got.SecretHash[0] = 9
	got.Permissions[0] = "changed"
	if e.key.SecretHash[0] != 1 || e.key.Permissions[0] != "accounting_api" {
		t.Error("a write to what was handed out changed the cached entry")
	}

	// Not cached (an invalidation since the read): the caller's own key.
	stale := c.epoch.Load()
	c.invalidate("other")
	k2 := k
	k2.ClientID = "kgc_def"
	if got := c.put(k2, stale, now); unsafe.StringData(got.TeamID) != unsafe.StringData(k2.TeamID) {
		t.Error("a put that cached nothing handed out a copy")
	}
	if _, r := c.get("kgc_def", now); r != notCached {
		t.Fatalf("a put with a stale epoch: %v, want nothing cached", r)
	}
}

// TestGetKeyMissHandsOutThePackedCopy: GetKey hands out put's copy on a
// miss, so what the token path keeps of the key is the cache's.
func TestGetKeyMissHandsOutThePackedCopy(t *testing.T) {
	ctx := context.Background()
	s := newTestStore(t)
	if err := s.EnableKeyCache(0, 0); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	for deadline := time.Now().Add(5 * time.Second); !s.KeyCacheLive(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("key cache subscription did not come up within 5 s")
		}
	}
	k := storetest.BulkKeys(t, 1, 1, 0)[0]
	if err := s.CreateKey(ctx, k, 5); err != nil {
		t.Fatal(err)
	}
	got, err := s.GetKey(ctx, k.ClientID)
	if err != nil {
		t.Fatal(err)
	}
	v, _ := s.cache.entries.Load(k.ClientID)
	e, ok := v.(*cacheEntry)
	if !ok {
		t.Fatalf("cached %T after a miss, want the record", v)
	}
	if got.TeamID != k.TeamID || unsafe.StringData(got.TeamID) != unsafe.StringData(e.key.TeamID) {
		t.Error("GetKey's miss handed out a team ID that is not the cached entry's")
	}
}
