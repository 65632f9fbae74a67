package redis

import (
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keygate/keygate/store"
)

// liveCache is a key cache as EnableKeyCache makes it, marked live, without
// Redis: for the bookkeeping of entries alone.
func liveCache() *keyCache {
	c := &keyCache{maxAge: time.Minute, absent: make([]atomic.Pointer[absentEntry], keyCacheMaxAbsent)}
	c.live.Store(true)
	return c
}

func (c *keyCache) counts() (records, absences int) {
	c.entries.Range(func(_, v any) bool {
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
