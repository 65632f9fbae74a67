package server

// Secret rotation: POST /v1/teams/{team_id}/keys/{client_id}/rotate. The
// rules (two live secrets at most, grace 0 ends the old one at once) are
// apikey.Service.Rotate's; this file reads the optional body.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/keygate/keygate/apikey"
	"github.com/keygate/keygate/config"
)

const (
	gracePeriodField = "grace_period"
	gracePeriodRange = `grace_period must be a duration from 0s to 7d (168h), e.g. "24h" or "7d"`
)

// rotateFields: a rotation's body holds grace_period and nothing else.
var rotateFields = bodyFields{names: []string{gracePeriodField}, unknown: func(name string) string {
	return fmt.Sprintf(`unknown field %q; the only field allowed is "grace_period" (or send no body for the default of 24h)`, name)
}}

func (s *Server) rotateKey(c *gin.Context) {
	team, id := c.Param("team_id"), c.Param("client_id")
	grace, given, ok := rotateGracePeriod(c)
	if !ok {
		return
	}
	if !s.managerSees(c, team, id) {
		return
	}
	k, secret, err := s.keys.Rotate(c.Request.Context(), s.requestMeta(c), team, id, grace)
	// A rotation may set status bits (the generations it ends), even when
	// it then fails: the next status list request rebuilds the list.
	s.statusLists.invalidate()
	if err != nil {
		s.keyProblem(c, team, id, err)
		return
	}
	s.reqLog(c).Info("management: key secret rotated", "team_id", team, "client_id", id, "grace_period", given)
	c.JSON(http.StatusOK, createdKeyView{keyView: s.view(k), ClientSecret: secret})
}

// rotateGracePeriod reads the optional body {"grace_period": "24h"}. An empty
// body (with or without a content type) means the default; anything else must
// be a JSON object, checked by decodeJSON (content type, size, UTF-8, one
// object, strict JSON), whose only field is grace_period; null is not an
// object and is refused, not read as the default. It answers with a problem and
// returns false on bad input. given is the period as the request wrote it
// ("7d" stays "7d"), for the log.
func rotateGracePeriod(c *gin.Context) (grace time.Duration, given string, ok bool) {
	body, err := io.ReadAll(io.LimitReader(c.Request.Body, maxManagementBody+1))
	if err != nil {
		problem(c, http.StatusBadRequest, problemInvalid, "could not read the request body")
		return 0, "", false
	}
	if len(body) == 0 {
		return apikey.DefaultGracePeriod, "default", true
	}
	c.Request.Body = io.NopCloser(bytes.NewReader(body))
	var fields map[string]json.RawMessage
	if !decodeJSON(c, &fields, rotateFields) {
		return 0, "", false
	}
	raw, ok := fields[gracePeriodField]
	if !ok || string(raw) == "null" {
		return apikey.DefaultGracePeriod, "default", true
	}
	var text string
	if err := json.Unmarshal(raw, &text); err != nil {
		problem(c, http.StatusBadRequest, problemInvalid, "grace_period is not a JSON string; "+gracePeriodRange)
		return 0, "", false
	}
	// keygate's one duration syntax (config.ParseDuration): Go durations
	// and days, so "7d" means here what it means in the config and the CLI.
	d, err := config.ParseDuration(text)
	if err != nil {
		problem(c, http.StatusBadRequest, problemInvalid, fmt.Sprintf("grace_period %q is not a duration; %s", truncate(text, 40), gracePeriodRange))
		return 0, "", false
	}
	if apikey.CheckGracePeriod(d) != nil {
		problem(c, http.StatusBadRequest, problemInvalid, fmt.Sprintf("grace_period %q is out of range; %s", truncate(text, 40), gracePeriodRange))
		return 0, "", false
	}
	return d, text, true
}
