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

// Authenticate checks a client's credentials: the one authentication of
// every endpoint a key calls with its secret (/oauth/token,
// /oauth/introspect, /oauth/revoke). It returns the key and the clock
// reading the secret was judged by (a rotated secret's grace period ends on
// that clock; the token's iat uses the same reading).
//
// The secret is checked against the current hash and, during a rotation's
// grace period, the previous one: one HMAC and two constant-time compares,
// always — for an unknown ID too, against nothing — so the answer's timing
// does not say which matched, or whether the client exists. Unknown ID,
// empty secret, wrong secret and deleted key all return ErrInvalidClient;
// a store failure returns the store's error, wrapped.
//
// With ErrInvalidClient for a client ID the store knows (a wrong or expired
// secret), the returned key carries that key's ClientID, TeamID and
// LastUsedAt and nothing else, so the caller can count the failure against
// the key (package lastused); for an unknown ID it is the zero Key.
func (s *Service) Authenticate(ctx context.Context, clientID, secret string) (store.Key, time.Time, error) {
	if clientID == "" || secret == "" {
		return store.Key{}, time.Time{}, ErrInvalidClient
	}
	k, err := s.store.GetKey(ctx, clientID)
	known := err == nil
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return store.Key{}, time.Time{}, fmt.Errorf("load key %s: %w", clientID, err)
	}
	now := s.cfg.Now()
	if !s.secretMatches(k, known, secret, now) {
		if known {
			return store.Key{ClientID: k.ClientID, TeamID: k.TeamID, LastUsedAt: k.LastUsedAt}, time.Time{}, ErrInvalidClient
		}
		return store.Key{}, time.Time{}, ErrInvalidClient
	}
	return k, now, nil
}

// secretMatches is the comparison itself, separate so a test can count its
// HMACs. An unknown key (known false, zero hashes) runs the same work.
func (s *Service) secretMatches(k store.Key, known bool, secret string, now time.Time) bool {
	var buf [sha256.Size]byte
	h := s.hasher.AppendHash(buf[:0], secret)
	cur := hmac.Equal(h, k.SecretHash)
	prev := hmac.Equal(h, k.PreviousSecretHash) && now.Before(k.PreviousSecretExpiresAt)
	return known && (cur || prev)
}

// PreviousSecretLive reports whether the secret a rotation replaced still
// works at now: the same comparison Authenticate makes, for views that show
// when it stops.
func PreviousSecretLive(k store.Key, now time.Time) bool {
	return len(k.PreviousSecretHash) > 0 && now.Before(k.PreviousSecretExpiresAt)
}
