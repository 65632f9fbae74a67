package server_test

// The web console through the full server: its page and security headers at
// /console/, the redirect from /, headers that stay off the token path, and
// the two read-only endpoints the console needs (GET /v1/teams and
// GET /v1/permissions), which answer admins only and change nothing.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"mime"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/keygate/keygate/console"
	"github.com/keygate/keygate/scopes"
	"github.com/keygate/keygate/server"
	"github.com/keygate/keygate/server/servertest"
)

// consoleOnlyHeaders belong to the console's answers and to no other.
var consoleOnlyHeaders = []string{"Content-Security-Policy", "X-Frame-Options", "Referrer-Policy"}

// doNoRedirect sends a request without following redirects.
func (e *testEnv) doNoRedirect(tb testing.TB, method, path string) response {
	tb.Helper()
	resp, err := e.NoRedirectClient().Do(e.NewRequest(tb, method, path, nil))
	if err != nil {
		tb.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		tb.Fatalf("read body: %v", err)
	}
	return response{Status: resp.StatusCode, Header: resp.Header, Body: body}
}

// checkConsoleHeaders asserts the console's security headers, exactly.
func checkConsoleHeaders(tb testing.TB, what string, r response) {
	tb.Helper()
	for name, want := range map[string]string{
		"Content-Security-Policy": console.ContentSecurityPolicy,
		"X-Frame-Options":         "DENY",
		"Referrer-Policy":         "no-referrer",
		"X-Content-Type-Options":  "nosniff",
	} {
		if got := r.Header.Values(name); len(got) != 1 || got[0] != want {
			tb.Errorf("%s: %s %q, want exactly [%q]", what, name, got, want)
		}
	}
}

func contentMediaType(r response) string {
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil {
		return ""
	}
	return mt
}

func TestConsoleServed(t *testing.T) {
	e := newTestEnv(t, server.Options{})
	index, err := os.ReadFile("../console/assets/index.html")
	if err != nil {
		t.Fatal(err)
	}

	r := e.Do(t, e.NewRequest(t, http.MethodGet, "/console/", nil))
	if r.Status != http.StatusOK {
		t.Fatalf("GET /console/: %s", r)
	}
	if mt := contentMediaType(r); mt != "text/html" {
		t.Errorf("GET /console/: Content-Type %q, want text/html", r.Header.Get("Content-Type"))
	}
	if !bytes.Equal(r.Body, index) {
		t.Errorf("GET /console/: body (%d bytes) is not console/assets/index.html (%d bytes)", len(r.Body), len(index))
	}
	checkConsoleHeaders(t, "GET /console/", r)
	etag := r.Header.Get("ETag")

	for _, tc := range []struct{ path, mediaType string }{
		{"/console/index.html", "text/html"},
		{"/console/app.js", "text/javascript"},
		{"/console/console.css", "text/css"},
		{"/console/icon.svg", "image/svg+xml"},
	} {
		r := e.Do(t, e.NewRequest(t, http.MethodGet, tc.path, nil))
		if r.Status != http.StatusOK || contentMediaType(r) != tc.mediaType {
			t.Errorf("GET %s: %d %q, want 200 %s", tc.path, r.Status, r.Header.Get("Content-Type"), tc.mediaType)
		}
		checkConsoleHeaders(t, "GET "+tc.path, r)
	}

	head := e.Do(t, e.NewRequest(t, http.MethodHead, "/console/", nil))
	if head.Status != http.StatusOK || len(head.Body) != 0 || contentMediaType(head) != "text/html" {
		t.Errorf("HEAD /console/: %d %q with %d body bytes, want 200 text/html and no body", head.Status, head.Header.Get("Content-Type"), len(head.Body))
	}
	checkConsoleHeaders(t, "HEAD /console/", head)

	req := e.NewRequest(t, http.MethodGet, "/console/", nil)
	req.Header.Set("If-None-Match", etag)
	if r := e.Do(t, req); r.Status != http.StatusNotModified || len(r.Body) != 0 {
		t.Errorf("GET /console/ with If-None-Match %s: %d and %d body bytes, want 304 and none", etag, r.Status, len(r.Body))
	}

	missing := e.Do(t, e.NewRequest(t, http.MethodGet, "/console/missing.js", nil))
	if missing.Status != http.StatusNotFound {
		t.Errorf("GET /console/missing.js: %s, want 404", missing)
	}
	checkConsoleHeaders(t, "GET /console/missing.js", missing)

	if r := e.Do(t, e.NewRequest(t, http.MethodPost, "/console/", nil)); r.Status != http.StatusMethodNotAllowed {
		t.Errorf("POST /console/: %s, want 405", r)
	}

	root := e.doNoRedirect(t, http.MethodGet, "/")
	if root.Status != http.StatusFound || root.Header.Get("Location") != "/console/" {
		t.Errorf("GET /: %d Location %q, want 302 to /console/", root.Status, root.Header.Get("Location"))
	}
	bare := e.doNoRedirect(t, http.MethodGet, "/console")
	if bare.Status < 300 || bare.Status > 399 || bare.Header.Get("Location") != "/console/" {
		t.Errorf("GET /console: %d Location %q, want a redirect to /console/", bare.Status, bare.Header.Get("Location"))
	}
}

// TestConsoleHeadersStayOffOtherPaths: the console's headers are set by its
// own handler, not by a middleware every answer pays for.
func TestConsoleHeadersStayOffOtherPaths(t *testing.T) {
	e := newTestEnv(t, server.Options{})
	grant := url.Values{"grant_type": {"client_credentials"}}
	answers := map[string]response{
		"POST /oauth/token (200)":                     e.TokenRequest(t, e.AdminID, e.AdminSecret, grant),
		"POST /oauth/token (401)":                     e.TokenRequest(t, e.AdminID, "wrong", grant),
		"GET /.well-known/jwks.json":                  e.Do(t, e.NewRequest(t, http.MethodGet, "/.well-known/jwks.json", nil)),
		"GET /.well-known/oauth-authorization-server": e.Do(t, e.NewRequest(t, http.MethodGet, "/.well-known/oauth-authorization-server", nil)),
		"GET /v1/teams":                               e.API(t, e.AdminToken(t), http.MethodGet, "/v1/teams", nil),
	}
	if r := answers["POST /oauth/token (200)"]; r.Status != http.StatusOK {
		t.Fatalf("token request: %s", r)
	}
	if r := answers["GET /.well-known/jwks.json"]; r.Status != http.StatusOK {
		t.Fatalf("JWKS: %s", r)
	}
	for what, r := range answers {
		for _, name := range consoleOnlyHeaders {
			if v := r.Header.Values(name); len(v) != 0 {
				t.Errorf("%s: carries %s %q; only the console's answers should", what, name, v)
			}
		}
	}
}

func TestManagementAnswersAreNoStore(t *testing.T) {
	f := newMgmtFixture(t)
	e := f.e
	answers := []struct {
		what   string
		r      response
		status int
	}{
		{"GET /v1/teams", e.API(t, f.admin, http.MethodGet, "/v1/teams", nil), 200},
		{"GET /v1/permissions", e.API(t, f.admin, http.MethodGet, "/v1/permissions", nil), 200},
		{"GET /v1/teams/acme/keys", e.API(t, f.admin, http.MethodGet, "/v1/teams/acme/keys", nil), 200},
		{"GET /v1/teams/acme/keys/{id}", e.API(t, f.admin, http.MethodGet, "/v1/teams/acme/keys/"+f.acme.ClientID, nil), 200},
		{"GET /v1/teams without a token", e.API(t, "", http.MethodGet, "/v1/teams", nil), 401},
		{"GET /v1/permissions without a token", e.API(t, "", http.MethodGet, "/v1/permissions", nil), 401},
		{"GET /v1/teams with a team token", e.API(t, f.teamToken, http.MethodGet, "/v1/teams", nil), 401},
		{"POST /v1/teams", e.API(t, f.admin, http.MethodPost, "/v1/teams", nil), 405},
		{"POST /v1/teams/gamma/keys", e.API(t, f.admin, http.MethodPost, "/v1/teams/gamma/keys",
			map[string]any{"name": "gamma key", "permissions": []string{permAccounting}}), 201},
	}
	for _, a := range answers {
		if a.r.Status != a.status {
			t.Errorf("%s: %s, want status %d", a.what, a.r, a.status)
		}
		if cc := a.r.Header.Values("Cache-Control"); !slices.Equal(cc, []string{"no-store"}) {
			t.Errorf("%s: Cache-Control %q, want exactly [no-store]", a.what, cc)
		}
	}
}

// teamsAnswer is GET /v1/teams, decoded after its shape was checked.
type teamsAnswer struct {
	Teams []struct {
		TeamID   string `json:"team_id"`
		KeyCount int    `json:"key_count"`
	} `json:"teams"`
	MaxKeys int     `json:"max_keys"`
	Next    *string `json:"next"`
	raw     map[string]json.RawMessage
}

func (a teamsAnswer) String() string {
	var b strings.Builder
	for _, t := range a.Teams {
		b.WriteString(t.TeamID + ":" + strings.Repeat("k", t.KeyCount) + " ")
	}
	return strings.TrimSpace(b.String())
}

// getTeams fetches GET /v1/teams and checks its shape: exactly teams,
// max_keys and next, teams an array (never null) of exactly team_id and
// key_count.
func getTeams(tb testing.TB, e *testEnv, tok string) teamsAnswer {
	tb.Helper()
	return getTeamsPage(tb, e, tok, "")
}

func getTeamsPage(tb testing.TB, e *testEnv, tok, query string) teamsAnswer {
	tb.Helper()
	r := e.API(tb, tok, http.MethodGet, "/v1/teams"+query, nil)
	if r.Status != http.StatusOK {
		tb.Fatalf("GET /v1/teams: %s", r)
	}
	checkJSONHeaders(tb, r)
	var a teamsAnswer
	if err := json.Unmarshal(r.Body, &a.raw); err != nil {
		tb.Fatalf("GET /v1/teams: %v: %s", err, r.Body)
	}
	if got := slices.Sorted(maps.Keys(a.raw)); !slices.Equal(got, []string{"max_keys", "next", "teams"}) {
		tb.Errorf("GET /v1/teams members %v, want max_keys, next and teams: %s", got, r.Body)
	}
	var entries []map[string]json.RawMessage
	if raw := bytes.TrimSpace(a.raw["teams"]); len(raw) == 0 || raw[0] != '[' {
		tb.Fatalf("GET /v1/teams: teams is %s, want a JSON array", raw)
	} else if err := json.Unmarshal(raw, &entries); err != nil {
		tb.Fatalf("GET /v1/teams: teams: %v: %s", err, raw)
	}
	for _, m := range entries {
		if len(m) != 2 || m["team_id"] == nil || m["key_count"] == nil {
			tb.Errorf("GET /v1/teams: entry %v, want exactly team_id and key_count", m)
		}
	}
	if err := json.Unmarshal(r.Body, &a); err != nil {
		tb.Fatalf("GET /v1/teams: %v: %s", err, r.Body)
	}
	return a
}

func TestTeamsList(t *testing.T) {
	forEachBackend(t, testTeamsList)
}

func testTeamsList(t *testing.T, b servertest.Backend) {
	const maxKeys = 3 // not the default 5, to see the configured value
	e := startEnv(t, servertest.Config{Options: server.Options{MaxKeysPerTeam: maxKeys}, Backend: b})
	admin := e.AdminToken(t)

	a := getTeams(t, e, admin)
	if got := string(a.raw["teams"]); got != "[]" {
		t.Errorf("empty store: teams %s, want [] (an empty array, not null)", got)
	}
	if a.MaxKeys != maxKeys {
		t.Errorf("max_keys %d, want the configured %d", a.MaxKeys, maxKeys)
	}

	beta1 := e.CreateKeyWith(t, admin, "beta", "beta one", permAccounting)
	beta2 := e.CreateKeyWith(t, admin, "beta", "beta two", permVisualization)
	acme := e.CreateKeyWith(t, admin, "acme", "acme one", permAccounting)

	check := func(when, want string) {
		t.Helper()
		a := getTeams(t, e, admin)
		if got := a.String(); got != want {
			t.Errorf("%s: teams %q, want %q", when, got, want)
		}
		if a.MaxKeys != maxKeys {
			t.Errorf("%s: max_keys %d, want %d", when, a.MaxKeys, maxKeys)
		}
		for _, tm := range a.Teams {
			if tm.TeamID == "" || tm.TeamID == e.AdminID {
				t.Errorf("%s: the admin key shows up as team %q", when, tm.TeamID)
			}
		}
	}
	// Sorted by team ID, whatever the creation order; the admin key (which
	// exists and has been used) is no team.
	check("after 2 keys in beta and 1 in acme", "acme:k beta:kk")

	if r := e.API(t, admin, http.MethodDelete, "/v1/teams/acme/keys/"+acme.ClientID, nil); r.Status != http.StatusNoContent {
		t.Fatalf("delete acme's key: %s", r)
	}
	check("after deleting acme's only key", "beta:kk")

	if r := e.API(t, admin, http.MethodDelete, "/v1/teams/beta/keys/"+beta1.ClientID, nil); r.Status != http.StatusNoContent {
		t.Fatalf("delete a beta key: %s", r)
	}
	check("after deleting one beta key", "beta:k")

	if r := e.API(t, admin, http.MethodDelete, "/v1/teams/beta/keys/"+beta2.ClientID, nil); r.Status != http.StatusNoContent {
		t.Fatalf("delete the last beta key: %s", r)
	}
	if got := string(getTeams(t, e, admin).raw["teams"]); got != "[]" {
		t.Errorf("after deleting every team key: teams %s, want []", got)
	}
}

// TestTeamsPaging: prefix, after and limit select a page, next leads to the
// following one and is null on the last.
func TestTeamsPaging(t *testing.T) {
	forEachBackend(t, testTeamsPaging)
}

func testTeamsPaging(t *testing.T, b servertest.Backend) {
	e := startEnv(t, servertest.Config{Backend: b})
	admin := e.AdminToken(t)
	var all []string
	for i := 1; i <= 12; i++ {
		team := fmt.Sprintf("team-%02d", i)
		e.CreateKeyWith(t, admin, team, "k", permAccounting)
		all = append(all, team)
	}
	e.CreateKeyWith(t, admin, "zeta", "k", permAccounting)
	e.CreateKeyWith(t, admin, "Acme", "k", permAccounting) // byte order: before every lower-case ID

	ids := func(a teamsAnswer) []string {
		out := []string{}
		for _, tm := range a.Teams {
			out = append(out, tm.TeamID)
		}
		return out
	}
	next := func(a teamsAnswer) string {
		if a.Next == nil {
			return "<null>"
		}
		return *a.Next
	}
	for _, c := range []struct {
		query    string
		want     []string
		wantNext string
	}{
		{"", slices.Concat([]string{"Acme"}, all, []string{"zeta"}), "<null>"},
		{"?limit=1", []string{"Acme"}, "Acme"},
		{"?prefix=team-&limit=5", all[:5], "team-05"},
		{"?prefix=team-&limit=5&after=team-05", all[5:10], "team-10"},
		{"?prefix=team-&limit=5&after=team-10", all[10:], "<null>"},
		{"?prefix=team-&limit=12", all, "<null>"}, // exactly a page: no next
		{"?prefix=team-1", []string{"team-10", "team-11", "team-12"}, "<null>"},
		{"?prefix=zeta", []string{"zeta"}, "<null>"},
		{"?prefix=nobody", []string{}, "<null>"},
		{"?after=team-12", []string{"zeta"}, "<null>"},
		{"?after=&prefix=", slices.Concat([]string{"Acme"}, all, []string{"zeta"}), "<null>"},
	} {
		a := getTeamsPage(t, e, admin, c.query)
		if got := ids(a); !slices.Equal(got, c.want) || next(a) != c.wantNext {
			t.Errorf("GET /v1/teams%s: teams %v next %s, want %v next %s", c.query, got, next(a), c.want, c.wantNext)
		}
	}

	// Bad parameters: a problem naming the parameter, and nothing changes.
	e.FlushLastUsed(t)
	before := e.Snapshot(t)
	for _, c := range []struct{ query, mention string }{
		{"?prefix=-team", "prefix"},
		{"?prefix=" + strings.Repeat("a", 65), "prefix"},
		{"?prefix=a%20b", "prefix"},
		{"?after=no%20spaces", "after"},
		{"?limit=0", "limit"},
		{"?limit=1001", "limit"},
		{"?limit=ten", "limit"},
		{"?limit=1&limit=2", "limit"},
		{"?offset=10", "offset"},
	} {
		r := e.API(t, admin, http.MethodGet, "/v1/teams"+c.query, nil)
		if p := checkProblem(t, r, http.StatusBadRequest); p.Type != "urn:keygate:problem:invalid-request" {
			t.Errorf("GET /v1/teams%s: problem type %q", c.query, p.Type)
		}
		if !strings.Contains(string(r.Body), c.mention) {
			t.Errorf("GET /v1/teams%s: detail does not mention %q: %s", c.query, c.mention, r.Body)
		}
	}
	e.AssertUnchanged(t, before)
}

type permissionEntry struct {
	ID          string   `json:"id"`
	Name        string   `json:"name"`
	Description string   `json:"description"`
	Scopes      []string `json:"scopes"`
}

// getPermissions fetches GET /v1/permissions and checks its shape.
func getPermissions(tb testing.TB, e *testEnv, tok string) ([]permissionEntry, int, []byte) {
	tb.Helper()
	r := e.API(tb, tok, http.MethodGet, "/v1/permissions", nil)
	if r.Status != http.StatusOK {
		tb.Fatalf("GET /v1/permissions: %s", r)
	}
	checkJSONHeaders(tb, r)
	var raw struct {
		Permissions []map[string]json.RawMessage `json:"permissions"`
	}
	var top map[string]any
	if err := json.Unmarshal(r.Body, &top); err != nil {
		tb.Fatalf("GET /v1/permissions: %v: %s", err, r.Body)
	}
	if got := keysOf(top); !slices.Equal(got, []string{"max_name_length", "permissions"}) {
		tb.Errorf("GET /v1/permissions members %v, want max_name_length and permissions", got)
	}
	if err := json.Unmarshal(r.Body, &raw); err != nil {
		tb.Fatalf("GET /v1/permissions: %v: %s", err, r.Body)
	}
	for _, m := range raw.Permissions {
		var names []string
		for k := range m {
			names = append(names, k)
		}
		slices.Sort(names)
		if !slices.Equal(names, []string{"description", "id", "name", "scopes"}) {
			tb.Errorf("GET /v1/permissions: entry members %v, want id, name, description, scopes", names)
		}
	}
	var out struct {
		Permissions   []permissionEntry `json:"permissions"`
		MaxNameLength int               `json:"max_name_length"`
	}
	if err := json.Unmarshal(r.Body, &out); err != nil {
		tb.Fatalf("GET /v1/permissions: %v: %s", err, r.Body)
	}
	return out.Permissions, out.MaxNameLength, r.Body
}

func wantPermissions(c *scopes.Catalog) []permissionEntry {
	var want []permissionEntry
	for _, p := range c.Offered() {
		want = append(want, permissionEntry{ID: p.ID, Name: p.Name, Description: p.Description, Scopes: p.Scopes})
	}
	return want
}

func equalPermissions(a, b []permissionEntry) bool {
	return slices.EqualFunc(a, b, func(x, y permissionEntry) bool {
		return x.ID == y.ID && x.Name == y.Name && x.Description == y.Description && slices.Equal(x.Scopes, y.Scopes)
	})
}

func TestPermissionsList(t *testing.T) {
	t.Run("default catalog", func(t *testing.T) {
		e := newTestEnv(t, server.Options{})
		admin := e.AdminToken(t)
		got, maxName, body := getPermissions(t, e, admin)
		want := wantPermissions(scopes.Default())
		if len(want) == 0 {
			t.Fatal("the default catalog offers nothing")
		}
		if !equalPermissions(got, want) {
			t.Errorf("permissions\n got %+v\nwant %+v", got, want)
		}
		if bytes.Contains(body, []byte("token_introspection")) || bytes.Contains(body, []byte("tokens:introspect")) {
			t.Errorf("the operator-only token_introspection entry is listed: %s", body)
		}
		if maxName != 64 {
			t.Errorf("max_name_length %d, want 64", maxName)
		}
		// The advertised limit is the one the API enforces, in characters.
		name := strings.Repeat("é", maxName)
		e.CreateKeyWith(t, admin, "acme", name, permVisualization)
		r := e.API(t, admin, http.MethodPost, "/v1/teams/acme/keys", map[string]any{"name": name + "x", "permissions": []string{permVisualization}})
		checkProblem(t, r, http.StatusBadRequest)
	})

	t.Run("configured catalog", func(t *testing.T) {
		cat, err := scopes.New([]scopes.Permission{
			{ID: "reports", Name: "Reports — read", Description: "Read reports.", Scopes: []string{"reports:read"}},
			{ID: "rs_introspect", Name: "Resource server", Description: "Introspection.", Scopes: []string{"tokens:introspect"}, OperatorOnly: true},
			{ID: "billing", Name: "Billing", Scopes: []string{"billing:read", "billing:write"}},
		})
		if err != nil {
			t.Fatal(err)
		}
		e := newTestEnv(t, server.Options{Catalog: cat})
		got, _, body := getPermissions(t, e, e.AdminToken(t))
		want := wantPermissions(cat)
		if !equalPermissions(got, want) || len(got) != 2 || got[0].ID != "reports" || got[1].ID != "billing" {
			t.Errorf("permissions\n got %+v\nwant %+v (reports, billing)", got, want)
		}
		if bytes.Contains(body, []byte("rs_introspect")) {
			t.Errorf("the operator-only entry is listed: %s", body)
		}
		if !bytes.Contains(body, []byte(`"description":""`)) {
			t.Errorf("an entry without a description must still carry \"description\":\"\": %s", body)
		}
	})
}

// TestConsoleEndpointRefusals: a refused GET /v1/teams or /v1/permissions
// (no token, a bad token, a team's token, a method they do not have) is a
// problem that shows no data, and the store is as it was.
func TestConsoleEndpointRefusals(t *testing.T) {
	f := newMgmtFixture(t)
	bearer := func(tok string) string { return "Bearer " + tok }
	wwwAuth := func(want string) func(t *testing.T, r response) {
		return func(t *testing.T, r response) {
			t.Helper()
			if got := r.Header.Get("WWW-Authenticate"); !strings.HasPrefix(got, "Bearer") || !strings.Contains(got, want) {
				t.Errorf("WWW-Authenticate %q, want Bearer … %s", got, want)
			}
		}
	}
	allowGET := func(t *testing.T, r response) {
		t.Helper()
		if allow := r.Header.Get("Allow"); !strings.Contains(allow, http.MethodGet) {
			t.Errorf("Allow %q, want it to list GET", allow)
		}
	}
	type refusal struct {
		name   string
		req    mreq
		status int
		check  func(t *testing.T, r response)
	}
	var cases []refusal
	for _, path := range []string{"/v1/teams", "/v1/permissions"} {
		cases = append(cases,
			refusal{"GET " + path + " without Authorization", mreq{method: http.MethodGet, path: path}, 401, wwwAuth("")},
			refusal{"GET " + path + " with a garbage bearer token", mreq{method: http.MethodGet, path: path, auth: bearer("not-a-token")}, 401, wwwAuth(`error="invalid_token"`)},
			refusal{"GET " + path + " with a forged JWT", mreq{method: http.MethodGet, path: path, auth: bearer("eyJhbGciOiJub25lIn0.eyJzY29wZSI6ImtleXM6YWRtaW4ifQ.")}, 401, wwwAuth(`error="invalid_token"`)},
			refusal{"GET " + path + " with Basic admin credentials", mreq{method: http.MethodGet, path: path, auth: servertest.BasicAuth(f.e.AdminID, f.e.AdminSecret)}, 401, wwwAuth(`error="invalid_request"`)},
			refusal{"GET " + path + " with a team key's token", mreq{method: http.MethodGet, path: path, auth: bearer(f.teamToken)}, 401, wwwAuth(`error="invalid_token"`)},
			refusal{"POST " + path, mreq{method: http.MethodPost, path: path, auth: bearer(f.admin), body: `{"team_id":"gamma","name":"x","permissions":["accounting_api"]}`}, 405, allowGET},
			refusal{"DELETE " + path, mreq{method: http.MethodDelete, path: path, auth: bearer(f.admin)}, 405, allowGET},
			refusal{"PUT " + path, mreq{method: http.MethodPut, path: path, auth: bearer(f.admin), body: `{}`}, 405, allowGET},
		)
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := f.e.Snapshot(t)
			r := f.send(t, tc.req)
			checkProblem(t, r, tc.status)
			tc.check(t, r)
			// The problem's request_id is random letters and digits: it
			// may spell "acme" by chance (CI saw "…xacme6…").
			var p map[string]any
			if err := json.Unmarshal(r.Body, &p); err != nil {
				t.Fatalf("refusal body: %v", err)
			}
			delete(p, "request_id")
			shown, _ := json.Marshal(p)
			for _, leak := range []string{"acme", "beta", f.acme.ClientID, permAccounting, "team_id", "max_keys"} {
				if bytes.Contains(shown, []byte(leak)) {
					t.Errorf("the refusal shows %q: %s", leak, r.Body)
				}
			}
			f.e.AssertUnchanged(t, before)
		})
	}
	// And the refused calls did not hide a change that a listing would show.
	if got := getTeams(t, f.e, f.admin).String(); got != "acme:k beta:k" {
		t.Errorf("after the refusals: teams %q, want %q", got, "acme:k beta:k")
	}
}
