package ginverify_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/golang-jwt/jwt/v5"

	"github.com/keygate/keygate/verify"
	"github.com/keygate/keygate/verify/ginverify"
)

func init() { gin.SetMode(gin.TestMode) }

const (
	testIssuer   = "https://auth.gin.test"
	testAudience = "https://banking.gin.test"
	testKID      = "gin-key-1"
)

var testNow = time.Date(2030, 3, 4, 5, 6, 7, 0, time.UTC)

var (
	keyOnce sync.Once
	testKey *ecdsa.PrivateKey
)

func signingKey() *ecdsa.PrivateKey {
	keyOnce.Do(func() {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			panic(err)
		}
		testKey = k
	})
	return testKey
}

// keySource hands out the test key, or fails with err when set.
type keySource struct{ err error }

func (k keySource) VerificationKey(_ context.Context, kid string) (crypto.PublicKey, string, error) {
	if k.err != nil {
		return nil, "", k.err
	}
	if kid != testKID {
		return nil, "", verify.ErrUnknownKey
	}
	return signingKey().Public(), "ES256", nil
}

func newVerifier(t *testing.T, keys verify.KeySource) *verify.Verifier {
	t.Helper()
	v, err := verify.New(context.Background(), verify.Options{
		Issuer:   testIssuer,
		Audience: testAudience,
		Keys:     keys,
		Now:      func() time.Time { return testNow },
	})
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func claimsWith(scope string, expiresIn time.Duration) jwt.MapClaims {
	return jwt.MapClaims{
		"iss":       testIssuer,
		"aud":       testAudience,
		"sub":       "client-7",
		"client_id": "client-7",
		"team_id":   "team-acme",
		"scope":     scope,
		"iat":       testNow.Add(-2 * time.Hour).Unix(),
		"exp":       testNow.Add(expiresIn).Unix(),
		"jti":       "jti-1",
	}
}

func token(t *testing.T, scope string, expiresIn time.Duration) string {
	t.Helper()
	tok := jwt.NewWithClaims(jwt.SigningMethodES256, claimsWith(scope, expiresIn))
	tok.Header["typ"] = "at+jwt"
	tok.Header["kid"] = testKID
	s, err := tok.SignedString(signingKey())
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// router is a gin engine with one protected route behind a recording
// middleware and, after the guard, two handlers that count their calls.
type router struct {
	*gin.Engine
	before, handler, after atomic.Int32
	aborted                atomic.Bool

	mu                  sync.Mutex
	ginClaims, ctxClaim *verify.Claims
	ginOK, ctxOK        bool
}

func newRouter(v *verify.Verifier, opts ...verify.Option) *router {
	r := &router{Engine: gin.New()}
	r.Use(func(c *gin.Context) {
		r.before.Add(1)
		c.Next()
		r.aborted.Store(c.IsAborted())
	})
	r.GET("/banking/accounts", ginverify.Middleware(v, opts...), func(c *gin.Context) {
		r.handler.Add(1)
		gc, gok := ginverify.Claims(c)
		cc, cok := verify.ClaimsFromContext(c.Request.Context())
		r.mu.Lock()
		r.ginClaims, r.ginOK, r.ctxClaim, r.ctxOK = gc, gok, cc, cok
		r.mu.Unlock()
		c.Next()
	}, func(c *gin.Context) {
		r.after.Add(1)
		c.String(http.StatusOK, "accounts of %s", c.MustGet(ginverify.ContextKey).(*verify.Claims).TeamID)
	})
	r.GET("/public", func(c *gin.Context) {
		_, ok := ginverify.Claims(c)
		_, cok := verify.ClaimsFromContext(c.Request.Context())
		c.String(http.StatusOK, "claims %v %v", ok, cok)
	})
	return r
}

func (r *router) do(target string, auth ...string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(http.MethodGet, target, nil)
	for _, a := range auth {
		req.Header.Add("Authorization", a)
	}
	rec := httptest.NewRecorder()
	r.ServeHTTP(rec, req)
	return rec
}

type answer struct {
	status    int
	challenge string
	body      map[string]string
}

const descScope = "the token lacks a scope this resource needs"

func invalid(code, desc string, status int) answer {
	return answer{
		status:    status,
		challenge: `Bearer realm="keygate", error="` + code + `", error_description="` + desc + `"`,
		body:      map[string]string{"error": code, "error_description": desc},
	}
}

func scopeAnswer(realm, scope string) answer {
	return answer{
		status:    http.StatusForbidden,
		challenge: `Bearer realm="` + realm + `", error="insufficient_scope", error_description="` + descScope + `", scope="` + scope + `"`,
		body:      map[string]string{"error": "insufficient_scope", "error_description": descScope, "scope": scope},
	}
}

func checkRejected(t *testing.T, r *router, rec *httptest.ResponseRecorder, want answer) {
	t.Helper()
	if rec.Code != want.status {
		t.Errorf("status = %d, want %d (body %s)", rec.Code, want.status, rec.Body)
	}
	got := rec.Header().Values("WWW-Authenticate")
	switch {
	case want.challenge == "" && len(got) != 0:
		t.Errorf("WWW-Authenticate = %q, want none", got)
	case want.challenge != "" && (len(got) != 1 || got[0] != want.challenge):
		t.Errorf("WWW-Authenticate = %q\n                want %q", got, want.challenge)
	}
	if cc := rec.Header().Get("Cache-Control"); cc != "no-store" {
		t.Errorf("Cache-Control = %q", cc)
	}
	if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type = %q", ct)
	}
	var body map[string]string
	if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
		t.Errorf("body %q: %v", rec.Body, err)
	}
	if want.body == nil {
		want.body = map[string]string{}
	}
	if !reflect.DeepEqual(body, want.body) {
		t.Errorf("body = %v, want %v", body, want.body)
	}
	if want.status == http.StatusServiceUnavailable && rec.Header().Get("Retry-After") == "" {
		t.Error("503 without Retry-After")
	}
	if r.before.Load() != 1 {
		t.Errorf("middleware before the guard ran %d times", r.before.Load())
	}
	if n, m := r.handler.Load(), r.after.Load(); n != 0 || m != 0 {
		t.Errorf("handlers after the guard ran (%d, %d times)", n, m)
	}
	if !r.aborted.Load() {
		t.Error("context not aborted")
	}
}

func TestRejections(t *testing.T) {
	v := newVerifier(t, keySource{})
	read := token(t, "banking:read", time.Hour)
	tests := []struct {
		name   string
		target string
		auth   []string
		opts   []verify.Option
		want   answer
	}{
		{"no Authorization header", "/banking/accounts", nil, nil, answer{status: 401, challenge: `Bearer realm="keygate"`}},
		{"Basic scheme", "/banking/accounts", []string{"Basic Y2xpZW50OnNlY3JldA=="}, nil, answer{status: 401, challenge: `Bearer realm="keygate"`}},
		{"empty bearer token", "/banking/accounts", []string{"Bearer "}, nil, invalid("invalid_token", "the bearer token is empty", 401)},
		{"garbage token", "/banking/accounts", []string{"Bearer SECRETgarbage"}, nil, invalid("invalid_token", "malformed token", 401)},
		{"expired token", "/banking/accounts", []string{"Bearer " + token(t, "banking:read", -time.Hour)}, nil, invalid("invalid_token", "token expired", 401)},
		{"missing scope", "/banking/accounts", []string{"Bearer " + token(t, "visualizations:read", time.Hour)},
			[]verify.Option{verify.RequireScopes("banking:read")}, scopeAnswer("keygate", "banking:read")},
		{"one of two scopes missing", "/banking/accounts", []string{"Bearer " + read},
			[]verify.Option{verify.RequireScopes("banking:read", "banking:write")}, scopeAnswer("keygate", "banking:read banking:write")},
		{"token in query", "/banking/accounts?access_token=" + read, nil, nil,
			invalid("invalid_request", "send the access token in the Authorization header, not the query string", 400)},
		{"token in query and header", "/banking/accounts?access_token=" + read, []string{"Bearer " + read}, nil,
			invalid("invalid_request", "send the access token in the Authorization header, not the query string", 400)},
		{"two Authorization headers", "/banking/accounts", []string{"Bearer " + read, "Bearer " + read}, nil,
			invalid("invalid_request", "send one Authorization header", 400)},
		{"realm", "/banking/accounts", nil, []verify.Option{verify.Realm("accounting")}, answer{status: 401, challenge: `Bearer realm="accounting"`}},
		{"realm with scope", "/banking/accounts", []string{"Bearer " + token(t, "x", time.Hour)},
			[]verify.Option{verify.Realm("accounting"), verify.RequireScopes("accounting:read")}, scopeAnswer("accounting", "accounting:read")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newRouter(v, tt.opts...)
			rec := r.do(tt.target, tt.auth...)
			checkRejected(t, r, rec, tt.want)
			if tt.name == "garbage token" && strings.Contains(rec.Body.String()+rec.Header().Get("WWW-Authenticate"), "SECRETgarbage") {
				t.Error("answer contains the token")
			}
		})
	}
}

func TestKeysUnavailable(t *testing.T) {
	v := newVerifier(t, keySource{err: errors.Join(verify.ErrKeysUnavailable, errors.New("keygate unreachable"))})
	r := newRouter(v, verify.RequireScopes("banking:read"))
	rec := r.do("/banking/accounts", "Bearer "+token(t, "banking:read", time.Hour))
	checkRejected(t, r, rec, answer{
		status: http.StatusServiceUnavailable,
		body:   map[string]string{"error_description": "token verification keys are unavailable"},
	})
	if ra := rec.Header().Get("Retry-After"); ra != "5" {
		t.Errorf("Retry-After = %q", ra)
	}
}

func TestSuccess(t *testing.T) {
	v := newVerifier(t, keySource{})
	tok := token(t, "banking:read banking:write", time.Hour)
	for _, scheme := range []string{"Bearer", "bearer", "BEARER"} {
		t.Run(scheme, func(t *testing.T) {
			r := newRouter(v, verify.RequireScopes("banking:read"))
			rec := r.do("/banking/accounts", scheme+" "+tok)
			if rec.Code != http.StatusOK || rec.Body.String() != "accounts of team-acme" {
				t.Fatalf("status %d body %q", rec.Code, rec.Body)
			}
			if r.before.Load() != 1 || r.handler.Load() != 1 || r.after.Load() != 1 || r.aborted.Load() {
				t.Fatalf("before %d handler %d after %d aborted %v", r.before.Load(), r.handler.Load(), r.after.Load(), r.aborted.Load())
			}
			if h := rec.Header().Get("WWW-Authenticate"); h != "" {
				t.Errorf("WWW-Authenticate %q on success", h)
			}
			r.mu.Lock()
			defer r.mu.Unlock()
			if !r.ginOK || !r.ctxOK {
				t.Fatalf("ginverify.Claims ok=%v, verify.ClaimsFromContext ok=%v", r.ginOK, r.ctxOK)
			}
			if r.ginClaims != r.ctxClaim {
				t.Error("gin context and request context hold different claims")
			}
			c := r.ginClaims
			if c.Subject != "client-7" || c.ClientID != "client-7" || c.TeamID != "team-acme" ||
				!reflect.DeepEqual(c.Scopes, []string{"banking:read", "banking:write"}) {
				t.Errorf("claims = %+v", c)
			}
		})
	}
}

// A route without the middleware has no claims, whatever the request says.
func TestNoClaimsWithoutMiddleware(t *testing.T) {
	r := newRouter(newVerifier(t, keySource{}))
	rec := r.do("/public", "Bearer "+token(t, "banking:read", time.Hour))
	if rec.Code != 200 || rec.Body.String() != "claims false false" {
		t.Fatalf("status %d body %q", rec.Code, rec.Body)
	}
	c, _ := gin.CreateTestContext(httptest.NewRecorder())
	c.Set(ginverify.ContextKey, "not claims")
	if got, ok := ginverify.Claims(c); ok || got != nil {
		t.Errorf("Claims with a foreign value = %v, %v", got, ok)
	}
	c.Set(ginverify.ContextKey, (*verify.Claims)(nil))
	if got, ok := ginverify.Claims(c); ok || got != nil {
		t.Errorf("Claims with nil claims = %v, %v", got, ok)
	}
}

// As a group middleware (r.Use), an abort stops every handler of the route.
func TestGroupMiddleware(t *testing.T) {
	v := newVerifier(t, keySource{})
	e := gin.New()
	var calls atomic.Int32
	g := e.Group("/accounting", ginverify.Middleware(v, verify.RequireScopes("accounting:read")))
	g.GET("/invoices", func(c *gin.Context) { calls.Add(1); c.String(200, "ok") })

	srv := httptest.NewServer(e)
	defer srv.Close()
	client := &http.Client{Timeout: 10 * time.Second}
	get := func(auth string) (int, string) {
		req, _ := http.NewRequest(http.MethodGet, srv.URL+"/accounting/invoices", nil)
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, resp.Header.Get("WWW-Authenticate") + " " + string(b)
	}
	if code, _ := get(""); code != 401 {
		t.Errorf("no token: %d", code)
	}
	if code, _ := get("Bearer " + token(t, "banking:read", time.Hour)); code != 403 {
		t.Errorf("wrong scope: %d", code)
	}
	// net/http trims "Bearer " to "Bearer" on the way in: still an empty bearer token.
	if code, ch := get("Bearer "); code != 401 || !strings.HasPrefix(ch, `Bearer realm="keygate", error="invalid_token", error_description="the bearer token is empty" `) {
		t.Errorf("empty bearer token over HTTP: %d %q", code, ch)
	}
	if calls.Load() != 0 {
		t.Fatalf("handler ran %d times for rejected requests", calls.Load())
	}
	if code, body := get("Bearer " + token(t, "accounting:read", time.Hour)); code != 200 || body != " ok" {
		t.Errorf("valid: %d %q", code, body)
	}
	if calls.Load() != 1 {
		t.Fatalf("handler ran %d times", calls.Load())
	}
}
