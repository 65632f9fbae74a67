package redis

// A local cache of key records for the token path, kept honest by Redis
// pub/sub: every change to a key record (update, delete, last-use write)
// publishes the client ID on one channel, in the same atomic step as the
// change, and every instance drops its copy when the message arrives. A
// deleted key is therefore refused by every instance as soon as the message
// is delivered — milliseconds, well inside the promised second.
//
// The cache is used only while the subscription is known to be alive: on
// any subscription error, or when a ping goes unanswered for two intervals
// (a hung Redis), it is emptied and bypassed until Redis confirms the
// subscription again (a new "subscribe" after a reconnect, or the answer to
// a ping on the connection that hung). Entries also expire after maxAge, a backstop should a
// message ever be lost. Reads that race an invalidation are not cached.

import (
	"context"
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/keygate/keygate/store"
)

const (
	// DefaultKeyCacheMaxAge bounds how long a cached record is used at all.
	DefaultKeyCacheMaxAge = 10 * time.Second
	// keyCacheMaxEntries bounds memory: past it new records are not cached.
	keyCacheMaxEntries = 200_000
	// keyCachePing is how often an idle subscription is checked.
	keyCachePing = 500 * time.Millisecond
)

type keyCache struct {
	maxAge  time.Duration
	entries sync.Map // client ID → *cacheEntry (pointers: CompareAndDelete needs comparable values)
	size    atomic.Int64
	live    atomic.Bool                      // subscribed and answering: invalidations arrive
	epoch   atomic.Uint64                    // bumped by every invalidation and every loss
	obs     atomic.Pointer[KeyCacheObserver] // nil: reads are not reported
	cancel  context.CancelFunc
	ps      *goredis.PubSub
	done    chan struct{}
}

type cacheEntry struct {
	key store.Key
	at  time.Time
}

// EnableKeyCache turns on the local cache of key records (see the top of
// cache.go). maxAge ≤ 0 means DefaultKeyCacheMaxAge. Close stops it.
func (s *Store) EnableKeyCache(maxAge time.Duration) {
	if maxAge <= 0 {
		maxAge = DefaultKeyCacheMaxAge
	}
	ctx, cancel := context.WithCancel(context.Background())
	c := &keyCache{maxAge: maxAge, cancel: cancel, done: make(chan struct{})}
	c.ps = s.rdb.Subscribe(ctx, s.keysChannel())
	s.cache = c
	go c.listen(ctx, c.ps)
}

// KeyCacheLive reports whether the key cache is on and in use (its
// invalidation subscription is confirmed and answering).
func (s *Store) KeyCacheLive() bool { return s.cache != nil && s.cache.live.Load() }

// KeyCacheObserver hears of every read of the key cache, for metrics
// (package metrics satisfies it): a hit, a miss (not cached, or expired), or
// a read that bypassed the cache because its subscription is not confirmed.
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
				c.invalidate(m.Payload)
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
	c.entries.Range(func(k, _ any) bool {
		if _, ok := c.entries.LoadAndDelete(k); ok {
			c.size.Add(-1)
		}
		return true
	})
}

func (c *keyCache) invalidate(clientID string) {
	c.epoch.Add(1)
	if _, ok := c.entries.LoadAndDelete(clientID); ok {
		c.size.Add(-1)
	}
}

// get returns a fresh copy of a cached record.
func (c *keyCache) get(clientID string, now time.Time) (store.Key, bool) {
	obs := c.obs.Load()
	if !c.live.Load() {
		if obs != nil {
			(*obs).KeyCacheBypassed()
		}
		return store.Key{}, false
	}
	v, ok := c.entries.Load(clientID)
	if !ok {
		if obs != nil {
			(*obs).KeyCacheMiss()
		}
		return store.Key{}, false
	}
	e := v.(*cacheEntry)
	if now.Sub(e.at) >= c.maxAge || now.Before(e.at) {
		if c.entries.CompareAndDelete(clientID, v) {
			c.size.Add(-1)
		}
		if obs != nil {
			(*obs).KeyCacheMiss()
		}
		return store.Key{}, false
	}
	if obs != nil {
		(*obs).KeyCacheHit()
	}
	return cloneKey(e.key), true
}

// put caches k unless an invalidation happened since epoch was read.
func (c *keyCache) put(k store.Key, epoch uint64, now time.Time) {
	if !c.live.Load() || c.epoch.Load() != epoch || c.size.Load() >= keyCacheMaxEntries {
		return
	}
	if _, loaded := c.entries.Swap(k.ClientID, &cacheEntry{key: cloneKey(k), at: now}); !loaded {
		c.size.Add(1)
	}
	// An invalidation may have slipped in between the check and the store.
	if c.epoch.Load() != epoch {
		c.invalidate(k.ClientID)
	}
}

func cloneKey(k store.Key) store.Key {
	k.Permissions = append([]string(nil), k.Permissions...)
	k.SecretHash = append([]byte(nil), k.SecretHash...)
	if k.PreviousSecretHash != nil {
		k.PreviousSecretHash = append([]byte(nil), k.PreviousSecretHash...)
	}
	return k
}
