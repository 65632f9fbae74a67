package server

// Team offboarding: DELETE /v1/teams/{team_id}[?erase=true]. The steps and
// their order are apikey.Service.DeleteTeam's.

import (
	"errors"
	"fmt"
	"net/http"

	"github.com/gin-gonic/gin"

	"github.com/keygate/keygate/apikey"
)

func (s *Server) mountOffboarding(v1 *gin.RouterGroup) {
	v1.DELETE("/teams/:team_id", validTeam, s.deleteTeam)
}

// teamDeletionView answers 200 rather than 204: the counts tell the
// operator what went (a team of no keys is a typo as often as not).
type teamDeletionView struct {
	TeamID        string `json:"team_id"`
	KeysDeleted   int    `json:"keys_deleted"`
	SessionsEnded int    `json:"sessions_ended"`
	EventsErased  int    `json:"events_erased"`
}

func (s *Server) deleteTeam(c *gin.Context) {
	team := c.Param("team_id")
	var erase bool
	// Only the query parameter erase is understood; a misspelt value must
	// not quietly skip the erasure.
	for name, vals := range c.Request.URL.Query() {
		if name != "erase" {
			problem(c, http.StatusBadRequest, problemInvalid, fmt.Sprintf("unknown query parameter %q; the only one allowed is erase=true|false", truncate(name, 40)))
			return
		}
		if len(vals) != 1 || (vals[0] != "true" && vals[0] != "false") {
			problem(c, http.StatusBadRequest, problemInvalid, `erase must be given once, as "true" (also blank the source addresses, user agents and user names of the team's audit events) or "false"`)
			return
		}
		erase = vals[0] == "true"
	}
	done, err := s.keys.DeleteTeam(c.Request.Context(), s.requestMeta(c), team, erase)
	// Keys may have been deleted even when a later step failed.
	s.statusLists.invalidate()
	var inv *apikey.InvalidError
	switch {
	case errors.As(err, &inv):
		problem(c, http.StatusBadRequest, problemInvalid, inv.Detail)
		return
	case err != nil:
		s.storeProblem(c, err)
		return
	}
	c.JSON(http.StatusOK, teamDeletionView{TeamID: team, KeysDeleted: done.KeysDeleted, SessionsEnded: done.SessionsEnded, EventsErased: done.EventsErased})
}
