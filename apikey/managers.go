package apikey

// Rules of keys for team managers (issue 16): a team key holding
// key_management, or a console-session or exchanged token of the team, may
// manage the team's keys as an operator does, with no way up: it cannot
// grant an operator-only permission (key_management, token_exchange,
// token_introspection, …), and keys holding one are invisible to it — other
// managers, introspection keys, exchange clients — except a manager key
// itself, which may read and rotate itself but never change its own
// permissions. A manager key is an ordinary key of its team: it counts
// toward the team's limit (MaxKeysPerTeam), which the store enforces on
// every key of the team.

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/keygate/keygate/scopes"
	"github.com/keygate/keygate/store"
)

// ForbiddenError is a request a team manager may not make (it names the
// permission). The server answers 403.
type ForbiddenError struct{ Detail string }

func (e *ForbiddenError) Error() string { return e.Detail }

// Manager is a team-bound caller as the rules of keys see it: its team and,
// for a manager key, its own client ID (empty for session tokens, which
// belong to no key).
type Manager struct {
	Team string
	Self string
}

// HoldsOperatorOnly reports whether k holds any operator-only permission
// (an unknown ID counts: the catalog may have lost an entry, and the key
// stays hidden rather than exposed).
func (s *Service) HoldsOperatorOnly(k store.Key) bool {
	for _, id := range k.Permissions {
		p, ok := s.cfg.Catalog.Lookup(id)
		if !ok || p.OperatorOnly {
			return true
		}
	}
	return false
}

// HoldsKeyManagement reports whether k holds the built-in key_management
// permission.
func HoldsKeyManagement(k store.Key) bool {
	return k.TeamID != "" && slices.Contains(k.Permissions, scopes.KeyManagement)
}

// Sees reports whether m may see k at all: a key of m's team holding no
// operator-only permission, or m's own key.
func (s *Service) Sees(m Manager, k store.Key) bool {
	if k.TeamID != m.Team || k.TeamID == "" {
		return false
	}
	return (m.Self != "" && k.ClientID == m.Self) || !s.HoldsOperatorOnly(k)
}

// VisibleTo filters a team's key list down to what m sees.
func (s *Service) VisibleTo(m Manager, keys []store.Key) []store.Key {
	out := keys[:0:0]
	for _, k := range keys {
		if s.Sees(m, k) {
			out = append(out, k)
		}
	}
	return out
}

// GetFor is Get for a manager: ErrNotFound for a key m does not see, the
// same answer as for a key that does not exist.
func (s *Service) GetFor(ctx context.Context, m Manager, clientID string) (store.Key, error) {
	k, err := s.Get(ctx, m.Team, clientID)
	if err != nil {
		return store.Key{}, err
	}
	if !s.Sees(m, k) {
		return store.Key{}, ErrNotFound
	}
	return k, nil
}

// CheckManagerGrant refuses a permission list a manager may not set: any
// operator-only permission, named in the error. Unknown IDs are left to
// the catalog's own validation (400).
func (s *Service) CheckManagerGrant(perms []string) error {
	for _, id := range perms {
		if p, ok := s.cfg.Catalog.Lookup(id); ok && p.OperatorOnly {
			return &ForbiddenError{Detail: fmt.Sprintf(
				"permission %q is operator-only; a team manager cannot grant it (ask an operator)", id)}
		}
	}
	return nil
}

// checkManagerChange is the rule of an update by m on k inside the update's
// atomic step: a key m does not see is not found; m's own key keeps its
// permissions.
func (s *Service) checkManagerChange(m *Manager, k store.Key, ch KeyChange) error {
	if m == nil {
		return nil
	}
	if !s.Sees(*m, k) {
		return errOtherTeam
	}
	if ch.Permissions != nil && k.ClientID == m.Self && !slices.Equal(*ch.Permissions, k.Permissions) {
		return &ForbiddenError{Detail: "a team manager cannot change its own key's permissions; ask an operator"}
	}
	if k.ClientID == m.Self && ch.changesPolicy() {
		// An operator's limits on a manager key (expiry, source addresses,
		// token lifetime…) would mean nothing if the key could lift them.
		return &ForbiddenError{Detail: "a team manager cannot change its own key's policy (expiry, suspension, token lifetime, audiences, source addresses, metadata, quota); ask an operator"}
	}
	if ch.Permissions != nil {
		return s.CheckManagerGrant(*ch.Permissions)
	}
	return nil
}

// CheckKeyToken decides whether a verified token of a key still stands:
// the key exists and is in the token's team (a deleted key loses access at
// once), the secret generation it was minted with is live (GenerationLive:
// not reported leaked, not rotated out) and the token is not on the deny
// list, and the key is neither expired nor suspended (it loses the API at
// once). It returns the key as stored now. ErrKeyGone, ErrRevoked,
// ErrKeyExpired or ErrKeySuspended otherwise.
func (s *Service) CheckKeyToken(ctx context.Context, t Token) (store.Key, error) {
	k, err := s.store.GetKey(ctx, t.ClientID)
	if errors.Is(err, store.ErrNotFound) || (err == nil && k.TeamID != t.TeamID) {
		return store.Key{}, ErrKeyGone
	}
	if err != nil {
		return store.Key{}, fmt.Errorf("load key %s: %w", t.ClientID, err)
	}
	now := s.cfg.Now()
	if !GenerationLive(k, t.StatusIndex, now) {
		return store.Key{}, ErrRevoked
	}
	switch {
	case KeyExpired(k, now):
		return store.Key{}, ErrKeyExpired
	case KeySuspended(k):
		return store.Key{}, ErrKeySuspended
	}
	if err := s.checkDenied(ctx, t.ID); err != nil {
		return store.Key{}, err
	}
	return k, nil
}

// CheckSessionToken decides whether a verified session token (sid) still
// stands: the session exists, belongs to the token's team and has not
// expired on the server's clock; the token is not on the deny list.
// ErrKeyGone (no such session: ended or never) or ErrRevoked otherwise.
// A store without sessions knows none.
func (s *Service) CheckSessionToken(ctx context.Context, t Token, sid string) (store.ManagementSession, error) {
	ss, ok := store.Feature[store.Sessions](s.store)
	if !ok {
		return store.ManagementSession{}, ErrKeyGone
	}
	sess, err := ss.GetSession(ctx, sid)
	if errors.Is(err, store.ErrNotFound) {
		return store.ManagementSession{}, ErrKeyGone
	}
	if err != nil {
		return store.ManagementSession{}, fmt.Errorf("load session %s: %w", sid, err)
	}
	if sess.TeamID != t.TeamID || !s.cfg.Now().Before(sess.ExpiresAt) {
		return store.ManagementSession{}, ErrKeyGone
	}
	if err := s.checkDenied(ctx, t.ID); err != nil {
		return store.ManagementSession{}, err
	}
	return sess, nil
}

func (s *Service) checkDenied(ctx context.Context, jti string) error {
	denied, err := s.store.TokenDenied(ctx, jti)
	if err != nil {
		return fmt.Errorf("check deny list: %w", err)
	}
	if denied {
		return ErrRevoked
	}
	return nil
}
