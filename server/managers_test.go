package server_test

// Team managers (issue 16): no escalation through a team, keys holding
// operator-only permissions hidden, a manager's own key readable and
// rotatable but its permissions fixed, the team limit, GET /v1/me and the
// live re-checks of every call.

import (
	"context"
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/server"
	"github.com/keygate/keygate/server/servertest"
	"github.com/keygate/keygate/store"
)

type managerFixture struct {
	e         *testEnv
	clk       *servertest.Clock
	admin     string
	mgr       servertest.Key // manager of acme
	mgrTok    string
	plain     servertest.Key // ordinary key of acme
	intro     servertest.Key // introspection key of acme (operator-only)
	otherMgr  servertest.Key // a second manager of acme
	mgrBearer string
}

func newManagerFixture(t *testing.T) *managerFixture {
	t.Helper()
	clk := servertest.NewClock(time.Now().UTC().Truncate(time.Second))
	e := startEnv(t, servertest.Config{Clock: clk, Backend: servertest.Memory()})
	f := &managerFixture{e: e, clk: clk, admin: e.AdminToken(t)}
	f.mgr = e.CreateManager(t, f.admin, "acme", "manager", permAccounting)
	f.mgrTok = e.Token(t, f.mgr.ClientID, f.mgr.ClientSecret, "").AccessToken
	f.plain = e.CreateKeyWith(t, f.admin, "acme", "plain", permVisualization)
	r := e.API(t, f.admin, http.MethodPost, "/v1/teams/acme/keys", map[string]any{
		"name": "introspector", "permissions": []string{"token_introspection"}, "grant_operator_permissions": true})
	if r.Status != http.StatusCreated {
		t.Fatalf("create introspection key: %s", r)
	}
	if err := json.Unmarshal(r.Body, &f.intro); err != nil {
		t.Fatal(err)
	}
	f.otherMgr = e.CreateManager(t, f.admin, "acme", "second manager")
	e.FlushLastUsed(t)
	return f
}

func (f *managerFixture) send(t *testing.T, tok, method, path, contentType, body string) response {
	t.Helper()
	var req *http.Request
	if body == "" {
		req = f.e.NewRequest(t, method, path, nil)
	} else {
		req = f.e.NewRequest(t, method, path, strings.NewReader(body))
		req.Header.Set("Content-Type", contentType)
	}
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	return f.e.Do(t, req)
}

// TestManagerCannotEscalate: every refusal with its exact problem and the
// store unchanged.
func TestManagerCannotEscalate(t *testing.T) {
	f := newManagerFixture(t)
	const js, patch = "application/json", "application/merge-patch+json"
	keyPath := func(k servertest.Key) string { return "/v1/teams/acme/keys/" + k.ClientID }
	cases := []struct {
		name, method, path, ctype, body string
		status                          int
		typ, detail                     string
	}{
		{"create with key_management", http.MethodPost, "/v1/teams/acme/keys", js, `{"name":"x","permissions":["key_management"]}`,
			403, "urn:keygate:problem:forbidden", `permission "key_management" is operator-only; a team manager cannot grant it`},
		{"create with token_exchange", http.MethodPost, "/v1/teams/acme/keys", js, `{"name":"x","permissions":["accounting_api","token_exchange"]}`,
			403, "urn:keygate:problem:forbidden", `permission "token_exchange" is operator-only`},
		{"create with the operator's consent flag", http.MethodPost, "/v1/teams/acme/keys", js, `{"name":"x","permissions":["accounting_api"],"grant_operator_permissions":true}`,
			403, "urn:keygate:problem:forbidden", "cannot grant operator-only permissions"},
		{"patch a key to key_management", http.MethodPatch, keyPath(f.plain), patch, `{"permissions":["key_management"]}`,
			403, "urn:keygate:problem:forbidden", `permission "key_management" is operator-only`},
		{"patch with the consent flag", http.MethodPatch, keyPath(f.plain), patch, `{"permissions":["token_introspection"],"grant_operator_permissions":true}`,
			403, "urn:keygate:problem:forbidden", "cannot grant operator-only permissions"},
		{"patch its own permissions", http.MethodPatch, keyPath(f.mgr), patch, `{"permissions":["key_management","accounting_api","visualization_sdk"]}`,
			403, "urn:keygate:problem:forbidden", "cannot change its own key's permissions"},
		{"patch its own permissions down", http.MethodPatch, keyPath(f.mgr), patch, `{"permissions":["accounting_api"]}`,
			403, "urn:keygate:problem:forbidden", "cannot change its own key's permissions"},
	}
	for _, hidden := range []servertest.Key{f.intro, f.otherMgr} {
		nf := "team acme has no key \"" + hidden.ClientID + "\""
		cases = append(cases,
			struct {
				name, method, path, ctype, body string
				status                          int
				typ, detail                     string
			}{"get " + hidden.Name, http.MethodGet, keyPath(hidden), "", "", 404, "urn:keygate:problem:not-found", nf},
			struct {
				name, method, path, ctype, body string
				status                          int
				typ, detail                     string
			}{"get by id " + hidden.Name, http.MethodGet, "/v1/keys/" + hidden.ClientID, "", "", 404, "urn:keygate:problem:not-found", nf},
			struct {
				name, method, path, ctype, body string
				status                          int
				typ, detail                     string
			}{"rename " + hidden.Name, http.MethodPatch, keyPath(hidden), patch, `{"name":"mine"}`, 404, "urn:keygate:problem:not-found", nf},
			struct {
				name, method, path, ctype, body string
				status                          int
				typ, detail                     string
			}{"delete " + hidden.Name, http.MethodDelete, keyPath(hidden), "", "", 404, "urn:keygate:problem:not-found", nf},
			struct {
				name, method, path, ctype, body string
				status                          int
				typ, detail                     string
			}{"rotate " + hidden.Name, http.MethodPost, keyPath(hidden) + "/rotate", "", "", 404, "urn:keygate:problem:not-found", nf},
		)
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before := f.e.Snapshot(t)
			r := f.send(t, f.mgrTok, c.method, c.path, c.ctype, c.body)
			p := checkProblem(t, r, c.status)
			if p.Type != c.typ || !strings.Contains(p.Detail, c.detail) {
				t.Errorf("%s %q, want %s with %q", p.Type, p.Detail, c.typ, c.detail)
			}
			f.e.AssertUnchanged(t, before)
		})
	}
}

// TestManagerSeesAndRotatesItself: lists hide operator-only keys but show
// the manager's own, which it may read, rename and rotate.
func TestManagerSeesAndRotatesItself(t *testing.T) {
	f := newManagerFixture(t)
	l := f.e.ListKeys(t, f.mgrTok, "acme")
	var ids []string
	for _, k := range l.Keys {
		ids = append(ids, k.ClientID)
	}
	slices.Sort(ids)
	want := []string{f.mgr.ClientID, f.plain.ClientID}
	slices.Sort(want)
	if !slices.Equal(ids, want) {
		t.Fatalf("manager's list %v, want %v (its own and the plain key)", ids, want)
	}
	if l := f.e.ListKeys(t, f.admin, "acme"); len(l.Keys) != 4 {
		t.Fatalf("operator's list has %d keys, want 4", len(l.Keys))
	}
	if r := f.e.API(t, f.mgrTok, http.MethodGet, "/v1/teams/acme/keys/"+f.mgr.ClientID, nil); r.Status != 200 {
		t.Fatalf("manager reads itself: %s", r)
	}
	if r := f.send(t, f.mgrTok, http.MethodPatch, "/v1/teams/acme/keys/"+f.mgr.ClientID, "application/merge-patch+json", `{"name":"renamed"}`); r.Status != 200 {
		t.Fatalf("manager renames itself: %s", r)
	}
	r := f.e.API(t, f.mgrTok, http.MethodPost, "/v1/teams/acme/keys/"+f.mgr.ClientID+"/rotate", nil)
	if r.Status != 200 || !strings.Contains(string(r.Body), "client_secret") {
		t.Fatalf("manager rotates itself: %s", r)
	}
	// Its permissions are unchanged by all this.
	if k := f.e.StoredKey(t, f.mgr.ClientID); !slices.Equal(k.Permissions, []string{"key_management", permAccounting}) {
		t.Fatalf("manager's permissions now %v", k.Permissions)
	}
	// The plain key: the full set of changes works.
	if r := f.send(t, f.mgrTok, http.MethodPatch, "/v1/teams/acme/keys/"+f.plain.ClientID, "application/merge-patch+json", `{"permissions":["accounting_api"]}`); r.Status != 200 {
		t.Fatalf("manager changes a plain key's permissions: %s", r)
	}
	if r := f.e.API(t, f.mgrTok, http.MethodDelete, "/v1/teams/acme/keys/"+f.plain.ClientID, nil); r.Status != 204 {
		t.Fatalf("manager deletes a plain key: %s", r)
	}
	// GET /v1/permissions: the offered ones only.
	r = f.e.API(t, f.mgrTok, http.MethodGet, "/v1/permissions", nil)
	var perms struct{ Permissions []struct{ ID string } }
	if err := json.Unmarshal(r.Body, &perms); err != nil || r.Status != 200 {
		t.Fatalf("permissions: %s", r)
	}
	for _, p := range perms.Permissions {
		if p.ID == "key_management" || p.ID == "token_exchange" || p.ID == "token_introspection" {
			t.Errorf("manager offered operator-only %s", p.ID)
		}
	}
}

// TestManagerKeyCountsTowardTeamLimit: the team's 5 include its manager
// keys (docs/authorization.md).
func TestManagerKeyCountsTowardTeamLimit(t *testing.T) {
	f := newManagerFixture(t) // acme: 2 managers, plain, introspector
	f.e.CreateKeyWith(t, f.mgrTok, "acme", "fifth", permVisualization)
	before := f.e.Snapshot(t)
	r := f.e.API(t, f.mgrTok, http.MethodPost, "/v1/teams/acme/keys", map[string]any{"name": "sixth", "permissions": []string{permVisualization}})
	p := checkProblem(t, r, http.StatusConflict)
	if p.Type != "urn:keygate:problem:team-limit" || !strings.Contains(p.Detail, "already has 5 API keys") {
		t.Fatalf("sixth key: %s", r)
	}
	f.e.AssertUnchanged(t, before)
	// An operator meets the same limit: the managers count.
	if r := f.e.API(t, f.admin, http.MethodPost, "/v1/teams/acme/keys", map[string]any{"name": "sixth", "permissions": []string{permVisualization}}); r.Status != http.StatusConflict {
		t.Fatalf("operator's sixth key: %s", r)
	}
}

// TestManagerLiveRechecks: a manager token stops working at once when its
// key loses key_management, is deleted or its secret is reported leaked;
// a session token when its session ends or names another team.
func TestManagerLiveRechecks(t *testing.T) {
	f := newManagerFixture(t)
	ok := func(tok string) {
		t.Helper()
		if r := f.e.API(t, tok, http.MethodGet, "/v1/teams/acme/keys", nil); r.Status != 200 {
			t.Fatalf("before: %s", r)
		}
	}
	refused := func(what, tok, detail string) {
		t.Helper()
		f.e.FlushLastUsed(t) // the tokens minted before
		before := f.e.Snapshot(t)
		r := f.e.API(t, tok, http.MethodGet, "/v1/teams/acme/keys", nil)
		p := checkProblem(t, r, http.StatusUnauthorized)
		if p.Type != "urn:keygate:problem:unauthorized" || !strings.Contains(p.Detail, detail) ||
			r.Header.Get("WWW-Authenticate") != `Bearer realm="keygate", error="invalid_token"` {
			t.Errorf("%s: %s (WWW-Authenticate %q), want 401 with %q", what, r, r.Header.Get("WWW-Authenticate"), detail)
		}
		f.e.AssertUnchanged(t, before)
	}

	// key_management taken away by an operator.
	ok(f.mgrTok)
	if r := f.send(t, f.admin, http.MethodPatch, "/v1/teams/acme/keys/"+f.mgr.ClientID, "application/merge-patch+json", `{"permissions":["accounting_api"]}`); r.Status != 200 {
		t.Fatalf("operator patch: %s", r)
	}
	refused("key_management removed", f.mgrTok, "revoked")

	// Deleted.
	m2 := f.e.CreateManager(t, f.admin, "beta", "m2")
	tok2 := f.e.Token(t, m2.ClientID, m2.ClientSecret, "").AccessToken
	if r := f.e.API(t, tok2, http.MethodGet, "/v1/teams/beta/keys", nil); r.Status != 200 {
		t.Fatalf("before: %s", r)
	}
	if r := f.e.API(t, f.admin, http.MethodDelete, "/v1/teams/beta/keys/"+m2.ClientID, nil); r.Status != 204 {
		t.Fatalf("delete: %s", r)
	}
	if r := f.e.API(t, tok2, http.MethodGet, "/v1/teams/beta/keys", nil); r.Status != 401 || !strings.Contains(string(r.Body), "no longer exists") {
		t.Errorf("deleted manager: %s", r)
	}

	// Secret reported leaked (suspended).
	m3 := f.e.CreateManager(t, f.admin, "acme", "m3")
	tok3 := f.e.Token(t, m3.ClientID, m3.ClientSecret, "").AccessToken
	ok(tok3)
	if r := report(t, f.e, "application/json", secretsBody(m3.ClientSecret), ""); r.Status != 200 {
		t.Fatalf("report: %s", r)
	}
	refused("secret suspended", tok3, "revoked")

	// Sessions: ended (deleted), and a token naming another team than its
	// record.
	ss, has := store.Feature[store.Sessions](f.e.Store)
	if !has {
		t.Fatal("the memory store keeps no sessions")
	}
	ctx := context.Background()
	sess := store.ManagementSession{ID: "ses_AAAAAAAAAAAAAAAAAAAAAA", TeamID: "acme", User: "alice@example.com", Kind: store.SessionConsole,
		MintedBy: f.e.AdminID, CreatedAt: f.clk.Now(), ExpiresAt: f.clk.Now().Add(15 * time.Minute)}
	if err := ss.CreateSession(ctx, sess, nil, time.Time{}); err != nil {
		t.Fatal(err)
	}
	stok, err := server.SignSessionToken(f.e.Server, sess)
	if err != nil {
		t.Fatal(err)
	}
	ok(stok)
	forged := sess
	forged.TeamID = "beta"
	btok, err := server.SignSessionToken(f.e.Server, forged)
	if err != nil {
		t.Fatal(err)
	}
	f.e.FlushLastUsed(t)
	before := f.e.Snapshot(t)
	if r := f.e.API(t, btok, http.MethodGet, "/v1/teams/beta/keys", nil); r.Status != 401 || !strings.Contains(string(r.Body), "session this token belongs to has ended") {
		t.Errorf("session of acme, token of beta: %s", r)
	}
	f.e.AssertUnchanged(t, before)
	if err := ss.DeleteSession(ctx, "acme", sess.ID); err != nil {
		t.Fatal(err)
	}
	refused("session deleted", stok, "session this token belongs to has ended")
}

// TestMe: GET /v1/me for each kind of caller.
func TestMe(t *testing.T) {
	f := newManagerFixture(t)
	ss, _ := store.Feature[store.Sessions](f.e.Store)
	sess := store.ManagementSession{ID: "ses_BBBBBBBBBBBBBBBBBBBBBB", TeamID: "acme", User: "alice@example.com", Kind: store.SessionExchange,
		MintedBy: f.plain.ClientID, CreatedAt: f.clk.Now(), ExpiresAt: f.clk.Now().Add(10 * time.Minute)}
	if err := ss.CreateSession(context.Background(), sess, nil, time.Time{}); err != nil {
		t.Fatal(err)
	}
	stok, err := server.SignSessionToken(f.e.Server, sess)
	if err != nil {
		t.Fatal(err)
	}
	type me struct {
		Kind      string    `json:"kind"`
		ClientID  string    `json:"client_id"`
		TeamID    *string   `json:"team_id"`
		User      *string   `json:"user"`
		Role      string    `json:"role"`
		Scopes    []string  `json:"scopes"`
		ExpiresAt time.Time `json:"expires_at"`
	}
	str := func(s string) *string { return &s }
	for _, c := range []struct {
		name, tok string
		want      me
	}{
		{"admin", f.admin, me{Kind: "admin", ClientID: f.e.AdminID, Role: "admin", Scopes: []string{"keys:admin"}}},
		{"manager", f.mgrTok, me{Kind: "team_manager", ClientID: f.mgr.ClientID, TeamID: str("acme"), Role: "manager",
			Scopes: []string{"accounting:read", "accounting:write", "analytics:read", "analytics:write", "banking:read", "banking:write", "commerce:read", "commerce:write", "common:read", "common:write", "keys:manage"}}},
		{"exchanged", stok, me{Kind: "exchanged", ClientID: f.plain.ClientID, TeamID: str("acme"), User: str("alice@example.com"), Role: "manager", Scopes: []string{"keys:manage"}}},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := f.e.API(t, c.tok, http.MethodGet, "/v1/me", nil)
			var got me
			if r.Status != 200 || json.Unmarshal(r.Body, &got) != nil {
				t.Fatalf("%s", r)
			}
			if got.ExpiresAt.IsZero() {
				t.Errorf("no expires_at: %s", r.Body)
			}
			got.ExpiresAt = time.Time{}
			slices.Sort(got.Scopes)
			slices.Sort(c.want.Scopes)
			gj, _ := json.Marshal(got)
			wj, _ := json.Marshal(c.want)
			if string(gj) != string(wj) {
				t.Errorf("GET /v1/me:\n got %s\nwant %s", gj, wj)
			}
		})
	}
}

// TestManagementAudienceRefusedAsAudience: a configured audience equal to
// the management API's would let resource servers take management tokens.
func TestManagementAudienceRefusedAsAudience(t *testing.T) {
	e := startEnv(t, servertest.Config{Backend: servertest.Memory()})
	_, err := e.TrySecond(t, server.Options{Issuer: "https://keygate.example", Audience: "https://keygate.example/v1"})
	if err == nil || !strings.Contains(err.Error(), "management API's own audience") {
		t.Fatalf("start with audience issuer/v1: %v", err)
	}
}
