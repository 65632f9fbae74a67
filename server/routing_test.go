package server_test

// Methods and paths (issue #14, item 7): HEAD wherever GET (RFC 9110
// §9.3.2), Allow naming exactly the methods a path serves (§10.2.1), and no
// trailing-slash redirects: a stray slash is a 404 problem.

import (
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/keygate/keygate/server"
)

// TestHeadWhereverGet: every GET route also answers HEAD, with the GET
// answer's status and headers and no body, the admin check included.
func TestHeadWhereverGet(t *testing.T) {
	e := newClockEnv(t)
	k := e.CreateKey(t, "acme", "Production sync", permAccounting)
	admin := e.AdminToken(t)
	e.AssertLastUsedStored(t, e.AdminID)

	// Every GET route of the router has its HEAD, so a route added later
	// cannot forget it.
	routes := map[string][]string{}
	for _, r := range server.Routes(e.Server) {
		routes[r.Path] = append(routes[r.Path], r.Method)
	}
	gets := 0
	for path, ms := range routes {
		if slices.Contains(ms, http.MethodGet) {
			gets++
			if !slices.Contains(ms, http.MethodHead) {
				t.Errorf("GET %s is mounted without HEAD", path)
			}
		}
	}
	if gets < 15 {
		t.Fatalf("only %d GET routes read from the router", gets)
	}

	fill := strings.NewReplacer(":team_id", "acme", ":client_id", k.ClientID, "*file", "", ":shard", "0")
	for path, ms := range routes {
		// The OAuth endpoints are mounted for every method (gin's Any, with
		// TRACE) only to answer 405 in RFC 6749's form: they serve no GET.
		if !slices.Contains(ms, http.MethodGet) || slices.Contains(ms, http.MethodTrace) {
			continue
		}
		p := fill.Replace(path)
		if strings.HasPrefix(path, "/v1/admin-keys/") {
			p = strings.Replace(path, ":client_id", e.AdminID, 1) // an admin key's route
		}
		for _, tok := range []string{admin, ""} {
			name := p
			if tok == "" {
				if !strings.HasPrefix(p, "/v1/") {
					continue
				}
				name += " without a token"
			}
			t.Run(name, func(t *testing.T) {
				get := e.rawRequest(t, tok, http.MethodGet, p, "", "")
				head := e.rawRequest(t, tok, http.MethodHead, p, "", "")
				if head.Status != get.Status || head.Status == http.StatusMethodNotAllowed {
					t.Fatalf("HEAD %d, GET %d (%s)", head.Status, get.Status, get.Body)
				}
				if tok != "" && get.Status != http.StatusOK {
					t.Errorf("GET %d, want 200: %s", get.Status, get.Body)
				}
				if tok == "" && (head.Status != http.StatusUnauthorized || head.Header.Get("WWW-Authenticate") == "") {
					t.Errorf("HEAD without a token: %d, WWW-Authenticate %q", head.Status, head.Header.Get("WWW-Authenticate"))
				}
				if len(head.Body) != 0 {
					t.Errorf("HEAD has a body: %q", head.Body)
				}
				if cl := head.Header.Get("Content-Length"); cl != "" && cl != strconv.Itoa(len(get.Body)) {
					t.Errorf("HEAD Content-Length %s, GET body %d bytes", cl, len(get.Body))
				}
				for _, h := range []http.Header{get.Header, head.Header} {
					h.Del("Date")
					h.Del("X-Request-Id")
				}
				for name := range mergeKeys(get.Header, head.Header) {
					if g, h := get.Header.Values(name), head.Header.Values(name); !slices.Equal(g, h) {
						t.Errorf("header %s: GET %q, HEAD %q", name, g, h)
					}
				}
			})
		}
	}
}

func mergeKeys(hs ...http.Header) map[string]bool {
	keys := map[string]bool{}
	for _, h := range hs {
		for k := range h {
			keys[k] = true
		}
	}
	return keys
}

// TestAllowNamesServedMethods: a method a path does not serve answers 405
// whose Allow is exactly the methods that path serves.
func TestAllowNamesServedMethods(t *testing.T) {
	e := newClockEnv(t)
	k := e.CreateKey(t, "acme", "Production sync", permAccounting)
	admin := e.AdminToken(t)
	all := []string{http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete, http.MethodOptions}
	for path, served := range map[string][]string{
		"/healthz":                     {"GET", "HEAD"},
		"/readyz":                      {"GET", "HEAD"},
		"/.well-known/jwks.json":       {"GET", "HEAD"},
		"/statuslists/1":               {"GET", "HEAD"},
		"/openapi.json":                {"GET", "HEAD"},
		"/console/":                    {"GET", "HEAD"},
		"/":                            {"GET", "HEAD"},
		"/v1/teams":                    {"GET", "HEAD"},
		"/v1/keys/" + k.ClientID:       {"GET", "HEAD"},
		"/v1/teams/acme/keys":          {"GET", "HEAD", "POST"},
		keyPath("acme", k.ClientID):    {"DELETE", "GET", "HEAD", "PATCH"},
		rotatePath("acme", k.ClientID): {"POST"},
		"/oauth/token":                 {"POST"},
		"/oauth/introspect":            {"POST"},
		"/oauth/revoke":                {"POST"},
	} {
		for _, m := range all {
			if slices.Contains(served, m) {
				continue
			}
			r := e.rawRequest(t, admin, m, path, "", "")
			allow := strings.Split(r.Header.Get("Allow"), ", ")
			slices.Sort(allow)
			if r.Status != http.StatusMethodNotAllowed || !slices.Equal(allow, served) {
				t.Errorf("%s %s: %d Allow %q, want 405 Allow %q", m, path, r.Status, r.Header.Get("Allow"), strings.Join(served, ", "))
			}
		}
	}
}

// TestNoTrailingSlashRedirects: a path with a stray slash is a 404
// problem with no-store and no Location, on every method; only /console
// (not an API path) still leads to /console/.
func TestNoTrailingSlashRedirects(t *testing.T) {
	e := newClockEnv(t)
	k := e.CreateKey(t, "acme", "Production sync", permAccounting)
	admin := e.AdminToken(t)
	e.AssertLastUsedStored(t, e.AdminID)
	for _, c := range []struct{ method, path, ctype, body string }{
		{http.MethodGet, "/v1/teams/", "", ""},
		{http.MethodGet, "/v1/teams/acme/keys/", "", ""},
		{http.MethodHead, "/v1/permissions/", "", ""},
		{http.MethodPost, "/v1/teams/acme/keys/", "application/json", `{"name":"x","permissions":["accounting_api"]}`},
		{http.MethodPost, rotatePath("acme", k.ClientID) + "/", "", ""},
		{http.MethodDelete, keyPath("acme", k.ClientID) + "/", "", ""},
		{http.MethodGet, "/healthz/", "", ""},
		{http.MethodPost, "/oauth/token/", "application/x-www-form-urlencoded", "grant_type=client_credentials"},
	} {
		before := e.fullSnapshot(t)
		r := e.doNoRedirectWith(t, admin, c.method, c.path, c.ctype, c.body)
		if r.Status != http.StatusNotFound || r.Header.Get("Location") != "" || r.Header.Get("Cache-Control") != "no-store" ||
			r.Header.Get("Content-Type") != "application/problem+json" {
			t.Errorf("%s %s: %d Location %q Cache-Control %q Content-Type %q, want a 404 problem with no-store",
				c.method, c.path, r.Status, r.Header.Get("Location"), r.Header.Get("Cache-Control"), r.Header.Get("Content-Type"))
		}
		if c.method != http.MethodHead {
			if p := checkProblem(t, r, http.StatusNotFound); p.Detail != "no such endpoint: "+c.path {
				t.Errorf("%s %s: detail %q", c.method, c.path, p.Detail)
			}
		}
		e.assertFullyUnchanged(t, before)
	}
	if r := e.doNoRedirect(t, http.MethodGet, "/console"); r.Status != http.StatusMovedPermanently || r.Header.Get("Location") != "/console/" {
		t.Errorf("GET /console: %d Location %q, want 301 to /console/", r.Status, r.Header.Get("Location"))
	}
	if r := e.doNoRedirect(t, http.MethodPost, "/console"); r.Status != http.StatusNotFound {
		t.Errorf("POST /console: %d, want 404", r.Status)
	}
}

// doNoRedirectWith is rawRequest without following redirects.
func (e clockEnv) doNoRedirectWith(t *testing.T, tok, method, path, ctype, body string) response {
	t.Helper()
	client := e.NoRedirectClient()
	req := e.NewRequest(t, method, path, strings.NewReader(body))
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return response{Status: resp.StatusCode, Header: resp.Header, Body: b}
}
