package server_test

// The OpenAPI document (package openapi) against the real server: every
// route the gin router mounts is described and every described operation is
// mounted; real answers of a running keygate validate against the
// document; the problem types it lists are the ones the server writes.

import (
	"bytes"
	"encoding/json"
	"errors"
	"go/ast"
	"go/parser"
	"go/token"
	"io"
	"net/http"
	"net/url"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/gin-gonic/gin"
	"github.com/pb33f/libopenapi"
	validator "github.com/pb33f/libopenapi-validator"
	"github.com/pb33f/libopenapi-validator/config"
	v3 "github.com/pb33f/libopenapi/datamodel/high/v3"

	"github.com/keygate/keygate/openapi"
	"github.com/keygate/keygate/server"
	"github.com/keygate/keygate/server/servertest"
)

// notDescribed are the mounted paths the document leaves out, and why.
var notDescribed = map[string]string{
	"/console/*file": "the web console's static files: a browser UI, not an API; " +
		"the document's description says so (and an OpenAPI path cannot express a catch-all)",
}

// anyMethods are the methods gin's Any mounts. The OAuth endpoints are
// mounted for all of them so that every other method gets their RFC 6749
// §5.2-shaped 405 (server/token.go, pinned by server/golden_test.go); the
// document describes their one operation, POST.
var anyMethods = []string{
	http.MethodGet, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodHead,
	http.MethodOptions, http.MethodDelete, http.MethodConnect, http.MethodTrace,
}

var ginParam = regexp.MustCompile(`:([A-Za-z0-9_]+)`)

// mountedOperations are the router's routes as "METHOD /path/{param}",
// with notDescribed left out, Any routes as their POST, and HEAD folded
// into the GET of the same path.
func mountedOperations(t *testing.T, routes gin.RoutesInfo) map[string]bool {
	t.Helper()
	methods := map[string][]string{}
	for _, r := range routes {
		methods[r.Path] = append(methods[r.Path], r.Method)
	}
	ops := map[string]bool{}
	for path, ms := range methods {
		if _, skip := notDescribed[path]; skip {
			continue
		}
		if strings.Contains(path, "*") {
			t.Errorf("route %s has a catch-all: describe it or add it to notDescribed with a reason", path)
			continue
		}
		slices.Sort(ms)
		any := slices.Clone(anyMethods)
		slices.Sort(any)
		if slices.Equal(ms, any) {
			ms = []string{http.MethodPost}
		}
		// HEAD beside GET is implied (RFC 9110 §9.3.2), as the document's
		// description says; a HEAD alone would still need describing.
		if slices.Contains(ms, http.MethodGet) {
			ms = slices.DeleteFunc(ms, func(m string) bool { return m == http.MethodHead })
		}
		for _, m := range ms {
			ops[m+" "+ginParam.ReplaceAllString(path, "{$1}")] = true
		}
	}
	return ops
}

// documentModel parses raw with libopenapi.
func documentModel(t *testing.T, raw []byte) (libopenapi.Document, *v3.Document) {
	t.Helper()
	doc, err := libopenapi.NewDocument(raw)
	if err != nil {
		t.Fatalf("parse the OpenAPI document: %v", err)
	}
	m, err := doc.BuildV3Model()
	if err != nil {
		t.Fatalf("build the OpenAPI model: %v", err)
	}
	return doc, &m.Model
}

// documentedOperations are the document's operations as "METHOD /path".
func documentedOperations(t *testing.T, raw []byte) map[string]bool {
	t.Helper()
	_, m := documentModel(t, raw)
	ops := map[string]bool{}
	for path, item := range m.Paths.PathItems.FromOldest() {
		for method := range item.GetOperations().FromOldest() {
			ops[strings.ToUpper(method)+" "+path] = true
		}
	}
	return ops
}

// compareOperations returns the mounted operations the document lacks and
// the documented ones the router does not mount, sorted.
func compareOperations(mounted, documented map[string]bool) (undocumented, unmounted []string) {
	for op := range mounted {
		if !documented[op] {
			undocumented = append(undocumented, op)
		}
	}
	for op := range documented {
		if !mounted[op] {
			unmounted = append(unmounted, op)
		}
	}
	slices.Sort(undocumented)
	slices.Sort(unmounted)
	return undocumented, unmounted
}

// Every route of the real router is described, and every described
// operation is mounted.
func TestOpenAPIDescribesEveryRoute(t *testing.T) {
	e := servertest.Start(t, server.Options{}, nil)
	mounted := mountedOperations(t, server.Routes(e.Server))
	if len(mounted) < 15 {
		t.Fatalf("only %d routes read from the router: %v", len(mounted), mounted)
	}
	undocumented, unmounted := compareOperations(mounted, documentedOperations(t, openapi.Document()))
	for _, op := range undocumented {
		t.Errorf("%s is mounted but not in openapi/openapi.json", op)
	}
	for _, op := range unmounted {
		t.Errorf("%s is in openapi/openapi.json but not mounted", op)
	}
}

// The route check catches a route missing from the document, an operation
// the server does not have, and a method missing from a described path.
func TestOpenAPIRouteCheckCatchesMistakes(t *testing.T) {
	e := servertest.Start(t, server.Options{}, nil)
	mounted := mountedOperations(t, server.Routes(e.Server))
	var doc map[string]any
	if err := json.Unmarshal(openapi.Document(), &doc); err != nil {
		t.Fatal(err)
	}
	paths := doc["paths"].(map[string]any)
	delete(paths, "/v1/permissions")
	delete(paths["/v1/teams/{team_id}/keys/{client_id}"].(map[string]any), "delete")
	paths["/v1/nothing"] = map[string]any{"get": map[string]any{"responses": map[string]any{"200": map[string]any{"description": "nothing"}}}}
	raw, err := json.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	undocumented, unmounted := compareOperations(mounted, documentedOperations(t, raw))
	if want := []string{"DELETE /v1/teams/{team_id}/keys/{client_id}", "GET /v1/permissions"}; !slices.Equal(undocumented, want) {
		t.Errorf("undocumented %q, want %q", undocumented, want)
	}
	if want := []string{"GET /v1/nothing"}; !slices.Equal(unmounted, want) {
		t.Errorf("unmounted %q, want %q", unmounted, want)
	}
}

// The Problem schema lists exactly the problem types the server writes
// (every "urn:keygate:problem:…" literal in its non-test sources).
func TestOpenAPIProblemTypes(t *testing.T) {
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	written := map[string]bool{}
	fset := token.NewFileSet()
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, parser.SkipObjectResolution)
		if err != nil {
			t.Fatal(err)
		}
		ast.Inspect(f, func(n ast.Node) bool {
			if lit, ok := n.(*ast.BasicLit); ok && lit.Kind == token.STRING {
				if s, err := strconv.Unquote(lit.Value); err == nil && strings.HasPrefix(s, "urn:keygate:problem:") {
					written[s] = true
				}
			}
			return true
		})
	}
	if len(written) < 10 {
		t.Fatalf("found only %d problem types in %v: %v", len(written), files, written)
	}
	_, m := documentModel(t, openapi.Document())
	problem, ok := m.Components.Schemas.Get("Problem")
	if !ok {
		t.Fatal("no Problem schema")
	}
	typ, ok := problem.Schema().Properties.Get("type")
	if !ok {
		t.Fatal("Problem has no type property")
	}
	documented := map[string]bool{}
	for _, n := range typ.Schema().Enum {
		documented[n.Value] = true
	}
	for s := range written {
		if !documented[s] {
			t.Errorf("the server writes %s; the Problem schema does not list it", s)
		}
	}
	for s := range documented {
		if !written[s] {
			t.Errorf("the Problem schema lists %s; the server never writes it", s)
		}
	}
}

// liveCheck sends requests to a running keygate and validates each
// exchange against the document.
type liveCheck struct {
	e      *servertest.Env
	v      validator.Validator
	client *http.Client
}

// do sends method path with headers and body, asserts the status, and
// validates the answer against the document — and the request too when
// validRequest (a request the document allows; deliberately bad ones are
// not). It returns the answer's body.
func (c *liveCheck) do(t *testing.T, method, path string, header http.Header, body string, status int, validRequest bool) []byte {
	t.Helper()
	req := c.e.NewRequest(t, method, path, strings.NewReader(body))
	if body == "" {
		req.Body, req.ContentLength = http.NoBody, 0
	}
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := c.client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	got, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != status {
		t.Fatalf("%s %s: %d %s, want %d", method, path, resp.StatusCode, redact(got), status)
	}
	// The validator reads both bodies again.
	req.Body = io.NopCloser(strings.NewReader(body))
	resp.Body = io.NopCloser(bytes.NewReader(got))
	if ok, errs := c.v.ValidateHttpResponse(req, resp); !ok {
		for _, e := range errs {
			t.Errorf("%s %s → %d: %s: %s", method, path, status, redact(e.Message), redact(e.Reason))
			for _, f := range e.SchemaValidationErrors {
				t.Errorf("  %s: %s", f.FieldPath, redact(f.Reason))
			}
		}
		t.Fatalf("the answer does not match the document: %s", redact(got))
	}
	if validRequest {
		req.Body = io.NopCloser(strings.NewReader(body))
		if ok, errs := c.v.ValidateHttpRequestSync(req); !ok {
			for _, e := range errs {
				t.Errorf("%s %s request: %s: %s", method, path, redact(e.Message), redact(e.Reason))
			}
			t.FailNow()
		}
	}
	return got
}

// credentials are keygate secrets and JWTs: a test must not print them.
var credentials = regexp.MustCompile(`kgs_[0-9A-Za-z]+|eyJ[0-9A-Za-z_-]*\.[0-9A-Za-z_-]*\.[0-9A-Za-z_-]*`)

// redact hides secrets and tokens in text bound for the test log.
func redact[T string | []byte](text T) string {
	return credentials.ReplaceAllString(string(text), "(redacted)")
}

func bearer(tok string) http.Header { return http.Header{"Authorization": {"Bearer " + tok}} }

func formHeader(basicID, basicSecret string) http.Header {
	h := http.Header{"Content-Type": {"application/x-www-form-urlencoded"}}
	if basicID != "" {
		h.Set("Authorization", servertest.BasicAuth(basicID, basicSecret))
	}
	return h
}

func jsonBody(tok string) http.Header {
	h := bearer(tok)
	h.Set("Content-Type", "application/json")
	return h
}

// Real answers of a running keygate, successes and refusals, match the
// document (status, content type, body schema), and so do the requests
// that produced them.
func TestOpenAPIMatchesRealAnswers(t *testing.T) {
	doc, err := libopenapi.NewDocument(openapi.Document())
	if err != nil {
		t.Fatal(err)
	}
	v, errs := validator.NewValidator(doc, config.WithFormatAssertions())
	if len(errs) > 0 {
		t.Fatal(errors.Join(errs...))
	}
	e := servertest.Start(t, server.Options{}, nil)
	c := &liveCheck{e: e, v: v, client: e.NoRedirectClient()}
	ok, noAuth := http.StatusOK, http.Header(nil)

	c.do(t, "GET", "/healthz", noAuth, "", ok, true)
	c.do(t, "GET", "/readyz", noAuth, "", ok, true)
	c.do(t, "GET", "/", noAuth, "", http.StatusFound, true)
	c.do(t, "GET", "/.well-known/oauth-authorization-server", noAuth, "", ok, true)
	c.do(t, "GET", "/.well-known/jwks.json", noAuth, "", ok, true)
	c.do(t, "GET", "/statuslists", noAuth, "", ok, true)
	c.do(t, "GET", "/statuslists/1", noAuth, "", ok, true)
	served := c.do(t, "GET", openapi.Path, noAuth, "", ok, true)
	if !bytes.Equal(served, openapi.Document()) {
		t.Fatal("GET /openapi.json does not serve the embedded document")
	}

	// The OAuth endpoints.
	grant := "grant_type=client_credentials"
	var tr servertest.TokenResponse
	if err := json.Unmarshal(c.do(t, "POST", "/oauth/token", formHeader(e.AdminID, e.AdminSecret), grant, ok, true), &tr); err != nil {
		t.Fatal(err)
	}
	admin := tr.AccessToken
	c.do(t, "POST", "/oauth/token", formHeader(e.AdminID, "kgs_wrong"), grant, http.StatusUnauthorized, true)
	c.do(t, "POST", "/oauth/token", formHeader(e.AdminID, e.AdminSecret), "grant_type=password", http.StatusBadRequest, false)
	c.do(t, "POST", "/oauth/token", formHeader("", ""), grant+"&scope=x", http.StatusUnauthorized, true)

	// The management API.
	var key servertest.Key
	created := c.do(t, "POST", "/v1/teams/acme/keys", jsonBody(admin), `{"name":"Production sync","permissions":["accounting_api"]}`, http.StatusCreated, true)
	if err := json.Unmarshal(created, &key); err != nil {
		t.Fatal(err)
	}
	c.do(t, "POST", "/v1/teams/acme/keys", jsonBody(admin), `{"name":"x","permissions":["payroll"]}`, http.StatusBadRequest, true)
	c.do(t, "POST", "/v1/teams/acme/keys", http.Header{"Authorization": {"Bearer " + admin}, "Content-Type": {"text/plain"}}, `{}`, http.StatusUnsupportedMediaType, false)
	c.do(t, "GET", "/v1/teams/acme/keys", bearer(admin), "", ok, true)
	c.do(t, "GET", "/v1/teams?limit=1", bearer(admin), "", ok, true)
	c.do(t, "GET", "/v1/teams?limit=0", bearer(admin), "", http.StatusBadRequest, false)
	c.do(t, "GET", "/v1/permissions", bearer(admin), "", ok, true)
	c.do(t, "GET", "/v1/teams/acme/keys/"+key.ClientID, bearer(admin), "", ok, true)
	c.do(t, "GET", "/v1/keys/"+key.ClientID, bearer(admin), "", ok, true)
	c.do(t, "GET", "/v1/keys/kgc_unknown", bearer(admin), "", http.StatusNotFound, true)
	c.do(t, "GET", "/v1/teams/acme/keys/kgc_nokey", bearer(admin), "", http.StatusNotFound, true)
	c.do(t, "GET", "/v1/teams/-bad/keys", bearer(admin), "", http.StatusBadRequest, false)
	c.do(t, "GET", "/v1/teams", noAuth, "", http.StatusUnauthorized, false)

	// A team key: its token (client_secret_post), introspection,
	// rotation, revocation, deletion.
	body := url.Values{"grant_type": {"client_credentials"}, "client_id": {key.ClientID}, "client_secret": {key.ClientSecret}, "scope": {"accounting:read"}}
	if err := json.Unmarshal(c.do(t, "POST", "/oauth/token", formHeader("", ""), body.Encode(), ok, true), &tr); err != nil {
		t.Fatal(err)
	}
	c.do(t, "GET", "/v1/teams", bearer(tr.AccessToken), "", http.StatusUnauthorized, true) // not a management token (aud)
	c.do(t, "POST", "/oauth/introspect", formHeader(key.ClientID, key.ClientSecret), "token="+tr.AccessToken, ok, true)
	c.do(t, "POST", "/oauth/introspect", formHeader(key.ClientID, key.ClientSecret), "token=garbage", ok, true)
	c.do(t, "POST", "/oauth/introspect", formHeader(key.ClientID, key.ClientSecret), "", http.StatusBadRequest, false)
	c.do(t, "POST", "/v1/teams/acme/keys/"+key.ClientID+"/rotate", jsonBody(admin), `{"grace_period":"1h"}`, ok, true)
	c.do(t, "POST", "/v1/teams/acme/keys/"+key.ClientID+"/rotate", jsonBody(admin), `{"grace_period":"10d"}`, http.StatusBadRequest, true)
	mergePatch := http.Header{"Authorization": {"Bearer " + admin}, "Content-Type": {"application/merge-patch+json"}}
	c.do(t, "PATCH", "/v1/teams/acme/keys/"+key.ClientID, mergePatch, `{"name":"Nightly sync","permissions":["accounting_api","visualization_sdk"]}`, ok, true)
	c.do(t, "PATCH", "/v1/teams/acme/keys/"+key.ClientID, mergePatch, `{"name":null}`, http.StatusBadRequest, false)
	c.do(t, "PATCH", "/v1/teams/acme/keys/"+key.ClientID, jsonBody(admin), `{"name":"x"}`, http.StatusUnsupportedMediaType, false)
	c.do(t, "PATCH", "/v1/teams/acme/keys/kgc_nokey", mergePatch, `{"name":"x"}`, http.StatusNotFound, true)
	c.do(t, "POST", "/oauth/revoke", formHeader(key.ClientID, key.ClientSecret), "token="+tr.AccessToken, ok, true)
	c.do(t, "POST", "/v1/teams/acme/keys/"+key.ClientID+"/rotate", jsonBody(admin), `{"grace_period":"7d"}`, ok, true)
	c.do(t, "POST", "/oauth/token", formHeader(key.ClientID, "kgs_wrong"), grant, http.StatusUnauthorized, true)
	e.FlushLastUsed(t)
	c.do(t, "GET", "/v1/teams/acme/usage", bearer(admin), "", ok, true)
	c.do(t, "GET", "/v1/teams/acme/usage?granularity=hour", bearer(admin), "", ok, true)
	c.do(t, "GET", "/v1/teams/acme/usage?granularity=week", bearer(admin), "", http.StatusBadRequest, false)
	c.do(t, "GET", "/v1/teams/acme/usage?granularity=hour&from=2000-01-01", bearer(admin), "", http.StatusBadRequest, true)
	c.do(t, "DELETE", "/v1/teams/acme/keys/"+key.ClientID, bearer(admin), "", http.StatusNoContent, true)
	c.do(t, "DELETE", "/v1/teams/acme/keys/"+key.ClientID, bearer(admin), "", http.StatusNotFound, true)
	c.do(t, "GET", "/v1/teams/acme/usage", bearer(admin), "", ok, true) // a deleted key's usage

	// Leaked secrets: both shapes, a refusal; the suspended key's view and
	// its key.secret_leaked event below.
	var leaked servertest.Key
	if err := json.Unmarshal(c.do(t, "POST", "/v1/teams/acme/keys", jsonBody(admin), `{"name":"Leaky","permissions":["accounting_api"]}`, http.StatusCreated, true), &leaked); err != nil {
		t.Fatal(err)
	}
	jsonOnly := http.Header{"Content-Type": {"application/json"}}
	c.do(t, "POST", "/v1/leaked-secrets", jsonOnly, `[{"token":"`+leaked.ClientSecret+`","type":"keygate_client_secret","url":"https://example.com/x","source":"content"}]`, ok, true)
	c.do(t, "POST", "/v1/leaked-secrets", jsonOnly, `{"secrets":["kgs_nothing"]}`, ok, true)
	c.do(t, "POST", "/v1/leaked-secrets", jsonOnly, `{"secrets":[]}`, http.StatusBadRequest, false)
	c.do(t, "GET", "/v1/keys/"+leaked.ClientID, bearer(admin), "", ok, true)

	// The audit trail of all of the above.
	e.AuditTick(t) // refused calls stored, the operator-wide stream fed
	c.do(t, "GET", "/v1/teams/acme/events?limit=2", bearer(admin), "", ok, true)
	c.do(t, "GET", "/v1/teams/acme/events?action=key.created,key.deleted&since=2000-01-01T00:00:00Z", bearer(admin), "", ok, true)
	c.do(t, "GET", "/v1/events", bearer(admin), "", ok, true)
	c.do(t, "GET", "/v1/events?team_id=&action=management.auth_failed", bearer(admin), "", ok, true)
	c.do(t, "GET", "/v1/events?action=key.made", bearer(admin), "", http.StatusBadRequest, false)
	c.do(t, "GET", "/v1/teams/acme/events?until=yesterday", bearer(admin), "", http.StatusBadRequest, false)
}
