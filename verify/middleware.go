package verify

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
)

// Option configures Middleware (and ginverify.Middleware).
type Option func(*Guard)

// RequireScopes makes the route need every one of scopes.
func RequireScopes(scopes ...string) Option {
	return func(g *Guard) { g.scopes = append(g.scopes, scopes...) }
}

// Realm sets the realm of WWW-Authenticate challenges (default "keygate").
func Realm(realm string) Option {
	return func(g *Guard) { g.realm = realm }
}

// Guard decides whether a request may pass: a valid bearer token with the
// required scopes. Middleware wraps it for net/http; other frameworks use
// Check and Rejection.Write directly.
type Guard struct {
	v      *Verifier
	scopes []string
	realm  string
}

// NewGuard returns a Guard for v with opts.
func NewGuard(v *Verifier, opts ...Option) *Guard {
	g := &Guard{v: v, realm: "keygate"}
	for _, o := range opts {
		o(g)
	}
	return g
}

// Rejection is a refused request, answered per RFC 6750 §3.
type Rejection struct {
	// Status is 400, 401, 403 or 503.
	Status int
	// Code is the RFC 6750 error code; empty when no token was sent.
	Code string
	// Description says why, without token contents.
	Description string
	// Scope is the scope the route needs (insufficient_scope only).
	Scope string
	// Err is the verification error, if one caused this.
	Err error

	realm string
}

// Challenge is the WWW-Authenticate header value.
func (r *Rejection) Challenge() string {
	var b strings.Builder
	b.WriteString(`Bearer realm=`)
	b.WriteString(quote(r.realm))
	if r.Code != "" {
		b.WriteString(`, error=`)
		b.WriteString(quote(r.Code))
	}
	if r.Description != "" {
		b.WriteString(`, error_description=`)
		b.WriteString(quote(r.Description))
	}
	if r.Scope != "" {
		b.WriteString(`, scope=`)
		b.WriteString(quote(r.Scope))
	}
	return b.String()
}

// quote makes an RFC 9110 quoted-string of s; descriptions are ours, but
// stay safe if one ever carries a quote or backslash.
func quote(s string) string {
	r := strings.NewReplacer(`\`, `\\`, `"`, `\"`)
	return `"` + r.Replace(s) + `"`
}

// Write answers the request: the challenge header, no caching, and a small
// JSON body with the same error and description.
func (r *Rejection) Write(w http.ResponseWriter) {
	h := w.Header()
	if r.Status != http.StatusServiceUnavailable {
		h.Set("WWW-Authenticate", r.Challenge())
	} else {
		h.Set("Retry-After", "5")
	}
	h.Set("Cache-Control", "no-store")
	h.Set("Content-Type", "application/json")
	w.WriteHeader(r.Status)
	body := map[string]string{}
	if r.Code != "" {
		body["error"] = r.Code
	}
	if r.Description != "" {
		body["error_description"] = r.Description
	}
	if r.Scope != "" {
		body["scope"] = r.Scope
	}
	_ = json.NewEncoder(w).Encode(body)
}

// Check authenticates r: the claims of its bearer token when it may pass,
// or the Rejection to answer with.
func (g *Guard) Check(r *http.Request) (*Claims, *Rejection) {
	if r.URL.Query().Has("access_token") {
		// RFC 6750 §2.3 tokens end up in logs and browser history; keygate's
		// clients never need it.
		return nil, g.reject(http.StatusBadRequest, "invalid_request", "send the access token in the Authorization header, not the query string", nil)
	}
	auth := r.Header.Values("Authorization")
	if len(auth) == 0 {
		return nil, g.reject(http.StatusUnauthorized, "", "", nil)
	}
	if len(auth) > 1 {
		return nil, g.reject(http.StatusBadRequest, "invalid_request", "send one Authorization header", nil)
	}
	// "Bearer" alone is an empty bearer token: net/http trims the blank of
	// "Bearer " before the middleware sees the header.
	scheme, token, _ := strings.Cut(auth[0], " ")
	if !strings.EqualFold(scheme, "Bearer") {
		// Another scheme: the client does not know it needs a token (§3).
		return nil, g.reject(http.StatusUnauthorized, "", "", nil)
	}
	token = strings.TrimSpace(token)
	if token == "" {
		return nil, g.reject(http.StatusUnauthorized, "invalid_token", "the bearer token is empty", nil)
	}
	claims, err := g.v.Verify(r.Context(), token)
	if err != nil {
		if errors.Is(err, ErrKeysUnavailable) || errors.Is(err, ErrStatusUnavailable) {
			// Not the client's fault: 503, no challenge; it may try again.
			desc := "token verification keys are unavailable"
			if errors.Is(err, ErrStatusUnavailable) {
				desc = "token status list is unavailable"
			}
			return nil, g.reject(http.StatusServiceUnavailable, "", desc, err)
		}
		return nil, g.reject(http.StatusUnauthorized, "invalid_token", Reason(err), err)
	}
	var missing []string
	for _, s := range g.scopes {
		if !claims.HasScope(s) {
			missing = append(missing, s)
		}
	}
	if len(missing) > 0 {
		rej := g.reject(http.StatusForbidden, "insufficient_scope", "the token lacks a scope this resource needs", ErrInsufficientScope)
		rej.Scope = strings.Join(g.scopes, " ")
		return nil, rej
	}
	return claims, nil
}

func (g *Guard) reject(status int, code, desc string, err error) *Rejection {
	return &Rejection{Status: status, Code: code, Description: desc, Err: err, realm: g.realm}
}

// Reason is the short reason of a Verify error, safe to show to a client:
// it never contains token contents.
func Reason(err error) string {
	for _, reason := range []error{ErrExpired, ErrNotYetValid, ErrIssuedInFuture, ErrWrongIssuer,
		ErrWrongAudience, ErrUnknownKey, ErrAlgorithm, ErrSignature, ErrWrongType, ErrMissingClaim,
		ErrTooLarge, ErrKeysUnavailable, ErrInsufficientScope, ErrRevoked, ErrSuspended, ErrStatusUnavailable} {
		if errors.Is(err, reason) {
			return reason.Error()
		}
	}
	return ErrMalformed.Error()
}

// Middleware protects next: requests without a valid bearer token with the
// required scopes are answered per RFC 6750 and never reach it. The
// verified claims are in the request's context (ClaimsFromContext).
func Middleware(v *Verifier, opts ...Option) func(http.Handler) http.Handler {
	g := NewGuard(v, opts...)
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			claims, rej := g.Check(r)
			if rej != nil {
				rej.Write(w)
				return
			}
			next.ServeHTTP(w, r.WithContext(WithClaims(r.Context(), claims)))
		})
	}
}

type claimsKey struct{}

// WithClaims returns ctx carrying claims.
func WithClaims(ctx context.Context, c *Claims) context.Context {
	return context.WithValue(ctx, claimsKey{}, c)
}

// ClaimsFromContext returns the claims Middleware verified for this request.
func ClaimsFromContext(ctx context.Context) (*Claims, bool) {
	c, ok := ctx.Value(claimsKey{}).(*Claims)
	return c, ok && c != nil
}
