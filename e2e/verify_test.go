package e2e_test

// verify end to end against a real keygate (servertest: server.New on a temporary
// store behind a loopback httptest server): an admin token creates a key
// through the management API, the key gets a token at /oauth/token, and a
// Verifier set up by discovery from nothing but the issuer URL checks it.

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/keygate/keygate/server"
	"github.com/keygate/keygate/server/servertest"
	"github.com/keygate/keygate/verify"
)

func init() { gin.SetMode(gin.ReleaseMode) } // no route dump per keygate started

// keygateCall makes one request to env and decodes the JSON answer into out.
func keygateCall(t testing.TB, req *http.Request, wantStatus int, out any) {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != wantStatus {
		t.Fatalf("%s %s: %d %s, want %d", req.Method, req.URL.Path, resp.StatusCode, body, wantStatus)
	}
	if err := json.Unmarshal(body, out); err != nil {
		t.Fatalf("%s %s: %v: %s", req.Method, req.URL.Path, err, body)
	}
}

// keygateToken gets an access token for a key by client credentials.
func keygateToken(t testing.TB, env *servertest.Env, clientID, secret string) string {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, env.URL+"/oauth/token", strings.NewReader(url.Values{"grant_type": {"client_credentials"}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(url.QueryEscape(clientID), url.QueryEscape(secret))
	var tr struct {
		AccessToken string `json:"access_token"`
		TokenType   string `json:"token_type"`
		ExpiresIn   int    `json:"expires_in"`
	}
	keygateCall(t, req, http.StatusOK, &tr)
	if tr.AccessToken == "" || !strings.EqualFold(tr.TokenType, "bearer") {
		t.Fatalf("token response %+v", tr)
	}
	return tr.AccessToken
}

// keygateKey creates a key in team with permissions and returns its
// credentials.
func keygateKey(t testing.TB, env *servertest.Env, team string, permissions ...string) (clientID, secret string) {
	t.Helper()
	admin := keygateToken(t, env, env.AdminID, env.AdminSecret)
	body, _ := json.Marshal(map[string]any{"name": "e2e", "permissions": permissions})
	req, _ := http.NewRequest(http.MethodPost, env.URL+"/v1/teams/"+team+"/keys", strings.NewReader(string(body)))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+admin)
	var created struct {
		ClientID     string `json:"client_id"`
		ClientSecret string `json:"client_secret"`
		TeamID       string `json:"team_id"`
	}
	keygateCall(t, req, http.StatusCreated, &created)
	if created.ClientID == "" || created.ClientSecret == "" || created.TeamID != team {
		t.Fatalf("created %+v", created)
	}
	return created.ClientID, created.ClientSecret
}

// countJWKS wraps a keygate handler to count JWKS and metadata requests.
func countJWKS(jwks, metadata *atomic.Int64) func(http.Handler) http.Handler {
	return func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			switch {
			case r.URL.Path == "/.well-known/jwks.json":
				jwks.Add(1)
			case strings.HasPrefix(r.URL.Path, wellKnownMetadata):
				metadata.Add(1)
			}
			h.ServeHTTP(w, r)
		})
	}
}

func TestEndToEndWithKeygate(t *testing.T) {
	for _, alg := range []string{"", "RS256", "EdDSA"} {
		name := alg
		if name == "" {
			name = "default (ES256)"
		}
		t.Run(name, func(t *testing.T) {
			var jwksHits, mdHits atomic.Int64
			env := servertest.Start(t, server.Options{SigningAlg: alg}, countJWKS(&jwksHits, &mdHits))
			clientID, secret := keygateKey(t, env, "acme", "accounting_api")
			tok := keygateToken(t, env, clientID, secret)

			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			v, err := verify.New(ctx, verify.Options{Issuer: env.URL, Audience: env.URL})
			if err != nil {
				t.Fatalf("New by discovery: %v", err)
			}
			before := time.Now()
			c, err := v.Verify(ctx, tok)
			if err != nil {
				t.Fatalf("Verify keygate's token: %v", err)
			}
			if c.Subject != clientID || c.ClientID != clientID {
				t.Errorf("sub %q client_id %q, want %q", c.Subject, c.ClientID, clientID)
			}
			if c.TeamID != "acme" {
				t.Errorf("team_id %q", c.TeamID)
			}
			if c.Issuer != env.URL || len(c.Audience) != 1 || c.Audience[0] != env.URL {
				t.Errorf("iss %q aud %q", c.Issuer, c.Audience)
			}
			if !c.HasScope("accounting:read") || !c.HasScope("banking:write") || c.HasScope("keys:admin") {
				t.Errorf("scopes %q", c.Scopes)
			}
			if d := c.ExpiresAt.Sub(before); d < 14*time.Minute || d > 16*time.Minute {
				t.Errorf("expires in %v, want ~15 min", d)
			}
			if c.IssuedAt.After(before.Add(2*time.Second)) || before.Sub(c.IssuedAt) > time.Minute {
				t.Errorf("iat %v, now %v", c.IssuedAt, before)
			}
			if c.ID == "" {
				t.Error("no jti")
			}

			// The admin token is a management token: a resource server of
			// the default audience refuses it; it verifies with the
			// management API's audience (issuer/v1), with keys:admin and
			// no team.
			admin := keygateToken(t, env, env.AdminID, env.AdminSecret)
			if _, err := v.Verify(ctx, admin); !errors.Is(err, verify.ErrWrongAudience) {
				t.Fatalf("admin token at a resource server: %v, want wrong audience", err)
			}
			mv, err := verify.New(ctx, verify.Options{Issuer: env.URL, Audience: env.URL + "/v1"})
			if err != nil {
				t.Fatal(err)
			}
			ac, err := mv.Verify(ctx, admin)
			if err != nil {
				t.Fatalf("admin token: %v", err)
			}
			if !ac.HasScope("keys:admin") || ac.ClientID != env.AdminID || ac.TeamID != "" {
				t.Errorf("admin claims %+v", ac)
			}
			// A narrower token asked for by scope.
			req, _ := http.NewRequest(http.MethodPost, env.URL+"/oauth/token", strings.NewReader("grant_type=client_credentials&scope=accounting%3Aread"))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			req.SetBasicAuth(clientID, secret)
			var narrow struct {
				AccessToken string `json:"access_token"`
			}
			keygateCall(t, req, http.StatusOK, &narrow)
			nc, err := v.Verify(ctx, narrow.AccessToken)
			if err != nil {
				t.Fatal(err)
			}
			if len(nc.Scopes) != 1 || nc.Scopes[0] != "accounting:read" {
				t.Errorf("narrow scopes %q", nc.Scopes)
			}

			// Offline: many verifications, no more requests to keygate.
			for i := 0; i < 50; i++ {
				if _, err := v.Verify(ctx, tok); err != nil {
					t.Fatal(err)
				}
			}
			// Two verifiers read the metadata and the JWKS once each: the
			// resource server's and the management audience's above.
			wantHits(t, "keygate metadata", &mdHits, 2)
			wantHits(t, "keygate JWKS", &jwksHits, 2)

			// Not for another audience; not once tampered with.
			other, err := verify.New(ctx, verify.Options{Issuer: env.URL, Audience: "https://other-api.example"})
			if err != nil {
				t.Fatal(err)
			}
			mustReject(t, other, tok, verify.ErrWrongAudience)
			p := strings.Split(tok, ".")
			mustReject(t, v, p[0]+"."+p[0]+"."+p[2], verify.ErrSignature) // header as payload
			sig := []byte(p[2])
			if sig[3] == 'A' {
				sig[3] = 'B'
			} else {
				sig[3] = 'A'
			}
			mustReject(t, v, p[0]+"."+p[1]+"."+string(sig), verify.ErrSignature)
		})
	}
}

// A token of another keygate (its own signing key, its own kid) is refused,
// and that other keygate is never contacted.
func TestEndToEndTokenOfAnotherKeygate(t *testing.T) {
	var ourJWKS, ourMD, theirJWKS, theirMD atomic.Int64
	ours := servertest.Start(t, server.Options{}, countJWKS(&ourJWKS, &ourMD))
	// Same issuer string as ours, so only the key can tell them apart.
	theirs := servertest.Start(t, server.Options{Issuer: ours.URL}, countJWKS(&theirJWKS, &theirMD))
	clientID, secret := keygateKey(t, theirs, "acme", "accounting_api")
	foreign := keygateToken(t, theirs, clientID, secret)
	theirJWKS.Store(0)
	theirMD.Store(0)

	v, err := verify.New(context.Background(), verify.Options{Issuer: ours.URL, Audience: ours.URL})
	if err != nil {
		t.Fatal(err)
	}
	// keygate's kids are key thumbprints, so the kid is one ours lacks.
	mustReject(t, v, foreign, verify.ErrUnknownKey)
	wantHits(t, "the other keygate's JWKS", &theirJWKS, 0)
	wantHits(t, "the other keygate's metadata", &theirMD, 0)
	// Ours still works.
	id, sec := keygateKey(t, ours, "acme", "accounting_api")
	mustVerify(t, v, keygateToken(t, ours, id, sec))
}

// The helpers below are the verify package's own test helpers, copied: a
// test in this module cannot import another module's test files.

const wellKnownMetadata = "/.well-known/oauth-authorization-server"

func mustVerify(t testing.TB, v *verify.Verifier, token string) *verify.Claims {
	t.Helper()
	c, err := v.Verify(context.Background(), token)
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	return c
}

func wantHits(t testing.TB, what string, got *atomic.Int64, want int64) {
	t.Helper()
	if n := got.Load(); n != want {
		t.Fatalf("%s: %d requests, want %d", what, n, want)
	}
}

// reasons are all of Verify's documented reasons.
var reasons = []error{verify.ErrMalformed, verify.ErrTooLarge, verify.ErrWrongType, verify.ErrUnknownKey, verify.ErrAlgorithm,
	verify.ErrSignature, verify.ErrExpired, verify.ErrNotYetValid, verify.ErrIssuedInFuture, verify.ErrWrongIssuer,
	verify.ErrWrongAudience, verify.ErrMissingClaim, verify.ErrKeysUnavailable, verify.ErrInsufficientScope}

// mustReject verifies token with v and fails unless it is refused with want
// as its one reason (errors.Is) and no claims.
func mustReject(t testing.TB, v *verify.Verifier, token string, want error) {
	t.Helper()
	c, err := v.Verify(context.Background(), token)
	if err == nil {
		t.Fatalf("accepted: %+v", c)
	}
	if c != nil {
		t.Fatalf("returned claims alongside error %v", err)
	}
	if !errors.Is(err, want) {
		t.Fatalf("error %q (%T), want errors.Is %q", err, err, want)
	}
	// "Verify's errors wrap exactly one of them."
	n := 0
	for _, r := range reasons {
		if errors.Is(err, r) {
			n++
		}
	}
	if n != 1 {
		t.Fatalf("error %q wraps %d reasons, want exactly 1", err, n)
	}
}
