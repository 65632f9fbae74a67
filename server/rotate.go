package server

// Secret rotation: POST /v1/teams/{team_id}/keys/{client_id}/rotate.
//
// A rotation gives the key a new secret, shown once in the answer, and keeps
// the secret that was current until then working for a grace period, so a
// running integration can switch without an outage. A key has at most two
// live secrets: rotating again during a grace period makes the then-current
// secret the previous one, which ends the older one at once. Grace 0 ends the
// old secret at once (the way to cut a leaked secret off).
//
// The token endpoint (apiKey.VerifyPassword) honours PreviousSecretHash while
// the server clock is before PreviousSecretExpiresAt; everything here uses
// that same clock, s.cfg.Now().

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sort"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/keygate/keygate/credential"
	"github.com/keygate/keygate/store"
)

const (
	defaultGracePeriod = 24 * time.Hour
	maxGracePeriod     = 7 * 24 * time.Hour

	gracePeriodField = "grace_period"
	gracePeriodRange = `grace_period must be a duration from 0s to 168h, e.g. "24h"`
)

// errOtherTeam: the key exists but belongs to another team than the path's;
// returned from inside UpdateKey so that nothing is written.
var errOtherTeam = errors.New("key belongs to another team")

func (s *Server) rotateKey(c *gin.Context) {
	team, id := c.Param("team_id"), c.Param("client_id")
	grace, ok := rotateGracePeriod(c)
	if !ok {
		return
	}
	secret, err := credential.NewSecret()
	if err != nil {
		s.internalProblem(c, err)
		return
	}
	newHash := s.hasher.Hash(secret)
	now := s.cfg.Now().UTC()

	// One atomic read-modify-write: the hash that becomes the previous one is
	// the hash current at the moment of the write, even when two rotations
	// race. The function is pure, as UpdateKey requires (it may run twice).
	k, err := s.store.UpdateKey(c.Request.Context(), id, func(k store.Key) (store.Key, error) {
		if k.TeamID != team {
			return store.Key{}, errOtherTeam
		}
		if grace > 0 {
			k.PreviousSecretHash = append([]byte(nil), k.SecretHash...)
			k.PreviousSecretExpiresAt = now.Add(grace)
		} else {
			k.PreviousSecretHash = nil
			k.PreviousSecretExpiresAt = time.Time{}
		}
		k.SecretHash = append([]byte(nil), newHash...)
		k.SecretRotatedAt = now
		return k, nil
	})
	switch {
	case errors.Is(err, store.ErrNotFound), errors.Is(err, errOtherTeam):
		// A key of another team is "not found" here, as for GET.
		keyNotFound(c, team, id)
		return
	case err != nil:
		s.storeProblem(c, err)
		return
	}
	s.log.Info("management: key secret rotated", "team_id", team, "client_id", id, "grace_period", grace.String())
	c.JSON(http.StatusOK, createdKeyView{keyView: s.view(k), ClientSecret: secret})
}

// rotateGracePeriod reads the optional body {"grace_period": "24h"}. An empty
// body (with or without a content type) means the default; anything else must
// be a JSON object, checked by decodeJSON (content type, size, UTF-8, one
// object), whose only field is grace_period. It answers with a problem and
// returns false on bad input.
func rotateGracePeriod(c *gin.Context) (time.Duration, bool) {
	body, err := io.ReadAll(io.LimitReader(c.Request.Body, maxManagementBody+1))
	if err != nil {
		problem(c, http.StatusBadRequest, problemInvalid, "could not read the request body")
		return 0, false
	}
	if len(body) == 0 {
		return defaultGracePeriod, true
	}
	c.Request.Body = io.NopCloser(bytes.NewReader(body))
	// A map, not a struct: decodeJSON's unknown-field message names the
	// create request's fields, so unknown fields are reported here instead.
	var fields map[string]json.RawMessage
	if !decodeJSON(c, &fields) {
		return 0, false
	}
	unknown := make([]string, 0, len(fields))
	for name := range fields {
		if name != gracePeriodField {
			unknown = append(unknown, name)
		}
	}
	if len(unknown) > 0 {
		sort.Strings(unknown)
		problem(c, http.StatusBadRequest, problemInvalid, fmt.Sprintf(
			`unknown field %q; the only field allowed is "grace_period" (or send no body for the default of 24h)`, truncate(unknown[0], 80)))
		return 0, false
	}
	raw, ok := fields[gracePeriodField]
	if !ok || string(raw) == "null" {
		return defaultGracePeriod, true
	}
	var text string
	if err := json.Unmarshal(raw, &text); err != nil {
		problem(c, http.StatusBadRequest, problemInvalid, "grace_period is not a JSON string; "+gracePeriodRange)
		return 0, false
	}
	d, err := time.ParseDuration(text)
	if err != nil {
		problem(c, http.StatusBadRequest, problemInvalid, fmt.Sprintf("grace_period %q is not a duration; %s", truncate(text, 40), gracePeriodRange))
		return 0, false
	}
	if d < 0 || d > maxGracePeriod {
		problem(c, http.StatusBadRequest, problemInvalid, fmt.Sprintf("grace_period %q is out of range; %s", truncate(text, 40), gracePeriodRange))
		return 0, false
	}
	return d, true
}
