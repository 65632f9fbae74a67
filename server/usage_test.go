package server_test

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/server"
	"github.com/keygate/keygate/server/servertest"
)

type usageCountsJSON struct {
	Tokens                int64 `json:"tokens"`
	FailedAuthentications int64 `json:"failed_authentications"`
}

type usageBucketJSON struct {
	Start time.Time `json:"start"`
	usageCountsJSON
}

type keyUsageJSON struct {
	ClientID string  `json:"client_id"`
	Name     *string `json:"name"`
	Deleted  bool    `json:"deleted"`
	usageCountsJSON
	Buckets []usageBucketJSON `json:"buckets"`
}

type usageJSON struct {
	TeamID      string            `json:"team_id"`
	Granularity string            `json:"granularity"`
	From        time.Time         `json:"from"`
	To          time.Time         `json:"to"`
	Total       usageCountsJSON   `json:"total"`
	Buckets     []usageBucketJSON `json:"buckets"`
	Keys        []keyUsageJSON    `json:"keys"`
}

// usageNow is the clock of the usage tests: 10:30 UTC.
var usageNow = time.Date(2026, 11, 28, 10, 30, 0, 0, time.UTC)

func startUsageEnv(t *testing.T, b servertest.Backend) *testEnv {
	t.Helper()
	return startEnv(t, servertest.Config{Backend: b, Clock: servertest.NewClock(usageNow)})
}

// usage gets GET /v1/teams/{team}/usage?query with a fresh admin token, or
// fails the test.
func (e *testEnv) usage(t *testing.T, team, query string) usageJSON {
	t.Helper()
	path := "/v1/teams/" + team + "/usage"
	if query != "" {
		path += "?" + query
	}
	r := e.API(t, e.AdminToken(t), http.MethodGet, path, nil)
	if r.Status != http.StatusOK {
		t.Fatalf("GET %s: %s", path, r)
	}
	var u usageJSON
	if err := json.Unmarshal(r.Body, &u); err != nil {
		t.Fatalf("GET %s: %v: %s", path, err, r.Body)
	}
	return u
}

func (u usageJSON) key(t *testing.T, id string) keyUsageJSON {
	t.Helper()
	for _, k := range u.Keys {
		if k.ClientID == id {
			return k
		}
	}
	t.Fatalf("team %s's usage lists no key %s: %+v", u.TeamID, id, u.Keys)
	return keyUsageJSON{}
}

func (e *testEnv) wrongSecret(t *testing.T, id string) {
	t.Helper()
	r := e.TokenRequest(t, id, "kgs_wrong", url.Values{"grant_type": {"client_credentials"}})
	servertest.CheckOAuthError(t, r, http.StatusUnauthorized, "invalid_client")
}

func sameCounts(b usageBucketJSON, start time.Time, tokens, failures int64) bool {
	return b.Start.Equal(start) && b.Tokens == tokens && b.FailedAuthentications == failures
}

// TestUsageAppearsAfterFlush: tokens and refused secrets of known keys are
// counted per key, by hour and by day, once a last-used flush ran; unknown
// client IDs and admin tokens count nowhere.
func TestUsageAppearsAfterFlush(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b servertest.Backend) {
		e := startUsageEnv(t, b)
		sync := e.CreateKey(t, "acme", "sync", permAccounting)
		dash := e.CreateKey(t, "acme", "dash", permVisualization)
		for range 3 {
			e.Token(t, sync.ClientID, sync.ClientSecret, "")
		}
		e.Token(t, dash.ClientID, dash.ClientSecret, "")
		e.wrongSecret(t, sync.ClientID)
		e.wrongSecret(t, sync.ClientID)
		e.wrongSecret(t, "kgc_nobody")
		// Introspection refuses a wrong secret too: a failure of the key.
		req := e.NewRequest(t, http.MethodPost, "/oauth/introspect", strings.NewReader("token=x"))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Authorization", servertest.BasicAuth(dash.ClientID, "kgs_wrong"))
		if r := e.Do(t, req); r.Status != http.StatusUnauthorized {
			t.Fatalf("introspection with a wrong secret: %s", r)
		}

		if u := e.usage(t, "acme", ""); u.Total != (usageCountsJSON{}) || len(u.Buckets) != 0 {
			t.Fatalf("usage before any flush: %+v, want none (it is written by the flush)", u)
		}
		e.FlushLastUsed(t)

		hour, day := usageNow.Truncate(time.Hour), usageNow.Truncate(24*time.Hour)
		u := e.usage(t, "acme", "granularity=hour")
		if u.Granularity != "hour" || !u.To.Equal(hour.Add(time.Hour)) || !u.From.Equal(hour.Add(-23*time.Hour)) {
			t.Errorf("hourly range %s – %s (%s), want the last 24 hours to %s", u.From, u.To, u.Granularity, hour.Add(time.Hour))
		}
		if u.Total != (usageCountsJSON{4, 3}) || len(u.Buckets) != 1 || !sameCounts(u.Buckets[0], hour, 4, 3) {
			t.Errorf("team by hour: total %+v, buckets %+v; want 4 tokens, 3 failures in %s", u.Total, u.Buckets, hour)
		}
		if k := u.key(t, sync.ClientID); k.Name == nil || *k.Name != "sync" || k.Deleted || len(k.Buckets) != 1 || !sameCounts(k.Buckets[0], hour, 3, 2) {
			t.Errorf("sync by hour: %+v", k)
		}
		if k := u.key(t, dash.ClientID); len(k.Buckets) != 1 || !sameCounts(k.Buckets[0], hour, 1, 1) {
			t.Errorf("dash by hour: %+v", k)
		}
		if len(u.Keys) != 2 {
			t.Errorf("keys %+v, want sync and dash only (no unknown ID, no admin key)", u.Keys)
		}
		d := e.usage(t, "acme", "") // by day, the default
		if d.Granularity != "day" || !d.From.Equal(day.AddDate(0, 0, -29)) || !d.To.Equal(day.AddDate(0, 0, 1)) {
			t.Errorf("daily range %s – %s (%s), want the last 30 days", d.From, d.To, d.Granularity)
		}
		if k := d.key(t, sync.ClientID); k.Tokens != 3 || k.FailedAuthentications != 2 || len(k.Buckets) != 1 || !sameCounts(k.Buckets[0], day, 3, 2) {
			t.Errorf("sync by day: %+v", k)
		}

		// More tokens in a later hour add a bucket; the day adds up.
		e.Clock.Advance(time.Hour)
		e.FlushLastUsed(t) // the last call's lingering flush is of the previous hour (servertest.Env.FlushLastUsed)
		e.Token(t, sync.ClientID, sync.ClientSecret, "")
		e.FlushLastUsed(t)
		u = e.usage(t, "acme", "granularity=hour")
		if k := u.key(t, sync.ClientID); len(k.Buckets) != 2 || !sameCounts(k.Buckets[1], hour.Add(time.Hour), 1, 0) || k.Tokens != 4 {
			t.Errorf("sync by hour after a second hour: %+v", k)
		}
		if d := e.usage(t, "acme", "granularity=day"); d.Total != (usageCountsJSON{5, 3}) {
			t.Errorf("team by day: %+v, want 5 tokens, 3 failures", d.Total)
		}
	})
}

// TestUsageBadParameters: every malformed or out-of-range query is a 400
// problem, and the usage stays what it was.
func TestUsageBadParameters(t *testing.T) {
	e := startUsageEnv(t, servertest.Bolt())
	k := e.CreateKey(t, "acme", "sync", permAccounting)
	e.Token(t, k.ClientID, k.ClientSecret, "")
	e.FlushLastUsed(t)
	before := e.usage(t, "acme", "granularity=hour")
	tok := e.AdminToken(t)
	for query, detail := range map[string]string{
		"granularity=week":                 `granularity "week" must be hour or day`,
		"granularity=hour&granularity=day": `query parameter "granularity" is given 2 times`,
		"from=yesterday":                   `from "yesterday" is neither an RFC 3339 time`,
		"to=2026-13-01":                    `to "2026-13-01" is neither`,
		"limit=5":                          `unknown query parameter "limit"`,
		"granularity=hour&from=2026-11-26T09:00:00Z": "too far back: usage by hour is kept for 48 hours, so from must be 2026-11-26T10:00:00Z or later",
		"from=2026-10-23":               "too far back: usage by day is kept for 35 days, so from must be 2026-10-24 or later",
		"from=2026-11-28&to=2026-11-27": "must be before to",
		"granularity=hour&from=2026-11-28T10:00:00Z&to=2026-11-28T10:00:00Z": "must be before to",
	} {
		r := e.API(t, tok, http.MethodGet, "/v1/teams/acme/usage?"+query, nil)
		if r.Status != http.StatusBadRequest || r.Header.Get("Content-Type") != "application/problem+json" {
			t.Errorf("%s: %s, want a 400 problem", query, r)
			continue
		}
		var p struct{ Type, Detail string }
		if err := json.Unmarshal(r.Body, &p); err != nil || p.Type != "urn:keygate:problem:invalid-request" || !strings.Contains(p.Detail, detail) {
			t.Errorf("%s: problem %s, want an invalid-request saying %q", query, r.Body, detail)
		}
	}
	if r := e.API(t, tok, http.MethodGet, "/v1/teams/-bad/usage", nil); r.Status != http.StatusBadRequest {
		t.Errorf("invalid team: %s", r)
	}
	if r := e.API(t, "", http.MethodGet, "/v1/teams/acme/usage", nil); r.Status != http.StatusUnauthorized {
		t.Errorf("no token: %s", r)
	}
	if r := e.API(t, e.Token(t, k.ClientID, k.ClientSecret, "").AccessToken, http.MethodGet, "/v1/teams/acme/usage", nil); r.Status != http.StatusUnauthorized {
		t.Errorf("a team key's token: %s", r)
	}
	// The edges of the window are accepted; a to in the future is cut.
	for _, q := range []string{"granularity=hour&from=2026-11-26T10:00:00Z", "from=2026-10-24", "from=2026-11-28&to=2030-01-01"} {
		u := e.usage(t, "acme", q)
		if end := usageNow.Truncate(time.Hour).Add(time.Hour); u.Granularity == "hour" && !u.To.Equal(end) {
			t.Errorf("%s: to %s, want %s", q, u.To, end)
		}
		if end := usageNow.Truncate(24*time.Hour).AddDate(0, 0, 1); u.Granularity == "day" && !u.To.Equal(end) {
			t.Errorf("%s: to %s, want %s", q, u.To, end)
		}
	}
	// The refused requests changed nothing. (The token of the 403 check is
	// not counted yet: no flush ran since.)
	after := e.usage(t, "acme", "granularity=hour")
	if b, a := mustJSON(t, before), mustJSON(t, after); a != b {
		t.Errorf("usage changed by refused requests:\n before %+v\n after  %+v", before, after)
	}
}

// TestUsageTeamIsolation: a team's usage never shows another team's keys or
// counts, even a team whose ID extends it.
func TestUsageTeamIsolation(t *testing.T) {
	e := startUsageEnv(t, servertest.Bolt())
	a := e.CreateKey(t, "acme", "a", permAccounting)
	a2 := e.CreateKey(t, "acme2", "a2", permAccounting)
	b := e.CreateKey(t, "beta", "b", permAccounting)
	e.Token(t, a.ClientID, a.ClientSecret, "")
	for range 2 {
		e.Token(t, a2.ClientID, a2.ClientSecret, "")
	}
	for range 3 {
		e.Token(t, b.ClientID, b.ClientSecret, "")
	}
	e.wrongSecret(t, b.ClientID)
	e.FlushLastUsed(t)
	for team, want := range map[string]struct {
		id     string
		tokens int64
		fails  int64
	}{"acme": {a.ClientID, 1, 0}, "acme2": {a2.ClientID, 2, 0}, "beta": {b.ClientID, 3, 1}} {
		for _, g := range []string{"hour", "day"} {
			u := e.usage(t, team, "granularity="+g)
			if len(u.Keys) != 1 || u.Keys[0].ClientID != want.id || u.Total != (usageCountsJSON{want.tokens, want.fails}) {
				t.Errorf("%s by %s: keys %+v, total %+v; want only %s with %d tokens", team, g, u.Keys, u.Total, want.id, want.tokens)
			}
		}
	}
	if u := e.usage(t, "gamma", ""); len(u.Keys) != 0 || u.Total != (usageCountsJSON{}) || len(u.Buckets) != 0 {
		t.Errorf("a team without keys: %+v", u)
	}
}

// TestUsageOfDeletedKeyStays: deleting a key keeps its usage, marked
// deleted and counted in the team's total, until it ages out.
func TestUsageOfDeletedKeyStays(t *testing.T) {
	e := startUsageEnv(t, servertest.Memory())
	keep := e.CreateKey(t, "acme", "keep", permAccounting)
	gone := e.CreateKey(t, "acme", "gone", permAccounting)
	e.Token(t, keep.ClientID, keep.ClientSecret, "")
	for range 2 {
		e.Token(t, gone.ClientID, gone.ClientSecret, "")
	}
	e.FlushLastUsed(t)
	if r := e.API(t, e.AdminToken(t), http.MethodDelete, "/v1/teams/acme/keys/"+gone.ClientID, nil); r.Status != http.StatusNoContent {
		t.Fatalf("delete: %s", r)
	}
	u := e.usage(t, "acme", "")
	if g := u.key(t, gone.ClientID); !g.Deleted || g.Name != nil || g.Tokens != 2 {
		t.Errorf("deleted key: %+v, want deleted, no name, 2 tokens", g)
	}
	if u.Keys[0].ClientID != keep.ClientID || u.Total.Tokens != 3 {
		t.Errorf("keys %+v total %+v: want the current key first and 3 tokens in all", u.Keys, u.Total)
	}
	// 49 hours on, the hourly buckets have aged out, the daily ones not.
	e.Clock.Advance(49 * time.Hour)
	if h := e.usage(t, "acme", "granularity=hour"); h.Total.Tokens != 0 || len(h.Keys) != 1 {
		t.Errorf("hourly after 49 h: %+v, want nothing (and the deleted key gone from the list)", h)
	}
	if d := e.usage(t, "acme", ""); d.Total.Tokens != 3 {
		t.Errorf("daily after 49 h: %+v, want 3 tokens", d.Total)
	}
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestUsageAddsUpAcrossInstances: two instances on one store, each with
// its own in-memory counts and its own flushes, add up in the store.
func TestUsageAddsUpAcrossInstances(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b servertest.Backend) {
		e1 := startUsageEnv(t, b)
		e2 := e1.second(t, server.Options{})
		k := e1.CreateKey(t, "acme", "sync", permAccounting)
		for range 3 {
			e1.Token(t, k.ClientID, k.ClientSecret, "")
		}
		for range 2 {
			e2.Token(t, k.ClientID, k.ClientSecret, "")
		}
		e2.wrongSecret(t, k.ClientID)
		e1.FlushLastUsed(t)
		e2.FlushLastUsed(t)
		// A second round on both, in another flush each: batches add up too.
		e1.Token(t, k.ClientID, k.ClientSecret, "")
		e2.Token(t, k.ClientID, k.ClientSecret, "")
		e1.FlushLastUsed(t)
		e2.FlushLastUsed(t)
		for _, e := range []*testEnv{e1, e2} {
			u := e.usage(t, "acme", "granularity=hour")
			if u.Total != (usageCountsJSON{7, 1}) || len(u.Buckets) != 1 {
				t.Errorf("usage seen from %s: %+v, want 7 tokens and 1 failure in one hour", e.URL, u)
			}
		}
	})
}
