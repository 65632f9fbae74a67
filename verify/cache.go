package verify

// The cache of verified tokens. A resource server sees the same token many
// times in its lifetime (a client reuses it until it expires), and an ES256
// signature check costs tens of microseconds; Envoy's jwt_authn keeps a
// cache of verified tokens for that reason. A hit here costs a SHA-256 of
// the token, a map lookup, the checks that depend on the time and on the
// world (expiry, not-before, the signing key still published, the status
// list) and a copy of the claims.
//
// What makes it safe:
//   - Entries are keyed by the SHA-256 of the whole token: a token that
//     differs in any byte — a forged signature, a changed claim — is
//     another key, is not found and is verified in full. A shorter hash
//     could collide on purpose.
//   - Only successes are stored; a refusal is never remembered.
//   - exp, nbf and iat are checked again on every hit, against the same
//     clock and leeway; an entry is never kept past its token's exp (in the
//     leeway after it, every call is a full check).
//   - The signing key is asked for again on every hit (an atomic load and
//     a map lookup for a JWKS) and must be the key that verified the
//     token: a key withdrawn from the JWKS, or keys that cannot be had
//     (ErrKeysUnavailable), refuse a cached token as they would a new one.
//     A changed JWKS also empties the cache.
//   - The status list is consulted on every hit, as on every Verify: a key
//     deleted after its token was cached is refused as soon as the cached
//     list is refreshed (its ttl).
//   - A hit returns a copy of the claims, so a caller that changes them
//     changes nothing for the next.
//
// It is per Verifier (issuer and audiences are the Verifier's), bounded
// (Options.CacheSize), and sharded, each shard under its own mutex.

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/sha256"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultCacheSize is how many verified tokens a Verifier remembers unless
// Options.CacheSize says otherwise: about 1 KiB each, so about 10 MiB.
const DefaultCacheSize = 10_000

const cacheShards = 16

type tokenCache struct {
	shards   [cacheShards]cacheShard
	nshards  int // cacheShards, or size when smaller: the bound holds at any size
	perShard int
	// gen is the key set generation the entries were verified under
	// (keyGeneration); a different one empties the cache.
	gen atomic.Uint64
}

type cacheShard struct {
	mu sync.Mutex
	m  map[[sha256.Size]byte]*cachedToken
}

// cachedToken is a verified token. Never modified once stored.
type cachedToken struct {
	claims    *Claims // never handed out: copies are
	kid       string
	key       crypto.PublicKey
	alg       string
	expiresAt time.Time
	notBefore time.Time // zero: no nbf
	issuedAt  time.Time
	statusURI string // "" when the token names no status list
	statusIdx uint64
}

// keyGeneration is implemented by key sources that can say when their keys
// changed (the JWKS fetcher): the cache empties itself when it moves.
type keyGeneration interface {
	keyGeneration() uint64
}

func newTokenCache(size int) *tokenCache {
	if size < 0 {
		return nil
	}
	if size == 0 {
		size = DefaultCacheSize
	}
	n := min(size, cacheShards)
	c := &tokenCache{nshards: n, perShard: size / n}
	for i := range c.shards {
		c.shards[i].m = make(map[[sha256.Size]byte]*cachedToken)
	}
	return c
}

func (c *tokenCache) shard(h *[sha256.Size]byte) *cacheShard {
	return &c.shards[int(h[0])%c.nshards]
}

func (c *tokenCache) get(h *[sha256.Size]byte) *cachedToken {
	sh := c.shard(h)
	sh.mu.Lock()
	e := sh.m[*h]
	sh.mu.Unlock()
	return e
}

func (c *tokenCache) remove(h *[sha256.Size]byte) {
	sh := c.shard(h)
	sh.mu.Lock()
	delete(sh.m, *h)
	sh.mu.Unlock()
}

// put stores e; a full shard first drops its expired entries, else one
// entry at random (Go's map iteration order), so the bound always holds.
func (c *tokenCache) put(h *[sha256.Size]byte, e *cachedToken, now time.Time) {
	sh := c.shard(h)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if _, ok := sh.m[*h]; !ok && len(sh.m) >= c.perShard {
		for k, old := range sh.m {
			if !now.Before(old.expiresAt) {
				delete(sh.m, k)
			}
		}
		for k := range sh.m {
			if len(sh.m) < c.perShard {
				break
			}
			delete(sh.m, k)
		}
	}
	sh.m[*h] = e
}

// clear drops every entry.
func (c *tokenCache) clear() {
	for i := range c.shards {
		sh := &c.shards[i]
		sh.mu.Lock()
		clear(sh.m)
		sh.mu.Unlock()
	}
}

// len is the number of entries held.
func (c *tokenCache) len() int {
	n := 0
	for i := range c.shards {
		sh := &c.shards[i]
		sh.mu.Lock()
		n += len(sh.m)
		sh.mu.Unlock()
	}
	return n
}

// syncGeneration empties the cache when the key source's keys changed
// since the entries were stored.
func (v *Verifier) syncGeneration() {
	kg, ok := v.opts.Keys.(keyGeneration)
	if !ok {
		return
	}
	g := kg.keyGeneration()
	if old := v.cache.gen.Load(); old != g && v.cache.gen.CompareAndSwap(old, g) {
		v.cache.clear()
	}
}

// cached answers Verify from the cache: ok is false when the token is not
// there (or no longer may be answered from it) and must be verified in
// full.
func (v *Verifier) cached(ctx context.Context, h *[sha256.Size]byte) (c *Claims, err error, ok bool) {
	v.syncGeneration()
	e := v.cache.get(h)
	if e == nil {
		return nil, nil, false
	}
	// In Verify's order: the key, then the times, then the status.
	key, alg, kerr := v.opts.Keys.VerificationKey(ctx, e.kid)
	if kerr != nil || alg != e.alg || !sameKey(key, e.key) {
		// Withdrawn, replaced or unavailable: verify in full, which gives
		// the refusal its proper reason.
		v.cache.remove(h)
		return nil, nil, false
	}
	now := v.opts.Now()
	leeway := v.opts.Leeway
	switch {
	case !now.Before(e.expiresAt):
		// Never kept past exp: within the leeway the full check decides
		// (and remember does not store it again).
		v.cache.remove(h)
		return nil, nil, false
	case !e.notBefore.IsZero() && now.Add(leeway).Before(e.notBefore):
		return nil, ErrNotYetValid, true
	case now.Add(leeway).Before(e.issuedAt):
		return nil, ErrIssuedInFuture, true
	}
	if v.status != nil && e.statusURI != "" {
		if err := v.status.lookup(ctx, e.statusURI, e.statusIdx); err != nil {
			return nil, err, true
		}
	}
	cp := *e.claims
	cp.Audience = slices.Clone(cp.Audience)
	cp.Scopes = slices.Clone(cp.Scopes)
	return &cp, nil, true
}

// remember stores a token Verify has just accepted, verified with key
// (kid, alg).
func (v *Verifier) remember(h *[sha256.Size]byte, c *Claims, kid string, key crypto.PublicKey, alg, statusURI string, statusIdx uint64) {
	now := v.opts.Now()
	if !now.Before(c.ExpiresAt) {
		return // accepted within the leeway past exp: not kept
	}
	e := &cachedToken{
		claims: &Claims{}, kid: kid, key: key, alg: alg,
		expiresAt: c.ExpiresAt, notBefore: c.NotBefore, issuedAt: c.IssuedAt,
		statusURI: statusURI, statusIdx: statusIdx,
	}
	*e.claims = *c
	e.claims.Audience = slices.Clone(c.Audience)
	e.claims.Scopes = slices.Clone(c.Scopes)
	v.cache.put(h, e, now)
}

// sameKey reports whether a and b are the same public key: the same value,
// or equal ones (a refetched JWKS parses the same key anew).
func sameKey(a, b crypto.PublicKey) bool {
	// The same pointer first: ecdsa's Equal allocates, and a JWKS hands
	// out the same key value until it changes.
	switch ka := a.(type) {
	case *ecdsa.PublicKey:
		if kb, ok := b.(*ecdsa.PublicKey); ok && ka == kb {
			return true
		}
	case *rsa.PublicKey:
		if kb, ok := b.(*rsa.PublicKey); ok && ka == kb {
			return true
		}
	}
	type equaler interface{ Equal(crypto.PublicKey) bool }
	ea, ok := a.(equaler)
	return ok && ea.Equal(b)
}
