package server

// Token introspection (RFC 7662) and revocation (RFC 7009). Both are called
// by keys, authenticated exactly as at the token endpoint, and both work on
// keygate's own access tokens only.
//
// Revocation puts a token's jti on a deny list in the store (every instance
// sees it) until the token expires. Only introspection consults that list:
// resource servers that verify offline keep accepting a revoked token until
// it expires. To cut a key off everywhere, delete it (the status list) or
// rotate its secret (each secret generation has its own status index, set
// when that secret ends).

import (
	"errors"
	"net/http"
	"sync"
	"time"

	"github.com/gin-gonic/gin"
	"golang.org/x/time/rate"

	"github.com/keygate/keygate/apikey"
	"github.com/keygate/keygate/scopes"
	"github.com/keygate/keygate/store"
)

// callerLimits throttles introspection or revocation per authenticated
// caller, so one key cannot turn keygate into a token oracle, fill the deny
// list at will, or starve the others.
type callerLimits struct {
	perSecond rate.Limit
	burst     int
	limiters  sync.Map // client ID → *rate.Limiter
}

// allow takes one request from the caller's bucket at now (the server's
// clock), or says how long until one is free.
func (l *callerLimits) allow(clientID string, now time.Time) (bool, time.Duration) {
	v, ok := l.limiters.Load(clientID)
	if !ok {
		v, _ = l.limiters.LoadOrStore(clientID, rate.NewLimiter(l.perSecond, l.burst))
	}
	r := v.(*rate.Limiter).ReserveN(now, 1)
	if d := r.DelayFrom(now); d > 0 {
		r.CancelAt(now)
		return false, d
	}
	return true, 0
}

// throttled takes one request of the caller from limits and, when none is
// left, answers 429 with Retry-After (the body as RFC 6749 §5.2 errors
// are) and counts it under endpoint ("introspect", "revoke": the
// metrics.ThrottledEndpoints).
func (t *tokenEndpoint) throttled(c *gin.Context, limits *callerLimits, endpoint, clientID string) bool {
	allowed, wait := limits.allow(clientID, t.s.cfg.Now())
	if allowed {
		return false
	}
	t.s.cfg.Metrics.Throttled(endpoint) // nil-safe
	writeThrottled(c, wait, clientID, "too many "+throttledWhat[endpoint]+" requests from this client; retry later")
	return true
}

var throttledWhat = map[string]string{"introspect": "introspection", "revoke": "revocation"}

// clientRequest parses and authenticates a request to an endpoint a key
// calls with its credentials (apikey.Service.Authenticate, as at the token
// endpoint, and throttled as there: endpoint names it for the metric); on
// failure it has answered.
func (t *tokenEndpoint) clientRequest(c *gin.Context, endpoint string) (form clientForm, caller store.Key, ok bool) {
	f, creds, oerr := parseClientForm(c.Writer, c.Request)
	if oerr != nil {
		oauthFail(c, "", oerr)
		return clientForm{}, store.Key{}, false
	}
	pair := t.s.authPair(c, creds.id)
	if t.s.oauthThrottled(c, pair, endpoint, creds.id) {
		return clientForm{}, store.Key{}, false
	}
	caller, auth, err := t.s.keys.Authenticate(c.Request.Context(), creds.id, creds.secret)
	if err != nil {
		t.s.recordAuthFailure(creds.id, caller)
		t.s.throttleFailure(c, pair, caller, err)
		oauthFail(c, creds.id, t.s.authError(c, err))
		return clientForm{}, store.Key{}, false
	}
	t.s.authThrottle.Succeeded(pair)
	// A suspended, expired or out-of-range key gets nothing here either.
	if err := apikey.KeyUsable(caller, auth.Now, t.s.sourceAddr(c)); err != nil {
		oauthFail(c, caller.ClientID, policyError(err))
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
	form, caller, ok := t.clientRequest(c, "introspect")
	if !ok {
		return
	}
	if t.throttled(c, t.s.introspectLimits, "introspect", caller.ClientID) {
		return
	}
	token := form.token
	if token == "" {
		oauthFail(c, caller.ClientID, invalidRequest("the token parameter is missing"))
		return
	}
	ctx := c.Request.Context()
	claims, err := t.s.verifyOwn(ctx, token)
	if err != nil {
		writeJSON(c.Writer, http.StatusOK, inactive)
		return
	}
	active, err := t.s.keys.TokenActive(ctx, t.s.tokenOf(claims), caller)
	if err != nil {
		oauthFail(c, caller.ClientID, t.s.storeError(c, err))
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

// revoke is RFC 7009: a key revokes one of its own tokens.
func (t *tokenEndpoint) revoke(c *gin.Context) {
	form, caller, ok := t.clientRequest(c, "revoke")
	if !ok {
		return
	}
	if t.throttled(c, t.s.revokeLimits, "revoke", caller.ClientID) {
		return
	}
	token := form.token
	if token == "" {
		oauthFail(c, caller.ClientID, invalidRequest("the token parameter is missing"))
		return
	}
	ctx := c.Request.Context()
	claims, err := t.s.verifyOwn(ctx, token)
	if err != nil {
		// §2.2: invalid, expired or unknown tokens need no revocation.
		writeJSON(c.Writer, http.StatusOK, struct{}{})
		return
	}
	switch err := t.s.keys.Revoke(ctx, t.s.requestMeta(c), t.s.tokenOf(claims), caller); {
	case errors.Is(err, apikey.ErrNotOwner):
		oauthFail(c, caller.ClientID, errNotOwner)
		return
	case err != nil:
		oauthFail(c, caller.ClientID, t.s.storeError(c, err))
		return
	}
	writeJSON(c.Writer, http.StatusOK, struct{}{})
}
