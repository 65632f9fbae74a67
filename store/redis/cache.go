package redis

// A local cache of key records for the token path, kept honest by Redis
// pub/sub: every change to a key record (create, update, delete) publishes
// the client ID on one channel, in the same atomic step as the change, and
// every instance drops its copy when the message arrives.
//
// Last-use writes are the exception: they publish nothing. They come once
// a minute for every key in use, so under a load spread over many keys a
// message each would cost Redis and every instance about one per token
// (docs/scale.md), to refresh a time the tracker already coalesces to the
// minute. The writing instance moves the last use of its own copies
// forward (TouchKeys, touched) rather than dropping them: dropping would
// cost every key in use a miss after each of its writes, and bump the
// epoch that keeps every read in flight meanwhile out of the cache.
// Another instance's cached last_used_at may lag by up to the entry's age
// (redis_key_cache). Nothing decides on it: the token path only asks
// whether a key was ever used (package lastused), and a key seen as unused
// is merely written again (a last use only moves forward in the store).
// A deleted key is refused by every instance as soon as the message is
// delivered — milliseconds, well inside the promised second.
//
// The cache is used only while the subscription is known to be alive: on
// any subscription error, or when a ping goes unanswered for two intervals
// (a hung Redis), it is emptied and bypassed until Redis confirms the
// subscription again (a new "subscribe" after a reconnect, or the answer to
// a ping on the connection that hung). Entries also expire after maxAge, a backstop should a
// message ever be lost. Reads that race an invalidation are not cached.
//
// How long that backstop may be depends on what stands between PUBLISH
// and the subscription. On a single Redis node the message goes from the
// publishing script straight to every connection subscribed at that
// moment: a subscription alive then gets it, and one that breaks before
// it arrives is noticed (an error, or two unanswered pings) and empties
// the cache. So maxAge may be long there (up to an hour, the
// redis_key_cache setting's bound), which a million keys each used every
// few minutes need to be cached at all. Elsewhere a message can be lost
// with neither end noticing, so maxAge is at most
// MaxReplicatedKeyCacheAge: on Cluster, PUBLISH reaches the other nodes
// over the cluster bus, whose links drop and reconnect without replaying
// what they carried; on Sentinel, go-redis moves commands to a new master
// after a failover but leaves the subscription on the old one, which
// misses whatever was published before it resynchronised as a replica.
//
// The cache keeps absences too: a client ID Redis did not have is
// remembered as absent, so an unknown ID costs what a cached known one does
// (a map read and a copy, of store.DecoyKey) instead of a round trip, and
// the time of a refusal does not tell which IDs exist. Creating a key
// publishes its ID like any other change, so an instance that remembered
// the ID as absent finds the new key as soon as the message arrives (at
// worst after maxAge, like a lost invalidation). Creations have a channel
// of their own: they drop absences only, never a cached record. Absences have a bound of
// their own (keyCacheMaxAbsent, the oldest making room), separate from the
// records': a flood of unknown IDs can neither evict a record nor keep one
// from being cached.
//
// Records are kept off the garbage collector's books: as their compact
// encoding (store/record.go) in github.com/coocood/freecache's ring buffers,
// slices of bytes and of integers that hold no pointer. A million cached
// keys decoded into Go structs were about four million objects and a
// dozen pointers each, and following those pointers was a fifth of a busy
// instance's CPU at a million keys in use (docs/scale.md, "The eleventh
// change"); in the ring buffers the collector marks a few hundred large
// arrays and scans none of them. A hit pays for it with a decode, a few
// hundred nanoseconds.
//
// Records are bounded by Options.KeyCacheSize (redis_key_cache_size) times
// keyCacheRecordBytes of buffer. Past it a new record takes the place of
// the oldest one not read more recently than the average (freecache's
// approximation of least recently used: a record read since is moved to
// the front and kept), so a million active keys on a cache of 200 000
// keep the most used ones cached instead of whichever came first.

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/coocood/freecache"
	goredis "github.com/redis/go-redis/v9"

	"github.com/keygate/keygate/internal/shardmap"
	"github.com/keygate/keygate/store"
)

const (
	// DefaultKeyCacheMaxAge bounds how long a cached record is used at all.
	DefaultKeyCacheMaxAge = 10 * time.Second
	// DefaultKeyCacheSize is the records cached unless Options.KeyCacheSize
	// says otherwise (config.DefaultRedisKeyCacheSize).
	DefaultKeyCacheSize = 200_000
	// keyCacheRecordBytes is the buffer each record of Options.KeyCacheSize
	// adds: a key as `keygate seed` makes them (one permission, no policy)
	// takes about 190 bytes there with its header and client ID, so the
	// bound holds at least that many of them; a key with a policy or
	// metadata takes more of it.
	keyCacheRecordBytes = 256
	// keyCacheMaxAbsent bounds the absences remembered (about 100 bytes
	// each); past it the oldest makes room.
	keyCacheMaxAbsent = 1 << 16
	// keyCachePing is how often an idle subscription is checked.
	keyCachePing = 500 * time.Millisecond
	// MaxReplicatedKeyCacheAge is the longest maxAge on Cluster and
	// Sentinel, where an invalidation can be lost unnoticed (see the top
	// of cache.go); a single node takes any.
	MaxReplicatedKeyCacheAge = time.Minute
)

// ErrKeyCacheAge is EnableKeyCache's answer to a maxAge longer than
// MaxReplicatedKeyCacheAge on Cluster or Sentinel.
var ErrKeyCacheAge = errors.New("a key cache age over " + MaxReplicatedKeyCacheAge.String() +
	" needs a single Redis node: on Cluster and Sentinel an invalidation can be lost unnoticed")

type keyCache struct {
	maxAge time.Duration
	// records maps a client ID to its cached record: cachedAt (unix
	// nanoseconds, 8 bytes), then the latest last use this instance wrote
	// since the record was read (unix ms, 8 bytes, 0 for none; touched),
	// then the compact record (store.AppendRecord). Its own
	// locks are per segment (256 of them), held for a lookup and a copy.
	records *freecache.Cache
	// clock is the time freecache reads for its recency, in seconds: the
	// latest now a get or put was given, so that recency follows the
	// caller's clock (a test's included) rather than the wall's.
	clock cacheClock
	// absences maps a client ID Redis did not have to its *absentEntry.
	// absent is a ring of them in the order they were cached: the n-th
	// takes slot n mod len(absent) and removes the one it displaces (unless
	// that one was replaced or removed meanwhile), so at most len(absent)
	// are cached. The oldest goes first: an entry's age, not its use,
	// decides its life here, so oldest-inserted is
	// least-recently-refreshed. Lock-free, like the rest of the read path.
	absences   *shardmap.Map[*absentEntry]
	absent     []atomic.Pointer[absentEntry]
	absentNext atomic.Uint64
	live       atomic.Bool   // subscribed and answering: invalidations arrive
	epoch      atomic.Uint64 // bumped by every invalidation and every loss
	// absentEpoch is epoch for absences: bumped by every creation as
	// well. A creation cannot make a cached record stale, so it leaves
	// records (and epoch) alone.
	absentEpoch    atomic.Uint64
	createdChannel string                           // its messages announce creations (created)
	obs            atomic.Pointer[KeyCacheObserver] // nil: reads are not reported
	cancel         context.CancelFunc
	ps             *goredis.PubSub
	done           chan struct{}
}

// The layout of a record's value in records.
const (
	valueAt       = 0
	valueLastUsed = 8
	valueRecord   = 16
)

// absentEntry records that Redis had no key with this ID at time at.
type absentEntry struct {
	clientID string
	at       time.Time
}

// cacheClock is a freecache.Timer reading the latest second it was told.
type cacheClock struct{ sec atomic.Uint32 }

func (c *cacheClock) Now() uint32 { return c.sec.Load() }

// advance moves the clock to now, never back; a store only when the
// second changes, so concurrent requests do not contend for its line.
func (c *cacheClock) advance(now time.Time) {
	s := uint32(now.Unix())
	if cur := c.sec.Load(); s > cur {
		c.sec.CompareAndSwap(cur, s)
	}
}

// cacheResult is what the cache knows of a client ID.
type cacheResult int

const (
	notCached    cacheResult = iota // read Redis
	cachedKey                       // the record
	cachedAbsent                    // Redis had no such key
)

// EnableKeyCache turns on the local cache of key records (see the top of
// cache.go) for at most size records. maxAge ≤ 0 means
// DefaultKeyCacheMaxAge, size ≤ 0 DefaultKeyCacheSize; a maxAge over
// MaxReplicatedKeyCacheAge on Cluster or Sentinel is refused with
// ErrKeyCacheAge. Close stops it.
func (s *Store) EnableKeyCache(maxAge time.Duration, size int) error {
	if err := s.checkKeyCacheAge(maxAge); err != nil {
		return err
	}
	s.startKeyCache(maxAge, size)
	return nil
}

// startKeyCache is EnableKeyCache once maxAge was checked (Open checks it
// before connecting).
func (s *Store) startKeyCache(maxAge time.Duration, size int) {
	ctx, cancel := context.WithCancel(context.Background())
	c := newKeyCache(maxAge, size)
	c.cancel, c.done = cancel, make(chan struct{})
	c.createdChannel = s.keysCreatedChannel()
	c.ps = s.rdb.Subscribe(ctx, s.keysChannel(), c.createdChannel)
	s.cache = c
	go c.listen(ctx, c.ps)
}

func (s *Store) checkKeyCacheAge(maxAge time.Duration) error {
	if maxAge > MaxReplicatedKeyCacheAge && !s.singleNode {
		return fmt.Errorf("key cache age %s: %w", maxAge, ErrKeyCacheAge)
	}
	return nil
}

func newKeyCache(maxAge time.Duration, size int) *keyCache {
	if maxAge <= 0 {
		maxAge = DefaultKeyCacheMaxAge
	}
	if size <= 0 {
		size = DefaultKeyCacheSize
	}
	c := &keyCache{maxAge: maxAge, absences: shardmap.New[*absentEntry](),
		absent: make([]atomic.Pointer[absentEntry], keyCacheMaxAbsent)}
	c.records = freecache.NewCacheCustomTimer(size*keyCacheRecordBytes, &c.clock)
	return c
}

// KeyCacheLive reports whether the key cache is on and in use (its
// invalidation subscription is confirmed and answering).
func (s *Store) KeyCacheLive() bool { return s.cache != nil && s.cache.live.Load() }

// KeyCacheObserver hears of every read of the key cache, for metrics
// (package metrics satisfies it): a hit (a record, or an ID known to be
// absent), a miss (not cached, or expired), or a read that bypassed the
// cache because its subscription is not confirmed.
// Called on the token path: the methods must be quick and not block.
type KeyCacheObserver interface {
	KeyCacheHit()
	KeyCacheMiss()
	KeyCacheBypassed()
}

// ObserveKeyCache reports the key cache's reads to o (nil stops). Without
// the key cache (EnableKeyCache not called) it does nothing.
func (s *Store) ObserveKeyCache(o KeyCacheObserver) {
	if s.cache == nil {
		return
	}
	if o == nil {
		s.cache.obs.Store(nil)
		return
	}
	s.cache.obs.Store(&o)
}

func (c *keyCache) close() {
	c.cancel()
	c.ps.Close() // unblocks a waiting Receive
	<-c.done
}

// listen applies invalidations and watches the subscription's health.
func (c *keyCache) listen(ctx context.Context, ps *goredis.PubSub) {
	defer close(c.done)
	pinged := false
	for {
		msg, err := ps.ReceiveTimeout(ctx, keyCachePing)
		if ctx.Err() != nil {
			return
		}
		var ne net.Error
		switch {
		case err != nil && errors.As(err, &ne) && ne.Timeout():
			if pinged {
				// A ping went unanswered: Redis hangs or the link is gone.
				c.drop()
			}
			if ps.Ping(ctx) == nil {
				pinged = true
			} else {
				c.drop()
			}
		case err != nil:
			c.drop()
			pinged = false
			select {
			case <-ctx.Done():
				return
			case <-time.After(100 * time.Millisecond):
			}
		default:
			pinged = false
			switch m := msg.(type) {
			case *goredis.Subscription:
				if m.Kind == "subscribe" {
					// Anything may have changed while unsubscribed.
					c.flush()
					c.live.Store(true)
				}
			case *goredis.Message:
				if m.Channel == c.createdChannel {
					c.created(m.Payload)
				} else {
					c.invalidate(m.Payload)
				}
			case *goredis.Pong:
				// After a hang the connection never broke, so no new
				// "subscribe" confirmation will come: the answer to our
				// ping is the confirmation. It travelled behind every
				// message published before Redis read the ping, all of
				// them applied above, so the (flushed) cache is current.
				if !c.live.Load() {
					c.flush()
					c.live.Store(true)
				}
			}
		}
	}
}

// drop stops using the cache until the subscription is confirmed again.
func (c *keyCache) drop() {
	c.live.Store(false)
	c.flush()
}

func (c *keyCache) flush() {
	c.epoch.Add(1)
	c.absentEpoch.Add(1)
	c.records.Clear()
	c.absences.Range(func(k string, _ *absentEntry) bool {
		c.absences.LoadAndDelete(k)
		return true
	})
}

func (c *keyCache) invalidate(clientID string) {
	c.epoch.Add(1)
	c.absentEpoch.Add(1)
	c.remove(clientID)
}

// touched notes that this instance wrote at as clientID's last use
// (TouchKeys): a cached record keeps its place and returns the later of
// its own last use and at. No epoch changes, since nothing else in the
// record did. A read of the record that was in flight during the write
// may still cache the earlier last use; that costs at most a redundant
// write of it, which the store ignores (a last use only moves forward).
// The change is made under the record's segment lock (Update), so it
// cannot bring back a record an invalidation removed meanwhile.
func (c *keyCache) touched(clientID string, at time.Time) {
	ms := at.UnixMilli()
	_, _, _ = c.records.Update(idBytes(clientID), func(v []byte, found bool) ([]byte, bool, int) {
		if !found || len(v) < valueRecord || int64(binary.LittleEndian.Uint64(v[valueLastUsed:])) >= ms {
			return nil, false, 0
		}
		binary.LittleEndian.PutUint64(v[valueLastUsed:], uint64(ms))
		return v, true, 0
	})
}

// created drops an absence cached for clientID, whose key now exists.
func (c *keyCache) created(clientID string) {
	c.absentEpoch.Add(1)
	c.absences.LoadAndDelete(clientID)
}

// remove drops what the cache holds for clientID.
func (c *keyCache) remove(clientID string) {
	c.records.Del(idBytes(clientID))
	c.absences.LoadAndDelete(clientID)
}

// idBytes is clientID's bytes without a copy: freecache only hashes and
// compares a key it is given, or copies it into its buffer, and never
// writes to it.
func idBytes(clientID string) []byte {
	return unsafe.Slice(unsafe.StringData(clientID), len(clientID))
}

// get returns what the cache knows of clientID: a fresh copy of its record
// (cachedKey), that Redis had none (cachedAbsent: the same work, on a copy
// of the decoy), or nothing (notCached).
func (c *keyCache) get(clientID string, now time.Time) (store.Key, cacheResult) {
	obs := c.obs.Load()
	if !c.live.Load() {
		if obs != nil {
			(*obs).KeyCacheBypassed()
		}
		return store.Key{}, notCached
	}
	c.clock.advance(now)
	// Both kinds take the same steps: a look in both tables, the age
	// check, the observer, a copy of the value and its decode.
	abs, isAbsent := c.absences.Load(clientID)
	v, err := c.records.Get(idBytes(clientID))
	var (
		at time.Time
		r  cacheResult
	)
	switch {
	case err == nil && len(v) >= valueRecord:
		at, r = time.Unix(0, int64(binary.LittleEndian.Uint64(v[valueAt:]))), cachedKey
	case isAbsent:
		decoy := decoyValues[b2i(store.DecoyAdmin(clientID))]
		v = append(make([]byte, 0, len(decoy)), decoy...) // as Get copies a record
		at, r = abs.at, cachedAbsent
	default:
		if obs != nil {
			(*obs).KeyCacheMiss()
		}
		return store.Key{}, notCached
	}
	if now.Sub(at) >= c.maxAge || now.Before(at) {
		if r == cachedKey {
			// A record cached meanwhile under the ID may go with it: a
			// miss, which reads Redis and caches it again.
			c.records.Del(idBytes(clientID))
		} else {
			c.absences.CompareAndDelete(clientID, abs)
		}
		if obs != nil {
			(*obs).KeyCacheMiss()
		}
		return store.Key{}, notCached
	}
	if obs != nil {
		(*obs).KeyCacheHit()
	}
	k, err := decodeValue(clientID, v)
	switch {
	case err != nil:
		return store.Key{}, notCached // never for a value put wrote; Redis decides
	case r == cachedAbsent:
		return store.Key{}, cachedAbsent
	}
	return k, cachedKey
}

// decodeValue rebuilds the key a records value holds (a copy that the
// caller owns: its strings are slices of it, its client ID is clientID).
// Nothing keeps them past the request: the last-use tracker, which keeps
// a key's IDs for minutes, keeps a copy (package lastused).
func decodeValue(clientID string, v []byte) (store.Key, error) {
	rec := unsafe.String(unsafe.SliceData(v[valueRecord:]), len(v)-valueRecord)
	k, err := store.DecodeRecord(clientID, rec)
	if err != nil {
		return store.Key{}, err
	}
	if ms := int64(binary.LittleEndian.Uint64(v[valueLastUsed:])); ms > 0 && (k.LastUsedAt.IsZero() || ms > k.LastUsedAt.UnixMilli()) {
		k.LastUsedAt = time.UnixMilli(ms).UTC() // as readKey decodes it
	}
	return k, nil
}

// encodeValue is k's records value, cached at now.
func encodeValue(k store.Key, now time.Time) ([]byte, error) {
	v := make([]byte, valueRecord, 192)
	binary.LittleEndian.PutUint64(v[valueAt:], uint64(now.UnixNano()))
	return store.AppendRecord(v, k)
}

// decoyValues are the records values of decoyKeys, what a cached absence
// decodes.
var decoyValues = [2][]byte{mustValue(decoyKeys[0]), mustValue(decoyKeys[1])}

func mustValue(k store.Key) []byte {
	v, err := encodeValue(k, time.Time{})
	if err != nil {
		panic(err)
	}
	return v
}

// put caches k unless an invalidation happened since epoch was read. It
// replaces an absence cached for the ID.
func (c *keyCache) put(k store.Key, epoch uint64, now time.Time) {
	if !c.live.Load() || c.epoch.Load() != epoch {
		return
	}
	c.clock.advance(now)
	v, err := encodeValue(k, now)
	if err != nil {
		return // a record compact keys cannot hold is read from Redis each time
	}
	// Too large for the buffer (over a quarter of a segment's): not
	// cached, read from Redis each time.
	_ = c.records.Set(idBytes(k.ClientID), v, 0)
	c.absences.LoadAndDelete(k.ClientID)
	// An invalidation may have slipped in between the check and the store.
	if c.epoch.Load() != epoch {
		c.invalidate(k.ClientID)
	}
}

// putAbsent caches that Redis has no key clientID, unless an invalidation
// or a creation happened since absentEpoch was read as epoch (the key may
// have been created since the read) or the cache holds something for the
// ID already.
func (c *keyCache) putAbsent(clientID string, epoch uint64, now time.Time) {
	if !c.live.Load() || c.absentEpoch.Load() != epoch {
		return
	}
	if c.records.PeekFn(idBytes(clientID), func([]byte) error { return nil }) == nil {
		return // a record, cached since the read
	}
	e := &absentEntry{clientID: clientID, at: now}
	if _, loaded := c.absences.LoadOrStore(clientID, e); loaded {
		return
	}
	slot := &c.absent[(c.absentNext.Add(1)-1)%uint64(len(c.absent))]
	if old := slot.Swap(e); old != nil {
		c.absences.CompareAndDelete(old.clientID, old)
	}
	// A creation of this key may have slipped in between the check and
	// the store.
	if c.absentEpoch.Load() != epoch {
		c.created(clientID)
	}
}
