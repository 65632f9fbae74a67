package server

// Console sessions (#16, apikey/sessions.go has the rules): a full admin
// mints a link to the console for one person of a team; the console
// redeems the link's one-time code at POST /console/session for a
// team-bound management token (server/mgmttoken.go). The code travels in
// the link's fragment, which browsers never send, and in a POST body, never
// in a URL a server or proxy would log.

import (
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/keygate/keygate/apikey"
	"github.com/keygate/keygate/config"
	"github.com/keygate/keygate/console"
	"github.com/keygate/keygate/store"
)

// SessionRedeemPath is where the console redeems a link's code.
const SessionRedeemPath = "/console/session"

// redeemThrottleID is the client ID of the throttle pair of code guesses:
// one bucket per source for all codes, beside the source's own bucket.
const redeemThrottleID = "console-session"

// sessionCodeDetail is the one answer to every code that gives no token:
// which of unknown, used or expired it was would only help a guesser.
const sessionCodeDetail = "this console link was already used or has expired; ask for a new link"

// mountConsoleSessions adds the team's console-session routes to the
// management group (the caller's authorization is the middleware's).
func (s *Server) mountConsoleSessions(v1 *gin.RouterGroup) {
	g := v1.Group("/teams/:team_id/console-sessions", validTeam)
	g.POST("", s.createConsoleSession)
	getHead(g, "", s.listConsoleSessions)
	g.DELETE("/:session_id", s.endConsoleSession)
}

// mountSessionRedeem adds POST /console/session: public, like the token
// endpoint, the code being the credential.
func (s *Server) mountSessionRedeem(r *gin.Engine) {
	r.POST(SessionRedeemPath, noStore, s.redeemConsoleSession)
}

type consoleSessionRequest struct {
	User string `json:"user"`
	TTL  string `json:"ttl"`
}

type createdSessionView struct {
	ID        string    `json:"id"`
	URL       string    `json:"url"`
	ExpiresAt time.Time `json:"expires_at"`
}

type sessionView struct {
	ID        string    `json:"id"`
	TeamID    string    `json:"team_id"`
	User      string    `json:"user"`
	Kind      string    `json:"kind"`
	MintedBy  string    `json:"minted_by"`
	CreatedAt time.Time `json:"created_at"`
	ExpiresAt time.Time `json:"expires_at"`
}

type sessionListView struct {
	Sessions []sessionView `json:"sessions"`
}

const sessionTTLRange = `ttl must be a duration from 1m to 1h, e.g. "15m"`

var consoleSessionFields = structFields(&consoleSessionRequest{})

func (s *Server) createConsoleSession(c *gin.Context) {
	var req consoleSessionRequest
	if !decodeJSON(c, &req, consoleSessionFields) {
		return
	}
	if req.TTL == "" {
		problem(c, http.StatusBadRequest, problemInvalid, `"ttl" is required; `+sessionTTLRange)
		return
	}
	ttl, err := config.ParseDuration(req.TTL)
	if err != nil {
		problem(c, http.StatusBadRequest, problemInvalid, fmt.Sprintf("ttl %q is not a duration; %s", truncate(req.TTL, 40), sessionTTLRange))
		return
	}
	if apikey.CheckSessionTTL(ttl) != nil {
		problem(c, http.StatusBadRequest, problemInvalid, fmt.Sprintf("ttl %q is out of range; %s", truncate(req.TTL, 40), sessionTTLRange))
		return
	}
	team := c.Param("team_id")
	sess, code, err := s.keys.CreateConsoleSession(c.Request.Context(), s.requestMeta(c), team, req.User, ttl)
	if err != nil {
		s.sessionProblem(c, team, err)
		return
	}
	c.JSON(http.StatusCreated, createdSessionView{
		ID:        sess.ID,
		URL:       s.cfg.Issuer + console.Prefix + "#session=" + code,
		ExpiresAt: sess.ExpiresAt,
	})
}

func (s *Server) listConsoleSessions(c *gin.Context) {
	team := c.Param("team_id")
	list, err := s.keys.ConsoleSessions(c.Request.Context(), team)
	if err != nil {
		s.sessionProblem(c, team, err)
		return
	}
	out := sessionListView{Sessions: make([]sessionView, 0, len(list))}
	for _, x := range list {
		out.Sessions = append(out.Sessions, sessionView{
			ID: x.ID, TeamID: x.TeamID, User: x.User, Kind: x.Kind,
			MintedBy: x.MintedBy, CreatedAt: x.CreatedAt.UTC(), ExpiresAt: x.ExpiresAt.UTC(),
		})
	}
	c.JSON(http.StatusOK, out)
}

func (s *Server) endConsoleSession(c *gin.Context) {
	team, id := c.Param("team_id"), c.Param("session_id")
	if err := s.keys.EndSession(c.Request.Context(), s.requestMeta(c), team, id); err != nil {
		s.sessionProblem(c, team, err)
		return
	}
	c.Status(http.StatusNoContent)
}

// sessionProblem maps apikey's session errors; the detail of a missing
// session does not depend on whether the team exists or has keys.
func (s *Server) sessionProblem(c *gin.Context, team string, err error) {
	var inv *apikey.InvalidError
	switch {
	case errors.As(err, &inv):
		problem(c, http.StatusBadRequest, problemInvalid, inv.Detail)
	case errors.Is(err, apikey.ErrSessionNotFound):
		problem(c, http.StatusNotFound, problemNotFound, fmt.Sprintf(
			"team %s has no such console session; list them with GET /v1/teams/%s/console-sessions", team, team))
	case errors.Is(err, apikey.ErrSessionsUnsupported):
		problem(c, http.StatusNotFound, problemNotFound, "this keygate's store keeps no console sessions")
	case errors.Is(err, apikey.ErrConflict):
		problem(c, http.StatusConflict, problemKeyIDConflict, "a generated session ID already exists; retry the request")
	default:
		s.storeProblem(c, err)
	}
}

type redeemRequest struct {
	Code string `json:"code"`
}

type sessionTokenView struct {
	AccessToken string `json:"access_token"`
	TokenType   string `json:"token_type"`
	ExpiresIn   int64  `json:"expires_in"`
	TeamID      string `json:"team_id"`
	User        string `json:"user"`
}

var redeemFields = structFields(&redeemRequest{})

// redeemConsoleSession trades a link's one-time code for the session's
// token. Every code that gives no token is the same 400 and a failed
// guess for the throttle (server/throttle.go), as a wrong secret is.
func (s *Server) redeemConsoleSession(c *gin.Context) {
	pair := s.authPair(c, redeemThrottleID)
	if wait := s.authThrottle.Check(pair); wait > 0 {
		s.cfg.Metrics.Throttled("management") // nil-safe; a closed label set (metrics.ThrottledEndpoints)
		c.Header("Retry-After", retryAfter(wait))
		problem(c, http.StatusTooManyRequests, problemRateLimited, throttledDescription)
		return
	}
	var req redeemRequest
	if !decodeJSON(c, &req, redeemFields) {
		return
	}
	sess, now, err := s.keys.RedeemSessionCode(c.Request.Context(), s.requestMeta(c), req.Code)
	switch {
	case errors.Is(err, apikey.ErrSessionCode):
		s.throttleFailure(c, pair, store.Key{}, apikey.ErrInvalidClient)
		problem(c, http.StatusBadRequest, problemInvalid, sessionCodeDetail)
		return
	case err != nil:
		s.sessionProblem(c, "", err)
		return
	}
	s.authThrottle.Succeeded(pair)
	tok, err := s.signSessionToken(sess, now)
	if err != nil {
		s.internalProblem(c, fmt.Errorf("sign session token: %w", err))
		return
	}
	c.JSON(http.StatusOK, sessionTokenView{
		AccessToken: tok,
		TokenType:   "Bearer",
		ExpiresIn:   max(1, int64(sess.ExpiresAt.Sub(now)/time.Second)),
		TeamID:      sess.TeamID,
		User:        sess.User,
	})
}
