package signing_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"math/big"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/keygate/keygate/masterkey"
	"github.com/keygate/keygate/signing"
	"github.com/keygate/keygate/store"
	"github.com/keygate/keygate/store/bolt"
)

var allAlgs = []jose.SignatureAlgorithm{jose.ES256, jose.RS256, jose.EdDSA}

func newMasterKey(t testing.TB) *masterkey.Key {
	t.Helper()
	enc, err := masterkey.Generate()
	if err != nil {
		t.Fatal(err)
	}
	k, err := masterkey.Parse(enc)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func openStore(t testing.TB) *bolt.Store {
	t.Helper()
	st, err := bolt.Open(filepath.Join(t.TempDir(), "keygate.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

type testClaims struct {
	Iss      string `json:"iss"`
	Sub      string `json:"sub"`
	Exp      int64  `json:"exp"`
	ClientID string `json:"client_id"`
	Scope    string `json:"scope"`
}

func loadOne(t testing.TB, mk *masterkey.Key, alg string, now time.Time) (*signing.KeySet, store.SigningKey) {
	t.Helper()
	sk, err := signing.NewStoredKey(mk, alg, now)
	if err != nil {
		t.Fatalf("NewStoredKey(%s): %v", alg, err)
	}
	ks, err := signing.Load(store.SigningKeys{Active: &sk}, mk, now, time.Hour)
	if err != nil {
		t.Fatalf("Load(%s): %v", alg, err)
	}
	return ks, sk
}

func parseJWKS(t *testing.T, raw []byte) jose.JSONWebKeySet {
	t.Helper()
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(raw, &set); err != nil {
		t.Fatalf("JWKS %s does not parse with go-jose: %v", raw, err)
	}
	return set
}

func TestSignVerifiesWithJOSE(t *testing.T) {
	mk := newMasterKey(t)
	now := time.Now()
	for _, alg := range signing.Algorithms {
		t.Run(alg, func(t *testing.T) {
			ks, sk := loadOne(t, mk, alg, now)
			s := ks.Signer()
			if s.Alg() != alg || s.KID() != sk.KID {
				t.Fatalf("signer alg/kid = %s/%s, want %s/%s", s.Alg(), s.KID(), alg, sk.KID)
			}
			if sk.Alg != alg || sk.CreatedAt.IsZero() || len(sk.PrivateKeySealed) == 0 {
				t.Fatalf("stored key incomplete: %+v", sk)
			}
			claims := testClaims{Iss: "https://issuer.test", Sub: "kgc_x", Exp: now.Add(time.Minute).Unix(), ClientID: "kgc_x", Scope: "a:read b:write"}
			tok, err := s.Sign(claims)
			if err != nil {
				t.Fatal(err)
			}
			if strings.Count(tok, ".") != 2 {
				t.Fatalf("not a compact JWS: %q", tok)
			}

			raw := ks.JWKS()
			set := parseJWKS(t, raw)
			if len(set.Keys) != 1 {
				t.Fatalf("JWKS has %d keys, want 1", len(set.Keys))
			}
			jwk := set.Keys[0]
			if !jwk.IsPublic() {
				t.Fatal("JWKS key is not public")
			}
			if jwk.KeyID != sk.KID || jwk.Algorithm != alg || jwk.Use != "sig" {
				t.Fatalf("JWK kid/alg/use = %q/%q/%q", jwk.KeyID, jwk.Algorithm, jwk.Use)
			}
			// go-jose computes the RFC 7638 thumbprint on its own: it must be the kid.
			tp, err := jwk.Thumbprint(crypto.SHA256)
			if err != nil {
				t.Fatal(err)
			}
			if got := base64.RawURLEncoding.EncodeToString(tp); got != sk.KID {
				t.Fatalf("kid %q is not the RFC 7638 thumbprint %q", sk.KID, got)
			}
			assertNoPrivateMembers(t, raw)

			jws, err := jose.ParseSigned(tok, allAlgs)
			if err != nil {
				t.Fatalf("go-jose cannot parse the token: %v", err)
			}
			if len(jws.Signatures) != 1 {
				t.Fatalf("%d signatures", len(jws.Signatures))
			}
			h := jws.Signatures[0].Protected
			if h.Algorithm != alg {
				t.Fatalf("header alg %q, want %q", h.Algorithm, alg)
			}
			if h.KeyID != sk.KID {
				t.Fatalf("header kid %q, want the thumbprint %q", h.KeyID, sk.KID)
			}
			if typ := h.ExtraHeaders[jose.HeaderType]; typ != "at+jwt" {
				t.Fatalf("header typ %v, want at+jwt", typ)
			}
			payload, err := jws.Verify(jwk)
			if err != nil {
				t.Fatalf("go-jose rejects the signature: %v", err)
			}
			var got testClaims
			if err := json.Unmarshal(payload, &got); err != nil {
				t.Fatal(err)
			}
			if got != claims {
				t.Fatalf("payload %+v, want %+v", got, claims)
			}

			// A changed payload no longer verifies.
			parts := strings.Split(tok, ".")
			parts[1] = base64.RawURLEncoding.EncodeToString([]byte(`{"sub":"someone else"}`))
			forged, err := jose.ParseSigned(strings.Join(parts, "."), allAlgs)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := forged.Verify(jwk); err == nil {
				t.Fatal("go-jose accepted a changed payload")
			}

			// Two tokens from one signer: distinct signatures are fine, both verify.
			tok2, err := s.Sign(claims)
			if err != nil {
				t.Fatal(err)
			}
			if j2, err := jose.ParseSigned(tok2, allAlgs); err != nil {
				t.Fatal(err)
			} else if _, err := j2.Verify(jwk); err != nil {
				t.Fatal(err)
			}

			pk, ok := ks.PublicKey(sk.KID)
			if !ok || pk.Alg != alg || pk.KID != sk.KID {
				t.Fatalf("PublicKey(kid) = %+v, %v", pk, ok)
			}
			if _, ok := ks.PublicKey("nope"); ok {
				t.Fatal("PublicKey(unknown) found something")
			}
		})
	}
}

// TestAppendJWSAppends: the token path's AppendJWS appends a token that
// verifies after what dst held, leaving that untouched, for every
// algorithm.
func TestAppendJWSAppends(t *testing.T) {
	mk := newMasterKey(t)
	payload := []byte(`{"sub":"kgc_x","scope":"a:read"}`)
	for _, alg := range signing.Algorithms {
		t.Run(alg, func(t *testing.T) {
			ks, _ := loadOne(t, mk, alg, time.Now())
			set := parseJWKS(t, ks.JWKS())
			const head = `{"access_token":"`
			out, err := ks.Signer().AppendJWS([]byte(head), payload)
			if err != nil {
				t.Fatal(err)
			}
			tok, ok := strings.CutPrefix(string(out), head)
			if !ok {
				t.Fatalf("AppendJWS changed what dst held: %q", out)
			}
			jws, err := jose.ParseSigned(tok, allAlgs)
			if err != nil {
				t.Fatalf("go-jose cannot parse the appended token: %v", err)
			}
			got, err := jws.Verify(set.Keys[0])
			if err != nil || !bytes.Equal(got, payload) {
				t.Fatalf("appended token verifies to %q, %v; want %q", got, err, payload)
			}
		})
	}
}

func TestSignRejectsUnencodableClaims(t *testing.T) {
	ks, _ := loadOne(t, newMasterKey(t), signing.ES256, time.Now())
	if _, err := ks.Signer().Sign(map[string]any{"bad": make(chan int)}); err == nil {
		t.Fatal("Sign accepted claims that cannot be JSON")
	}
}

func assertNoPrivateMembers(t *testing.T, raw []byte) {
	t.Helper()
	var generic struct {
		Keys []map[string]any `json:"keys"`
	}
	if err := json.Unmarshal(raw, &generic); err != nil {
		t.Fatal(err)
	}
	for _, k := range generic.Keys {
		for _, private := range []string{"d", "p", "q", "dp", "dq", "qi", "k", "oth"} {
			if _, ok := k[private]; ok {
				t.Fatalf("JWKS key %v has private member %q", k["kid"], private)
			}
		}
	}
}

func TestGenerateUnsupported(t *testing.T) {
	for _, alg := range []string{"HS256", "none", "", "es256", "PS256"} {
		if _, err := signing.Generate(alg); err == nil {
			t.Errorf("Generate(%q) succeeded", alg)
		}
		if _, err := signing.NewStoredKey(newMasterKey(t), alg, time.Now()); err == nil {
			t.Errorf("NewStoredKey(%q) succeeded", alg)
		}
	}
}

// RFC 7638 §3.1: the example RSA key and its thumbprint.
func TestThumbprintRFC7638Example(t *testing.T) {
	const (
		n    = "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw"
		want = "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
	)
	nb, err := base64.RawURLEncoding.DecodeString(n)
	if err != nil {
		t.Fatal(err)
	}
	pub := &rsa.PublicKey{N: new(big.Int).SetBytes(nb), E: 65537} // "AQAB"
	got, err := signing.Thumbprint(pub)
	if err != nil {
		t.Fatal(err)
	}
	if got != want {
		t.Fatalf("Thumbprint = %q, want %q (RFC 7638 §3.1)", got, want)
	}
	j, err := signing.NewJWK(pub, got, signing.RS256)
	if err != nil {
		t.Fatal(err)
	}
	if j.N != n || j.E != "AQAB" || j.Kty != "RSA" {
		t.Fatalf("JWK n/e/kty = %q/%q/%q", j.N, j.E, j.Kty)
	}
}

// Thumbprints of EC and OKP keys agree with go-jose's implementation.
func TestThumbprintMatchesJOSE(t *testing.T) {
	for _, alg := range signing.Algorithms {
		priv, err := signing.Generate(alg)
		if err != nil {
			t.Fatal(err)
		}
		got, err := signing.Thumbprint(priv.Public())
		if err != nil {
			t.Fatal(err)
		}
		jwk := jose.JSONWebKey{Key: priv.Public()}
		tp, err := jwk.Thumbprint(crypto.SHA256)
		if err != nil {
			t.Fatal(err)
		}
		if want := base64.RawURLEncoding.EncodeToString(tp); got != want {
			t.Errorf("%s: Thumbprint %q, go-jose says %q", alg, got, want)
		}
		switch priv.Public().(type) {
		case *ecdsa.PublicKey, *rsa.PublicKey, ed25519.PublicKey:
		default:
			t.Errorf("%s: unexpected key type %T", alg, priv.Public())
		}
	}
	if _, err := signing.Thumbprint("not a key"); err == nil {
		t.Error("Thumbprint accepted a string")
	}
}

func TestLoadWrongMasterKey(t *testing.T) {
	mk := newMasterKey(t)
	sk, err := signing.NewStoredKey(mk, signing.ES256, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	_, err = signing.Load(store.SigningKeys{Active: &sk}, newMasterKey(t), time.Now(), time.Hour)
	if !errors.Is(err, masterkey.ErrOpen) {
		t.Fatalf("Load with another master key: %v, want ErrOpen", err)
	}
	if !strings.Contains(err.Error(), sk.KID) {
		t.Fatalf("error %q does not name kid %s", err, sk.KID)
	}

	// Also for a retired key.
	other, err := signing.NewStoredKey(newMasterKey(t), signing.EdDSA, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	keys := store.SigningKeys{Active: &sk, Retired: []store.RetiredSigningKey{{SigningKey: other, PublishUntil: time.Now().Add(time.Hour)}}}
	_, err = signing.Load(keys, mk, time.Now(), time.Hour)
	if !errors.Is(err, masterkey.ErrOpen) || !strings.Contains(err.Error(), other.KID) {
		t.Fatalf("Load with an undecryptable retired key: %v", err)
	}

	if _, err := signing.Load(store.SigningKeys{}, mk, time.Now(), time.Hour); err == nil {
		t.Fatal("Load of an empty set succeeded")
	}
}

// The seal is bound to the kid: someone who can write the store cannot
// move one sealed key under another kid.
func TestSealedKeyBoundToKID(t *testing.T) {
	mk := newMasterKey(t)
	a, err := signing.NewStoredKey(mk, signing.ES256, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	b, err := signing.NewStoredKey(mk, signing.ES256, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	swapped := b
	swapped.PrivateKeySealed = a.PrivateKeySealed
	_, err = signing.Load(store.SigningKeys{Active: &swapped}, mk, time.Now(), time.Hour)
	if !errors.Is(err, masterkey.ErrOpen) {
		t.Fatalf("key sealed for %s loaded under kid %s: %v", a.KID, b.KID, err)
	}
	renamed := a
	renamed.KID = "attacker-chosen"
	if _, err := signing.Load(store.SigningKeys{Active: &renamed}, mk, time.Now(), time.Hour); !errors.Is(err, masterkey.ErrOpen) {
		t.Fatalf("sealed key loaded under another kid: %v", err)
	}
	// A stored alg that does not fit the key type is refused too.
	wrongAlg := a
	wrongAlg.Alg = signing.RS256
	if _, err := signing.Load(store.SigningKeys{Active: &wrongAlg}, mk, time.Now(), time.Hour); err == nil {
		t.Fatal("an ES256 key loaded as RS256")
	}
}

func TestEnsureConcurrentFirstStart(t *testing.T) {
	ctx := context.Background()
	st := openStore(t)
	mk := newMasterKey(t)
	const n = 10
	sets := make([]store.SigningKeys, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			<-start
			sets[i], errs[i] = signing.Ensure(ctx, st, mk, signing.ES256, testSchedule, time.Now())
		}(i)
	}
	close(start)
	wg.Wait()
	stored, err := st.SigningKeys(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if stored.Active == nil {
		t.Fatal("no active key after concurrent first starts")
	}
	if len(stored.Retired) != 0 {
		t.Fatalf("concurrent first starts retired %d keys, want 0", len(stored.Retired))
	}
	for i := 0; i < n; i++ {
		if errs[i] != nil {
			t.Fatalf("Ensure #%d: %v", i, errs[i])
		}
		if sets[i].Active == nil || sets[i].Active.KID != stored.Active.KID {
			t.Fatalf("Ensure #%d returned kid %v, the store holds %s", i, sets[i].Active, stored.Active.KID)
		}
		if !bytes.Equal(sets[i].Active.PrivateKeySealed, stored.Active.PrivateKeySealed) {
			t.Fatalf("Ensure #%d returned other key material", i)
		}
	}
	if _, err := signing.Load(stored, mk, time.Now(), time.Hour); err != nil {
		t.Fatal(err)
	}
}

func BenchmarkSign(b *testing.B) {
	mk := newMasterKey(b)
	now := time.Now()
	claims := map[string]any{
		"iss": "http://localhost:8080", "sub": "kgc_abcdefABCDEFabcdefABCDEF0123", "aud": "http://localhost:8080",
		"exp": now.Add(15 * time.Minute).Unix(), "iat": now.Unix(), "nbf": now.Unix(),
		"jti": "q1w2e3r4t5y6u7i8o9p0aa", "client_id": "kgc_abcdefABCDEFabcdefABCDEF0123",
		"scope":   "common:read common:write accounting:read accounting:write banking:read banking:write commerce:read commerce:write analytics:read analytics:write",
		"team_id": "acme",
	}
	for _, alg := range signing.Algorithms {
		b.Run(alg, func(b *testing.B) {
			ks, _ := loadOne(b, mk, alg, now)
			s := ks.Signer()
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if _, err := s.Sign(claims); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
