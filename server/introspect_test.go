package server_test

// RFC 7662 token introspection and RFC 7009 revocation: every active and
// inactive case of issue 5, exact bodies, who may see which token, the
// per-caller throttle, and the deny list living in the store.

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/server"
	"github.com/keygate/keygate/server/servertest"
)

// oauthPost posts form to path (an OAuth endpoint) with HTTP Basic
// credentials when id is not empty.
func (e *testEnv) oauthPost(tb testing.TB, path, id, secret string, form url.Values) response {
	tb.Helper()
	req := e.NewRequest(tb, http.MethodPost, path, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if id != "" {
		req.Header.Set("Authorization", servertest.BasicAuth(id, secret))
	}
	return e.Do(tb, req)
}

func (e *testEnv) introspect(tb testing.TB, id, secret, token string) response {
	tb.Helper()
	return e.oauthPost(tb, "/oauth/introspect", id, secret, url.Values{"token": {token}})
}

func (e *testEnv) revoke(tb testing.TB, id, secret, token string) response {
	tb.Helper()
	return e.oauthPost(tb, "/oauth/revoke", id, secret, url.Values{"token": {token}})
}

// irPayload decodes a JWT's claims without verifying anything: an
// independent reading of what the token says.
func irPayload(tb testing.TB, tok string) map[string]any {
	tb.Helper()
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		tb.Fatalf("token has %d parts, want 3", len(parts))
	}
	raw, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		tb.Fatalf("payload is not base64url: %v", err)
	}
	dec := json.NewDecoder(strings.NewReader(string(raw)))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		tb.Fatalf("payload is not JSON: %v: %s", err, raw)
	}
	return m
}

// checkJSONHeaders: an OAuth endpoint's answer is uncacheable JSON.
func checkJSONHeaders(tb testing.TB, r response) {
	tb.Helper()
	if ct := r.Header.Get("Content-Type"); ct != "application/json" && !strings.HasPrefix(ct, "application/json;") {
		tb.Errorf("Content-Type %q, want application/json", ct)
	}
	if cc := r.Header.Get("Cache-Control"); cc != "no-store" {
		tb.Errorf("Cache-Control %q, want no-store", cc)
	}
}

// checkInactive: 200 and exactly {"active":false}, nothing else (RFC 7662
// §2.2).
func checkInactive(tb testing.TB, what string, r response) {
	tb.Helper()
	if r.Status != http.StatusOK {
		tb.Errorf("%s: status %d, want 200 (body %s)", what, r.Status, r.Body)
		return
	}
	checkJSONHeaders(tb, r)
	var m map[string]json.RawMessage
	if err := json.Unmarshal(r.Body, &m); err != nil {
		tb.Fatalf("%s: body is not a JSON object: %v: %s", what, err, r.Body)
	}
	if len(m) != 1 || string(m["active"]) != "false" {
		tb.Errorf("%s: body %s, want exactly {\"active\":false}", what, r.Body)
	}
}

// checkActive: 200 and the RFC 7662 members, each equal to the token's own
// claim, and no other member.
func checkActive(tb testing.TB, what string, r response, tok string) {
	tb.Helper()
	if r.Status != http.StatusOK {
		tb.Errorf("%s: status %d, want 200 (body %s)", what, r.Status, r.Body)
		return
	}
	checkJSONHeaders(tb, r)
	dec := json.NewDecoder(strings.NewReader(string(r.Body)))
	dec.UseNumber()
	var got map[string]any
	if err := dec.Decode(&got); err != nil {
		tb.Fatalf("%s: body is not a JSON object: %v: %s", what, err, r.Body)
	}
	if got["active"] != true {
		tb.Errorf("%s: body %s, want an active token", what, r.Body)
		return
	}
	claims := irPayload(tb, tok)
	want := map[string]any{"active": true, "token_type": "Bearer"}
	for _, name := range []string{"scope", "client_id", "sub", "aud", "iss", "exp", "iat", "nbf", "jti", "team_id"} {
		if v, ok := claims[name]; ok {
			want[name] = v
		}
	}
	for _, name := range []string{"scope", "client_id", "sub", "aud", "iss", "exp", "iat", "nbf", "jti"} {
		if _, ok := want[name]; !ok {
			tb.Fatalf("%s: the token itself lacks claim %s: %v", what, name, claims)
		}
	}
	if got, want := keysOf(got), keysOf(want); !slices.Equal(got, want) {
		tb.Errorf("%s: members %v, want %v (body %s)", what, got, want, r.Body)
	}
	for name, w := range want {
		if g := got[name]; g != w {
			tb.Errorf("%s: %s = %v (%T), want %v (%T)", what, name, g, g, w, w)
		}
	}
}

// irFixture: a keygate with keys in two teams and a resource server key
// holding the operator-only token_introspection permission.
type irFixture struct {
	e     *testEnv
	clock *servertest.Clock // stopped on a whole second
	admin string            // admin access token
	acme  keyJSON
	acme2 keyJSON // a second key of acme
	beta  keyJSON
	rs    keyJSON // team "rs", token_introspection
}

func newIRFixture(tb testing.TB, opts server.Options) *irFixture {
	tb.Helper()
	return newIRFixtureOn(tb, servertest.Bolt(), opts)
}

// newIRFixtureOn is newIRFixture on the backend b.
func newIRFixtureOn(tb testing.TB, b servertest.Backend, opts server.Options) *irFixture {
	tb.Helper()
	f := &irFixture{clock: servertest.NewClock(time.Now().UTC().Truncate(time.Second))}
	f.e = startEnv(tb, servertest.Config{Options: opts, Clock: f.clock, Backend: b})
	f.admin = f.e.AdminToken(tb)
	f.acme = f.e.CreateKeyWith(tb, f.admin, "acme", "acme one", permAccounting)
	f.acme2 = f.e.CreateKeyWith(tb, f.admin, "acme", "acme two", permVisualization)
	f.beta = f.e.CreateKeyWith(tb, f.admin, "beta", "beta", permVisualization)
	r := f.e.API(tb, f.admin, http.MethodPost, "/v1/teams/rs/keys", map[string]any{
		"name": "resource server", "permissions": []string{"token_introspection"}, "grant_operator_permissions": true,
	})
	if r.Status != http.StatusCreated {
		tb.Fatalf("create a key with token_introspection and grant_operator_permissions: %s", r)
	}
	if err := json.Unmarshal(r.Body, &f.rs); err != nil {
		tb.Fatal(err)
	}
	return f
}

func TestIntrospectActiveAndWhoSeesWhat(t *testing.T) {
	t.Parallel()
	f := newIRFixture(t, server.Options{})
	e := f.e
	acmeTok := e.Token(t, f.acme.ClientID, f.acme.ClientSecret, "").AccessToken
	betaTok := e.Token(t, f.beta.ClientID, f.beta.ClientSecret, "").AccessToken
	narrowTok := e.Token(t, f.acme.ClientID, f.acme.ClientSecret, "accounting:read").AccessToken
	adminTok := f.admin

	if !slices.Contains(f.rs.Scopes, "tokens:introspect") {
		t.Errorf("rs key scopes %v, want tokens:introspect", f.rs.Scopes)
	}

	// Own token, Basic and form authentication alike; token_type_hint is
	// accepted (RFC 7662 §2.1).
	checkActive(t, "own token", e.introspect(t, f.acme.ClientID, f.acme.ClientSecret, acmeTok), acmeTok)
	checkActive(t, "own narrowed token", e.introspect(t, f.acme.ClientID, f.acme.ClientSecret, narrowTok), narrowTok)
	checkActive(t, "own token, client_secret_post", e.oauthPost(t, "/oauth/introspect", "", "", url.Values{
		"token": {acmeTok}, "client_id": {f.acme.ClientID}, "client_secret": {f.acme.ClientSecret},
	}), acmeTok)
	checkActive(t, "own token with token_type_hint", e.oauthPost(t, "/oauth/introspect", f.acme.ClientID, f.acme.ClientSecret, url.Values{
		"token": {acmeTok}, "token_type_hint": {"access_token"},
	}), acmeTok)

	// Another key of the same team sees the team's tokens.
	checkActive(t, "same team, other key", e.introspect(t, f.acme2.ClientID, f.acme2.ClientSecret, acmeTok), acmeTok)

	// Another team sees nothing, not even that the token exists.
	checkInactive(t, "beta introspects acme's token", e.introspect(t, f.beta.ClientID, f.beta.ClientSecret, acmeTok))
	checkInactive(t, "acme introspects beta's token", e.introspect(t, f.acme.ClientID, f.acme.ClientSecret, betaTok))
	checkInactive(t, "team key introspects an admin token", e.introspect(t, f.acme.ClientID, f.acme.ClientSecret, adminTok))

	// Admin keys see all.
	checkActive(t, "admin, acme token", e.introspect(t, e.AdminID, e.AdminSecret, acmeTok), acmeTok)
	checkActive(t, "admin, beta token", e.introspect(t, e.AdminID, e.AdminSecret, betaTok), betaTok)
	checkActive(t, "admin, admin token", e.introspect(t, e.AdminID, e.AdminSecret, adminTok), adminTok)
	if c := irPayload(t, adminTok); c["team_id"] != nil {
		t.Errorf("admin token has team_id %v", c["team_id"])
	}

	// A key with tokens:introspect (operator-only permission) sees all.
	checkActive(t, "rs, acme token", e.introspect(t, f.rs.ClientID, f.rs.ClientSecret, acmeTok), acmeTok)
	checkActive(t, "rs, beta token", e.introspect(t, f.rs.ClientID, f.rs.ClientSecret, betaTok), betaTok)
	checkActive(t, "rs, admin token", e.introspect(t, f.rs.ClientID, f.rs.ClientSecret, adminTok), adminTok)
	rsTok := e.Token(t, f.rs.ClientID, f.rs.ClientSecret, "").AccessToken
	if c := irPayload(t, rsTok); c["scope"] != "tokens:introspect" {
		t.Errorf("rs token scope %v, want tokens:introspect", c["scope"])
	}
	checkActive(t, "rs sees its own token", e.introspect(t, f.rs.ClientID, f.rs.ClientSecret, rsTok), rsTok)
	checkInactive(t, "acme introspects rs's token", e.introspect(t, f.acme.ClientID, f.acme.ClientSecret, rsTok))
}

func TestIntrospectOperatorPermissionNeedsTheFlag(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t, server.Options{})
	admin := e.AdminToken(t)
	e.AssertLastUsedStored(t, e.AdminID)
	before := e.Snapshot(t)
	sl0, err := e.Store.StatusList(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, body := range []map[string]any{
		{"name": "rs", "permissions": []string{"token_introspection"}},
		{"name": "rs", "permissions": []string{"token_introspection"}, "grant_operator_permissions": false},
		{"name": "rs", "permissions": []string{permVisualization, "token_introspection"}},
	} {
		r := e.API(t, admin, http.MethodPost, "/v1/teams/rs/keys", body)
		p := checkProblem(t, r, http.StatusBadRequest)
		if !strings.Contains(p.Detail, "token_introspection") {
			t.Errorf("detail %q does not name the permission", p.Detail)
		}
	}
	if l := e.ListKeys(t, admin, "rs"); len(l.Keys) != 0 {
		t.Errorf("team rs has %d keys after refused creates", len(l.Keys))
	}
	e.AssertUnchanged(t, before)
	if sl1, err := e.Store.StatusList(context.Background()); err != nil || sl1.Allocated != sl0.Allocated {
		t.Errorf("a refused create allocated a status index: %d → %d (%v)", sl0.Allocated, sl1.Allocated, err)
	}

	// A team key's token (no keys:admin) cannot grant the flag either.
	k := e.CreateKeyWith(t, admin, "acme", "acme", permAccounting)
	teamTok := e.Token(t, k.ClientID, k.ClientSecret, "").AccessToken
	r := e.API(t, teamTok, http.MethodPost, "/v1/teams/rs/keys", map[string]any{
		"name": "rs", "permissions": []string{"token_introspection"}, "grant_operator_permissions": true,
	})
	if r.Status != http.StatusForbidden && r.Status != http.StatusUnauthorized {
		t.Errorf("team token creating an operator key: %s, want 401 or 403", r)
	}
	if l := e.ListKeys(t, admin, "rs"); len(l.Keys) != 0 {
		t.Errorf("team rs has %d keys after a team token tried to create one", len(l.Keys))
	}
}

func TestIntrospectInactive(t *testing.T) {
	t.Parallel()
	f := newIRFixture(t, server.Options{})
	e := f.e
	acmeTok := e.Token(t, f.acme.ClientID, f.acme.ClientSecret, "").AccessToken

	// Malformed.
	for _, tok := range []string{"abc", "a.b.c", "eyJhbGciOiJub25lIn0.e30.", strings.Repeat("x", 8000)} {
		checkInactive(t, "malformed "+tok[:min(len(tok), 12)], e.introspect(t, e.AdminID, e.AdminSecret, tok))
	}
	// Bad signature: one character in the middle of the signature changed.
	parts := strings.Split(acmeTok, ".")
	sig := []byte(parts[2])
	i := len(sig) / 2
	if sig[i] == 'A' {
		sig[i] = 'B'
	} else {
		sig[i] = 'A'
	}
	bad := parts[0] + "." + parts[1] + "." + string(sig)
	checkInactive(t, "bad signature", e.introspect(t, e.AdminID, e.AdminSecret, bad))
	// Changed claims under the original signature.
	forged := parts[0] + "." + base64.RawURLEncoding.EncodeToString([]byte(strings.Replace(
		string(mustB64(t, parts[1])), `"acme"`, `"beta"`, 1))) + "." + parts[2]
	checkInactive(t, "claims changed", e.introspect(t, f.beta.ClientID, f.beta.ClientSecret, forged))

	// Signed by another keygate with the same issuer.
	foreign := foreignAdminToken(t, e.URL)
	checkInactive(t, "foreign token", e.introspect(t, e.AdminID, e.AdminSecret, foreign))

	// The token of a deleted key.
	gone := e.CreateKeyWith(t, f.admin, "acme", "to delete", permVisualization)
	goneTok := e.Token(t, gone.ClientID, gone.ClientSecret, "").AccessToken
	checkActive(t, "before delete", e.introspect(t, e.AdminID, e.AdminSecret, goneTok), goneTok)
	if r := e.API(t, f.admin, http.MethodDelete, "/v1/teams/acme/keys/"+gone.ClientID, nil); r.Status != http.StatusNoContent {
		t.Fatalf("delete: %s", r)
	}
	checkInactive(t, "deleted key, admin caller", e.introspect(t, e.AdminID, e.AdminSecret, goneTok))
	checkInactive(t, "deleted key, same team", e.introspect(t, f.acme.ClientID, f.acme.ClientSecret, goneTok))
	checkInactive(t, "deleted key, rs", e.introspect(t, f.rs.ClientID, f.rs.ClientSecret, goneTok))

	// Revoked (through /oauth/revoke).
	revTok := e.Token(t, f.acme.ClientID, f.acme.ClientSecret, "").AccessToken
	if r := e.revoke(t, f.acme.ClientID, f.acme.ClientSecret, revTok); r.Status != http.StatusOK {
		t.Fatalf("revoke: %s", r)
	}
	checkInactive(t, "revoked, own", e.introspect(t, f.acme.ClientID, f.acme.ClientSecret, revTok))
	checkInactive(t, "revoked, admin", e.introspect(t, e.AdminID, e.AdminSecret, revTok))
	checkInactive(t, "revoked, rs", e.introspect(t, f.rs.ClientID, f.rs.ClientSecret, revTok))
	// Revoking one token leaves the key's other tokens active.
	checkActive(t, "other token of the revoking key", e.introspect(t, f.acme.ClientID, f.acme.ClientSecret, acmeTok), acmeTok)
}

func mustB64(tb testing.TB, s string) []byte {
	tb.Helper()
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// TestIntrospectExpired moves the injected clock: a token is active until
// its exp and inactive from then on.
func TestIntrospectExpired(t *testing.T) {
	t.Parallel()
	f := newIRFixture(t, server.Options{})
	e := f.e
	t0 := f.clock.Now()
	tok := e.Token(t, f.acme.ClientID, f.acme.ClientSecret, "").AccessToken
	exp := time.Unix(claimInt(t, irPayload(t, tok), "exp"), 0)
	if exp.Sub(t0) != 15*time.Minute {
		t.Fatalf("exp %v is not iat+15m (t0 %v): is Options.Now used?", exp, t0)
	}
	f.clock.Set(exp.Add(-time.Second))
	checkActive(t, "one second before exp", e.introspect(t, f.acme.ClientID, f.acme.ClientSecret, tok), tok)
	// Well past any leeway: inactive, for every caller.
	f.clock.Set(exp.Add(time.Hour))
	checkInactive(t, "an hour after exp, own", e.introspect(t, f.acme.ClientID, f.acme.ClientSecret, tok))
	checkInactive(t, "an hour after exp, admin", e.introspect(t, e.AdminID, e.AdminSecret, tok))
	checkInactive(t, "an hour after exp, rs", e.introspect(t, f.rs.ClientID, f.rs.ClientSecret, tok))
	// keygate is the clock authority for its own tokens: introspection is
	// not a remote verifier with clock skew, so exp is exp.
	for _, after := range []time.Duration{0, time.Second, 29 * time.Second} {
		f.clock.Set(exp.Add(after))
		checkInactive(t, "exp+"+after.String(), e.introspect(t, f.acme.ClientID, f.acme.ClientSecret, tok))
	}
}

func TestIntrospectBadRequests(t *testing.T) {
	t.Parallel()
	f := newIRFixture(t, server.Options{})
	e := f.e
	tok := e.Token(t, f.acme.ClientID, f.acme.ClientSecret, "").AccessToken

	for _, path := range []string{"/oauth/introspect", "/oauth/revoke"} {
		t.Run(strings.TrimPrefix(path, "/oauth/"), func(t *testing.T) {
			// No credentials at all.
			servertest.CheckOAuthError(t, e.oauthPost(t, path, "", "", url.Values{"token": {tok}}), http.StatusUnauthorized, "invalid_client")
			// Only an id in the form.
			servertest.CheckOAuthError(t, e.oauthPost(t, path, "", "", url.Values{"token": {tok}, "client_id": {f.acme.ClientID}}), http.StatusUnauthorized, "invalid_client")
			// Wrong secret, Basic and form.
			servertest.CheckOAuthError(t, e.oauthPost(t, path, f.acme.ClientID, f.beta.ClientSecret, url.Values{"token": {tok}}), http.StatusUnauthorized, "invalid_client")
			servertest.CheckOAuthError(t, e.oauthPost(t, path, "", "", url.Values{"token": {tok}, "client_id": {f.acme.ClientID}, "client_secret": {"kgs_wrong"}}), http.StatusUnauthorized, "invalid_client")
			// Unknown client.
			servertest.CheckOAuthError(t, e.oauthPost(t, path, "kgc_nobody", f.acme.ClientSecret, url.Values{"token": {tok}}), http.StatusUnauthorized, "invalid_client")
			// A bearer token is not a client credential.
			req := e.NewRequest(t, http.MethodPost, path, strings.NewReader(url.Values{"token": {tok}}.Encode()))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			req.Header.Set("Authorization", "Bearer "+tok)
			servertest.CheckOAuthError(t, e.Do(t, req), http.StatusUnauthorized, "invalid_client")
			// The key of the token, once deleted, cannot call.
			// (Covered for the token endpoint elsewhere.)

			// Missing token parameter.
			servertest.CheckOAuthError(t, e.oauthPost(t, path, f.acme.ClientID, f.acme.ClientSecret, url.Values{}), http.StatusBadRequest, "invalid_request")
			servertest.CheckOAuthError(t, e.oauthPost(t, path, f.acme.ClientID, f.acme.ClientSecret, url.Values{"token": {""}}), http.StatusBadRequest, "invalid_request")
			// Repeated parameter.
			servertest.CheckOAuthError(t, e.oauthPost(t, path, f.acme.ClientID, f.acme.ClientSecret, url.Values{"token": {tok, tok}}), http.StatusBadRequest, "invalid_request")
			// Query string.
			req = e.NewRequest(t, http.MethodPost, path+"?token="+url.QueryEscape(tok), strings.NewReader(url.Values{"token": {tok}}.Encode()))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			req.Header.Set("Authorization", servertest.BasicAuth(f.acme.ClientID, f.acme.ClientSecret))
			servertest.CheckOAuthError(t, e.Do(t, req), http.StatusBadRequest, "invalid_request")
			// Not a form.
			req = e.NewRequest(t, http.MethodPost, path, strings.NewReader(`{"token":"`+tok+`"}`))
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Authorization", servertest.BasicAuth(f.acme.ClientID, f.acme.ClientSecret))
			servertest.CheckOAuthError(t, e.Do(t, req), http.StatusBadRequest, "invalid_request")
			// GET (and other methods): 405 with Allow: POST.
			for _, m := range []string{http.MethodGet, http.MethodPut, http.MethodDelete} {
				req = e.NewRequest(t, m, path, nil)
				req.Header.Set("Authorization", servertest.BasicAuth(f.acme.ClientID, f.acme.ClientSecret))
				r := e.Do(t, req)
				if r.Status != http.StatusMethodNotAllowed {
					t.Errorf("%s %s: %s, want 405", m, path, r)
				}
				if a := r.Header.Get("Allow"); a != http.MethodPost {
					t.Errorf("%s %s: Allow %q, want POST", m, path, a)
				}
			}
		})
	}
	// Nothing above revoked the token.
	checkActive(t, "after the bad requests", e.introspect(t, f.acme.ClientID, f.acme.ClientSecret, tok), tok)
}

// TestIntrospectThrottle: 5 per second per caller; the 6th call in the
// same instant gets 429 with Retry-After, other callers are not affected,
// and the caller is served again once a token has refilled. The limiter
// reads keygate's clock, which the fixture holds still and the test moves.
func TestIntrospectThrottle(t *testing.T) {
	t.Parallel()
	f := newIRFixture(t, server.Options{IntrospectionRate: 5})
	e := f.e
	tok := e.Token(t, f.acme.ClientID, f.acme.ClientSecret, "").AccessToken
	checkActive(t, "another caller first", e.introspect(t, f.acme2.ClientID, f.acme2.ClientSecret, tok), tok)
	for i := 1; i <= 5; i++ {
		checkActive(t, "call "+strconv.Itoa(i), e.introspect(t, f.acme.ClientID, f.acme.ClientSecret, tok), tok)
	}
	throttled := e.introspect(t, f.acme.ClientID, f.acme.ClientSecret, tok)
	if throttled.Status != http.StatusTooManyRequests {
		t.Fatalf("6th call in the same instant with a limit of 5/s: %s, want 429", throttled)
	}
	ra, err := strconv.Atoi(throttled.Header.Get("Retry-After"))
	if err != nil || ra < 1 {
		t.Errorf("Retry-After %q, want an integer ≥ 1", throttled.Header.Get("Retry-After"))
	}
	checkJSONHeaders(t, throttled)
	var body map[string]any
	if err := json.Unmarshal(throttled.Body, &body); err != nil {
		t.Errorf("429 body is not JSON: %v: %s", err, throttled.Body)
	} else if s, _ := body["error"].(string); s == "" {
		t.Errorf("429 body has no error: %s", throttled.Body)
	} else if _, leaked := body["active"]; leaked {
		t.Errorf("429 body says something about the token: %s", throttled.Body)
	}

	// Other callers are not throttled by acme's burst: the same team's other
	// key, another team, the admin.
	checkActive(t, "acme2 while acme is throttled", e.introspect(t, f.acme2.ClientID, f.acme2.ClientSecret, tok), tok)
	checkInactive(t, "beta while acme is throttled", e.introspect(t, f.beta.ClientID, f.beta.ClientSecret, tok))
	checkActive(t, "admin while acme is throttled", e.introspect(t, e.AdminID, e.AdminSecret, tok), tok)

	// A refused call takes nothing from the bucket: at 5/s one request is
	// free again 200 ms later, not before.
	f.clock.Advance(199 * time.Millisecond)
	if r := e.introspect(t, f.acme.ClientID, f.acme.ClientSecret, tok); r.Status != http.StatusTooManyRequests {
		t.Fatalf("199 ms later: %s, want 429", r)
	}
	f.clock.Advance(time.Millisecond)
	checkActive(t, "acme 200 ms later", e.introspect(t, f.acme.ClientID, f.acme.ClientSecret, tok), tok)
	// After Retry-After, acme is served again.
	f.clock.Advance(time.Duration(ra) * time.Second)
	checkActive(t, "acme after Retry-After", e.introspect(t, f.acme.ClientID, f.acme.ClientSecret, tok), tok)

	// An unauthenticated caller is refused with 401, not counted against
	// acme.
	for i := 0; i < 3; i++ {
		servertest.CheckOAuthError(t, e.oauthPost(t, "/oauth/introspect", f.acme.ClientID, "kgs_wrong", url.Values{"token": {tok}}), http.StatusUnauthorized, "invalid_client")
	}
}

// TestIntrospectDefaultRate: the default limit is 100/s, so a normal
// resource server's handful of calls is never throttled.
func TestIntrospectDefaultRate(t *testing.T) {
	t.Parallel()
	f := newIRFixture(t, server.Options{})
	tok := f.e.Token(t, f.acme.ClientID, f.acme.ClientSecret, "").AccessToken
	for i := 0; i < 20; i++ {
		if r := f.e.introspect(t, f.rs.ClientID, f.rs.ClientSecret, tok); r.Status != http.StatusOK {
			t.Fatalf("call %d with the default limit: %s", i+1, r)
		}
	}
}

// checkRevokeOK: 200 and exactly {} (RFC 7009 §2.2).
func checkRevokeOK(tb testing.TB, what string, r response) {
	tb.Helper()
	if r.Status != http.StatusOK {
		tb.Errorf("%s: %s, want 200", what, r)
		return
	}
	checkJSONHeaders(tb, r)
	var m map[string]any
	if err := json.Unmarshal(r.Body, &m); err != nil || len(m) != 0 {
		tb.Errorf("%s: body %s, want {}", what, r.Body)
	}
}

// withoutEvents is a Snapshot without its audit events.
func withoutEvents(snap string) string {
	var keep []string
	for _, line := range strings.Split(snap, "\n") {
		if !strings.HasPrefix(line, `{"Seq":`) {
			keep = append(keep, line)
		}
	}
	return strings.Join(keep, "\n")
}

// revokeState is what a revocation may change: the stored keys and signing
// keys, the status list, and the deny list entries of the given jtis.
func (e *testEnv) revokeState(tb testing.TB, jtis ...string) string {
	tb.Helper()
	ctx := context.Background()
	var b strings.Builder
	b.WriteString(e.Snapshot(tb))
	sl, err := e.Store.StatusList(ctx)
	if err != nil {
		tb.Fatal(err)
	}
	b.WriteString("status allocated " + strconv.FormatInt(sl.Allocated, 10) + " bits " + base64.StdEncoding.EncodeToString(sl.Statuses) + "\n")
	for _, j := range jtis {
		d, err := e.Store.TokenDenied(ctx, j)
		if err != nil {
			tb.Fatal(err)
		}
		b.WriteString("denied " + j + " " + strconv.FormatBool(d) + "\n")
	}
	return b.String()
}

func jtiOf(tb testing.TB, tok string) string {
	tb.Helper()
	j, _ := irPayload(tb, tok)["jti"].(string)
	if j == "" {
		tb.Fatal("token without jti")
	}
	return j
}

func TestRevoke(t *testing.T) {
	t.Parallel()
	forEachBackend(t, testRevoke)
}

func testRevoke(t *testing.T, b servertest.Backend) {
	f := newIRFixtureOn(t, b, server.Options{})
	e := f.e
	set, _ := e.fetchJWKS(t)
	tok := e.Token(t, f.acme.ClientID, f.acme.ClientSecret, "").AccessToken
	other := e.Token(t, f.acme.ClientID, f.acme.ClientSecret, "").AccessToken
	acme2Tok := e.Token(t, f.acme2.ClientID, f.acme2.ClientSecret, "").AccessToken
	betaTok := e.Token(t, f.beta.ClientID, f.beta.ClientSecret, "").AccessToken
	foreign := foreignAdminToken(t, e.URL)
	jtis := []string{jtiOf(t, tok), jtiOf(t, other), jtiOf(t, acme2Tok), jtiOf(t, betaTok), jtiOf(t, f.admin), jtiOf(t, foreign)}

	// Unknown and malformed tokens: 200, nothing changes. (The last-used
	// times of the tokens above are written first.)
	e.FlushLastUsed(t)
	before := e.revokeState(t, jtis...)
	for _, c := range []struct{ what, tok string }{
		{"malformed", "abc"}, {"three dots", "a.b.c"}, {"foreign keygate", foreign},
		{"bad signature", tok[:len(tok)-10] + "AAAAAAAAAA"},
	} {
		checkRevokeOK(t, c.what, e.revoke(t, f.acme.ClientID, f.acme.ClientSecret, c.tok))
	}
	// Valid tokens of other keys: 400 unauthorized_client, nothing changes,
	// whoever asks (same team, other team, admin).
	for _, c := range []struct {
		what       string
		id, secret string
		tok        string
	}{
		{"acme revokes acme2's token", f.acme.ClientID, f.acme.ClientSecret, acme2Tok},
		{"acme revokes beta's token", f.acme.ClientID, f.acme.ClientSecret, betaTok},
		{"acme revokes the admin's token", f.acme.ClientID, f.acme.ClientSecret, f.admin},
		{"admin revokes acme's token", e.AdminID, e.AdminSecret, tok},
		{"rs revokes acme's token", f.rs.ClientID, f.rs.ClientSecret, tok},
	} {
		r := e.revoke(t, c.id, c.secret, c.tok)
		servertest.CheckOAuthError(t, r, http.StatusBadRequest, "unauthorized_client")
	}
	// Unauthenticated.
	servertest.CheckOAuthError(t, e.revoke(t, "", "", tok), http.StatusUnauthorized, "invalid_client")
	servertest.CheckOAuthError(t, e.revoke(t, f.acme.ClientID, f.beta.ClientSecret, tok), http.StatusUnauthorized, "invalid_client")
	if after := e.revokeState(t, jtis...); after != before {
		t.Fatalf("refused or no-op revocations changed the store:\nbefore:\n%s\nafter:\n%s", before, after)
	}
	for _, c := range []struct{ what, tok string }{{"acme's", tok}, {"acme2's", acme2Tok}, {"beta's", betaTok}, {"admin's", f.admin}} {
		checkActive(t, c.what+" token after refused revocations", e.introspect(t, e.AdminID, e.AdminSecret, c.tok), c.tok)
	}

	// A key revokes its own token.
	checkRevokeOK(t, "own token", e.revoke(t, f.acme.ClientID, f.acme.ClientSecret, tok))
	checkInactive(t, "revoked token, own", e.introspect(t, f.acme.ClientID, f.acme.ClientSecret, tok))
	checkInactive(t, "revoked token, admin", e.introspect(t, e.AdminID, e.AdminSecret, tok))
	// Only that token: the key's other token and the key itself still work.
	checkActive(t, "the key's other token", e.introspect(t, f.acme.ClientID, f.acme.ClientSecret, other), other)
	fresh := e.Token(t, f.acme.ClientID, f.acme.ClientSecret, "").AccessToken
	checkActive(t, "a new token of the key", e.introspect(t, f.acme.ClientID, f.acme.ClientSecret, fresh), fresh)
	// Idempotent; form authentication works too.
	checkRevokeOK(t, "again", e.revoke(t, f.acme.ClientID, f.acme.ClientSecret, tok))
	checkRevokeOK(t, "client_secret_post with hint", e.oauthPost(t, "/oauth/revoke", "", "", url.Values{
		"token": {tok}, "token_type_hint": {"access_token"}, "client_id": {f.acme.ClientID}, "client_secret": {f.acme.ClientSecret},
	}))
	// Revocation changes the deny list and records one token.revoked event:
	// keys and the status list stay.
	e.FlushLastUsed(t) // fresh's last-used time
	snapBefore := e.revokeState(t)
	checkRevokeOK(t, "the other token", e.revoke(t, f.acme.ClientID, f.acme.ClientSecret, other))
	got := e.revokeState(t)
	if withoutEvents(got) != withoutEvents(snapBefore) {
		t.Errorf("revocation changed keys or the status list:\nbefore:\n%s\nafter:\n%s", snapBefore, got)
	}
	if added := strings.Count(got, `"Action":"token.revoked"`) - strings.Count(snapBefore, `"Action":"token.revoked"`); added != 1 || strings.Count(got, `{"Seq":`) != strings.Count(snapBefore, `{"Seq":`)+1 {
		t.Errorf("revocation recorded %d token.revoked events (want 1) among its changes:\nbefore:\n%s\nafter:\n%s", added, snapBefore, got)
	}
	if d, err := e.Store.TokenDenied(context.Background(), jtiOf(t, other)); err != nil || !d {
		t.Errorf("revoked jti not on the store's deny list: %v %v", d, err)
	}

	// Documented limitation: an offline verifier does not see the deny list;
	// the revoked token still verifies against the JWKS until it expires.
	v := verifyJWT(t, set, tok, "ES256")
	if v.Claims["jti"] != jtiOf(t, tok) {
		t.Errorf("verified jti %v", v.Claims["jti"])
	}

	// The deny list is in the store: a second instance on the same store
	// sees the token as revoked.
	e2 := e.second(t, server.Options{})
	checkInactive(t, "second instance, revoked token", e2.introspect(t, f.acme.ClientID, f.acme.ClientSecret, tok))
	checkActive(t, "second instance, fresh token", e2.introspect(t, f.acme.ClientID, f.acme.ClientSecret, fresh), fresh)
	// And a revocation on the second instance shows on the first.
	checkRevokeOK(t, "revoke on the second instance", e2.revoke(t, f.acme.ClientID, f.acme.ClientSecret, fresh))
	checkInactive(t, "first instance, token revoked on the second", e.introspect(t, f.acme.ClientID, f.acme.ClientSecret, fresh))
}

// TestRevokeExpiredOwnToken: an expired token needs no revocation (§2.2):
// 200 and nothing stored.
func TestRevokeExpiredOwnToken(t *testing.T) {
	t.Parallel()
	f := newIRFixture(t, server.Options{})
	e := f.e
	tok := e.Token(t, f.acme.ClientID, f.acme.ClientSecret, "").AccessToken
	f.clock.Advance(2 * time.Hour)
	e.FlushLastUsed(t)
	before := e.revokeState(t, jtiOf(t, tok))
	checkRevokeOK(t, "expired own token", e.revoke(t, f.acme.ClientID, f.acme.ClientSecret, tok))
	if after := e.revokeState(t, jtiOf(t, tok)); after != before {
		t.Errorf("revoking an expired token changed the store:\nbefore:\n%s\nafter:\n%s", before, after)
	}
}

// TestKeygateNeedsNotReachItsOwnIssuer: the issuer is the public URL
// (https://auth.example.com behind a load balancer), which an instance may
// well not reach from inside. keygate's own checks (admin tokens at the
// management API, introspection, revocation) read the store; they must not
// depend on fetching keygate's own status list over HTTP.
func TestKeygateNeedsNotReachItsOwnIssuer(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	unreachable := "http://" + ln.Addr().String() // nothing listens there once closed
	ln.Close()
	e := newTestEnv(t, server.Options{Issuer: unreachable})
	admin := e.AdminToken(t)
	if c := irPayload(t, admin); c["status"] == nil || c["iss"] != unreachable {
		t.Fatalf("admin token iss %v status %v", c["iss"], c["status"])
	}
	r := e.API(t, admin, http.MethodPost, "/v1/teams/acme/keys", map[string]any{"name": "a", "permissions": []string{permAccounting}})
	if r.Status != http.StatusCreated {
		t.Fatalf("management API with an admin token, issuer not reachable from keygate: %s", r)
	}
	var k keyJSON
	if err := json.Unmarshal(r.Body, &k); err != nil {
		t.Fatal(err)
	}
	tok := e.Token(t, k.ClientID, k.ClientSecret, "").AccessToken
	checkActive(t, "introspection, issuer not reachable", e.introspect(t, k.ClientID, k.ClientSecret, tok), tok)
	checkActive(t, "introspection of the admin token", e.introspect(t, e.AdminID, e.AdminSecret, admin), admin)
	checkRevokeOK(t, "revocation", e.revoke(t, k.ClientID, k.ClientSecret, tok))
	checkInactive(t, "after revocation", e.introspect(t, k.ClientID, k.ClientSecret, tok))
}

// TestInstancesToleratePlainClockSkew: several instances share a store
// behind one load balancer, and their clocks differ by a little. A token
// one instance issues at the start of a second must introspect as active
// (and an admin token must work) at an instance whose clock is 300 ms
// behind; only exp is exact.
func TestInstancesToleratePlainClockSkew(t *testing.T) {
	t.Parallel()
	f := newIRFixture(t, server.Options{})
	e := f.e
	behind := func() time.Time { return f.clock.Now().Add(-300 * time.Millisecond) }
	e2 := e.second(t, server.Options{Now: behind})

	// f.clock is on a whole second: iat is "now" at the first instance.
	tok := e.Token(t, f.acme.ClientID, f.acme.ClientSecret, "").AccessToken
	admin := e.AdminToken(t)
	checkActive(t, "instance 300 ms behind", e2.introspect(t, f.acme.ClientID, f.acme.ClientSecret, tok), tok)
	if r := e2.API(t, admin, http.MethodGet, "/v1/teams/acme/keys", nil); r.Status != http.StatusOK {
		t.Errorf("admin token at an instance 300 ms behind: %s", r)
	}
	// exp stays exact everywhere.
	exp := time.Unix(claimInt(t, irPayload(t, tok), "exp"), 0)
	f.clock.Set(exp)
	checkInactive(t, "at exp, first instance", e.introspect(t, f.acme.ClientID, f.acme.ClientSecret, tok))
	f.clock.Set(exp.Add(301 * time.Millisecond))
	checkInactive(t, "at exp, instance behind", e2.introspect(t, f.acme.ClientID, f.acme.ClientSecret, tok))
}
