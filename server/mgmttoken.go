package server

// Management tokens: every token carrying a keys:… scope is for the
// management API alone, so its aud is <issuer>/v1 (managementAudience),
// which no resource server configured with keygate's default audience
// accepts. Session tokens (console sessions, exchanged tokens) are minted
// here: they belong to no key, name their revocable session record in sid
// and the acting user in act (RFC 8693 §4.1).

import (
	"time"

	"github.com/keygate/keygate/scopes"
	"github.com/keygate/keygate/store"
)

// managementAudience is the aud of management tokens and the only audience
// the management API accepts.
func (s *Server) managementAudience() string { return s.cfg.Issuer + "/v1" }

// signSessionToken signs the team-bound management token of sess, issued
// at now and expiring with the session. client_id and sub are the key that
// minted the session (the platform's operator key, or the client that
// exchanged a token): the authority the session was delegated from; act
// names the user. It carries no status claim: the session record is what
// revokes it, checked on every call.
func (s *Server) signSessionToken(sess store.ManagementSession, now time.Time) (string, error) {
	jti, err := newJTI()
	if err != nil {
		return "", err
	}
	claims := accessClaims{
		Issuer:    s.cfg.Issuer,
		Subject:   sess.MintedBy,
		Audience:  s.managementAudience(),
		ExpiresAt: sess.ExpiresAt.Unix(),
		IssuedAt:  now.Unix(),
		NotBefore: now.Unix(),
		ID:        jti,
		ClientID:  sess.MintedBy,
		Scope:     scopes.ManageScope,
		TeamID:    sess.TeamID,
		Actor:     sess.User,
		SessionID: sess.ID,
	}
	return s.keys.KeySetAt(now).Signer().SignPayload(claims.appendJSON(make([]byte, 0, 512)))
}
