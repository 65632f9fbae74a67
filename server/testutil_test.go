package server_test

// Shared setup for the server package's tests: a real bbolt store in a temp
// dir, a real master key, server.New, and an httptest server on loopback.
// Everything is closed in t.Cleanup (HTTP server first, then server.Close,
// which flushes last-used times, then the store).

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/keygate/keygate/masterkey"
	"github.com/keygate/keygate/server"
	"github.com/keygate/keygate/store"
	"github.com/keygate/keygate/store/bolt"
)

func init() {
	// gin's debug mode prints every route to stdout; keep test output clean.
	gin.SetMode(gin.TestMode)
}

// flushWait is a little longer than the last-used flush tick (250 ms), so a
// use wrongly recorded by a failing request would have been written by then.
const flushWait = 400 * time.Millisecond

const (
	permAccounting    = "accounting_api"
	permVisualization = "visualization_sdk"
)

// accountingScopes is what accounting_api grants, in catalog order.
var accountingScopes = []string{
	"common:read", "common:write",
	"accounting:read", "accounting:write",
	"banking:read", "banking:write",
	"commerce:read", "commerce:write",
	"analytics:read", "analytics:write",
}

// testEnv is one keygate instance on a fresh store, served over loopback.
type testEnv struct {
	tb          testing.TB
	URL         string
	ts          *httptest.Server
	Store       *bolt.Store
	MasterKey   *masterkey.Key
	Srv         *server.Server
	AdminID     string
	AdminSecret string
	Client      *http.Client

	handler atomic.Pointer[http.Handler]
}

// newTestEnv starts a server with opts (Store, MasterKey and Issuer are
// filled in when empty). Admin credentials come from opts when set, else
// from GeneratedAdmin.
func newTestEnv(tb testing.TB, opts server.Options) *testEnv {
	tb.Helper()
	st, err := bolt.Open(filepath.Join(tb.TempDir(), "k.db"))
	if err != nil {
		tb.Fatalf("open store: %v", err)
	}
	tb.Cleanup(func() {
		if err := st.Close(); err != nil {
			tb.Errorf("close store: %v", err)
		}
	})
	var raw [32]byte
	if _, err := rand.Read(raw[:]); err != nil {
		tb.Fatal(err)
	}
	mk, err := masterkey.Parse(base64.StdEncoding.EncodeToString(raw[:]))
	if err != nil {
		tb.Fatalf("master key: %v", err)
	}
	e := &testEnv{
		tb:        tb,
		Store:     st,
		MasterKey: mk,
		Client:    &http.Client{Timeout: 10 * time.Second},
	}
	// The listener exists before Start, so the issuer (its URL) is known
	// before server.New; the handler indirection lets a test swap servers
	// (a restart on the same store) without racing the HTTP server.
	e.ts = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		(*e.handler.Load()).ServeHTTP(w, r)
	}))
	e.URL = "http://" + e.ts.Listener.Addr().String()

	srv := e.newServer(tb, opts)
	e.Srv = srv
	if opts.AdminClientID != "" {
		e.AdminID, e.AdminSecret = opts.AdminClientID, opts.AdminClientSecret
	} else {
		admin, ok := srv.GeneratedAdmin()
		if !ok {
			tb.Fatal("a first start on an empty store must generate an admin key")
		}
		e.AdminID, e.AdminSecret = admin.ClientID, admin.ClientSecret
	}
	e.serve(srv)
	e.ts.Start()
	tb.Cleanup(e.ts.Close) // registered last: runs first
	if e.ts.URL != e.URL {
		tb.Fatalf("httptest URL %s, expected %s", e.ts.URL, e.URL)
	}
	return e
}

// newServer builds another server on this env's store and master key (a
// second instance, or a restart). It is closed in Cleanup, before the store.
func (e *testEnv) newServer(tb testing.TB, opts server.Options) *server.Server {
	tb.Helper()
	opts.Store = e.Store
	opts.MasterKey = e.MasterKey
	if opts.Issuer == "" {
		opts.Issuer = e.URL
	}
	srv, err := server.New(context.Background(), opts)
	if err != nil {
		tb.Fatalf("server.New: %v", err)
	}
	var once sync.Once
	tb.Cleanup(func() { once.Do(srv.Close) })
	return srv
}

// serve makes h the handler behind e.URL.
func (e *testEnv) serve(h http.Handler) { e.handler.Store(&h) }

// response is a finished HTTP exchange.
type response struct {
	Status int
	Header http.Header
	Body   []byte
}

func (r response) String() string {
	return fmt.Sprintf("%d %s", r.Status, r.Body)
}

// do sends req through the loopback HTTP server.
func (e *testEnv) do(tb testing.TB, req *http.Request) response {
	tb.Helper()
	resp, err := e.Client.Do(req)
	if err != nil {
		tb.Fatalf("%s %s: %v", req.Method, req.URL.Path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		tb.Fatalf("read body: %v", err)
	}
	return response{Status: resp.StatusCode, Header: resp.Header, Body: body}
}

func (e *testEnv) newRequest(tb testing.TB, method, path string, body io.Reader) *http.Request {
	tb.Helper()
	req, err := http.NewRequest(method, e.URL+path, body)
	if err != nil {
		tb.Fatal(err)
	}
	return req
}

// tokenRequest posts form to /oauth/token with HTTP Basic credentials (when
// id is not empty) built per RFC 6749 §2.3.1.
func (e *testEnv) tokenRequest(tb testing.TB, id, secret string, form url.Values) response {
	tb.Helper()
	req := e.newRequest(tb, http.MethodPost, "/oauth/token", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if id != "" {
		req.Header.Set("Authorization", basicAuth(id, secret))
	}
	return e.do(tb, req)
}

// basicAuth is the RFC 6749 §2.3.1 header: id and secret form-urlencoded,
// then Base64.
func basicAuth(id, secret string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(url.QueryEscape(id)+":"+url.QueryEscape(secret)))
}

// tokenResponse is RFC 6749 §5.1.
type tokenResponse struct {
	AccessToken string `json:"access_token"`
	TokenType   string `json:"token_type"`
	ExpiresIn   int64  `json:"expires_in"`
	Scope       string `json:"scope"`
}

// token gets an access token or fails the test.
func (e *testEnv) token(tb testing.TB, id, secret, scope string) tokenResponse {
	tb.Helper()
	form := url.Values{"grant_type": {"client_credentials"}}
	if scope != "" {
		form.Set("scope", scope)
	}
	r := e.tokenRequest(tb, id, secret, form)
	if r.Status != http.StatusOK {
		tb.Fatalf("token for %s: %s", id, r)
	}
	var tr tokenResponse
	if err := json.Unmarshal(r.Body, &tr); err != nil {
		tb.Fatalf("token response: %v: %s", err, r.Body)
	}
	if tr.AccessToken == "" || tr.TokenType != "Bearer" {
		tb.Fatalf("token response lacks a bearer token: %s", r.Body)
	}
	return tr
}

// adminToken is an access token of the env's admin key.
func (e *testEnv) adminToken(tb testing.TB) string {
	tb.Helper()
	return e.token(tb, e.AdminID, e.AdminSecret, "").AccessToken
}

// api sends a management request with bearer token tok (none when empty)
// and a JSON body (none when nil; a string or []byte is sent as is).
func (e *testEnv) api(tb testing.TB, tok, method, path string, body any) response {
	tb.Helper()
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
			tb.Fatal(err)
		}
		rd = bytes.NewReader(raw)
	}
	req := e.newRequest(tb, method, path, rd)
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	return e.do(tb, req)
}

// keyJSON is the management API's key shape (DESIGN.md).
type keyJSON struct {
	ClientID     string     `json:"client_id"`
	TeamID       string     `json:"team_id"`
	Name         string     `json:"name"`
	Permissions  []string   `json:"permissions"`
	Scopes       []string   `json:"scopes"`
	CreatedAt    time.Time  `json:"created_at"`
	LastUsedAt   *time.Time `json:"last_used_at"`
	ClientSecret string     `json:"client_secret,omitempty"`
}

type keyListJSON struct {
	Keys    []keyJSON `json:"keys"`
	MaxKeys int       `json:"max_keys"`
}

// createKey creates a key through the management API with a fresh admin
// token, or fails the test.
func (e *testEnv) createKey(tb testing.TB, team, name string, perms ...string) keyJSON {
	tb.Helper()
	return e.createKeyWith(tb, e.adminToken(tb), team, name, perms...)
}

func (e *testEnv) createKeyWith(tb testing.TB, tok, team, name string, perms ...string) keyJSON {
	tb.Helper()
	r := e.api(tb, tok, http.MethodPost, "/v1/teams/"+team+"/keys", map[string]any{"name": name, "permissions": perms})
	if r.Status != http.StatusCreated {
		tb.Fatalf("create key in %s: %s", team, r)
	}
	var k keyJSON
	if err := json.Unmarshal(r.Body, &k); err != nil {
		tb.Fatalf("create key response: %v: %s", err, r.Body)
	}
	if k.ClientID == "" || k.ClientSecret == "" {
		tb.Fatalf("create key response lacks client_id or client_secret: %s", r.Body)
	}
	return k
}

func (e *testEnv) listKeys(tb testing.TB, tok, team string) keyListJSON {
	tb.Helper()
	r := e.api(tb, tok, http.MethodGet, "/v1/teams/"+team+"/keys", nil)
	if r.Status != http.StatusOK {
		tb.Fatalf("list keys of %s: %s", team, r)
	}
	var l keyListJSON
	if err := json.Unmarshal(r.Body, &l); err != nil {
		tb.Fatalf("list response: %v: %s", err, r.Body)
	}
	return l
}

// snapshot renders everything the store holds that a request could change:
// every key with all its fields (LastUsedAt and hashes included) and the
// signing key set. Equal strings mean an unchanged store.
func (e *testEnv) snapshot(tb testing.TB) string {
	tb.Helper()
	ctx := context.Background()
	var keys []store.Key
	if err := e.Store.ForEachKey(ctx, func(k store.Key) error {
		keys = append(keys, k)
		return nil
	}); err != nil {
		tb.Fatalf("snapshot keys: %v", err)
	}
	sort.Slice(keys, func(i, j int) bool { return keys[i].ClientID < keys[j].ClientID })
	sk, err := e.Store.SigningKeys(ctx)
	if err != nil {
		tb.Fatalf("snapshot signing keys: %v", err)
	}
	var b strings.Builder
	enc := json.NewEncoder(&b)
	for _, k := range keys {
		// Times in UTC with full precision, so any move shows.
		k.CreatedAt, k.LastUsedAt = k.CreatedAt.UTC(), k.LastUsedAt.UTC()
		k.PreviousSecretExpiresAt, k.SecretRotatedAt = k.PreviousSecretExpiresAt.UTC(), k.SecretRotatedAt.UTC()
		// store.Key hides the hashes from JSON; put them back, so a change
		// to a secret hash shows up as a change.
		if err := enc.Encode(struct {
			store.Key
			SecretHash         []byte `json:"secret_hash"`
			PreviousSecretHash []byte `json:"previous_secret_hash"`
		}{k, k.SecretHash, k.PreviousSecretHash}); err != nil {
			tb.Fatal(err)
		}
	}
	if err := enc.Encode(sk); err != nil {
		tb.Fatal(err)
	}
	return b.String()
}

// assertUnchanged compares the store with before, right away and again after
// a last-used flush tick has passed.
func (e *testEnv) assertUnchanged(tb testing.TB, before string) {
	tb.Helper()
	if after := e.snapshot(tb); after != before {
		tb.Errorf("the store changed:\nbefore:\n%s\nafter:\n%s", before, after)
		return
	}
	time.Sleep(flushWait)
	if after := e.snapshot(tb); after != before {
		tb.Errorf("the store changed after a last-used flush tick:\nbefore:\n%s\nafter:\n%s", before, after)
	}
}

// storedKey reads one key straight from the store.
func (e *testEnv) storedKey(tb testing.TB, id string) store.Key {
	tb.Helper()
	k, err := e.Store.GetKey(context.Background(), id)
	if err != nil {
		tb.Fatalf("get key %s: %v", id, err)
	}
	return k
}

// waitLastUsed waits until the key's first use is stored (within a second
// by contract; allow two).
func (e *testEnv) waitLastUsed(tb testing.TB, id string) {
	tb.Helper()
	if !waitFor(2*time.Second, func() bool { return !e.storedKey(tb, id).LastUsedAt.IsZero() }) {
		tb.Fatalf("last_used_at of %s not stored 2 s after its first use", id)
	}
}

// checkOAuthError asserts the status and an RFC 6749 §5.2 error: JSON body
// with exactly error and error_description, Cache-Control: no-store, and
// WWW-Authenticate for invalid_client.
func checkOAuthError(tb testing.TB, r response, status int, code string) {
	tb.Helper()
	if r.Status != status {
		tb.Errorf("status %d, want %d (body %s)", r.Status, status, r.Body)
	}
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		tb.Errorf("Content-Type %q, want application/json", ct)
	}
	if cc := r.Header.Get("Cache-Control"); cc != "no-store" {
		tb.Errorf("Cache-Control %q, want no-store", cc)
	}
	var fields map[string]any
	if err := json.Unmarshal(r.Body, &fields); err != nil {
		tb.Fatalf("error body is not JSON: %v: %s", err, r.Body)
	}
	if len(fields) != 2 {
		tb.Errorf("error body has keys %v, want exactly error and error_description", keysOf(fields))
	}
	if got, _ := fields["error"].(string); got != code {
		tb.Errorf("error %q, want %q (body %s)", got, code, r.Body)
	}
	if d, _ := fields["error_description"].(string); strings.TrimSpace(d) == "" {
		tb.Errorf("error_description missing or empty: %s", r.Body)
	}
	if code == "invalid_client" {
		if got := r.Header.Get("WWW-Authenticate"); got != `Basic realm="keygate"` {
			tb.Errorf("WWW-Authenticate %q, want %q", got, `Basic realm="keygate"`)
		}
	}
}

func keysOf(m map[string]any) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// syncBuffer is a bytes.Buffer safe for the server's concurrent loggers.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// waitFor polls cond every 50 ms until it holds or timeout passes.
func waitFor(timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(50 * time.Millisecond)
	}
}
