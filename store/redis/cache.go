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
// Records are bounded by Options.KeyCacheSize (redis_key_cache_size). Past
// it a new record takes the place of one that has not been read since the
// clock hand last passed it (CLOCK, a lock-free approximation of least
// recently used: a hit sets the entry's reference bit, the hand clears it
// and gives the entry a second chance), so a million active keys on a
// cache of 200 000 keep the most used ones cached instead of whichever came
// first.

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync/atomic"
	"time"

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
	// entries maps a client ID to a *cacheEntry (a record) or an
	// *absentEntry (Redis had none); pointers, so CompareAndDelete tells
	// an entry from its successor. One map for both, so a known and an
	// unknown ID cost the same read. Sharded Go maps, not a sync.Map: a
	// million cached keys would be two million more objects for every
	// collection to mark (internal/shardmap).
	entries *shardmap.Map[any]
	size    atomic.Int64 // the *cacheEntry values
	// records is the clock: every cached record holds one slot, and a new
	// record takes the slot under the hand, removing its occupant from
	// entries (unless that one was replaced or removed meanwhile) — so at
	// most len(records) are cached.
	records    []atomic.Pointer[cacheEntry]
	recordHand atomic.Uint64
	// sweepHand runs ahead of placements, emptying the slots of records
	// past maxAge (sweep).
	sweepHand atomic.Uint64
	// absent is a ring of the absences in the order they were cached: the
	// n-th takes slot n mod len(absent) and removes the one it displaces
	// from entries (unless that one was replaced or removed meanwhile), so
	// at most len(absent) are cached. The oldest goes first: an entry's
	// age, not its use, decides its life here, so oldest-inserted is
	// least-recently-refreshed. Lock-free, like the rest of the read path.
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

type cacheEntry struct {
	clientID string
	key      store.Key
	at       time.Time
	used     atomic.Bool // CLOCK's reference bit, set by a hit
	// lastUsed is the latest last use (Unix ms) this instance wrote
	// since key was read (touched); a hit returns it if later than key's.
	lastUsed atomic.Int64
}

// absentEntry records that Redis had no key with this ID at time at.
type absentEntry struct {
	clientID string
	at       time.Time
	used     atomic.Bool  // set by a hit like a record's, though unread: the same work
	lastUsed atomic.Int64 // never set; loaded by a hit like a record's
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
	return &keyCache{maxAge: maxAge, entries: shardmap.New[any](),
		records: make([]atomic.Pointer[cacheEntry], size),
		absent:  make([]atomic.Pointer[absentEntry], keyCacheMaxAbsent)}
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
	c.entries.Range(func(k string, _ any) bool {
		c.remove(k)
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
func (c *keyCache) touched(clientID string, at time.Time) {
	v, ok := c.entries.Load(clientID)
	if !ok {
		return
	}
	e, rec := v.(*cacheEntry)
	if !rec {
		return
	}
	ms := at.UnixMilli()
	for {
		cur := e.lastUsed.Load()
		if cur >= ms || e.lastUsed.CompareAndSwap(cur, ms) {
			return
		}
	}
}

// created drops an absence cached for clientID, whose key now exists.
func (c *keyCache) created(clientID string) {
	c.absentEpoch.Add(1)
	if v, ok := c.entries.Load(clientID); ok {
		if _, abs := v.(*absentEntry); abs {
			c.entries.CompareAndDelete(clientID, v)
		}
	}
}

// remove drops what the cache holds for clientID.
func (c *keyCache) remove(clientID string) {
	if v, ok := c.entries.LoadAndDelete(clientID); ok {
		if _, rec := v.(*cacheEntry); rec {
			c.size.Add(-1)
		}
	}
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
	v, ok := c.entries.Load(clientID)
	if !ok {
		if obs != nil {
			(*obs).KeyCacheMiss()
		}
		return store.Key{}, notCached
	}
	// The two kinds take the same steps: age check, observer, copy.
	var (
		at   time.Time
		rec  *store.Key
		r    cacheResult
		used *atomic.Bool
		lu   *atomic.Int64
	)
	switch e := v.(type) {
	case *cacheEntry:
		at, rec, r, used, lu = e.at, &e.key, cachedKey, &e.used, &e.lastUsed
	case *absentEntry:
		at, rec, r, used, lu = e.at, &decoyKeys[b2i(store.DecoyAdmin(clientID))], cachedAbsent, &e.used, &e.lastUsed
	}
	if now.Sub(at) >= c.maxAge || now.Before(at) {
		if c.entries.CompareAndDelete(clientID, v) && r == cachedKey {
			c.size.Add(-1)
		}
		if obs != nil {
			(*obs).KeyCacheMiss()
		}
		return store.Key{}, notCached
	}
	if obs != nil {
		(*obs).KeyCacheHit()
	}
	if !used.Load() { // a store only when it changes: no cache line bouncing on hot keys
		used.Store(true)
	}
	k := cloneKey(*rec)
	if ms := lu.Load(); ms > 0 && (k.LastUsedAt.IsZero() || ms > k.LastUsedAt.UnixMilli()) {
		k.LastUsedAt = time.UnixMilli(ms).UTC() // as readKey decodes it
	}
	if r == cachedAbsent {
		return store.Key{}, r
	}
	return k, r
}

// put caches k unless an invalidation happened since epoch was read, and
// returns what the caller should hand out: a copy of the packed entry when
// it cached one, else k. It replaces an absence cached for the ID.
//
// The copy, not k, because of what outlives the request: the last-use
// tracker keeps a key's client and team IDs for minutes (lastused), and
// k's team ID is a slice of the whole decoded record (decodeCompact), its
// client ID the request's own string. Kept, they were two objects and a
// few hundred bytes per key in use that no cache bound covers (at a
// million keys about 2.2 million objects of 12 and 145 MB, docs/scale.md).
// The copy's IDs are the cache's packed strings, as on bbolt.
func (c *keyCache) put(k store.Key, epoch uint64, now time.Time) store.Key {
	if !c.live.Load() || c.epoch.Load() != epoch {
		return k
	}
	packed, _ := store.PackKey(k, nil) // a few objects for the collector, not a dozen
	e := &cacheEntry{clientID: packed.ClientID, key: packed, at: now}
	old, _ := c.entries.Swap(packed.ClientID, e)
	if _, rec := old.(*cacheEntry); !rec {
		c.size.Add(1) // new, or in place of an absence
	}
	c.place(e)
	c.sweep(now)
	// An invalidation may have slipped in between the check and the store.
	if c.epoch.Load() != epoch {
		c.invalidate(k.ClientID)
	}
	return cloneKey(packed)
}

// place gives e a slot of the clock: the first under the hand whose
// occupant has not been read since the hand last passed, clearing the
// reference bits it passes (so one turn of the clock always ends it; on
// average a placement moves the hand about twice). The occupant leaves
// the cache unless it was replaced or removed meanwhile.
func (c *keyCache) place(e *cacheEntry) {
	n := uint64(len(c.records))
	for skips := uint64(0); ; skips++ {
		slot := &c.records[(c.recordHand.Add(1)-1)%n]
		old := slot.Load()
		if old != nil && skips < n && old.used.Swap(false) {
			continue // read since the hand last passed: a second chance
		}
		if !slot.CompareAndSwap(old, e) {
			continue // another insertion took this slot first
		}
		if old != nil && c.entries.CompareAndDelete(old.clientID, old) {
			c.size.Add(-1)
		}
		return
	}
}

// sweepPerPlace is how many slots each placement also sweeps.
const sweepPerPlace = 8

// sweep empties the next sweepPerPlace slots under the sweep hand whose
// records are past maxAge. Such a record is never served (get), yet it
// kept its slot, and its memory, until a placement took the slot: with a
// cache sized for a million keys under a load that brings each back every
// few minutes, nearly every slot held an expired record, a heap of a
// million pointer-rich records that every garbage collection marked
// (docs/scale.md). The sweep goes round the clock once every
// len(records)/sweepPerPlace placements, so what the cache holds follows
// the keys read within maxAge and that much longer, not its size.
func (c *keyCache) sweep(now time.Time) {
	n := uint64(len(c.records))
	for range sweepPerPlace {
		slot := &c.records[(c.sweepHand.Add(1)-1)%n]
		old := slot.Load()
		if old == nil || now.Sub(old.at) < c.maxAge && !now.Before(old.at) {
			continue
		}
		if slot.CompareAndSwap(old, nil) && c.entries.CompareAndDelete(old.clientID, old) {
			c.size.Add(-1)
		}
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
	e := &absentEntry{clientID: clientID, at: now}
	if _, loaded := c.entries.LoadOrStore(clientID, e); loaded {
		return
	}
	slot := &c.absent[(c.absentNext.Add(1)-1)%uint64(len(c.absent))]
	if old := slot.Swap(e); old != nil {
		c.entries.CompareAndDelete(old.clientID, old)
	}
	// A creation of this key may have slipped in between the check and
	// the store.
	if c.absentEpoch.Load() != epoch {
		c.created(clientID)
	}
}

func cloneKey(k store.Key) store.Key {
	k.Permissions = append([]string(nil), k.Permissions...)
	k.SecretHash = append([]byte(nil), k.SecretHash...)
	if k.PreviousSecretHash != nil {
		k.PreviousSecretHash = append([]byte(nil), k.PreviousSecretHash...)
	}
	// The policy's lists, only where there are any (a key without a policy
	// costs the token path nothing more).
	if k.Audiences != nil {
		k.Audiences = append([]string(nil), k.Audiences...)
	}
	if k.AllowedCIDRs != nil {
		k.AllowedCIDRs = append([]netip.Prefix(nil), k.AllowedCIDRs...)
	}
	if k.Metadata != nil {
		k.Metadata = append([]byte(nil), k.Metadata...)
	}
	return k
}
