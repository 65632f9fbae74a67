package bolt

// The key cache: GetKey, the token path's read, answered from memory.
//
// A bbolt read transaction per token request (a reader slot, the mmap
// read lock, a B+tree walk, a copy of the record out of the mapping) kept
// the embedded store below the floor that Redis, with its cache, reaches.
// This cache needs no invalidation protocol because bbolt has exactly one
// writer — this process holds the file lock — and every write but
// TouchKeys (below) goes through Store.update, which bumps writes after a transaction that changed the keys
// bucket (its root page moved: Store.keysChangedSince). An entry is served
// only while writes still has the value it had when the entry was read from
// the file; any write that changes a key record, on any path (create,
// update, rotate, delete, suspend, the bulk loader, the schema's
// migrations, and whatever is added later), makes every entry stale at
// once, while the writes beside the token path — usage counts, the audit
// trail, the deny list — leave them alone. The reader loads writes before it opens its transaction,
// so an entry read before a commit is tagged with an older value than the
// bump after that commit: it can never be served after the write returns.
//
// TouchKeys is the exception: it changes nothing but last-use times, once a
// minute for every key in use, so under a load spread over many keys it
// would make the whole cache stale several times a second (docs/scale.md
// measured a re-read and a decode per token). It bumps touches instead of
// writes and replaces the entries of the keys it wrote with their new
// bytes (keyCache.touched). A reader whose transaction began before such a
// commit may hold the old bytes: it caches them only if touches has not
// moved since it loaded it, checked under the shard's lock that touched
// also takes after the bump, so either its entry is there to be replaced or
// it is not stored at all.
//
// A stale entry is not thrown away: the next GetKey of its ID reads the
// record's bytes in a transaction and, when they are the bytes the entry
// was decoded from, serves the decoded key again (a memcmp instead of
// encoding/json, 5–10 µs). Writes are rare next to token requests (the
// last-used times are written once a minute), so nearly every request is
// a hit.
//
// Equal cost for unknown client IDs (docs/ARCHITECTURE.md): an ID the file
// does not have is cached as an absence, holding the decoy record
// (store.DecoyKey), and goes through the same steps as a record — two
// lookups, a copy on a hit; a transaction and a memcmp or a decode on a
// miss. Absences have their own bound, so a flood of unknown IDs can
// neither evict a record nor keep one from being cached.
//
// Both tables are sharded LRUs (github.com/hashicorp/golang-lru/v2's
// simplelru, already used by package throttle), each shard with its own
// mutex held for one map operation: no lock is process-wide.

import (
	"bytes"
	"hash/maphash"
	"sync"
	"sync/atomic"

	"github.com/hashicorp/golang-lru/v2/simplelru"

	"github.com/keygate/keygate/store"
)

const (
	// DefaultKeyCacheSize is how many key records a Store keeps decoded in
	// memory unless Options.KeyCacheSize says otherwise
	// (config.DefaultBoltKeyCacheSize, bolt_key_cache_size): about 1 000 bytes
	// each (BenchmarkKeyCacheBytesPerRecord; docs/scale.md), so about
	// 100 MiB at most.
	DefaultKeyCacheSize = 100_000
	// keyCacheAbsent bounds the absences remembered.
	keyCacheAbsent = 1 << 16
	keyCacheShards = 32
)

type keyCache struct {
	// writes counts write transactions that have ended (Store.update).
	writes atomic.Uint64
	// touches counts TouchKeys commits (see above).
	touches atomic.Uint64
	seed    maphash.Seed
	records [keyCacheShards]cacheShard
	absent  [keyCacheShards]cacheShard
	off     bool
}

type cacheShard struct {
	mu  sync.Mutex
	lru *simplelru.LRU[string, *cachedKey]
}

// cachedKey is one entry. It is never modified once stored (a revalidated
// entry is replaced by a new one), so a reader may use it after unlocking.
type cachedKey struct {
	raw   []byte    // the record's bytes as stored (the decoy's, for an absence)
	key   store.Key // decoded from raw, packed with it (store.PackKey); never handed out, copies are
	epoch uint64    // keyCache.writes before raw was read
}

// newKeyCache returns a cache of size records; size < 0 turns it off (every
// GetKey reads and decodes the file), 0 means DefaultKeyCacheSize.
func newKeyCache(size int) *keyCache {
	c := &keyCache{seed: maphash.MakeSeed()}
	switch {
	case size < 0:
		c.off = true
		return c
	case size == 0:
		size = DefaultKeyCacheSize
	}
	perShard := max(1, size/keyCacheShards)
	for i := range c.records {
		c.records[i].lru = mustLRU(perShard)
		c.absent[i].lru = mustLRU(max(1, keyCacheAbsent/keyCacheShards))
	}
	return c
}

func mustLRU(n int) *simplelru.LRU[string, *cachedKey] {
	l, err := simplelru.NewLRU[string, *cachedKey](n, nil)
	if err != nil {
		panic(err) // only for n <= 0
	}
	return l
}

func (c *keyCache) shard(id string) int {
	return int(maphash.String(c.seed, id) % keyCacheShards)
}

func (sh *cacheShard) get(id string) *cachedKey {
	sh.mu.Lock()
	e, _ := sh.lru.Get(id)
	sh.mu.Unlock()
	return e
}

func (sh *cacheShard) put(id string, e *cachedKey) {
	sh.mu.Lock()
	sh.lru.Add(id, e)
	sh.mu.Unlock()
}

// putRecord caches the record e under id (ownID), unless touches no
// longer has the value t. An entry already there is removed, not replaced:
// the map's key is that entry's packed ID, which would keep the strings of
// a record that changed alive beside the new one's.
func (sh *cacheShard) putRecord(id string, e *cachedKey, touches *atomic.Uint64, t uint64) {
	sh.mu.Lock()
	if touches.Load() == t {
		sh.replace(id, e)
	}
	sh.mu.Unlock()
}

// replace is putRecord's step, under sh.mu.
func (sh *cacheShard) replace(id string, e *cachedKey) {
	sh.lru.Remove(id)
	sh.lru.Add(ownID(id, e.key), e)
}

func (sh *cacheShard) remove(id string) {
	sh.mu.Lock()
	sh.lru.Remove(id)
	sh.mu.Unlock()
}

// lookup returns id's record and absence entries, either possibly nil or
// stale. Both tables are always consulted, so a known and an unknown ID
// cost the same.
func (c *keyCache) lookup(id string) (rec, abs *cachedKey) {
	if c.off {
		return nil, nil
	}
	i := c.shard(id)
	return c.records[i].get(id), c.absent[i].get(id)
}

// fill returns the key decoded from raw (bbolt's memory: copied here),
// reusing old's decoding when raw is old's bytes, and caches it at epoch
// unless touches has moved from t (the values loaded before the read).
// absent says raw is the decoy standing for an ID the file does not have.
func (c *keyCache) fill(id string, raw []byte, old *cachedKey, epoch, t uint64, absent bool) (store.Key, error) {
	if old != nil && bytes.Equal(old.raw, raw) {
		if !c.off {
			c.store(id, &cachedKey{raw: old.raw, key: old.key, epoch: epoch}, t, absent)
		}
		return cloneKey(old.key), nil
	}
	k, err := decodeKey(raw)
	if err != nil {
		return store.Key{}, err
	}
	if !c.off {
		packed, praw := store.PackKey(k, raw)
		c.store(id, &cachedKey{raw: praw, key: packed, epoch: epoch}, t, absent)
		// A copy of the packed key, not k: what the caller keeps of it
		// (the last-use tracker keeps the ID and the team for as long as
		// the key is in use) then shares the packed strings instead of
		// holding objects of its own.
		return cloneKey(packed), nil
	}
	return k, nil
}

func (c *keyCache) store(id string, e *cachedKey, t uint64, absent bool) {
	i := c.shard(id)
	if absent {
		// A touch never writes a key the file lacks: no guard needed.
		c.absent[i].put(id, e)
		c.records[i].remove(id)
		return
	}
	c.records[i].putRecord(id, e, &c.touches, t)
	c.absent[i].remove(id)
}

// ownID is id as the map's key for the record k: k's own copy, which
// shares its packed strings (the request's copy would be one more object),
// when it is the same ID.
func ownID(id string, k store.Key) string {
	if k.ClientID == id {
		return k.ClientID
	}
	return id
}

// decoded returns the cached decoding of id's record when raw is the bytes
// it was decoded from, sparing TouchKeys a decode.
func (c *keyCache) decoded(id string, raw []byte) (store.Key, bool) {
	if c.off {
		return store.Key{}, false
	}
	sh := &c.records[c.shard(id)]
	sh.mu.Lock()
	e, ok := sh.lru.Peek(id)
	sh.mu.Unlock()
	if !ok || !bytes.Equal(e.raw, raw) {
		return store.Key{}, false
	}
	return cloneKey(e.key), true
}

// touched replaces id's entry, if it has one, with the record TouchKeys
// wrote: raw and k decoded from it (both copied, packed). The
// entry keeps its epoch: a stale entry stays stale, now with the bytes the
// file holds. Called after touches was bumped for the commit that wrote
// raw.
func (c *keyCache) touched(id string, raw []byte, k store.Key) {
	if c.off {
		return
	}
	packed, praw := store.PackKey(k, raw) // outside the lock: nearly every key written is cached
	sh := &c.records[c.shard(id)]
	sh.mu.Lock()
	if e, ok := sh.lru.Peek(id); ok {
		sh.replace(id, &cachedKey{raw: praw, key: packed, epoch: e.epoch})
	}
	sh.mu.Unlock()
}

// len is the number of records and absences held.
func (c *keyCache) len() (records, absences int) {
	if c.off {
		return 0, 0
	}
	for i := range c.records {
		for _, sh := range []*cacheShard{&c.records[i], &c.absent[i]} {
			sh.mu.Lock()
			n := sh.lru.Len()
			sh.mu.Unlock()
			if sh == &c.records[i] {
				records += n
			} else {
				absences += n
			}
		}
	}
	return records, absences
}
