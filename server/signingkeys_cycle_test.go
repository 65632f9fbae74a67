package server_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/config"
	"github.com/keygate/keygate/server"
	"github.com/keygate/keygate/server/servertest"
	"github.com/keygate/keygate/verify"
)

// jwksSnapshot fetches the JWKS as a cache would: its kids and the max-age
// it may be kept.
func jwksSnapshot(t testing.TB, e *servertest.Env) (kids []string, maxAge time.Duration, body []byte) {
	t.Helper()
	r := e.Do(t, e.NewRequest(t, http.MethodGet, "/.well-known/jwks.json", nil))
	if r.Status != http.StatusOK {
		t.Fatalf("GET jwks: %s", r)
	}
	var set struct{ Keys []struct{ KID string } }
	if err := json.Unmarshal(r.Body, &set); err != nil {
		t.Fatal(err)
	}
	for _, k := range set.Keys {
		kids = append(kids, k.KID)
	}
	for _, d := range strings.Split(r.Header.Get("Cache-Control"), ",") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(d), "max-age="); ok {
			n, err := strconv.Atoi(v)
			if err != nil {
				t.Fatal(err)
			}
			maxAge = time.Duration(n) * time.Second
		}
	}
	if maxAge == 0 {
		t.Fatalf("JWKS without max-age: %q", r.Header.Get("Cache-Control"))
	}
	return kids, maxAge, r.Body
}

// cachingResourceServer is the strictest verify-based resource server
// keygate must serve without a failure: it fetches the JWKS once and keeps
// exactly that set for its max-age — no refresh on an unknown kid, none
// before the max-age has passed — then fetches again. phase staggers when
// its fetches fall.
type cachingResourceServer struct {
	name      string
	v         *verify.Verifier
	kids      []string
	fetchedAt time.Time
	maxAge    time.Duration
}

func (rs *cachingResourceServer) refreshIfDue(t *testing.T, e *servertest.Env, now time.Time) {
	t.Helper()
	if rs.v != nil && now.Sub(rs.fetchedAt) < rs.maxAge {
		return
	}
	kids, maxAge, _ := jwksSnapshot(t, e)
	v, err := verify.New(context.Background(), verify.Options{
		Issuer: e.URL, Audience: e.URL, JWKSURL: e.URL + "/.well-known/jwks.json", Now: e.Clock.Now,
		// Never refresh on its own: an unknown kid fails, a set past its
		// max-age is still used (this type replaces it on schedule).
		MinRefreshInterval: 1000 * time.Hour, MaxStale: -1,
	})
	if err != nil {
		t.Fatalf("%s: verify.New: %v", rs.name, err)
	}
	rs.v, rs.kids, rs.fetchedAt, rs.maxAge = v, kids, now, maxAge
}

// TestSigningKeyCycleZeroFailures runs one signing key through next →
// current → retired → removed on an injected clock, minute by minute,
// with resource servers whose JWKS caches refresh only every max-age (at
// five different phases) and one with verify's ordinary cache: every token
// issued during the cycle verifies at issue and again in the last minute
// of its lifetime (status list checks included: the lists are signed by
// the same keys), the switch happens at its scheduled minute, and no
// cache holds the old key once its tokens (and status lists) have all
// expired plus keygate's margin and one max-age.
func TestSigningKeyCycleZeroFailures(t *testing.T) {
	t0 := time.Date(2031, 3, 4, 5, 0, 0, 0, time.UTC)
	clock := servertest.NewClock(t0)
	const rotation = 24 * time.Hour
	prepublish := config.DefaultSigningKeyPrepublish
	e := startEnv(t, servertest.Config{Clock: clock, Options: server.Options{SigningKeyRotation: rotation}})
	key := e.CreateKey(t, "acme", "cycle", permVisualization)

	var caches []*cachingResourceServer
	for i := range 5 {
		caches = append(caches, &cachingResourceServer{name: fmt.Sprintf("cache-phase-%dm", i)})
	}
	ordinary, err := verify.New(context.Background(), verify.Options{Issuer: e.URL, Audience: e.URL, Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}

	type issued struct {
		tok      string
		kid      string
		checkAt  time.Time // the last minute of its lifetime
		issuedAt time.Time
	}
	var pending []issued
	kidsSigned := map[string][]time.Time{} // kid → first and last issue time
	failures := 0
	verifyAll := func(now time.Time, tok, kid, when string) {
		for _, rs := range caches {
			if _, err := rs.v.Verify(context.Background(), tok); err != nil {
				failures++
				t.Errorf("%s at %s: %s token of kid %s refused: %v (cached kids %v fetched %s)",
					rs.name, now.Sub(t0), when, kid, err, rs.kids, rs.fetchedAt.Sub(t0))
			}
		}
		if _, err := ordinary.Verify(context.Background(), tok); err != nil {
			failures++
			t.Errorf("ordinary verify at %s: %s token of kid %s refused: %v", now.Sub(t0), when, kid, err)
		}
	}

	end := t0.Add(rotation + 3*time.Hour)
	firstKID := ""
	var switchedAt time.Time
	var nextSeenAt time.Time
	for step := 0; ; step++ {
		now := clock.Now()
		if now.After(end) {
			break
		}
		e.SigningKeysTick(t)
		for i, rs := range caches {
			// Phase i: the first fetch i minutes in, then every max-age.
			if now.Sub(t0) >= time.Duration(i)*time.Minute {
				rs.refreshIfDue(t, e.Env, now)
			}
		}
		kids, maxAge, _ := jwksSnapshot(t, e.Env)
		// Never a key whose tokens have all expired: once the old key's
		// last status list (an hour after the switch) has expired, plus
		// keygate's 5-minute margin and one max-age of caching, no cache
		// may hold it.
		if !switchedAt.IsZero() && now.After(switchedAt.Add(time.Hour+5*time.Minute+maxAge)) {
			for _, rs := range caches {
				if slices.Contains(rs.kids, firstKID) {
					t.Errorf("%s at %s still holds the old key (fetched %s)", rs.name, now.Sub(t0), rs.fetchedAt.Sub(t0))
				}
			}
		}
		if nextSeenAt.IsZero() && len(kids) == 2 && firstKID != "" && switchedAt.IsZero() {
			nextSeenAt = now
		}

		tok := e.Token(t, key.ClientID, key.ClientSecret, "").AccessToken
		kid := servertest.KID(t, tok)
		if firstKID == "" {
			firstKID = kid
		}
		if kid != firstKID && switchedAt.IsZero() {
			switchedAt = now
		}
		if s := kidsSigned[kid]; s == nil {
			kidsSigned[kid] = []time.Time{now, now}
		} else {
			s[1] = now
		}
		active := []*cachingResourceServer{}
		for i, rs := range caches {
			if now.Sub(t0) >= time.Duration(i)*time.Minute {
				active = append(active, rs)
			}
		}
		saved := caches
		caches = active
		verifyAll(now, tok, kid, "fresh")
		pending = append(pending, issued{tok: tok, kid: kid, checkAt: now.Add(config.DefaultTokenTTL - time.Minute), issuedAt: now})
		for len(pending) > 0 && !pending[0].checkAt.After(now) {
			verifyAll(now, pending[0].tok, pending[0].kid, "issued "+pending[0].issuedAt.Sub(t0).String()+" in, near expiry,")
			pending = pending[1:]
		}
		caches = saved
		if failures > 5 {
			t.Fatal("too many failures; stopping")
		}
		// Minute by minute around the transitions, coarser in between.
		if since := now.Sub(t0); since < time.Hour || (since > rotation-prepublish-10*time.Minute && since < rotation+2*time.Hour) {
			clock.Advance(time.Minute)
		} else {
			// Never past a pending token's last minute.
			d := 7 * time.Minute
			if len(pending) > 0 {
				d = max(time.Minute, min(d, pending[0].checkAt.Sub(now)))
			}
			clock.Advance(d)
		}
	}

	// The schedule: the next key was published prepublish before it
	// signed, and it signed exactly at the rotation.
	if want := t0.Add(rotation - prepublish); !nextSeenAt.Equal(want) {
		t.Errorf("next key first published at %s, want %s", nextSeenAt.Sub(t0), want.Sub(t0))
	}
	if want := t0.Add(rotation); !switchedAt.Equal(want) {
		t.Errorf("tokens switched to the new key at %s, want %s", switchedAt.Sub(t0), want.Sub(t0))
	}
	if len(kidsSigned) != 2 {
		t.Fatalf("kids that signed during the cycle: %v, want 2", kidsSigned)
	}
	// The old key's last token expired at lastSigned + token_ttl; its last
	// status list an hour after the switch (server/statuslist.go). keygate
	// drops it 5 minutes after that; a cache holds it one max-age more.
	_, maxAge, _ := jwksSnapshot(t, e.Env)
	dropBy := switchedAt.Add(time.Hour + 5*time.Minute + maxAge)
	if !clock.Now().After(dropBy) {
		t.Fatalf("the test ends at %s, before the old key should be gone everywhere (%s)", clock.Now().Sub(t0), dropBy.Sub(t0))
	}
	kids, _, _ := jwksSnapshot(t, e.Env)
	if slices.Contains(kids, firstKID) {
		t.Errorf("keygate still publishes the old key %s at %s", firstKID, clock.Now().Sub(t0))
	}
	for _, rs := range caches {
		if slices.Contains(rs.kids, firstKID) {
			t.Errorf("%s still holds the old key at %s (fetched %s)", rs.name, clock.Now().Sub(t0), rs.fetchedAt.Sub(t0))
		}
	}
	if failures != 0 {
		t.Fatalf("%d failed verifications", failures)
	}
}
