package server

// Who may call what on the management API (docs/authorization.md). One
// bearer authentication (authenticate) turns a management token into a
// caller; the route table, consulted by the matched route's template
// (c.FullPath()), says which kinds of caller the route admits. Full admins
// may call every route; team-bound callers (team managers, console
// sessions, exchanged tokens) only their own team's paths, and the rules
// of keys for managers (apikey/managers.go) apply in the handlers.

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/keygate/keygate/apikey"
	"github.com/keygate/keygate/scopes"
	"github.com/keygate/keygate/store"
	"github.com/keygate/keygate/verify"
)

// Kinds of management API caller.
const (
	callerAdmin     = "admin"           // admin key, role admin: keys:admin
	callerReadAdmin = "read_admin"      // admin key, role read: keys:read
	callerManager   = "team_manager"    // team key holding key_management
	callerConsole   = "console_session" // session token from a console session
	callerExchanged = "exchanged"       // session token from a token exchange
)

// caller is who a management request speaks for, left in the gin context
// by authenticate.
type caller struct {
	Kind      string
	ClientID  string // the key; for a session token, the key that minted it
	TeamID    string // "" for admin keys
	User      string // act.sub of a session token
	SessionID string
	Scopes    []string
	ExpiresAt time.Time
}

// teamBound reports whether the caller is limited to its own team.
func (k caller) teamBound() bool { return k.TeamID != "" }

// manager is the caller as the rules of keys see it, nil for operators.
func (k caller) manager() *apikey.Manager {
	if !k.teamBound() {
		return nil
	}
	m := &apikey.Manager{Team: k.TeamID}
	if k.Kind == callerManager {
		m.Self = k.ClientID
	}
	return m
}

const callerKey = "keygate.caller"

// callerOf returns the request's caller (authenticate ran on every /v1
// route).
func callerOf(c *gin.Context) caller {
	v, _ := c.Get(callerKey)
	k, _ := v.(caller)
	return k
}

// access is a route's rule. A full admin may call every route.
type access struct {
	read bool // a read-only admin may call it (it changes nothing)
	team bool // team-bound callers may call it (on their own team's path)
}

var (
	operatorRead   = access{read: true}
	operatorChange = access{}
	teamRead       = access{read: true, team: true}
	teamChange     = access{team: true}
)

// routeAccess is every /v1 route's rule, by method and gin path template
// (HEAD follows GET). Routes mounted by other files are listed here too so
// that nothing is mounted without a rule: a route missing from the table
// answers 500 to every caller, and TestAuthorizationMatrix fails on it.
var routeAccess = map[string]access{
	"GET /v1/me":                                             teamRead,
	"GET /v1/teams":                                          operatorRead,
	"GET /v1/permissions":                                    teamRead,
	"GET /v1/keys/:client_id":                                teamRead,
	"GET /v1/events":                                         operatorRead,
	"GET /v1/teams/:team_id/events":                          teamRead,
	"GET /v1/teams/:team_id/usage":                           teamRead,
	"POST /v1/teams/:team_id/keys":                           teamChange,
	"GET /v1/teams/:team_id/keys":                            teamRead,
	"GET /v1/teams/:team_id/keys/:client_id":                 teamRead,
	"PATCH /v1/teams/:team_id/keys/:client_id":               teamChange,
	"DELETE /v1/teams/:team_id/keys/:client_id":              teamChange,
	"POST /v1/teams/:team_id/keys/:client_id/rotate":         teamChange,
	"DELETE /v1/teams/:team_id":                              operatorChange,
	"POST /v1/teams/:team_id/console-sessions":               operatorChange,
	"GET /v1/teams/:team_id/console-sessions":                teamRead,
	"DELETE /v1/teams/:team_id/console-sessions/:session_id": teamChange,
	"GET /v1/admin-keys":                                     operatorRead,
	"GET /v1/admin-keys/:client_id":                          operatorRead,
	"POST /v1/admin-keys":                                    operatorChange,
	"DELETE /v1/admin-keys/:client_id":                       operatorChange,
	"POST /v1/admin-keys/:client_id/rotate":                  operatorChange,
	"GET /v1/store/backup":                                   operatorChange,
	"GET /v1/signing-keys":                                   operatorRead,
	"POST /v1/signing-keys/rotate":                           operatorChange,
}

func routeRule(method, path string) (access, bool) {
	if method == http.MethodHead {
		method = http.MethodGet
	}
	a, ok := routeAccess[method+" "+path]
	return a, ok
}

const bearerRealm = `Bearer realm="keygate"`

// tokenRefusals are the live checks' reasons to refuse a genuine token
// (apikey.Service.CheckKeyToken and the session check): each a 401
// invalid_token with its audit reason and a constant detail.
var tokenRefusals = []struct {
	err            error
	reason, detail string
}{
	{apikey.ErrKeyGone, apikey.DeniedKeyGone, "the key this token was issued to no longer exists"},
	{apikey.ErrRevoked, apikey.DeniedTokenRevoked, "this access token was revoked; get a new one at /oauth/token"},
	{apikey.ErrKeySuspended, apikey.DeniedKeySuspended, "the key this token was issued to is suspended; it opens nothing until it is resumed"},
	{apikey.ErrKeyExpired, apikey.DeniedKeyExpired, "the key this token was issued to has expired"},
}

// authenticate accepts a valid management token (audience issuer/v1; RFC
// 6750 bearer usage) whose key or session still stands, and admits its
// caller to the route by routeAccess.
func (s *Server) authenticate(c *gin.Context) {
	auth := c.GetHeader("Authorization")
	if auth == "" {
		s.authFailed(c, nil, apikey.DeniedNoToken)
		c.Header("WWW-Authenticate", bearerRealm)
		problem(c, http.StatusUnauthorized, problemUnauthorized,
			"send an admin access token: Authorization: Bearer <token> (get one at /oauth/token with an admin key)")
		return
	}
	const prefix = "bearer "
	if len(auth) <= len(prefix) || !strings.EqualFold(auth[:len(prefix)], prefix) {
		s.authFailed(c, nil, apikey.DeniedBadToken)
		c.Header("WWW-Authenticate", bearerRealm+`, error="invalid_request"`)
		problem(c, http.StatusUnauthorized, problemUnauthorized, "the Authorization header must use the Bearer scheme")
		return
	}
	token := strings.TrimSpace(auth[len(prefix):])
	// Throttled before any verification (server/throttle.go): the pair is
	// the source and the client_id the token claims.
	pair := s.authPair(c, bearerClaimedID(token))
	if wait := s.authThrottle.Check(pair); wait > 0 {
		s.cfg.Metrics.Throttled("management") // nil-safe
		c.Header("Retry-After", retryAfter(wait))
		problem(c, http.StatusTooManyRequests, problemRateLimited, throttledDescription)
		return
	}
	// Audience issuer/v1 only: a token for resource servers (an ordinary
	// team key's) fails here.
	claims, err := s.verifyManagement(c.Request.Context(), token)
	if err != nil {
		if bearerFailureCounts(err) {
			// A forged or garbage token is a guess; an expired one is not.
			s.throttleFailure(c, pair, store.Key{}, apikey.ErrInvalidClient)
		}
		s.authFailed(c, nil, apikey.DeniedBadToken)
		c.Header("WWW-Authenticate", bearerRealm+`, error="invalid_token"`)
		problem(c, http.StatusUnauthorized, problemUnauthorized, "the access token is not valid ("+verify.Reason(err)+"); get a new one at /oauth/token")
		return
	}
	s.authThrottle.Succeeded(pair) // a genuine token: its pair is no guesser
	k, ok := s.callerFor(c, claims)
	if !ok {
		return
	}
	c.Set(claimsKey, claims)
	c.Set(callerKey, k)
	if !s.admit(c, k) {
		return
	}
	c.Next()
}

// callerFor checks the token's key or session live and returns its caller,
// or answers and returns false.
func (s *Server) callerFor(c *gin.Context, claims *verify.Claims) (caller, bool) {
	ctx := c.Request.Context()
	k := caller{ClientID: claims.ClientID, TeamID: claims.TeamID, User: claims.Actor,
		SessionID: claims.SessionID, Scopes: claims.Scopes, ExpiresAt: claims.ExpiresAt}
	var err error
	switch {
	case claims.SessionID != "":
		if claims.TeamID == "" || !claims.HasScope(scopes.ManageScope) {
			return k, s.scopeRefused(c, claims, scopes.ManageScope, "this session token lacks the keys:manage scope of its team")
		}
		var sess store.ManagementSession
		sess, err = s.keys.CheckSessionToken(ctx, s.tokenOf(claims), claims.SessionID)
		k.Kind = callerConsole
		if sess.Kind == store.SessionExchange {
			k.Kind = callerExchanged
		}
		if errors.Is(err, apikey.ErrKeyGone) {
			s.authFailed(c, claims, apikey.DeniedKeyGone)
			c.Header("WWW-Authenticate", bearerRealm+`, error="invalid_token"`)
			problem(c, http.StatusUnauthorized, problemUnauthorized, "the session this token belongs to has ended; ask for a new one")
			return k, false
		}
	case claims.TeamID == "":
		var key store.Key
		key, err = s.keys.CheckKeyToken(ctx, s.tokenOf(claims))
		switch {
		case err != nil:
		case key.Role == store.RoleRead && (claims.HasScope(scopes.ReadScope) || claims.HasScope(scopes.AdminScope)):
			// The key's role now decides: a key made read-only keeps no
			// full access through tokens minted before.
			k.Kind = callerReadAdmin
		case key.Role == store.RoleAdmin && claims.HasScope(scopes.AdminScope):
			k.Kind = callerAdmin
		case key.Role == store.RoleAdmin && claims.HasScope(scopes.ReadScope):
			k.Kind = callerReadAdmin
		default:
			return k, s.scopeRefused(c, claims, scopes.AdminScope, "this token lacks the keys:admin scope; use an admin key's token")
		}
	default:
		if !claims.HasScope(scopes.ManageScope) {
			return k, s.scopeRefused(c, claims, scopes.ManageScope, "this token lacks the keys:manage scope; use the token of a team key holding key_management")
		}
		var key store.Key
		key, err = s.keys.CheckKeyToken(ctx, s.tokenOf(claims))
		k.Kind = callerManager
		if err == nil && (!apikey.HoldsKeyManagement(key) || apikey.SecretSuspended(key)) {
			// key_management taken away, or the secret reported leaked:
			// the token stops opening the API at once.
			err = apikey.ErrRevoked
		}
	}
	for _, r := range tokenRefusals {
		if errors.Is(err, r.err) {
			s.authFailed(c, claims, r.reason)
			c.Header("WWW-Authenticate", bearerRealm+`, error="invalid_token"`)
			problem(c, http.StatusUnauthorized, problemUnauthorized, r.detail)
			return k, false
		}
	}
	switch {
	case err != nil:
		s.storeProblem(c, err)
		return k, false
	}
	return k, true
}

// scopeRefused answers 403 insufficient_scope (RFC 6750 §3.1) and returns
// false.
func (s *Server) scopeRefused(c *gin.Context, claims *verify.Claims, scope, detail string) bool {
	s.authFailed(c, claims, apikey.DeniedScope)
	c.Header("WWW-Authenticate", bearerRealm+`, error="insufficient_scope", scope="`+scope+`"`)
	problem(c, http.StatusForbidden, problemForbidden, detail)
	return false
}

// admit applies the route's rule to the caller, or answers and returns
// false.
func (s *Server) admit(c *gin.Context, k caller) bool {
	rule, ok := routeRule(c.Request.Method, c.FullPath())
	if !ok {
		// A route mounted without a rule: closed to everyone.
		s.internalProblem(c, fmt.Errorf("route %s %s has no authorization rule (server/authz.go)", c.Request.Method, c.FullPath()))
		return false
	}
	claims, _ := c.Value(claimsKey).(*verify.Claims)
	switch k.Kind {
	case callerAdmin:
		return true
	case callerReadAdmin:
		if !rule.read {
			return s.scopeRefused(c, claims, scopes.AdminScope, "a read-only admin key cannot change anything; use a full admin key's token")
		}
		return true
	}
	if !rule.team {
		return s.scopeRefused(c, claims, scopes.AdminScope, fmt.Sprintf(
			"this route is for operators; a token of team %s may use /v1/teams/%s/… (see GET /v1/me)", k.TeamID, k.TeamID))
	}
	if team, has := pathTeam(c); has && team != k.TeamID {
		// The same answer whether or not that team exists: no oracle.
		problem(c, http.StatusNotFound, problemNotFound, fmt.Sprintf(
			"no such team for this token: it manages team %s only; use /v1/teams/%s/…", k.TeamID, k.TeamID))
		return false
	}
	return true
}

func pathTeam(c *gin.Context) (string, bool) {
	for _, p := range c.Params {
		if p.Key == "team_id" {
			return p.Value, true
		}
	}
	return "", false
}

// meView is GET /v1/me: who the token speaks for, so a console can open
// the caller's team directly.
type meView struct {
	Kind      string    `json:"kind"`
	ClientID  string    `json:"client_id"`
	TeamID    *string   `json:"team_id"`
	User      *string   `json:"user"`
	Role      string    `json:"role"`
	Scopes    []string  `json:"scopes"`
	ExpiresAt time.Time `json:"expires_at"`
}

func (s *Server) me(c *gin.Context) {
	k := callerOf(c)
	v := meView{Kind: k.Kind, ClientID: k.ClientID, Scopes: append([]string{}, k.Scopes...), ExpiresAt: k.ExpiresAt.UTC()}
	switch k.Kind {
	case callerAdmin:
		v.Role = "admin"
	case callerReadAdmin:
		v.Role = "read"
	default:
		v.Role = "manager"
	}
	if k.TeamID != "" {
		v.TeamID = &k.TeamID
	}
	if k.User != "" {
		v.User = &k.User
	}
	c.JSON(http.StatusOK, v)
}
