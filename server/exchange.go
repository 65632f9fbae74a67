package server

// RFC 8693 token exchange at /oauth/token: a client holding the
// operator-only permission token_exchange (a platform's backend) trades a
// JWT its user got from a trusted identity provider (trusted_issuers) for
// a team-bound management token of the team the JWT names, acting for that
// user (act.sub). go-oauth2 has no such grant; it runs beside client
// credentials, through the same parsing, throttle and authentication:
//
//	parse         parseTokenRequest (token.go), then this grant's parameters
//	authenticate  apikey.Service.Authenticate, throttled as for every grant
//	authorize     the key holds token_exchange, else unauthorized_client
//	verify        trustedissuer.Verifier.Verify: signature, iss, aud, exp,
//	              team and user claims, the issuer's clients
//	record        apikey.Service.ExchangeSession: the revocable session
//	              record and its session.created event, in one store step
//	sign          signSessionToken (mgmttoken.go), exp ≤ the subject's
//
// An invalid or unacceptable subject token is invalid_request (RFC 8693
// §2.2.2) with one constant description whatever the reason (the reason
// goes to the log): the answer tells a caller nothing about which check
// failed. An issuer whose keys cannot be fetched is temporarily_unavailable
// (503): the token was not judged, and blaming it would send the platform
// chasing its user's token. RFC 6749 registers that code for the
// authorization endpoint only; keygate already answers server_error and
// temporarily_unavailable at the token endpoint for its own failures.

import (
	"errors"
	"net/http"
	"slices"
	"time"

	"github.com/gin-gonic/gin"
	oerrors "github.com/go-oauth2/oauth2/v4/errors"

	"github.com/keygate/keygate/apikey"
	"github.com/keygate/keygate/config"
	"github.com/keygate/keygate/scopes"
	"github.com/keygate/keygate/trustedissuer"
)

// RFC 8693 identifiers.
const (
	grantTokenExchange   = "urn:ietf:params:oauth:grant-type:token-exchange"
	tokenTypeJWT         = "urn:ietf:params:oauth:token-type:jwt"
	tokenTypeAccessToken = "urn:ietf:params:oauth:token-type:access_token"
)

// The refusals of the exchange grant.
var (
	errNoExchangePermission = &oauthError{code: oerrors.ErrUnauthorizedClient,
		description: "this key may not exchange tokens: it needs the token_exchange permission, which an operator grants"}
	errSubjectTokenMissing = invalidRequest("subject_token is missing")
	errSubjectTypeMissing  = invalidRequest("subject_token_type is missing; use " + tokenTypeJWT)
	errSubjectType         = invalidRequest("subject_token_type must be " + tokenTypeJWT + " or " + tokenTypeAccessToken)
	errActorToken          = invalidRequest("actor_token is not supported")
	errExchangeScope       = &oauthError{code: oerrors.ErrInvalidScope,
		description: "an exchanged token's scope is " + scopes.ManageScope + "; leave scope out or ask for exactly that"}
	errSubjectToken = invalidRequest("the subject token is invalid or not acceptable: it must be a JWT of a trusted issuer for this client, " +
		"signed with a key of its JWKS, with the configured audience, unexpired, naming a team the issuer may name and a user")
	errIssuerUnavailable = &oauthError{code: oerrors.ErrTemporarilyUnavailable,
		description: "the subject token's issuer could not be reached to verify it; try again shortly"}
)

// newExchanger checks the trusted issuers (as config.Load did, for
// Options built in code) and returns their verifier, or nil when there
// are none. It fetches nothing: an unreachable issuer must not stop serve.
func newExchanger(opts Options) (*trustedissuer.Verifier, error) {
	if len(opts.TrustedIssuers) == 0 {
		return nil, nil
	}
	list := slices.Clone(opts.TrustedIssuers)
	seen := map[string]bool{}
	for i := range list {
		if err := list[i].Validate(opts.Issuer); err != nil {
			return nil, errors.New("server: trusted issuer " + list[i].Issuer + ": " + err.Error())
		}
		if seen[list[i].Issuer] {
			return nil, errors.New("server: trusted issuer " + list[i].Issuer + " is listed twice")
		}
		seen[list[i].Issuer] = true
	}
	return trustedissuer.New(list, trustedissuer.Options{Now: opts.Now, Logger: opts.Logger}), nil
}

// grantTypes is the metadata's grant_types_supported: the exchange grant
// only when an issuer is trusted, since without one every exchange is
// refused as unsupported.
func (s *Server) grantTypes() []string {
	if s.exchanger == nil {
		return []string{grantClientCredentials}
	}
	return []string{grantClientCredentials, grantTokenExchange}
}

// errUnsupportedGrantExchange is errUnsupportedGrant of a keygate that
// trusts an issuer, so that its description stays true.
var errUnsupportedGrantExchange = &oauthError{code: oerrors.ErrUnsupportedGrantType,
	description: "only grant_type=client_credentials and grant_type=" + grantTokenExchange + " are supported"}

// grantError is e, or its variant naming the exchange grant when an issuer
// is trusted.
func (s *Server) grantError(e *oauthError) *oauthError {
	if e == errUnsupportedGrant && s.exchanger != nil {
		return errUnsupportedGrantExchange
	}
	return e
}

// exchangeAnswer is RFC 8693 §2.2.1.
type exchangeAnswer struct {
	AccessToken     string `json:"access_token"`
	IssuedTokenType string `json:"issued_token_type"`
	TokenType       string `json:"token_type"`
	ExpiresIn       int64  `json:"expires_in"`
	Scope           string `json:"scope"`
}

// exchange runs the token exchange grant for a request parseTokenRequest
// accepted (credentials present).
func (t *tokenEndpoint) exchange(c *gin.Context, form clientForm, creds clientCredentials) {
	s := t.s
	if s.exchanger == nil {
		t.fail(c, creds.id, errUnsupportedGrant)
		return
	}
	r := c.Request
	pair := s.authPair(c, creds.id)
	if s.oauthThrottled(c, pair, "token", creds.id) {
		s.cfg.Metrics.TokenOutcome("invalid_request") // nil-safe
		return
	}
	key, auth, err := s.keys.Authenticate(r.Context(), creds.id, creds.secret)
	if err != nil {
		s.recordAuthFailure(creds.id, key)
		s.throttleFailure(c, pair, key, err)
		t.fail(c, creds.id, s.authError(c, err))
		return
	}
	s.authThrottle.Succeeded(pair)
	if err := apikey.KeyUsable(key, auth.Now, s.sourceAddr(c)); err != nil {
		t.fail(c, key.ClientID, policyError(err))
		return
	}
	if !slices.Contains(key.Permissions, scopes.TokenExchange) {
		t.fail(c, key.ClientID, errNoExchangePermission)
		return
	}
	switch {
	case form.sent(pActorToken):
		t.fail(c, key.ClientID, errActorToken)
		return
	case form.subjectToken == "":
		t.fail(c, key.ClientID, errSubjectTokenMissing)
		return
	case form.subjectTokenType == "":
		t.fail(c, key.ClientID, errSubjectTypeMissing)
		return
	case form.subjectTokenType != tokenTypeJWT && form.subjectTokenType != tokenTypeAccessToken:
		t.fail(c, key.ClientID, errSubjectType)
		return
	case form.sent(pScope) && form.scope != scopes.ManageScope:
		t.fail(c, key.ClientID, errExchangeScope)
		return
	}
	sub, err := s.exchanger.Verify(r.Context(), form.subjectToken, key.ClientID)
	switch {
	case errors.Is(err, trustedissuer.ErrUnavailable):
		s.reqLog(c).Warn("token exchange: issuer unavailable", "client_id", key.ClientID, "err", err)
		t.fail(c, key.ClientID, errIssuerUnavailable)
		return
	case err != nil:
		// The reason is a constant of trustedissuer's: never the token.
		s.reqLog(c).Info("token exchange: subject token refused", "client_id", key.ClientID, "reason", err.Error())
		t.fail(c, key.ClientID, errSubjectToken)
		return
	}
	if t.overQuota(c, key, auth.Now) {
		return
	}
	now := auth.Now
	// The issued token never outlives the subject token.
	expires := now.Add(s.cfg.TokenTTL)
	if sub.ExpiresAt.Before(expires) {
		expires = sub.ExpiresAt
	}
	sess, err := s.keys.ExchangeSession(r.Context(), s.requestMeta(c), key, sub.TeamID, sub.User, now, expires)
	switch {
	case errors.Is(err, apikey.ErrNoSessions):
		s.reqLog(c).Error("token exchange: the store keeps no management sessions")
		t.fail(c, key.ClientID, errServer)
		return
	case err != nil:
		t.fail(c, key.ClientID, s.storeError(c, err))
		return
	}
	tok, err := s.signSessionToken(sess, now)
	if err != nil {
		s.reqLog(c).Error("token exchange: sign", "err", err)
		t.fail(c, key.ClientID, errServer)
		return
	}
	if s.access.oauth == config.AccessLogAll {
		c.Set(callerIDKey, key.ClientID)
	}
	s.lastUsed.Record(key.ClientID, key.TeamID, key.LastUsedAt, now)
	s.cfg.Metrics.TokenOutcome(outcomeIssued) // nil-safe
	_ = writeJSON(c.Writer, http.StatusOK, exchangeAnswer{
		AccessToken:     tok,
		IssuedTokenType: tokenTypeAccessToken,
		TokenType:       "Bearer",
		ExpiresIn:       int64(time.Unix(sess.ExpiresAt.Unix(), 0).Sub(now) / time.Second),
		Scope:           scopes.ManageScope,
	})
}
