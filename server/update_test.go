package server_test

// Changing a key (PATCH /v1/teams/{team_id}/keys/{client_id}, an RFC 7396
// merge patch): a rename and a new permission list are stored at once, show
// in every view, and apply from the key's next token on every instance;
// every refused patch changes nothing.

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/server"
	"github.com/keygate/keygate/server/servertest"
)

const mergePatch = "application/merge-patch+json"

func keyPath(team, id string) string { return "/v1/teams/" + team + "/keys/" + id }

// patch sends a merge patch with the admin token tok.
func (e clockEnv) patch(t *testing.T, tok, team, id, body string) response {
	t.Helper()
	return e.rawRequest(t, tok, http.MethodPatch, keyPath(team, id), mergePatch, body)
}

func TestUpdateKey(t *testing.T) {
	for _, b := range []servertest.Backend{servertest.Bolt(), servertest.Memory(), servertest.Redis()} {
		t.Run(b.Name(), func(t *testing.T) {
			logs := &syncBuffer{}
			clk := servertest.NewClock(time.Now().UTC().Truncate(time.Second))
			e := clockEnv{testEnv: startEnv(t, servertest.Config{Clock: clk, Backend: b, Options: server.Options{
				Logger: slog.New(slog.NewJSONHandler(logs, nil)),
			}}), clock: clk, t0: clk.Now()}
			other := e.Second(t, server.Options{})
			k := e.CreateKey(t, "acme", "Viz", permVisualization)
			sibling := e.CreateKey(t, "acme", "Sibling", permVisualization)
			before := e.Token(t, k.ClientID, k.ClientSecret, "")
			if before.Scope != "visualizations:read" {
				t.Fatalf("scope before the change: %q", before.Scope)
			}

			r := e.patch(t, e.AdminToken(t), "acme", k.ClientID, `{"name": " Nightly sync ", "permissions": ["accounting_api", "visualization_sdk"]}`)
			if r.Status != http.StatusOK {
				t.Fatalf("patch: %s", r)
			}
			var got rotatedJSON
			if err := json.Unmarshal(r.Body, &got); err != nil {
				t.Fatal(err)
			}
			wantPerms := []string{permAccounting, permVisualization}
			if got.Name != "Nightly sync" || !slices.Equal(got.Permissions, wantPerms) || !slices.Contains(got.Scopes, "banking:write") {
				t.Fatalf("answer: %s", r.Body)
			}
			if bytes.Contains(r.Body, []byte("client_secret")) || r.Header.Get("Cache-Control") != "no-store" {
				t.Fatalf("answer shows a secret or may be cached: %v %s", r.Header, r.Body)
			}
			for _, v := range []rotatedJSON{e.getKey(t, "acme", k.ClientID), e.listed(t, "acme", k.ClientID)} {
				if v.Name != "Nightly sync" || !slices.Equal(v.Permissions, wantPerms) || !v.CreatedAt.Equal(k.CreatedAt) {
					t.Fatalf("view after the change: %+v", v)
				}
			}
			// The next token, on this instance and on another, carries the
			// new scope; the secret is unchanged.
			for _, inst := range []*servertest.Env{e.Env, other} {
				tok := inst.Token(t, k.ClientID, k.ClientSecret, "")
				if !strings.Contains(tok.Scope, "accounting:write") || !strings.Contains(tok.Scope, "visualizations:read") {
					t.Fatalf("token at %s after the change has scope %q", inst.URL, tok.Scope)
				}
			}
			// Narrowing works the same way: the key loses what it lost.
			if r := e.patch(t, e.AdminToken(t), "acme", k.ClientID, `{"permissions": ["visualization_sdk"]}`); r.Status != http.StatusOK {
				t.Fatalf("narrowing patch: %s", r)
			}
			if tok := other.Token(t, k.ClientID, k.ClientSecret, ""); tok.Scope != "visualizations:read" {
				t.Fatalf("token after narrowing has scope %q", tok.Scope)
			}
			rr := other.TokenRequest(t, k.ClientID, k.ClientSecret, map[string][]string{"grant_type": {"client_credentials"}, "scope": {"accounting:read"}})
			servertest.CheckOAuthError(t, rr, http.StatusBadRequest, "invalid_scope")
			// An empty patch changes nothing and answers the key.
			if r := e.patch(t, e.AdminToken(t), "acme", k.ClientID, `{}`); r.Status != http.StatusOK || !bytes.Contains(r.Body, []byte(`"name":"Nightly sync"`)) {
				t.Fatalf("empty patch: %s", r)
			}
			if v := e.getKey(t, "acme", sibling.ClientID); v.Name != "Sibling" || !slices.Equal(v.Permissions, []string{permVisualization}) {
				t.Fatalf("the patch changed another key: %+v", v)
			}
			// The log names the fields that changed, once per change that
			// changed something.
			var lines []map[string]any
			for _, l := range strings.Split(strings.TrimSpace(logs.String()), "\n") {
				var m map[string]any
				if json.Unmarshal([]byte(l), &m) == nil && m["msg"] == "management: key updated" {
					lines = append(lines, m)
				}
			}
			if len(lines) != 2 || lines[0]["client_id"] != k.ClientID || !slices.Equal(toStrings(lines[0]["changed"]), []string{"name", "permissions"}) ||
				!slices.Equal(toStrings(lines[1]["changed"]), []string{"permissions"}) {
				t.Fatalf("update log lines: %v", lines)
			}
		})
	}
}

func toStrings(v any) []string {
	l, _ := v.([]any)
	out := make([]string, 0, len(l))
	for _, x := range l {
		s, _ := x.(string)
		out = append(out, s)
	}
	return out
}

// TestUpdateOperatorPermissionNeedsConsent: adding an operator-only
// permission needs grant_operator_permissions in the same patch, every
// time (the consent is not stored); keeping one a key holds does not.
func TestUpdateOperatorPermissionNeedsConsent(t *testing.T) {
	e := newClockEnv(t)
	admin := e.AdminToken(t)
	k := e.CreateKey(t, "acme", "Resource server", permVisualization)
	e.AssertLastUsedStored(t, e.AdminID) // so a flush in the check changes nothing
	before := e.fullSnapshot(t)
	r := e.patch(t, admin, "acme", k.ClientID, `{"permissions": ["token_introspection"]}`)
	checkProblemDetail(t, r, http.StatusBadRequest, `"token_introspection" is operator-only`, `"grant_operator_permissions": true`)
	e.assertFullyUnchanged(t, before)

	r = e.patch(t, admin, "acme", k.ClientID, `{"permissions": ["token_introspection"], "grant_operator_permissions": true}`)
	if r.Status != http.StatusOK || !bytes.Contains(r.Body, []byte(`"tokens:introspect"`)) {
		t.Fatalf("with consent: %s", r)
	}
	if bytes.Contains(r.Body, []byte("grant_operator_permissions")) {
		t.Fatalf("the consent shows in the key: %s", r.Body)
	}
	// Held already: a rename with the same list, or a list that keeps it,
	// needs no new consent.
	if r := e.patch(t, admin, "acme", k.ClientID, `{"name": "RS", "permissions": ["visualization_sdk", "token_introspection"]}`); r.Status != http.StatusOK {
		t.Fatalf("keeping a held operator-only permission: %s", r)
	}
	if tok := e.Token(t, k.ClientID, k.ClientSecret, ""); !strings.Contains(tok.Scope, "tokens:introspect") {
		t.Fatalf("scope %q lacks tokens:introspect", tok.Scope)
	}
	e.AssertLastUsedStored(t, k.ClientID)
	// Dropped and added back: that is adding it again, and asks again.
	if r := e.patch(t, admin, "acme", k.ClientID, `{"permissions": ["visualization_sdk"]}`); r.Status != http.StatusOK {
		t.Fatalf("dropping it: %s", r)
	}
	before = e.fullSnapshot(t)
	checkProblemDetail(t, e.patch(t, admin, "acme", k.ClientID, `{"permissions": ["visualization_sdk", "token_introspection"]}`), http.StatusBadRequest, "operator-only")
	e.assertFullyUnchanged(t, before)
}

// TestUpdateBadRequestsChangeNothing: every refused patch leaves the store
// exactly as it was.
func TestUpdateBadRequestsChangeNothing(t *testing.T) {
	e := newClockEnv(t)
	k := e.CreateKey(t, "acme", "Production sync", permAccounting)
	other := e.CreateKey(t, "globex", "Other team", permAccounting)
	admin := e.AdminToken(t)
	teamTok := e.Token(t, k.ClientID, k.ClientSecret, "").AccessToken
	e.AssertLastUsedStored(t, e.AdminID)
	e.AssertLastUsedStored(t, k.ClientID)

	path := keyPath("acme", k.ClientID)
	for _, c := range []struct {
		name   string
		tok    string
		path   string
		ctype  string
		body   string
		status int
		detail []string
	}{
		{name: "null name", body: `{"name": null}`, status: 400, detail: []string{`"name" cannot be removed`}},
		{name: "null permissions", body: `{"permissions": null}`, status: 400, detail: []string{`"permissions" cannot be removed`}},
		{name: "empty name", body: `{"name": "  "}`, status: 400, detail: []string{`"name" must not be empty`}},
		{name: "name too long", body: `{"name": "` + strings.Repeat("n", 65) + `"}`, status: 400, detail: []string{"at most 64"}},
		{name: "name not a string", body: `{"name": 5}`, status: 400, detail: []string{`"name" must be a JSON string`}},
		{name: "permissions not a list", body: `{"permissions": "accounting_api"}`, status: 400, detail: []string{"JSON array"}},
		{name: "permissions of numbers", body: `{"permissions": [1]}`, status: 400, detail: []string{"JSON array"}},
		{name: "no permissions", body: `{"permissions": []}`, status: 400, detail: []string{"no permissions given"}},
		{name: "unknown permission", body: `{"permissions": ["payroll"]}`, status: 400, detail: []string{`"payroll"`}},
		{name: "duplicate permission", body: `{"permissions": ["accounting_api", "accounting_api"]}`, status: 400, detail: []string{"more than once"}},
		{name: "good name, bad permissions", body: `{"name": "renamed", "permissions": ["payroll"]}`, status: 400, detail: []string{`"payroll"`}},
		{name: "consent not a boolean", body: `{"permissions": ["accounting_api"], "grant_operator_permissions": "yes"}`, status: 400, detail: []string{"true or false"}},
		{name: "consent without permissions", body: `{"grant_operator_permissions": true}`, status: 400, detail: []string{"this patch has none"}},
		{name: "unknown field", body: `{"name": "renamed", "team_id": "globex"}`, status: 400, detail: []string{`unknown field "team_id"`, `"name", "permissions"`}},
		{name: "client_id", body: `{"client_id": "kgc_other"}`, status: 400, detail: []string{`unknown field "client_id"`}},
		{name: "secret", body: `{"client_secret": "x"}`, status: 400, detail: []string{`unknown field "client_secret"`}},
		{name: "null body", body: `null`, status: 400, detail: []string{"JSON object"}},
		{name: "an array", body: `[{"name": "x"}]`, status: 400, detail: []string{"must be a JSON object, not a JSON array"}},
		{name: "malformed JSON", body: `{"name": "x"`, status: 400},
		{name: "two objects", body: `{"name": "x"} {"name": "y"}`, status: 400},
		{name: "not UTF-8", body: "{\"name\": \"x\xff\"}", status: 400, detail: []string{"UTF-8"}},
		{name: "empty body", body: ``, status: 400},
		{name: "body over 64 KiB", body: `{"name": "x"` + strings.Repeat(" ", 64<<10) + `}`, status: 413},
		{name: "application/json", ctype: "application/json", body: `{"name": "x"}`, status: 415, detail: []string{mergePatch}},
		{name: "JSON Patch", ctype: "application/json-patch+json", body: `[{"op": "replace", "path": "/name", "value": "x"}]`, status: 415, detail: []string{"RFC 7396"}},
		{name: "no content type", ctype: "-", body: `{"name": "x"}`, status: 415},
		{name: "key of another team", path: keyPath("acme", other.ClientID), body: `{"name": "x"}`, status: 404, detail: []string{"team acme has no key"}},
		{name: "via the other team", path: keyPath("globex", k.ClientID), body: `{"name": "x"}`, status: 404, detail: []string{"team globex has no key"}},
		{name: "unknown key", path: keyPath("acme", "kgc_acme_nokey"), body: `{"name": "x"}`, status: 404},
		{name: "admin key through a team path", path: keyPath("acme", e.AdminID), body: `{"name": "x"}`, status: 404},
		{name: "bad team id", path: keyPath("-bad", k.ClientID), body: `{"name": "x"}`, status: 400, detail: []string{"team id"}},
		{name: "no admin token", tok: "-", body: `{"name": "x"}`, status: 401},
		{name: "team key token", tok: teamTok, body: `{"name": "x"}`, status: 401, detail: []string{"wrong audience"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			before := e.fullSnapshot(t)
			tok, p, ctype := admin, path, mergePatch
			switch c.tok {
			case "-":
				tok = ""
			case "":
			default:
				tok = c.tok
			}
			if c.path != "" {
				p = c.path
			}
			switch c.ctype {
			case "-":
				ctype = ""
			case "":
			default:
				ctype = c.ctype
			}
			r := e.rawRequest(t, tok, http.MethodPatch, p, ctype, c.body)
			checkProblemDetail(t, r, c.status, c.detail...)
			if c.status == 415 && r.Header.Get("Accept-Patch") != mergePatch {
				t.Errorf("415 with Accept-Patch %q, want %q", r.Header.Get("Accept-Patch"), mergePatch)
			}
			e.assertFullyUnchanged(t, before)
		})
	}
	e.works(t, k.ClientID, k.ClientSecret, "the key after the refused patches")
	if v := e.getKey(t, "acme", k.ClientID); v.Name != "Production sync" || !slices.Equal(v.Permissions, []string{permAccounting}) {
		t.Fatalf("view after the refused patches: %+v", v)
	}
}
