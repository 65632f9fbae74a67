package openapi_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"

	"github.com/pb33f/go-yaml"
	"github.com/pb33f/libopenapi"
	validator "github.com/pb33f/libopenapi-validator"
	"github.com/pb33f/libopenapi-validator/config"
	"github.com/pb33f/libopenapi-validator/schema_validation"
	"github.com/pb33f/libopenapi/datamodel/high/base"
	v3 "github.com/pb33f/libopenapi/datamodel/high/v3"
	"github.com/pb33f/libopenapi/orderedmap"

	"github.com/keygate/keygate/credential"
	"github.com/keygate/keygate/openapi"
)

// model parses raw with libopenapi and builds its OpenAPI 3 model.
func model(t *testing.T, raw []byte) (libopenapi.Document, *v3.Document) {
	t.Helper()
	doc, err := libopenapi.NewDocument(raw)
	if err != nil {
		t.Fatalf("parse the document: %v", err)
	}
	m, err := doc.BuildV3Model()
	if err != nil {
		t.Fatalf("build the OpenAPI 3 model: %v", err)
	}
	return doc, &m.Model
}

// The document is OpenAPI 3.1 and valid against the 3.1 specification's
// schema.
func TestDocumentIsValidOpenAPI31(t *testing.T) {
	doc, m := model(t, openapi.Document())
	if !strings.HasPrefix(m.Version, "3.1.") {
		t.Fatalf("openapi %q, want 3.1.x", m.Version)
	}
	v, errs := validator.NewValidator(doc)
	if len(errs) > 0 {
		t.Fatalf("validator: %v", errors.Join(errs...))
	}
	if ok, verrs := v.ValidateDocument(); !ok {
		for _, e := range verrs {
			t.Errorf("%s: %s", e.Message, e.Reason)
			for _, f := range e.SchemaValidationErrors {
				t.Errorf("  at %s (line %d): %s", f.KeywordLocation, f.Line, f.Reason)
			}
		}
		t.Fatal("the document does not validate against the OpenAPI 3.1 schema")
	}
	// Every component the operations use resolves: an unresolved $ref
	// leaves a schema that cannot be built.
	if n := len(m.Index.GetReferenceIndexErrors()); n > 0 {
		t.Fatalf("%d reference errors: %v", n, m.Index.GetReferenceIndexErrors())
	}
}

// exampleChecker validates documented examples against their schemas.
type exampleChecker struct {
	sv       schema_validation.SchemaValidator
	problems []string
	checked  int
}

// checkExamples validates every example of raw (parameters, headers,
// request bodies and answers of every operation; the components they
// refer to, and the examples keyword of component schemas) against its
// schema, with format assertions (date-time, uri). It returns one line per
// example that fails, and the number checked. A media type of an operation
// without any example is reported too: the document promises examples of
// requests and answers.
func checkExamples(t *testing.T, raw []byte) (problems []string, checked int) {
	t.Helper()
	_, m := model(t, raw)
	c := &exampleChecker{sv: schema_validation.NewSchemaValidator(config.WithFormatAssertions())}
	for path, item := range m.Paths.PathItems.FromOldest() {
		for _, p := range item.Parameters {
			if !p.IsReference() {
				c.parameter(path+" parameter "+p.Name, p)
			}
		}
		for method, op := range item.GetOperations().FromOldest() {
			where := strings.ToUpper(method) + " " + path
			for _, p := range op.Parameters {
				if !p.IsReference() {
					c.parameter(where+" parameter "+p.Name, p)
				}
			}
			if op.RequestBody != nil {
				c.content(where+" request", op.RequestBody.Content, true)
			}
			if op.Responses == nil {
				continue
			}
			for code, r := range op.Responses.Codes.FromOldest() {
				if ref := op.Responses.GoLow().FindResponseByCode(code); ref != nil && ref.IsReference() {
					continue // checked once, with the components
				}
				// The document describes itself as any object; an example
				// of it would be the document again.
				c.response(fmt.Sprintf("%s %s", where, code), r, path != openapi.Path)
			}
		}
	}
	if comp := m.Components; comp != nil {
		for name, r := range comp.Responses.FromOldest() {
			c.response("components.responses."+name, r, true)
		}
		for name, p := range comp.Parameters.FromOldest() {
			c.parameter("components.parameters."+name, p)
		}
		for name, h := range comp.Headers.FromOldest() {
			c.header("components.headers."+name, h)
		}
		for name, proxy := range comp.Schemas.FromOldest() {
			s, err := proxy.BuildSchema()
			if err != nil {
				c.fail("components.schemas.%s: %v", name, err)
				continue
			}
			for i, ex := range s.Examples {
				c.value(fmt.Sprintf("components.schemas.%s examples[%d]", name, i), proxy, ex)
			}
		}
	}
	return c.problems, c.checked
}

func (c *exampleChecker) fail(format string, args ...any) {
	c.problems = append(c.problems, fmt.Sprintf(format, args...))
}

func (c *exampleChecker) response(where string, r *v3.Response, wantExample bool) {
	for name, h := range r.Headers.FromOldest() {
		if !h.IsReference() {
			c.header(where+" header "+name, h)
		}
	}
	c.content(where, r.Content, wantExample)
}

func (c *exampleChecker) content(where string, content *orderedmap.Map[string, *v3.MediaType], wantExample bool) {
	for mt, media := range content.FromOldest() {
		w := where + " " + mt
		if media.Example == nil && media.Examples.Len() == 0 {
			if wantExample {
				c.fail("%s: no example", w)
			}
			continue
		}
		c.examples(w, media.Schema, media.Example, media.Examples)
	}
}

func (c *exampleChecker) parameter(where string, p *v3.Parameter) {
	c.examples(where, p.Schema, p.Example, p.Examples)
}

func (c *exampleChecker) header(where string, h *v3.Header) {
	c.examples(where, h.Schema, h.Example, h.Examples)
}

// examples checks an example and named examples against one schema.
func (c *exampleChecker) examples(where string, schema *base.SchemaProxy, example *yaml.Node, named *orderedmap.Map[string, *base.Example]) {
	if example != nil {
		c.value(where+" example", schema, example)
	}
	for name, ex := range named.FromOldest() {
		if ex.Value == nil {
			c.fail("%s example %s: no value", where, name)
			continue
		}
		c.value(where+" example "+name, schema, ex.Value)
	}
}

func (c *exampleChecker) value(where string, proxy *base.SchemaProxy, node *yaml.Node) {
	c.checked++
	if proxy == nil {
		c.fail("%s: an example without a schema", where)
		return
	}
	schema, err := proxy.BuildSchema()
	if err != nil || schema == nil {
		c.fail("%s: schema: %v", where, err)
		return
	}
	var v any
	if err := node.Decode(&v); err != nil {
		c.fail("%s: decode the example: %v", where, err)
		return
	}
	payload, err := json.Marshal(v)
	if err != nil {
		c.fail("%s: the example is not JSON: %v", where, err)
		return
	}
	if ok, errs := c.sv.ValidateSchemaBytes(schema, payload); !ok {
		var reasons []string
		for _, e := range errs {
			reasons = append(reasons, e.Reason)
			for _, f := range e.SchemaValidationErrors {
				reasons = append(reasons, f.FieldPath+": "+f.Reason)
			}
		}
		c.fail("%s does not match its schema: %s", where, strings.Join(reasons, "; "))
	}
}

// Every example of the document matches its schema, and every request and
// answer with a body has one.
func TestExamplesMatchSchemas(t *testing.T) {
	problems, checked := checkExamples(t, openapi.Document())
	for _, p := range problems {
		t.Error(p)
	}
	// The walk must have found the examples: one per described body and
	// then some. A walker that silently saw nothing would pass above.
	if checked < 80 {
		t.Errorf("only %d examples checked; the walk misses some", checked)
	}
	t.Logf("%d examples checked", checked)
}

// A deliberate mistake is caught: examples with a wrong type, in an
// operation and in a shared component.
func TestExampleCheckCatchesWrongType(t *testing.T) {
	for _, c := range []struct {
		name, want string
		edit       func(doc map[string]any)
	}{
		{"expires_in as a string", "POST /oauth/token 200 application/json example token", func(doc map[string]any) {
			ex := dig(t, doc, "paths", "/oauth/token", "post", "responses", "200", "content", "application/json", "examples", "token", "value")
			ex["expires_in"] = "900"
		}},
		{"problem status as a string", "components.responses.Forbidden application/problem+json example teamToken", func(doc map[string]any) {
			ex := dig(t, doc, "components", "responses", "Forbidden", "content", "application/problem+json", "examples", "teamToken", "value")
			ex["status"] = "403"
		}},
		{"created_at not a date-time", "POST /v1/teams/{team_id}/keys 201 application/json example created", func(doc map[string]any) {
			ex := dig(t, doc, "paths", "/v1/teams/{team_id}/keys", "post", "responses", "201", "content", "application/json", "examples", "created", "value")
			ex["created_at"] = "yesterday"
		}},
		{"an undocumented field", "GET /v1/teams/{team_id}/keys/{client_id} 200 application/json example key", func(doc map[string]any) {
			ex := dig(t, doc, "paths", "/v1/teams/{team_id}/keys/{client_id}", "get", "responses", "200", "content", "application/json", "examples", "key", "value")
			ex["secret_hash"] = "…"
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			var doc map[string]any
			if err := json.Unmarshal(openapi.Document(), &doc); err != nil {
				t.Fatal(err)
			}
			c.edit(doc)
			raw, err := json.Marshal(doc)
			if err != nil {
				t.Fatal(err)
			}
			problems, _ := checkExamples(t, raw)
			if len(problems) != 1 || !strings.HasPrefix(problems[0], c.want+" does not match its schema") {
				t.Fatalf("problems %q, want exactly one for %q", problems, c.want)
			}
		})
	}
}

// dig returns the object at path in doc, or fails the test.
func dig(t *testing.T, doc map[string]any, path ...string) map[string]any {
	t.Helper()
	cur := doc
	for _, p := range path {
		next, ok := cur[p].(map[string]any)
		if !ok {
			t.Fatalf("no object at %q in %v", p, path)
		}
		cur = next
	}
	return cur
}

// Example secrets look like keygate secrets but carry a wrong checksum, so
// secret scanners (which check it) do not flag the document and keygate
// refuses them.
func TestExampleSecretsHaveAWrongChecksum(t *testing.T) {
	secrets := regexp.MustCompile(`kgs_[0-9A-Za-z]+`).FindAllString(string(openapi.Document()), -1)
	if len(secrets) == 0 {
		t.Fatal("no example secret found")
	}
	for _, s := range secrets {
		if len(s) != credential.SecretLen {
			t.Errorf("%s: %d characters, want %d (an example should look real)", s, len(s), credential.SecretLen)
			continue
		}
		err := credential.CheckSecretFormat(s)
		if err == nil || !strings.Contains(err.Error(), "checksum") {
			t.Errorf("%s: CheckSecretFormat = %v, want a checksum mismatch", s, err)
		}
	}
}

// The handler serves the embedded document with an ETag and answers a
// matching If-None-Match with 304.
func TestHandler(t *testing.T) {
	h := openapi.Handler()
	get := func(method string, header http.Header) *httptest.ResponseRecorder {
		req := httptest.NewRequest(method, openapi.Path, nil)
		for k, v := range header {
			req.Header[k] = v
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		return w
	}
	w := get(http.MethodGet, nil)
	if w.Code != http.StatusOK || w.Header().Get("Content-Type") != "application/json" {
		t.Fatalf("GET: %d %q", w.Code, w.Header().Get("Content-Type"))
	}
	if w.Body.String() != string(openapi.Document()) {
		t.Fatal("GET: the body is not the embedded document")
	}
	if !json.Valid(w.Body.Bytes()) {
		t.Fatal("GET: the body is not JSON")
	}
	if cc := w.Header().Get("Cache-Control"); cc != "public, max-age=3600" {
		t.Errorf("Cache-Control %q", cc)
	}
	tag := w.Header().Get("ETag")
	if !regexp.MustCompile(`^"[A-Za-z0-9_-]{16,}"$`).MatchString(tag) {
		t.Fatalf("ETag %q is not a strong entity tag", tag)
	}
	for _, inm := range []string{tag, "W/" + tag, `"other", ` + tag, "*"} {
		w := get(http.MethodGet, http.Header{"If-None-Match": {inm}})
		if w.Code != http.StatusNotModified || w.Body.Len() != 0 || w.Header().Get("ETag") != tag {
			t.Errorf("If-None-Match %s: %d, %d bytes, ETag %q; want 304, none, %s", inm, w.Code, w.Body.Len(), w.Header().Get("ETag"), tag)
		}
	}
	if w := get(http.MethodGet, http.Header{"If-None-Match": {`"other"`}}); w.Code != http.StatusOK || w.Body.Len() == 0 {
		t.Errorf("another tag: %d, %d bytes; want 200 with the document", w.Code, w.Body.Len())
	}
	if w := get(http.MethodHead, nil); w.Code != http.StatusOK || w.Body.Len() != 0 {
		t.Errorf("HEAD: %d, %d bytes", w.Code, w.Body.Len())
	}
	// Document returns a copy: a caller cannot change what is served.
	d := openapi.Document()
	d[0] = 'x'
	if openapi.Document()[0] == 'x' {
		t.Error("Document returned the embedded bytes, not a copy")
	}
}
