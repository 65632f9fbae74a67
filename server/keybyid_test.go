package server_test

// GET /v1/keys/{client_id}: a team key by its client ID alone, in the shape
// of GET /v1/teams/{team_id}/keys/{client_id}; admin keys and unknown or
// malformed IDs are 404, and nothing a refused request sends changes the
// store.

import (
	"bytes"
	"net/http"
	"net/url"
	"strings"
	"testing"
)

func TestKeyByID(t *testing.T) {
	f := newMgmtFixture(t)
	e := f.e
	for _, k := range []keyJSON{f.acme, f.beta} {
		byID := e.API(t, f.admin, http.MethodGet, "/v1/keys/"+k.ClientID, nil)
		byTeam := e.API(t, f.admin, http.MethodGet, "/v1/teams/"+k.TeamID+"/keys/"+k.ClientID, nil)
		if byID.Status != http.StatusOK || byTeam.Status != http.StatusOK {
			t.Fatalf("%s: by ID %s, by team %s", k.ClientID, byID, byTeam)
		}
		// The same JSON, byte for byte, as the team route.
		if !bytes.Equal(byID.Body, byTeam.Body) {
			t.Fatalf("GET /v1/keys/%s answered\n%s\nthe team route\n%s", k.ClientID, byID.Body, byTeam.Body)
		}
		if cc := byID.Header.Get("Cache-Control"); cc != "no-store" {
			t.Errorf("Cache-Control %q", cc)
		}
	}

	long := "kgc_" + strings.Repeat("x", 200)
	before := e.Snapshot(t)
	for _, c := range []struct {
		name, id, auth string
		status         int
		detail         string
	}{
		{"no token", f.acme.ClientID, "", http.StatusUnauthorized, ""},
		{"team token", f.acme.ClientID, "Bearer " + f.teamToken, http.StatusUnauthorized, ""},
		{"unknown", "kgc_unknown", "Bearer " + f.admin, http.StatusNotFound,
			`no team has a key "kgc_unknown"; list the teams with GET /v1/teams and a team's keys with GET /v1/teams/{team_id}/keys`},
		{"admin key", e.AdminID, "Bearer " + f.admin, http.StatusNotFound,
			`no team has a key "` + e.AdminID + `"; list the teams with GET /v1/teams and a team's keys with GET /v1/teams/{team_id}/keys`},
		{"malformed", long, "Bearer " + f.admin, http.StatusNotFound,
			`no team has a key "` + long[:80] + `…"; list the teams with GET /v1/teams and a team's keys with GET /v1/teams/{team_id}/keys`},
		{"escaped", "a b\"<", "Bearer " + f.admin, http.StatusNotFound,
			`no team has a key "a b\"<"; list the teams with GET /v1/teams and a team's keys with GET /v1/teams/{team_id}/keys`},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := f.send(t, mreq{method: http.MethodGet, path: "/v1/keys/" + url.PathEscape(c.id), auth: c.auth})
			p := checkProblem(t, r, c.status)
			if c.detail != "" && p.Detail != c.detail {
				t.Errorf("detail %q\nwant   %q", p.Detail, c.detail)
			}
			if c.status == http.StatusNotFound {
				// The same problem type as the team routes' not found.
				other := checkProblem(t, e.API(t, f.admin, http.MethodGet, "/v1/teams/acme/keys/kgc_unknown", nil), http.StatusNotFound)
				if p.Type != other.Type || p.Title != other.Title {
					t.Errorf("problem type %q title %q, the team route's %q %q", p.Type, p.Title, other.Type, other.Title)
				}
			}
			if strings.Contains(string(r.Body), e.AdminSecret) {
				t.Fatal("the answer shows the admin secret")
			}
		})
	}
	e.FlushLastUsed(t)
	if after := e.Snapshot(t); after != before {
		t.Errorf("refused lookups changed the store:\nbefore:\n%s\nafter:\n%s", before, after)
	}
}
