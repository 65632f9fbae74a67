package server_test

// The management API: bad requests get an RFC 9457 problem a person can act
// on and change nothing; good ones get the JSON shapes of the README's API
// section.

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keygate/keygate/credential"
	"github.com/keygate/keygate/server"
	"github.com/keygate/keygate/server/servertest"
	"github.com/keygate/keygate/store"
)

// problemJSON is an RFC 9457 problem details body.
type problemJSON struct {
	Type   string `json:"type"`
	Title  string `json:"title"`
	Status int    `json:"status"`
	Detail string `json:"detail"`
	// RequestID is the extension member naming the request's ID.
	RequestID string `json:"request_id"`
}

// checkProblem asserts status, media type and a complete problem body,
// whose request_id is the answer's X-Request-Id.
func checkProblem(tb testing.TB, r response, status int) problemJSON {
	tb.Helper()
	if r.Status != status {
		tb.Errorf("status %d, want %d (body %s)", r.Status, status, r.Body)
	}
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/problem+json") {
		tb.Errorf("Content-Type %q, want application/problem+json", ct)
	}
	if cc := r.Header.Get("Cache-Control"); cc != "no-store" {
		tb.Errorf("Cache-Control %q, want no-store", cc)
	}
	var fields map[string]any
	if err := json.Unmarshal(r.Body, &fields); err != nil {
		tb.Fatalf("problem body is not JSON: %v: %s", err, r.Body)
	}
	if got := keysOf(fields); !slices.Equal(got, []string{"detail", "request_id", "status", "title", "type"}) {
		tb.Errorf("problem members %v, want type, title, status, detail, request_id", got)
	}
	var p problemJSON
	if err := json.Unmarshal(r.Body, &p); err != nil {
		tb.Fatalf("problem body: %v: %s", err, r.Body)
	}
	if p.Status != r.Status {
		tb.Errorf("problem status %d, HTTP status %d", p.Status, r.Status)
	}
	if p.Title != http.StatusText(r.Status) {
		tb.Errorf("problem title %q, want %q", p.Title, http.StatusText(r.Status))
	}
	if p.Type == "" || strings.TrimSpace(p.Detail) == "" {
		tb.Errorf("problem without type or detail: %s", r.Body)
	}
	if id := r.Header.Get("X-Request-Id"); p.RequestID == "" || p.RequestID != id {
		tb.Errorf("problem request_id %q, X-Request-Id %q: want the same ID", p.RequestID, id)
	}
	// Actionable: more than a word or two.
	if len(strings.Fields(p.Detail)) < 4 {
		tb.Errorf("detail %q does not tell a person what to do", p.Detail)
	}
	return p
}

// mgmtFixture: admin token, a team key of acme (and its token, which lacks
// keys:admin), a key of team beta.
type mgmtFixture struct {
	e         *testEnv
	admin     string
	acme      keyJSON
	teamToken string
	beta      keyJSON
}

func newMgmtFixture(tb testing.TB) *mgmtFixture {
	tb.Helper()
	e := newTestEnv(tb, server.Options{})
	f := &mgmtFixture{e: e, admin: e.AdminToken(tb)}
	f.acme = e.CreateKeyWith(tb, f.admin, "acme", "acme key", permAccounting)
	f.beta = e.CreateKeyWith(tb, f.admin, "beta", "beta key", permVisualization)
	f.teamToken = e.Token(tb, f.acme.ClientID, f.acme.ClientSecret, "").AccessToken
	// Let the first uses land before the snapshot.
	e.AssertLastUsedStored(tb, e.AdminID)
	e.AssertLastUsedStored(tb, f.acme.ClientID)
	return f
}

// mreq is one management request.
type mreq struct {
	method, path string
	auth         string // Authorization header value; "" for none
	contentType  string // "" for application/json when there is a body; "-" for none
	body         string
}

func (f *mgmtFixture) send(tb testing.TB, m mreq) response {
	tb.Helper()
	var req *http.Request
	if m.body != "" {
		req = f.e.NewRequest(tb, m.method, m.path, strings.NewReader(m.body))
	} else {
		req = f.e.NewRequest(tb, m.method, m.path, nil)
	}
	switch {
	case m.contentType == "-":
	case m.contentType != "":
		req.Header.Set("Content-Type", m.contentType)
	case m.body != "":
		req.Header.Set("Content-Type", "application/json")
	}
	if m.auth != "" {
		req.Header.Set("Authorization", m.auth)
	}
	return f.e.Do(tb, req)
}

func TestManagementBadRequests(t *testing.T) {
	const goodBody = `{"name":"ok","permissions":["accounting_api"]}`
	type mcase struct {
		name   string
		setup  func(t *testing.T, f *mgmtFixture) // before the snapshot
		req    func(f *mgmtFixture) mreq
		status int
		// detail must contain each of these.
		detail []string
		check  func(t *testing.T, f *mgmtFixture, r response)
	}
	bearer := func(tok string) string { return "Bearer " + tok }
	create := func(team, body string) func(f *mgmtFixture) mreq {
		return func(f *mgmtFixture) mreq {
			return mreq{method: http.MethodPost, path: "/v1/teams/" + team + "/keys", auth: bearer(f.admin), body: body}
		}
	}
	wwwAuth := func(want string) func(t *testing.T, f *mgmtFixture, r response) {
		return func(t *testing.T, f *mgmtFixture, r response) {
			if got := r.Header.Get("WWW-Authenticate"); !strings.HasPrefix(got, `Bearer realm="keygate"`) || !strings.Contains(got, want) {
				t.Errorf("WWW-Authenticate %q, want Bearer realm=\"keygate\" with %q", got, want)
			}
		}
	}
	name65 := strings.Repeat("n", 65)
	team65 := strings.Repeat("t", 65)
	hugeName := `{"name":"` + strings.Repeat("x", 70<<10) + `","permissions":["accounting_api"]}`

	cases := []mcase{
		// Authorization.
		{name: "no Authorization", req: func(f *mgmtFixture) mreq {
			return mreq{method: http.MethodPost, path: "/v1/teams/acme/keys", body: goodBody}
		}, status: 401, detail: []string{"Bearer"}, check: func(t *testing.T, f *mgmtFixture, r response) {
			if got := r.Header.Get("WWW-Authenticate"); got != `Bearer realm="keygate"` {
				t.Errorf("WWW-Authenticate %q, want exactly Bearer realm=\"keygate\"", got)
			}
		}},
		{name: "no Authorization, list", req: func(f *mgmtFixture) mreq {
			return mreq{method: http.MethodGet, path: "/v1/teams/acme/keys"}
		}, status: 401, check: wwwAuth("")},
		{name: "Basic scheme", req: func(f *mgmtFixture) mreq {
			return mreq{method: http.MethodGet, path: "/v1/teams/acme/keys", auth: servertest.BasicAuth(f.e.AdminID, f.e.AdminSecret)}
		}, status: 401, detail: []string{"Bearer"}, check: wwwAuth("")},
		{name: "garbage token", req: func(f *mgmtFixture) mreq {
			return mreq{method: http.MethodGet, path: "/v1/teams/acme/keys", auth: "Bearer not.a.token"}
		}, status: 401, check: wwwAuth(`error="invalid_token"`)},
		{name: "Bearer with nothing after it", req: func(f *mgmtFixture) mreq {
			return mreq{method: http.MethodGet, path: "/v1/teams/acme/keys", auth: "Bearer "}
		}, status: 401},
		{name: "admin token with a tampered payload", req: func(f *mgmtFixture) mreq {
			parts := strings.Split(f.admin, ".")
			parts[1] = parts[1][:len(parts[1])-2] + "AA"
			return mreq{method: http.MethodGet, path: "/v1/teams/acme/keys", auth: bearer(strings.Join(parts, "."))}
		}, status: 401, check: wwwAuth(`error="invalid_token"`)},
		{name: "admin token of another keygate", setup: func(t *testing.T, f *mgmtFixture) {
			f.admin = foreignAdminToken(t, f.e.URL)
		}, req: func(f *mgmtFixture) mreq {
			return mreq{method: http.MethodDelete, path: "/v1/teams/acme/keys/" + f.acme.ClientID, auth: bearer(f.admin)}
		}, status: 401, detail: []string{"unknown signing key"}, check: wwwAuth(`error="invalid_token"`)},
		{name: "expired admin token", setup: func(t *testing.T, f *mgmtFixture) {
			// Same store and keys, a clock one hour on: the token minted
			// a moment ago (15 min lifetime) is expired there.
			f.e.Clock.Advance(time.Hour)
		}, req: func(f *mgmtFixture) mreq {
			return mreq{method: http.MethodPost, path: "/v1/teams/acme/keys", auth: bearer(f.admin), body: goodBody}
		}, status: 401, detail: []string{"expired", "/oauth/token"}, check: wwwAuth(`error="invalid_token"`)},
		// An ordinary team key's token is for resource servers (aud the
		// default audience): the management API (aud issuer/v1) refuses it.
		{name: "team key token (no keys:admin)", req: func(f *mgmtFixture) mreq {
			return mreq{method: http.MethodPost, path: "/v1/teams/acme/keys", auth: bearer(f.teamToken), body: goodBody}
		}, status: 401, detail: []string{"wrong audience"}, check: wwwAuth(`error="invalid_token"`)},
		{name: "team key token deletes its own key", req: func(f *mgmtFixture) mreq {
			return mreq{method: http.MethodDelete, path: "/v1/teams/acme/keys/" + f.acme.ClientID, auth: bearer(f.teamToken)}
		}, status: 401, detail: []string{"wrong audience"}, check: wwwAuth(`error="invalid_token"`)},
		{name: "token of a deleted admin key", setup: func(t *testing.T, f *mgmtFixture) {
			secret, err := credential.NewSecret()
			if err != nil {
				t.Fatal(err)
			}
			// An instance started with another admin key makes sure it exists.
			f.e.second(t, server.Options{AdminClientID: "second-admin", AdminClientSecret: secret})
			f.admin = f.e.Token(t, "second-admin", secret, "").AccessToken
			if err := f.e.Store.DeleteKey(context.Background(), "", "second-admin"); err != nil {
				t.Fatal(err)
			}
		}, req: func(f *mgmtFixture) mreq {
			return mreq{method: http.MethodGet, path: "/v1/teams/acme/keys", auth: bearer(f.admin)}
		}, status: 401, detail: []string{"no longer exists"}, check: wwwAuth(`error="invalid_token"`)},

		// Body.
		{name: "bad JSON", req: create("acme", `{"name":"x",`), status: 400, detail: []string{"JSON"}},
		{name: "not an object", req: create("acme", `["accounting_api"]`), status: 400},
		{name: "unknown field", req: create("acme", `{"name":"x","permissions":["accounting_api"],"scope":"keys:admin"}`), status: 400, detail: []string{`"scope"`, `"name"`, `"permissions"`}},
		{name: "client_secret field", req: create("acme", `{"name":"x","permissions":["accounting_api"],"client_secret":"kgs_mine"}`), status: 400, detail: []string{"client_secret"}},
		{name: "two JSON objects", req: create("acme", goodBody+goodBody), status: 400, detail: []string{"one JSON object"}},
		{name: "empty body", req: func(f *mgmtFixture) mreq {
			m := create("acme", "")(f)
			m.contentType = "application/json"
			return m
		}, status: 400, detail: []string{"empty"}},
		{name: "name of the wrong type", req: create("acme", `{"name":5,"permissions":["accounting_api"]}`), status: 400, detail: []string{"name"}},
		{name: "permissions of the wrong type", req: create("acme", `{"name":"x","permissions":"accounting_api"}`), status: 400, detail: []string{"permissions"}},
		{name: "wrong Content-Type", req: func(f *mgmtFixture) mreq {
			m := create("acme", goodBody)(f)
			m.contentType = "text/plain"
			return m
		}, status: 415, detail: []string{"application/json"}},
		{name: "form Content-Type", req: func(f *mgmtFixture) mreq {
			m := create("acme", "name=x&permissions=accounting_api")(f)
			m.contentType = "application/x-www-form-urlencoded"
			return m
		}, status: 415},
		{name: "no Content-Type", req: func(f *mgmtFixture) mreq {
			m := create("acme", goodBody)(f)
			m.contentType = "-"
			return m
		}, status: 415},
		{name: "body over 64 KiB", req: create("acme", hugeName), status: 413, detail: []string{"64 KiB"}},

		// Name.
		{name: "missing name", req: create("acme", `{"permissions":["accounting_api"]}`), status: 400, detail: []string{"name"}},
		{name: "null name", req: create("acme", `{"name":null,"permissions":["accounting_api"]}`), status: 400, detail: []string{"name"}},
		{name: "empty name", req: create("acme", `{"name":"","permissions":["accounting_api"]}`), status: 400, detail: []string{"name"}},
		{name: "whitespace-only name", req: create("acme", `{"name":" \t  ","permissions":["accounting_api"]}`), status: 400, detail: []string{"name"}},
		{name: "65-character name", req: create("acme", `{"name":"`+name65+`","permissions":["accounting_api"]}`), status: 400, detail: []string{"65", "64"}},
		{name: "65-character multi-byte name", req: create("acme", `{"name":"`+strings.Repeat("é", 65)+`","permissions":["accounting_api"]}`), status: 400, detail: []string{"64"}},
		{name: "name with BEL", req: create("acme", `{"name":"bell\u0007","permissions":["accounting_api"]}`), status: 400, detail: []string{"control"}},
		{name: "name with a newline", req: create("acme", `{"name":"two\nlines","permissions":["accounting_api"]}`), status: 400, detail: []string{"control"}},
		{name: "name with DEL", req: create("acme", `{"name":"del\u007f","permissions":["accounting_api"]}`), status: 400},
		{name: "name with a bidi override", req: create("acme", `{"name":"abc\u202edef","permissions":["accounting_api"]}`), status: 400},

		// Permissions.
		{name: "unknown permission", req: create("acme", `{"name":"x","permissions":["payroll_api"]}`), status: 400, detail: []string{"payroll_api", "accounting_api", "visualization_sdk"}},
		{name: "empty permissions", req: create("acme", `{"name":"x","permissions":[]}`), status: 400, detail: []string{"accounting_api", "visualization_sdk"}},
		{name: "missing permissions", req: create("acme", `{"name":"x"}`), status: 400, detail: []string{"accounting_api"}},
		{name: "duplicate permission", req: create("acme", `{"name":"x","permissions":["accounting_api","accounting_api"]}`), status: 400, detail: []string{"accounting_api", "more than once"}},
		{name: "a scope instead of a permission", req: create("acme", `{"name":"x","permissions":["keys:admin"]}`), status: 400, detail: []string{"accounting_api"}},

		// Team IDs.
		{name: "team id starting with -", req: create("-acme", goodBody), status: 400, detail: []string{"-acme", "A-Z"}},
		{name: "team id of 65 characters", req: create(team65, goodBody), status: 400, detail: []string{"1–64"}},
		{name: "team id with an escaped slash", req: create("a%2Fb", goodBody), status: 404},
		{name: "team id with a space", req: create("a%20b", goodBody), status: 400},
		{name: "team id with a dot-dot", req: create("..", goodBody), status: 400},
		{name: "list with an invalid team id", req: func(f *mgmtFixture) mreq {
			return mreq{method: http.MethodGet, path: "/v1/teams/-acme/keys", auth: bearer(f.admin)}
		}, status: 400},
		{name: "list with an empty team id", req: func(f *mgmtFixture) mreq {
			return mreq{method: http.MethodGet, path: "/v1/teams//keys", auth: bearer(f.admin)}
		}, status: 400, check: func(t *testing.T, f *mgmtFixture, r response) {
			if strings.Contains(string(r.Body), f.e.AdminID) {
				t.Error("the admin key leaked through an empty team id")
			}
		}},

		// Limit.
		{name: "6th key in a team", setup: func(t *testing.T, f *mgmtFixture) {
			for i := 0; i < 4; i++ { // acme has one already
				f.e.CreateKeyWith(t, f.admin, "acme", "filler", permVisualization)
			}
		}, req: create("acme", goodBody), status: 409,
			detail: []string{"team acme already has 5 API keys, the maximum (suspended and expired keys count too); delete one before creating another"}},

		// Keys addressed wrongly.
		{name: "GET unknown key", req: func(f *mgmtFixture) mreq {
			return mreq{method: http.MethodGet, path: "/v1/teams/acme/keys/kgc_nosuchkey", auth: bearer(f.admin)}
		}, status: 404, detail: []string{"kgc_nosuchkey", "GET /v1/teams/acme/keys"}},
		{name: "GET key of acme under beta", req: func(f *mgmtFixture) mreq {
			return mreq{method: http.MethodGet, path: "/v1/teams/beta/keys/" + f.acme.ClientID, auth: bearer(f.admin)}
		}, status: 404, check: func(t *testing.T, f *mgmtFixture, r response) {
			if strings.Contains(string(r.Body), "acme key") {
				t.Error("404 body reveals the key's name")
			}
		}},
		{name: "GET the admin key under a team", req: func(f *mgmtFixture) mreq {
			return mreq{method: http.MethodGet, path: "/v1/teams/acme/keys/" + f.e.AdminID, auth: bearer(f.admin)}
		}, status: 404},
		{name: "DELETE key of acme under beta", req: func(f *mgmtFixture) mreq {
			return mreq{method: http.MethodDelete, path: "/v1/teams/beta/keys/" + f.acme.ClientID, auth: bearer(f.admin)}
		}, status: 404},
		{name: "DELETE the admin key under a team", req: func(f *mgmtFixture) mreq {
			return mreq{method: http.MethodDelete, path: "/v1/teams/acme/keys/" + f.e.AdminID, auth: bearer(f.admin)}
		}, status: 404},
		{name: "DELETE unknown key", req: func(f *mgmtFixture) mreq {
			return mreq{method: http.MethodDelete, path: "/v1/teams/acme/keys/kgc_nosuchkey", auth: bearer(f.admin)}
		}, status: 404},
		{name: "POST to a key", req: func(f *mgmtFixture) mreq {
			return mreq{method: http.MethodPost, path: "/v1/teams/acme/keys/" + f.acme.ClientID, auth: bearer(f.admin), body: goodBody}
		}, status: 405, check: func(t *testing.T, f *mgmtFixture, r response) {
			if allow := r.Header.Get("Allow"); !strings.Contains(allow, "GET") || !strings.Contains(allow, "DELETE") {
				t.Errorf("Allow %q, want GET and DELETE", allow)
			}
		}},
		{name: "PUT to the key list", req: func(f *mgmtFixture) mreq {
			return mreq{method: http.MethodPut, path: "/v1/teams/acme/keys", auth: bearer(f.admin), body: goodBody}
		}, status: 405},
		{name: "unknown path", req: func(f *mgmtFixture) mreq {
			return mreq{method: http.MethodGet, path: "/v1/teams/acme/secrets", auth: bearer(f.admin)}
		}, status: 404},
	}
	if len(cases) < 15 {
		t.Fatalf("only %d cases", len(cases))
	}

	var wg sync.WaitGroup
	for _, c := range cases {
		wg.Go(func() {
			t.Run(c.name, func(t *testing.T) {
				f := newMgmtFixture(t)
				if c.setup != nil {
					c.setup(t, f)
				}
				before := f.e.Snapshot(t)
				r := f.send(t, c.req(f))
				p := checkProblem(t, r, c.status)
				for _, want := range c.detail {
					if !strings.Contains(p.Detail, want) {
						t.Errorf("detail %q lacks %q", p.Detail, want)
					}
				}
				if c.check != nil {
					c.check(t, f, r)
				}
				for _, s := range []string{f.e.AdminSecret, f.acme.ClientSecret, f.beta.ClientSecret, f.admin, "kgs_"} {
					if strings.Contains(string(r.Body), s) {
						t.Errorf("the problem body echoes a secret or token: %s", r.Body)
					}
				}
				f.e.AssertUnchanged(t, before)
			})
		})
	}
	wg.Wait()
}

// TestManagementRejectsInvalidUTF8: RFC 8259 §8.1 requires UTF-8. Go's
// encoding/json silently turns each invalid byte into U+FFFD, so without an
// explicit check a name the admin never typed ("bad\uFFFD") is stored and the
// utf8.ValidString check in validateName can never fire.
func TestManagementRejectsInvalidUTF8(t *testing.T) {
	t.Parallel()
	f := newMgmtFixture(t)
	before := f.e.Snapshot(t)
	r := f.send(t, mreq{method: http.MethodPost, path: "/v1/teams/acme/keys", auth: "Bearer " + f.admin,
		body: "{\"name\":\"bad\xff\",\"permissions\":[\"accounting_api\"]}"})
	if r.Status != http.StatusBadRequest {
		t.Fatalf("a name with an invalid UTF-8 byte got %d, want 400 (stored as %q): %s", r.Status, "bad\uFFFD", r.Body)
	}
	p := checkProblem(t, r, http.StatusBadRequest)
	if !strings.Contains(p.Detail, "UTF-8") {
		t.Errorf("detail %q does not say the body must be UTF-8", p.Detail)
	}
	f.e.AssertUnchanged(t, before)
}

// foreignAdminToken is a valid admin token from another keygate (another
// store, another signing key), with the same issuer.
func foreignAdminToken(tb testing.TB, issuer string) string {
	tb.Helper()
	other := newTestEnv(tb, server.Options{Issuer: issuer})
	return other.AdminToken(tb)
}

var secretPattern = regexp.MustCompile(`^kgs_[0-9A-Za-z]{49}$`)

// checkKeyShape asserts the README's key JSON: every member present (absent
// values null), and client_secret exactly when withSecret.
func checkKeyShape(tb testing.TB, raw json.RawMessage, withSecret bool) map[string]any {
	tb.Helper()
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		tb.Fatalf("key JSON: %v: %s", err, raw)
	}
	want := []string{"client_id", "created_at", "last_used_at", "name", "permissions", "previous_secret_expires_at", "scopes", "secret_rotated_at", "secret_suspended_at", "team_id", "token_quota",
		"expires_at", "expiring_soon", "status", "disabled", "disabled_at", "token_ttl", "audiences", "allowed_cidrs", "metadata"}
	if withSecret {
		want = append(want, "client_secret")
	}
	slices.Sort(want)
	if got := keysOf(m); !slices.Equal(got, want) {
		tb.Errorf("key members %v, want %v", got, want)
	}
	ca, _ := m["created_at"].(string)
	if ts, err := time.Parse(time.RFC3339, ca); err != nil || !strings.HasSuffix(ca, "Z") || ts.Location() != time.UTC {
		tb.Errorf("created_at %q is not RFC 3339 UTC", ca)
	} else if d := time.Since(ts); d < -2*time.Second || d > time.Minute {
		tb.Errorf("created_at %q is not now", ca)
	}
	if lu, ok := m["last_used_at"]; ok && lu != nil {
		s, _ := lu.(string)
		if _, err := time.Parse(time.RFC3339, s); err != nil || !strings.HasSuffix(s, "Z") {
			tb.Errorf("last_used_at %v is not RFC 3339 UTC", lu)
		}
	}
	if withSecret {
		if s, _ := m["client_secret"].(string); !secretPattern.MatchString(s) {
			tb.Errorf("client_secret %q does not match %s", s, secretPattern)
		} else if err := credential.CheckSecretFormat(s); err != nil {
			tb.Errorf("client_secret: %v", err)
		}
	}
	return m
}

func TestManagementKeyLifecycle(t *testing.T) {
	t.Parallel()
	forEachBackend(t, testManagementKeyLifecycle)
}

func testManagementKeyLifecycle(t *testing.T, b servertest.Backend) {
	e := startEnv(t, servertest.Config{Backend: b})
	admin := e.AdminToken(t)

	// Unknown team: an empty list, [] not null.
	r := e.API(t, admin, http.MethodGet, "/v1/teams/nobody/keys", nil)
	if r.Status != 200 || strings.TrimSpace(string(r.Body)) != `{"keys":[],"max_keys":5}` {
		t.Errorf("list of an unknown team: %s, want {\"keys\":[],\"max_keys\":5}", r)
	}
	if cc := r.Header.Get("Cache-Control"); cc != "no-store" {
		t.Errorf("list Cache-Control %q", cc)
	}

	// Create: 201, Location, the full shape, the secret this once; the name
	// trimmed.
	r = e.API(t, admin, http.MethodPost, "/v1/teams/acme/keys", map[string]any{
		"name": "  Production sync\t", "permissions": []string{permVisualization, permAccounting},
	})
	if r.Status != http.StatusCreated {
		t.Fatalf("create: %s", r)
	}
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("create Content-Type %q", ct)
	}
	if cc := r.Header.Get("Cache-Control"); cc != "no-store" {
		t.Errorf("create Cache-Control %q, want no-store (the body holds a secret)", cc)
	}
	m := checkKeyShape(t, r.Body, true)
	if m["last_used_at"] != nil {
		t.Errorf("last_used_at %v, want null", m["last_used_at"])
	}
	if !strings.Contains(string(r.Body), `"last_used_at":null`) {
		t.Errorf("last_used_at omitted rather than null: %s", r.Body)
	}
	var first keyJSON
	if err := json.Unmarshal(r.Body, &first); err != nil {
		t.Fatal(err)
	}
	if loc := r.Header.Get("Location"); loc != "/v1/teams/acme/keys/"+first.ClientID {
		t.Errorf("Location %q, want /v1/teams/acme/keys/%s", loc, first.ClientID)
	}
	if first.Name != "Production sync" || first.TeamID != "acme" {
		t.Errorf("name %q team %q, want the trimmed name in acme", first.Name, first.TeamID)
	}
	if !strings.HasPrefix(first.ClientID, credential.ClientIDPrefix) {
		t.Errorf("client_id %q lacks the %s prefix", first.ClientID, credential.ClientIDPrefix)
	}
	if !slices.Equal(first.Permissions, []string{permVisualization, permAccounting}) {
		t.Errorf("permissions %v", first.Permissions)
	}
	// Scopes in catalog order whatever the order of the permissions.
	if want := append(slices.Clone(accountingScopes), "visualizations:read"); !slices.Equal(first.Scopes, want) {
		t.Errorf("scopes %v, want %v", first.Scopes, want)
	}
	// The secret works, and only a hash of it is stored.
	stored := e.StoredKey(t, first.ClientID)
	if strings.Contains(string(stored.SecretHash), first.ClientSecret) || len(stored.SecretHash) != 32 {
		t.Errorf("stored secret hash is %d bytes", len(stored.SecretHash))
	}

	// Boundary names are accepted: 64 characters, 64 multi-byte characters.
	long := e.CreateKeyWith(t, admin, "acme", strings.Repeat("n", 64), permAccounting)
	wide := e.CreateKeyWith(t, admin, "acme", strings.Repeat("é", 64), permAccounting)
	if wide.Name != strings.Repeat("é", 64) {
		t.Errorf("multi-byte name %q", wide.Name)
	}

	// Get: the same shape, no secret.
	r = e.API(t, admin, http.MethodGet, "/v1/teams/acme/keys/"+first.ClientID, nil)
	if r.Status != 200 {
		t.Fatalf("get: %s", r)
	}
	checkKeyShape(t, r.Body, false)
	if cc := r.Header.Get("Cache-Control"); cc != "no-store" {
		t.Errorf("get Cache-Control %q", cc)
	}

	// List: oldest first, never a secret or hash, no admin key.
	r = e.API(t, admin, http.MethodGet, "/v1/teams/acme/keys", nil)
	if r.Status != 200 {
		t.Fatalf("list: %s", r)
	}
	for _, banned := range []string{"client_secret", "secret_hash", "kgs_", first.ClientSecret, e.AdminID} {
		if strings.Contains(string(r.Body), banned) {
			t.Errorf("list body contains %q: %s", banned, r.Body)
		}
	}
	var raw struct {
		Keys    []json.RawMessage `json:"keys"`
		MaxKeys int               `json:"max_keys"`
	}
	if err := json.Unmarshal(r.Body, &raw); err != nil {
		t.Fatal(err)
	}
	if raw.MaxKeys != 5 || len(raw.Keys) != 3 {
		t.Fatalf("list: %d keys, max_keys %d; want 3 and 5", len(raw.Keys), raw.MaxKeys)
	}
	var order []string
	for _, k := range raw.Keys {
		order = append(order, checkKeyShape(t, k, false)["client_id"].(string))
	}
	if want := []string{first.ClientID, long.ClientID, wide.ClientID}; !slices.Equal(order, want) {
		t.Errorf("list order %v, want oldest first %v", order, want)
	}
	// Admin keys are in no team.
	for _, team := range []string{"admin", "0", "x"} {
		if l := e.ListKeys(t, admin, team); len(l.Keys) != 0 {
			t.Errorf("team %q lists %d keys", team, len(l.Keys))
		}
	}

	// Delete: 204, then gone (get 404, not listed, no token).
	r = e.API(t, admin, http.MethodDelete, "/v1/teams/acme/keys/"+first.ClientID, nil)
	if r.Status != http.StatusNoContent || len(r.Body) != 0 {
		t.Fatalf("delete: %s", r)
	}
	checkProblem(t, e.API(t, admin, http.MethodGet, "/v1/teams/acme/keys/"+first.ClientID, nil), 404)
	if l := e.ListKeys(t, admin, "acme"); len(l.Keys) != 2 {
		t.Errorf("%d keys listed after delete, want 2", len(l.Keys))
	}
	checkProblem(t, e.API(t, admin, http.MethodDelete, "/v1/teams/acme/keys/"+first.ClientID, nil), 404)
}

// TestManagementTeamLimitConcurrent: 20 creates at once for one team give
// exactly 5 keys.
func TestManagementTeamLimitConcurrent(t *testing.T) {
	t.Parallel()
	forEachBackend(t, testManagementTeamLimitConcurrent)
}

func testManagementTeamLimitConcurrent(t *testing.T, b servertest.Backend) {
	e := startEnv(t, servertest.Config{Backend: b})
	admin := e.AdminToken(t)
	const n = 20
	statuses := make([]int, n)
	bodies := make([][]byte, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			// No t.Fatal off the test goroutine: record and check after.
			req, err := http.NewRequest(http.MethodPost, e.URL+"/v1/teams/acme/keys",
				strings.NewReader(`{"name":"racer","permissions":["accounting_api"]}`))
			if err != nil {
				t.Error(err)
				return
			}
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Authorization", "Bearer "+admin)
			resp, err := e.Client.Do(req)
			if err != nil {
				t.Errorf("create %d: %v", i, err)
				return
			}
			defer resp.Body.Close()
			statuses[i] = resp.StatusCode
			bodies[i], _ = io.ReadAll(resp.Body)
		})
	}
	wg.Wait()
	created, limited := 0, 0
	for i, s := range statuses {
		switch s {
		case http.StatusCreated:
			created++
		case http.StatusConflict:
			limited++
			var p problemJSON
			if err := json.Unmarshal(bodies[i], &p); err != nil || p.Detail != "team acme already has 5 API keys, the maximum (suspended and expired keys count too); delete one before creating another" {
				t.Errorf("409 body %s", bodies[i])
			}
		default:
			t.Errorf("create %d: %d %s", i, s, bodies[i])
		}
	}
	if created != 5 || limited != 15 {
		t.Errorf("%d created, %d refused; want 5 and 15", created, limited)
	}
	if l := e.ListKeys(t, admin, "acme"); len(l.Keys) != 5 {
		t.Errorf("team has %d keys, want 5", len(l.Keys))
	}
	// Nothing half-written: the store holds exactly 5 acme keys too.
	inStore := 0
	if err := e.Store.ForEachKey(context.Background(), func(k store.Key) error {
		if k.TeamID == "acme" {
			inStore++
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if inStore != 5 {
		t.Errorf("store holds %d acme keys, want 5", inStore)
	}
	// A 6th key in another team still fits: the limit is per team.
	e.CreateKeyWith(t, admin, "other", "fits", permAccounting)
	// And deleting one makes room again.
	l := e.ListKeys(t, admin, "acme")
	if r := e.API(t, admin, http.MethodDelete, "/v1/teams/acme/keys/"+l.Keys[0].ClientID, nil); r.Status != 204 {
		t.Fatalf("delete: %s", r)
	}
	e.CreateKeyWith(t, admin, "acme", "after delete", permAccounting)
}

// A revoked admin token no longer opens the management API (it introspects
// as inactive; the API must agree), while another token of the same admin
// key keeps working.
func TestManagementRevokedAdminToken(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t, server.Options{})
	revoked, kept := e.AdminToken(t), e.AdminToken(t)
	if r := e.API(t, revoked, http.MethodGet, "/v1/teams/acme/keys", nil); r.Status != http.StatusOK {
		t.Fatalf("before revocation: %s", r)
	}
	if r := e.revoke(t, e.AdminID, e.AdminSecret, revoked); r.Status != http.StatusOK {
		t.Fatalf("revoke: %s", r)
	}
	e.FlushLastUsed(t) // the admin key's last-used time is written first
	before := e.Snapshot(t)
	for _, c := range []struct{ method, path string }{
		{http.MethodGet, "/v1/teams"},
		{http.MethodGet, "/v1/teams/acme/keys"},
		{http.MethodPost, "/v1/teams/acme/keys"},
	} {
		var body any
		if c.method == http.MethodPost {
			body = map[string]any{"name": "After revocation", "permissions": []string{permAccounting}}
		}
		r := e.API(t, revoked, c.method, c.path, body)
		if r.Status != http.StatusUnauthorized || !strings.Contains(r.Header.Get("WWW-Authenticate"), `error="invalid_token"`) ||
			!strings.Contains(string(r.Body), "revoked") {
			t.Errorf("%s %s with a revoked admin token: %s", c.method, c.path, r)
		}
	}
	e.AssertUnchanged(t, before)
	if r := e.API(t, kept, http.MethodGet, "/v1/teams", nil); r.Status != http.StatusOK {
		t.Errorf("another token of the same admin key: %s", r)
	}
}
