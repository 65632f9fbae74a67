package server_test

// The HTTP answers of keygate's refusal tables, byte for byte: status, the
// headers a client acts on, and the body, for the token endpoint's bad
// requests, introspection and revocation, and the management API's errors.
// The golden file pins them so that a restructuring of the code behind
// these endpoints cannot change what a client sees. Regenerate it only for
// a deliberate change of behaviour: go test ./server -run TestGoldenHTTP -update
//
// Only values that are the same on every run appear in the requests' answers:
// the issuer is fixed, path IDs are chosen here, and client IDs and secrets
// never appear in a refusal. The request ID, new on every request, is
// written as {request_id} wherever it appears (X-Request-Id, a problem's
// request_id) once the test has checked it is one ID of keygate's form.

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/keygate/keygate/server"
	"github.com/keygate/keygate/server/servertest"
)

var updateGolden = flag.Bool("update", false, "rewrite the golden files in testdata")

// goldenHeaders are the response headers a client or cache acts on.
var goldenHeaders = []string{"Allow", "Cache-Control", "Content-Type", "Location", "Pragma", "Retry-After", "WWW-Authenticate", "X-Request-Id"}

// goldenRequestID is a request ID as keygate makes them.
var goldenRequestID = regexp.MustCompile(`^[0-9a-z]{26}$`)

type goldenRequest struct {
	name        string
	method      string
	path        string
	contentType string // "" means none
	auth        string // Authorization value
	body        string
}

func TestGoldenHTTP(t *testing.T) {
	env := servertest.Start(t, server.Options{Issuer: "http://keygate.test", AdminClientID: "golden-admin"}, nil)
	send := func(g goldenRequest) (*http.Response, []byte) {
		t.Helper()
		var body io.Reader
		if g.body != "" || g.method == http.MethodPost {
			body = strings.NewReader(g.body)
		}
		req, err := http.NewRequestWithContext(context.Background(), g.method, env.URL+g.path, body)
		if err != nil {
			t.Fatal(err)
		}
		if g.contentType != "" {
			req.Header.Set("Content-Type", g.contentType)
		}
		if g.auth != "" {
			req.Header.Set("Authorization", g.auth)
		}
		resp, err := env.Client.Do(req)
		if err != nil {
			t.Fatalf("%s: %v", g.name, err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return resp, b
	}
	basic := func(id, secret string) string {
		return "Basic " + base64.StdEncoding.EncodeToString([]byte(url.QueryEscape(id)+":"+url.QueryEscape(secret)))
	}
	const formCT = "application/x-www-form-urlencoded"
	const jsonCT = "application/json"
	form := func(kv ...string) string {
		v := url.Values{}
		for i := 0; i+1 < len(kv); i += 2 {
			v.Add(kv[i], kv[i+1])
		}
		return v.Encode()
	}

	// Setup: an admin token, two keys of team acme, one deleted key.
	token := func(id, secret, scope string) string {
		t.Helper()
		f := []string{"grant_type", "client_credentials"}
		if scope != "" {
			f = append(f, "scope", scope)
		}
		resp, b := send(goldenRequest{method: http.MethodPost, path: "/oauth/token", contentType: formCT, auth: basic(id, secret), body: form(f...)})
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("token for %s: %d %s", id, resp.StatusCode, b)
		}
		var tr struct {
			AccessToken string `json:"access_token"`
		}
		if err := json.Unmarshal(b, &tr); err != nil {
			t.Fatal(err)
		}
		return tr.AccessToken
	}
	admin := "Bearer " + token(env.AdminID, env.AdminSecret, "")
	type created struct {
		ClientID     string `json:"client_id"`
		ClientSecret string `json:"client_secret"`
	}
	create := func(name, perm string) created {
		t.Helper()
		resp, b := send(goldenRequest{method: http.MethodPost, path: "/v1/teams/acme/keys", contentType: jsonCT, auth: admin,
			body: fmt.Sprintf(`{"name":%q,"permissions":[%q]}`, name, perm)})
		if resp.StatusCode != http.StatusCreated {
			t.Fatalf("create %s: %d %s", name, resp.StatusCode, b)
		}
		var k created
		if err := json.Unmarshal(b, &k); err != nil {
			t.Fatal(err)
		}
		return k
	}
	acct := create("accounting", "accounting_api")
	viz := create("viz", "visualization_sdk")
	gone := create("gone", "accounting_api")
	if resp, b := send(goldenRequest{method: http.MethodDelete, path: "/v1/teams/acme/keys/" + gone.ClientID, auth: admin}); resp.StatusCode != http.StatusNoContent {
		t.Fatalf("delete: %d %s", resp.StatusCode, b)
	}
	acctTok := token(acct.ClientID, acct.ClientSecret, "")
	vizTok := token(viz.ClientID, viz.ClientSecret, "")
	vizBearer := "Bearer " + vizTok
	cc := "client_credentials"
	bA := basic(acct.ClientID, acct.ClientSecret)
	big := strings.Repeat("x", 9000)
	secretNoCRC := acct.ClientSecret[:len(acct.ClientSecret)-1] + map[bool]string{true: "B", false: "A"}[strings.HasSuffix(acct.ClientSecret, "A")]

	tok := func(name string, g goldenRequest) goldenRequest {
		g.name = "token: " + name
		if g.method == "" {
			g.method = http.MethodPost
		}
		if g.path == "" {
			g.path = "/oauth/token"
		}
		return g
	}
	cases := []goldenRequest{
		tok("GET", goldenRequest{method: http.MethodGet, auth: bA}),
		tok("PUT", goldenRequest{method: http.MethodPut, contentType: formCT, auth: bA, body: form("grant_type", cc)}),
		tok("body over 8 KiB", goldenRequest{contentType: formCT, auth: bA, body: form("grant_type", cc, "pad", big)}),
		tok("JSON content type", goldenRequest{contentType: jsonCT, auth: bA, body: `{"grant_type":"client_credentials"}`}),
		tok("no content type", goldenRequest{auth: bA, body: form("grant_type", cc)}),
		tok("query string", goldenRequest{path: "/oauth/token?grant_type=client_credentials", contentType: formCT, auth: bA, body: form("grant_type", cc)}),
		tok("repeated grant_type", goldenRequest{contentType: formCT, auth: bA, body: "grant_type=client_credentials&grant_type=client_credentials"}),
		tok("Basic and client_secret in the body", goldenRequest{contentType: formCT, auth: bA, body: form("grant_type", cc, "client_secret", acct.ClientSecret)}),
		tok("Basic and another client_id in the body", goldenRequest{contentType: formCT, auth: bA, body: form("grant_type", cc, "client_id", viz.ClientID)}),
		tok("not form encoding", goldenRequest{contentType: formCT, auth: bA, body: "grant_type=client_credentials&x=%zz"}),
		tok("missing grant_type", goldenRequest{contentType: formCT, auth: bA, body: form("scope", "common:read")}),
		tok("empty body", goldenRequest{contentType: formCT, auth: bA}),
		tok("grant_type=password", goldenRequest{contentType: formCT, auth: bA, body: form("grant_type", "password", "username", "u", "password", "p")}),
		tok("grant_type=refresh_token", goldenRequest{contentType: formCT, auth: bA, body: form("grant_type", "refresh_token", "refresh_token", "x")}),
		tok("no credentials", goldenRequest{contentType: formCT, body: form("grant_type", cc)}),
		tok("Basic not base64", goldenRequest{contentType: formCT, auth: "Basic !!!", body: form("grant_type", cc)}),
		tok("Basic with an empty secret", goldenRequest{contentType: formCT, auth: basic(acct.ClientID, ""), body: form("grant_type", cc)}),
		tok("Bearer scheme", goldenRequest{contentType: formCT, auth: vizBearer, body: form("grant_type", cc)}),
		tok("wrong secret", goldenRequest{contentType: formCT, auth: basic(acct.ClientID, viz.ClientSecret), body: form("grant_type", cc)}),
		tok("wrong secret in the form", goldenRequest{contentType: formCT, body: form("grant_type", cc, "client_id", acct.ClientID, "client_secret", viz.ClientSecret)}),
		tok("unknown client", goldenRequest{contentType: formCT, auth: basic("acme.unknown", acct.ClientSecret), body: form("grant_type", cc)}),
		tok("deleted key", goldenRequest{contentType: formCT, auth: basic(gone.ClientID, gone.ClientSecret), body: form("grant_type", cc)}),
		tok("secret with a bad checksum", goldenRequest{contentType: formCT, auth: basic(acct.ClientID, secretNoCRC), body: form("grant_type", cc)}),
		tok("client_id without secret", goldenRequest{contentType: formCT, body: form("grant_type", cc, "client_id", acct.ClientID)}),
		tok("over-broad scope", goldenRequest{contentType: formCT, auth: basic(viz.ClientID, viz.ClientSecret), body: form("grant_type", cc, "scope", "banking:write")}),
		tok("keys:admin asked by a team key", goldenRequest{contentType: formCT, auth: bA, body: form("grant_type", cc, "scope", "keys:admin")}),
		tok("malformed scope", goldenRequest{contentType: formCT, auth: bA, body: form("grant_type", cc, "scope", "common:read  banking:read")}),
		tok("empty scope", goldenRequest{contentType: formCT, auth: bA, body: form("grant_type", cc, "scope", "")}),
		tok("wrong secret and over-broad scope", goldenRequest{contentType: formCT, auth: basic(viz.ClientID, acct.ClientSecret), body: form("grant_type", cc, "scope", "banking:write")}),

		tok("introspect: GET", goldenRequest{method: http.MethodGet, path: "/oauth/introspect", auth: bA}),
		tok("introspect: no credentials", goldenRequest{path: "/oauth/introspect", contentType: formCT, body: form("token", acctTok)}),
		tok("introspect: wrong secret", goldenRequest{path: "/oauth/introspect", contentType: formCT, auth: basic(acct.ClientID, viz.ClientSecret), body: form("token", acctTok)}),
		tok("introspect: unknown client", goldenRequest{path: "/oauth/introspect", contentType: formCT, auth: basic("acme.unknown", viz.ClientSecret), body: form("token", acctTok)}),
		tok("introspect: deleted key", goldenRequest{path: "/oauth/introspect", contentType: formCT, auth: basic(gone.ClientID, gone.ClientSecret), body: form("token", acctTok)}),
		tok("introspect: missing token", goldenRequest{path: "/oauth/introspect", contentType: formCT, auth: bA, body: form("token_type_hint", "access_token")}),
		tok("introspect: garbage token", goldenRequest{path: "/oauth/introspect", contentType: formCT, auth: bA, body: form("token", "not-a-jwt")}),
		tok("introspect: query string", goldenRequest{path: "/oauth/introspect?token=x", contentType: formCT, auth: bA, body: form("token", acctTok)}),
		tok("revoke: GET", goldenRequest{method: http.MethodGet, path: "/oauth/revoke", auth: bA}),
		tok("revoke: wrong secret", goldenRequest{path: "/oauth/revoke", contentType: formCT, auth: basic(acct.ClientID, viz.ClientSecret), body: form("token", acctTok)}),
		tok("revoke: unknown client", goldenRequest{path: "/oauth/revoke", contentType: formCT, auth: basic("acme.unknown", viz.ClientSecret), body: form("token", acctTok)}),
		tok("revoke: missing token", goldenRequest{path: "/oauth/revoke", contentType: formCT, auth: bA}),
		tok("revoke: another client's token", goldenRequest{path: "/oauth/revoke", contentType: formCT, auth: bA, body: form("token", vizTok)}),
		tok("revoke: garbage token", goldenRequest{path: "/oauth/revoke", contentType: formCT, auth: bA, body: form("token", "not-a-jwt")}),
	}

	mgmt := func(name, method, path, ct, auth, body string) goldenRequest {
		return goldenRequest{name: "management: " + name, method: method, path: path, contentType: ct, auth: auth, body: body}
	}
	keys := "/v1/teams/acme/keys"
	cases = append(cases,
		mgmt("no token", http.MethodGet, keys, "", "", ""),
		mgmt("Basic scheme", http.MethodGet, keys, "", bA, ""),
		mgmt("garbage token", http.MethodGet, keys, "", "Bearer not-a-jwt", ""),
		mgmt("team key's token", http.MethodGet, keys, "", vizBearer, ""),
		mgmt("bad team id", http.MethodGet, "/v1/teams/-bad/keys", "", admin, ""),
		mgmt("team id too long", http.MethodGet, "/v1/teams/"+strings.Repeat("t", 65)+"/keys", "", admin, ""),
		mgmt("no such key", http.MethodGet, keys+"/acme.nokey", "", admin, ""),
		mgmt("key of another team", http.MethodGet, "/v1/teams/other/keys/acme.nokey", "", admin, ""),
		mgmt("delete a missing key", http.MethodDelete, keys+"/acme.nokey", "", admin, ""),
		mgmt("create: no content type", http.MethodPost, keys, "", admin, `{"name":"x","permissions":["accounting_api"]}`),
		mgmt("create: text/plain", http.MethodPost, keys, "text/plain", admin, `{"name":"x","permissions":["accounting_api"]}`),
		mgmt("create: empty body", http.MethodPost, keys, jsonCT, admin, ""),
		mgmt("create: syntax error", http.MethodPost, keys, jsonCT, admin, `{"name":`),
		mgmt("create: unknown field", http.MethodPost, keys, jsonCT, admin, `{"name":"x","permissions":["accounting_api"],"scope":"x"}`),
		mgmt("create: wrong type", http.MethodPost, keys, jsonCT, admin, `{"name":7,"permissions":["accounting_api"]}`),
		mgmt("create: two objects", http.MethodPost, keys, jsonCT, admin, `{"name":"x","permissions":["accounting_api"]}{}`),
		mgmt("create: no name", http.MethodPost, keys, jsonCT, admin, `{"permissions":["accounting_api"]}`),
		mgmt("create: empty name", http.MethodPost, keys, jsonCT, admin, `{"name":"  ","permissions":["accounting_api"]}`),
		mgmt("create: name too long", http.MethodPost, keys, jsonCT, admin, `{"name":"`+strings.Repeat("n", 65)+`","permissions":["accounting_api"]}`),
		mgmt("create: control character", http.MethodPost, keys, jsonCT, admin, `{"name":"a\u0007b","permissions":["accounting_api"]}`),
		mgmt("create: invalid UTF-8", http.MethodPost, keys, jsonCT, admin, "{\"name\":\"a\xffb\",\"permissions\":[\"accounting_api\"]}"),
		mgmt("create: no permissions", http.MethodPost, keys, jsonCT, admin, `{"name":"x"}`),
		mgmt("create: unknown permission", http.MethodPost, keys, jsonCT, admin, `{"name":"x","permissions":["payroll"]}`),
		mgmt("create: repeated permission", http.MethodPost, keys, jsonCT, admin, `{"name":"x","permissions":["accounting_api","accounting_api"]}`),
		mgmt("create: operator-only permission without the flag", http.MethodPost, keys, jsonCT, admin, `{"name":"x","permissions":["token_introspection"]}`),
		mgmt("create: body over 64 KiB", http.MethodPost, keys, jsonCT, admin, `{"name":"`+strings.Repeat("n", 70<<10)+`"}`),
		mgmt("rotate: missing key", http.MethodPost, keys+"/acme.nokey/rotate", "", admin, ""),
		mgmt("rotate: bad grace period", http.MethodPost, keys+"/"+acct.ClientID+"/rotate", jsonCT, admin, `{"grace_period":"10d"}`),
		mgmt("rotate: grace period too long", http.MethodPost, keys+"/"+acct.ClientID+"/rotate", jsonCT, admin, `{"grace_period":"169h"}`),
		mgmt("rotate: negative grace period", http.MethodPost, keys+"/"+acct.ClientID+"/rotate", jsonCT, admin, `{"grace_period":"-1s"}`),
		mgmt("rotate: grace period not a string", http.MethodPost, keys+"/"+acct.ClientID+"/rotate", jsonCT, admin, `{"grace_period":24}`),
		mgmt("rotate: unknown field", http.MethodPost, keys+"/"+acct.ClientID+"/rotate", jsonCT, admin, `{"grace":"1h"}`),
		mgmt("rotate: text/plain", http.MethodPost, keys+"/"+acct.ClientID+"/rotate", "text/plain", admin, `{"grace_period":"1h"}`),
		mgmt("PATCH a key", http.MethodPatch, keys+"/"+acct.ClientID, jsonCT, admin, `{"name":"x"}`),
		mgmt("PUT the key list", http.MethodPut, keys, jsonCT, admin, `{}`),
		mgmt("no such endpoint", http.MethodGet, "/v1/nothing", "", admin, ""),
		mgmt("teams: bad limit", http.MethodGet, "/v1/teams?limit=0", "", admin, ""),
		mgmt("teams: bad prefix", http.MethodGet, "/v1/teams?prefix=-x", "", admin, ""),
		mgmt("teams: unknown parameter", http.MethodGet, "/v1/teams?page=2", "", admin, ""),
		mgmt("teams: repeated parameter", http.MethodGet, "/v1/teams?limit=1&limit=2", "", admin, ""),
		mgmt("permissions: team key", http.MethodGet, "/v1/permissions", "", vizBearer, ""),
		mgmt("create: a brace after the object", http.MethodPost, keys, jsonCT, admin, `{"name":"x","permissions":["accounting_api"]}}`),
		mgmt("create: brackets and text after the object", http.MethodPost, keys, jsonCT, admin, `{"name":"x","permissions":["accounting_api"]}]]]xyz`),
		mgmt("create: null", http.MethodPost, keys, jsonCT, admin, `null`),
		mgmt("create: duplicate member", http.MethodPost, keys, jsonCT, admin, `{"name":"x","permissions":["accounting_api"],"name":"y"}`),
		mgmt("create: upper-case field name", http.MethodPost, keys, jsonCT, admin, `{"name":"x","permissions":["token_introspection"],"GRANT_OPERATOR_PERMISSIONS":true}`),
		mgmt("create: lone surrogate", http.MethodPost, keys, jsonCT, admin, `{"name":"a\ud800","permissions":["accounting_api"]}`),
		mgmt("create: permissions not an array", http.MethodPost, keys, jsonCT, admin, `{"name":"x","permissions":"accounting_api"}`),
		mgmt("rotate: null", http.MethodPost, keys+"/"+acct.ClientID+"/rotate", jsonCT, admin, `null`),
		mgmt("patch: duplicate member", http.MethodPatch, keys+"/"+acct.ClientID, "application/merge-patch+json", admin, `{"name":"x","name":"y"}`),
		mgmt("trailing slash: GET /v1/teams/", http.MethodGet, "/v1/teams/", "", admin, ""),
		mgmt("trailing slash: POST a key", http.MethodPost, keys+"/", jsonCT, admin, `{"name":"x","permissions":["accounting_api"]}`),
		mgmt("PUT a key", http.MethodPut, keys+"/"+acct.ClientID, jsonCT, admin, `{}`),
		goldenRequest{name: "discovery: HEAD /healthz", method: http.MethodHead, path: "/healthz"},
		goldenRequest{name: "discovery: HEAD /.well-known/jwks.json", method: http.MethodHead, path: "/.well-known/jwks.json"},
		goldenRequest{name: "discovery: DELETE /healthz", method: http.MethodDelete, path: "/healthz"},
	)

	// Generated client IDs are named, so the file is the same on every run.
	ids := strings.NewReplacer(acct.ClientID, "{acct}", viz.ClientID, "{viz}", gone.ClientID, "{gone}")
	var out strings.Builder
	for _, g := range cases {
		resp, body := send(g)
		rid := resp.Header.Get("X-Request-Id")
		if !goldenRequestID.MatchString(rid) {
			t.Errorf("%s: X-Request-Id %q is not a request ID", g.name, rid)
		}
		if rid != "" {
			resp.Header.Set("X-Request-Id", "{request_id}")
			body = []byte(strings.ReplaceAll(string(body), rid, "{request_id}"))
		}
		fmt.Fprintf(&out, "=== %s\n%s %s\n", g.name, g.method, ids.Replace(g.path))
		fmt.Fprintf(&out, "status: %d\n", resp.StatusCode)
		for _, h := range goldenHeaders {
			if v := resp.Header.Values(h); len(v) > 0 {
				fmt.Fprintf(&out, "%s: %s\n", h, strings.Join(v, ", "))
			}
		}
		fmt.Fprintf(&out, "body: %s\n", ids.Replace(strings.TrimRight(string(body), "\n")))
		for _, secret := range []string{env.AdminSecret, acct.ClientSecret, viz.ClientSecret, gone.ClientSecret} {
			if strings.Contains(string(body), secret) {
				t.Errorf("%s: a client secret is in the answer", g.name)
			}
		}
	}

	path := filepath.Join("testdata", "golden_http.txt")
	if *updateGolden {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(out.String()), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read %s (create it with -update): %v", path, err)
	}
	if got := out.String(); got != string(want) {
		gl, wl := strings.Split(got, "\n"), strings.Split(string(want), "\n")
		for i := 0; i < max(len(gl), len(wl)); i++ {
			var g, w string
			if i < len(gl) {
				g = gl[i]
			}
			if i < len(wl) {
				w = wl[i]
			}
			if g != w {
				t.Fatalf("answers differ from %s at line %d:\n got: %s\nwant: %s", path, i+1, g, w)
			}
		}
	}
}
