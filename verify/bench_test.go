package verify_test

// What Verify costs beside the bare signature check it cannot avoid, on the
// same token: BenchmarkVerify* verify a keygate-shaped access token with
// keys from a JWKS served over loopback (cached, so no request is made in
// the loop) and the cache of verified tokens off; BenchmarkVerifyCached is
// the same token answered from that cache; BenchmarkRaw* do only the
// signature primitive on that token's signing input and signature (SHA-256
// included, parsing not).
//
//	go test -run '^$' -bench . -benchmem -benchtime 3s ./verify/

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/keygate/keygate/verify"
)

// benchToken is a token as keygate issues it (claims in keygate's order,
// the scopes of the accounting_api permission) signed by k, with a Verifier
// that fetched k's public key from a JWKS over HTTP.
func benchToken(b *testing.B, k testKey) (*verify.Verifier, string, []byte, []byte) {
	return benchTokenCache(b, k, -1)
}

// benchTokenCache is benchToken with a Verifier whose cache of verified
// tokens has cacheSize (negative: off, so every Verify checks the
// signature).
func benchTokenCache(b *testing.B, k testKey, cacheSize int) (*verify.Verifier, string, []byte, []byte) {
	b.Helper()
	keys(b)
	f := newJWKSFixture(b, stdJWKS()...)
	v, err := verify.New(context.Background(), verify.Options{Issuer: issuer, Audience: audience, JWKSURL: f.jwksURL(), CacheSize: cacheSize})
	if err != nil {
		b.Fatal(err)
	}
	iat := time.Now()
	claims := jwt.MapClaims{
		"iss":       issuer,
		"sub":       "kgc_acme_3p9xqv7ttd2vf5mkgrb6n4hcfq",
		"aud":       audience,
		"exp":       iat.Add(15 * time.Minute).Unix(),
		"iat":       iat.Unix(),
		"nbf":       iat.Unix(),
		"jti":       "q3yTJ5lq5n4Gv3vPqkqA8w",
		"client_id": "kgc_acme_3p9xqv7ttd2vf5mkgrb6n4hcfq",
		"scope":     "common:read common:write accounting:read accounting:write banking:read banking:write commerce:read commerce:write analytics:read analytics:write",
		"team_id":   "acme",
	}
	tok := sign(b, k, nil, nil, claims)
	if _, err := v.Verify(context.Background(), tok); err != nil {
		b.Fatal(err)
	}
	i := strings.LastIndexByte(tok, '.')
	sig, err := base64.RawURLEncoding.DecodeString(tok[i+1:])
	if err != nil {
		b.Fatal(err)
	}
	wantHits(b, "JWKS", &f.jwksHits, 1)
	b.Cleanup(func() { wantHits(b, "JWKS after the benchmark", &f.jwksHits, 1) })
	return v, tok, []byte(tok[:i]), sig
}

func benchVerify(b *testing.B, k testKey) {
	v, tok, _, _ := benchToken(b, k)
	verifyLoop(b, v, tok)
}

// verifyLoop verifies tok with v b.N times.
func verifyLoop(b *testing.B, v *verify.Verifier, tok string) {
	ctx := context.Background()
	b.ReportAllocs()
	b.SetBytes(int64(len(tok)))
	b.ResetTimer()
	for b.Loop() {
		if _, err := v.Verify(ctx, tok); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkVerify is ES256, keygate's default, with the cache of verified
// tokens off: the signature is checked every time.
func BenchmarkVerify(b *testing.B) { benchVerify(b, ecKey0(b)) }

// BenchmarkVerifyCached verifies the same token again and again with the
// cache on (the default): after the first, every Verify is a hit.
func BenchmarkVerifyCached(b *testing.B) {
	v, tok, _, _ := benchTokenCache(b, ecKey0(b), 0)
	verifyLoop(b, v, tok)
}
func BenchmarkVerifyRS256(b *testing.B) { keys(b); benchVerify(b, rsaKey) }
func BenchmarkVerifyEdDSA(b *testing.B) { keys(b); benchVerify(b, edKey) }

func ecKey0(b *testing.B) testKey { keys(b); return ecKey }

// BenchmarkRawECDSAVerify is what BenchmarkVerify cannot do without:
// SHA-256 of the signing input and ecdsa.Verify.
func BenchmarkRawECDSAVerify(b *testing.B) {
	_, tok, input, sig := benchToken(b, ecKey0(b))
	pub := ecKey.priv.Public().(*ecdsa.PublicKey)
	r, s := new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:])
	b.ReportAllocs()
	b.SetBytes(int64(len(tok)))
	b.ResetTimer()
	for b.Loop() {
		h := sha256.Sum256(input)
		if !ecdsa.Verify(pub, h[:], r, s) {
			b.Fatal("bad signature")
		}
	}
}

func BenchmarkRawRSAVerify(b *testing.B) {
	keys(b)
	_, tok, input, sig := benchToken(b, rsaKey)
	pub := rsaKey.priv.Public().(*rsa.PublicKey)
	b.ReportAllocs()
	b.SetBytes(int64(len(tok)))
	b.ResetTimer()
	for b.Loop() {
		h := sha256.Sum256(input)
		if err := rsa.VerifyPKCS1v15(pub, crypto.SHA256, h[:], sig); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkRawEd25519Verify(b *testing.B) {
	keys(b)
	_, tok, input, sig := benchToken(b, edKey)
	pub := edKey.priv.Public().(ed25519.PublicKey)
	b.ReportAllocs()
	b.SetBytes(int64(len(tok)))
	b.ResetTimer()
	for b.Loop() {
		if !ed25519.Verify(pub, input, sig) {
			b.Fatal("bad signature")
		}
	}
}

// BenchmarkOverhead runs Verify and the raw check of the same token in
// alternation, timing each, and reports Verify's overhead over the raw check
// as overhead-%. Alternating keeps both under the same machine load, so the
// ratio is steadier than the one between two separate benchmarks on a busy
// or shared machine.
func BenchmarkOverhead(b *testing.B) {
	keys(b)
	raw := map[string]func(input, sig []byte) bool{
		"ES256": func(input, sig []byte) bool {
			h := sha256.Sum256(input)
			return ecdsa.Verify(ecKey.priv.Public().(*ecdsa.PublicKey), h[:], new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:]))
		},
		"RS256": func(input, sig []byte) bool {
			h := sha256.Sum256(input)
			return rsa.VerifyPKCS1v15(rsaKey.priv.Public().(*rsa.PublicKey), crypto.SHA256, h[:], sig) == nil
		},
		"EdDSA": func(input, sig []byte) bool {
			return ed25519.Verify(edKey.priv.Public().(ed25519.PublicKey), input, sig)
		},
	}
	for _, k := range []testKey{ecKey, rsaKey, edKey} {
		b.Run(k.alg, func(b *testing.B) {
			v, tok, input, sig := benchToken(b, k)
			check := raw[k.alg]
			ctx := context.Background()
			var tVerify, tRaw time.Duration
			for b.Loop() {
				t0 := time.Now()
				if _, err := v.Verify(ctx, tok); err != nil {
					b.Fatal(err)
				}
				t1 := time.Now()
				if !check(input, sig) {
					b.Fatal("bad signature")
				}
				t2 := time.Now()
				tVerify += t1.Sub(t0)
				tRaw += t2.Sub(t1)
			}
			n := float64(b.N)
			b.ReportMetric(float64(tVerify.Nanoseconds())/n, "verify-ns/op")
			b.ReportMetric(float64(tRaw.Nanoseconds())/n, "raw-ns/op")
			b.ReportMetric(100*float64(tVerify-tRaw)/float64(tRaw), "overhead-%")
		})
	}
}
