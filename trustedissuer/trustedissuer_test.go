package trustedissuer_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/golang-jwt/jwt/v5"

	"github.com/keygate/keygate/config"
	"github.com/keygate/keygate/trustedissuer"
	"github.com/keygate/keygate/trustedissuer/trustedissuertest"
)

// clock is an injected clock.
type clock struct {
	mu sync.Mutex
	at time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.at }
func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.at = c.at.Add(d)
	c.mu.Unlock()
}

var t0 = time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC)

func setup(t *testing.T, edit func(*config.TrustedIssuer)) (*trustedissuertest.IdP, *trustedissuer.Verifier, *clock) {
	t.Helper()
	idp := trustedissuertest.New(t)
	ti := config.TrustedIssuer{
		Issuer: idp.Issuer, JWKSURI: idp.JWKSURI, Audience: "keygate",
		TeamClaim: "org", UserClaim: "email", Teams: []string{"acme-", "globex"},
	}
	if edit != nil {
		edit(&ti)
	}
	if err := ti.Validate("https://keygate.example.com"); err != nil {
		t.Fatal(err)
	}
	clk := &clock{at: t0}
	v := trustedissuer.New([]config.TrustedIssuer{ti}, trustedissuer.Options{Now: clk.Now, Client: &http.Client{Timeout: 2 * time.Second}})
	return idp, v, clk
}

func claims(idp *trustedissuertest.IdP, now time.Time) jwt.MapClaims {
	return jwt.MapClaims{
		"iss": idp.Issuer, "aud": []string{"other", "keygate"}, "sub": "u-1",
		"exp": now.Add(10 * time.Minute).Unix(), "iat": now.Unix(), "nbf": now.Unix(),
		"org": "acme-eu", "email": "alice@example.com",
	}
}

func TestVerifyGood(t *testing.T) {
	idp, v, clk := setup(t, nil)
	ctx := context.Background()
	for name, tok := range map[string]string{
		"ES256": idp.ES256(t, claims(idp, clk.Now())),
		"RS256": idp.RS256(t, claims(idp, clk.Now())),
		"EdDSA": idp.EdDSA(t, claims(idp, clk.Now())),
	} {
		sub, err := v.Verify(ctx, tok, "any-client")
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		want := trustedissuer.Subject{Issuer: idp.Issuer, TeamID: "acme-eu", User: "alice@example.com", ExpiresAt: clk.Now().Add(10 * time.Minute)}
		if !sub.ExpiresAt.Equal(want.ExpiresAt) || sub.Issuer != want.Issuer || sub.TeamID != want.TeamID || sub.User != want.User {
			t.Errorf("%s: subject %+v, want %+v", name, sub, want)
		}
	}
	// One fetch served all three keys.
	if n := idp.Fetches.Load(); n != 1 {
		t.Errorf("%d JWKS fetches, want 1", n)
	}
	// aud as a single string works too; iat and nbf a little ahead (clock
	// skew) are tolerated.
	c := claims(idp, clk.Now())
	c["aud"] = "keygate"
	c["iat"], c["nbf"] = clk.Now().Add(20*time.Second).Unix(), clk.Now().Add(20*time.Second).Unix()
	if _, err := v.Verify(ctx, idp.ES256(t, c), ""); err != nil {
		t.Errorf("aud string, iat/nbf 20 s ahead: %v", err)
	}
}

func TestVerifyRefused(t *testing.T) {
	idp, v, clk := setup(t, func(ti *config.TrustedIssuer) {
		ti.Clients = []string{"platform"}
		ti.Algorithms = []string{"ES256", "RS256", "PS256", "EdDSA"}
	})
	now := clk.Now()
	with := func(edit func(jwt.MapClaims)) jwt.MapClaims {
		c := claims(idp, now)
		edit(c)
		return c
	}
	rsaPub, _ := x509.MarshalPKIXPublicKey(&idp.RSA.PublicKey)
	rsaPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: rsaPub})
	ecPub, _ := x509.MarshalPKIXPublicKey(&idp.EC.PublicKey)
	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	noneTok := func() string {
		tok := jwt.NewWithClaims(jwt.SigningMethodNone, claims(idp, now))
		tok.Header["kid"] = trustedissuertest.KidES256
		s, err := tok.SignedString(jwt.UnsafeAllowNoneSignatureType)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}

	tests := []struct {
		name, token, client string
	}{
		{"garbage", "not.a.jwt", "platform"},
		{"wrong issuer", idp.ES256(t, with(func(c jwt.MapClaims) { c["iss"] = "https://evil.example.com" })), "platform"},
		{"issuer with a trailing slash", idp.ES256(t, with(func(c jwt.MapClaims) { c["iss"] = idp.Issuer + "/" })), "platform"},
		{"no issuer", idp.ES256(t, with(func(c jwt.MapClaims) { delete(c, "iss") })), "platform"},
		{"wrong audience", idp.ES256(t, with(func(c jwt.MapClaims) { c["aud"] = "someone-else" })), "platform"},
		{"no audience", idp.ES256(t, with(func(c jwt.MapClaims) { delete(c, "aud") })), "platform"},
		{"expired", idp.ES256(t, with(func(c jwt.MapClaims) { c["exp"] = now.Add(-time.Hour).Unix() })), "platform"},
		{"expired a second ago (within the leeway)", idp.ES256(t, with(func(c jwt.MapClaims) { c["exp"] = now.Add(-time.Second).Unix() })), "platform"},
		{"expires now", idp.ES256(t, with(func(c jwt.MapClaims) { c["exp"] = now.Unix() })), "platform"},
		{"no exp", idp.ES256(t, with(func(c jwt.MapClaims) { delete(c, "exp") })), "platform"},
		{"nbf ahead", idp.ES256(t, with(func(c jwt.MapClaims) { c["nbf"] = now.Add(5 * time.Minute).Unix() })), "platform"},
		{"iat ahead", idp.ES256(t, with(func(c jwt.MapClaims) { c["iat"] = now.Add(5 * time.Minute).Unix() })), "platform"},
		{"alg none", noneTok(), "platform"},
		{"HS256 with the RSA public key (PEM)", trustedissuertest.Sign(t, jwt.SigningMethodHS256, rsaPEM, trustedissuertest.KidRS256, claims(idp, now)), "platform"},
		{"HS256 with the EC public key (DER)", trustedissuertest.Sign(t, jwt.SigningMethodHS256, ecPub, trustedissuertest.KidES256, claims(idp, now)), "platform"},
		{"signed by another key under the provider's kid", trustedissuertest.Sign(t, jwt.SigningMethodES256, other, trustedissuertest.KidES256, claims(idp, now)), "platform"},
		{"RS256 header on the EC key", trustedissuertest.Sign(t, jwt.SigningMethodRS256, idp.RSA, trustedissuertest.KidES256, claims(idp, now)), "platform"},
		{"PS256 with the RSA key published for RS256", trustedissuertest.Sign(t, jwt.SigningMethodPS256, idp.RSA, trustedissuertest.KidRS256, claims(idp, now)), "platform"},
		{"RS384: not in the allowlist", trustedissuertest.Sign(t, jwt.SigningMethodRS384, idp.RSA, trustedissuertest.KidRS256, claims(idp, now)), "platform"},
		{"no kid", trustedissuertest.Sign(t, jwt.SigningMethodES256, idp.EC, "", claims(idp, now)), "platform"},
		{"unknown kid", trustedissuertest.Sign(t, jwt.SigningMethodES256, idp.EC, "not-published", claims(idp, now)), "platform"},
		{"no team claim", idp.ES256(t, with(func(c jwt.MapClaims) { delete(c, "org") })), "platform"},
		{"team claim not a string", idp.ES256(t, with(func(c jwt.MapClaims) { c["org"] = []string{"acme-eu"} })), "platform"},
		{"team outside the prefixes", idp.ES256(t, with(func(c jwt.MapClaims) { c["org"] = "initech" })), "platform"},
		{"team prefix but not a team ID", idp.ES256(t, with(func(c jwt.MapClaims) { c["org"] = "acme-/../x" })), "platform"},
		{"no user claim", idp.ES256(t, with(func(c jwt.MapClaims) { delete(c, "email") })), "platform"},
		{"user claim too long", idp.ES256(t, with(func(c jwt.MapClaims) { c["email"] = strings.Repeat("a", 65) })), "platform"},
		{"user claim with a control character", idp.ES256(t, with(func(c jwt.MapClaims) { c["email"] = "alice\n@example.com" })), "platform"},
		{"client not among the issuer's clients", idp.ES256(t, claims(idp, now)), "someone-else"},
		{"too long", strings.Repeat("a", trustedissuer.MaxTokenBytes+1), "platform"},
	}
	ctx := context.Background()
	// The good token passes (so each refusal below is the edit's doing).
	if _, err := v.Verify(ctx, idp.ES256(t, claims(idp, now)), "platform"); err != nil {
		t.Fatalf("good token: %v", err)
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			sub, err := v.Verify(ctx, tc.token, tc.client)
			if !errors.Is(err, trustedissuer.ErrInvalid) || errors.Is(err, trustedissuer.ErrUnavailable) {
				t.Fatalf("Verify = %+v, %v; want ErrInvalid", sub, err)
			}
			if sub != (trustedissuer.Subject{}) {
				t.Errorf("refused, but returned subject %+v", sub)
			}
			if strings.Contains(err.Error(), tc.token) {
				t.Errorf("the error quotes the token")
			}
		})
	}
}

// An unknown kid refetches the set at most once per RefetchInterval on the
// verifier's clock; a key published meanwhile is found at the next fetch.
func TestUnknownKidRefetchBound(t *testing.T) {
	idp, v, clk := setup(t, nil)
	ctx := context.Background()
	newKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tok := func() string {
		return trustedissuertest.Sign(t, jwt.SigningMethodES256, newKey, "rotated-in", claims(idp, clk.Now()))
	}
	fetches := func(want int64, when string) {
		t.Helper()
		if n := idp.Fetches.Load(); n != want {
			t.Fatalf("%s: %d fetches, want %d", when, n, want)
		}
	}

	if _, err := v.Verify(ctx, tok(), ""); !errors.Is(err, trustedissuer.ErrInvalid) {
		t.Fatalf("unknown kid: %v", err)
	}
	fetches(1, "first use")
	for i := 0; i < 20; i++ {
		clk.Advance(time.Second)
		if _, err := v.Verify(ctx, tok(), ""); !errors.Is(err, trustedissuer.ErrInvalid) {
			t.Fatalf("unknown kid: %v", err)
		}
	}
	fetches(1, "20 unknown kids within 20 s")

	// The provider rotates its key in; within the interval it is still
	// unknown, then one refetch finds it.
	idp.SetKeys(t, jose.JSONWebKey{Key: &newKey.PublicKey, KeyID: "rotated-in", Use: "sig"})
	clk.Advance(9 * time.Second) // 29 s since the last fetch
	if _, err := v.Verify(ctx, tok(), ""); !errors.Is(err, trustedissuer.ErrInvalid) {
		t.Fatalf("29 s after the fetch: %v", err)
	}
	fetches(1, "29 s after the fetch")
	clk.Advance(time.Second)
	if _, err := v.Verify(ctx, tok(), ""); err != nil {
		t.Fatalf("30 s after the fetch: %v", err)
	}
	fetches(2, "30 s after the fetch")
	// A known kid needs no fetch.
	clk.Advance(time.Minute)
	if _, err := v.Verify(ctx, tok(), ""); err != nil {
		t.Fatal(err)
	}
	fetches(2, "a known kid")
	// The old kid is gone with the new set: refused.
	if _, err := v.Verify(ctx, idp.ES256(t, claims(idp, clk.Now())), ""); !errors.Is(err, trustedissuer.ErrInvalid) {
		t.Fatalf("withdrawn kid: %v", err)
	}
}

func TestJWKSFetchBounds(t *testing.T) {
	tests := []struct {
		name    string
		handler http.HandlerFunc
	}{
		{"status 500", func(w http.ResponseWriter, _ *http.Request) { http.Error(w, "down", http.StatusInternalServerError) }},
		{"redirect", nil}, // set below: to a path serving the real keys
		{"over 1 MiB", func(w http.ResponseWriter, _ *http.Request) {
			_, _ = w.Write([]byte(`{"keys":[],"pad":"`))
			_, _ = w.Write([]byte(strings.Repeat("a", trustedissuer.MaxJWKSBytes)))
			_, _ = w.Write([]byte(`"}`))
		}},
		{"not a JWKS", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte(`{"issuer":"x"}`)) }},
		{"too slow", func(w http.ResponseWriter, r *http.Request) {
			select {
			case <-r.Context().Done():
			case <-time.After(10 * time.Second):
			}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			idp, v, clk := setup(t, nil)
			redirected := make(chan struct{}, 1)
			if tc.handler == nil {
				idp.Server.Config.Handler.(*http.ServeMux).HandleFunc("/elsewhere", func(w http.ResponseWriter, _ *http.Request) {
					redirected <- struct{}{}
				})
				tc.handler = func(w http.ResponseWriter, r *http.Request) { http.Redirect(w, r, "/elsewhere", http.StatusFound) }
			}
			idp.SetHandler(tc.handler)
			ctx := context.Background()
			start := time.Now()
			_, err := v.Verify(ctx, idp.ES256(t, claims(idp, clk.Now())), "")
			if !errors.Is(err, trustedissuer.ErrUnavailable) {
				t.Fatalf("Verify: %v, want ErrUnavailable", err)
			}
			if d := time.Since(start); d > 5*time.Second {
				t.Errorf("took %v", d)
			}
			select {
			case <-redirected:
				t.Error("the redirect was followed")
			default:
			}
			// The provider recovers: no fetch within the interval, one after.
			idp.SetHandler(nil)
			clk.Advance(29 * time.Second)
			if _, err := v.Verify(ctx, idp.ES256(t, claims(idp, clk.Now())), ""); !errors.Is(err, trustedissuer.ErrUnavailable) {
				t.Fatalf("within the interval: %v", err)
			}
			clk.Advance(time.Second)
			if _, err := v.Verify(ctx, idp.ES256(t, claims(idp, clk.Now())), ""); err != nil {
				t.Fatalf("after the interval: %v", err)
			}
			if n := idp.Fetches.Load(); n != 2 {
				t.Errorf("%d fetches, want 2", n)
			}
		})
	}
}

// A fetched set is refreshed after RefreshAfter; while the provider is down
// the old set keeps verifying until MaxStale, then exchanges are refused.
func TestStaleKeys(t *testing.T) {
	idp, v, clk := setup(t, nil)
	ctx := context.Background()
	if _, err := v.Verify(ctx, idp.ES256(t, claims(idp, clk.Now())), ""); err != nil {
		t.Fatal(err)
	}
	idp.SetHandler(func(w http.ResponseWriter, _ *http.Request) { http.Error(w, "down", http.StatusBadGateway) })
	clk.Advance(trustedissuer.RefreshAfter)
	if _, err := v.Verify(ctx, idp.ES256(t, claims(idp, clk.Now())), ""); err != nil {
		t.Fatalf("refresh failed, old set still fresh enough: %v", err)
	}
	if n := idp.Fetches.Load(); n != 2 {
		t.Errorf("%d fetches, want 2 (the refresh was tried)", n)
	}
	clk.Advance(trustedissuer.MaxStale - trustedissuer.RefreshAfter)
	if _, err := v.Verify(ctx, idp.ES256(t, claims(idp, clk.Now())), ""); !errors.Is(err, trustedissuer.ErrUnavailable) {
		t.Fatalf("set older than MaxStale: %v, want ErrUnavailable", err)
	}
}

// Keys the set holds but must not be used are left out: a private key, a
// symmetric key, an encryption key, a short RSA key, an EC key whose alg
// disagrees with its curve, and a kid published twice.
func TestJWKSUnusableKeys(t *testing.T) {
	idp, v, clk := setup(t, func(ti *config.TrustedIssuer) { ti.Algorithms = []string{"ES256", "RS256", "ES384"} })
	short, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	twin, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	idp.SetKeys(t,
		jose.JSONWebKey{Key: idp.EC, KeyID: "private", Use: "sig"},
		jose.JSONWebKey{Key: []byte("0123456789abcdef0123456789abcdef"), KeyID: "oct", Algorithm: "HS256"},
		jose.JSONWebKey{Key: &idp.EC.PublicKey, KeyID: "enc", Use: "enc"},
		jose.JSONWebKey{Key: &short.PublicKey, KeyID: "short"},
		jose.JSONWebKey{Key: &idp.EC.PublicKey, KeyID: "es384-label", Algorithm: "ES384"},
		jose.JSONWebKey{Key: &idp.EC.PublicKey, KeyID: "twice"},
		jose.JSONWebKey{Key: &twin.PublicKey, KeyID: "twice"},
		jose.JSONWebKey{Key: &idp.EC.PublicKey, KeyID: "good"},
	)
	ctx := context.Background()
	c := claims(idp, clk.Now())
	for _, tc := range []struct {
		kid    string
		method jwt.SigningMethod
		key    any
	}{
		{"private", jwt.SigningMethodES256, idp.EC},
		{"oct", jwt.SigningMethodHS256, []byte("0123456789abcdef0123456789abcdef")},
		{"enc", jwt.SigningMethodES256, idp.EC},
		{"short", jwt.SigningMethodRS256, short},
		{"es384-label", jwt.SigningMethodES256, idp.EC},
		{"twice", jwt.SigningMethodES256, idp.EC},
		{"twice", jwt.SigningMethodES256, twin},
	} {
		if _, err := v.Verify(ctx, trustedissuertest.Sign(t, tc.method, tc.key, tc.kid, c), ""); !errors.Is(err, trustedissuer.ErrInvalid) {
			t.Errorf("kid %s: %v, want ErrInvalid", tc.kid, err)
		}
	}
	if _, err := v.Verify(ctx, trustedissuertest.Sign(t, jwt.SigningMethodES256, idp.EC, "good", c), ""); err != nil {
		t.Errorf("kid good: %v", err)
	}
}
