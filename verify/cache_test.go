package verify_test

import (
	"context"
	"crypto"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/keygate/keygate/verify"
)

// countingKeys counts VerificationKey calls and can withdraw keys.
type countingKeys struct {
	keySource
	calls     atomic.Int64
	withdrawn atomic.Bool
}

func (c *countingKeys) VerificationKey(ctx context.Context, kid string) (crypto.PublicKey, string, error) {
	c.calls.Add(1)
	if c.withdrawn.Load() {
		return nil, "", verify.ErrUnknownKey
	}
	return c.keySource.VerificationKey(ctx, kid)
}

func cachedVerifier(t *testing.T, clock *fixtureClock, size int) (*verify.Verifier, *countingKeys) {
	t.Helper()
	keys(t)
	ks := &countingKeys{keySource: source}
	v, err := verify.New(context.Background(), verify.Options{
		Issuer: issuer, Audience: audience, Keys: ks, Now: clock.Now, CacheSize: size,
	})
	if err != nil {
		t.Fatal(err)
	}
	return v, ks
}

// TestCacheHitReturnsCopy: a second Verify of a token is answered from the
// cache — the same claims, which the caller may change without changing
// what the next caller gets.
func TestCacheHitReturnsCopy(t *testing.T) {
	clock := newFixtureClock(now)
	v, _ := cachedVerifier(t, clock, 0)
	tok := sign(t, ecKey, nil, nil, goodClaims())
	first := mustVerify(t, v, tok)
	if verify.CacheLen(v) != 1 {
		t.Fatalf("cache holds %d tokens after one verification, want 1", verify.CacheLen(v))
	}
	first.Scopes[0] = "tampered"
	first.Audience[0] = "tampered"
	first.Subject = "tampered"
	second := mustVerify(t, v, tok)
	if second.Scopes[0] == "tampered" || second.Audience[0] == "tampered" || second.Subject == "tampered" {
		t.Fatalf("a caller's change reached the cache: %+v", second)
	}
	second.Scopes[0] = "again"
	if third := mustVerify(t, v, tok); third.Scopes[0] == "again" {
		t.Fatalf("a hit's result is shared with the cache: %+v", third)
	}
}

// TestCacheExpiry: exp, nbf and iat are checked on every hit, and an
// expired token leaves the cache.
func TestCacheExpiry(t *testing.T) {
	clock := newFixtureClock(now)
	v, _ := cachedVerifier(t, clock, 0)
	c := goodClaims()
	exp := now.Add(2 * time.Minute)
	c["exp"] = exp.Unix()
	tok := sign(t, ecKey, nil, nil, c)
	mustVerify(t, v, tok)
	clock.Set(exp.Add(-time.Second))
	mustVerify(t, v, tok)
	if n := verify.CacheLen(v); n != 1 {
		t.Fatalf("cache holds %d tokens before exp, want 1", n)
	}
	clock.Set(exp.Add(29 * time.Second)) // within the 30 s leeway
	mustVerify(t, v, tok)
	if n := verify.CacheLen(v); n != 0 {
		t.Fatalf("cache holds %d tokens past exp, want none: entries are never kept past exp", n)
	}
	clock.Set(exp.Add(30 * time.Second))
	mustReject(t, v, tok, verify.ErrExpired)
	if n := verify.CacheLen(v); n != 0 {
		t.Errorf("an expired token is still cached (%d entries)", n)
	}
	mustReject(t, v, tok, verify.ErrExpired) // and verified anew: the same answer

	// A token cached while valid is refused before its nbf when the clock
	// goes back (a clock step), and accepted again after.
	clock.Set(now)
	nb := goodClaims()
	nb["nbf"] = now.Add(-10 * time.Second).Unix()
	tok2 := sign(t, ecKey, nil, nil, nb)
	mustVerify(t, v, tok2)
	clock.Set(now.Add(-45 * time.Second))
	mustReject(t, v, tok2, verify.ErrNotYetValid)
	clock.Set(now)
	mustVerify(t, v, tok2)
}

// TestCacheBounded: however many tokens are verified, the cache holds at
// most its size, and every token is still verified correctly.
func TestCacheBounded(t *testing.T) {
	clock := newFixtureClock(now)
	v, _ := cachedVerifier(t, clock, 64)
	for i := range 300 {
		c := goodClaims()
		c["jti"] = fmt.Sprint("jti-", i)
		mustVerify(t, v, sign(t, ecKey, nil, nil, c))
		if n := verify.CacheLen(v); n > 64 {
			t.Fatalf("cache holds %d tokens, bound 64", n)
		}
	}
	if n := verify.CacheLen(v); n < 32 {
		t.Errorf("cache holds only %d tokens after 300 verifications (bound 64)", n)
	}
}

// TestCacheBoundBelowShards: a size smaller than the shard count is still
// the bound.
func TestCacheBoundBelowShards(t *testing.T) {
	for _, size := range []int{1, 5, 17} {
		clock := newFixtureClock(now)
		v, _ := cachedVerifier(t, clock, size)
		for i := range 100 {
			c := goodClaims()
			c["jti"] = fmt.Sprint("jti-", i)
			mustVerify(t, v, sign(t, ecKey, nil, nil, c))
			if n := verify.CacheLen(v); n > size {
				t.Fatalf("CacheSize %d: cache holds %d tokens", size, n)
			}
		}
	}
}

// TestCacheOff: a negative CacheSize verifies every token in full.
func TestCacheOff(t *testing.T) {
	clock := newFixtureClock(now)
	v, ks := cachedVerifier(t, clock, -1)
	tok := sign(t, ecKey, nil, nil, goodClaims())
	mustVerify(t, v, tok)
	mustVerify(t, v, tok)
	if n := verify.CacheLen(v); n != 0 {
		t.Errorf("cache off holds %d tokens", n)
	}
	ks.withdrawn.Store(true)
	mustReject(t, v, tok, verify.ErrUnknownKey)
}

// TestCacheFailuresNotCached: a refused token is refused again with the
// signature checked again (never remembered), and a cached token's forged
// twin — the same claims, another signature; the same header and payload
// with a changed claim — is verified in full and refused.
func TestCacheFailuresNotCached(t *testing.T) {
	clock := newFixtureClock(now)
	v, ks := cachedVerifier(t, clock, 0)
	tok := sign(t, ecKey, nil, nil, goodClaims())
	mustVerify(t, v, tok)
	parts := strings.Split(tok, ".")
	// Another signature (of another key) over the same header and payload.
	other := mustEC(t)
	sig, err := jwt.SigningMethodES256.Sign(parts[0]+"."+parts[1], other)
	if err != nil {
		t.Fatal(err)
	}
	forged := parts[0] + "." + parts[1] + "." + base64.RawURLEncoding.EncodeToString(sig)
	for range 2 {
		before := ks.calls.Load()
		mustReject(t, v, forged, verify.ErrSignature)
		if ks.calls.Load() == before {
			t.Fatal("a forged twin was refused without its key being asked for: not verified in full")
		}
	}
	// The cached token's payload with a changed scope, its signature kept.
	c := goodClaims()
	c["scope"] = "keys:admin"
	mod := sign(t, ecKey, nil, nil, c)
	mparts := strings.Split(mod, ".")
	mustReject(t, v, parts[0]+"."+mparts[1]+"."+parts[2], verify.ErrSignature)
	if n := verify.CacheLen(v); n != 1 {
		t.Errorf("cache holds %d tokens, want only the valid one", n)
	}
}

// TestCacheKeyWithdrawn: a cached token whose signing key is no longer to
// be had is refused like a new one.
func TestCacheKeyWithdrawn(t *testing.T) {
	clock := newFixtureClock(now)
	v, ks := cachedVerifier(t, clock, 0)
	tok := sign(t, ecKey, nil, nil, goodClaims())
	mustVerify(t, v, tok)
	ks.withdrawn.Store(true)
	mustReject(t, v, tok, verify.ErrUnknownKey)
	ks.withdrawn.Store(false)
	mustVerify(t, v, tok)
}

// TestCacheEmptiedOnJWKSChange: when the JWKS changes the cache is emptied,
// and a cached token of a withdrawn key is refused.
func TestCacheEmptiedOnJWKSChange(t *testing.T) {
	keys(t)
	f := newJWKSFixture(t, stdJWKS()...)
	clock := newFixtureClock(now)
	v := f.verifier(t, clock, nil)
	ecTok := sign(t, ecKey, nil, nil, longClaims())
	edTok := sign(t, edKey, nil, nil, longClaims())
	mustVerify(t, v, ecTok)
	mustVerify(t, v, edTok)
	if n := verify.CacheLen(v); n != 2 {
		t.Fatalf("cache holds %d tokens, want 2", n)
	}
	// The same JWKS fetched again changes nothing.
	clock.Advance(6 * time.Minute) // past max-age 300
	mustVerify(t, v, ecTok)        // starts a background refresh
	eventually(t, "the refresh", func() bool { return f.jwksHits.Load() == 2 })
	settle()
	mustVerify(t, v, ecTok)
	if n := verify.CacheLen(v); n != 2 {
		t.Fatalf("an unchanged JWKS emptied the cache: %d tokens", n)
	}
	// The EC key is withdrawn.
	f.set(func(f *jwksFixture) {
		var kept []map[string]any
		for _, k := range f.keys {
			if k["kid"] != ecKey.kid {
				kept = append(kept, k)
			}
		}
		f.keys = kept
	})
	clock.Advance(6 * time.Minute)
	mustVerify(t, v, edTok) // starts a background refresh
	// Once the new set is in place, the first Verify empties the cache and
	// the withdrawn key's token is verified in full, and refused.
	eventually(t, "the withdrawn key's cached token refused", func() bool {
		_, err := v.Verify(context.Background(), ecTok)
		return errors.Is(err, verify.ErrUnknownKey)
	})
	if n := verify.CacheLen(v); n != 0 {
		t.Errorf("after the JWKS changed the cache holds %d tokens, want none", n)
	}
	mustVerify(t, v, edTok)
	if n := verify.CacheLen(v); n != 1 {
		t.Errorf("the cache holds %d tokens, want only the one verified since", n)
	}
}

// TestCacheWarmRejections: the hostile and broken tokens are refused the
// same, with the reason, on a verifier whose cache holds valid tokens of
// every key, twice over.
func TestCacheWarmRejections(t *testing.T) {
	v := newVerifier(t)
	for _, k := range []testKey{ecKey, rsaKey, edKey} {
		tok := sign(t, k, nil, nil, goodClaims())
		mustVerify(t, v, tok)
		mustVerify(t, v, tok)
	}
	cases := rejectionCases(t)
	for pass := range 2 {
		for _, tc := range cases {
			t.Run(fmt.Sprintf("pass%d/%s", pass, tc.name), func(t *testing.T) { mustReject(t, v, tc.token, tc.want) })
		}
	}
	if n := verify.CacheLen(v); n != 3 {
		t.Errorf("cache holds %d tokens, want the 3 valid ones", n)
	}
}

// TestCacheStatusConsulted: the status list is consulted on every hit: a
// cached token of a key deleted afterwards is refused once the list's ttl
// has passed, and not cached as a success again.
func TestCacheStatusConsulted(t *testing.T) {
	f := newStatusFixture(t, []byte{0, 0, 0, 0, 0, 0, 0, 0})
	f.set(func(f *statusFixture) { f.ttl = 1 })
	v := f.verifier(t, nil)
	tok := f.token(t, 3)
	mustVerify(t, v, tok)
	mustVerify(t, v, tok)
	if n := verify.CacheLen(v); n != 1 {
		t.Fatalf("cache holds %d tokens, want 1", n)
	}
	f.set(func(f *statusFixture) { f.statuses[3] = 1 }) // the key is deleted
	f.clock.Advance(500 * time.Millisecond)
	mustVerify(t, v, tok) // within the list's ttl
	f.clock.Advance(600 * time.Millisecond)
	mustRefuse(t, v, tok, verify.ErrRevoked)
	mustRefuse(t, v, tok, verify.ErrRevoked)
}
