package server

// GET /v1/teams/{team_id}/usage: tokens issued and failed authentications
// per key, by hour or by UTC day (package lastused counts them, the store
// keeps them outside the key records; docs/ARCHITECTURE.md).

import (
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/keygate/keygate/apikey"
	"github.com/keygate/keygate/store"
)

// usageCounts are the counters of one bucket or one whole range.
type usageCounts struct {
	Tokens                int64 `json:"tokens"`
	FailedAuthentications int64 `json:"failed_authentications"`
}

type usageBucketView struct {
	Start time.Time `json:"start"`
	usageCounts
}

type keyUsageView struct {
	ClientID string `json:"client_id"`
	// Name is null for a deleted key, whose usage stays until it ages out.
	Name    *string `json:"name"`
	Deleted bool    `json:"deleted"`
	usageCounts
	Buckets []usageBucketView `json:"buckets"`
}

type usageView struct {
	TeamID      string    `json:"team_id"`
	Granularity string    `json:"granularity"`
	From        time.Time `json:"from"`
	To          time.Time `json:"to"`
	// Total and Buckets are the whole team's, deleted keys included.
	Total   usageCounts       `json:"total"`
	Buckets []usageBucketView `json:"buckets"`
	Keys    []keyUsageView    `json:"keys"`
}

// teamUsage answers GET /v1/teams/{team_id}/usage?from=&to=&granularity=.
func (s *Server) teamUsage(c *gin.Context) {
	team := c.Param("team_id")
	req, ok := usageRequest(c)
	if !ok {
		return
	}
	req.Team = team
	rep, err := s.keys.Usage(c.Request.Context(), req)
	var inv *apikey.InvalidError
	switch {
	case errors.As(err, &inv):
		problem(c, http.StatusBadRequest, problemInvalid, inv.Detail)
		return
	case err != nil:
		s.storeProblem(c, err)
		return
	}
	c.JSON(http.StatusOK, usageOf(team, rep))
}

// usageOf shapes a report: every current key (usage or not) in list order,
// then deleted keys with usage in the range, by client ID; only active
// buckets are listed.
func usageOf(team string, rep apikey.UsageReport) usageView {
	out := usageView{TeamID: team, Granularity: rep.Granularity.String(), From: rep.From, To: rep.To,
		Buckets: []usageBucketView{}, Keys: make([]keyUsageView, 0, len(rep.Keys))}
	index := map[string]int{}
	for _, k := range rep.Keys {
		index[k.ClientID] = len(out.Keys)
		out.Keys = append(out.Keys, keyUsageView{ClientID: k.ClientID, Name: &k.Name, Buckets: []usageBucketView{}})
	}
	teamAt := map[time.Time]int{}
	for _, b := range rep.Buckets { // ordered by start, then client ID
		i, ok := index[b.ClientID]
		if !ok {
			i = len(out.Keys)
			index[b.ClientID] = i
			out.Keys = append(out.Keys, keyUsageView{ClientID: b.ClientID, Deleted: true, Buckets: []usageBucketView{}})
		}
		n := usageCounts{Tokens: b.Tokens, FailedAuthentications: b.Failures}
		k := &out.Keys[i]
		k.Buckets = append(k.Buckets, usageBucketView{Start: b.Start, usageCounts: n})
		k.Tokens += n.Tokens
		k.FailedAuthentications += n.FailedAuthentications
		j, ok := teamAt[b.Start]
		if !ok {
			j = len(out.Buckets)
			teamAt[b.Start] = j
			out.Buckets = append(out.Buckets, usageBucketView{Start: b.Start})
		}
		out.Buckets[j].Tokens += n.Tokens
		out.Buckets[j].FailedAuthentications += n.FailedAuthentications
		out.Total.Tokens += n.Tokens
		out.Total.FailedAuthentications += n.FailedAuthentications
	}
	return out
}

// usageRequest reads teamUsage's query parameters; on bad input it answers
// with a problem and returns false. Times are RFC 3339 or a date
// (YYYY-MM-DD, UTC): a date in from is that day's start, in to that day's
// end, so from=2025-03-01&to=2025-03-31 is all of both days and those
// between.
func usageRequest(c *gin.Context) (apikey.UsageRequest, bool) {
	req := apikey.UsageRequest{Granularity: store.Day}
	bad := func(format string, args ...any) (apikey.UsageRequest, bool) {
		problem(c, http.StatusBadRequest, problemInvalid, fmt.Sprintf(format, args...))
		return apikey.UsageRequest{}, false
	}
	for name, values := range c.Request.URL.Query() {
		if len(values) != 1 {
			return bad("query parameter %q is given %d times; give it once", truncate(name, 40), len(values))
		}
		v := values[0]
		switch name {
		case "granularity":
			switch v {
			case "hour":
				req.Granularity = store.Hour
			case "day":
				req.Granularity = store.Day
			default:
				return bad("granularity %q must be hour or day", truncate(v, 40))
			}
		case "from", "to":
			t, date, err := parseUsageTime(v)
			if err != nil {
				return bad("%s %q is neither an RFC 3339 time (2025-03-01T12:00:00Z) nor a date (2025-03-01)", name, truncate(v, 40))
			}
			if name == "from" {
				req.From = t
			} else {
				if date {
					t = t.AddDate(0, 0, 1)
				}
				req.To = t
			}
		default:
			return bad("unknown query parameter %q; GET /v1/teams/{team_id}/usage takes from, to and granularity", truncate(name, 40))
		}
	}
	return req, true
}

// parseUsageTime reads an RFC 3339 time or a date (midnight UTC; date
// reports which).
func parseUsageTime(v string) (t time.Time, date bool, err error) {
	if t, err := time.Parse(time.DateOnly, v); err == nil {
		return t, true, nil
	}
	t, err = time.Parse(time.RFC3339, v)
	if err != nil || t.Year() < 1970 {
		return time.Time{}, false, errors.New("bad time")
	}
	return t.UTC(), false, nil
}
