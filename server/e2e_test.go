package server_test

// End to end over real HTTP: admin token → create key → token through an
// unmodified golang.org/x/oauth2/clientcredentials → JWT verified against the
// served JWKS with go-jose (independent of the signer) → last_used_at shows →
// delete → 401 invalid_client.

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"

	"github.com/keygate/keygate/config"
	"github.com/keygate/keygate/credential"
	"github.com/keygate/keygate/server"
	"github.com/keygate/keygate/server/servertest"
	"github.com/keygate/keygate/store"
)

// ktyOf is the JWK key type each algorithm's key must have.
var ktyOf = map[string]string{"ES256": "EC", "RS256": "RSA", "EdDSA": "OKP"}

// fetchJWKS gets /.well-known/jwks.json both as go-jose's key set and as raw
// members (to check what go-jose does not expose, like kty and private parts).
func (e *testEnv) fetchJWKS(tb testing.TB) (jose.JSONWebKeySet, []map[string]any) {
	tb.Helper()
	r := e.Do(tb, e.NewRequest(tb, http.MethodGet, "/.well-known/jwks.json", nil))
	if r.Status != http.StatusOK {
		tb.Fatalf("jwks: %s", r)
	}
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(r.Body, &set); err != nil {
		tb.Fatalf("jwks is not a JWK set go-jose accepts: %v: %s", err, r.Body)
	}
	var raw struct {
		Keys []map[string]any `json:"keys"`
	}
	if err := json.Unmarshal(r.Body, &raw); err != nil {
		tb.Fatal(err)
	}
	return set, raw.Keys
}

// verifiedToken is a JWT checked by go-jose against a JWKS.
type verifiedToken struct {
	Alg    string
	KID    string
	Typ    any
	Claims map[string]any
}

// verifyJWT checks tok's signature with go-jose, allowing only alg, against
// the key named by its kid in set.
func verifyJWT(tb testing.TB, set jose.JSONWebKeySet, tok, alg string) verifiedToken {
	tb.Helper()
	jws, err := jose.ParseSigned(tok, []jose.SignatureAlgorithm{jose.SignatureAlgorithm(alg)})
	if err != nil {
		tb.Fatalf("go-jose refuses the token (want alg %s): %v", alg, err)
	}
	if len(jws.Signatures) != 1 {
		tb.Fatalf("%d signatures, want 1", len(jws.Signatures))
	}
	h := jws.Signatures[0].Header
	if h.KeyID == "" {
		tb.Fatal("token header has no kid")
	}
	keys := set.Key(h.KeyID)
	if len(keys) != 1 {
		tb.Fatalf("JWKS has %d keys with kid %s, want 1", len(keys), h.KeyID)
	}
	if keys[0].Algorithm != alg || keys[0].Use != "sig" {
		tb.Errorf("JWK alg %q use %q, want %s sig", keys[0].Algorithm, keys[0].Use, alg)
	}
	if !keys[0].IsPublic() {
		tb.Error("the JWKS publishes a private key")
	}
	payload, err := jws.Verify(keys[0])
	if err != nil {
		tb.Fatalf("signature does not verify against the served JWKS: %v", err)
	}
	dec := json.NewDecoder(strings.NewReader(string(payload)))
	dec.UseNumber()
	var claims map[string]any
	if err := dec.Decode(&claims); err != nil {
		tb.Fatalf("claims: %v", err)
	}
	return verifiedToken{Alg: h.Algorithm, KID: h.KeyID, Typ: h.ExtraHeaders[jose.HeaderType], Claims: claims}
}

func claimInt(tb testing.TB, c map[string]any, name string) int64 {
	tb.Helper()
	n, ok := c[name].(json.Number)
	if !ok {
		tb.Fatalf("claim %s is %T %v, want a number", name, c[name], c[name])
	}
	v, err := n.Int64()
	if err != nil {
		tb.Fatalf("claim %s: %v", name, err)
	}
	return v
}

// checkAccessToken checks an RFC 9068 token of a key of team "acme" with
// all accounting_api scopes.
func checkAccessToken(tb testing.TB, e *testEnv, set jose.JSONWebKeySet, tok, alg, clientID, team, scope string) verifiedToken {
	tb.Helper()
	v := verifyJWT(tb, set, tok, alg)
	if v.Typ != "at+jwt" {
		tb.Errorf("typ %v, want at+jwt", v.Typ)
	}
	if v.Alg != alg {
		tb.Errorf("alg %s, want %s", v.Alg, alg)
	}
	c := v.Claims
	want := map[string]any{"iss": e.URL, "aud": e.URL, "sub": clientID, "client_id": clientID, "scope": scope}
	if strings.HasPrefix(scope, "keys:") || strings.Contains(scope, " keys:") {
		want["aud"] = e.URL + "/v1" // management tokens: the management API's own audience
	}
	if team != "" {
		want["team_id"] = team
	}
	for name, w := range want {
		if c[name] != w {
			tb.Errorf("claim %s = %v, want %v", name, c[name], w)
		}
	}
	if team == "" {
		if _, ok := c["team_id"]; ok {
			tb.Errorf("admin token has team_id %v", c["team_id"])
		}
	}
	iat, exp, nbf := claimInt(tb, c, "iat"), claimInt(tb, c, "exp"), claimInt(tb, c, "nbf")
	if exp-iat != 900 {
		tb.Errorf("exp-iat = %d, want 900 (15 minutes)", exp-iat)
	}
	if nbf > iat {
		tb.Errorf("nbf %d after iat %d", nbf, iat)
	}
	if now := time.Now().Unix(); iat < now-60 || iat > now+5 {
		tb.Errorf("iat %d is not now (%d)", iat, now)
	}
	if jti, _ := c["jti"].(string); len(jti) < 16 {
		tb.Errorf("jti %q missing or short", jti)
	}
	return v
}

func TestEndToEnd(t *testing.T) {
	for _, alg := range []string{"ES256", "RS256", "EdDSA"} {
		t.Run(alg, func(t *testing.T) {
			t.Parallel()
			forEachBackend(t, func(t *testing.T, b servertest.Backend) { testEndToEnd(t, alg, b) })
		})
	}
}

func testEndToEnd(t *testing.T, alg string, b servertest.Backend) {
	e := startEnv(t, servertest.Config{Options: server.Options{SigningAlg: alg}, Backend: b})
	ctx := context.WithValue(context.Background(), oauth2.HTTPClient, e.Client)
	admin := e.AdminToken(t)
	key := e.CreateKeyWith(t, admin, "acme", "Production sync", permAccounting)

	set, rawKeys := e.fetchJWKS(t)
	if len(rawKeys) != 1 {
		t.Fatalf("JWKS has %d keys, want 1 on a fresh store", len(rawKeys))
	}
	if rawKeys[0]["alg"] != alg || rawKeys[0]["kty"] != ktyOf[alg] {
		t.Errorf("JWK alg %v kty %v, want %s %s", rawKeys[0]["alg"], rawKeys[0]["kty"], alg, ktyOf[alg])
	}
	if kid, _ := rawKeys[0]["kid"].(string); kid == "" {
		t.Error("JWK without kid")
	}

	allScopes := strings.Join(accountingScopes, " ")
	for _, style := range []struct {
		name  string
		style oauth2.AuthStyle
	}{{"header", oauth2.AuthStyleInHeader}, {"params", oauth2.AuthStyleInParams}} {
		cfg := clientcredentials.Config{
			ClientID:     key.ClientID,
			ClientSecret: key.ClientSecret,
			TokenURL:     e.URL + "/oauth/token",
			AuthStyle:    style.style,
		}
		tok, err := cfg.Token(ctx)
		if err != nil {
			t.Fatalf("%s: clientcredentials: %v", style.name, err)
		}
		if tok.TokenType != "Bearer" {
			t.Errorf("%s: token_type %q", style.name, tok.TokenType)
		}
		if got := tok.Extra("scope"); got != allScopes {
			t.Errorf("%s: response scope %v, want %s", style.name, got, allScopes)
		}
		if d := time.Until(tok.Expiry); d < 890*time.Second || d > 901*time.Second {
			t.Errorf("%s: expires in %v, want 15m", style.name, d)
		}
		checkAccessToken(t, e, set, tok.AccessToken, alg, key.ClientID, "acme", allScopes)
	}

	// The admin token verifies the same way and carries keys:admin.
	checkAccessToken(t, e, set, admin, alg, e.AdminID, "", "keys:admin")

	// A never-used key's first use is written at the next last-used flush.
	e.FlushLastUsed(t)
	l := e.ListKeys(t, admin, "acme")
	if len(l.Keys) != 1 {
		t.Fatalf("list has %d keys, want 1", len(l.Keys))
	}
	listed := l.Keys[0]
	if listed.LastUsedAt == nil {
		t.Fatal("last_used_at still null after a last-used flush that followed the key's tokens")
	}
	if d := time.Since(*listed.LastUsedAt); d < -time.Second || d > 10*time.Second {
		t.Errorf("last_used_at %v is not recent", listed.LastUsedAt)
	}

	r := e.API(t, admin, http.MethodDelete, "/v1/teams/acme/keys/"+key.ClientID, nil)
	if r.Status != http.StatusNoContent {
		t.Fatalf("delete: %s", r)
	}
	cfg := clientcredentials.Config{ClientID: key.ClientID, ClientSecret: key.ClientSecret, TokenURL: e.URL + "/oauth/token", AuthStyle: oauth2.AuthStyleInHeader}
	_, err := cfg.Token(ctx)
	var re *oauth2.RetrieveError
	if !errors.As(err, &re) {
		t.Fatalf("token after delete: %v, want a RetrieveError", err)
	}
	if re.Response.StatusCode != http.StatusUnauthorized || re.ErrorCode != "invalid_client" {
		t.Errorf("token after delete: %d %q, want 401 invalid_client", re.Response.StatusCode, re.ErrorCode)
	}
	if got := re.Response.Header.Get("WWW-Authenticate"); got != `Basic realm="keygate"` {
		t.Errorf("WWW-Authenticate %q", got)
	}
}

// TestBasicAuthFormURLEncoded: RFC 6749 §2.3.1 has the client ID and secret
// form-urlencoded before Base64, so the server must decode them.
func TestBasicAuthFormURLEncoded(t *testing.T) {
	t.Parallel()
	secret, err := credential.NewSecret()
	if err != nil {
		t.Fatal(err)
	}
	const adminID = "ops.admin~1"
	e := newTestEnv(t, server.Options{AdminClientID: adminID, AdminClientSecret: secret})
	set, _ := e.fetchJWKS(t)

	// An unmodified client.
	cfg := clientcredentials.Config{ClientID: adminID, ClientSecret: secret, TokenURL: e.URL + "/oauth/token", AuthStyle: oauth2.AuthStyleInHeader}
	tok, err := cfg.Token(context.WithValue(context.Background(), oauth2.HTTPClient, e.Client))
	if err != nil {
		t.Fatalf("clientcredentials with id %q: %v", adminID, err)
	}
	if v := verifyJWT(t, set, tok.AccessToken, "ES256"); v.Claims["sub"] != adminID {
		t.Errorf("sub %v, want %s", v.Claims["sub"], adminID)
	}

	// A key whose client ID needs encoding: space and '+' (stored directly, with
	// the hash of a key whose secret we know). Admin keys, since only they may
	// have IDs outside keygate's kgc_ form.
	admin := e.AdminToken(t)
	known := e.CreateKeyWith(t, admin, "acme", "known", permVisualization)
	hash := e.StoredKey(t, known.ClientID).SecretHash
	for _, id := range []string{"team key.1", "x+y"} {
		if err := e.Store.CreateKey(context.Background(), store.Key{
			ClientID: id, TeamID: "", Name: "odd id", Permissions: []string{permVisualization},
			CreatedAt: time.Now().UTC(), SecretHash: hash,
		}, 5); err != nil {
			t.Fatal(err)
		}
	}

	percentAll := func(s string) string {
		var b strings.Builder
		for i := 0; i < len(s); i++ {
			fmt.Fprintf(&b, "%%%02X", s[i])
		}
		return b.String()
	}
	cases := []struct {
		name, rawID, rawSecret, secret, wantSub string
		wantStatus                              int
	}{
		{"QueryEscape", url.QueryEscape(adminID), url.QueryEscape(secret), secret, adminID, 200},
		{"dot as %2E, tilde as %7E", "ops%2Eadmin%7E1", secret, secret, adminID, 200},
		{"lower-case escapes", "ops%2eadmin%7e1", secret, secret, adminID, 200},
		{"secret fully percent-encoded", adminID, percentAll(secret), secret, adminID, 200},
		{"space as +", "team+key.1", known.ClientSecret, known.ClientSecret, "team key.1", 200},
		{"space as %20", "team%20key.1", known.ClientSecret, known.ClientSecret, "team key.1", 200},
		{"plus as %2B", "x%2By", known.ClientSecret, known.ClientSecret, "x+y", 200},
		// A raw '+' is a space once decoded: "x y" is no key.
		{"raw plus decodes to space", "x+y", known.ClientSecret, known.ClientSecret, "", 401},
		{"bad escape", "ops%ZZadmin", secret, secret, "", 401},
	}
	for _, c := range cases {
		req := e.NewRequest(t, http.MethodPost, "/oauth/token", strings.NewReader("grant_type=client_credentials"))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte(c.rawID+":"+c.rawSecret)))
		r := e.Do(t, req)
		if r.Status != c.wantStatus {
			t.Errorf("%s: %s, want %d", c.name, r, c.wantStatus)
			continue
		}
		if c.wantStatus != 200 {
			servertest.CheckOAuthError(t, r, 401, "invalid_client")
			continue
		}
		var tr tokenResponse
		if err := json.Unmarshal(r.Body, &tr); err != nil {
			t.Fatal(err)
		}
		if v := verifyJWT(t, set, tr.AccessToken, "ES256"); v.Claims["sub"] != c.wantSub {
			t.Errorf("%s: sub %v, want %s", c.name, v.Claims["sub"], c.wantSub)
		}
	}

	// Form fields are plain form encoding too.
	r := e.TokenRequest(t, "", "", url.Values{"grant_type": {"client_credentials"}, "client_id": {"team key.1"}, "client_secret": {known.ClientSecret}})
	if r.Status != 200 {
		t.Errorf("form client_id with a space: %s", r)
	}
}

func TestMetadata(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t, server.Options{})
	r := e.Do(t, e.NewRequest(t, http.MethodGet, "/.well-known/oauth-authorization-server", nil))
	if r.Status != http.StatusOK {
		t.Fatalf("metadata: %s", r)
	}
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("Content-Type %q", ct)
	}
	var m struct {
		Issuer          string   `json:"issuer"`
		TokenEndpoint   string   `json:"token_endpoint"`
		JWKSURI         string   `json:"jwks_uri"`
		GrantTypes      []string `json:"grant_types_supported"`
		AuthMethods     []string `json:"token_endpoint_auth_methods_supported"`
		ScopesSupported []string `json:"scopes_supported"`
	}
	if err := json.Unmarshal(r.Body, &m); err != nil {
		t.Fatalf("%v: %s", err, r.Body)
	}
	if m.Issuer != e.URL || m.TokenEndpoint != e.URL+"/oauth/token" || m.JWKSURI != e.URL+"/.well-known/jwks.json" {
		t.Errorf("issuer/token_endpoint/jwks_uri = %s %s %s", m.Issuer, m.TokenEndpoint, m.JWKSURI)
	}
	if !slices.Equal(m.GrantTypes, []string{"client_credentials"}) {
		t.Errorf("grant_types_supported %v", m.GrantTypes)
	}
	for _, want := range []string{"client_secret_basic", "client_secret_post"} {
		if !slices.Contains(m.AuthMethods, want) {
			t.Errorf("token_endpoint_auth_methods_supported %v lacks %s", m.AuthMethods, want)
		}
	}
	for _, want := range []string{"accounting:read", "visualizations:read", "keys:admin"} {
		if !slices.Contains(m.ScopesSupported, want) {
			t.Errorf("scopes_supported %v lacks %s", m.ScopesSupported, want)
		}
	}
	// The advertised endpoints work.
	for _, u := range []string{m.JWKSURI} {
		resp, err := e.Client.Get(u)
		if err != nil || resp.StatusCode != 200 {
			t.Errorf("GET %s: %v %v", u, err, resp)
		}
		if resp != nil {
			resp.Body.Close()
		}
	}
}

func TestJWKSPublicOnly(t *testing.T) {
	for _, alg := range []string{"ES256", "RS256", "EdDSA"} {
		t.Run(alg, func(t *testing.T) {
			t.Parallel()
			e := newTestEnv(t, server.Options{SigningAlg: alg})
			r := e.Do(t, e.NewRequest(t, http.MethodGet, "/.well-known/jwks.json", nil))
			if r.Status != 200 {
				t.Fatalf("jwks: %s", r)
			}
			if cc := r.Header.Get("Cache-Control"); !strings.Contains(cc, "max-age=") {
				t.Errorf("Cache-Control %q, want a max-age", cc)
			}
			_, keys := e.fetchJWKS(t)
			if len(keys) == 0 {
				t.Fatal("empty JWKS")
			}
			for _, k := range keys {
				for _, private := range []string{"d", "p", "q", "dp", "dq", "qi", "k"} {
					if _, ok := k[private]; ok {
						t.Errorf("JWK %v has private member %q", k["kid"], private)
					}
				}
				if k["use"] != "sig" || k["alg"] != alg || k["kty"] != ktyOf[alg] || k["kid"] == "" {
					t.Errorf("JWK %v: want use sig, alg %s, kty %s, kid", k, alg, ktyOf[alg])
				}
			}
		})
	}
}

// TestScopeNarrowing: a requested scope narrows the grant; an absent one
// grants everything (an empty one is invalid_scope: TestTokenBadRequests).
func TestScopeNarrowing(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t, server.Options{})
	key := e.CreateKey(t, "acme", "narrow", permAccounting)
	set, _ := e.fetchJWKS(t)

	cases := []struct {
		name string
		form url.Values
		want string
	}{
		{"narrowed", url.Values{"scope": {"banking:read accounting:read"}}, "banking:read accounting:read"},
		{"one scope", url.Values{"scope": {"analytics:write"}}, "analytics:write"},
		{"repeated scope collapses", url.Values{"scope": {"common:read common:read"}}, "common:read"},
		{"absent scope grants all", url.Values{}, strings.Join(accountingScopes, " ")},
	}
	for _, c := range cases {
		c.form.Set("grant_type", "client_credentials")
		r := e.TokenRequest(t, key.ClientID, key.ClientSecret, c.form)
		if r.Status != 200 {
			t.Errorf("%s: %s", c.name, r)
			continue
		}
		if cc := r.Header.Get("Cache-Control"); cc != "no-store" {
			t.Errorf("%s: Cache-Control %q", c.name, cc)
		}
		var tr tokenResponse
		if err := json.Unmarshal(r.Body, &tr); err != nil {
			t.Fatal(err)
		}
		if tr.Scope != c.want {
			t.Errorf("%s: response scope %q, want %q", c.name, tr.Scope, c.want)
		}
		if tr.ExpiresIn != 900 {
			t.Errorf("%s: expires_in %d, want 900", c.name, tr.ExpiresIn)
		}
		if v := verifyJWT(t, set, tr.AccessToken, "ES256"); v.Claims["scope"] != c.want {
			t.Errorf("%s: scope claim %v, want %q", c.name, v.Claims["scope"], c.want)
		}
	}
}

// TestSigningAlgChange: a new signing_alg on the same store goes through a
// rotation: a key of the new algorithm is published at once and signs
// after the prepublish period; until then the old key signs, and after it
// the old public key stays published so tokens it signed keep verifying.
// The metadata lists both algorithms while both are published.
func TestSigningAlgChange(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t, server.Options{SigningAlg: "ES256"})
	key := e.CreateKey(t, "acme", "before", permVisualization)
	oldAdmin := e.AdminToken(t)
	oldTeam := e.Token(t, key.ClientID, key.ClientSecret, "").AccessToken
	oldSet, _ := e.fetchJWKS(t)
	oldKID := verifyJWT(t, oldSet, oldTeam, "ES256").KID

	srv2 := e.Restart(t, server.Options{SigningAlg: "RS256"})
	if _, ok := srv2.GeneratedAdmin(); ok {
		t.Error("a restart on a store with an admin key generated another one")
	}
	// Published, not signing yet.
	set, raw := e.fetchJWKS(t)
	if len(raw) != 2 {
		t.Fatalf("JWKS right after the change has %d keys, want the ES256 key and the next RS256 key", len(raw))
	}
	if v := verifyJWT(t, set, e.Token(t, key.ClientID, key.ClientSecret, "").AccessToken, "ES256"); v.KID != oldKID {
		t.Errorf("before the prepublish period has passed a token names kid %s, want the old %s", v.KID, oldKID)
	}
	r := e.Do(t, e.NewRequest(t, http.MethodGet, "/.well-known/oauth-authorization-server", nil))
	if !strings.Contains(string(r.Body), `"access_token_signing_alg_values_supported":["ES256","RS256"]`) {
		t.Errorf("metadata during the change: %s", r.Body)
	}

	// A minute before the switch: still the old key.
	e.Clock.Advance(config.DefaultSigningKeyPrepublish - time.Minute)
	oldAdmin = e.AdminToken(t)
	oldTeam = e.Token(t, key.ClientID, key.ClientSecret, "").AccessToken
	e.Clock.Advance(time.Minute)
	newTok := e.Token(t, key.ClientID, key.ClientSecret, "").AccessToken
	set, raw = e.fetchJWKS(t)
	nv := verifyJWT(t, set, newTok, "RS256")
	if nv.KID == oldKID {
		t.Error("the RS256 token names the old ES256 kid")
	}
	if nv.Claims["sub"] != key.ClientID {
		t.Errorf("sub %v", nv.Claims["sub"])
	}
	// Old tokens still verify against the new JWKS, with their own algorithm.
	if v := verifyJWT(t, set, oldTeam, "ES256"); v.KID != oldKID {
		t.Errorf("old token kid %s, want %s", v.KID, oldKID)
	}
	algs := map[string]bool{}
	for _, k := range raw {
		algs[fmt.Sprint(k["alg"])] = true
		if k["kty"] != ktyOf[fmt.Sprint(k["alg"])] {
			t.Errorf("JWK %v: kty does not fit alg", k)
		}
	}
	if !algs["ES256"] || !algs["RS256"] || len(raw) != 2 {
		t.Errorf("JWKS after the change has %v, want the RS256 key and the retired ES256 key", raw)
	}
	// The management API accepts an admin token signed by the old key
	// (issued before the switch, still within its lifetime).
	if r := e.API(t, oldAdmin, http.MethodGet, "/v1/teams/acme/keys", nil); r.Status != 200 {
		t.Errorf("old admin token after the alg change: %s", r)
	}
	// The metadata names the new algorithm first, the retired one after.
	r = e.Do(t, e.NewRequest(t, http.MethodGet, "/.well-known/oauth-authorization-server", nil))
	if !strings.Contains(string(r.Body), `"access_token_signing_alg_values_supported":["RS256","ES256"]`) {
		t.Errorf("metadata after the change: %s", r.Body)
	}
}

// TestInjectedClock: Options.Now is "the clock" of the server. The verifier,
// signing keys and created_at follow it; the token path must too, or a
// server with a moved clock refuses its own fresh tokens.
func TestInjectedClock(t *testing.T) {
	t.Parallel()
	fixed := time.Now().Add(-2 * time.Hour).Truncate(time.Second)
	e := startEnv(t, servertest.Config{Clock: servertest.NewClock(fixed)})
	set, _ := e.fetchJWKS(t)
	admin := e.AdminToken(t)
	if iat := claimInt(t, verifyJWT(t, set, admin, "ES256").Claims, "iat"); iat != fixed.Unix() {
		t.Errorf("iat %d is the wall clock, not Options.Now (%d)", iat, fixed.Unix())
	}
	if r := e.API(t, admin, http.MethodGet, "/v1/teams/acme/keys", nil); r.Status != http.StatusOK {
		t.Errorf("the server refuses its own fresh admin token: %s", r)
	}
}
