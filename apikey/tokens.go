package apikey

// The rules of issued access tokens that a signature cannot decide: whether
// a token is still active, who may see or revoke it, and whether an admin
// token still opens the management API.

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/keygate/keygate/store"
)

// IntrospectScope lets a key introspect tokens of every team (resource
// servers); it comes from an operator-only catalog permission.
const IntrospectScope = "tokens:introspect"

// Token is what these rules need of a verified access token.
type Token struct {
	ID        string // jti
	ClientID  string
	TeamID    string
	ExpiresAt time.Time
	// StatusIndex is the token's status list index: the secret generation
	// it was minted with (0: the token names none).
	StatusIndex int64
}

var (
	// ErrNotOwner: a client may revoke only its own tokens.
	ErrNotOwner = errors.New("token issued to another client")
	// ErrKeyGone: the key a token was issued to no longer exists (or is no
	// longer an admin key).
	ErrKeyGone = errors.New("token's key no longer exists")
	// ErrRevoked: the token was revoked (RFC 7009).
	ErrRevoked = errors.New("token revoked")
)

// TokenActive decides the parts of RFC 7662 "active" that a signature
// cannot: the key still exists in the token's team and is neither expired
// nor suspended (KeyInForce), the secret generation
// the token was minted with is still live (GenerationLive), the token was
// not revoked, and the caller may see it (a key sees its own team's tokens;
// admin keys and keys with IntrospectScope see all).
func (s *Service) TokenActive(ctx context.Context, t Token, caller store.Key) (bool, error) {
	owner, err := s.store.GetKey(ctx, t.ClientID)
	if errors.Is(err, store.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("load key %s: %w", t.ClientID, err)
	}
	now := s.cfg.Now()
	if owner.TeamID != t.TeamID || !GenerationLive(owner, t.StatusIndex, now) || !KeyInForce(owner, now) {
		return false, nil
	}
	denied, err := s.store.TokenDenied(ctx, t.ID)
	if err != nil {
		return false, fmt.Errorf("check deny list: %w", err)
	}
	if denied {
		return false, nil
	}
	if caller.IsAdmin() || caller.TeamID != "" && caller.TeamID == t.TeamID {
		return true, nil
	}
	return s.hasScope(caller, IntrospectScope), nil
}

// GenerationLive reports whether the secret generation with status index
// idx is still live on k at now: k's current one, or its previous one
// during the grace period. Every generation that is not live has had (or
// is about to have: Rotate, RevokeEndedGrace, ReportLeaked) its status
// bit set, so this is the status list's answer read from the key alone,
// without the window between a rotation and its bit. The current
// generation is not live once its secret was reported leaked
// (SecretSuspended). A token naming no index (0) predates status lists
// and is judged by its key alone.
func GenerationLive(k store.Key, idx int64, now time.Time) bool {
	switch {
	case idx == 0 || idx == k.StatusIndex:
		return !SecretSuspended(k)
	case idx == k.PreviousStatusIndex:
		return PreviousSecretLive(k, now)
	}
	return false
}

// Revoke puts the caller's own token on the deny list until it expires
// (every instance sees it), then records token.revoked in the key's team's
// audit trail. ErrNotOwner for another client's token. The two writes are
// not one atomic step (the deny list is spread over Redis Cluster, not
// filed by team): if the event cannot be written, the error makes the
// caller retry, and revoking again is harmless. by.Actor is filled from
// caller when empty.
func (s *Service) Revoke(ctx context.Context, by Request, t Token, caller store.Key) error {
	if t.ClientID != caller.ClientID {
		return ErrNotOwner
	}
	if err := s.store.DenyToken(ctx, t.ID, t.ExpiresAt); err != nil {
		return fmt.Errorf("deny token: %w", err)
	}
	if by.Actor.Type == "" {
		by.Actor = KeyActor(caller)
	}
	ev := s.newEvent(by, store.AuditTokenRevoked, t.TeamID, t.ClientID)
	if err := s.store.AppendAudit(ctx, ev); err != nil {
		return fmt.Errorf("record token revocation: %w", err)
	}
	s.logAudit(ctx, ev)
	return nil
}

// KeyActor is the audit actor of a key acting with its own credentials.
func KeyActor(k store.Key) store.AuditActor {
	if k.IsAdmin() {
		return store.AuditActor{Type: store.ActorAdminKey, ID: k.ClientID}
	}
	return store.AuditActor{Type: store.ActorTeamKey, ID: k.ClientID}
}

// CheckAdminToken decides whether a verified token with the admin scope
// still opens the management API: its admin key must still exist (a deleted
// admin key loses access at once, not when its token expires), the secret
// generation it was minted with must still be live (GenerationLive: not
// reported leaked, not rotated out) and the token must not be revoked.
// ErrKeyGone or ErrRevoked otherwise.
func (s *Service) CheckAdminToken(ctx context.Context, t Token) error {
	t.TeamID = ""
	_, err := s.CheckKeyToken(ctx, t)
	return err
}
