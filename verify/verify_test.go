package verify_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net/http"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/keygate/keygate/verify"
)

const (
	issuer   = "https://auth.example.test"
	audience = "https://api.example.test"
)

var now = time.Date(2031, 5, 6, 7, 8, 9, 0, time.UTC)

type testKey struct {
	kid  string
	alg  string
	priv crypto.Signer
}

// keySource is an in-test KeySource: kid → (public key, alg).
type keySource map[string]testKey

func (ks keySource) VerificationKey(_ context.Context, kid string) (crypto.PublicKey, string, error) {
	k, ok := ks[kid]
	if !ok {
		return nil, "", fmt.Errorf("kid %q: %w", kid, verify.ErrUnknownKey)
	}
	return k.priv.Public(), k.alg, nil
}

var (
	keysOnce sync.Once
	ecKey    testKey
	rsaKey   testKey
	edKey    testKey
	source   keySource
)

func keys(t testing.TB) {
	t.Helper()
	keysOnce.Do(func() {
		ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			panic(err)
		}
		rk, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			panic(err)
		}
		_, ed, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			panic(err)
		}
		ecKey = testKey{"ec-1", "ES256", ec}
		rsaKey = testKey{"rsa-1", "RS256", rk}
		edKey = testKey{"ed-1", "EdDSA", ed}
		source = keySource{ecKey.kid: ecKey, rsaKey.kid: rsaKey, edKey.kid: edKey}
	})
}

func newVerifier(t *testing.T) *verify.Verifier {
	t.Helper()
	keys(t)
	v, err := verify.New(context.Background(), verify.Options{
		Issuer:   issuer,
		Audience: audience,
		Keys:     source,
		Now:      func() time.Time { return now },
	})
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func goodClaims() jwt.MapClaims {
	return jwt.MapClaims{
		"iss":       issuer,
		"sub":       "kgc_client",
		"client_id": "kgc_client",
		"aud":       audience,
		"exp":       now.Add(15 * time.Minute).Unix(),
		"iat":       now.Unix(),
		"nbf":       now.Unix(),
		"jti":       "jti-123",
		"scope":     "common:read  accounting:write keys:admin",
		"team_id":   "acme",
	}
}

func methodFor(alg string) jwt.SigningMethod {
	return jwt.GetSigningMethod(alg)
}

// sign builds a token with the given header changes and claims, signed by k
// with method (default: k's own algorithm).
func sign(t testing.TB, k testKey, method jwt.SigningMethod, header map[string]any, claims jwt.MapClaims) string {
	t.Helper()
	if method == nil {
		method = methodFor(k.alg)
	}
	tok := jwt.NewWithClaims(method, claims)
	tok.Header["typ"] = "at+jwt"
	tok.Header["kid"] = k.kid
	for name, v := range header {
		if v == nil {
			delete(tok.Header, name)
		} else {
			tok.Header[name] = v
		}
	}
	s, err := tok.SignedString(k.priv)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// manual builds a compact JWS from raw header and payload JSON with the
// given signature bytes (for tokens no library would produce).
func manual(header, payload string, sig []byte) string {
	enc := base64.RawURLEncoding.EncodeToString
	return enc([]byte(header)) + "." + enc([]byte(payload)) + "." + enc(sig)
}

// signRaw signs header.payload (given as JSON text) with k.
func signRaw(t testing.TB, k testKey, header, payload string) string {
	t.Helper()
	enc := base64.RawURLEncoding.EncodeToString
	input := enc([]byte(header)) + "." + enc([]byte(payload))
	sig, err := methodFor(k.alg).Sign(input, k.priv)
	if err != nil {
		t.Fatal(err)
	}
	return input + "." + enc(sig)
}

func TestValidTokens(t *testing.T) {
	v := newVerifier(t)
	for _, k := range []testKey{ecKey, rsaKey, edKey} {
		t.Run(k.alg, func(t *testing.T) {
			c, err := v.Verify(context.Background(), sign(t, k, nil, nil, goodClaims()))
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			want := &verify.Claims{
				Issuer:    issuer,
				Subject:   "kgc_client",
				ClientID:  "kgc_client",
				TeamID:    "acme",
				Audience:  []string{audience},
				Scopes:    []string{"common:read", "accounting:write", "keys:admin"},
				ExpiresAt: now.Add(15 * time.Minute),
				IssuedAt:  now,
				NotBefore: now,
				ID:        "jti-123",
			}
			if !c.ExpiresAt.Equal(want.ExpiresAt) || !c.IssuedAt.Equal(want.IssuedAt) || !c.NotBefore.Equal(want.NotBefore) {
				t.Fatalf("times exp/iat/nbf = %v/%v/%v", c.ExpiresAt, c.IssuedAt, c.NotBefore)
			}
			c.ExpiresAt, c.IssuedAt, c.NotBefore = want.ExpiresAt, want.IssuedAt, want.NotBefore
			if !reflect.DeepEqual(c, want) {
				t.Fatalf("claims\n got %+v\nwant %+v", c, want)
			}
			if !c.HasScope("keys:admin") || c.HasScope("keys") || c.HasScope("") {
				t.Fatal("HasScope wrong")
			}
		})
	}
}

// A delegated token (keygate's console sessions and exchanged tokens) names
// its actor in act.sub (RFC 8693 §4.1) and its session in sid; a token
// without them leaves both empty (TestValidTokens), and an act that is not
// an object is refused rather than misread.
func TestActorAndSession(t *testing.T) {
	v := newVerifier(t)
	cl := goodClaims()
	cl["act"] = map[string]any{"sub": "alice@example.com", "act": map[string]any{"sub": "earlier"}}
	cl["sid"] = "ses_abc"
	c, err := v.Verify(context.Background(), sign(t, ecKey, nil, nil, cl))
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	if c.Actor != "alice@example.com" || c.SessionID != "ses_abc" {
		t.Fatalf("Actor, SessionID = %q, %q; want alice@example.com, ses_abc", c.Actor, c.SessionID)
	}
	cl["act"] = "alice@example.com"
	if _, err := v.Verify(context.Background(), sign(t, ecKey, nil, nil, cl)); err == nil {
		t.Fatal("a string act claim was accepted")
	}
}

func TestNewRequiresOptions(t *testing.T) {
	keys(t)
	for name, o := range map[string]verify.Options{
		"no issuer":   {Audience: audience, Keys: source},
		"no audience": {Issuer: issuer, Keys: source},
		"no keys":     {Issuer: issuer, Audience: audience},
	} {
		if _, err := verify.New(context.Background(), o); err == nil {
			t.Errorf("%s: New accepted it", name)
		}
	}
}

func with(mod func(jwt.MapClaims)) jwt.MapClaims {
	c := goodClaims()
	mod(c)
	return c
}

// rejectionCase is a token Verify must refuse, and the reason it must give.
type rejectionCase struct {
	name  string
	token string
	want  error
}

// rejectionCases are hostile and broken tokens, named against the kids of
// ecKey, rsaKey and edKey (ec-1, rsa-1, ed-1). They run against the
// in-test KeySource (TestRejections) and against a verifier that fetched
// those keys from a JWKS served over HTTP (TestRejectionsJWKS).
func rejectionCases(t *testing.T) []rejectionCase {
	t.Helper()
	keys(t)
	ecPKIX, err := x509.MarshalPKIXPublicKey(ecKey.priv.Public())
	if err != nil {
		t.Fatal(err)
	}
	rsaPKIX, err := x509.MarshalPKIXPublicKey(rsaKey.priv.Public())
	if err != nil {
		t.Fatal(err)
	}
	rsaPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: rsaPKIX})
	claimsJSON, _ := json.Marshal(goodClaims())

	hs := func(kid string, key []byte) string {
		tok := jwt.NewWithClaims(jwt.SigningMethodHS256, goodClaims())
		tok.Header["typ"] = "at+jwt"
		tok.Header["kid"] = kid
		s, err := tok.SignedString(key)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}

	tampered := func() string {
		tok := sign(t, ecKey, nil, nil, goodClaims())
		parts := strings.Split(tok, ".")
		c := goodClaims()
		c["scope"] = "keys:admin everything:write"
		b, _ := json.Marshal(c)
		parts[1] = base64.RawURLEncoding.EncodeToString(b)
		return strings.Join(parts, ".")
	}

	cases := []rejectionCase{
		// Algorithm confusion.
		{"alg none", manual(`{"alg":"none","typ":"at+jwt","kid":"ec-1"}`, string(claimsJSON), nil), verify.ErrAlgorithm},
		{"alg none, RS key kid", manual(`{"alg":"none","typ":"at+jwt","kid":"rsa-1"}`, string(claimsJSON), nil), verify.ErrAlgorithm},
		{"HS256 with EC public key DER", hs("ec-1", ecPKIX), verify.ErrAlgorithm},
		{"HS256 with RSA public key PEM", hs("rsa-1", rsaPEM), verify.ErrAlgorithm},
		{"RS256 header on EC key", sign(t, rsaKey, nil, map[string]any{"kid": "ec-1"}, goodClaims()), verify.ErrAlgorithm},
		{"ES256 header on RSA key", sign(t, ecKey, nil, map[string]any{"kid": "rsa-1"}, goodClaims()), verify.ErrAlgorithm},
		{"EdDSA header on EC key", sign(t, edKey, nil, map[string]any{"kid": "ec-1"}, goodClaims()), verify.ErrAlgorithm},
		{"unknown alg", manual(`{"alg":"XS999","typ":"at+jwt","kid":"ec-1"}`, string(claimsJSON), []byte("sig")), verify.ErrAlgorithm},

		// Keys.
		{"unknown kid", sign(t, ecKey, nil, map[string]any{"kid": "nobody"}, goodClaims()), verify.ErrUnknownKey},
		{"missing kid", sign(t, ecKey, nil, map[string]any{"kid": nil}, goodClaims()), verify.ErrUnknownKey},
		{"empty kid", sign(t, ecKey, nil, map[string]any{"kid": ""}, goodClaims()), verify.ErrUnknownKey},
		{"kid not a string", sign(t, ecKey, nil, map[string]any{"kid": 7}, goodClaims()), verify.ErrUnknownKey},

		// Time.
		{"expired", sign(t, ecKey, nil, nil, with(func(c jwt.MapClaims) {
			c["iat"] = now.Add(-time.Hour).Unix()
			c["nbf"] = now.Add(-time.Hour).Unix()
			c["exp"] = now.Add(-31 * time.Second).Unix()
		})), verify.ErrExpired},
		{"exp == now - leeway", sign(t, ecKey, nil, nil, with(func(c jwt.MapClaims) {
			c["iat"] = now.Add(-time.Hour).Unix()
			c["exp"] = now.Add(-30 * time.Second).Unix()
		})), verify.ErrExpired},
		{"nbf in the future", sign(t, ecKey, nil, nil, with(func(c jwt.MapClaims) {
			c["nbf"] = now.Add(time.Minute).Unix()
		})), verify.ErrNotYetValid},
		{"iat in the future beyond leeway", sign(t, ecKey, nil, nil, with(func(c jwt.MapClaims) {
			c["iat"] = now.Add(31 * time.Second).Unix()
			delete(c, "nbf")
		})), verify.ErrIssuedInFuture},

		// Issuer and audience.
		{"wrong iss", sign(t, ecKey, nil, nil, with(func(c jwt.MapClaims) { c["iss"] = "https://evil.test" })), verify.ErrWrongIssuer},
		{"iss with trailing slash", sign(t, ecKey, nil, nil, with(func(c jwt.MapClaims) { c["iss"] = issuer + "/" })), verify.ErrWrongIssuer},
		{"aud missing", sign(t, ecKey, nil, nil, with(func(c jwt.MapClaims) { delete(c, "aud") })), verify.ErrMissingClaim},
		{"aud empty array", sign(t, ecKey, nil, nil, with(func(c jwt.MapClaims) { c["aud"] = []string{} })), verify.ErrMissingClaim},
		{"aud other", sign(t, ecKey, nil, nil, with(func(c jwt.MapClaims) { c["aud"] = "https://other.test" })), verify.ErrWrongAudience},
		{"aud array without ours", sign(t, ecKey, nil, nil, with(func(c jwt.MapClaims) { c["aud"] = []string{"a", "b"} })), verify.ErrWrongAudience},

		// Type header.
		{"typ JWT", sign(t, ecKey, nil, map[string]any{"typ": "JWT"}, goodClaims()), verify.ErrWrongType},
		{"typ missing", sign(t, ecKey, nil, map[string]any{"typ": nil}, goodClaims()), verify.ErrWrongType},
		{"typ application/jwt", sign(t, ecKey, nil, map[string]any{"typ": "application/jwt"}, goodClaims()), verify.ErrWrongType},
		{"typ not a string", sign(t, ecKey, nil, map[string]any{"typ": 1}, goodClaims()), verify.ErrWrongType},

		// crit: no extension is understood, so any crit must be refused (RFC 7515 §4.1.11).
		{"crit header", sign(t, ecKey, nil, map[string]any{"crit": []string{"exp"}, "exp": 1}, goodClaims()), verify.ErrMalformed},

		// Required claims.
		{"missing jti", sign(t, ecKey, nil, nil, with(func(c jwt.MapClaims) { delete(c, "jti") })), verify.ErrMissingClaim},
		{"missing sub", sign(t, ecKey, nil, nil, with(func(c jwt.MapClaims) { delete(c, "sub") })), verify.ErrMissingClaim},
		{"missing client_id", sign(t, ecKey, nil, nil, with(func(c jwt.MapClaims) { delete(c, "client_id") })), verify.ErrMissingClaim},
		{"missing exp", sign(t, ecKey, nil, nil, with(func(c jwt.MapClaims) { delete(c, "exp") })), verify.ErrMissingClaim},
		{"missing iat", sign(t, ecKey, nil, nil, with(func(c jwt.MapClaims) { delete(c, "iat") })), verify.ErrMissingClaim},
		{"missing iss", sign(t, ecKey, nil, nil, with(func(c jwt.MapClaims) { delete(c, "iss") })), verify.ErrMissingClaim},

		// Signature and shape.
		{"tampered payload", tampered(), verify.ErrSignature},
		{"signature of another key", func() string {
			other := testKey{"ec-1", "ES256", mustEC(t)}
			return sign(t, other, nil, nil, goodClaims())
		}(), verify.ErrSignature},
		{"signature stripped", func() string {
			tok := sign(t, ecKey, nil, nil, goodClaims())
			return tok[:strings.LastIndexByte(tok, '.')+1]
		}(), verify.ErrSignature},
		{"too large", sign(t, ecKey, nil, nil, with(func(c jwt.MapClaims) { c["pad"] = strings.Repeat("x", verify.MaxTokenSize) })), verify.ErrTooLarge},
		{"too large garbage", strings.Repeat("a", verify.MaxTokenSize+1), verify.ErrTooLarge},
		{"garbage", "not a token", verify.ErrMalformed},
		{"empty", "", verify.ErrMalformed},
		{"two parts", "abc.def", verify.ErrMalformed},
		{"four parts", sign(t, ecKey, nil, nil, goodClaims()) + ".x", verify.ErrMalformed},
		{"header not JSON", manual(`{"alg":`, string(claimsJSON), []byte("x")), verify.ErrMalformed},
		{"header not base64", "!!!." + base64.RawURLEncoding.EncodeToString(claimsJSON) + ".c2ln", verify.ErrMalformed},
		{"header a JSON array", manual(`["ES256"]`, string(claimsJSON), []byte("x")), verify.ErrMalformed},
		{"alg missing", manual(`{"typ":"at+jwt","kid":"ec-1"}`, string(claimsJSON), []byte("x")), verify.ErrAlgorithm},
		{"payload not JSON", signRaw(t, ecKey, `{"alg":"ES256","typ":"at+jwt","kid":"ec-1"}`, `{"iss":`), verify.ErrMalformed},
		{"exp as a string", signRaw(t, ecKey, `{"alg":"ES256","typ":"at+jwt","kid":"ec-1"}`,
			strings.Replace(string(claimsJSON), fmt.Sprintf(`"exp":%d`, now.Add(15*time.Minute).Unix()), fmt.Sprintf(`"exp":"%d"`, now.Add(15*time.Minute).Unix()), 1)), verify.ErrMalformed},
		{"iat as a string", signRaw(t, ecKey, `{"alg":"ES256","typ":"at+jwt","kid":"ec-1"}`,
			strings.Replace(string(claimsJSON), fmt.Sprintf(`"iat":%d`, now.Unix()), fmt.Sprintf(`"iat":"%d"`, now.Unix()), 1)), verify.ErrMalformed},
		{"sub as a number", signRaw(t, ecKey, `{"alg":"ES256","typ":"at+jwt","kid":"ec-1"}`,
			strings.Replace(string(claimsJSON), `"sub":"kgc_client"`, `"sub":42`, 1)), verify.ErrMalformed},
	}
	return append(cases, moreRejectionCases(t, claimsJSON)...)
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

func TestRejections(t *testing.T) {
	v := newVerifier(t)
	for _, tc := range rejectionCases(t) {
		t.Run(tc.name, func(t *testing.T) { mustReject(t, v, tc.token, tc.want) })
	}
}

func mustEC(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestAccepted(t *testing.T) {
	v := newVerifier(t)
	cases := []struct {
		name  string
		token string
	}{
		{"typ application/at+jwt", sign(t, ecKey, nil, map[string]any{"typ": "application/at+jwt"}, goodClaims())},
		{"typ AT+JWT", sign(t, ecKey, nil, map[string]any{"typ": "AT+JWT"}, goodClaims())},
		{"typ Application/AT+JWT", sign(t, ecKey, nil, map[string]any{"typ": "Application/AT+JWT"}, goodClaims())},
		{"aud array containing ours", sign(t, ecKey, nil, nil, with(func(c jwt.MapClaims) { c["aud"] = []string{"https://other.test", audience} }))},
		{"iat in the future within leeway", sign(t, ecKey, nil, nil, with(func(c jwt.MapClaims) {
			c["iat"] = now.Add(20 * time.Second).Unix()
			c["nbf"] = now.Add(20 * time.Second).Unix()
		}))},
		{"expired within leeway", sign(t, ecKey, nil, nil, with(func(c jwt.MapClaims) {
			c["iat"] = now.Add(-time.Hour).Unix()
			c["nbf"] = now.Add(-time.Hour).Unix()
			c["exp"] = now.Add(-10 * time.Second).Unix()
		}))},
		{"no nbf", sign(t, ecKey, nil, nil, with(func(c jwt.MapClaims) { delete(c, "nbf") }))},
		{"no team_id (admin)", sign(t, ecKey, nil, nil, with(func(c jwt.MapClaims) { delete(c, "team_id") }))},
		{"no scope", sign(t, ecKey, nil, nil, with(func(c jwt.MapClaims) { delete(c, "scope") }))},
		{"exactly MaxTokenSize", padTo(t, verify.MaxTokenSize)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := v.Verify(context.Background(), tc.token); err != nil {
				t.Fatalf("rejected: %v", err)
			}
		})
	}
}

// padTo signs a valid ES256 token whose length is exactly n (ES256
// signatures have a fixed length, so the padding can be computed).
func padTo(t *testing.T, n int) string {
	t.Helper()
	base := len(sign(t, ecKey, nil, nil, with(func(c jwt.MapClaims) { c["pad"] = "" })))
	for pad := (n - base) * 3 / 4; pad > 0; pad-- {
		tok := sign(t, ecKey, nil, nil, with(func(c jwt.MapClaims) { c["pad"] = strings.Repeat("x", pad) }))
		if len(tok) == n {
			return tok
		}
		if len(tok) < n {
			break
		}
	}
	// Fall back to the largest token not over n.
	for pad := (n - base) * 3 / 4; pad > 0; pad-- {
		tok := sign(t, ecKey, nil, nil, with(func(c jwt.MapClaims) { c["pad"] = strings.Repeat("x", pad) }))
		if len(tok) <= n {
			return tok
		}
	}
	t.Fatal("cannot pad")
	return ""
}

func TestLeewayOptions(t *testing.T) {
	keys(t)
	mk := func(leeway time.Duration) *verify.Verifier {
		v, err := verify.New(context.Background(), verify.Options{
			Issuer: issuer, Audience: audience, Keys: source, Leeway: leeway,
			Now: func() time.Time { return now },
		})
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	expired5s := sign(t, ecKey, nil, nil, with(func(c jwt.MapClaims) {
		c["iat"] = now.Add(-time.Hour).Unix()
		c["exp"] = now.Add(-5 * time.Second).Unix()
	}))
	if _, err := mk(-1).Verify(context.Background(), expired5s); !errors.Is(err, verify.ErrExpired) {
		t.Fatalf("negative leeway (none): %v, want ErrExpired", err)
	}
	if _, err := mk(time.Minute).Verify(context.Background(), expired5s); err != nil {
		t.Fatalf("1m leeway: %v", err)
	}
	if _, err := mk(0).Verify(context.Background(), expired5s); err != nil {
		t.Fatalf("default (30s) leeway: %v", err)
	}
}

// The key source's own failure comes back to the caller (for example a
// JWKS that could not be fetched).
func TestKeySourceError(t *testing.T) {
	keys(t)
	failing := keySourceFunc(func(context.Context, string) (crypto.PublicKey, string, error) {
		return nil, "", fmt.Errorf("fetch jwks: %w", verify.ErrKeysUnavailable)
	})
	v, err := verify.New(context.Background(), verify.Options{Issuer: issuer, Audience: audience, Keys: failing, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.Verify(context.Background(), sign(t, ecKey, nil, nil, goodClaims())); !errors.Is(err, verify.ErrKeysUnavailable) {
		t.Fatalf("err = %v, want ErrKeysUnavailable", err)
	}
	// A source that hands out a key type no algorithm fits is refused.
	odd := keySourceFunc(func(context.Context, string) (crypto.PublicKey, string, error) {
		return []byte("secret"), "ES256", nil
	})
	v2, _ := verify.New(context.Background(), verify.Options{Issuer: issuer, Audience: audience, Keys: odd, Now: func() time.Time { return now }})
	if _, err := v2.Verify(context.Background(), sign(t, ecKey, nil, nil, goodClaims())); !errors.Is(err, verify.ErrAlgorithm) {
		t.Fatalf("byte-slice key: %v, want ErrAlgorithm", err)
	}
}

type keySourceFunc func(context.Context, string) (crypto.PublicKey, string, error)

func (f keySourceFunc) VerificationKey(ctx context.Context, kid string) (crypto.PublicKey, string, error) {
	return f(ctx, kid)
}

func TestVerifyConcurrent(t *testing.T) {
	v := newVerifier(t)
	tok := sign(t, edKey, nil, nil, goodClaims())
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for i := 0; i < 16; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; j < 20; j++ {
				if _, err := v.Verify(context.Background(), tok); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

// jwkOf is the public JWK of pub as a JWKS publishes it.
func jwkOf(kid string, pub crypto.PublicKey) map[string]any {
	enc := base64.RawURLEncoding.EncodeToString
	switch p := pub.(type) {
	case *ecdsa.PublicKey:
		b, err := p.Bytes()
		if err != nil {
			panic(err)
		}
		n := (len(b) - 1) / 2
		crv := map[int]string{32: "P-256", 48: "P-384", 66: "P-521"}[n]
		return map[string]any{"kty": "EC", "use": "sig", "alg": "ES256", "kid": kid, "crv": crv, "x": enc(b[1 : 1+n]), "y": enc(b[1+n:])}
	case *rsa.PublicKey:
		return map[string]any{"kty": "RSA", "use": "sig", "alg": "RS256", "kid": kid, "n": enc(p.N.Bytes()), "e": enc(big.NewInt(int64(p.E)).Bytes())}
	case ed25519.PublicKey:
		return map[string]any{"kty": "OKP", "use": "sig", "alg": "EdDSA", "kid": kid, "crv": "Ed25519", "x": enc(p)}
	}
	panic(fmt.Sprintf("jwkOf: %T", pub))
}

// moreRejectionCases extend the list above with the hostile tokens of issue
// 3's proof list not covered there: more HMAC-with-the-public-key variants,
// hostile kids, every segment's encoding, key locations named in the token,
// and tokens of another keygate.
func moreRejectionCases(t *testing.T, claimsJSON []byte) []rejectionCase {
	t.Helper()
	enc := base64.RawURLEncoding.EncodeToString
	ecPub := ecKey.priv.Public().(*ecdsa.PublicKey)
	rsaPub := rsaKey.priv.Public().(*rsa.PublicKey)
	edPub := edKey.priv.Public().(ed25519.PublicKey)
	pemOf := func(pub crypto.PublicKey) []byte {
		der, err := x509.MarshalPKIXPublicKey(pub)
		if err != nil {
			t.Fatal(err)
		}
		return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
	}
	derOf := func(pub crypto.PublicKey) []byte {
		der, err := x509.MarshalPKIXPublicKey(pub)
		if err != nil {
			t.Fatal(err)
		}
		return der
	}
	ecRaw, err := ecPub.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	jwkJSON := func(kid string, pub crypto.PublicKey) []byte {
		b, _ := json.Marshal(jwkOf(kid, pub))
		return b
	}
	hmacWith := func(m jwt.SigningMethod, kid string, secret []byte) string {
		tok := jwt.NewWithClaims(m, goodClaims())
		tok.Header["typ"] = "at+jwt"
		tok.Header["kid"] = kid
		s, err := tok.SignedString(secret)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	valid := sign(t, ecKey, nil, nil, goodClaims())
	parts := strings.Split(valid, ".")
	sigBytes, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil {
		t.Fatal(err)
	}
	// Another keygate: its own key, under a kid this one never published, or
	// under this one's kid.
	otherEC := mustEC(t)
	attacker := testKey{"attacker-1", "ES256", otherEC}
	p384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	esHeader := `{"alg":"ES256","typ":"at+jwt","kid":"ec-1"}`
	paddedHeader := base64.URLEncoding.EncodeToString([]byte(esHeader))
	for !strings.HasSuffix(paddedHeader, "=") {
		esHeader = strings.Replace(esHeader, "{", "{ ", 1)
		paddedHeader = base64.URLEncoding.EncodeToString([]byte(esHeader))
	}
	payloadJSON := string(claimsJSON)
	paddedPayload := base64.URLEncoding.EncodeToString([]byte(payloadJSON))
	for !strings.HasSuffix(paddedPayload, "=") {
		payloadJSON += " "
		paddedPayload = base64.URLEncoding.EncodeToString([]byte(payloadJSON))
	}
	stdSig := strings.Map(func(r rune) rune {
		switch r {
		case '-':
			return '+'
		case '_':
			return '/'
		}
		return r
	}, parts[2])
	if stdSig == parts[2] {
		stdSig = "+" + parts[2][1:]
	}

	return []rejectionCase{
		// alg none, any spelling.
		{"alg None", manual(`{"alg":"None","typ":"at+jwt","kid":"ec-1"}`, string(claimsJSON), nil), verify.ErrAlgorithm},
		{"alg NONE", manual(`{"alg":"NONE","typ":"at+jwt","kid":"ec-1"}`, string(claimsJSON), nil), verify.ErrAlgorithm},
		{"alg none with the valid token's signature", manual(`{"alg":"none","typ":"at+jwt","kid":"ec-1"}`, string(claimsJSON), sigBytes), verify.ErrAlgorithm},
		{"alg empty string", manual(`{"alg":"","typ":"at+jwt","kid":"ec-1"}`, string(claimsJSON), sigBytes), verify.ErrAlgorithm},

		// HMAC keyed with the public key, in every encoding someone might
		// feed a confused library.
		{"HS256 with EC public key PEM", hmacWith(jwt.SigningMethodHS256, "ec-1", pemOf(ecPub)), verify.ErrAlgorithm},
		{"HS256 with EC public key raw point", hmacWith(jwt.SigningMethodHS256, "ec-1", ecRaw), verify.ErrAlgorithm},
		{"HS256 with EC public key JWK JSON", hmacWith(jwt.SigningMethodHS256, "ec-1", jwkJSON("ec-1", ecPub)), verify.ErrAlgorithm},
		{"HS256 with RSA public key DER (PKIX)", hmacWith(jwt.SigningMethodHS256, "rsa-1", derOf(rsaPub)), verify.ErrAlgorithm},
		{"HS256 with RSA public key DER (PKCS#1)", hmacWith(jwt.SigningMethodHS256, "rsa-1", x509.MarshalPKCS1PublicKey(rsaPub)), verify.ErrAlgorithm},
		{"HS256 with RSA modulus bytes", hmacWith(jwt.SigningMethodHS256, "rsa-1", rsaPub.N.Bytes()), verify.ErrAlgorithm},
		{"HS384 with RSA public key PEM", hmacWith(jwt.SigningMethodHS384, "rsa-1", pemOf(rsaPub)), verify.ErrAlgorithm},
		{"HS512 with RSA public key PEM", hmacWith(jwt.SigningMethodHS512, "rsa-1", pemOf(rsaPub)), verify.ErrAlgorithm},
		{"HS256 with Ed25519 public key raw", hmacWith(jwt.SigningMethodHS256, "ed-1", edPub), verify.ErrAlgorithm},
		{"HS256 with Ed25519 public key PEM", hmacWith(jwt.SigningMethodHS256, "ed-1", pemOf(edPub)), verify.ErrAlgorithm},

		// Algorithms that do not fit the key, or are not allowed at all.
		{"RS256 header on Ed25519 key", sign(t, rsaKey, nil, map[string]any{"kid": "ed-1"}, goodClaims()), verify.ErrAlgorithm},
		{"ES256 header on Ed25519 key", sign(t, ecKey, nil, map[string]any{"kid": "ed-1"}, goodClaims()), verify.ErrAlgorithm},
		{"EdDSA header on RSA key", sign(t, edKey, nil, map[string]any{"kid": "rsa-1"}, goodClaims()), verify.ErrAlgorithm},
		{"PS256 with the RSA key", sign(t, rsaKey, jwt.SigningMethodPS256, nil, goodClaims()), verify.ErrAlgorithm},
		{"RS512 with the RSA key", sign(t, rsaKey, jwt.SigningMethodRS512, nil, goodClaims()), verify.ErrAlgorithm},
		{"ES384 under the EC key's kid", sign(t, testKey{"ec-1", "ES384", p384}, nil, nil, goodClaims()), verify.ErrAlgorithm},

		// kids that are no key's, some built to hurt a naive key lookup.
		{"kid path traversal", sign(t, ecKey, nil, map[string]any{"kid": "../../etc/passwd"}, goodClaims()), verify.ErrUnknownKey},
		{"kid SQL", sign(t, ecKey, nil, map[string]any{"kid": "' OR 1=1 --"}, goodClaims()), verify.ErrUnknownKey},
		{"kid with NUL", sign(t, ecKey, nil, map[string]any{"kid": "ec-1\x00"}, goodClaims()), verify.ErrUnknownKey},
		{"kid URL", sign(t, ecKey, nil, map[string]any{"kid": "https://attacker.example/key"}, goodClaims()), verify.ErrUnknownKey},
		{"kid of 4 KiB", sign(t, ecKey, nil, map[string]any{"kid": strings.Repeat("k", 4096)}, goodClaims()), verify.ErrUnknownKey},
		{"kid differing in case", sign(t, ecKey, nil, map[string]any{"kid": "EC-1"}, goodClaims()), verify.ErrUnknownKey},
		{"kid an array", sign(t, ecKey, nil, map[string]any{"kid": []string{"ec-1"}}, goodClaims()), verify.ErrUnknownKey},

		// Another keygate instance's token.
		{"other instance: own kid", sign(t, testKey{"ec-other", "ES256", otherEC}, nil, nil, goodClaims()), verify.ErrUnknownKey},
		{"other instance: same kid, other key", sign(t, testKey{"ec-1", "ES256", otherEC}, nil, nil, goodClaims()), verify.ErrSignature},

		// Key locations named by the token are never used (RFC 8725 §3.10).
		{"jku to attacker's JWKS", sign(t, attacker, nil, map[string]any{"jku": "https://attacker.example/jwks.json"}, goodClaims()), verify.ErrUnknownKey},
		{"x5u to attacker's certificate", sign(t, attacker, nil, map[string]any{"x5u": "https://attacker.example/cert.pem"}, goodClaims()), verify.ErrUnknownKey},
		{"embedded jwk, attacker kid", sign(t, attacker, nil, map[string]any{"jwk": jwkOf("attacker-1", otherEC.Public())}, goodClaims()), verify.ErrUnknownKey},
		{"embedded jwk, our kid", sign(t, testKey{"ec-1", "ES256", otherEC}, nil, map[string]any{"jwk": jwkOf("ec-1", otherEC.Public())}, goodClaims()), verify.ErrSignature},
		{"jku and our kid, attacker key", sign(t, testKey{"ec-1", "ES256", otherEC}, nil, map[string]any{"jku": "https://attacker.example/jwks.json"}, goodClaims()), verify.ErrSignature},
		{"x5c with attacker key", sign(t, testKey{"ec-1", "ES256", otherEC}, nil, map[string]any{"x5c": []string{enc(derOf(otherEC.Public()))}}, goodClaims()), verify.ErrSignature},

		// crit in any form: no extension is understood.
		{"crit empty list", sign(t, ecKey, nil, map[string]any{"crit": []string{}}, goodClaims()), verify.ErrMalformed},
		{"crit b64", sign(t, ecKey, nil, map[string]any{"crit": []string{"b64"}, "b64": false}, goodClaims()), verify.ErrMalformed},
		{"crit a string", sign(t, ecKey, nil, map[string]any{"crit": "exp"}, goodClaims()), verify.ErrMalformed},

		// typ near misses.
		{"typ at+jwt with a space", sign(t, ecKey, nil, map[string]any{"typ": "at+jwt "}, goodClaims()), verify.ErrWrongType},
		{"typ jwt lower case", sign(t, ecKey, nil, map[string]any{"typ": "jwt"}, goodClaims()), verify.ErrWrongType},
		{"typ empty", sign(t, ecKey, nil, map[string]any{"typ": ""}, goodClaims()), verify.ErrWrongType},
		{"typ id-token", sign(t, ecKey, nil, map[string]any{"typ": "id_token+jwt"}, goodClaims()), verify.ErrWrongType},

		// Signatures.
		{"signature segment empty", parts[0] + "." + parts[1] + ".", verify.ErrSignature},
		{"signature all zero", parts[0] + "." + parts[1] + "." + enc(make([]byte, 64)), verify.ErrSignature},
		{"signature one byte short", parts[0] + "." + parts[1] + "." + enc(sigBytes[:63]), verify.ErrSignature},
		{"signature one byte long", parts[0] + "." + parts[1] + "." + enc(append(append([]byte{}, sigBytes...), 0)), verify.ErrSignature},
		{"signature bit flipped", parts[0] + "." + parts[1] + "." + enc(append([]byte{sigBytes[0] ^ 1}, sigBytes[1:]...)), verify.ErrSignature},
		{"signature of another token", func() string {
			other := strings.Split(sign(t, ecKey, nil, nil, with(func(c jwt.MapClaims) { c["jti"] = "other" })), ".")
			return parts[0] + "." + parts[1] + "." + other[2]
		}(), verify.ErrSignature},
		{"header swapped (typ JWT) under the signature", enc([]byte(`{"alg":"ES256","kid":"ec-1","typ":"JWT"}`)) + "." + parts[1] + "." + parts[2], verify.ErrWrongType},
		{"header swapped (kid) under the signature", enc([]byte(`{"alg":"ES256","kid":"ec-1","typ":"at+jwt","x":1}`)) + "." + parts[1] + "." + parts[2], verify.ErrSignature},

		// Shape and encoding of every segment.
		{"signature segment missing", parts[0] + "." + parts[1], verify.ErrMalformed},
		{"payload not base64", parts[0] + ".!!!." + parts[2], verify.ErrMalformed},
		{"signature not base64", parts[0] + "." + parts[1] + ".!!!", verify.ErrMalformed},
		{"signature in standard base64", parts[0] + "." + parts[1] + "." + stdSig, verify.ErrMalformed},
		{"header padded base64", paddedHeader + "." + parts[1] + "." + parts[2], verify.ErrMalformed},
		{"payload padded base64", parts[0] + "." + paddedPayload + "." + parts[2], verify.ErrMalformed},
		{"payload a JSON string", signRaw(t, ecKey, `{"alg":"ES256","typ":"at+jwt","kid":"ec-1"}`, `"claims"`), verify.ErrMalformed},
		{"three dots, empty", "...", verify.ErrMalformed},
		{"four dots, empty", "....", verify.ErrMalformed},
		{"two dots, empty", "..", verify.ErrMalformed},
		{"valid token and a dot", valid + ".", verify.ErrMalformed},
		{"five segments (JWE shape)", parts[0] + "." + parts[1] + ".." + parts[2] + ".tag", verify.ErrMalformed},
		{"dot in front", "." + valid, verify.ErrMalformed},
		{"one byte over the limit", strings.Repeat("a", verify.MaxTokenSize-len(valid)+1) + valid, verify.ErrTooLarge},
		{"1 MiB", strings.Repeat("a.", 1<<19), verify.ErrTooLarge},

		// Claim types.
		{"exp null", sign(t, ecKey, nil, nil, with(func(c jwt.MapClaims) { c["exp"] = nil })), verify.ErrMissingClaim},
		{"nbf as a string", sign(t, ecKey, nil, nil, with(func(c jwt.MapClaims) { c["nbf"] = fmt.Sprint(now.Unix()) })), verify.ErrMalformed},
		{"aud an object", sign(t, ecKey, nil, nil, with(func(c jwt.MapClaims) { c["aud"] = map[string]any{"a": audience} })), verify.ErrMalformed},
		{"aud a number", sign(t, ecKey, nil, nil, with(func(c jwt.MapClaims) { c["aud"] = 1 })), verify.ErrMalformed},
	}
}

// The hostile list again, against a verifier whose keys came over HTTP from
// a JWKS (once by JWKSURL, once by discovery of an https issuer): the same
// refusals, for the same reasons, and not one of these tokens makes the
// verifier fetch keys again.
func TestRejectionsJWKS(t *testing.T) {
	keys(t)
	f := newJWKSFixture(t, stdJWKS()...)
	f.set(func(f *jwksFixture) {
		iss, ju := issuer, "https://auth.example.test/jwks.json"
		f.mdIssuer, f.mdJWKSURI = &iss, &ju
	})
	clock := newFixtureClock(now)
	byURL := f.verifier(t, clock, nil)
	rt := newRouteTransport(f.srv)
	byDiscovery := f.verifier(t, clock, func(o *verify.Options) {
		o.JWKSURL = ""
		o.HTTPClient = &http.Client{Transport: rt, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	})
	wantHits(t, "metadata", &f.metaHits, 1)
	wantHits(t, "JWKS", &f.jwksHits, 2)
	cases := rejectionCases(t)
	for name, v := range map[string]*verify.Verifier{"JWKSURL": byURL, "discovery": byDiscovery} {
		t.Run(name, func(t *testing.T) {
			for _, k := range []testKey{ecKey, rsaKey, edKey} {
				mustVerify(t, v, sign(t, k, nil, nil, goodClaims()))
			}
			for _, tc := range cases {
				t.Run(tc.name, func(t *testing.T) {
					mustReject(t, v, tc.token, tc.want)
					wantHits(t, "JWKS", &f.jwksHits, 2)
				})
			}
		})
	}
	wantHits(t, "metadata", &f.metaHits, 1)
}

// RFC 7515 §7.1: the compact serialization is base64url without line
// breaks, whitespace or other characters, and §2 without padding. A token
// that differs from a valid one only by such characters, or by the unused
// low bits of a segment's last character, is a different string for the
// same token: whatever a resource server keys on the token string (a cache,
// a replay or revocation list, a log) it must not verify.
func TestNonCanonicalEncodingRefused(t *testing.T) {
	v := newVerifier(t)
	tok := sign(t, ecKey, nil, nil, goodClaims())
	p := strings.Split(tok, ".")
	// A 64-byte signature is 86 characters with 4 unused bits in the last.
	last := p[2][len(p[2])-1]
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	idx := strings.IndexByte(alphabet, last)
	sibling := alphabet[idx^1] // differs only in an unused bit
	for _, tc := range []struct{ name, token string }{
		{"LF in the signature", p[0] + "." + p[1] + "." + p[2][:10] + "\n" + p[2][10:]},
		{"CR LF in the signature", p[0] + "." + p[1] + "." + p[2][:10] + "\r\n" + p[2][10:]},
		{"trailing LF", tok + "\n"},
		{"trailing CR", tok + "\r"},
		{"unused bits of the signature set", p[0] + "." + p[1] + "." + p[2][:len(p[2])-1] + string(sibling)},
	} {
		t.Run(tc.name, func(t *testing.T) { mustReject(t, v, tc.token, verify.ErrMalformed) })
	}
}

// TestOtherAudiences: a verifier given OtherAudiences accepts a token for
// any of them or for Audience, and still refuses every other audience.
func TestOtherAudiences(t *testing.T) {
	keys(t)
	v, err := verify.New(context.Background(), verify.Options{
		Issuer: issuer, Audience: audience, OtherAudiences: []string{"https://api.test/banking", "https://api.test/commerce"},
		Keys: source, Now: func() time.Time { return now },
	})
	if err != nil {
		t.Fatal(err)
	}
	for aud, want := range map[string]error{
		audience:                     nil,
		"https://api.test/banking":   nil,
		"https://api.test/commerce":  nil,
		"https://api.test/analytics": verify.ErrWrongAudience,
		"https://api.test/bank":      verify.ErrWrongAudience,
	} {
		c := goodClaims()
		c["aud"] = aud
		if _, err := v.Verify(context.Background(), sign(t, ecKey, nil, nil, c)); !errors.Is(err, want) && !(want == nil && err == nil) {
			t.Errorf("aud %s: %v, want %v", aud, err, want)
		}
	}
}
