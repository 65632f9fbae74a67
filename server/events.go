package server

// The audit trail over HTTP: GET /v1/teams/{team_id}/events (one team's
// trail) and GET /v1/events (the operator-wide stream of every team, which
// may lag the teams' trails by one audit round), newest first with cursor
// pages. And requestMeta, who and where for every event a request causes.

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/keygate/keygate/apikey"
	"github.com/keygate/keygate/store"
	"github.com/keygate/keygate/verify"
)

// requestMeta is who made the request and from where, for the audit trail:
// the admin key of a verified management token (none on the OAuth
// endpoints, where apikey names the authenticated key), the request's ID
// (requestid.go), its source address by the trusted_proxies rule and its
// user agent.
func (s *Server) requestMeta(c *gin.Context) apikey.Request {
	r := apikey.Request{UserAgent: c.Request.UserAgent(), RequestID: requestID(c)}
	if a := s.sourceAddr(c); a.IsValid() {
		r.SourceAddr = a.String()
	}
	if v, ok := c.Get(claimsKey); ok {
		if claims, ok := v.(*verify.Claims); ok {
			r.Actor = claimsActor(claims)
		}
	}
	// A session token acts for a person on the authority of the key that
	// minted it: the event names both (docs/audit.md).
	switch k := callerOf(c); k.Kind {
	case callerConsole:
		r.Actor = store.AuditActor{Type: store.ActorAdminKey, ID: k.ClientID, OnBehalfOf: k.User, Via: apikey.ViaConsoleSession}
	case callerExchanged:
		r.Actor = store.AuditActor{Type: store.ActorTeamKey, ID: k.ClientID, OnBehalfOf: k.User, Via: apikey.ViaTokenExchange}
	}
	return r
}

// claimsActor is the actor a verified token speaks for.
func claimsActor(claims *verify.Claims) store.AuditActor {
	if claims.TeamID == "" {
		return store.AuditActor{Type: store.ActorAdminKey, ID: claims.ClientID}
	}
	return store.AuditActor{Type: store.ActorTeamKey, ID: claims.ClientID}
}

// authFailed records a refused management call (folded per source and
// client by apikey: at most one stored event a minute for each).
func (s *Server) authFailed(c *gin.Context, claims *verify.Claims, reason string) {
	by := s.requestMeta(c)
	if claims != nil {
		by.Actor = claimsActor(claims)
	} else {
		by.Actor = store.AuditActor{Type: store.ActorAnonymous}
	}
	s.keys.AuthFailed(by, reason)
}

// eventView is the JSON shape of an audit event (docs/audit.md).
type eventView struct {
	ID            string    `json:"id"`
	Cursor        string    `json:"cursor"`
	Time          time.Time `json:"time"`
	Action        string    `json:"action"`
	Outcome       string    `json:"outcome"`
	Actor         actorView `json:"actor"`
	TeamID        string    `json:"team_id"`
	ClientID      string    `json:"client_id"`
	RequestID     string    `json:"request_id"`
	SourceAddress string    `json:"source_address"`
	UserAgent     string    `json:"user_agent"`
	Fields        []string  `json:"fields"`
	Reason        string    `json:"reason,omitempty"`
	Count         int       `json:"count"`
	StatusIndex   int64     `json:"status_index,omitempty"`
}

type actorView struct {
	Type       string `json:"type"`
	ID         string `json:"id"`
	OnBehalfOf string `json:"on_behalf_of,omitempty"`
	Via        string `json:"via,omitempty"`
}

type eventListView struct {
	Events []eventView `json:"events"`
	// Next is the after= of the next (older) page; null when there is none.
	Next *string `json:"next"`
}

func viewEvent(ev store.AuditEvent) eventView {
	fields := ev.Fields
	if fields == nil {
		fields = []string{}
	}
	return eventView{
		ID: ev.ID, Cursor: strconv.FormatInt(ev.Seq, 10), Time: ev.Time.UTC(), Action: string(ev.Action),
		Outcome: ev.Outcome, Actor: actorView{Type: ev.Actor.Type, ID: ev.Actor.ID, OnBehalfOf: ev.Actor.OnBehalfOf, Via: ev.Actor.Via},
		TeamID: ev.TeamID, ClientID: ev.ClientID, RequestID: ev.RequestID, SourceAddress: ev.SourceAddr,
		UserAgent: ev.UserAgent, Fields: fields, Reason: ev.Reason, Count: max(ev.Count, 1), StatusIndex: ev.StatusIndex,
	}
}

func writeEvents(c *gin.Context, page store.AuditPage) {
	out := eventListView{Events: make([]eventView, 0, len(page.Events))}
	for _, ev := range page.Events {
		out.Events = append(out.Events, viewEvent(ev))
	}
	if page.Next > 0 {
		next := strconv.FormatInt(page.Next, 10)
		out.Next = &next
	}
	c.JSON(http.StatusOK, out)
}

// listTeamEvents answers GET /v1/teams/{team_id}/events.
func (s *Server) listTeamEvents(c *gin.Context) {
	q, ok := eventQuery(c, false)
	if !ok {
		return
	}
	page, err := s.keys.TeamEvents(c.Request.Context(), c.Param("team_id"), q)
	if err != nil {
		s.storeProblem(c, err)
		return
	}
	writeEvents(c, page)
}

// listEvents answers GET /v1/events: every team's events and the
// team-less ones (refused calls, admin keys), from the operator-wide
// stream.
func (s *Server) listEvents(c *gin.Context) {
	q, ok := eventQuery(c, true)
	if !ok {
		return
	}
	page, err := s.keys.AllEvents(c.Request.Context(), q)
	if err != nil {
		s.storeProblem(c, err)
		return
	}
	writeEvents(c, page)
}

// eventQuery reads and checks the query parameters of the event lists;
// team_id only on the operator-wide one. On bad input it answers with a
// problem and returns false.
func eventQuery(c *gin.Context, operator bool) (store.AuditQuery, bool) {
	q := store.AuditQuery{Limit: store.DefaultAuditLimit}
	route := "GET /v1/teams/{team_id}/events takes action, since, until, after, newer_than and limit"
	if operator {
		route = "GET /v1/events takes action, team_id, since, until, after, newer_than and limit"
	}
	bad := func(detail string) (store.AuditQuery, bool) {
		problem(c, http.StatusBadRequest, problemInvalid, detail)
		return q, false
	}
	for name, values := range c.Request.URL.Query() {
		if len(values) != 1 {
			return bad(fmt.Sprintf("query parameter %q is given %d times; give it once (action takes a comma-separated list)", truncate(name, 40), len(values)))
		}
		v := values[0]
		switch name {
		case "action":
			for _, a := range strings.Split(v, ",") {
				if !store.ValidAuditAction(store.AuditAction(a)) {
					return bad(fmt.Sprintf("action %q is not an audit action; use one or more of %s, separated by commas", truncate(a, 40), actionList()))
				}
				q.Actions = append(q.Actions, store.AuditAction(a))
			}
		case "team_id":
			if !operator {
				return bad("unknown query parameter \"team_id\": the team is in the path; " + route)
			}
			if v != "" && !apikey.ValidTeamID(v) {
				return bad(fmt.Sprintf("team_id %q is not valid: %s (empty selects events of no team)", truncate(v, 80), apikey.TeamIDRule))
			}
			q.TeamID, q.HasTeam = v, true
		case "since", "until":
			t, err := time.Parse(time.RFC3339, v)
			if err != nil {
				return bad(fmt.Sprintf("%s %q is not an RFC 3339 time such as 2025-01-31T08:00:00Z", name, truncate(v, 40)))
			}
			if name == "since" {
				q.Since = t
			} else {
				q.Until = t
			}
		case "after", "newer_than":
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil || n < 1 {
				return bad(fmt.Sprintf("%s %q is not a cursor: pass the \"next\" value of a page or the \"cursor\" of an event", name, truncate(v, 40)))
			}
			if name == "after" {
				q.After = n
			} else {
				q.NewerThan = n
			}
		case "limit":
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 || n > store.MaxAuditLimit {
				return bad(fmt.Sprintf("limit %q must be a whole number from 1 to %d", truncate(v, 40), store.MaxAuditLimit))
			}
			q.Limit = n
		default:
			return bad(fmt.Sprintf("unknown query parameter %q; %s", truncate(name, 40), route))
		}
	}
	if !q.Since.IsZero() && !q.Until.IsZero() && !q.Since.Before(q.Until) {
		return bad("since must be before until")
	}
	return q, true
}

func actionList() string {
	names := make([]string, len(store.AuditActions))
	for i, a := range store.AuditActions {
		names[i] = string(a)
	}
	return strings.Join(names, ", ")
}
