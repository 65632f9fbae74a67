package server_test

// Bad token requests: each gets the status and RFC 6749 §5.2 error it should,
// and leaves the store exactly as it was (last_used_at included, checked
// again after a last-used flush).

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keygate/keygate/server/servertest"
	"github.com/keygate/keygate/store"
)

// tokenFixture is a store with an admin key, two keys of team acme and one
// deleted key, none of them used yet (so a wrongly recorded use would show as
// a new last_used_at).
type tokenFixture struct {
	e          *testEnv
	acct       keyJSON // acme, accounting_api
	viz        keyJSON // acme, visualization_sdk
	deleted    keyJSON // acme, deleted
	admin      string  // admin token
	allSecrets []string
}

func newTokenFixture(tb testing.TB) *tokenFixture {
	tb.Helper()
	return newTokenFixtureOn(tb, servertest.Bolt())
}

// newTokenFixtureOn is newTokenFixture on the backend b.
func newTokenFixtureOn(tb testing.TB, b servertest.Backend) *tokenFixture {
	tb.Helper()
	e := startEnv(tb, servertest.Config{Backend: b})
	f := &tokenFixture{e: e, admin: e.AdminToken(tb)}
	f.acct = e.CreateKeyWith(tb, f.admin, "acme", "accounting", permAccounting)
	f.viz = e.CreateKeyWith(tb, f.admin, "acme", "viz", permVisualization)
	f.deleted = e.CreateKeyWith(tb, f.admin, "acme", "gone", permAccounting)
	if r := e.API(tb, f.admin, http.MethodDelete, "/v1/teams/acme/keys/"+f.deleted.ClientID, nil); r.Status != http.StatusNoContent {
		tb.Fatalf("delete: %s", r)
	}
	f.allSecrets = []string{e.AdminSecret, f.acct.ClientSecret, f.viz.ClientSecret, f.deleted.ClientSecret}
	// The admin key's first use is written at the next last-used flush; run
	// it now so it cannot pass for a change made by the request under test.
	e.AssertLastUsedStored(tb, e.AdminID)
	return f
}

// rawTokenRequest builds a request to /oauth/token with full control over
// method, query, content type, Authorization and body.
type rawTokenRequest struct {
	method      string // default POST
	query       string // raw query, without '?'
	contentType string // default form; "-" for none
	auth        string // Authorization header value
	body        string
	chunked     bool // send the body without Content-Length
}

func (f *tokenFixture) send(tb testing.TB, rr rawTokenRequest) response {
	tb.Helper()
	method := rr.method
	if method == "" {
		method = http.MethodPost
	}
	path := "/oauth/token"
	if rr.query != "" {
		path += "?" + rr.query
	}
	var body io.Reader
	if rr.body != "" || method == http.MethodPost {
		body = strings.NewReader(rr.body)
		if rr.chunked {
			body = io.MultiReader(body) // unknown length: chunked encoding
		}
	}
	req := f.e.NewRequest(tb, method, path, body)
	switch rr.contentType {
	case "":
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	case "-":
	default:
		req.Header.Set("Content-Type", rr.contentType)
	}
	if rr.auth != "" {
		req.Header.Set("Authorization", rr.auth)
	}
	return f.e.Do(tb, req)
}

func form(kv ...string) string {
	v := url.Values{}
	for i := 0; i+1 < len(kv); i += 2 {
		v.Add(kv[i], kv[i+1])
	}
	return v.Encode()
}

func rawBasic(s string) string { return "Basic " + base64.StdEncoding.EncodeToString([]byte(s)) }

// badChecksum changes the last character of a secret: still base62, same
// length, but the CRC32 no longer matches.
func badChecksum(s string) string {
	last := s[len(s)-1]
	repl := byte('A')
	if last == 'A' {
		repl = 'B'
	}
	return s[:len(s)-1] + string(repl)
}

func TestTokenBadRequests(t *testing.T) {
	const cc = "client_credentials"
	type tcase struct {
		name   string
		req    func(f *tokenFixture) rawTokenRequest
		status int
		code   string
		check  func(t *testing.T, r response)
	}
	basicA := func(f *tokenFixture) string { return servertest.BasicAuth(f.acct.ClientID, f.acct.ClientSecret) }
	valid := func(f *tokenFixture) rawTokenRequest {
		return rawTokenRequest{auth: basicA(f), body: form("grant_type", cc)}
	}
	with := func(mod func(f *tokenFixture, r *rawTokenRequest)) func(f *tokenFixture) rawTokenRequest {
		return func(f *tokenFixture) rawTokenRequest {
			r := valid(f)
			mod(f, &r)
			return r
		}
	}
	allowPost := func(t *testing.T, r response) {
		if got := r.Header.Get("Allow"); got != http.MethodPost {
			t.Errorf("Allow %q, want POST", got)
		}
	}
	big := strings.Repeat("x", 9000)

	cases := []tcase{
		// Method.
		{"GET", with(func(f *tokenFixture, r *rawTokenRequest) { r.method, r.body = http.MethodGet, "" }), 405, "invalid_request", allowPost},
		{"GET with credentials in query", with(func(f *tokenFixture, r *rawTokenRequest) {
			r.method, r.body, r.query = http.MethodGet, "", form("grant_type", cc, "client_id", f.acct.ClientID, "client_secret", f.acct.ClientSecret)
		}), 405, "invalid_request", allowPost},
		{"PUT", with(func(f *tokenFixture, r *rawTokenRequest) { r.method = http.MethodPut }), 405, "invalid_request", allowPost},
		{"DELETE", with(func(f *tokenFixture, r *rawTokenRequest) { r.method = http.MethodDelete }), 405, "invalid_request", allowPost},
		{"PATCH oversized JSON (method decides first)", with(func(f *tokenFixture, r *rawTokenRequest) {
			r.method, r.contentType, r.body = http.MethodPatch, "application/json", big
		}), 405, "invalid_request", allowPost},

		// Size.
		{"body over 8 KiB", with(func(f *tokenFixture, r *rawTokenRequest) { r.body = form("grant_type", cc, "pad", big) }), 413, "invalid_request", nil},
		{"body over 8 KiB, chunked", with(func(f *tokenFixture, r *rawTokenRequest) {
			r.body, r.chunked = form("grant_type", cc, "pad", big), true
		}), 413, "invalid_request", nil},
		{"body over 8 KiB with a JSON content type (size decides first)", with(func(f *tokenFixture, r *rawTokenRequest) {
			r.body, r.contentType = big, "application/json"
		}), 413, "invalid_request", nil},

		// Content type.
		{"Content-Type application/json", with(func(f *tokenFixture, r *rawTokenRequest) {
			r.contentType, r.body = "application/json", `{"grant_type":"client_credentials"}`
		}), 400, "invalid_request", nil},
		{"JSON content type with a form body", with(func(f *tokenFixture, r *rawTokenRequest) { r.contentType = "application/json" }), 400, "invalid_request", nil},
		{"no Content-Type", with(func(f *tokenFixture, r *rawTokenRequest) { r.contentType = "-" }), 400, "invalid_request", nil},
		{"multipart/form-data", with(func(f *tokenFixture, r *rawTokenRequest) {
			r.contentType = "multipart/form-data; boundary=xyz"
			r.body = "--xyz\r\nContent-Disposition: form-data; name=\"grant_type\"\r\n\r\nclient_credentials\r\n--xyz--\r\n"
		}), 400, "invalid_request", nil},
		{"text/plain", with(func(f *tokenFixture, r *rawTokenRequest) { r.contentType = "text/plain" }), 400, "invalid_request", nil},

		// Query string, repeats, two methods.
		{"query parameter grant_type", with(func(f *tokenFixture, r *rawTokenRequest) { r.query = "grant_type=client_credentials" }), 400, "invalid_request", nil},
		{"client_secret in the query string", func(f *tokenFixture) rawTokenRequest {
			return rawTokenRequest{query: form("client_secret", f.acct.ClientSecret), body: form("grant_type", cc, "client_id", f.acct.ClientID)}
		}, 400, "invalid_request", nil},
		{"query parameter without credentials (400 before 401)", func(f *tokenFixture) rawTokenRequest {
			return rawTokenRequest{query: "x=1", body: form("grant_type", cc)}
		}, 400, "invalid_request", nil},
		{"duplicate grant_type", with(func(f *tokenFixture, r *rawTokenRequest) {
			r.body = form("grant_type", cc, "grant_type", cc)
		}), 400, "invalid_request", nil},
		{"duplicate grant_type, different values", with(func(f *tokenFixture, r *rawTokenRequest) {
			r.body = form("grant_type", cc, "grant_type", "password")
		}), 400, "invalid_request", nil},
		{"duplicate client_id", func(f *tokenFixture) rawTokenRequest {
			return rawTokenRequest{body: form("grant_type", cc, "client_id", f.acct.ClientID, "client_id", f.acct.ClientID, "client_secret", f.acct.ClientSecret)}
		}, 400, "invalid_request", nil},
		{"duplicate client_secret", func(f *tokenFixture) rawTokenRequest {
			return rawTokenRequest{body: form("grant_type", cc, "client_id", f.acct.ClientID, "client_secret", f.acct.ClientSecret, "client_secret", f.acct.ClientSecret)}
		}, 400, "invalid_request", nil},
		{"duplicate scope", with(func(f *tokenFixture, r *rawTokenRequest) {
			r.body = form("grant_type", cc, "scope", "common:read", "scope", "common:read")
		}), 400, "invalid_request", nil},
		{"Basic and client_secret in the body", func(f *tokenFixture) rawTokenRequest {
			return rawTokenRequest{auth: basicA(f), body: form("grant_type", cc, "client_id", f.acct.ClientID, "client_secret", f.acct.ClientSecret)}
		}, 400, "invalid_request", nil},
		{"Basic and client_secret only in the body", func(f *tokenFixture) rawTokenRequest {
			return rawTokenRequest{auth: basicA(f), body: form("grant_type", cc, "client_secret", f.acct.ClientSecret)}
		}, 400, "invalid_request", nil},
		{"Basic and a different client_id in the body", func(f *tokenFixture) rawTokenRequest {
			return rawTokenRequest{auth: basicA(f), body: form("grant_type", cc, "client_id", f.viz.ClientID)}
		}, 400, "invalid_request", nil},
		{"not form encoding", with(func(f *tokenFixture, r *rawTokenRequest) { r.body = "grant_type=client_credentials&x=%zz" }), 400, "invalid_request", nil},

		// Grant type.
		{"missing grant_type", with(func(f *tokenFixture, r *rawTokenRequest) { r.body = form("scope", "common:read") }), 400, "invalid_request", nil},
		{"empty body", with(func(f *tokenFixture, r *rawTokenRequest) { r.body = "" }), 400, "invalid_request", nil},
		{"empty grant_type", with(func(f *tokenFixture, r *rawTokenRequest) { r.body = form("grant_type", "") }), 400, "invalid_request", nil},
		{"missing grant_type without credentials (400 before 401)", func(f *tokenFixture) rawTokenRequest {
			return rawTokenRequest{body: form("scope", "x")}
		}, 400, "invalid_request", nil},
		{"grant_type=password", with(func(f *tokenFixture, r *rawTokenRequest) {
			r.body = form("grant_type", "password", "username", "u", "password", "p")
		}), 400, "unsupported_grant_type", nil},
		{"grant_type=authorization_code", with(func(f *tokenFixture, r *rawTokenRequest) {
			r.body = form("grant_type", "authorization_code", "code", "abc", "redirect_uri", "https://example.com/cb")
		}), 400, "unsupported_grant_type", nil},
		{"grant_type=refresh_token", with(func(f *tokenFixture, r *rawTokenRequest) {
			r.body = form("grant_type", "refresh_token", "refresh_token", "abc")
		}), 400, "unsupported_grant_type", nil},
		{"grant_type=jwt-bearer", with(func(f *tokenFixture, r *rawTokenRequest) {
			r.body = form("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer", "assertion", "x.y.z")
		}), 400, "unsupported_grant_type", nil},
		{"grant_type in another case", with(func(f *tokenFixture, r *rawTokenRequest) { r.body = form("grant_type", "Client_Credentials") }), 400, "unsupported_grant_type", nil},
		{"password grant with a wrong secret (grant type decides before credentials)", func(f *tokenFixture) rawTokenRequest {
			return rawTokenRequest{auth: servertest.BasicAuth(f.acct.ClientID, f.viz.ClientSecret), body: form("grant_type", "password", "username", "u", "password", "p")}
		}, 400, "unsupported_grant_type", nil},

		// Client authentication.
		{"no credentials", func(f *tokenFixture) rawTokenRequest {
			return rawTokenRequest{body: form("grant_type", cc)}
		}, 401, "invalid_client", nil},
		{"Basic header not base64", with(func(f *tokenFixture, r *rawTokenRequest) { r.auth = "Basic !!!not-base64!!!" }), 401, "invalid_client", nil},
		{"Basic header without a colon", func(f *tokenFixture) rawTokenRequest {
			return rawTokenRequest{auth: rawBasic(f.acct.ClientID + f.acct.ClientSecret), body: form("grant_type", cc)}
		}, 401, "invalid_client", nil},
		{"Basic with nothing after the scheme", with(func(f *tokenFixture, r *rawTokenRequest) { r.auth = "Basic " }), 401, "invalid_client", nil},
		{"Basic with an empty id", func(f *tokenFixture) rawTokenRequest {
			return rawTokenRequest{auth: rawBasic(":" + f.acct.ClientSecret), body: form("grant_type", cc)}
		}, 401, "invalid_client", nil},
		{"Basic with an empty secret", func(f *tokenFixture) rawTokenRequest {
			return rawTokenRequest{auth: rawBasic(f.acct.ClientID + ":"), body: form("grant_type", cc)}
		}, 401, "invalid_client", nil},
		{"Bearer scheme", func(f *tokenFixture) rawTokenRequest {
			return rawTokenRequest{auth: "Bearer " + f.admin, body: form("grant_type", cc)}
		}, 401, "invalid_client", nil},
		{"Bearer scheme with a form client_id", func(f *tokenFixture) rawTokenRequest {
			return rawTokenRequest{auth: "Bearer " + f.admin, body: form("grant_type", cc, "client_id", f.acct.ClientID)}
		}, 401, "invalid_client", nil},
		// With a hash-only store GetSecret() is "": had go-oauth2 reached its
		// fallback `secret == GetSecret()` compare (apiKey not implementing
		// oauth2.ClientPasswordVerifier), len(GetSecret()) == 0 would skip the
		// check and this wrong secret would get a token. It must be 401.
		{"wrong secret (Basic)", func(f *tokenFixture) rawTokenRequest {
			return rawTokenRequest{auth: servertest.BasicAuth(f.acct.ClientID, "kgs_wrong"), body: form("grant_type", cc)}
		}, 401, "invalid_client", nil},
		{"wrong secret (form)", func(f *tokenFixture) rawTokenRequest {
			return rawTokenRequest{body: form("grant_type", cc, "client_id", f.acct.ClientID, "client_secret", "wrong")}
		}, 401, "invalid_client", nil},
		{"wrong secret for the admin key", func(f *tokenFixture) rawTokenRequest {
			return rawTokenRequest{auth: servertest.BasicAuth(f.e.AdminID, f.acct.ClientSecret), body: form("grant_type", cc)}
		}, 401, "invalid_client", nil},
		{"secret of another key", func(f *tokenFixture) rawTokenRequest {
			return rawTokenRequest{auth: servertest.BasicAuth(f.acct.ClientID, f.viz.ClientSecret), body: form("grant_type", cc)}
		}, 401, "invalid_client", nil},
		{"unknown client_id", func(f *tokenFixture) rawTokenRequest {
			return rawTokenRequest{auth: servertest.BasicAuth("kgc_unknownunknownunknown0000", f.acct.ClientSecret), body: form("grant_type", cc)}
		}, 401, "invalid_client", nil},
		{"client_id in another case", func(f *tokenFixture) rawTokenRequest {
			return rawTokenRequest{auth: servertest.BasicAuth(strings.ToUpper(f.acct.ClientID), f.acct.ClientSecret), body: form("grant_type", cc)}
		}, 401, "invalid_client", nil},
		{"deleted key", func(f *tokenFixture) rawTokenRequest {
			return rawTokenRequest{auth: servertest.BasicAuth(f.deleted.ClientID, f.deleted.ClientSecret), body: form("grant_type", cc)}
		}, 401, "invalid_client", nil},
		{"client_id without secret", func(f *tokenFixture) rawTokenRequest {
			return rawTokenRequest{body: form("grant_type", cc, "client_id", f.acct.ClientID)}
		}, 401, "invalid_client", nil},
		{"client_secret without client_id", func(f *tokenFixture) rawTokenRequest {
			return rawTokenRequest{body: form("grant_type", cc, "client_secret", f.acct.ClientSecret)}
		}, 401, "invalid_client", nil},
		{"secret with a bad checksum", func(f *tokenFixture) rawTokenRequest {
			return rawTokenRequest{auth: servertest.BasicAuth(f.acct.ClientID, badChecksum(f.acct.ClientSecret)), body: form("grant_type", cc)}
		}, 401, "invalid_client", nil},
		{"secret with a trailing newline", func(f *tokenFixture) rawTokenRequest {
			return rawTokenRequest{auth: servertest.BasicAuth(f.acct.ClientID, f.acct.ClientSecret+"\n"), body: form("grant_type", cc)}
		}, 401, "invalid_client", nil},

		// Scope: decided only after authentication.
		{"over-broad scope", func(f *tokenFixture) rawTokenRequest {
			return rawTokenRequest{auth: servertest.BasicAuth(f.viz.ClientID, f.viz.ClientSecret), body: form("grant_type", cc, "scope", "accounting:read")}
		}, 400, "invalid_scope", nil},
		{"partly over-broad scope", func(f *tokenFixture) rawTokenRequest {
			return rawTokenRequest{auth: servertest.BasicAuth(f.viz.ClientID, f.viz.ClientSecret), body: form("grant_type", cc, "scope", "visualizations:read accounting:read")}
		}, 400, "invalid_scope", nil},
		{"keys:admin asked by a team key", with(func(f *tokenFixture, r *rawTokenRequest) { r.body = form("grant_type", cc, "scope", "keys:admin") }), 400, "invalid_scope", nil},
		{"team scope asked by the admin key", func(f *tokenFixture) rawTokenRequest {
			return rawTokenRequest{auth: servertest.BasicAuth(f.e.AdminID, f.e.AdminSecret), body: form("grant_type", cc, "scope", "accounting:read")}
		}, 400, "invalid_scope", nil},
		{"unknown scope", with(func(f *tokenFixture, r *rawTokenRequest) { r.body = form("grant_type", cc, "scope", "payroll:read") }), 400, "invalid_scope", nil},
		{"scope with a double space", with(func(f *tokenFixture, r *rawTokenRequest) {
			r.body = form("grant_type", cc, "scope", "common:read  accounting:read")
		}), 400, "invalid_scope", nil},
		{"scope with a trailing space", with(func(f *tokenFixture, r *rawTokenRequest) { r.body = form("grant_type", cc, "scope", "common:read ") }), 400, "invalid_scope", nil},
		{"scope with a leading space", with(func(f *tokenFixture, r *rawTokenRequest) { r.body = form("grant_type", cc, "scope", " common:read") }), 400, "invalid_scope", nil},
		{"scope with a quote", with(func(f *tokenFixture, r *rawTokenRequest) { r.body = form("grant_type", cc, "scope", `common:read"`) }), 400, "invalid_scope", nil},
		{"scope with a tab", with(func(f *tokenFixture, r *rawTokenRequest) {
			r.body = form("grant_type", cc, "scope", "common:read\taccounting:read")
		}), 400, "invalid_scope", nil},
		{"scope with a backslash", with(func(f *tokenFixture, r *rawTokenRequest) { r.body = form("grant_type", cc, "scope", `common\read`) }), 400, "invalid_scope", nil},
		{"scope only a space", with(func(f *tokenFixture, r *rawTokenRequest) { r.body = form("grant_type", cc, "scope", " ") }), 400, "invalid_scope", nil},
		// RFC 6749 §3.3: scope present is one or more scope tokens; empty is
		// not "all the key may have" (absent is).
		{"empty scope", with(func(f *tokenFixture, r *rawTokenRequest) { r.body = form("grant_type", cc, "scope", "") }), 400, "invalid_scope", emptyScopeAnswer},
		{"empty scope, form credentials", func(f *tokenFixture) rawTokenRequest {
			return rawTokenRequest{body: "grant_type=client_credentials&scope=&client_id=" + f.acct.ClientID + "&client_secret=" + f.acct.ClientSecret}
		}, 400, "invalid_scope", emptyScopeAnswer},
		{"empty scope, admin key", func(f *tokenFixture) rawTokenRequest {
			return rawTokenRequest{auth: servertest.BasicAuth(f.e.AdminID, f.e.AdminSecret), body: "scope&grant_type=client_credentials"}
		}, 400, "invalid_scope", emptyScopeAnswer},
		{"unknown client and empty scope (authentication first)", func(f *tokenFixture) rawTokenRequest {
			return rawTokenRequest{auth: servertest.BasicAuth("kgc_nobody", "wrong"), body: form("grant_type", cc, "scope", "")}
		}, 401, "invalid_client", nil},
		{"wrong secret and over-broad scope (authentication first)", func(f *tokenFixture) rawTokenRequest {
			return rawTokenRequest{auth: servertest.BasicAuth(f.viz.ClientID, "wrong"), body: form("grant_type", cc, "scope", "accounting:read")}
		}, 401, "invalid_client", nil},
		{"unknown client and malformed scope (authentication first)", func(f *tokenFixture) rawTokenRequest {
			return rawTokenRequest{auth: servertest.BasicAuth("kgc_nobody", "wrong"), body: form("grant_type", cc, "scope", "a  b")}
		}, 401, "invalid_client", nil},
		{"deleted key and keys:admin (authentication first)", func(f *tokenFixture) rawTokenRequest {
			return rawTokenRequest{auth: servertest.BasicAuth(f.deleted.ClientID, f.deleted.ClientSecret), body: form("grant_type", cc, "scope", "keys:admin")}
		}, 401, "invalid_client", nil},
	}
	if len(cases) < 25 {
		t.Fatalf("only %d cases", len(cases))
	}

	// Each case gets its own store, so "nothing changed" is attributable to
	// that one request. The cases run concurrently (plain goroutines, not
	// t.Parallel, so the cases' store set-ups overlap whatever -parallel
	// is).
	var wg sync.WaitGroup
	for _, c := range cases {
		wg.Go(func() {
			t.Run(c.name, func(t *testing.T) {
				f := newTokenFixture(t)
				before := f.e.Snapshot(t)
				r := f.send(t, c.req(f))
				servertest.CheckOAuthError(t, r, c.status, c.code)
				if c.check != nil {
					c.check(t, r)
				}
				for _, s := range f.allSecrets {
					if strings.Contains(string(r.Body), s) || strings.Contains(r.Header.Get("WWW-Authenticate"), s) {
						t.Errorf("the response echoes a secret: %s", r.Body)
					}
				}
				if strings.Contains(string(r.Body), "kgs_") || strings.Contains(string(r.Body), "goroutine") {
					t.Errorf("the error body carries a secret or a stack: %s", r.Body)
				}
				f.e.AssertUnchanged(t, before)
			})
		})
	}
	wg.Wait()
}

// emptyScopeAnswer checks the whole body of the answer to scope=.
func emptyScopeAnswer(t *testing.T, r response) {
	t.Helper()
	const want = `{"error":"invalid_scope","error_description":"scope is empty: name the scopes you need, or leave the parameter out for every scope of the key"}`
	if got := strings.TrimSpace(string(r.Body)); got != want {
		t.Errorf("body %s, want %s", got, want)
	}
}

// TestTokenSameClientIDInBasicAndForm is the positive control for the "two
// authentication methods" cases: a form client_id equal to the Basic one is
// allowed. It also proves the "nothing changed" check can see a use: a
// successful exchange changes last_used_at by the next last-used flush.
func TestTokenSameClientIDInBasicAndForm(t *testing.T) {
	t.Parallel()
	forEachBackend(t, testTokenSameClientIDInBasicAndForm)
}

func testTokenSameClientIDInBasicAndForm(t *testing.T, b servertest.Backend) {
	f := newTokenFixtureOn(t, b)
	before := f.e.Snapshot(t)
	r := f.send(t, rawTokenRequest{
		auth: servertest.BasicAuth(f.acct.ClientID, f.acct.ClientSecret),
		body: form("grant_type", "client_credentials", "client_id", f.acct.ClientID),
	})
	if r.Status != http.StatusOK {
		t.Fatalf("Basic plus the same form client_id: %s", r)
	}
	var tr tokenResponse
	if err := json.Unmarshal(r.Body, &tr); err != nil || tr.AccessToken == "" {
		t.Fatalf("token response %s: %v", r.Body, err)
	}
	if r.Header.Get("Cache-Control") != "no-store" {
		t.Errorf("Cache-Control %q", r.Header.Get("Cache-Control"))
	}
	f.e.FlushLastUsed(t)
	if f.e.Snapshot(t) == before {
		t.Fatal("a successful exchange did not change last_used_at by the next last-used flush: the unchanged-store check would be blind")
	}
	if f.e.StoredKey(t, f.acct.ClientID).LastUsedAt.IsZero() {
		t.Error("last_used_at of the used key is still zero")
	}
	if !f.e.StoredKey(t, f.viz.ClientID).LastUsedAt.IsZero() {
		t.Error("last_used_at of an unused key changed")
	}
}

// TestTokenPreviousSecret: during a rotation's grace period the previous
// secret hash authenticates until PreviousSecretExpiresAt, not after.
func TestTokenPreviousSecret(t *testing.T) {
	t.Parallel()
	forEachBackend(t, testTokenPreviousSecret)
}

func testTokenPreviousSecret(t *testing.T, b servertest.Backend) {
	f := newTokenFixtureOn(t, b)
	e := f.e
	ctx := context.Background()
	// The hasher is internal; borrow a real hash: the viz key's secret
	// becomes the acct key's "previous" secret.
	vizHash := e.StoredKey(t, f.viz.ClientID).SecretHash
	setPrevious := func(expires time.Time) {
		t.Helper()
		if _, err := e.Store.UpdateKey(ctx, f.acct.ClientID, func(k store.Key) (store.Key, error) {
			k.PreviousSecretHash = append([]byte(nil), vizHash...)
			k.PreviousSecretExpiresAt = expires
			return k, nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	set, _ := e.fetchJWKS(t)

	setPrevious(time.Now().Add(time.Hour))
	tr := e.Token(t, f.acct.ClientID, f.viz.ClientSecret, "")
	v := verifyJWT(t, set, tr.AccessToken, "ES256")
	if v.Claims["sub"] != f.acct.ClientID {
		t.Errorf("sub %v, want the key the previous secret belongs to (%s)", v.Claims["sub"], f.acct.ClientID)
	}
	if v.Claims["scope"] != strings.Join(accountingScopes, " ") {
		t.Errorf("scope %v: the previous secret must grant the key's own scopes", v.Claims["scope"])
	}
	// The current secret works alongside it.
	e.Token(t, f.acct.ClientID, f.acct.ClientSecret, "")
	// Later uses coalesce for a minute, so once the first is stored the
	// store stays put unless a new request is wrongly counted.
	e.AssertLastUsedStored(t, f.acct.ClientID)

	setPrevious(time.Now().Add(-time.Second))
	before := e.Snapshot(t)
	r := e.TokenRequest(t, f.acct.ClientID, f.viz.ClientSecret, url.Values{"grant_type": {"client_credentials"}})
	servertest.CheckOAuthError(t, r, 401, "invalid_client")
	e.AssertUnchanged(t, before)
	// The current secret is unaffected by the expiry.
	e.Token(t, f.acct.ClientID, f.acct.ClientSecret, "")
}

// TestTokenAcceptedVariants: well-formed requests in their legitimate
// variations all get a token, each with its own jti.
func TestTokenAcceptedVariants(t *testing.T) {
	t.Parallel()
	f := newTokenFixture(t)
	id, secret := f.acct.ClientID, f.acct.ClientSecret
	cases := map[string]rawTokenRequest{
		"charset parameter":         {contentType: "application/x-www-form-urlencoded; charset=UTF-8", auth: servertest.BasicAuth(id, secret), body: form("grant_type", "client_credentials")},
		"upper-case media type":     {contentType: "Application/X-WWW-Form-Urlencoded", auth: servertest.BasicAuth(id, secret), body: form("grant_type", "client_credentials")},
		"lower-case basic scheme":   {auth: "basic " + servertest.BasicAuth(id, secret)[len("Basic "):], body: form("grant_type", "client_credentials")},
		"form credentials":          {body: form("client_id", id, "client_secret", secret, "grant_type", "client_credentials")},
		"unknown extra parameter":   {auth: servertest.BasicAuth(id, secret), body: form("grant_type", "client_credentials", "state", "xyz")},
		"resource of the audience":  {auth: servertest.BasicAuth(id, secret), body: form("grant_type", "client_credentials", "resource", f.e.URL)},
		"chunked body":              {auth: servertest.BasicAuth(id, secret), body: form("grant_type", "client_credentials"), chunked: true},
		"admin key asks keys:admin": {auth: servertest.BasicAuth(f.e.AdminID, f.e.AdminSecret), body: form("grant_type", "client_credentials", "scope", "keys:admin")},
	}
	set, _ := f.e.fetchJWKS(t)
	jtis := map[string]string{}
	for name, rr := range cases {
		r := f.send(t, rr)
		if r.Status != http.StatusOK {
			t.Errorf("%s: %s", name, r)
			continue
		}
		tok := tokenFrom(t, r)
		jti, _ := verifyJWT(t, set, tok, "ES256").Claims["jti"].(string)
		if other, dup := jtis[jti]; dup {
			t.Errorf("%s and %s got the same jti %s", name, other, jti)
		}
		jtis[jti] = name
	}
}
