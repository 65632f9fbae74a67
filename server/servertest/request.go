package servertest

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"testing"
	"time"
)

// Response is a finished HTTP exchange.
type Response struct {
	Status int
	Header http.Header
	Body   []byte
}

func (r Response) String() string { return fmt.Sprintf("%d %s", r.Status, r.Body) }

// NewRequest is a request for path (with any query) on e.URL.
func (e *Env) NewRequest(t testing.TB, method, path string, body io.Reader) *http.Request {
	t.Helper()
	req, err := http.NewRequest(method, e.URL+path, body)
	if err != nil {
		t.Fatal(err)
	}
	return req
}

// NoRedirectClient is e.Client that hands back a redirect instead of
// following it (to assert on the 3xx itself), on e's own transport.
func (e *Env) NoRedirectClient() *http.Client {
	c := *e.Client
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return &c
}

// Do sends req with e.Client and reads the whole answer.
func (e *Env) Do(t testing.TB, req *http.Request) Response {
	t.Helper()
	resp, err := e.Client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL.Path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read body: %v", err)
	}
	return Response{Status: resp.StatusCode, Header: resp.Header, Body: body}
}

// BasicAuth is the RFC 6749 §2.3.1 Authorization value: id and secret
// form-urlencoded, then Base64.
func BasicAuth(id, secret string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(url.QueryEscape(id)+":"+url.QueryEscape(secret)))
}

// TokenRequest posts form to /oauth/token, with HTTP Basic credentials when
// id is not empty.
func (e *Env) TokenRequest(t testing.TB, id, secret string, form url.Values) Response {
	t.Helper()
	req := e.NewRequest(t, http.MethodPost, "/oauth/token", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if id != "" {
		req.Header.Set("Authorization", BasicAuth(id, secret))
	}
	return e.Do(t, req)
}

// TokenResponse is RFC 6749 §5.1.
type TokenResponse struct {
	AccessToken string `json:"access_token"`
	TokenType   string `json:"token_type"`
	ExpiresIn   int64  `json:"expires_in"`
	Scope       string `json:"scope"`
}

// Token gets a client-credentials access token (scope "" asks for all the
// key may have) or fails the test.
func (e *Env) Token(t testing.TB, id, secret, scope string) TokenResponse {
	t.Helper()
	form := url.Values{"grant_type": {"client_credentials"}}
	if scope != "" {
		form.Set("scope", scope)
	}
	r := e.TokenRequest(t, id, secret, form)
	if r.Status != http.StatusOK {
		t.Fatalf("token for %s: %s", id, r)
	}
	var tr TokenResponse
	if err := json.Unmarshal(r.Body, &tr); err != nil {
		t.Fatalf("token response: %v: %s", err, r.Body)
	}
	if tr.AccessToken == "" || tr.TokenType != "Bearer" {
		t.Fatalf("token response lacks a bearer token: %s", r.Body)
	}
	return tr
}

// AdminToken is a fresh access token of e's admin key.
func (e *Env) AdminToken(t testing.TB) string {
	t.Helper()
	return e.Token(t, e.AdminID, e.AdminSecret, "").AccessToken
}

// API sends a management request with bearer token tok (none when empty)
// and a JSON body (none when nil; a string or []byte is sent as is).
func (e *Env) API(t testing.TB, tok, method, path string, body any) Response {
	t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	case []byte:
		rd = bytes.NewReader(b)
	default:
		raw, err := json.Marshal(b)
		if err != nil {
			t.Fatal(err)
		}
		rd = bytes.NewReader(raw)
	}
	req := e.NewRequest(t, method, path, rd)
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	return e.Do(t, req)
}

// Key is the management API's view of a key (the README's API section).
type Key struct {
	ClientID     string     `json:"client_id"`
	TeamID       string     `json:"team_id"`
	Name         string     `json:"name"`
	Permissions  []string   `json:"permissions"`
	Scopes       []string   `json:"scopes"`
	CreatedAt    time.Time  `json:"created_at"`
	LastUsedAt   *time.Time `json:"last_used_at"`
	ClientSecret string     `json:"client_secret,omitempty"`
}

// KeyList is the answer to GET /v1/teams/{team_id}/keys.
type KeyList struct {
	Keys    []Key `json:"keys"`
	MaxKeys int   `json:"max_keys"`
}

// CreateKey creates a key through the management API with a fresh admin
// token, or fails the test.
func (e *Env) CreateKey(t testing.TB, team, name string, perms ...string) Key {
	t.Helper()
	return e.CreateKeyWith(t, e.AdminToken(t), team, name, perms...)
}

// CreateKeyWith is CreateKey with the admin token tok.
func (e *Env) CreateKeyWith(t testing.TB, tok, team, name string, perms ...string) Key {
	t.Helper()
	r := e.API(t, tok, http.MethodPost, "/v1/teams/"+team+"/keys", map[string]any{"name": name, "permissions": perms})
	if r.Status != http.StatusCreated {
		t.Fatalf("create key in %s: %s", team, r)
	}
	return decodeKey(t, r)
}

func decodeKey(t testing.TB, r Response) Key {
	t.Helper()
	var k Key
	if err := json.Unmarshal(r.Body, &k); err != nil {
		t.Fatalf("create key response: %v: %s", err, r.Body)
	}
	if k.ClientID == "" || k.ClientSecret == "" {
		t.Fatalf("create key response lacks client_id or client_secret: %s", r.Body)
	}
	return k
}

// ListKeys lists a team's keys with the admin token tok, or fails the test.
func (e *Env) ListKeys(t testing.TB, tok, team string) KeyList {
	t.Helper()
	r := e.API(t, tok, http.MethodGet, "/v1/teams/"+team+"/keys", nil)
	if r.Status != http.StatusOK {
		t.Fatalf("list keys of %s: %s", team, r)
	}
	var l KeyList
	if err := json.Unmarshal(r.Body, &l); err != nil {
		t.Fatalf("list response: %v: %s", err, r.Body)
	}
	return l
}

// CheckOAuthError asserts the status and an RFC 6749 §5.2 error: a JSON
// body with exactly error (= code) and a non-empty error_description,
// Cache-Control: no-store, and for invalid_client the WWW-Authenticate
// challenge.
func CheckOAuthError(t testing.TB, r Response, status int, code string) {
	t.Helper()
	if r.Status != status {
		t.Errorf("status %d, want %d (body %s)", r.Status, status, r.Body)
	}
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("Content-Type %q, want application/json", ct)
	}
	if cc := r.Header.Get("Cache-Control"); cc != "no-store" {
		t.Errorf("Cache-Control %q, want no-store", cc)
	}
	var fields map[string]any
	if err := json.Unmarshal(r.Body, &fields); err != nil {
		t.Fatalf("error body is not JSON: %v: %s", err, r.Body)
	}
	if len(fields) != 2 {
		names := make([]string, 0, len(fields))
		for k := range fields {
			names = append(names, k)
		}
		sort.Strings(names)
		t.Errorf("error body has keys %v, want exactly error and error_description", names)
	}
	if got, _ := fields["error"].(string); got != code {
		t.Errorf("error %q, want %q (body %s)", got, code, r.Body)
	}
	if d, _ := fields["error_description"].(string); strings.TrimSpace(d) == "" {
		t.Errorf("error_description missing or empty: %s", r.Body)
	}
	if code == "invalid_client" {
		if got := r.Header.Get("WWW-Authenticate"); got != `Basic realm="keygate"` {
			t.Errorf("WWW-Authenticate %q, want %q", got, `Basic realm="keygate"`)
		}
	}
}

// KID is the kid in a compact JWS's header (which signing key signed it).
func KID(t testing.TB, tok string) string {
	t.Helper()
	hdr, _, _ := strings.Cut(tok, ".")
	raw, err := base64.RawURLEncoding.DecodeString(hdr)
	if err != nil {
		t.Fatalf("token header: %v", err)
	}
	var h struct {
		KID string `json:"kid"`
	}
	if err := json.Unmarshal(raw, &h); err != nil {
		t.Fatalf("token header: %v", err)
	}
	return h.KID
}
