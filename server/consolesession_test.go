package server_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/server"
	"github.com/keygate/keygate/server/servertest"
	"github.com/keygate/keygate/store"
	"github.com/keygate/keygate/verify"
)

// sessT0 is the stopped clock of the console-session tests.
var sessT0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

type sessEnv struct {
	*testEnv
	tok string // a full admin's token
}

// newSessEnv starts keygate on the in-memory store on a stopped clock.
func newSessEnv(t *testing.T, opts server.Options) sessEnv {
	t.Helper()
	// The embedded store (bolt), keygate's default; every backend passes
	// store.Sessions' contract in store/storetest.
	e := startEnv(t, servertest.Config{Options: opts, Clock: servertest.NewClock(sessT0)})
	return sessEnv{e, e.AdminToken(t)}
}

type mintedJSON struct {
	ID        string    `json:"id"`
	URL       string    `json:"url"`
	ExpiresAt time.Time `json:"expires_at"`
}

// mint creates a console session of team for user, or fails the test; it
// returns the answer and the link's code.
func (e sessEnv) mint(t *testing.T, team, user, ttl string) (mintedJSON, string) {
	t.Helper()
	r := e.API(t, e.tok, http.MethodPost, "/v1/teams/"+team+"/console-sessions", map[string]string{"user": user, "ttl": ttl})
	if r.Status != http.StatusCreated {
		t.Fatalf("mint: %s", r)
	}
	var fields map[string]any
	if err := json.Unmarshal(r.Body, &fields); err != nil {
		t.Fatal(err)
	}
	if got := keysOf(fields); !slices.Equal(got, []string{"expires_at", "id", "url"}) {
		t.Errorf("mint answer members %v, want expires_at, id, url", got)
	}
	var m mintedJSON
	if err := json.Unmarshal(r.Body, &m); err != nil {
		t.Fatal(err)
	}
	prefix := e.URL + "/console/#session="
	code, ok := strings.CutPrefix(m.URL, prefix)
	if !ok {
		t.Fatalf("url %q does not start with %q", m.URL, prefix)
	}
	// 256 bits, base64url: 43 characters, only in the fragment.
	if len(code) != 43 || strings.ContainsAny(code, "+/=?&#") {
		t.Errorf("code %q is not 43 characters of base64url", code)
	}
	return m, code
}

func (e sessEnv) redeem(t *testing.T, body any) response {
	t.Helper()
	req := e.NewRequest(t, http.MethodPost, "/console/session", strings.NewReader(jsonString(t, body)))
	req.Header.Set("Content-Type", "application/json")
	return e.Do(t, req)
}

func jsonString(t *testing.T, v any) string {
	t.Helper()
	if s, ok := v.(string); ok {
		return s
	}
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// snapshot is the store's snapshot plus every session of teams (live at
// the clock's time), so a session made or ended shows.
func (e sessEnv) snapshot(t *testing.T, teams ...string) string {
	t.Helper()
	ss, _ := store.Feature[store.Sessions](e.Store)
	var b strings.Builder
	b.WriteString(e.Snapshot(t))
	for _, team := range append([]string{"acme", "globex"}, teams...) {
		list, err := ss.ListSessions(context.Background(), team, e.Clock.Now())
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&b, "sessions of %s: %+v\n", team, list)
	}
	return b.String()
}

func (e sessEnv) assertUnchanged(t *testing.T, what, before string) {
	t.Helper()
	if after := e.snapshot(t); after != before {
		t.Errorf("%s changed the store:\nbefore:\n%s\nafter:\n%s", what, before, after)
	}
}

// teamEvents are the team's stored events of action, newest first.
func (e sessEnv) teamEvents(t *testing.T, team string, action store.AuditAction) []store.AuditEvent {
	t.Helper()
	page, err := e.Store.AuditEvents(context.Background(), team, store.AuditQuery{Actions: []store.AuditAction{action}})
	if err != nil {
		t.Fatal(err)
	}
	return page.Events
}

// A full admin mints a session of a team that has no key yet (a platform
// may hand a team the console before its first key); the link's code is
// redeemed once for a team-bound management token naming the user, and
// every step is on the team's trail with the minting key and the user.
func TestConsoleSessionMintAndRedeem(t *testing.T) {
	e := newSessEnv(t, server.Options{})
	m, code := e.mint(t, "acme", "  alice@example.com ", "15m")
	if !strings.HasPrefix(m.ID, "ses_") || len(m.ID) != 26 {
		t.Errorf("id %q", m.ID)
	}
	if !m.ExpiresAt.Equal(sessT0.Add(15 * time.Minute)) {
		t.Errorf("expires_at %s, want t0+15m", m.ExpiresAt)
	}
	ss, _ := store.Feature[store.Sessions](e.Store)
	sess, err := ss.GetSession(context.Background(), m.ID)
	if err != nil {
		t.Fatal(err)
	}
	want := store.ManagementSession{ID: m.ID, TeamID: "acme", User: "alice@example.com", Kind: store.SessionConsole,
		MintedBy: e.AdminID, CreatedAt: sessT0, ExpiresAt: sessT0.Add(15 * time.Minute)}
	sess.CreatedAt, sess.ExpiresAt = sess.CreatedAt.UTC(), sess.ExpiresAt.UTC()
	if sess != want {
		t.Errorf("stored session %+v, want %+v", sess, want)
	}
	created := e.teamEvents(t, "acme", store.AuditConsoleSessionCreated)
	if len(created) != 1 || created[0].Actor.ID != e.AdminID || created[0].Actor.OnBehalfOf != "alice@example.com" ||
		!slices.Equal(created[0].Fields, []string{m.ID}) {
		t.Errorf("created events %+v", created)
	}

	e.Clock.Advance(30 * time.Second)
	r := e.redeem(t, map[string]string{"code": code})
	if r.Status != http.StatusOK {
		t.Fatalf("redeem: %s", r)
	}
	if cc := r.Header.Get("Cache-Control"); cc != "no-store" {
		t.Errorf("Cache-Control %q, want no-store", cc)
	}
	var fields map[string]any
	if err := json.Unmarshal(r.Body, &fields); err != nil {
		t.Fatal(err)
	}
	if got := keysOf(fields); !slices.Equal(got, []string{"access_token", "expires_in", "team_id", "token_type", "user"}) {
		t.Errorf("redeem members %v", got)
	}
	var tr struct {
		AccessToken string `json:"access_token"`
		TokenType   string `json:"token_type"`
		ExpiresIn   int    `json:"expires_in"`
		TeamID      string `json:"team_id"`
		User        string `json:"user"`
	}
	if err := json.Unmarshal(r.Body, &tr); err != nil {
		t.Fatal(err)
	}
	if tr.TokenType != "Bearer" || tr.ExpiresIn != 15*60-30 || tr.TeamID != "acme" || tr.User != "alice@example.com" {
		t.Errorf("redeem answer %+v", tr)
	}
	// The token is for the management API alone (aud issuer/v1), names
	// the session and the user, and ends with the session.
	v, err := verify.New(context.Background(), verify.Options{Issuer: e.URL, Audience: e.URL + "/v1", Now: e.Clock.Now, HTTPClient: e.Client})
	if err != nil {
		t.Fatal(err)
	}
	claims, err := v.Verify(context.Background(), tr.AccessToken)
	if err != nil {
		t.Fatalf("session token: %v", err)
	}
	if claims.SessionID != m.ID || claims.Actor != "alice@example.com" || claims.TeamID != "acme" || claims.ClientID != e.AdminID ||
		!claims.HasScope("keys:manage") || !claims.ExpiresAt.Equal(m.ExpiresAt) {
		t.Errorf("claims %+v", claims)
	}
	redeemed := e.teamEvents(t, "acme", store.AuditConsoleSessionRedeemed)
	if len(redeemed) != 1 || redeemed[0].Actor.ID != e.AdminID || redeemed[0].Actor.OnBehalfOf != "alice@example.com" ||
		!slices.Equal(redeemed[0].Fields, []string{m.ID}) {
		t.Errorf("redeemed events %+v", redeemed)
	}

	// Once only: the second redemption is the one clear refusal, and
	// changes nothing.
	before := e.snapshot(t)
	r = e.redeem(t, map[string]string{"code": code})
	checkProblemDetail(t, r, http.StatusBadRequest, "already used or has expired")
	if p := checkProblem(t, r, http.StatusBadRequest); p.Type != "urn:keygate:problem:invalid-request" {
		t.Errorf("type %q", p.Type)
	}
	e.assertUnchanged(t, "a second redemption", before)
}

// A code is redeemable for 60 s on keygate's clock; after that it is the
// same refusal as an unknown one, and the session gives no token.
func TestConsoleSessionCodeExpires(t *testing.T) {
	e := newSessEnv(t, server.Options{})
	_, late := e.mint(t, "acme", "alice@example.com", "1h")
	_, onTime := e.mint(t, "acme", "bob@example.com", "1h")
	e.Clock.Advance(59 * time.Second)
	if r := e.redeem(t, map[string]string{"code": onTime}); r.Status != http.StatusOK {
		t.Fatalf("redeem at 59 s: %s", r)
	}
	e.Clock.Advance(2 * time.Second)
	before := e.snapshot(t)
	r := e.redeem(t, map[string]string{"code": late})
	checkProblemDetail(t, r, http.StatusBadRequest, "this console link was already used or has expired; ask for a new link")
	e.assertUnchanged(t, "an expired code", before)
	if n := len(e.teamEvents(t, "acme", store.AuditConsoleSessionRedeemed)); n != 1 {
		t.Errorf("%d redeemed events, want 1", n)
	}
}

// Ending a session stops its unredeemed code; a session of another team
// is not found (and not ended), with a detail that does not depend on it.
func TestConsoleSessionEnd(t *testing.T) {
	e := newSessEnv(t, server.Options{})
	m, code := e.mint(t, "acme", "alice@example.com", "15m")
	other, _ := e.mint(t, "globex", "gina@example.com", "15m")

	before := e.snapshot(t)
	for _, path := range []string{
		"/v1/teams/globex/console-sessions/" + m.ID, // acme's session on globex's path
		"/v1/teams/nobody/console-sessions/" + m.ID, // a team without anything
		"/v1/teams/acme/console-sessions/ses_AAAAAAAAAAAAAAAAAAAAAA",
		"/v1/teams/acme/console-sessions/not-a-session-id",
	} {
		r := e.API(t, e.tok, http.MethodDelete, path, nil)
		p := checkProblem(t, r, http.StatusNotFound)
		if p.Type != "urn:keygate:problem:not-found" || !strings.Contains(p.Detail, "has no such console session") {
			t.Errorf("DELETE %s: %+v", path, p)
		}
		e.assertUnchanged(t, "DELETE "+path, before)
	}

	if r := e.API(t, e.tok, http.MethodDelete, "/v1/teams/acme/console-sessions/"+m.ID, nil); r.Status != http.StatusNoContent {
		t.Fatalf("end: %s", r)
	}
	ended := e.teamEvents(t, "acme", store.AuditConsoleSessionEnded)
	if len(ended) != 1 || ended[0].Actor.ID != e.AdminID || !slices.Equal(ended[0].Fields, []string{m.ID}) {
		t.Errorf("ended events %+v", ended)
	}
	before = e.snapshot(t)
	r := e.redeem(t, map[string]string{"code": code})
	checkProblemDetail(t, r, http.StatusBadRequest, "already used or has expired")
	e.assertUnchanged(t, "redeeming the code of an ended session", before)
	r = e.API(t, e.tok, http.MethodDelete, "/v1/teams/acme/console-sessions/"+m.ID, nil)
	checkProblemDetail(t, r, http.StatusNotFound, "has no such console session")
	e.assertUnchanged(t, "ending it twice", before)

	// globex's session is untouched.
	ss, _ := store.Feature[store.Sessions](e.Store)
	if _, err := ss.GetSession(context.Background(), other.ID); err != nil {
		t.Errorf("globex's session: %v", err)
	}
}

// GET lists the team's live sessions and never a code.
func TestConsoleSessionList(t *testing.T) {
	e := newSessEnv(t, server.Options{})
	short, _ := e.mint(t, "acme", "alice@example.com", "1m")
	e.Clock.Advance(time.Second) // oldest first: distinct creation times
	long, _ := e.mint(t, "acme", "bob@example.com", "1h")
	e.mint(t, "globex", "gina@example.com", "1h")

	list := func() (ids []string, raw string) {
		r := e.API(t, e.tok, http.MethodGet, "/v1/teams/acme/console-sessions", nil)
		if r.Status != http.StatusOK || r.Header.Get("Cache-Control") != "no-store" {
			t.Fatalf("list: %s (Cache-Control %q)", r, r.Header.Get("Cache-Control"))
		}
		var l struct {
			Sessions []map[string]any `json:"sessions"`
		}
		if err := json.Unmarshal(r.Body, &l); err != nil {
			t.Fatal(err)
		}
		for _, s := range l.Sessions {
			if got := keysOf(s); !slices.Equal(got, []string{"created_at", "expires_at", "id", "kind", "minted_by", "team_id", "user"}) {
				t.Errorf("session members %v", got)
			}
			ids = append(ids, s["id"].(string))
		}
		return ids, string(r.Body)
	}
	ids, raw := list()
	if !slices.Equal(ids, []string{short.ID, long.ID}) {
		t.Errorf("sessions %v, want %s, %s", ids, short.ID, long.ID)
	}
	if strings.Contains(raw, "code") || !strings.Contains(raw, `"user":"bob@example.com"`) || !strings.Contains(raw, `"kind":"console"`) {
		t.Errorf("list body %s", raw)
	}
	e.Clock.Advance(2 * time.Minute)
	if ids, _ := list(); !slices.Equal(ids, []string{long.ID}) {
		t.Errorf("after 2m: %v, want only %s", ids, long.ID)
	}
	r := e.API(t, e.tok, http.MethodGet, "/v1/teams/nobody/console-sessions", nil)
	if r.Status != http.StatusOK || strings.TrimSpace(string(r.Body)) != `{"sessions":[]}` {
		t.Errorf("a team without sessions: %s", r)
	}
}

// Every malformed mint request is refused with what to fix, and mints
// nothing.
func TestConsoleSessionMintRefusals(t *testing.T) {
	e := newSessEnv(t, server.Options{})
	path := "/v1/teams/acme/console-sessions"
	cases := []struct {
		name, path, contentType, body string
		status                        int
		detail                        string
	}{
		{"no user", path, "", `{"ttl":"15m"}`, 400, `"user" must not be empty`},
		{"blank user", path, "", `{"user":"   ","ttl":"15m"}`, 400, `"user" must not be empty: name the person`},
		{"long user", path, "", `{"user":"` + strings.Repeat("a", 65) + `","ttl":"15m"}`, 400, `"user" is 65 characters long; use at most 64`},
		{"control in user", path, "", `{"user":"al\u0007ice","ttl":"15m"}`, 400, `"user" must not contain control`},
		{"newline in user", path, "", `{"user":"alice\nBob","ttl":"15m"}`, 400, `"user" must not contain control`},
		{"no ttl", path, "", `{"user":"alice@example.com"}`, 400, `"ttl" is required`},
		{"ttl 59s", path, "", `{"user":"a","ttl":"59s"}`, 400, `ttl "59s" is out of range; ttl must be a duration from 1m to 1h`},
		{"ttl 61m", path, "", `{"user":"a","ttl":"61m"}`, 400, `ttl "61m" is out of range`},
		{"ttl 1d", path, "", `{"user":"a","ttl":"1d"}`, 400, `ttl "1d" is out of range`},
		{"ttl negative", path, "", `{"user":"a","ttl":"-15m"}`, 400, `ttl "-15m" is out of range`},
		{"ttl garbage", path, "", `{"user":"a","ttl":"soon"}`, 400, `ttl "soon" is not a duration`},
		{"ttl number", path, "", `{"user":"a","ttl":900}`, 400, "not the expected JSON object"},
		{"unknown field", path, "", `{"user":"a","ttl":"15m","team":"globex"}`, 400, `unknown field "team"; allowed fields are`},
		{"duplicate member", path, "", `{"user":"a","ttl":"15m","user":"b"}`, 400, `member "user" appears twice`},
		{"case-folded member", path, "", `{"User":"a","ttl":"15m"}`, 400, `unknown field "User"`},
		{"two objects", path, "", `{"user":"a","ttl":"15m"}{}`, 400, "not the expected JSON object"},
		{"not JSON", path, "", `user=a&ttl=15m`, 400, "not the expected JSON object"},
		{"form content type", path, "application/x-www-form-urlencoded", `{"user":"a","ttl":"15m"}`, 415, "Content-Type: application/json"},
		{"bad team", "/v1/teams/-acme/console-sessions", "", `{"user":"a","ttl":"15m"}`, 400, `team id "-acme" is not valid`},
		{"too large", path, "", `{"user":"` + strings.Repeat("a", 70<<10) + `","ttl":"15m"}`, 413, "over 64 KiB"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := e.snapshot(t)
			req := e.NewRequest(t, http.MethodPost, tc.path, strings.NewReader(tc.body))
			req.Header.Set("Content-Type", cmpOr(tc.contentType, "application/json"))
			req.Header.Set("Authorization", "Bearer "+e.tok)
			checkProblemDetail(t, e.Do(t, req), tc.status, tc.detail)
			e.assertUnchanged(t, tc.name, before)
		})
	}
	// Without a token: the management API's 401, nothing minted.
	before := e.snapshot(t)
	r := e.API(t, "", http.MethodPost, path, map[string]string{"user": "a", "ttl": "15m"})
	checkProblemDetail(t, r, http.StatusUnauthorized, "send an admin access token")
	if n := len(e.teamEvents(t, "acme", store.AuditConsoleSessionCreated)); n != 0 {
		t.Errorf("%d created events", n)
	}
	_ = before
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// Every redemption that gives no token is the same 400 (or the body's own
// 400/415), changes nothing, and counts as a failed guess: past the
// throttle's burst even a good code is refused with 429 before it is
// looked at, and stays redeemable.
func TestConsoleSessionRedeemRefusals(t *testing.T) {
	e := newSessEnv(t, server.Options{AuthFailureBurst: 3, AuthFailureRate: 1, AuthFailureSourceBurst: 100})
	_, code := e.mint(t, "acme", "alice@example.com", "15m")
	before := e.snapshot(t)
	// A body that is not {"code": "…"} is refused before any code is
	// looked at (and is no guess).
	for _, tc := range []struct{ name, body, detail string }{
		{"unknown field", `{"code":"x","team":"acme"}`, `unknown field "team"`},
		{"not an object", `"x"`, "must be a JSON object"},
		{"duplicate", `{"code":"x","code":"y"}`, "appears twice"},
		{"case-folded", `{"Code":"x"}`, `unknown field "Code"`},
	} {
		checkProblemDetail(t, e.redeem(t, tc.body), http.StatusBadRequest, tc.detail)
		e.assertUnchanged(t, tc.name, before)
	}
	req := e.NewRequest(t, http.MethodPost, "/console/session", strings.NewReader(`{"code":"`+code+`"}`))
	req.Header.Set("Content-Type", "text/plain")
	checkProblemDetail(t, e.Do(t, req), http.StatusUnsupportedMediaType, "Content-Type: application/json")
	e.assertUnchanged(t, "a text/plain body", before)

	for i, tc := range []struct{ name, body string }{
		{"unknown code", `{"code":"` + strings.Repeat("A", 43) + `"}`},
		{"empty code", `{"code":""}`},
		{"long code", `{"code":"` + strings.Repeat("A", 300) + `"}`},
	} {
		r := e.redeem(t, tc.body)
		checkProblemDetail(t, r, http.StatusBadRequest, "this console link was already used or has expired; ask for a new link")
		if i < 2 {
			e.assertUnchanged(t, tc.name, before)
		}
	}
	// The third failure empties the pair's bucket: the throttle's one
	// event of the episode.
	if ev := e.teamEvents(t, "", store.AuditAuthThrottled); len(ev) != 1 || ev[0].Reason != "client" {
		t.Fatalf("throttle events %+v", ev)
	}
	before = e.snapshot(t)
	r := e.redeem(t, map[string]string{"code": code})
	p := checkProblem(t, r, http.StatusTooManyRequests)
	if p.Type != "urn:keygate:problem:rate-limited" || r.Header.Get("Retry-After") == "" {
		t.Errorf("throttled: %+v, Retry-After %q", p, r.Header.Get("Retry-After"))
	}
	e.assertUnchanged(t, "a throttled redemption", before)
	// The good code was never looked at: it works once the pair may try
	// again (the bucket refills on keygate's clock).
	e.Clock.Advance(5 * time.Second)
	if r := e.redeem(t, map[string]string{"code": code}); r.Status != http.StatusOK {
		t.Errorf("after the throttle: %s", r)
	}
}

// Of concurrent redemptions of one code exactly one gets a token; the
// others get the one refusal.
func TestConsoleSessionRedeemRace(t *testing.T) {
	e := newSessEnv(t, server.Options{AuthFailureBurst: -1})
	_, code := e.mint(t, "acme", "alice@example.com", "15m")
	const n = 8
	statuses := make(chan int, n)
	start := make(chan struct{})
	for range n {
		go func() {
			<-start
			req := e.NewRequest(t, http.MethodPost, "/console/session", strings.NewReader(`{"code":"`+code+`"}`))
			req.Header.Set("Content-Type", "application/json")
			resp, err := e.Client.Do(req)
			if err != nil {
				statuses <- 0
				return
			}
			resp.Body.Close()
			statuses <- resp.StatusCode
		}()
	}
	close(start)
	count := map[int]int{}
	for range n {
		count[<-statuses]++
	}
	if count[http.StatusOK] != 1 || count[http.StatusBadRequest] != n-1 {
		t.Errorf("statuses %v, want one 200 and %d 400", count, n-1)
	}
	if got := len(e.teamEvents(t, "acme", store.AuditConsoleSessionRedeemed)); got != 1 {
		t.Errorf("%d redeemed events, want 1", got)
	}
}

// What a console session's user does is on the team's trail as done by the
// minting admin key on behalf of the user, via the console session.
func TestConsoleSessionActsOnTheTrail(t *testing.T) {
	e := newSessEnv(t, server.Options{})
	_, code := e.mint(t, "acme", "alice@example.com", "15m")
	r := e.redeem(t, map[string]string{"code": code})
	if r.Status != http.StatusOK {
		t.Fatalf("redeem: %s", r)
	}
	var tok struct {
		AccessToken string `json:"access_token"`
	}
	if err := json.Unmarshal(r.Body, &tok); err != nil {
		t.Fatal(err)
	}
	if r := e.API(t, tok.AccessToken, http.MethodPost, "/v1/teams/acme/keys", map[string]any{"name": "From the console", "permissions": []string{"accounting_api"}}); r.Status != http.StatusCreated {
		t.Fatalf("create with the session's token: %s", r)
	}
	evs := e.teamEvents(t, "acme", store.AuditKeyCreated)
	if len(evs) != 1 {
		t.Fatalf("%d key.created events, want 1", len(evs))
	}
	want := store.AuditActor{Type: store.ActorAdminKey, ID: e.AdminID, OnBehalfOf: "alice@example.com", Via: "console_session"}
	if evs[0].Actor != want {
		t.Fatalf("actor %+v, want %+v", evs[0].Actor, want)
	}
}
