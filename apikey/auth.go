package apikey

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"errors"
	"fmt"
	"time"

	"github.com/keygate/keygate/store"
)

// Auth is what a successful authentication established besides the key.
type Auth struct {
	// Now is the clock reading the secret was judged by (a rotated
	// secret's grace period ends on that clock; the token's iat uses the
	// same reading).
	Now time.Time
	// StatusIndex is the status list index of the secret generation that
	// matched: the key's StatusIndex for the current secret, its
	// PreviousStatusIndex for the previous one during a grace period.
	// Tokens carry it, so cutting one generation off (a rotation's end)
	// leaves the other's tokens alone.
	StatusIndex int64
	// NotAfter, when not zero, is when the matched secret stops working
	// (the previous secret's grace end, the key's expires_at, whichever is
	// first): a token minted with it must not outlive it.
	NotAfter time.Time
}

// earliest is the earlier of two times, a zero one meaning "never".
func earliest(a, b time.Time) time.Time {
	if a.IsZero() || !b.IsZero() && b.Before(a) {
		return b
	}
	return a
}

// TokenExpiry is when a token minted now for ttl expires: at now+ttl, or
// when the secret it was minted with ends, whichever comes first.
func (a Auth) TokenExpiry(ttl time.Duration) time.Time {
	exp := a.Now.Add(ttl)
	if !a.NotAfter.IsZero() && a.NotAfter.Before(exp) {
		return a.NotAfter
	}
	return exp
}

// Authenticate checks a client's credentials: the one authentication of
// every endpoint a key calls with its secret (/oauth/token,
// /oauth/introspect, /oauth/revoke). It returns the key and how it
// authenticated (Auth: the clock reading, the secret generation).
//
// The secret is checked against the current hash and, during a rotation's
// grace period, the previous one: one HMAC and two constant-time compares,
// always — for an unknown ID too, against nothing — so the answer's timing
// does not say which matched, or whether the client exists. The lookup
// before it costs the same for a missing ID (store.Store's GetKey), and so
// does the caller's bookkeeping of a failure (docs/ARCHITECTURE.md, "Equal
// cost for unknown client IDs"). Unknown ID,
// empty secret, wrong secret and deleted key all return ErrInvalidClient;
// a store failure returns the store's error, wrapped.
//
// A key whose matching generation has no status index (it predates status
// lists) gets one here, written before the token exists (keycheck.go).
//
// With ErrInvalidClient for a client ID the store knows (a wrong or expired
// secret), the returned key carries that key's ClientID, TeamID and
// LastUsedAt and nothing else, so the caller can count the failure against
// the key (package lastused); for an unknown ID it is the zero Key.
func (s *Service) Authenticate(ctx context.Context, clientID, secret string) (store.Key, Auth, error) {
	if clientID == "" || secret == "" {
		return store.Key{}, Auth{}, ErrInvalidClient
	}
	k, err := s.store.GetKey(ctx, clientID)
	known := err == nil
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return store.Key{}, Auth{}, fmt.Errorf("load key %s: %w", clientID, err)
	}
	now := s.cfg.Now()
	cur, prev := s.secretMatches(k, secret, now)
	switch {
	case known && cur:
		return s.ensureStatusIndex(ctx, k, Auth{Now: now, StatusIndex: k.StatusIndex, NotAfter: k.ExpiresAt})
	case known && prev:
		a := Auth{Now: now, StatusIndex: k.PreviousStatusIndex, NotAfter: earliest(k.PreviousSecretExpiresAt, k.ExpiresAt)}
		if a.StatusIndex == 0 {
			// Rotated before generations had indices of their own: the
			// key's one index is all there is.
			a.StatusIndex = k.StatusIndex
		}
		return s.ensureStatusIndex(ctx, k, a)
	case known:
		return store.Key{ClientID: k.ClientID, TeamID: k.TeamID, LastUsedAt: k.LastUsedAt}, Auth{}, ErrInvalidClient
	}
	return store.Key{}, Auth{}, ErrInvalidClient
}

// secretMatches is the comparison itself, separate so a test can count its
// HMACs: whether secret is k's current one, and whether it is its previous
// one and still live at now. An unknown key (zero hashes) runs the same
// work and matches neither.
func (s *Service) secretMatches(k store.Key, secret string, now time.Time) (cur, prev bool) {
	var buf [sha256.Size]byte
	h := s.hasher.AppendHash(buf[:0], secret)
	cur = hmac.Equal(h, k.SecretHash)
	prev = hmac.Equal(h, k.PreviousSecretHash) && now.Before(k.PreviousSecretExpiresAt)
	return cur, prev
}

// PreviousSecretLive reports whether the secret a rotation replaced still
// works at now: the same comparison Authenticate makes, for views that show
// when it stops.
func PreviousSecretLive(k store.Key, now time.Time) bool {
	return len(k.PreviousSecretHash) > 0 && now.Before(k.PreviousSecretExpiresAt)
}
