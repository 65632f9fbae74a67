package verify_test

// Middleware tests: every RFC 6750 §3 answer of verify.Middleware, checked
// for status, the exact WWW-Authenticate challenge, Cache-Control, the JSON
// body, and that the protected handler never ran. Package-level names carry
// an "mw" prefix so that they cannot clash with the other test files of
// package verify_test.

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/keygate/keygate/verify"
)

const (
	mwIssuer   = "https://auth.mw.test"
	mwAudience = "https://banking.mw.test"
	mwKID      = "mw-key-1"
)

var mwNow = time.Date(2030, 3, 4, 5, 6, 7, 0, time.UTC)

var (
	mwKeyOnce sync.Once
	mwKeyVal  *ecdsa.PrivateKey
)

// mwKey is the test issuer's ES256 signing key.
func mwKey(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	mwKeyOnce.Do(func() {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			panic(err)
		}
		mwKeyVal = k
	})
	return mwKeyVal
}

// mwKeys is an in-test KeySource: mwKID → the ES256 key, or err when set.
type mwKeys struct {
	pub crypto.PublicKey
	err error
}

func (k mwKeys) VerificationKey(_ context.Context, kid string) (crypto.PublicKey, string, error) {
	if k.err != nil {
		return nil, "", k.err
	}
	if kid != mwKID {
		// Like a careless KeySource, echo the kid: Middleware must not.
		return nil, "", fmt.Errorf("kid %q: %w", kid, verify.ErrUnknownKey)
	}
	return k.pub, "ES256", nil
}

func mwVerifier(t testing.TB, keys verify.KeySource) *verify.Verifier {
	t.Helper()
	if keys == nil {
		keys = mwKeys{pub: mwKey(t).Public()}
	}
	v, err := verify.New(context.Background(), verify.Options{
		Issuer:   mwIssuer,
		Audience: mwAudience,
		Keys:     keys,
		Now:      func() time.Time { return mwNow },
	})
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// mwClaims is a valid token's payload at mwNow.
func mwClaims(scope string) jwt.MapClaims {
	return jwt.MapClaims{
		"iss":       mwIssuer,
		"aud":       mwAudience,
		"sub":       "client-7",
		"client_id": "client-7",
		"team_id":   "team-acme",
		"scope":     scope,
		"iat":       mwNow.Add(-time.Minute).Unix(),
		"exp":       mwNow.Add(time.Hour).Unix(),
		"jti":       "jti-1",
	}
}

func mwSign(t testing.TB, claims jwt.MapClaims) string {
	t.Helper()
	tok := jwt.NewWithClaims(jwt.SigningMethodES256, claims)
	tok.Header["typ"] = "at+jwt"
	tok.Header["kid"] = mwKID
	s, err := tok.SignedString(mwKey(t))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func mwToken(t testing.TB, scope string) string { return mwSign(t, mwClaims(scope)) }

// mwProtected is a handler that counts its calls and records the claims it
// found in the request context.
type mwProtected struct {
	calls  atomic.Int32
	mu     sync.Mutex
	claims *verify.Claims
	ok     bool
}

func (p *mwProtected) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p.calls.Add(1)
	c, ok := verify.ClaimsFromContext(r.Context())
	p.mu.Lock()
	p.claims, p.ok = c, ok
	p.mu.Unlock()
	io.WriteString(w, "protected")
}

// mwAnswer is an expected rejection.
type mwAnswer struct {
	status    int
	challenge string // exact WWW-Authenticate; "" means none
	body      map[string]string
}

func mwCheckRejection(t *testing.T, status int, h http.Header, body []byte, calls int32, want mwAnswer) {
	t.Helper()
	if status != want.status {
		t.Errorf("status = %d, want %d (body %s)", status, want.status, body)
	}
	got := h.Values("WWW-Authenticate")
	switch {
	case want.challenge == "" && len(got) != 0:
		t.Errorf("WWW-Authenticate = %q, want none", got)
	case want.challenge != "" && (len(got) != 1 || got[0] != want.challenge):
		t.Errorf("WWW-Authenticate = %q\n                want %q", got, want.challenge)
	}
	if cc := h.Get("Cache-Control"); cc != "no-store" {
		t.Errorf("Cache-Control = %q, want no-store", cc)
	}
	if ct := h.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type = %q, want application/json", ct)
	}
	var gotBody map[string]string
	if err := json.Unmarshal(body, &gotBody); err != nil {
		t.Errorf("body %q is not a JSON object of strings: %v", body, err)
	}
	if want.body == nil {
		want.body = map[string]string{}
	}
	if !reflect.DeepEqual(gotBody, want.body) {
		t.Errorf("body = %v, want %v", gotBody, want.body)
	}
	if want.status == http.StatusServiceUnavailable {
		if ra := h.Get("Retry-After"); ra == "" {
			t.Error("503 without Retry-After")
		}
	} else if ra := h.Get("Retry-After"); ra != "" {
		t.Errorf("Retry-After = %q on a %d", ra, want.status)
	}
	if calls != 0 {
		t.Errorf("protected handler called %d times", calls)
	}
}

// mwDo sends req through h, recording the answer.
func mwDo(h http.Handler, req *http.Request) *httptest.ResponseRecorder {
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

func mwRequest(target string, auth ...string) *http.Request {
	req := httptest.NewRequest(http.MethodGet, target, nil)
	for _, a := range auth {
		req.Header.Add("Authorization", a)
	}
	return req
}

// Exact challenges and bodies, shared with the ginverify tests' intent.
const (
	descEmpty   = "the bearer token is empty"
	descScope   = "the token lacks a scope this resource needs"
	descQuery   = "send the access token in the Authorization header, not the query string"
	descTwo     = "send one Authorization header"
	descNoKeys  = "token verification keys are unavailable"
	chNoToken   = `Bearer realm="keygate"`
	chMalformed = `Bearer realm="keygate", error="invalid_token", error_description="malformed token"`
)

func invalidToken(desc string) mwAnswer {
	return mwAnswer{
		status:    http.StatusUnauthorized,
		challenge: `Bearer realm="keygate", error="invalid_token", error_description="` + desc + `"`,
		body:      map[string]string{"error": "invalid_token", "error_description": desc},
	}
}

func invalidRequest(desc string) mwAnswer {
	return mwAnswer{
		status:    http.StatusBadRequest,
		challenge: `Bearer realm="keygate", error="invalid_request", error_description="` + desc + `"`,
		body:      map[string]string{"error": "invalid_request", "error_description": desc},
	}
}

func insufficientScope(scope string) mwAnswer {
	return mwAnswer{
		status:    http.StatusForbidden,
		challenge: `Bearer realm="keygate", error="insufficient_scope", error_description="` + descScope + `", scope="` + scope + `"`,
		body:      map[string]string{"error": "insufficient_scope", "error_description": descScope, "scope": scope},
	}
}

var noToken = mwAnswer{status: http.StatusUnauthorized, challenge: chNoToken}

var keysUnavailable = mwAnswer{
	status: http.StatusServiceUnavailable,
	body:   map[string]string{"error_description": descNoKeys},
}

func TestMiddlewareRejections(t *testing.T) {
	v := mwVerifier(t, nil)
	read := mwToken(t, "banking:read")
	write := mwToken(t, "banking:write visualizations:read")
	expired := mwClaims("banking:read")
	expired["iat"] = mwNow.Add(-2 * time.Hour).Unix()
	expired["exp"] = mwNow.Add(-time.Hour).Unix()
	expiredTok := mwSign(t, expired)
	otherAud := mwClaims("banking:read")
	otherAud["aud"] = "https://commerce.mw.test"

	tests := []struct {
		name   string
		req    *http.Request
		scopes []string
		want   mwAnswer
	}{
		{"no Authorization header", mwRequest("/banking/accounts"), nil, noToken},
		{"Basic scheme", mwRequest("/banking/accounts", "Basic "+base64.StdEncoding.EncodeToString([]byte("client-7:secret"))), nil, noToken},
		{"Digest scheme", mwRequest("/banking/accounts", `Digest username="x"`), nil, noToken},
		{"Bearer token empty", mwRequest("/banking/accounts", "Bearer "), nil, invalidToken(descEmpty)},
		{"Bearer token blank", mwRequest("/banking/accounts", "Bearer    "), nil, invalidToken(descEmpty)},
		{"garbage token", mwRequest("/banking/accounts", "Bearer not.a.jwt"), nil, invalidToken("malformed token")},
		{"expired token", mwRequest("/banking/accounts", "Bearer "+expiredTok), nil, invalidToken("token expired")},
		{"wrong audience", mwRequest("/banking/accounts", "Bearer "+mwSign(t, otherAud)), nil, invalidToken("wrong audience")},
		{"missing scope", mwRequest("/banking/accounts", "Bearer "+write), []string{"banking:read"}, insufficientScope("banking:read")},
		{"no scope at all", mwRequest("/banking/accounts", "Bearer "+mwToken(t, "")), []string{"banking:read"}, insufficientScope("banking:read")},
		// The scope attribute lists what the route needs, not only what is missing.
		{"one of two scopes missing", mwRequest("/banking/accounts", "Bearer "+read), []string{"banking:read", "banking:write"}, insufficientScope("banking:read banking:write")},
		{"scopes from two options", mwRequest("/banking/accounts", "Bearer "+read), []string{"banking:read", "+banking:write"}, insufficientScope("banking:read banking:write")},
		{"token in query", mwRequest("/banking/accounts?access_token=" + read), nil, invalidRequest(descQuery)},
		{"token in query and header", mwRequest("/banking/accounts?access_token="+read, "Bearer "+read), nil, invalidRequest(descQuery)},
		{"empty access_token in query", mwRequest("/banking/accounts?x=1&access_token=", "Bearer "+read), nil, invalidRequest(descQuery)},
		{"escaped access_token in query", mwRequest("/banking/accounts?access%5Ftoken="+read, "Bearer "+read), nil, invalidRequest(descQuery)},
		{"two Authorization headers", mwRequest("/banking/accounts", "Bearer "+read, "Bearer "+read), nil, invalidRequest(descTwo)},
		{"Bearer and Basic headers", mwRequest("/banking/accounts", "Basic eDp5", "Bearer "+read), nil, invalidRequest(descTwo)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var opts []verify.Option
			for _, s := range tt.scopes {
				if rest, ok := strings.CutPrefix(s, "+"); ok {
					opts = append(opts, verify.RequireScopes(rest)) // a second option adds
				} else {
					opts = append(opts, verify.RequireScopes(s))
				}
			}
			next := &mwProtected{}
			rec := mwDo(verify.Middleware(v, opts...)(next), tt.req)
			mwCheckRejection(t, rec.Code, rec.Header(), rec.Body.Bytes(), next.calls.Load(), tt.want)
		})
	}
}

// A rejected token's content never reaches the answer: not the token, not
// its header values (kid, alg), not its claims.
func TestMiddlewareDescriptionHasNoTokenContent(t *testing.T) {
	v := mwVerifier(t, nil)
	const marker = "ZQXmarker"
	enc := func(v any) string {
		b, _ := json.Marshal(v)
		return base64.RawURLEncoding.EncodeToString(b)
	}
	sig := base64.RawURLEncoding.EncodeToString([]byte(marker + "-signature"))
	kidTok := func() string {
		tok := jwt.NewWithClaims(jwt.SigningMethodES256, mwClaims("banking:read"))
		tok.Header["typ"] = "at+jwt"
		tok.Header["kid"] = marker + "-kid"
		s, err := tok.SignedString(mwKey(t))
		if err != nil {
			t.Fatal(err)
		}
		return s
	}()
	wrongIss := mwClaims("banking:read")
	wrongIss["iss"] = "https://" + marker + ".example"
	tokens := map[string]string{
		"garbage":          marker + "-garbage",
		"quotes":           marker + `"\ ,=`,
		"bad alg":          enc(map[string]any{"alg": marker + "-alg", "typ": "at+jwt", "kid": mwKID}) + "." + enc(mwClaims("x")) + "." + sig,
		"alg none":         enc(map[string]any{"alg": "none", "typ": "at+jwt", "kid": mwKID}) + "." + enc(map[string]any{"sub": marker}) + ".",
		"bad typ":          enc(map[string]any{"alg": "ES256", "typ": marker, "kid": mwKID}) + "." + enc(mwClaims("x")) + "." + sig,
		"bad signature":    enc(map[string]any{"alg": "ES256", "typ": "at+jwt", "kid": mwKID}) + "." + enc(mwClaims(marker)) + "." + sig,
		"unknown kid":      kidTok,
		"wrong issuer":     mwSign(t, wrongIss),
		"bad json payload": enc(map[string]any{"alg": "ES256", "typ": "at+jwt", "kid": mwKID}) + "." + base64.RawURLEncoding.EncodeToString([]byte(`{"sub":"`+marker)) + "." + sig,
	}
	for name, tok := range tokens {
		t.Run(name, func(t *testing.T) {
			next := &mwProtected{}
			rec := mwDo(verify.Middleware(v)(next), mwRequest("/", "Bearer "+tok))
			if rec.Code != http.StatusUnauthorized || next.calls.Load() != 0 {
				t.Fatalf("status %d, handler calls %d", rec.Code, next.calls.Load())
			}
			var body map[string]string
			if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
				t.Fatal(err)
			}
			if body["error"] != "invalid_token" {
				t.Errorf("error = %q", body["error"])
			}
			all := rec.Header().Get("WWW-Authenticate") + "\n" + rec.Body.String()
			for _, part := range append(strings.Split(tok, "."), marker) {
				if len(part) >= 4 && strings.Contains(all, part) {
					t.Errorf("answer contains token content %q:\n%s", part, all)
				}
			}
			if body["error_description"] == "" {
				t.Error("no error_description")
			}
		})
	}
}

func TestMiddlewareSuccess(t *testing.T) {
	v := mwVerifier(t, nil)
	tok := mwToken(t, "banking:read banking:write")
	for _, auth := range []string{"Bearer " + tok, "bearer " + tok, "BEARER " + tok, "BeArEr " + tok, "Bearer   " + tok + "  "} {
		t.Run(auth[:8], func(t *testing.T) {
			next := &mwProtected{}
			h := verify.Middleware(v, verify.RequireScopes("banking:read"), verify.RequireScopes("banking:write"))(next)
			rec := mwDo(h, mwRequest("/banking/accounts", auth))
			if rec.Code != http.StatusOK || rec.Body.String() != "protected" {
				t.Fatalf("status %d body %q", rec.Code, rec.Body)
			}
			if n := next.calls.Load(); n != 1 {
				t.Fatalf("handler called %d times", n)
			}
			if h := rec.Header().Get("WWW-Authenticate"); h != "" {
				t.Errorf("WWW-Authenticate %q on success", h)
			}
			if !next.ok {
				t.Fatal("ClaimsFromContext: no claims")
			}
			c := next.claims
			if c.Subject != "client-7" || c.ClientID != "client-7" || c.TeamID != "team-acme" || c.Issuer != mwIssuer || c.ID != "jti-1" {
				t.Errorf("claims = %+v", c)
			}
			if !reflect.DeepEqual(c.Scopes, []string{"banking:read", "banking:write"}) {
				t.Errorf("Scopes = %q", c.Scopes)
			}
			if !c.ExpiresAt.Equal(mwNow.Add(time.Hour)) {
				t.Errorf("ExpiresAt = %v", c.ExpiresAt)
			}
		})
	}
}

func TestMiddlewareNoScopesRequired(t *testing.T) {
	v := mwVerifier(t, nil)
	next := &mwProtected{}
	rec := mwDo(verify.Middleware(v)(next), mwRequest("/", "Bearer "+mwToken(t, "")))
	if rec.Code != http.StatusOK || next.calls.Load() != 1 {
		t.Fatalf("status %d, calls %d", rec.Code, next.calls.Load())
	}
}

func TestClaimsFromContextWithout(t *testing.T) {
	if c, ok := verify.ClaimsFromContext(context.Background()); ok || c != nil {
		t.Errorf("ClaimsFromContext(empty) = %v, %v", c, ok)
	}
	if c, ok := verify.ClaimsFromContext(verify.WithClaims(context.Background(), nil)); ok || c != nil {
		t.Errorf("ClaimsFromContext(nil claims) = %v, %v", c, ok)
	}
	want := &verify.Claims{Subject: "s"}
	if c, ok := verify.ClaimsFromContext(verify.WithClaims(context.Background(), want)); !ok || c != want {
		t.Errorf("ClaimsFromContext = %v, %v", c, ok)
	}
}

func TestMiddlewareRealm(t *testing.T) {
	v := mwVerifier(t, nil)
	tests := []struct {
		name string
		auth []string
		want mwAnswer
	}{
		{"no token", nil, mwAnswer{status: 401, challenge: `Bearer realm="accounting"`}},
		{"garbage", []string{"Bearer x.y.z"}, mwAnswer{
			status:    401,
			challenge: `Bearer realm="accounting", error="invalid_token", error_description="malformed token"`,
			body:      map[string]string{"error": "invalid_token", "error_description": "malformed token"},
		}},
		{"scope", []string{"Bearer " + mwToken(t, "accounting:write")}, mwAnswer{
			status:    403,
			challenge: `Bearer realm="accounting", error="insufficient_scope", error_description="` + descScope + `", scope="accounting:read"`,
			body:      map[string]string{"error": "insufficient_scope", "error_description": descScope, "scope": "accounting:read"},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			next := &mwProtected{}
			h := verify.Middleware(v, verify.Realm("accounting"), verify.RequireScopes("accounting:read"))(next)
			rec := mwDo(h, mwRequest("/accounting/invoices", tt.auth...))
			mwCheckRejection(t, rec.Code, rec.Header(), rec.Body.Bytes(), next.calls.Load(), tt.want)
		})
	}
}

func TestMiddlewareKeySourceUnavailable(t *testing.T) {
	for name, err := range map[string]error{
		"sentinel": verify.ErrKeysUnavailable,
		"wrapped":  fmt.Errorf("%w: keygate at 10.0.0.1 said 502", verify.ErrKeysUnavailable),
	} {
		t.Run(name, func(t *testing.T) {
			v := mwVerifier(t, mwKeys{err: err})
			next := &mwProtected{}
			rec := mwDo(verify.Middleware(v, verify.RequireScopes("banking:read"))(next), mwRequest("/", "Bearer "+mwToken(t, "banking:read")))
			mwCheckRejection(t, rec.Code, rec.Header(), rec.Body.Bytes(), next.calls.Load(), keysUnavailable)
			if ra := rec.Header().Get("Retry-After"); ra != "5" {
				t.Errorf("Retry-After = %q", ra)
			}
			if strings.Contains(rec.Body.String(), "10.0.0.1") {
				t.Errorf("body leaks the key source's error: %s", rec.Body)
			}
		})
	}
}

// mwClock is a settable clock, safe for the verifier's background refresh.
type mwClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *mwClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *mwClock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// mwJWKS serves the test key as a JWKS, cacheable for a minute.
func mwJWKS(t testing.TB) *httptest.Server {
	pub := mwKey(t).PublicKey
	b := func(n []byte) string { return base64.RawURLEncoding.EncodeToString(n) }
	x, y := make([]byte, 32), make([]byte, 32)
	pub.X.FillBytes(x)
	pub.Y.FillBytes(y)
	doc, err := json.Marshal(map[string]any{"keys": []map[string]string{{
		"kty": "EC", "crv": "P-256", "x": b(x), "y": b(y), "kid": mwKID, "alg": "ES256", "use": "sig",
	}}})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "max-age=60")
		w.Write(doc)
	}))
	t.Cleanup(srv.Close)
	return srv
}

// keygate goes away: the cached keys keep working until MaxStale, then the
// middleware answers 503 (fails closed) instead of 401.
func TestMiddlewareJWKSGonePastMaxStale(t *testing.T) {
	jwks := mwJWKS(t)
	clock := &mwClock{t: mwNow}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	v, err := verify.New(ctx, verify.Options{
		Issuer:   mwIssuer,
		Audience: mwAudience,
		JWKSURL:  jwks.URL,
		MaxStale: time.Minute,
		Now:      clock.Now,
	})
	if err != nil {
		t.Fatal(err)
	}
	claims := mwClaims("banking:read")
	claims["exp"] = mwNow.Add(24 * time.Hour).Unix()
	tok := mwSign(t, claims)
	next := &mwProtected{}
	h := verify.Middleware(v, verify.RequireScopes("banking:read"))(next)
	req := func() *http.Request { return mwRequest("/", "Bearer "+tok).WithContext(ctx) }

	if rec := mwDo(h, req()); rec.Code != http.StatusOK {
		t.Fatalf("with keygate up: %d %s", rec.Code, rec.Body)
	}
	jwks.Close()
	clock.Add(90 * time.Second) // past the minute of max-age, within MaxStale
	if rec := mwDo(h, req()); rec.Code != http.StatusOK {
		t.Fatalf("keygate down, keys stale but within MaxStale: %d %s", rec.Code, rec.Body)
	}
	if n := next.calls.Load(); n != 2 {
		t.Fatalf("handler calls = %d, want 2", n)
	}
	clock.Add(2 * time.Minute) // now past expiry + MaxStale
	next.calls.Store(0)
	rec := mwDo(h, req())
	mwCheckRejection(t, rec.Code, rec.Header(), rec.Body.Bytes(), next.calls.Load(), keysUnavailable)
	if ra := rec.Header().Get("Retry-After"); ra != "5" {
		t.Errorf("Retry-After = %q", ra)
	}
}

// Through a real HTTP server: what clients actually send, after net/http
// has parsed it (two header lines, trailing blanks trimmed).
func TestMiddlewareOverHTTP(t *testing.T) {
	v := mwVerifier(t, nil)
	next := &mwProtected{}
	srv := httptest.NewServer(verify.Middleware(v, verify.RequireScopes("banking:read"))(next))
	defer srv.Close()
	client := &http.Client{Timeout: 10 * time.Second}
	tok := mwToken(t, "banking:read")

	tests := []struct {
		name string
		path string
		auth []string
		want mwAnswer
	}{
		{"no header", "/", nil, noToken},
		{"two header lines", "/", []string{"Bearer " + tok, "Bearer " + tok}, invalidRequest(descTwo)},
		{"query", "/?access_token=" + tok, nil, invalidRequest(descQuery)},
		// "Bearer " arrives as "Bearer": net/http trims the trailing blank.
		// It is still a bearer scheme with an empty token.
		{"Bearer with empty token", "/", []string{"Bearer "}, invalidToken(descEmpty)},
		{"Bearer alone", "/", []string{"Bearer"}, invalidToken(descEmpty)},
		{"garbage", "/", []string{"Bearer abc"}, invalidToken("malformed token")},
		{"scope", "/", []string{"Bearer " + mwToken(t, "banking:write")}, insufficientScope("banking:read")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			next.calls.Store(0)
			req, err := http.NewRequest(http.MethodGet, srv.URL+tt.path, nil)
			if err != nil {
				t.Fatal(err)
			}
			for _, a := range tt.auth {
				req.Header.Add("Authorization", a)
			}
			resp, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, err := io.ReadAll(resp.Body)
			if err != nil {
				t.Fatal(err)
			}
			mwCheckRejection(t, resp.StatusCode, resp.Header, body, next.calls.Load(), tt.want)
		})
	}

	t.Run("success", func(t *testing.T) {
		next.calls.Store(0)
		req, _ := http.NewRequest(http.MethodGet, srv.URL+"/banking/accounts", nil)
		req.Header.Set("Authorization", "bearer "+tok)
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK || string(body) != "protected" || next.calls.Load() != 1 {
			t.Fatalf("status %d body %q calls %d", resp.StatusCode, body, next.calls.Load())
		}
	})
}

// parseChallenge reads a Bearer challenge per RFC 9110 §11.2 (auth-params
// with quoted-string values) and returns the unescaped values; it fails on
// anything that is not a valid quoted-string.
func parseChallenge(t *testing.T, ch string) map[string]string {
	t.Helper()
	rest, ok := strings.CutPrefix(ch, "Bearer ")
	if !ok {
		t.Fatalf("challenge %q does not start with Bearer", ch)
	}
	out := map[string]string{}
	for rest != "" {
		name, after, ok := strings.Cut(rest, "=")
		if !ok || name == "" || strings.ContainsAny(name, " \t\",") {
			t.Fatalf("bad auth-param name in %q", ch)
		}
		if !strings.HasPrefix(after, `"`) {
			t.Fatalf("value of %s is not a quoted-string in %q", name, ch)
		}
		var val strings.Builder
		i, closed := 1, false
		for ; i < len(after); i++ {
			c := after[i]
			if c == '\\' {
				i++
				if i == len(after) {
					t.Fatalf("dangling backslash in %q", ch)
				}
				c = after[i]
				if !(c == '\t' || c >= 0x20 && c != 0x7f) {
					t.Fatalf("bad quoted-pair in %q", ch)
				}
				val.WriteByte(c)
				continue
			}
			if c == '"' {
				closed = true
				break
			}
			if !(c == '\t' || c == ' ' || c == 0x21 || c >= 0x23 && c <= 0x5b || c >= 0x5d && c != 0x7f) {
				t.Fatalf("character %q not allowed in a quoted-string in %q", c, ch)
			}
			val.WriteByte(c)
		}
		if !closed {
			t.Fatalf("unterminated quoted-string in %q", ch)
		}
		if _, dup := out[name]; dup {
			t.Fatalf("duplicate %s in %q", name, ch)
		}
		out[name] = val.String()
		rest = after[i+1:]
		if rest != "" {
			if rest, ok = strings.CutPrefix(rest, ", "); !ok {
				t.Fatalf("auth-params not separated by \", \" in %q", ch)
			}
		}
	}
	return out
}

func TestRejectionChallengeQuoting(t *testing.T) {
	v := mwVerifier(t, nil)
	for _, tt := range []struct{ realm, desc, scope string }{
		{"keygate", "plain", ""},
		{"keygate", `say "hi"`, ""},
		{"keygate", `back\slash`, ""},
		{"keygate", `\"`, ""},
		{"keygate", `ends with \`, ""},
		{`acme "books"`, `a "b" \c\ d`, `s:"1" s\2`},
		{"", "", ""},
	} {
		g := verify.NewGuard(v, verify.Realm(tt.realm))
		_, rej := g.Check(mwRequest("/"))
		if rej == nil {
			t.Fatal("Check without a token passed")
		}
		rej.Code = "invalid_token"
		rej.Description = tt.desc
		rej.Scope = tt.scope
		ch := rej.Challenge()
		got := parseChallenge(t, ch)
		want := map[string]string{"realm": tt.realm, "error": "invalid_token"}
		if tt.desc != "" {
			want["error_description"] = tt.desc
		}
		if tt.scope != "" {
			want["scope"] = tt.scope
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("Challenge() = %s\nparsed %q, want %q", ch, got, want)
		}

		// Write sends the same challenge and the raw values in JSON.
		rec := httptest.NewRecorder()
		rej.Write(rec)
		if h := rec.Header().Get("WWW-Authenticate"); h != ch {
			t.Errorf("Write's challenge %q != Challenge() %q", h, ch)
		}
		var body map[string]string
		if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
			t.Fatal(err)
		}
		delete(want, "realm")
		if !reflect.DeepEqual(body, want) {
			t.Errorf("body %v, want %v", body, want)
		}
	}
}

func TestRejectionWriteStatuses(t *testing.T) {
	v := mwVerifier(t, nil)
	g := verify.NewGuard(v)
	_, rej := g.Check(mwRequest("/"))
	if rej == nil || rej.Status != http.StatusUnauthorized || rej.Code != "" || rej.Description != "" || rej.Err != nil {
		t.Fatalf("no-token rejection = %+v", rej)
	}
	_, rej = g.Check(mwRequest("/", "Bearer junk"))
	if rej == nil || rej.Status != http.StatusUnauthorized || !errors.Is(rej.Err, verify.ErrMalformed) {
		t.Fatalf("junk rejection = %+v", rej)
	}
	_, rej = verify.NewGuard(v, verify.RequireScopes("a")).Check(mwRequest("/", "Bearer "+mwToken(t, "b")))
	if rej == nil || rej.Status != http.StatusForbidden || !errors.Is(rej.Err, verify.ErrInsufficientScope) || rej.Scope != "a" {
		t.Fatalf("scope rejection = %+v", rej)
	}
	_, rej = verify.NewGuard(mwVerifier(t, mwKeys{err: verify.ErrKeysUnavailable})).Check(mwRequest("/", "Bearer "+mwToken(t, "b")))
	if rej == nil || rej.Status != http.StatusServiceUnavailable || !errors.Is(rej.Err, verify.ErrKeysUnavailable) {
		t.Fatalf("keys rejection = %+v", rej)
	}
	claims, rej := g.Check(mwRequest("/", "Bearer "+mwToken(t, "b")))
	if rej != nil || claims == nil || claims.Subject != "client-7" {
		t.Fatalf("Check(valid) = %+v, %+v", claims, rej)
	}
}

func TestReason(t *testing.T) {
	sentinels := []error{
		verify.ErrExpired, verify.ErrNotYetValid, verify.ErrIssuedInFuture, verify.ErrWrongIssuer,
		verify.ErrWrongAudience, verify.ErrUnknownKey, verify.ErrAlgorithm, verify.ErrSignature,
		verify.ErrWrongType, verify.ErrMissingClaim, verify.ErrTooLarge, verify.ErrKeysUnavailable,
		verify.ErrMalformed,
	}
	for _, err := range sentinels {
		want := err.Error()
		if got := verify.Reason(err); got != want {
			t.Errorf("Reason(%v) = %q", err, got)
		}
		// Wrapped with details (possibly from the token): only the reason.
		wrapped := fmt.Errorf("%w: kid \"../../etc/passwd\" from eyJhbGciOi", err)
		if got := verify.Reason(wrapped); got != want {
			t.Errorf("Reason(%v) = %q, want %q", wrapped, got, want)
		}
		if got := verify.Reason(fmt.Errorf("outer: %w", wrapped)); got != want {
			t.Errorf("Reason(double wrap of %v) = %q, want %q", err, got, want)
		}
	}
	for _, err := range []error{
		errors.New("boom eyJhbGciOi"),
		context.Canceled,
		context.DeadlineExceeded,
		io.ErrUnexpectedEOF,
		jwt.ErrTokenMalformed,
	} {
		if got := verify.Reason(err); got != "malformed token" {
			t.Errorf("Reason(%v) = %q, want \"malformed token\"", err, got)
		}
	}
	// Every reason is a fixed sentence without characters that would need
	// escaping in a challenge (RFC 6750 §3: %x20-21 / %x23-5B / %x5D-7E).
	for _, err := range sentinels {
		for _, c := range verify.Reason(err) {
			if c < 0x20 || c > 0x7e || c == '"' || c == '\\' {
				t.Errorf("Reason(%v) has %q, not allowed in error_description", err, c)
			}
		}
	}
}
