package server_test

// Team offboarding (DELETE /v1/teams/{team_id}): keys, usage and sessions
// of the team go, its audit events stay, their personal data blanked only
// with erase=true; another team is untouched.

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/server/servertest"
	"github.com/keygate/keygate/store"
)

type teamDeletionJSON struct {
	TeamID        string `json:"team_id"`
	KeysDeleted   int    `json:"keys_deleted"`
	SessionsEnded int    `json:"sessions_ended"`
	EventsErased  int    `json:"events_erased"`
}

// offboardFeatures returns the store's offboarding features, or skips the
// test loudly when the backend does not implement them yet.
func offboardFeatures(t *testing.T, st store.Store) (store.Sessions, store.TeamEraser) {
	t.Helper()
	sess, ok1 := store.Feature[store.Sessions](st)
	er, ok2 := store.Feature[store.TeamEraser](st)
	if !ok1 || !ok2 {
		t.Skipf("SKIPPED: this backend does not implement store.Sessions (%v) and store.TeamEraser (%v) yet", ok1, ok2)
	}
	return sess, er
}

func TestDeleteTeamBadQueryChangesNothing(t *testing.T) {
	e := servertest.StartWith(t, servertest.Config{Backend: servertest.Memory()})
	tok := e.AdminToken(t)
	e.CreateKey(t, "acme", "Team key", permAccounting)
	e.FlushLastUsed(t)
	before := e.Snapshot(t)
	for _, c := range []struct{ path, detail string }{
		{"/v1/teams/acme?erase=yes", `erase must be given once, as "true"`},
		{"/v1/teams/acme?erase=", `erase must be given once`},
		{"/v1/teams/acme?erase=true&erase=false", `erase must be given once`},
		{"/v1/teams/acme?purge=true", `unknown query parameter "purge"`},
		{"/v1/teams/-bad-", "team id"},
	} {
		r := e.API(t, tok, http.MethodDelete, c.path, nil)
		if p := checkProblem(t, r, http.StatusBadRequest); p.Type != "urn:keygate:problem:invalid-request" || !strings.Contains(p.Detail, c.detail) {
			t.Errorf("DELETE %s: problem %s %q, want invalid-request containing %q", c.path, p.Type, p.Detail, c.detail)
		}
		e.AssertUnchanged(t, before)
	}
	checkProblem(t, e.API(t, "", http.MethodDelete, "/v1/teams/acme", nil), http.StatusUnauthorized)
	e.AssertUnchanged(t, before)
}

func TestDeleteTeam(t *testing.T) {
	for _, erase := range []bool{false, true} {
		name := "keep personal data"
		if erase {
			name = "erase=true"
		}
		t.Run(name, func(t *testing.T) {
			forEachBackend(t, func(t *testing.T, b servertest.Backend) {
				testDeleteTeam(t, b, erase)
			})
		})
	}
}

func testDeleteTeam(t *testing.T, b servertest.Backend, erase bool) {
	clk := servertest.NewClock(time.Now().UTC().Truncate(time.Hour).Add(30 * time.Minute))
	e := servertest.StartWith(t, servertest.Config{Backend: b, Clock: clk})
	sessions, _ := offboardFeatures(t, e.Store)
	ctx := context.Background()
	tok := e.AdminToken(t)
	k1 := e.CreateKey(t, "acme", "One", permAccounting)
	k2 := e.CreateKey(t, "acme", "Two", permAccounting)
	other := e.CreateKey(t, "globex", "Other", permAccounting)
	tok1 := e.Token(t, k1.ClientID, k1.ClientSecret, "").AccessToken
	e.Token(t, other.ClientID, other.ClientSecret, "")
	now := clk.Now()
	if err := e.Store.AddUsage(ctx, now, []store.UsageDelta{
		{TeamID: "acme", ClientID: k1.ClientID, Hour: now, Tokens: 3},
		{TeamID: "globex", ClientID: other.ClientID, Hour: now, Tokens: 2},
	}); err != nil {
		t.Fatal(err)
	}
	for _, s := range []store.ManagementSession{
		{ID: "ses_acmeacmeacmeacmeacme1", TeamID: "acme", User: "alice@example.com", Kind: store.SessionConsole, MintedBy: e.AdminID, CreatedAt: now, ExpiresAt: now.Add(time.Hour)},
		{ID: "ses_globexglobexglobex12", TeamID: "globex", User: "bob@example.com", Kind: store.SessionConsole, MintedBy: e.AdminID, CreatedAt: now, ExpiresAt: now.Add(time.Hour)},
	} {
		if err := sessions.CreateSession(ctx, s, nil, time.Time{}); err != nil {
			t.Fatal(err)
		}
	}
	idx1, idx2 := e.StoredKey(t, k1.ClientID).StatusIndex, e.StoredKey(t, k2.ClientID).StatusIndex

	path := "/v1/teams/acme"
	if erase {
		path += "?erase=true"
	}
	r := e.API(t, tok, http.MethodDelete, path, nil)
	if r.Status != http.StatusOK {
		t.Fatalf("delete team: %s", r)
	}
	var got teamDeletionJSON
	if err := json.Unmarshal(r.Body, &got); err != nil {
		t.Fatal(err)
	}
	if got.TeamID != "acme" || got.KeysDeleted != 2 || got.SessionsEnded != 1 || (got.EventsErased > 0) != erase {
		t.Fatalf("answer %+v", got)
	}

	// Keys gone, status bits set, their secrets and tokens refused.
	if keys, err := e.Store.ListKeys(ctx, "acme"); err != nil || len(keys) != 0 {
		t.Fatalf("acme keys after offboarding: %v %v", keys, err)
	}
	for _, idx := range []int64{idx1, idx2} {
		if !statusBit(t, e.Store, idx) {
			t.Errorf("status bit %d not set", idx)
		}
	}
	if r := e.TokenRequest(t, k1.ClientID, k1.ClientSecret, url.Values{"grant_type": {"client_credentials"}}); r.Status != http.StatusUnauthorized {
		t.Errorf("token for a deleted team's key: %s", r)
	}
	intro := e.API(t, tok, http.MethodGet, "/v1/keys/"+k1.ClientID, nil)
	checkProblem(t, intro, http.StatusNotFound)
	_ = tok1 // its status bit is set (checked above): resource servers refuse it
	// Usage gone, the other team's kept.
	q := store.UsageQuery{Granularity: store.Hour, From: now.Add(-2 * time.Hour), To: now.Add(time.Hour), Now: now}
	q.TeamID = "acme"
	if u, err := e.Store.Usage(ctx, q); err != nil || len(u) != 0 {
		t.Errorf("acme usage after offboarding: %v %v", u, err)
	}
	q.TeamID = "globex"
	if u, err := e.Store.Usage(ctx, q); err != nil || len(u) == 0 {
		t.Errorf("globex usage after acme's offboarding: %v %v", u, err)
	}
	// Sessions gone, the other team's kept.
	if _, err := sessions.GetSession(ctx, "ses_acmeacmeacmeacmeacme1"); err == nil {
		t.Error("acme's session survived")
	}
	if _, err := sessions.GetSession(ctx, "ses_globexglobexglobex12"); err != nil {
		t.Errorf("globex's session: %v", err)
	}
	// Events kept; personal data blanked only with erase; a team.deleted.
	if _, err := e.Store.MoveAudit(ctx); err != nil {
		t.Fatal(err)
	}
	page, err := e.Store.AuditEvents(ctx, "acme", store.AuditQuery{Limit: store.MaxAuditLimit})
	if err != nil {
		t.Fatal(err)
	}
	var created, deleted, teamDeleted int
	for _, ev := range page.Events {
		switch ev.Action {
		case store.AuditKeyCreated:
			created++
		case store.AuditKeyDeleted:
			deleted++
		case store.AuditTeamDeleted:
			teamDeleted++
			if ev.SourceAddr == "" || ev.Actor.ID != e.AdminID {
				t.Errorf("team.deleted %+v: want the operator's key and address", ev)
			}
			continue
		}
		if blank := ev.SourceAddr == "" && ev.UserAgent == "" && ev.Actor.OnBehalfOf == ""; blank != erase {
			t.Errorf("event %s: source %q agent %q user %q, erase=%v", ev.Action, ev.SourceAddr, ev.UserAgent, ev.Actor.OnBehalfOf, erase)
		}
	}
	if created != 2 || deleted != 2 || teamDeleted != 1 {
		t.Errorf("acme's events: %d created, %d deleted, %d team.deleted; want 2, 2, 1", created, deleted, teamDeleted)
	}
	// The other team is untouched.
	e.Token(t, other.ClientID, other.ClientSecret, "")
}
