package server

// The one error type of the OAuth endpoints (/oauth/token, /oauth/introspect,
// /oauth/revoke), and the one place keygate reaches github.com/go-oauth2/oauth2/v4.
//
// go-oauth2 supplies the RFC 6749 vocabulary: the grant type and the error
// codes with their registered names. Its manager no longer runs the grant
// (docs/ARCHITECTURE.md says why): token.go calls parse → authenticate →
// decide scopes → sign → answer in its own body, and every refusal on the
// way is an *oauthError, written once by writeOAuthError.

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"

	"github.com/gin-gonic/gin"
	"github.com/go-oauth2/oauth2/v4"
	oerrors "github.com/go-oauth2/oauth2/v4/errors"

	"github.com/keygate/keygate/apikey"
)

// grantClientCredentials is the one grant keygate serves (RFC 6749 §4.4).
const grantClientCredentials = string(oauth2.ClientCredentials)

// oauthClient is a key as go-oauth2 sees it, for any flow that hands keygate's
// clients to go-oauth2's manager. It never exposes a secret: GetSecret is
// empty and authentication goes through VerifyPassword, which is
// apikey.Service.Authenticate. A hash-only store must never reach the
// manager's fallback compare `secret == GetSecret()`, which would accept any
// secret against an empty GetSecret; the assertion below keeps this type on
// the verifier path.
type oauthClient struct {
	ctx  context.Context
	keys *apikey.Service
	id   string
}

var _ oauth2.ClientPasswordVerifier = oauthClient{}

func (c oauthClient) GetID() string     { return c.id }
func (c oauthClient) GetSecret() string { return "" }
func (c oauthClient) GetDomain() string { return "" }
func (c oauthClient) IsPublic() bool    { return false }
func (c oauthClient) GetUserID() string { return "" }

func (c oauthClient) VerifyPassword(secret string) bool {
	_, _, err := c.keys.Authenticate(c.ctx, c.id, secret)
	return err == nil
}

// oauthError is an RFC 6749 §5.2 answer. Its description is a constant
// chosen where the error is decided: never text from an error of the store
// or of a library, which could carry details.
type oauthError struct {
	code        error // go-oauth2's value for the code, e.g. oerrors.ErrInvalidClient
	description string
	status      int // 0: the code's status (statusFor)
}

func (e *oauthError) Error() string { return e.code.Error() + ": " + e.description }

func invalidRequest(desc string) *oauthError {
	return &oauthError{code: oerrors.ErrInvalidRequest, description: desc}
}

// httpStatusError is a refusal outside RFC 6749 §5.2 (405, 413) with a
// §5.2-shaped body all the same, so clients that parse every error body keep
// working.
func httpStatusError(status int, desc string) *oauthError {
	return &oauthError{code: oerrors.ErrInvalidRequest, description: desc, status: status}
}

// The refusals whose description does not depend on the call site: texts an
// integrator can act on, without saying which part of the credentials was
// wrong.
var (
	errInvalidClient = &oauthError{code: oerrors.ErrInvalidClient,
		description: "client authentication failed: unknown client, wrong secret, or deleted key"}
	// A key holding a permission that left the catalog (apikey's
	// ErrPermissionNotInCatalog): its tokens would silently lose scopes.
	// Said only after the secret verified, so it tells no stranger anything.
	errOutsideCatalog = &oauthError{code: oerrors.ErrInvalidClient,
		description: "this key holds a permission the permission catalog no longer has; an operator must add the permission back to the catalog or delete the key"}
	errInvalidScope = &oauthError{code: oerrors.ErrInvalidScope,
		description: "the requested scope is malformed or not granted to this key"}
	// RFC 6749 §3.3: scope is a list of one or more tokens; a client that
	// sends it empty meant something, and it is not "everything".
	errEmptyScope = &oauthError{code: oerrors.ErrInvalidScope,
		description: "scope is empty: name the scopes you need, or leave the parameter out for every scope of the key"}
	errUnsupportedGrant = &oauthError{code: oerrors.ErrUnsupportedGrantType,
		description: "only grant_type=client_credentials is supported"}
	errServer = &oauthError{code: oerrors.ErrServerError,
		description: "the server could not issue a token; try again"}
	errUnavailable = &oauthError{code: oerrors.ErrTemporarilyUnavailable,
		description: "the key store is temporarily unavailable; try again shortly"}
	errNotOwner = &oauthError{code: oerrors.ErrUnauthorizedClient,
		description: "this token was issued to another client; a client can revoke only its own tokens"}

	// The key policy's refusals, answered only once the secret verified
	// (apikey.KeyUsable): before that, every refusal is errInvalidClient.
	errKeyExpired = &oauthError{code: oerrors.ErrInvalidClient,
		description: "the key has expired; ask for a new key"}
	errKeySuspended = &oauthError{code: oerrors.ErrInvalidClient,
		description: "the key is suspended; ask its owner to resume it"}
	// It names no range: the allowed addresses are the key owner's to know.
	errSourceRefused = &oauthError{code: oerrors.ErrInvalidClient,
		description: "the key may not be used from this network address"}

	// RFC 8707 §2: resource indicators.
	errResourceRepeated = &oauthError{code: errInvalidTarget,
		description: "resource is given more than once; keygate issues a token for one resource at a time"}
	errResourceForm = &oauthError{code: errInvalidTarget,
		description: "resource must be an absolute URI without a fragment"}
	errResourceRefused = &oauthError{code: errInvalidTarget,
		description: "this key may not have a token for the requested resource"}
)

// errInvalidTarget is RFC 8707's error code, which go-oauth2 lacks.
var errInvalidTarget = errors.New("invalid_target")

// policyError is the answer to a refusal of apikey.KeyUsable.
func policyError(err error) *oauthError {
	switch {
	case errors.Is(err, apikey.ErrKeyExpired):
		return errKeyExpired
	case errors.Is(err, apikey.ErrKeySuspended):
		return errKeySuspended
	default:
		return errSourceRefused
	}
}

// statusFor is RFC 6749 §5.2's status for each error code; go-oauth2's
// defaults differ (401 for unsupported_grant_type and unauthorized_client).
func statusFor(code error) int {
	switch code {
	case oerrors.ErrInvalidClient:
		return http.StatusUnauthorized
	case oerrors.ErrServerError:
		return http.StatusInternalServerError
	case oerrors.ErrTemporarilyUnavailable:
		return http.StatusServiceUnavailable
	default:
		return http.StatusBadRequest
	}
}

// writeOAuthError answers with e: the status, WWW-Authenticate for
// invalid_client (RFC 6749 §5.2), and {"error", "error_description"} as
// uncacheable JSON.
func writeOAuthError(w http.ResponseWriter, e *oauthError) {
	status := e.status
	if status == 0 {
		status = statusFor(e.code)
	}
	if e.code == oerrors.ErrInvalidClient {
		w.Header().Set("WWW-Authenticate", `Basic realm="keygate"`)
	}
	_ = writeJSON(w, status, oauthErrorBody{Error: e.code.Error(), Description: e.description})
}

// oauthFail answers a request to an OAuth endpoint with e, noting the error
// code and the client ID the request sent (if known) for its access log
// line. The body stays RFC 6749 §5.2's, with no member of keygate's own:
// the request ID is in the X-Request-Id header.
func oauthFail(c *gin.Context, clientID string, e *oauthError) {
	refused(c, e.code.Error(), clientID)
	writeOAuthError(c.Writer, e)
}

type oauthErrorBody struct {
	Error       string `json:"error"`
	Description string `json:"error_description,omitempty"`
}

// writeJSON answers with v as uncacheable JSON, the form of every answer
// the OAuth endpoints give.
func writeJSON(w http.ResponseWriter, status int, v any) error {
	setJSONNoStore(w.Header())
	w.WriteHeader(status)
	return json.NewEncoder(w).Encode(v)
}

// authError maps what apikey.Authenticate returned (or any store failure
// after it) to the answer: invalid_client for bad credentials, 503 when the
// store did not answer, 500 otherwise. The store's error goes to the log
// only.
func (s *Server) authError(c *gin.Context, err error) *oauthError {
	switch {
	case errors.Is(err, apikey.ErrInvalidClient):
		return errInvalidClient
	default:
		return s.storeError(c, err)
	}
}

// clientGone reports whether err is the request's own cancellation: the
// client hung up while the store worked. Nobody reads the answer and
// nothing is wrong with keygate, so it is logged at debug, never as an
// error a client could produce at will (the soak test saw them).
func (s *Server) clientGone(c *gin.Context, err error) bool {
	if !errors.Is(err, context.Canceled) || c.Request.Context().Err() == nil {
		return false
	}
	s.reqLog(c).Debug("client went away during the request", "route", c.FullPath())
	return true
}

// storeError turns a store failure into a §5.2 error without details.
func (s *Server) storeError(c *gin.Context, err error) *oauthError {
	if s.clientGone(c, err) {
		return errUnavailable
	}
	if apikey.Unavailable(err) {
		s.reqLog(c).Warn("oauth: store unavailable", "err", err)
		return errUnavailable
	}
	s.reqLog(c).Error("oauth: store error", "err", err)
	return errServer
}
