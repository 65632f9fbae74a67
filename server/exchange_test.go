package server_test

// RFC 8693 token exchange against a real identity provider made here
// (package trustedissuertest: its own ES256, RSA and Ed25519 keys, its JWKS
// over HTTP on loopback).

import (
	"context"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/pb33f/libopenapi"
	validator "github.com/pb33f/libopenapi-validator"
	oaconfig "github.com/pb33f/libopenapi-validator/config"

	"github.com/keygate/keygate/config"
	"github.com/keygate/keygate/openapi"
	"github.com/keygate/keygate/server"
	"github.com/keygate/keygate/server/servertest"
	"github.com/keygate/keygate/store"
	"github.com/keygate/keygate/trustedissuer/trustedissuertest"
)

const (
	grantExchange = "urn:ietf:params:oauth:grant-type:token-exchange"
	typeJWT       = "urn:ietf:params:oauth:token-type:jwt"
	typeAccess    = "urn:ietf:params:oauth:token-type:access_token"
	idpAudience   = "keygate-at-platform"
	// The exact answer to any invalid or unacceptable subject token.
	subjectRefused = `{"error":"invalid_request","error_description":"the subject token is invalid or not acceptable: it must be a JWT of a trusted issuer for this client, signed with a key of its JWKS, with the configured audience, unexpired, naming a team the issuer may name and a user"}` + "\n"
)

// exchangeBackends are the stores the exchange runs on: those that keep
// management sessions.
var exchangeBackends = []servertest.Backend{servertest.Memory(), servertest.Bolt(), servertest.Redis()}

type exchangeEnv struct {
	*testEnv
	idp *trustedissuertest.IdP
	// platform holds token_exchange; plain is a key of the same team
	// without it; other holds token_exchange but is not among the
	// issuer's clients (in the second test set-up).
	platform, plain, other keyJSON
	// member is a key of the team the subject tokens name.
	member keyJSON
	// logger, when an edit sets it, receives keygate's log.
	logger *slog.Logger
}

// startExchange starts keygate on b trusting one provider for teams
// starting with "acme", edited by edit.
func startExchange(t *testing.T, b servertest.Backend, edit func(e *exchangeEnv, ti *config.TrustedIssuer)) *exchangeEnv {
	t.Helper()
	idp := trustedissuertest.New(t)
	ti := config.TrustedIssuer{
		Issuer: idp.Issuer, JWKSURI: idp.JWKSURI, Audience: idpAudience,
		TeamClaim: "org", UserClaim: "email", Teams: []string{"acme"},
	}
	ex := &exchangeEnv{idp: idp}
	if edit != nil {
		edit(ex, &ti)
	}
	ex.testEnv = startEnv(t, servertest.Config{Backend: b, Options: server.Options{TrustedIssuers: []config.TrustedIssuer{ti}, Logger: ex.logger}})
	admin := ex.AdminToken(t)
	ex.platform = ex.createOperatorKey(t, admin, "platform", "platform backend", "token_exchange")
	ex.other = ex.createOperatorKey(t, admin, "platform", "another backend", "token_exchange")
	ex.plain = ex.CreateKeyWith(t, admin, "platform", "plain", permAccounting)
	ex.member = ex.CreateKeyWith(t, admin, "acme-eu", "acme's key", permAccounting)
	return ex
}

func (e *exchangeEnv) createOperatorKey(t *testing.T, admin, team, name string, perms ...string) keyJSON {
	t.Helper()
	r := e.API(t, admin, http.MethodPost, "/v1/teams/"+team+"/keys", map[string]any{
		"name": name, "permissions": perms, "grant_operator_permissions": true,
	})
	if r.Status != http.StatusCreated {
		t.Fatalf("create %s: %s", name, r)
	}
	var k keyJSON
	if err := json.Unmarshal(r.Body, &k); err != nil {
		t.Fatal(err)
	}
	return k
}

// claims are a good subject token's claims at the keygate's clock.
func (e *exchangeEnv) claims() jwt.MapClaims {
	now := e.Clock.Now()
	return jwt.MapClaims{
		"iss": e.idp.Issuer, "aud": idpAudience, "sub": "idp-user-17",
		"iat": now.Unix(), "nbf": now.Unix(), "exp": now.Add(time.Hour).Unix(),
		"org": "acme-eu", "email": "alice@example.com",
	}
}

func (e *exchangeEnv) with(edit func(jwt.MapClaims)) jwt.MapClaims {
	c := e.claims()
	edit(c)
	return c
}

func (e *exchangeEnv) exchange(t *testing.T, k keyJSON, subject, subjectType string) response {
	t.Helper()
	form := url.Values{"grant_type": {grantExchange}, "subject_token": {subject}}
	if subjectType != "" {
		form.Set("subject_token_type", subjectType)
	}
	return e.TokenRequest(t, k.ClientID, k.ClientSecret, form)
}

// state is what a refused exchange must leave as it was: the sessions and
// audit trail of the team named and of the platform's team.
func (e *exchangeEnv) state(t *testing.T) string {
	t.Helper()
	ctx := context.Background()
	sessions, ok := store.Feature[store.Sessions](e.Store)
	if !ok {
		t.Fatalf("%T keeps no management sessions", e.Store)
	}
	var b strings.Builder
	for _, team := range []string{"acme-eu", "acme-us", "platform", "initech", ""} {
		var list []store.ManagementSession
		if team != "" { // admin keys' trail: events only
			var err error
			if list, err = sessions.ListSessions(ctx, team, e.Clock.Now()); err != nil {
				t.Fatal(err)
			}
		}
		page, err := e.Store.AuditEvents(ctx, team, store.AuditQuery{Limit: store.MaxAuditLimit})
		if err != nil {
			t.Fatal(err)
		}
		raw, _ := json.Marshal(map[string]any{"team": team, "sessions": list, "events": len(page.Events)})
		b.Write(raw)
	}
	return b.String()
}

// claimsOf decodes a compact JWS's payload (keygate signed it; its
// signature is checked by the management API that accepts it).
func claimsOf(t *testing.T, tok string) map[string]any {
	t.Helper()
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		t.Fatalf("not a compact JWS: %q", tok)
	}
	raw, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

type exchangeAnswer struct {
	AccessToken     string `json:"access_token"`
	IssuedTokenType string `json:"issued_token_type"`
	TokenType       string `json:"token_type"`
	ExpiresIn       int64  `json:"expires_in"`
	Scope           string `json:"scope"`
}

func TestTokenExchange(t *testing.T) {
	for _, b := range exchangeBackends {
		t.Run(b.Name(), func(t *testing.T) {
			e := startExchange(t, b, nil)
			ctx := context.Background()
			for _, tc := range []struct {
				name, subject, subjectType string
				subjectExp                 time.Time
			}{
				{"ES256, subject lives an hour", e.idp.ES256(t, e.claims()), typeJWT, e.Clock.Now().Add(time.Hour)},
				{"RS256, access_token type", e.idp.RS256(t, e.claims()), typeAccess, e.Clock.Now().Add(time.Hour)},
				{"EdDSA, subject expires in 5 minutes", e.idp.EdDSA(t, e.with(func(c jwt.MapClaims) {
					c["exp"] = e.Clock.Now().Add(5 * time.Minute).Unix()
				})), typeJWT, e.Clock.Now().Add(5 * time.Minute)},
			} {
				t.Run(tc.name, func(t *testing.T) {
					now := e.Clock.Now()
					r := e.exchange(t, e.platform, tc.subject, tc.subjectType)
					if r.Status != http.StatusOK {
						t.Fatalf("exchange: %s", r)
					}
					if cc := r.Header.Get("Cache-Control"); cc != "no-store" {
						t.Errorf("Cache-Control %q", cc)
					}
					var a exchangeAnswer
					if err := json.Unmarshal(r.Body, &a); err != nil {
						t.Fatal(err)
					}
					if a.IssuedTokenType != typeAccess || a.TokenType != "Bearer" || a.Scope != "keys:manage" || a.AccessToken == "" {
						t.Errorf("answer %s", r.Body)
					}
					c := claimsOf(t, a.AccessToken)
					exp := time.Unix(int64(c["exp"].(float64)), 0)
					act, _ := c["act"].(map[string]any)
					if act["sub"] != "alice@example.com" || c["team_id"] != "acme-eu" || c["aud"] != e.URL+"/v1" ||
						c["iss"] != e.URL || c["client_id"] != e.platform.ClientID || c["sub"] != e.platform.ClientID || c["scope"] != "keys:manage" {
						t.Errorf("claims %v", c)
					}
					if _, has := c["status"]; has {
						t.Errorf("a session token carries a status claim: %v", c)
					}
					// Never past the subject token, never past token_ttl. The
					// clock runs, so the server's "now" lies between the
					// readings taken before and after the request.
					after := e.Clock.Now()
					capExp := func(at time.Time) int64 {
						w := at.Add(config.DefaultTokenTTL)
						if tc.subjectExp.Before(w) {
							w = tc.subjectExp
						}
						return w.Unix()
					}
					if exp.After(tc.subjectExp) || exp.Unix() < capExp(now) || exp.Unix() > capExp(after) {
						t.Errorf("exp %v, want between %d and %d (subject's %v)", exp, capExp(now), capExp(after), tc.subjectExp)
					}
					if a.ExpiresIn > exp.Unix()-now.Unix() || a.ExpiresIn < exp.Unix()-after.Unix()-1 {
						t.Errorf("expires_in %d, exp - now = %d .. %d", a.ExpiresIn, exp.Unix()-after.Unix(), exp.Unix()-now.Unix())
					}

					// The session record is in the store, as is its event.
					sid, _ := c["sid"].(string)
					sessions, _ := store.Feature[store.Sessions](e.Store)
					sess, err := sessions.GetSession(ctx, sid)
					if err != nil {
						t.Fatalf("session %q: %v", sid, err)
					}
					if sess.Kind != store.SessionExchange || sess.TeamID != "acme-eu" || sess.User != "alice@example.com" ||
						sess.MintedBy != e.platform.ClientID || sess.ExpiresAt.Unix() != exp.Unix() {
						t.Errorf("session %+v", sess)
					}
					page, err := e.Store.AuditEvents(ctx, "acme-eu", store.AuditQuery{Actions: []store.AuditAction{store.AuditSessionCreated}, Limit: 1})
					if err != nil || len(page.Events) != 1 {
						t.Fatalf("session.created events: %v %v", page.Events, err)
					}
					ev := page.Events[0]
					if ev.Actor.ID != e.platform.ClientID || ev.Actor.OnBehalfOf != "alice@example.com" || ev.Actor.Via != "token_exchange" || ev.TeamID != "acme-eu" {
						t.Errorf("event %+v", ev)
					}
					// A session is a record an older keygate would ignore:
					// the store's schema was raised before it was written.
					if m, ok := e.Store.(interface{ Schema() int }); ok && m.Schema() < store.SchemaLevelAdminRoles {
						t.Errorf("store schema level %d after an exchange, want %d", m.Schema(), store.SchemaLevelAdminRoles)
					}
				})
			}
			// One fetch of the provider's keys served all three.
			if n := e.idp.Fetches.Load(); n != 1 {
				t.Errorf("%d JWKS fetches, want 1", n)
			}
		})
	}
}

// The exchanged token opens the management API for its team only.
func TestTokenExchangeOpensTheTeam(t *testing.T) {
	e := startExchange(t, servertest.Memory(), nil)
	r := e.exchange(t, e.platform, e.idp.ES256(t, e.claims()), typeJWT)
	if r.Status != http.StatusOK {
		t.Fatalf("exchange: %s", r)
	}
	var a exchangeAnswer
	if err := json.Unmarshal(r.Body, &a); err != nil {
		t.Fatal(err)
	}
	l := e.ListKeys(t, a.AccessToken, "acme-eu")
	if len(l.Keys) != 1 || l.Keys[0].ClientID != e.member.ClientID {
		t.Errorf("acme-eu's keys through the exchanged token: %+v", l)
	}
	if r := e.API(t, a.AccessToken, http.MethodGet, "/v1/teams/platform/keys", nil); r.Status != http.StatusNotFound {
		t.Errorf("another team's keys through the exchanged token: %s, want 404", r)
	}
}

func TestTokenExchangeRefused(t *testing.T) {
	for _, b := range exchangeBackends {
		t.Run(b.Name(), func(t *testing.T) {
			e := startExchange(t, b, func(e *exchangeEnv, ti *config.TrustedIssuer) {})
			other := trustedissuertest.New(t) // a provider keygate does not trust
			// A keygate token of the platform key itself.
			own := e.Token(t, e.platform.ClientID, e.platform.ClientSecret, "").AccessToken
			noneTok := func() string {
				tok := jwt.NewWithClaims(jwt.SigningMethodNone, e.claims())
				tok.Header["kid"] = trustedissuertest.KidES256
				s, err := tok.SignedString(jwt.UnsafeAllowNoneSignatureType)
				if err != nil {
					t.Fatal(err)
				}
				return s
			}()
			rsaPEM := publicPEM(t, e.idp)

			tests := []struct {
				name        string
				key         keyJSON
				subject     string
				subjectType string
				status      int
				body        string
			}{
				{"wrong issuer", e.platform, other.ES256(t, e.with(func(c jwt.MapClaims) { c["iss"] = other.Issuer })), typeJWT, 400, subjectRefused},
				{"trusted issuer's iss, another provider's key", e.platform, other.ES256(t, e.claims()), typeJWT, 400, subjectRefused},
				{"wrong audience", e.platform, e.idp.ES256(t, e.with(func(c jwt.MapClaims) { c["aud"] = "someone-else" })), typeJWT, 400, subjectRefused},
				{"expired", e.platform, e.idp.ES256(t, e.with(func(c jwt.MapClaims) { c["exp"] = e.Clock.Now().Add(-time.Minute).Unix() })), typeJWT, 400, subjectRefused},
				{"alg none", e.platform, noneTok, typeJWT, 400, subjectRefused},
				{"HMAC with the public key", e.platform, trustedissuertest.Sign(t, jwt.SigningMethodHS256, rsaPEM, trustedissuertest.KidRS256, e.claims()), typeJWT, 400, subjectRefused},
				{"unknown kid", e.platform, trustedissuertest.Sign(t, jwt.SigningMethodES256, e.idp.EC, "no-such-kid", e.claims()), typeJWT, 400, subjectRefused},
				{"missing team claim", e.platform, e.idp.ES256(t, e.with(func(c jwt.MapClaims) { delete(c, "org") })), typeJWT, 400, subjectRefused},
				{"team outside teams", e.platform, e.idp.ES256(t, e.with(func(c jwt.MapClaims) { c["org"] = "initech" })), typeJWT, 400, subjectRefused},
				{"missing user claim", e.platform, e.idp.ES256(t, e.with(func(c jwt.MapClaims) { delete(c, "email") })), typeJWT, 400, subjectRefused},
				{"keygate's own token as subject", e.platform, own, typeAccess, 400, subjectRefused},
				{"client without token_exchange", e.plain, e.idp.ES256(t, e.claims()), typeJWT, 400,
					`{"error":"unauthorized_client","error_description":"this key may not exchange tokens: it needs the token_exchange permission, which an operator grants"}` + "\n"},
				{"missing subject_token_type", e.platform, e.idp.ES256(t, e.claims()), "", 400,
					`{"error":"invalid_request","error_description":"subject_token_type is missing; use urn:ietf:params:oauth:token-type:jwt"}` + "\n"},
				{"unknown subject_token_type", e.platform, e.idp.ES256(t, e.claims()), "urn:ietf:params:oauth:token-type:id_token", 400,
					`{"error":"invalid_request","error_description":"subject_token_type must be urn:ietf:params:oauth:token-type:jwt or urn:ietf:params:oauth:token-type:access_token"}` + "\n"},
				{"missing subject_token", e.platform, "", typeJWT, 400,
					`{"error":"invalid_request","error_description":"subject_token is missing"}` + "\n"},
				{"wrong secret", keyJSON{ClientID: e.platform.ClientID, ClientSecret: e.plain.ClientSecret}, e.idp.ES256(t, e.claims()), typeJWT, 401,
					`{"error":"invalid_client","error_description":"client authentication failed: unknown client, wrong secret, or deleted key"}` + "\n"},
			}
			before := e.state(t)
			for _, tc := range tests {
				t.Run(tc.name, func(t *testing.T) {
					r := e.exchange(t, tc.key, tc.subject, tc.subjectType)
					servertest.CheckOAuthError(t, r, tc.status, errorCode(tc.body))
					if string(r.Body) != tc.body {
						t.Errorf("body %s\nwant %s", r.Body, tc.body)
					}
					if after := e.state(t); after != before {
						t.Errorf("the store changed:\n%s\nwas\n%s", after, before)
					}
				})
			}
		})
	}
}

// A client not among the issuer's clients is refused like an unacceptable
// token; one among them gets its token.
func TestTokenExchangeClients(t *testing.T) {
	e := startExchange(t, servertest.Memory(), func(e *exchangeEnv, ti *config.TrustedIssuer) {
		// The platform key's ID is not known before start: name a client ID
		// that cannot exist, then check the listed one after a restart.
		ti.Clients = []string{"kg_listed"}
	})
	before := e.state(t)
	r := e.exchange(t, e.platform, e.idp.ES256(t, e.claims()), typeJWT)
	servertest.CheckOAuthError(t, r, 400, "invalid_request")
	if string(r.Body) != subjectRefused {
		t.Errorf("body %s", r.Body)
	}
	if after := e.state(t); after != before {
		t.Errorf("the store changed:\n%s\nwas\n%s", after, before)
	}
	// The same keygate with the platform key listed.
	e.Restart(t, server.Options{TrustedIssuers: []config.TrustedIssuer{{
		Issuer: e.idp.Issuer, JWKSURI: e.idp.JWKSURI, Audience: idpAudience,
		TeamClaim: "org", UserClaim: "email", Teams: []string{"acme"}, Clients: []string{e.platform.ClientID},
	}}})
	if r := e.exchange(t, e.platform, e.idp.ES256(t, e.claims()), typeJWT); r.Status != http.StatusOK {
		t.Errorf("listed client: %s", r)
	}
	r = e.exchange(t, e.other, e.idp.ES256(t, e.claims()), typeJWT)
	if r.Status != 400 || string(r.Body) != subjectRefused {
		t.Errorf("unlisted client holding token_exchange: %s", r)
	}
}

// Unknown kids refetch the provider's keys at most once per 30 s of
// keygate's clock, however many exchanges present them.
func TestTokenExchangeUnknownKidRefetchBound(t *testing.T) {
	e := startExchange(t, servertest.Memory(), nil)
	unknown := func() string {
		return trustedissuertest.Sign(t, jwt.SigningMethodES256, e.idp.EC, "not-yet-published", e.claims())
	}
	for i := 0; i < 10; i++ {
		if r := e.exchange(t, e.platform, unknown(), typeJWT); r.Status != 400 {
			t.Fatalf("unknown kid: %s", r)
		}
	}
	if n := e.idp.Fetches.Load(); n != 1 {
		t.Fatalf("%d JWKS fetches for 10 unknown kids at once, want 1", n)
	}
	e.Clock.Advance(29 * time.Second)
	e.exchange(t, e.platform, unknown(), typeJWT)
	if n := e.idp.Fetches.Load(); n != 1 {
		t.Fatalf("%d fetches 29 s later, want 1", n)
	}
	e.Clock.Advance(time.Second)
	e.exchange(t, e.platform, unknown(), typeJWT)
	if n := e.idp.Fetches.Load(); n != 2 {
		t.Fatalf("%d fetches 30 s later, want 2", n)
	}
}

// An unreachable provider neither stops keygate nor fails /readyz; its
// exchanges are refused as temporarily unavailable, with nothing issued.
func TestTokenExchangeIssuerUnreachable(t *testing.T) {
	e := startExchange(t, servertest.Memory(), nil)
	e.idp.Server.Close() // nothing answers at jwks_uri any more
	if r := e.Do(t, e.NewRequest(t, http.MethodGet, "/readyz", nil)); r.Status != http.StatusOK {
		t.Errorf("/readyz with the provider down: %s", r)
	}
	before := e.state(t)
	r := e.exchange(t, e.platform, e.idp.ES256(t, e.claims()), typeJWT)
	servertest.CheckOAuthError(t, r, http.StatusServiceUnavailable, "temporarily_unavailable")
	want := `{"error":"temporarily_unavailable","error_description":"the subject token's issuer could not be reached to verify it; try again shortly"}` + "\n"
	if string(r.Body) != want {
		t.Errorf("body %s", r.Body)
	}
	if after := e.state(t); after != before {
		t.Errorf("the store changed:\n%s\nwas\n%s", after, before)
	}
	// keygate serves its own clients all the while.
	e.Token(t, e.member.ClientID, e.member.ClientSecret, "")

	// A provider down from the start does not stop keygate from starting
	// (nothing is fetched at start) or from being ready.
	down := startExchange(t, servertest.Memory(), func(e *exchangeEnv, _ *config.TrustedIssuer) { e.idp.Server.Close() })
	if r := down.Do(t, down.NewRequest(t, http.MethodGet, "/readyz", nil)); r.Status != http.StatusOK {
		t.Errorf("/readyz, provider down since before the start: %s", r)
	}
	r = down.exchange(t, down.platform, down.idp.ES256(t, down.claims()), typeJWT)
	servertest.CheckOAuthError(t, r, http.StatusServiceUnavailable, "temporarily_unavailable")
}

// The metadata lists the grant when an issuer is trusted, and only then;
// without one the grant is unsupported.
func TestTokenExchangeMetadataAndUnsupported(t *testing.T) {
	grants := func(e *testEnv) []string {
		r := e.Do(t, e.NewRequest(t, http.MethodGet, "/.well-known/oauth-authorization-server", nil))
		var m struct {
			GrantTypes []string `json:"grant_types_supported"`
		}
		if err := json.Unmarshal(r.Body, &m); err != nil {
			t.Fatal(err)
		}
		return m.GrantTypes
	}
	ex := startExchange(t, servertest.Memory(), nil)
	if g := grants(ex.testEnv); !slices.Equal(g, []string{"client_credentials", grantExchange}) {
		t.Errorf("with a trusted issuer: grant_types_supported %q", g)
	}
	plain := startEnv(t, servertest.Config{Backend: servertest.Memory()})
	if g := grants(plain); !slices.Equal(g, []string{"client_credentials"}) {
		t.Errorf("without: grant_types_supported %q", g)
	}
	k := plain.createKeyWithExchange(t)
	r := plain.TokenRequest(t, k.ClientID, k.ClientSecret, url.Values{
		"grant_type": {grantExchange}, "subject_token": {"x"}, "subject_token_type": {typeJWT},
	})
	servertest.CheckOAuthError(t, r, 400, "unsupported_grant_type")
}

// keygate's own issuer cannot be trusted, whichever way the options come.
func TestTokenExchangeOwnIssuerRefused(t *testing.T) {
	e := newTestEnv(t, server.Options{})
	_, err := e.TrySecond(t, server.Options{TrustedIssuers: []config.TrustedIssuer{{
		Issuer: e.URL, JWKSURI: e.URL + "/.well-known/jwks.json", Audience: e.URL,
		TeamClaim: "team_id", UserClaim: "sub", Teams: []string{"a"},
	}}})
	if err == nil || !strings.Contains(err.Error(), "keygate's own") {
		t.Fatalf("start trusting keygate's own issuer: %v", err)
	}
}

func (e *testEnv) createKeyWithExchange(t *testing.T) keyJSON {
	t.Helper()
	r := e.API(t, e.AdminToken(t), http.MethodPost, "/v1/teams/platform/keys", map[string]any{
		"name": "platform", "permissions": []string{"token_exchange"}, "grant_operator_permissions": true,
	})
	if r.Status != http.StatusCreated {
		t.Fatalf("create: %s", r)
	}
	var k keyJSON
	if err := json.Unmarshal(r.Body, &k); err != nil {
		t.Fatal(err)
	}
	return k
}

func errorCode(body string) string {
	var b struct {
		Error string `json:"error"`
	}
	_ = json.Unmarshal([]byte(body), &b)
	return b.Error
}

// publicPEM is the provider's RSA public key as a forger would find it:
// the bytes an HMAC "signature" with the public key is keyed with.
func publicPEM(t *testing.T, idp *trustedissuertest.IdP) []byte {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(&idp.RSA.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
}

// The exchange's answers and requests match the OpenAPI document.
func TestOpenAPIMatchesTokenExchange(t *testing.T) {
	doc, err := libopenapi.NewDocument(openapi.Document())
	if err != nil {
		t.Fatal(err)
	}
	v, errs := validator.NewValidator(doc, oaconfig.WithFormatAssertions())
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	e := startExchange(t, servertest.Memory(), nil)
	c := &liveCheck{e: e.Env, v: v, client: e.Client}
	form := func(subject string) string {
		return url.Values{"grant_type": {grantExchange}, "subject_token": {subject}, "subject_token_type": {typeJWT}}.Encode()
	}
	c.do(t, "POST", "/oauth/token", formHeader(e.platform.ClientID, e.platform.ClientSecret), form(e.idp.ES256(t, e.claims())), http.StatusOK, true)
	c.do(t, "POST", "/oauth/token", formHeader(e.plain.ClientID, e.plain.ClientSecret), form(e.idp.ES256(t, e.claims())), http.StatusBadRequest, true)
	c.do(t, "POST", "/oauth/token", formHeader(e.platform.ClientID, e.platform.ClientSecret), form("not-a-jwt"), http.StatusBadRequest, true)
	e.idp.Server.Close()
	e.Clock.Advance(2 * time.Hour) // the cached keys are too old to use
	c.do(t, "POST", "/oauth/token", formHeader(e.platform.ClientID, e.platform.ClientSecret), form(e.idp.ES256(t, e.claims())), http.StatusServiceUnavailable, true)
}

// Another grant on a keygate that trusts an issuer is told both grants.
func TestTokenExchangeOtherGrant(t *testing.T) {
	e := startExchange(t, servertest.Memory(), nil)
	r := e.TokenRequest(t, e.platform.ClientID, e.platform.ClientSecret, url.Values{"grant_type": {"password"}})
	want := `{"error":"unsupported_grant_type","error_description":"only grant_type=client_credentials and grant_type=urn:ietf:params:oauth:grant-type:token-exchange are supported"}` + "\n"
	servertest.CheckOAuthError(t, r, 400, "unsupported_grant_type")
	if string(r.Body) != want {
		t.Errorf("body %s", r.Body)
	}
}

// A refusal's reason is logged for the operator; neither the subject token
// nor the client's secret ever is.
func TestTokenExchangeRefusalLogged(t *testing.T) {
	logs := &syncBuffer{}
	e := startExchange(t, servertest.Memory(), func(e *exchangeEnv, _ *config.TrustedIssuer) {
		e.logger = slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	})
	subject := e.idp.ES256(t, e.with(func(c jwt.MapClaims) { c["aud"] = "someone-else" }))
	if r := e.exchange(t, e.platform, subject, typeJWT); r.Status != 400 {
		t.Fatalf("wrong audience: %s", r)
	}
	out := logs.String()
	if !strings.Contains(out, `"msg":"token exchange: subject token refused"`) || !strings.Contains(out, "wrong audience") || !strings.Contains(out, e.platform.ClientID) {
		t.Errorf("no log line with the reason and the client: %s", out)
	}
	sig := subject[strings.LastIndexByte(subject, '.')+1:]
	for _, leak := range []string{subject, sig, e.platform.ClientSecret} {
		if strings.Contains(out, leak) {
			t.Errorf("the log holds a credential")
		}
	}
}
