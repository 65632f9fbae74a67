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
// was made from, serves the entry's compact record again (a memcmp and a
// decode of under a microsecond instead of encoding/json, 5–10 µs).
// Writes are rare next to token requests (the last-used times are written
// once a minute), so nearly every request is a hit.
//
// Equal cost for unknown client IDs (docs/ARCHITECTURE.md): an ID the file
// does not have is cached as an absence, standing for the decoy record
// (store.DecoyKey), and goes through the same steps as a record — two
// lookups, a copy of a value and its decode on a hit; a transaction and a
// memcmp or a decode on a miss. Absences have their own bound, so a flood
// of unknown IDs can neither evict a record nor keep one from being cached.
//
// Records are kept off the garbage collector's books, as on Redis
// (store/redis/cache.go): each is a value of bytes in the ring buffers of
// github.com/coocood/freecache, which hold no pointer — the epoch, the last
// use at full precision, the record's bytes as stored (for the memcmp
// above) and its compact record (store.AppendRecord), which a hit decodes.
// A million cached keys decoded into Go structs were about five million
// objects for every collection to mark (docs/scale.md). freecache's
// segments each have their own lock, held for a lookup and a copy, and
// evict an approximation of the least recently used. Absences are a
// sharded LRU of their epochs (github.com/hashicorp/golang-lru/v2's
// simplelru, already used by package throttle), with a bound of its own;
// no lock is process-wide.

import (
	"bytes"
	"encoding/binary"
	"hash/maphash"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/coocood/freecache"
	"github.com/hashicorp/golang-lru/v2/simplelru"

	"github.com/keygate/keygate/store"
)

const (
	// DefaultKeyCacheSize is how many key records a Store keeps in memory
	// unless Options.KeyCacheSize says otherwise
	// (config.DefaultBoltKeyCacheSize, bolt_key_cache_size).
	DefaultKeyCacheSize = 100_000
	// keyCacheRecordBytes is the buffer each record of the size adds: a
	// key as `keygate seed` makes them (one permission, no policy) takes
	// about 550 bytes there (its stored bytes, its compact record, the
	// header and the ID), so the buffer holds at least that many of them;
	// a key with a policy or metadata takes more of it.
	keyCacheRecordBytes = 768
	// keyCacheAbsent bounds the absences remembered.
	keyCacheAbsent = 1 << 16
	keyCacheShards = 32
)

type keyCache struct {
	// writes counts write transactions that have ended (Store.update).
	writes atomic.Uint64
	// touches counts TouchKeys commits (see above).
	touches atomic.Uint64
	// records maps a client ID to its value (valueEpoch and on).
	records *freecache.Cache
	seed    maphash.Seed
	absent  [keyCacheShards]absentShard
	off     bool
	// jsonDecodes counts the records decoded from their stored bytes (a
	// miss whose bytes changed or were never cached), for tests.
	jsonDecodes atomic.Uint64
}

// The layout of a records value.
const (
	valueEpoch    = 0  // keyCache.writes before the bytes were read
	valueLastUsed = 8  // the last use, unix nanos (0: never): the record keeps milliseconds
	valueRawLen   = 16 // the length of the stored bytes that follow
	valueRaw      = 20
)

type absentShard struct {
	mu  sync.Mutex
	lru *simplelru.LRU[string, uint64] // client ID → epoch
}

// cachedKey is what the cache holds of one ID, copied out of its value:
// the caller owns it. raw is copied only for an entry of an older epoch,
// the one case that needs it (fill's memcmp); a current entry's hit copies
// and decodes its compact record alone.
type cachedKey struct {
	found    bool
	epoch    uint64
	lastUsed int64
	raw      []byte // the record's bytes as stored (the decoy's, for an absence); nil when current
	rec      []byte // its compact record
}

// key decodes e's record for id (its strings are slices of e's copy).
func (e *cachedKey) key(id string) (store.Key, error) {
	k, err := store.DecodeRecord(id, unsafe.String(unsafe.SliceData(e.rec), len(e.rec)))
	if err != nil {
		return store.Key{}, err
	}
	if e.lastUsed != 0 {
		k.LastUsedAt = time.Unix(0, e.lastUsed).UTC()
	}
	return k, nil
}

// copyValue is the cachedKey of records value v (freecache's memory: what
// it keeps is copied), raw included unless v is of epoch current; not
// found for a value this cache did not write.
func copyValue(v []byte, current uint64) cachedKey {
	if len(v) < valueRaw {
		return cachedKey{}
	}
	n := int(binary.LittleEndian.Uint32(v[valueRawLen:]))
	if n > len(v)-valueRaw {
		return cachedKey{}
	}
	e := cachedKey{found: true, epoch: binary.LittleEndian.Uint64(v[valueEpoch:]),
		lastUsed: int64(binary.LittleEndian.Uint64(v[valueLastUsed:]))}
	if e.epoch != current {
		e.raw = bytes.Clone(v[valueRaw : valueRaw+n])
	}
	e.rec = bytes.Clone(v[valueRaw+n:])
	return e
}

// newValue is the records value of k, stored as raw, read at epoch; the
// compact record is rec when given (a revalidated entry's), else k's.
func newValue(epoch uint64, raw []byte, k store.Key, rec []byte) ([]byte, error) {
	v := make([]byte, valueRaw, valueRaw+len(raw)+max(len(rec), 160))
	binary.LittleEndian.PutUint64(v[valueEpoch:], epoch)
	if !k.LastUsedAt.IsZero() {
		binary.LittleEndian.PutUint64(v[valueLastUsed:], uint64(k.LastUsedAt.UnixNano()))
	}
	binary.LittleEndian.PutUint32(v[valueRawLen:], uint32(len(raw)))
	v = append(v, raw...)
	if rec != nil {
		return append(v, rec...), nil
	}
	return store.AppendRecord(v, k)
}

// decoyValues are the values of store.DecoyKey(false) and (true), what a
// cached absence copies and decodes.
var decoyValues = [2][]byte{mustValue(0), mustValue(1)}

func mustValue(i int) []byte {
	v, err := newValue(0, decoyRecords[i], store.DecoyKey(i == 1), nil)
	if err != nil {
		panic(err)
	}
	return v
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
	c.records = freecache.NewCache(size * keyCacheRecordBytes)
	for i := range c.absent {
		l, err := simplelru.NewLRU[string, uint64](max(1, keyCacheAbsent/keyCacheShards), nil)
		if err != nil {
			panic(err) // only for a size <= 0
		}
		c.absent[i].lru = l
	}
	return c
}

func (c *keyCache) shard(id string) *absentShard {
	return &c.absent[maphash.String(c.seed, id)%keyCacheShards]
}

// idBytes is id's bytes without a copy: freecache only hashes and compares
// a key it is given, or copies it into its buffer, and never writes to it.
func idBytes(id string) []byte { return unsafe.Slice(unsafe.StringData(id), len(id)) }

// lookup returns id's record and absence entries, either possibly not
// found or of an epoch older than current. Both tables are always
// consulted, and an absence is a copy out of the decoy's value as a record
// is a copy out of its own, so a known and an unknown ID cost the same.
func (c *keyCache) lookup(id string, current uint64) (rec, abs cachedKey) {
	if c.off {
		return rec, abs
	}
	sh := c.shard(id)
	sh.mu.Lock()
	epoch, isAbsent := sh.lru.Get(id)
	sh.mu.Unlock()
	_ = c.records.GetFn(idBytes(id), func(v []byte) error {
		rec = copyValue(v, current)
		return nil
	})
	if isAbsent {
		d := b2i(store.DecoyAdmin(id))
		abs = copyValue(decoyValues[d], 0) // the decoy's value is of epoch 0: no raw
		if abs.epoch = epoch; epoch != current {
			abs.raw = bytes.Clone(decoyRecords[d]) // as an older record's is copied
		}
	}
	return rec, abs
}

// fill returns the key of raw (bbolt's memory: copied here), decoding
// old's compact record when raw is old's bytes and raw itself otherwise,
// and caches it at epoch unless touches has moved from t (the values
// loaded before the read). absent says raw is the decoy standing for an ID
// the file does not have.
func (c *keyCache) fill(id string, raw []byte, old cachedKey, epoch, t uint64, absent bool) (store.Key, error) {
	if old.found && old.raw != nil && bytes.Equal(old.raw, raw) {
		k, err := old.key(id)
		if err != nil {
			return store.Key{}, err
		}
		if !c.off {
			if v, err := newValue(epoch, old.raw, k, old.rec); err == nil {
				c.store(id, v, epoch, t, absent)
			}
		}
		return k, nil
	}
	c.jsonDecodes.Add(1)
	k, err := decodeKey(raw)
	if err != nil {
		return store.Key{}, err
	}
	if !c.off {
		if v, err := newValue(epoch, raw, k, nil); err == nil { // else: read from the file each time
			c.store(id, v, epoch, t, absent)
		}
	}
	return k, nil
}

// store caches v, read at epoch, as id's record (or absence). A record is
// stored only if touches still has the value t, checked under the
// record's segment lock, which touched also takes after bumping it: either
// the entry is there for touched to replace, or it is not stored at all.
func (c *keyCache) store(id string, v []byte, epoch, t uint64, absent bool) {
	sh := c.shard(id)
	if absent {
		// A touch never writes a key the file lacks: no guard needed.
		sh.mu.Lock()
		sh.lru.Add(id, epoch)
		sh.mu.Unlock()
		c.records.Del(idBytes(id))
		return
	}
	_, _, _ = c.records.Update(idBytes(id), func([]byte, bool) ([]byte, bool, int) {
		return v, c.touches.Load() == t, 0 // too large for a segment: not cached
	})
	sh.mu.Lock()
	sh.lru.Remove(id)
	sh.mu.Unlock()
}

// decoded returns the cached decoding of id's record when raw is the bytes
// it was decoded from, sparing TouchKeys a decode.
func (c *keyCache) decoded(id string, raw []byte) (store.Key, bool) {
	if c.off {
		return store.Key{}, false
	}
	var (
		e    cachedKey
		same bool
	)
	_ = c.records.PeekFn(idBytes(id), func(v []byte) error {
		e = copyValue(v, ^uint64(0)) // raw too, whatever the epoch
		same = e.found && bytes.Equal(e.raw, raw)
		return nil
	})
	if !same {
		return store.Key{}, false
	}
	k, err := e.key(id)
	return k, err == nil
}

// touched replaces id's entry, if it has one, with the record TouchKeys
// wrote: raw and k decoded from it. The entry keeps its epoch: a stale
// entry stays stale, now with the bytes the file holds. Called after
// touches was bumped for the commit that wrote raw.
func (c *keyCache) touched(id string, raw []byte, k store.Key) {
	if c.off {
		return
	}
	v, err := newValue(0, raw, k, nil) // outside the lock: nearly every key written is cached
	if err != nil {
		c.records.Del(idBytes(id))
		return
	}
	_, _, _ = c.records.Update(idBytes(id), func(old []byte, found bool) ([]byte, bool, int) {
		if !found || len(old) < valueRaw {
			return nil, false, 0
		}
		copy(v[valueEpoch:valueEpoch+8], old[valueEpoch:valueEpoch+8])
		return v, true, 0
	})
}

// len is the number of records and absences held.
func (c *keyCache) len() (records, absences int) {
	if c.off {
		return 0, 0
	}
	for i := range c.absent {
		sh := &c.absent[i]
		sh.mu.Lock()
		absences += sh.lru.Len()
		sh.mu.Unlock()
	}
	return int(c.records.EntryCount()), absences
}
