package verify_test

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/keygate/keygate/verify"
)

// fuzzKey is fixed (Ed25519 signatures are deterministic), so the valid
// seed token is the same on every run and in the committed corpus.
var fuzzKey = ed25519.NewKeyFromSeed([]byte("keygate verify fuzz key seed 32b"))

// fuzzValidToken is the one token FuzzVerify's verifier may accept.
func fuzzValidToken(t testing.TB) string {
	tok := jwt.NewWithClaims(jwt.SigningMethodEdDSA, jwt.MapClaims{
		"iss": issuer, "sub": "kgc_client", "client_id": "kgc_client", "aud": audience,
		"exp": now.Add(15 * time.Minute).Unix(), "iat": now.Unix(), "jti": "jti-fuzz",
		"scope": "keys:read",
	})
	tok.Header["typ"] = "at+jwt"
	tok.Header["kid"] = "ed-fuzz"
	s, err := tok.SignedString(fuzzKey)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// FuzzVerify: with one fixed key, Verify accepts the valid seed token and
// nothing else — no other spelling of it, no other header, payload or
// signature, no other algorithm.
func FuzzVerify(f *testing.F) {
	valid := fuzzValidToken(f)
	enc := base64.RawURLEncoding.EncodeToString
	f.Add(valid)
	f.Add(valid + "=")
	f.Add(enc([]byte(`{"alg":"none","typ":"at+jwt","kid":"ed-fuzz"}`)) + "." + enc([]byte(`{"iss":"`+issuer+`"}`)) + ".")
	f.Add(enc([]byte(`{"alg":"HS256","typ":"at+jwt","kid":"ed-fuzz"}`)) + ".e30.c2ln")
	f.Add("a.b.c")
	f.Add("..")
	f.Fuzz(func(t *testing.T, token string) {
		v, err := verify.New(context.Background(), verify.Options{
			Issuer:   issuer,
			Audience: audience,
			Keys:     keySource{"ed-fuzz": {"ed-fuzz", "EdDSA", fuzzKey}},
			Now:      func() time.Time { return now },
		})
		if err != nil {
			t.Fatal(err)
		}
		c, err := v.Verify(context.Background(), token)
		if token == valid {
			if err != nil || c.ClientID != "kgc_client" {
				t.Fatalf("the valid token was refused: %v", err)
			}
			return
		}
		if err == nil {
			t.Fatalf("accepted %q, which is not the token signed with the key", token)
		}
	})
}
