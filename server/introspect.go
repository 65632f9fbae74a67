package server

// Token introspection (RFC 7662) and revocation (RFC 7009). Both are called
// by keys, authenticated exactly as at the token endpoint, and both work on
// keygate's own access tokens only.
//
// Revocation puts a token's jti on a deny list in the store (every instance
// sees it) until the token expires. Only introspection consults that list:
// resource servers that verify offline keep accepting a revoked token until
// it expires. To cut a key off everywhere, delete it (the status list) or
// rotate its secret with grace period 0.

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/gin-gonic/gin"
	oerrors "github.com/go-oauth2/oauth2/v4/errors"
	"golang.org/x/time/rate"

	"github.com/keygate/keygate/scopes"
	"github.com/keygate/keygate/store"
	"github.com/keygate/keygate/verify"
)

// IntrospectScope lets a key introspect tokens of every team (resource
// servers); it comes from an operator-only catalog permission.
const IntrospectScope = "tokens:introspect"

// DefaultIntrospectionRate is the per-caller limit on /oauth/introspect.
const DefaultIntrospectionRate = 100

// callerLimits throttles introspection per authenticated caller, so one
// key cannot turn keygate into a token oracle or starve the others.
type callerLimits struct {
	perSecond rate.Limit
	burst     int
	limiters  sync.Map // client ID → *rate.Limiter
}

func (l *callerLimits) allow(clientID string) (bool, time.Duration) {
	v, ok := l.limiters.Load(clientID)
	if !ok {
		v, _ = l.limiters.LoadOrStore(clientID, rate.NewLimiter(l.perSecond, l.burst))
	}
	r := v.(*rate.Limiter).Reserve()
	if d := r.Delay(); d > 0 {
		r.Cancel()
		return false, d
	}
	return true, 0
}

// authenticateCaller checks a key's credentials from an already parsed
// client form, the same way the token endpoint does (constant-time, and as
// slow for an unknown ID as for a wrong secret).
func (s *Server) authenticateCaller(ctx context.Context, creds clientCredentials) (store.Key, error) {
	if creds.id == "" || creds.secret == "" {
		return store.Key{}, oerrors.ErrInvalidClient
	}
	ci, err := clientStore{s}.GetByID(ctx, creds.id)
	if err != nil {
		return store.Key{}, err
	}
	k := ci.(*apiKey)
	if !k.VerifyPassword(creds.secret) {
		return store.Key{}, oerrors.ErrInvalidClient
	}
	return k.key, nil
}

// clientRequest parses and authenticates a request to an endpoint a key
// calls with its credentials; on failure it has answered.
func (t *tokenEndpoint) clientRequest(c *gin.Context) (form clientForm, caller store.Key, ok bool) {
	f, creds, err := parseClientForm(c.Writer, c.Request)
	if err == nil {
		caller, err = t.s.authenticateCaller(c.Request.Context(), creds)
	}
	if err != nil {
		t.writeError(c.Writer, err)
		return clientForm{}, store.Key{}, false
	}
	return f, caller, true
}

// introspection is the RFC 7662 §2.2 answer for an active token.
type introspection struct {
	Active    bool   `json:"active"`
	Scope     string `json:"scope,omitempty"`
	ClientID  string `json:"client_id,omitempty"`
	Subject   string `json:"sub,omitempty"`
	Audience  string `json:"aud,omitempty"`
	Issuer    string `json:"iss,omitempty"`
	ExpiresAt int64  `json:"exp,omitempty"`
	IssuedAt  int64  `json:"iat,omitempty"`
	NotBefore int64  `json:"nbf,omitempty"`
	ID        string `json:"jti,omitempty"`
	TokenType string `json:"token_type,omitempty"`
	TeamID    string `json:"team_id,omitempty"`
}

// inactive is the whole answer for any token that is not active: RFC 7662
// §2.2 says nothing else should be revealed.
var inactive = introspection{Active: false}

func (t *tokenEndpoint) introspect(c *gin.Context) {
	form, caller, ok := t.clientRequest(c)
	if !ok {
		return
	}
	if allowed, wait := t.s.introspectLimits.allow(caller.ClientID); !allowed {
		c.Header("Retry-After", strconv.Itoa(max(1, int((wait+time.Second-1)/time.Second))))
		writeJSON(c.Writer, http.StatusTooManyRequests, map[string]string{"error": "invalid_request",
			"error_description": "too many introspection requests from this client; retry later"})
		return
	}
	token := form.token
	if token == "" {
		t.writeError(c.Writer, invalidRequest("the token parameter is missing"))
		return
	}
	ctx := c.Request.Context()
	claims, err := t.s.verifyOwn(ctx, token)
	if err != nil {
		writeJSON(c.Writer, http.StatusOK, inactive)
		return
	}
	active, err := t.s.tokenActive(ctx, claims, caller)
	if err != nil {
		t.writeError(c.Writer, storeTokenError(t.s, err))
		return
	}
	if !active {
		writeJSON(c.Writer, http.StatusOK, inactive)
		return
	}
	aud := ""
	if len(claims.Audience) > 0 {
		aud = claims.Audience[0]
	}
	writeJSON(c.Writer, http.StatusOK, introspection{
		Active: true, Scope: scopes.Join(claims.Scopes), ClientID: claims.ClientID, Subject: claims.Subject,
		Audience: aud, Issuer: claims.Issuer, ExpiresAt: claims.ExpiresAt.Unix(), IssuedAt: claims.IssuedAt.Unix(),
		NotBefore: claims.NotBefore.Unix(), ID: claims.ID, TokenType: "Bearer", TeamID: claims.TeamID,
	})
}

// tokenActive decides the parts of "active" that a signature cannot: the
// key still exists, the token was not revoked, and the caller may see it (a
// key sees its own team's tokens; admin keys and keys with
// tokens:introspect see all).
func (s *Server) tokenActive(ctx context.Context, claims *verify.Claims, caller store.Key) (bool, error) {
	owner, err := s.store.GetKey(ctx, claims.ClientID)
	if errors.Is(err, store.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if owner.TeamID != claims.TeamID {
		return false, nil
	}
	denied, err := s.store.TokenDenied(ctx, claims.ID)
	if err != nil || denied {
		return false, err
	}
	if caller.IsAdmin() || caller.TeamID != "" && caller.TeamID == claims.TeamID {
		return true, nil
	}
	callerScopes, err := s.scopesOf(caller)
	if err != nil {
		return false, nil
	}
	for _, sc := range callerScopes {
		if sc == IntrospectScope {
			return true, nil
		}
	}
	return false, nil
}

// revoke is RFC 7009: a key revokes one of its own tokens.
func (t *tokenEndpoint) revoke(c *gin.Context) {
	form, caller, ok := t.clientRequest(c)
	if !ok {
		return
	}
	token := form.token
	if token == "" {
		t.writeError(c.Writer, invalidRequest("the token parameter is missing"))
		return
	}
	ctx := c.Request.Context()
	claims, err := t.s.verifyOwn(ctx, token)
	if err != nil {
		// §2.2: invalid, expired or unknown tokens need no revocation.
		writeJSON(c.Writer, http.StatusOK, struct{}{})
		return
	}
	if claims.ClientID != caller.ClientID {
		t.writeError(c.Writer, &tokenError{code: oerrors.ErrUnauthorizedClient,
			description: "this token was issued to another client; a client can revoke only its own tokens"})
		return
	}
	if err := t.s.store.DenyToken(ctx, claims.ID, claims.ExpiresAt); err != nil {
		t.writeError(c.Writer, storeTokenError(t.s, err))
		return
	}
	writeJSON(c.Writer, http.StatusOK, struct{}{})
}

// storeTokenError turns a store failure into a §5.2 error without details.
func storeTokenError(s *Server, err error) error {
	if storeUnavailable(err) {
		s.log.Warn("store unavailable", "err", err)
		return oerrors.ErrTemporarilyUnavailable
	}
	s.log.Error("store error", "err", err)
	return oerrors.ErrServerError
}
