// Package trustedissuertest is an identity provider for tests: its own
// ES256, RSA and Ed25519 keys, its JWKS served over HTTP on loopback, and
// tokens signed as a real provider (or a forger) would.
package trustedissuertest

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/go-jose/go-jose/v4"
	"github.com/golang-jwt/jwt/v5"
)

// Kids of the provider's keys.
const (
	KidES256 = "idp-es256"
	KidRS256 = "idp-rs256"
	KidEdDSA = "idp-eddsa"
)

// IdP is a running identity provider.
type IdP struct {
	Server *httptest.Server
	// Issuer is its iss (its base URL); JWKSURI serves its keys.
	Issuer, JWKSURI string

	EC  *ecdsa.PrivateKey
	RSA *rsa.PrivateKey
	Ed  ed25519.PrivateKey

	// Fetches counts GETs of the JWKS.
	Fetches atomic.Int64

	mu   sync.Mutex
	jwks []byte
	// handler, when set, answers the JWKS path instead (a broken provider).
	handler http.HandlerFunc
}

// New starts a provider on loopback; it stops with the test.
func New(t testing.TB) *IdP {
	t.Helper()
	ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	rk, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	_, ed, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	p := &IdP{EC: ec, RSA: rk, Ed: ed}
	p.SetKeys(t,
		jose.JSONWebKey{Key: &ec.PublicKey, KeyID: KidES256, Use: "sig"},
		jose.JSONWebKey{Key: &rk.PublicKey, KeyID: KidRS256, Algorithm: "RS256", Use: "sig"},
		jose.JSONWebKey{Key: ed.Public(), KeyID: KidEdDSA, Use: "sig"},
	)
	mux := http.NewServeMux()
	mux.HandleFunc("/jwks", func(w http.ResponseWriter, r *http.Request) {
		p.Fetches.Add(1)
		p.mu.Lock()
		h, body := p.handler, p.jwks
		p.mu.Unlock()
		if h != nil {
			h(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/jwk-set+json")
		_, _ = w.Write(body)
	})
	p.Server = httptest.NewServer(mux) // 127.0.0.1
	t.Cleanup(p.Server.Close)
	p.Issuer = p.Server.URL
	p.JWKSURI = p.Server.URL + "/jwks"
	return p
}

// SetKeys replaces the published JWKS.
func (p *IdP) SetKeys(t testing.TB, keys ...jose.JSONWebKey) {
	t.Helper()
	b, err := json.Marshal(jose.JSONWebKeySet{Keys: keys})
	if err != nil {
		t.Fatal(err)
	}
	p.mu.Lock()
	p.jwks, p.handler = b, nil
	p.mu.Unlock()
}

// SetHandler makes the JWKS path answer with h (nil: the keys again).
func (p *IdP) SetHandler(h http.HandlerFunc) {
	p.mu.Lock()
	p.handler = h
	p.mu.Unlock()
}

// Sign signs claims with method and key under kid ("" leaves kid out).
func Sign(t testing.TB, method jwt.SigningMethod, key any, kid string, claims jwt.MapClaims) string {
	t.Helper()
	tok := jwt.NewWithClaims(method, claims)
	if kid != "" {
		tok.Header["kid"] = kid
	}
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// ES256 signs claims with the provider's EC key, RS256 with its RSA key,
// EdDSA with its Ed25519 key.
func (p *IdP) ES256(t testing.TB, claims jwt.MapClaims) string {
	return Sign(t, jwt.SigningMethodES256, p.EC, KidES256, claims)
}

func (p *IdP) RS256(t testing.TB, claims jwt.MapClaims) string {
	return Sign(t, jwt.SigningMethodRS256, p.RSA, KidRS256, claims)
}

func (p *IdP) EdDSA(t testing.TB, claims jwt.MapClaims) string {
	return Sign(t, jwt.SigningMethodEdDSA, crypto.Signer(p.Ed), KidEdDSA, claims)
}
