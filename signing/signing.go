// Package signing owns keygate's JWT signing keys: generating them, keeping
// them sealed in the store, choosing which one signs, and publishing the
// public halves as a JWKS (RFC 7517).
//
// Keys are parsed once, when a KeySet is built; the token path then only
// calls Signer.Sign, which touches no disk, parses no PEM and takes no lock.
// The key set is stored as one record so that every change of state (a next
// key published ahead, promoted, the old one retired but still published for
// a token lifetime, then removed) is a single atomic update every instance
// agrees on; states.go has the rules.
package signing

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"slices"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/keygate/keygate/masterkey"
	"github.com/keygate/keygate/store"
)

// Supported algorithms (RFC 7518 / RFC 8037 names).
const (
	ES256 = "ES256"
	RS256 = "RS256"
	EdDSA = "EdDSA"
)

// DefaultAlg signs when nothing else is configured: ES256 tokens are small
// and fast to verify, and every JOSE library supports them.
const DefaultAlg = ES256

// Algorithms lists the supported algorithms, DefaultAlg first. Settings,
// flags and help text take the allowed values from here.
var Algorithms = []string{DefaultAlg, RS256, EdDSA}

// rsaBits: RFC 7518 §3.3 requires at least 2048; more makes every token
// slower to sign for no practical gain at a 15-minute lifetime.
const rsaBits = 2048

// publishSlack is added to a token lifetime when deciding how long a retired
// key stays in the JWKS, to cover verifiers' clock skew and JWKS caching.
const publishSlack = 5 * time.Minute

// KeyStore is the part of the store this package needs.
type KeyStore interface {
	SigningKeys(ctx context.Context) (store.SigningKeys, error)
	UpdateSigningKeys(ctx context.Context, update func(store.SigningKeys) (store.SigningKeys, error)) (store.SigningKeys, error)
}

// Generate makes a new private key for alg.
func Generate(alg string) (crypto.Signer, error) {
	switch alg {
	case ES256:
		return ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case RS256:
		return rsa.GenerateKey(rand.Reader, rsaBits)
	case EdDSA:
		_, priv, err := ed25519.GenerateKey(rand.Reader)
		return priv, err
	default:
		return nil, fmt.Errorf("unsupported signing algorithm %q (allowed: ES256, RS256, EdDSA)", alg)
	}
}

func sealPurpose(kid string) string { return "signing-key:" + kid }

// NewStoredKey generates a key for alg and seals it for the store.
func NewStoredKey(mk *masterkey.Key, alg string, now time.Time) (store.SigningKey, error) {
	priv, err := Generate(alg)
	if err != nil {
		return store.SigningKey{}, err
	}
	kid, err := Thumbprint(priv.Public())
	if err != nil {
		return store.SigningKey{}, err
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return store.SigningKey{}, fmt.Errorf("marshal %s key: %w", alg, err)
	}
	sealed, err := mk.Seal(sealPurpose(kid), der)
	if err != nil {
		return store.SigningKey{}, err
	}
	return store.SigningKey{KID: kid, Alg: alg, PrivateKeySealed: sealed, CreatedAt: now.UTC()}, nil
}

// Signer signs tokens with one parsed private key.
type Signer struct {
	kid    string
	alg    string
	method jwt.SigningMethod
	key    crypto.Signer
	// header is the encoded JOSE header, constant for a key, computed once.
	header string
}

// KID is the key ID placed in every token header.
func (s *Signer) KID() string { return s.kid }

// Alg is the JWS algorithm.
func (s *Signer) Alg() string { return s.alg }

// Sign returns a compact JWS of claims with header {alg, kid, typ}.
func (s *Signer) Sign(claims any) (string, error) {
	payload, err := json.Marshal(claims)
	if err != nil {
		return "", fmt.Errorf("encode claims: %w", err)
	}
	return s.SignPayload(payload)
}

// SignPayload signs claims already encoded as a JSON object (the token path
// encodes its claims without reflection).
func (s *Signer) SignPayload(payload []byte) (string, error) {
	enc := base64.RawURLEncoding
	buf, err := s.AppendJWS(make([]byte, 0, len(s.header)+1+enc.EncodedLen(len(payload))+1+enc.EncodedLen(512)), payload)
	if err != nil {
		return "", err
	}
	return string(buf), nil
}

// AppendJWS appends the compact JWS of payload (claims already encoded as a
// JSON object) to dst. On error dst comes back as it was. The token path
// appends into memory it reuses: with a million keys in use the garbage
// collector's work is a large part of a token's cost, and a token's own
// bytes were the largest garbage keygate made itself (docs/scale.md).
func (s *Signer) AppendJWS(dst, payload []byte) ([]byte, error) {
	enc := base64.RawURLEncoding
	start := len(dst)
	dst = append(dst, s.header...)
	dst = append(dst, '.')
	dst = enc.AppendEncode(dst, payload)
	sig, err := s.method.Sign(string(dst[start:]), s.key)
	if err != nil {
		return dst[:start], fmt.Errorf("sign with key %s: %w", s.kid, err)
	}
	dst = append(dst, '.')
	return enc.AppendEncode(dst, sig), nil
}

func newSigner(kid, alg string, key crypto.Signer, typ string) (*Signer, error) {
	method := jwt.GetSigningMethod(alg)
	if method == nil {
		return nil, fmt.Errorf("unsupported signing algorithm %q", alg)
	}
	hdr, err := json.Marshal(struct {
		Alg string `json:"alg"`
		KID string `json:"kid"`
		Typ string `json:"typ"`
	}{alg, kid, typ})
	if err != nil {
		return nil, err
	}
	return &Signer{kid: kid, alg: alg, method: method, key: key, header: base64.RawURLEncoding.EncodeToString(hdr)}, nil
}

// PublicKey is a verification key with the algorithm it is used with.
type PublicKey struct {
	KID string
	Alg string
	Key crypto.PublicKey
}

// KeySet is an immutable, parsed snapshot of the stored signing keys as they
// stand at one moment (Resolve).
type KeySet struct {
	signer       *Signer
	statusSigner *Signer
	public       map[string]PublicKey
	algs         []string
	jwks         []byte
	etag         []string // strong ETag of jwks, as a header value
	// parsed are the opened private keys by kid, reused by the next
	// snapshot so that a transition parses nothing again.
	parsed map[string]crypto.Signer
	// stored is the record this snapshot was resolved from, resolved the
	// set at the snapshot's time, retain the retention it was resolved with.
	stored, resolved store.SigningKeys
	retain           time.Duration
	// changesAt is the next transition in the record (a next key signs, a
	// retired key leaves): the snapshot must be rebuilt then.
	changesAt time.Time
}

// AccessTokenType is the JOSE "typ" of access tokens (RFC 9068 §2.1).
const AccessTokenType = "at+jwt"

// StatusListType is the JOSE "typ" of status list tokens
// (draft-ietf-oauth-status-list).
const StatusListType = "statuslist+jwt"

// Load opens the stored keys with the master key, resolves them at now
// (Resolve, with retain for a key retired by a promotion not yet recorded)
// and parses them.
func Load(keys store.SigningKeys, mk *masterkey.Key, now time.Time, retain time.Duration) (*KeySet, error) {
	return load(keys, mk, now, retain, nil)
}

// Reload is Load reusing the keys this snapshot has already opened: what
// an instance calls when the record or the clock moved on.
func (ks *KeySet) Reload(keys store.SigningKeys, mk *masterkey.Key, now time.Time, retain time.Duration) (*KeySet, error) {
	return load(keys, mk, now, retain, ks.parsed)
}

func load(keys store.SigningKeys, mk *masterkey.Key, now time.Time, retain time.Duration, parsed map[string]crypto.Signer) (*KeySet, error) {
	r := Resolve(keys, now, retain)
	if r.Active == nil {
		return nil, errors.New("no active signing key in the store")
	}
	ks := &KeySet{public: map[string]PublicKey{}, parsed: map[string]crypto.Signer{}, stored: keys, resolved: r, retain: retain}
	open := func(k store.SigningKey) (crypto.Signer, error) {
		if p, ok := parsed[k.KID]; ok {
			// The kid is the public key's thumbprint: the same kid is the
			// same key pair, however it is sealed now.
			ks.parsed[k.KID] = p
			return p, nil
		}
		p, err := openKey(mk, k)
		if err == nil {
			ks.parsed[k.KID] = p
		}
		return p, err
	}
	priv, err := open(*r.Active)
	if err != nil {
		return nil, err
	}
	if ks.signer, err = newSigner(r.Active.KID, r.Active.Alg, priv, AccessTokenType); err != nil {
		return nil, err
	}
	if ks.statusSigner, err = newSigner(r.Active.KID, r.Active.Alg, priv, StatusListType); err != nil {
		return nil, err
	}
	published := []store.SigningKey{*r.Active}
	ks.algs = []string{r.Active.Alg}
	if r.Next != nil {
		published = append(published, *r.Next)
		ks.changesAt = r.Next.SignsFrom
	}
	for _, k := range r.Retired {
		published = append(published, k.SigningKey)
		if ks.changesAt.IsZero() || k.PublishUntil.Before(ks.changesAt) {
			ks.changesAt = k.PublishUntil
		}
	}
	for _, k := range published {
		p, err := open(k)
		if err != nil {
			return nil, err
		}
		ks.public[k.KID] = PublicKey{KID: k.KID, Alg: k.Alg, Key: p.Public()}
		if !slices.Contains(ks.algs, k.Alg) {
			ks.algs = append(ks.algs, k.Alg)
		}
	}
	// The JWKS lists keys in the order they (will) sign, not by state: a
	// promotion changes no byte of it, so caches and ETags hold across it
	// and instances a moment apart on their clocks serve the same body.
	slices.SortFunc(published, func(a, b store.SigningKey) int {
		if c := a.SignsFrom.Compare(b.SignsFrom); c != 0 {
			return c
		}
		return strings.Compare(a.KID, b.KID)
	})
	jwks := JWKS{Keys: make([]JWK, 0, len(published))}
	for _, k := range published {
		p := ks.public[k.KID]
		j, err := NewJWK(p.Key, p.KID, p.Alg)
		if err != nil {
			return nil, err
		}
		jwks.Keys = append(jwks.Keys, j)
	}
	if ks.jwks, err = json.Marshal(jwks); err != nil {
		return nil, err
	}
	sum := sha256.Sum256(ks.jwks)
	ks.etag = []string{`"` + base64.RawURLEncoding.EncodeToString(sum[:16]) + `"`}
	return ks, nil
}

func openKey(mk *masterkey.Key, k store.SigningKey) (crypto.Signer, error) {
	der, err := mk.Open(sealPurpose(k.KID), k.PrivateKeySealed)
	if err != nil {
		return nil, fmt.Errorf("load signing key %s: %w", k.KID, err)
	}
	parsed, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		return nil, fmt.Errorf("load signing key %s: %w", k.KID, err)
	}
	signer, ok := parsed.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("load signing key %s: unexpected key type %T", k.KID, parsed)
	}
	if err := checkAlg(signer.Public(), k.Alg); err != nil {
		return nil, fmt.Errorf("load signing key %s: %w", k.KID, err)
	}
	return signer, nil
}

func checkAlg(pub crypto.PublicKey, alg string) error {
	ok := false
	switch p := pub.(type) {
	case *ecdsa.PublicKey:
		ok = alg == ES256 && p.Curve == elliptic.P256()
	case *rsa.PublicKey:
		ok = alg == RS256
	case ed25519.PublicKey:
		ok = alg == EdDSA
	}
	if !ok {
		return fmt.Errorf("key type %T does not fit algorithm %s", pub, alg)
	}
	return nil
}

// Signer returns the active signer for access tokens.
func (ks *KeySet) Signer() *Signer { return ks.signer }

// StatusListSigner signs status list tokens with the active key.
func (ks *KeySet) StatusListSigner() *Signer { return ks.statusSigner }

// PublicKey returns the published key with that kid.
func (ks *KeySet) PublicKey(kid string) (PublicKey, bool) {
	p, ok := ks.public[kid]
	return p, ok
}

// JWKS returns the encoded JSON Web Key Set of published keys.
func (ks *KeySet) JWKS() []byte { return ks.jwks }

// JWKSETag is the strong ETag of JWKS(), ready as a header value; callers
// must not modify it.
func (ks *KeySet) JWKSETag() []string { return ks.etag }

// ChangesAt is the next transition after this snapshot's moment: a next
// key starts signing or a retired key leaves the JWKS (zero when none is
// planned). The snapshot is out of date from then on: Reload it.
func (ks *KeySet) ChangesAt() time.Time { return ks.changesAt }

// Stored is the record this snapshot was built from.
func (ks *KeySet) Stored() store.SigningKeys { return ks.stored }

// Resolved is the set as it stood at the snapshot's moment. It holds
// sealed private keys: describe it (Describe) before showing it.
func (ks *KeySet) Resolved() store.SigningKeys { return ks.resolved }

// Algs are the algorithms of the published keys, the signing key's first.
func (ks *KeySet) Algs() []string { return ks.algs }

// JWKS is an RFC 7517 key set.
type JWKS struct {
	Keys []JWK `json:"keys"`
}

// JWK is the public part of one key (RFC 7517, 7518 §6, 8037 §2).
type JWK struct {
	Kty string `json:"kty"`
	Use string `json:"use"`
	Alg string `json:"alg"`
	KID string `json:"kid"`
	Crv string `json:"crv,omitempty"`
	X   string `json:"x,omitempty"`
	Y   string `json:"y,omitempty"`
	N   string `json:"n,omitempty"`
	E   string `json:"e,omitempty"`
}

// NewJWK describes pub as a JWK.
func NewJWK(pub crypto.PublicKey, kid, alg string) (JWK, error) {
	j, err := thumbprintMembers(pub)
	if err != nil {
		return JWK{}, err
	}
	j.Use, j.Alg, j.KID = "sig", alg, kid
	return j, nil
}

func thumbprintMembers(pub crypto.PublicKey) (JWK, error) {
	b64 := base64.RawURLEncoding.EncodeToString
	switch p := pub.(type) {
	case *ecdsa.PublicKey:
		if p.Curve != elliptic.P256() {
			return JWK{}, fmt.Errorf("unsupported curve %s", p.Curve.Params().Name)
		}
		raw, err := p.Bytes() // uncompressed point: 0x04 || X || Y
		if err != nil {
			return JWK{}, err
		}
		return JWK{Kty: "EC", Crv: "P-256", X: b64(raw[1:33]), Y: b64(raw[33:65])}, nil
	case *rsa.PublicKey:
		return JWK{Kty: "RSA", N: b64(p.N.Bytes()), E: b64(big.NewInt(int64(p.E)).Bytes())}, nil
	case ed25519.PublicKey:
		return JWK{Kty: "OKP", Crv: "Ed25519", X: b64(p)}, nil
	default:
		return JWK{}, fmt.Errorf("unsupported public key type %T", pub)
	}
}

// Thumbprint is the RFC 7638 JWK thumbprint (SHA-256, base64url), used as
// kid: stable for a key, and it reveals nothing but the public key.
func Thumbprint(pub crypto.PublicKey) (string, error) {
	j, err := thumbprintMembers(pub)
	if err != nil {
		return "", err
	}
	// RFC 7638 §3.2: required members only, lexicographic order, no spaces.
	var canon string
	switch j.Kty {
	case "EC":
		canon = fmt.Sprintf(`{"crv":%q,"kty":"EC","x":%q,"y":%q}`, j.Crv, j.X, j.Y)
	case "RSA":
		canon = fmt.Sprintf(`{"e":%q,"kty":"RSA","n":%q}`, j.E, j.N)
	case "OKP":
		canon = fmt.Sprintf(`{"crv":%q,"kty":"OKP","x":%q}`, j.Crv, j.X)
	}
	sum := sha256.Sum256([]byte(canon))
	return base64.RawURLEncoding.EncodeToString(sum[:]), nil
}
