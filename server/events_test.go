package server_test

// The audit trail over HTTP: every action that changes state leaves one
// event naming the right actor, team and key, in the team's trail and (after
// an audit round) in the operator-wide stream, with one audit log line
// each; refused changes leave none; refused management calls are folded per
// source and minute; the lists page with cursors and refuse bad queries.

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/server"
	"github.com/keygate/keygate/server/servertest"
)

type eventJSON struct {
	ID      string `json:"id"`
	Cursor  string `json:"cursor"`
	Time    time.Time
	Action  string `json:"action"`
	Outcome string `json:"outcome"`
	Actor   struct {
		Type string `json:"type"`
		ID   string `json:"id"`
	} `json:"actor"`
	TeamID        string   `json:"team_id"`
	ClientID      string   `json:"client_id"`
	RequestID     string   `json:"request_id"`
	SourceAddress string   `json:"source_address"`
	UserAgent     string   `json:"user_agent"`
	Fields        []string `json:"fields"`
	Reason        string   `json:"reason"`
	Count         int      `json:"count"`
	StatusIndex   int64    `json:"status_index"`
}

func cursorOf(t *testing.T, ev eventJSON) int64 {
	t.Helper()
	n, err := strconv.ParseInt(ev.Cursor, 10, 64)
	if err != nil || n < 1 {
		t.Fatalf("event %s has cursor %q", ev.ID, ev.Cursor)
	}
	return n
}

type eventsJSON struct {
	Events []eventJSON `json:"events"`
	Next   *string     `json:"next"`
}

// events GETs path with the admin token and decodes the page.
func getEvents(t *testing.T, e *servertest.Env, tok, path string) eventsJSON {
	t.Helper()
	r := e.API(t, tok, http.MethodGet, path, nil)
	if r.Status != http.StatusOK {
		t.Fatalf("GET %s: %s", path, r)
	}
	var page eventsJSON
	if err := json.Unmarshal(r.Body, &page); err != nil {
		t.Fatalf("GET %s: %v: %s", path, err, r.Body)
	}
	return page
}

func TestAuditEventPerAction(t *testing.T) {
	for _, b := range []servertest.Backend{servertest.Bolt(), servertest.Redis()} {
		t.Run(b.Name(), func(t *testing.T) {
			logs := &syncBuffer{}
			clk := servertest.NewClock(time.Now().UTC().Truncate(time.Second))
			e := startEnv(t, servertest.Config{Clock: clk, Backend: b, Options: server.Options{
				Logger: slog.New(slog.NewJSONHandler(logs, nil)), MaxKeysPerTeam: 2,
			}})
			admin := e.AdminToken(t)

			k := e.CreateKeyWith(t, admin, "acme", "sync", permAccounting)
			// The request ID of each change's answer, to find in its event.
			var reqIDs []string // rotate, rename, revoke, delete
			r := e.API(t, admin, http.MethodPost, "/v1/teams/acme/keys/"+k.ClientID+"/rotate", `{"grace_period":"1h"}`)
			if r.Status != 200 {
				t.Fatalf("rotate: %s", r)
			}
			reqIDs = append(reqIDs, r.Header.Get("X-Request-Id"))
			patch := e.NewRequest(t, http.MethodPatch, "/v1/teams/acme/keys/"+k.ClientID, strings.NewReader(`{"name":"renamed"}`))
			patch.Header.Set("Content-Type", "application/merge-patch+json")
			patch.Header.Set("Authorization", "Bearer "+admin)
			patch.Header.Set("User-Agent", "audit-test/1 "+strings.Repeat("x", 300))
			if r = e.Do(t, patch); r.Status != 200 {
				t.Fatalf("rename: %s", r)
			}
			reqIDs = append(reqIDs, r.Header.Get("X-Request-Id"))
			// The key revokes one of its own tokens (it rotated: the secret
			// of the create is the previous one, still live for an hour).
			tok := e.Token(t, k.ClientID, k.ClientSecret, "").AccessToken
			rq := e.NewRequest(t, http.MethodPost, "/oauth/revoke", strings.NewReader(url.Values{"token": {tok}}.Encode()))
			rq.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			rq.Header.Set("Authorization", servertest.BasicAuth(k.ClientID, k.ClientSecret))
			if r = e.Do(t, rq); r.Status != 200 {
				t.Fatalf("revoke: %s", r)
			}
			reqIDs = append(reqIDs, r.Header.Get("X-Request-Id"))
			statusIndex := e.StoredKey(t, k.ClientID).StatusIndex
			if r = e.API(t, admin, http.MethodDelete, "/v1/teams/acme/keys/"+k.ClientID, nil); r.Status != 204 {
				t.Fatalf("delete: %s", r)
			}
			reqIDs = append(reqIDs, r.Header.Get("X-Request-Id"))

			// Refused changes leave no event: over the team limit, a
			// missing key, bad input.
			e.CreateKeyWith(t, admin, "acme", "one", permAccounting)
			e.CreateKeyWith(t, admin, "acme", "two", permAccounting)
			trail := getEvents(t, e.Env, admin, "/v1/teams/acme/events")
			for _, refused := range []struct {
				method, path, body string
				status             int
			}{
				{http.MethodPost, "/v1/teams/acme/keys", `{"name":"three","permissions":["accounting_api"]}`, http.StatusConflict},
				{http.MethodDelete, "/v1/teams/acme/keys/" + k.ClientID, "", http.StatusNotFound},
				{http.MethodPost, "/v1/teams/acme/keys/" + k.ClientID + "/rotate", "", http.StatusNotFound},
				{http.MethodPost, "/v1/teams/acme/keys", `{"name":"x","permissions":["payroll"]}`, http.StatusBadRequest},
			} {
				var body any
				if refused.body != "" {
					body = refused.body
				}
				if r := e.API(t, admin, refused.method, refused.path, body); r.Status != refused.status {
					t.Fatalf("%s %s: %s, want %d", refused.method, refused.path, r, refused.status)
				}
			}
			if again := getEvents(t, e.Env, admin, "/v1/teams/acme/events"); len(again.Events) != len(trail.Events) {
				t.Fatalf("refused changes added events: %d before, %d after", len(trail.Events), len(again.Events))
			}

			got := trail.Events
			wantActions := []string{"key.created", "key.created", "key.deleted", "token.revoked", "key.updated", "key.rotated", "key.created"}
			var actions []string
			for _, ev := range got {
				actions = append(actions, ev.Action)
			}
			if !slices.Equal(actions, wantActions) {
				t.Fatalf("acme's trail: %v, want %v", actions, wantActions)
			}
			for i, ev := range got {
				wantActor, wantType := e.AdminID, "admin_key"
				if ev.Action == "token.revoked" {
					wantActor, wantType = k.ClientID, "team_key"
				}
				if ev.Actor.ID != wantActor || ev.Actor.Type != wantType || ev.TeamID != "acme" || ev.Outcome != "success" ||
					ev.SourceAddress != "127.0.0.1" || ev.Count != 1 || len(ev.ID) != 26 || ev.Time.IsZero() {
					t.Errorf("event %d (%s): %+v", i, ev.Action, ev)
				}
				if i > 0 && cursorOf(t, ev) >= cursorOf(t, got[i-1]) {
					t.Errorf("cursor %s after %s: not newest first", ev.Cursor, got[i-1].Cursor)
				}
			}
			for _, ev := range got[2:] {
				if ev.ClientID != k.ClientID {
					t.Errorf("%s names key %s, want %s", ev.Action, ev.ClientID, k.ClientID)
				}
			}
			// Newest first: delete, revoke, rename, rotate; then the create.
			for i, want := range []string{reqIDs[3], reqIDs[2], reqIDs[1], reqIDs[0]} {
				if ev := got[2+i]; want == "" || ev.RequestID != want {
					t.Errorf("%s has request ID %q, its answer said %q", ev.Action, ev.RequestID, want)
				}
			}
			if created := got[6]; len(created.RequestID) != 26 {
				t.Errorf("key.created has request ID %q", created.RequestID)
			}
			if del := got[2]; del.StatusIndex != statusIndex || statusIndex == 0 {
				t.Errorf("key.deleted names status index %d, the key had %d", del.StatusIndex, statusIndex)
			}
			if upd := got[4]; !slices.Equal(upd.Fields, []string{"name"}) || !strings.HasPrefix(upd.UserAgent, "audit-test/1 ") || len(upd.UserAgent) != 200 {
				t.Errorf("key.updated: fields %v, user agent of %d bytes %.20q", upd.Fields, len(upd.UserAgent), upd.UserAgent)
			}
			if rot := got[5]; !slices.Equal(rot.Fields, []string{"secret", "previous_secret"}) {
				t.Errorf("key.rotated fields %v", rot.Fields)
			}

			// One audit log line per event, marked audit=true.
			var lines int
			for _, line := range strings.Split(logs.String(), "\n") {
				if strings.Contains(line, `"audit":true`) && strings.Contains(line, `"team_id":"acme"`) {
					lines++
				}
			}
			if lines != len(got) {
				t.Errorf("%d audit log lines for acme, want %d:\n%s", lines, len(got), logs.String())
			}

			// The operator-wide stream holds the same events once the
			// audit round ran (on Redis it lags until then).
			e.AuditTick(t)
			all := getEvents(t, e.Env, admin, "/v1/events?team_id=acme")
			var ids, wantIDs []string
			for _, ev := range all.Events {
				ids = append(ids, ev.ID)
			}
			for _, ev := range got {
				wantIDs = append(wantIDs, ev.ID)
			}
			if !slices.Equal(ids, wantIDs) {
				t.Fatalf("operator view of acme: %v, want %v", ids, wantIDs)
			}
		})
	}
}

// Refused management calls: one stored event per source address and client
// ID per minute, with the count, as an anonymous caller or as the key whose
// token was refused.
func TestAuditAuthFailuresFolded(t *testing.T) {
	clk := servertest.NewClock(time.Now().UTC().Truncate(time.Second))
	logs := &syncBuffer{}
	e := startEnv(t, servertest.Config{Clock: clk, Options: server.Options{Logger: slog.New(slog.NewJSONHandler(logs, nil))}})
	admin := e.AdminToken(t)
	// A team manager's token on an operator route: a genuine management
	// token refused for its scope (an ordinary team key's token is not a
	// management token at all: 401 like garbage).
	team := e.CreateManager(t, admin, "acme", "k")
	teamTok := e.Token(t, team.ClientID, team.ClientSecret, "").AccessToken
	for range 5 {
		if r := e.API(t, "garbage", http.MethodGet, "/v1/teams", nil); r.Status != 401 {
			t.Fatalf("bad token: %s", r)
		}
	}
	for range 3 {
		if r := e.API(t, teamTok, http.MethodGet, "/v1/teams", nil); r.Status != 403 {
			t.Fatalf("team token: %s", r)
		}
	}
	// Within the minute, nothing is stored yet.
	e.AuditTick(t)
	if page := getEvents(t, e.Env, admin, "/v1/events?action=management.auth_failed"); len(page.Events) != 0 {
		t.Fatalf("refused calls stored before their minute was over: %+v", page.Events)
	}
	clk.Advance(time.Minute)
	e.AuditTick(t)
	// A refusal of the next minute starts a fold of its own.
	if r := e.API(t, "", http.MethodGet, "/v1/teams", nil); r.Status != 401 {
		t.Fatalf("no token: %s", r)
	}
	page := getEvents(t, e.Env, admin, "/v1/events?action=management.auth_failed")
	if len(page.Events) != 2 {
		t.Fatalf("%d stored refusals, want 2 (one per source and client ID whose minute is over): %+v", len(page.Events), page.Events)
	}
	byActor := map[string]eventJSON{}
	for _, ev := range page.Events {
		byActor[ev.Actor.Type] = ev
	}
	if ev := byActor["anonymous"]; ev.Count != 5 || ev.Reason != "invalid_token" || ev.Outcome != "denied" || ev.SourceAddress != "127.0.0.1" || ev.TeamID != "" {
		t.Errorf("anonymous refusals: %+v", ev)
	}
	if ev := byActor["team_key"]; ev.Count != 3 || ev.Actor.ID != team.ClientID || ev.Reason != "insufficient_scope" {
		t.Errorf("team key refusals: %+v", ev)
	}
	if n := strings.Count(logs.String(), `"action":"management.auth_failed"`); n != 2 {
		t.Errorf("%d refusal log lines, want 2 (one per stored event)", n)
	}
	// The call of the new minute is stored at shutdown.
	e.Server.Close()
	if n := strings.Count(logs.String(), `"action":"management.auth_failed"`); n != 3 {
		t.Errorf("after Close: %d refusal log lines, want 3", n)
	}
}

func TestAuditEventPagesAndBadQueries(t *testing.T) {
	e := newTestEnv(t, server.Options{MaxKeysPerTeam: 20})
	admin := e.AdminToken(t)
	var want []string
	for i := range 7 {
		k := e.CreateKeyWith(t, admin, "acme", fmt.Sprintf("k%d", i), permAccounting)
		want = append([]string{k.ClientID}, want...)
	}
	var got []string
	path := "/v1/teams/acme/events?limit=3"
	for pages := 0; ; pages++ {
		if pages > 5 {
			t.Fatal("pages never end")
		}
		page := getEvents(t, e.Env, admin, path)
		if len(page.Events) > 3 {
			t.Fatalf("page of %d events with limit 3", len(page.Events))
		}
		for _, ev := range page.Events {
			got = append(got, ev.ClientID)
		}
		if page.Next == nil {
			break
		}
		path = "/v1/teams/acme/events?limit=3&after=" + *page.Next
	}
	if !slices.Equal(got, want) {
		t.Fatalf("paged events name %v, want %v", got, want)
	}
	newest := getEvents(t, e.Env, admin, "/v1/teams/acme/events?limit=1").Events[0].Cursor
	k := e.CreateKeyWith(t, admin, "acme", "late", permAccounting)
	if page := getEvents(t, e.Env, admin, "/v1/teams/acme/events?newer_than="+newest); len(page.Events) != 1 || page.Events[0].ClientID != k.ClientID {
		t.Fatalf("newer than %s: %+v", newest, page.Events)
	}

	e.FlushLastUsed(t)
	before := e.Snapshot(t)
	for _, bad := range []struct{ path, detail string }{
		{"/v1/teams/acme/events?limit=0", "limit"},
		{"/v1/teams/acme/events?limit=1001", "limit"},
		{"/v1/teams/acme/events?action=key.made", "not an audit action"},
		{"/v1/teams/acme/events?since=yesterday", "RFC 3339"},
		{"/v1/teams/acme/events?since=2026-02-01T00:00:00Z&until=2026-01-01T00:00:00Z", "before until"},
		{"/v1/teams/acme/events?after=-1", "cursor"},
		{"/v1/teams/acme/events?team_id=acme", "the team is in the path"},
		{"/v1/teams/acme/events?limit=1&limit=2", "once"},
		{"/v1/teams/-bad/events", "not valid"},
		{"/v1/events?team_id=-bad", "not valid"},
		{"/v1/events?page=2", "unknown query parameter"},
	} {
		r := e.API(t, admin, http.MethodGet, bad.path, nil)
		if r.Status != http.StatusBadRequest || r.Header.Get("Content-Type") != "application/problem+json" || !strings.Contains(string(r.Body), bad.detail) {
			t.Errorf("GET %s: %s, want 400 problem+json saying %q", bad.path, r, bad.detail)
		}
	}
	if r := e.API(t, "", http.MethodGet, "/v1/teams/acme/events", nil); r.Status != http.StatusUnauthorized {
		t.Errorf("events without a token: %s", r)
	}
	e.AssertUnchanged(t, before)
}

// Events older than audit_retention are pruned by the audit rounds, on the
// server's clock; newer ones stay, in the team's trail and the stream.
func TestAuditRetention(t *testing.T) {
	for _, b := range []servertest.Backend{servertest.Bolt(), servertest.Redis()} {
		t.Run(b.Name(), func(t *testing.T) {
			clk := servertest.NewClock(time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC))
			e := startEnv(t, servertest.Config{Clock: clk, Backend: b, Options: server.Options{AuditRetention: 48 * time.Hour}})
			old := e.CreateKey(t, "acme", "old", permAccounting)
			clk.Advance(24 * time.Hour)
			kept := e.CreateKey(t, "acme", "kept", permAccounting)
			admin := e.AdminToken(t)
			e.AuditTick(t)
			if n := len(getEvents(t, e.Env, admin, "/v1/events?team_id=acme").Events); n != 2 {
				t.Fatalf("%d events before the retention passed, want 2", n)
			}
			clk.Advance(24*time.Hour + time.Minute) // old's event is 48h01m old
			e.AuditTick(t)
			admin = e.AdminToken(t)
			for _, p := range []string{"/v1/teams/acme/events", "/v1/events?team_id=acme"} {
				evs := getEvents(t, e.Env, admin, p).Events
				if len(evs) != 1 || evs[0].ClientID != kept.ClientID {
					t.Fatalf("GET %s after the retention of %s's event: %+v, want only %s's", p, old.ClientID, evs, kept.ClientID)
				}
			}
		})
	}
}

// Behind a trusted proxy, events name the client's address from
// X-Forwarded-For and the proxy's request ID; a caller that is not a
// trusted proxy can set neither.
func TestAuditSourceBehindProxy(t *testing.T) {
	for _, tc := range []struct {
		name       string
		proxies    []netip.Prefix
		wantSource string
		adopted    bool
	}{
		{"trusted proxy", []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}, "203.0.113.7", true},
		{"no trusted proxy", nil, "127.0.0.1", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newTestEnv(t, server.Options{TrustedProxies: tc.proxies})
			admin := e.AdminToken(t)
			req := e.NewRequest(t, http.MethodPost, "/v1/teams/acme/keys", strings.NewReader(`{"name":"k","permissions":["accounting_api"]}`))
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Authorization", "Bearer "+admin)
			req.Header.Set("X-Forwarded-For", "203.0.113.7")
			req.Header.Set("X-Request-Id", "proxy-req-42")
			if r := e.Do(t, req); r.Status != http.StatusCreated {
				t.Fatalf("create: %s", r)
			}
			evs := getEvents(t, e.Env, admin, "/v1/teams/acme/events").Events
			if len(evs) != 1 {
				t.Fatalf("events: %+v", evs)
			}
			if ev := evs[0]; ev.SourceAddress != tc.wantSource || (ev.RequestID == "proxy-req-42") != tc.adopted {
				t.Errorf("event source %q, request ID %q; want source %s, proxy's ID adopted: %v", ev.SourceAddress, ev.RequestID, tc.wantSource, tc.adopted)
			}
		})
	}
}
