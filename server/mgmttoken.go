package server

// Management tokens: every token carrying a keys:… scope is for the
// management API alone, so its aud is <issuer>/v1 (managementAudience),
// which no resource server configured with keygate's default audience
// accepts. Session tokens (console sessions, exchanged tokens) are minted
// here: they belong to no key, name their revocable session record in sid
// and the acting user in act (RFC 8693 §4.1).

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/keygate/keygate/scopes"
	"github.com/keygate/keygate/store"
	"github.com/keygate/keygate/verify"
)

// managementAudience is the aud of management tokens and the only audience
// the management API accepts.
func (s *Server) managementAudience() string {
	if s.mgmtAudience == "" {
		return s.cfg.Issuer + "/v1"
	}
	return s.mgmtAudience
}

// newManagementVerifier builds the verifier of management tokens: the
// same keys and clock as s.verifier, audience issuer/v1 only.
func (s *Server) newManagementVerifier(ctx context.Context) error {
	s.mgmtAudience = s.cfg.Issuer + "/v1"
	v, err := verify.New(ctx, verify.Options{
		Issuer:       s.cfg.Issuer,
		Audience:     s.managementAudience(),
		Keys:         ownKeys{s.keys},
		Now:          s.cfg.Now,
		IgnoreStatus: true, // checked against the store on every call
	})
	if err != nil {
		return fmt.Errorf("management token verifier: %w", err)
	}
	s.mgmtVerifier = v
	return nil
}

// verifyManagement verifies a management API token, exp exact as in
// verifyOwn.
func (s *Server) verifyManagement(ctx context.Context, token string) (*verify.Claims, error) {
	claims, err := s.mgmtVerifier.Verify(ctx, token)
	if err == nil && !s.cfg.Now().Before(claims.ExpiresAt) {
		return nil, verify.ErrExpired
	}
	return claims, err
}

// tokenAudience is the aud of a token granted scope: the management
// audience when scope holds a keys:… scope (admin, read admin, team
// manager), else the configured audience. scope is GrantScope's result (a
// well-formed, space-separated list), and no catalog scope can have the
// reserved root "keys", so finding "keys:" at the start of an entry is
// enough: no parsing, no allocation on the token path.
func (s *Server) tokenAudience(scope string) string {
	for i := 0; ; {
		j := strings.Index(scope[i:], "keys:")
		if j < 0 {
			return s.cfg.Audience
		}
		if i+j == 0 || scope[i+j-1] == ' ' {
			return s.managementAudience()
		}
		i += j + len("keys:")
	}
}

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
