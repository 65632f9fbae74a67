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

func keys(t *testing.T) {
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
func sign(t *testing.T, k testKey, method jwt.SigningMethod, header map[string]any, claims jwt.MapClaims) string {
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
func signRaw(t *testing.T, k testKey, header, payload string) string {
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

func TestRejections(t *testing.T) {
	v := newVerifier(t)
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

	cases := []struct {
		name  string
		token string
		want  error
	}{
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
	reasons := []error{verify.ErrMalformed, verify.ErrTooLarge, verify.ErrWrongType, verify.ErrUnknownKey, verify.ErrAlgorithm,
		verify.ErrSignature, verify.ErrExpired, verify.ErrNotYetValid, verify.ErrIssuedInFuture, verify.ErrWrongIssuer,
		verify.ErrWrongAudience, verify.ErrMissingClaim, verify.ErrKeysUnavailable, verify.ErrInsufficientScope}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, err := v.Verify(context.Background(), tc.token)
			if err == nil {
				t.Fatalf("accepted: %+v", c)
			}
			if c != nil {
				t.Fatalf("returned claims alongside error %v", err)
			}
			if !errors.Is(err, tc.want) {
				t.Fatalf("error %q (%T), want errors.Is %q", err, err, tc.want)
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
		})
	}
}

func mustEC(t *testing.T) *ecdsa.PrivateKey {
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
