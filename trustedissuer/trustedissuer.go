// Package trustedissuer verifies the subject tokens of RFC 8693 token
// exchange: JWTs that a trusted identity provider (config's
// trusted_issuers) issued to one of a platform's users, which a client
// holding token_exchange trades for a team-bound management token
// (server/exchange.go).
//
// A subject token is verified as strictly as package verify verifies
// keygate's own: the signature with a key from the issuer's JWKS (fetched
// from its jwks_uri only), the algorithm taken from that key and allowed
// for the issuer, iss exact, aud, exp required and in the future, nbf and
// iat sane. Then the team and user claims must name a team the issuer may
// name and a user keygate can record.
//
// Keys are fetched lazily, on the first exchange that needs them, never at
// start: an unreachable identity provider refuses exchanges
// (ErrUnavailable) and nothing else.
package trustedissuer

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/golang-jwt/jwt/v5"

	"github.com/keygate/keygate/apikey"
	"github.com/keygate/keygate/config"
)

// Bounds of fetching an issuer's keys.
const (
	// MaxJWKSBytes bounds a JWKS body: a provider's set is a few KiB.
	MaxJWKSBytes = 1 << 20
	// FetchTimeout bounds one fetch, connection to last byte.
	FetchTimeout = 5 * time.Second
	// RefetchInterval is the least time between two fetches of one
	// issuer's keys, whatever the tokens presented: a stream of tokens with
	// made-up kids costs the provider at most one request per interval.
	RefetchInterval = 30 * time.Second
	// RefreshAfter is the age at which a fetched set is fetched again on
	// its next use, so that a key the provider withdrew stops verifying.
	RefreshAfter = 10 * time.Minute
	// MaxStale is how long a set whose refresh keeps failing is still
	// used; past it, exchanges are refused as unavailable.
	MaxStale = time.Hour
	// Leeway is the clock skew tolerated for nbf and iat. exp gets none:
	// the issued token must not outlive the subject token.
	Leeway = 30 * time.Second
	// MaxTokenBytes bounds a subject token (the token endpoint's body is
	// 8 KiB anyway).
	MaxTokenBytes = 8 << 10
	// minRSABits refuses RSA keys too short to sign anything.
	minRSABits = 2048
)

// The errors of Verify. Every refusal wraps one of them, with a constant
// reason for the log: never a claim's value or the token.
var (
	// ErrInvalid: the subject token is invalid or unacceptable (RFC 8693
	// §2.2.2: invalid_request).
	ErrInvalid = errors.New("subject token refused")
	// ErrUnavailable: the issuer's keys could not be fetched, so the token
	// could not be judged.
	ErrUnavailable = errors.New("trusted issuer's keys unavailable")
)

// Subject is what a verified subject token says.
type Subject struct {
	Issuer    string
	TeamID    string
	User      string
	ExpiresAt time.Time
}

// Options tune a Verifier; zero values are the defaults.
type Options struct {
	// Client fetches JWKS; nil is a client of FetchTimeout. Redirects are
	// never followed, whichever client.
	Client *http.Client
	// Now is the clock; nil is time.Now.
	Now    func() time.Time
	Logger *slog.Logger
}

// Verifier verifies subject tokens of a fixed list of trusted issuers. It
// is safe for concurrent use.
type Verifier struct {
	now     func() time.Time
	log     *slog.Logger
	client  *http.Client
	issuers map[string]*issuer
}

// issuer is one trusted issuer and its cached keys.
type issuer struct {
	cfg  config.TrustedIssuer
	algs []string

	// mu is held while fetching, so concurrent exchanges wait for one
	// fetch instead of each starting its own.
	mu        sync.Mutex
	keys      map[string]publicKey // nil until a fetch succeeded
	fetchedAt time.Time            // of keys
	lastTry   time.Time            // of the last fetch, failed or not
}

type publicKey struct {
	key crypto.PublicKey
	alg string // from the JWK: its kty and crv, or its alg for RSA
}

// New returns a Verifier of list, which config has validated. It fetches
// nothing.
func New(list []config.TrustedIssuer, opts Options) *Verifier {
	v := &Verifier{now: opts.Now, log: opts.Logger, issuers: map[string]*issuer{}}
	if v.now == nil {
		v.now = time.Now
	}
	if v.log == nil {
		v.log = slog.New(slog.DiscardHandler)
	}
	c := http.Client{Timeout: FetchTimeout}
	if opts.Client != nil {
		c = *opts.Client
	}
	// A redirect could lead the fetch anywhere; jwks_uri is the only
	// place keys come from.
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	v.client = &c
	for _, ti := range list {
		algs := ti.Algorithms
		if algs == nil {
			algs = config.DefaultTrustedIssuerAlgorithms
		}
		v.issuers[ti.Issuer] = &issuer{cfg: ti, algs: slices.Clone(algs)}
	}
	return v
}

// Len is the number of trusted issuers.
func (v *Verifier) Len() int { return len(v.issuers) }

func invalid(reason string) error { return fmt.Errorf("%w: %s", ErrInvalid, reason) }

// Verify verifies token for the client clientID (which must be among the
// issuer's clients when it names some) and returns its subject. Errors wrap
// ErrInvalid or ErrUnavailable.
func (v *Verifier) Verify(ctx context.Context, token, clientID string) (Subject, error) {
	if len(token) > MaxTokenBytes {
		return Subject{}, invalid("token too long")
	}
	// The unverified header and iss only choose the issuer and the key;
	// everything is verified below with that key.
	unverified, _, err := jwt.NewParser().ParseUnverified(token, jwt.MapClaims{})
	if err != nil {
		return Subject{}, invalid("not a JWS compact serialization")
	}
	iss, _ := unverified.Claims.(jwt.MapClaims)["iss"].(string)
	is, ok := v.issuers[iss]
	if !ok {
		return Subject{}, invalid("issuer not trusted")
	}
	if is.cfg.Clients != nil && !slices.Contains(is.cfg.Clients, clientID) {
		return Subject{}, invalid("client may not exchange this issuer's tokens")
	}
	alg, _ := unverified.Header["alg"].(string)
	if !slices.Contains(is.algs, alg) {
		// alg none and HS* end here, before any fetch.
		return Subject{}, invalid("algorithm not allowed for this issuer")
	}
	kid, _ := unverified.Header["kid"].(string)
	if kid == "" {
		return Subject{}, invalid("no kid in the header")
	}
	pk, err := v.key(ctx, is, kid)
	if err != nil {
		return Subject{}, err
	}
	if pk.alg != alg || !slices.Contains(is.algs, pk.alg) {
		return Subject{}, invalid("algorithm does not match the key")
	}

	now := v.now()
	p := jwt.NewParser(
		jwt.WithValidMethods([]string{pk.alg}),
		jwt.WithIssuer(is.cfg.Issuer),
		jwt.WithAudience(is.cfg.Audience),
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(),
		jwt.WithLeeway(Leeway),
		jwt.WithTimeFunc(func() time.Time { return now }),
	)
	claims := jwt.MapClaims{}
	if _, err := p.ParseWithClaims(token, claims, func(*jwt.Token) (any, error) { return pk.key, nil }); err != nil {
		return Subject{}, invalid(parseReason(err))
	}
	exp, err := claims.GetExpirationTime()
	if err != nil || exp == nil || !exp.After(now) {
		// The parser allowed Leeway; the issued token may not outlive the
		// subject token, so an expired one is refused outright.
		return Subject{}, invalid("expired")
	}
	team, ok := claims[is.cfg.TeamClaim].(string)
	if !ok {
		return Subject{}, invalid("team claim missing or not a string")
	}
	if !apikey.ValidTeamID(team) || !slices.ContainsFunc(is.cfg.Teams, func(p string) bool { return strings.HasPrefix(team, p) }) {
		return Subject{}, invalid("team claim names a team this issuer may not name")
	}
	rawUser, ok := claims[is.cfg.UserClaim].(string)
	if !ok {
		return Subject{}, invalid("user claim missing or not a string")
	}
	user, err := apikey.ValidateName(rawUser)
	if err != nil {
		return Subject{}, invalid("user claim is not 1–64 printable characters")
	}
	return Subject{Issuer: is.cfg.Issuer, TeamID: team, User: user, ExpiresAt: exp.Time}, nil
}

// parseReason names which check of golang-jwt's failed, for the log.
func parseReason(err error) string {
	switch {
	case errors.Is(err, jwt.ErrTokenSignatureInvalid):
		return "bad signature"
	case errors.Is(err, jwt.ErrTokenInvalidIssuer):
		return "wrong issuer"
	case errors.Is(err, jwt.ErrTokenInvalidAudience):
		return "wrong audience"
	case errors.Is(err, jwt.ErrTokenRequiredClaimMissing):
		return "no exp"
	case errors.Is(err, jwt.ErrTokenExpired):
		return "expired"
	case errors.Is(err, jwt.ErrTokenNotValidYet):
		return "not valid yet (nbf)"
	case errors.Is(err, jwt.ErrTokenUsedBeforeIssued):
		return "issued in the future (iat)"
	case errors.Is(err, jwt.ErrTokenUnverifiable):
		return "unverifiable"
	}
	return "malformed"
}

// key returns the issuer's key kid, fetching the set when it was never
// fetched, is older than RefreshAfter or lacks kid — at most once per
// RefetchInterval.
func (v *Verifier) key(ctx context.Context, is *issuer, kid string) (publicKey, error) {
	is.mu.Lock()
	defer is.mu.Unlock()
	now := v.now()
	pk, known := is.keys[kid]
	due := is.keys == nil || !known || now.Sub(is.fetchedAt) >= RefreshAfter
	if due && (is.lastTry.IsZero() || now.Sub(is.lastTry) >= RefetchInterval) {
		is.lastTry = now
		// The fetch outlives a client that hangs up: its result serves the
		// next exchange, and a cancelled fetch would spend the interval.
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), FetchTimeout)
		keys, err := v.fetch(fctx, is.cfg.JWKSURI)
		cancel()
		if err != nil {
			v.log.Warn("trusted issuer: cannot fetch its keys", "issuer", is.cfg.Issuer, "jwks_uri", is.cfg.JWKSURI, "err", err)
		} else {
			is.keys, is.fetchedAt = keys, now
			pk, known = keys[kid]
		}
	}
	switch {
	case is.keys == nil || now.Sub(is.fetchedAt) >= MaxStale:
		return publicKey{}, fmt.Errorf("%w: issuer %s", ErrUnavailable, is.cfg.Issuer)
	case !known:
		return publicKey{}, invalid("unknown kid")
	}
	return pk, nil
}

// fetch reads a JWKS from uri: one GET, no redirects, a 200, at most
// MaxJWKSBytes. Keys it cannot use (no kid, not for signatures, symmetric,
// private, of an unknown type, a kid given twice) are left out.
func (v *Verifier) fetch(ctx context.Context, uri string) (map[string]publicKey, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, uri, nil)
	if err != nil {
		return nil, fmt.Errorf("jwks request: %w", err)
	}
	req.Header.Set("Accept", "application/jwk-set+json, application/json")
	resp, err := v.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("jwks fetch: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("jwks fetch: status %d (redirects are not followed)", resp.StatusCode)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, MaxJWKSBytes+1))
	if err != nil {
		return nil, fmt.Errorf("jwks read: %w", err)
	}
	if len(body) > MaxJWKSBytes {
		return nil, fmt.Errorf("jwks larger than %d bytes", MaxJWKSBytes)
	}
	return parseJWKS(body)
}

func parseJWKS(body []byte) (map[string]publicKey, error) {
	var set struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(body, &set); err != nil || set.Keys == nil {
		return nil, errors.New("jwks: not a JSON Web Key Set")
	}
	keys := map[string]publicKey{}
	twice := map[string]bool{}
	for _, raw := range set.Keys {
		var k jose.JSONWebKey
		if err := k.UnmarshalJSON(raw); err != nil || k.KeyID == "" || (k.Use != "" && k.Use != "sig") || !k.IsPublic() {
			continue
		}
		alg, ok := algOf(k)
		if !ok {
			continue
		}
		if _, dup := keys[k.KeyID]; dup || twice[k.KeyID] {
			// Which of two keys a kid means is the provider's mistake;
			// neither verifies.
			delete(keys, k.KeyID)
			twice[k.KeyID] = true
			continue
		}
		keys[k.KeyID] = publicKey{key: k.Key, alg: alg}
	}
	return keys, nil
}

// algOf is the one algorithm a public JWK verifies: fixed by the curve for
// EC and OKP keys (an alg member must agree), the alg member or RS256 for
// RSA keys.
func algOf(k jose.JSONWebKey) (string, bool) {
	switch key := k.Key.(type) {
	case *ecdsa.PublicKey:
		var alg string
		switch key.Curve {
		case elliptic.P256():
			alg = "ES256"
		case elliptic.P384():
			alg = "ES384"
		case elliptic.P521():
			alg = "ES512"
		default:
			return "", false
		}
		return alg, k.Algorithm == "" || k.Algorithm == alg
	case *rsa.PublicKey:
		if key.N.BitLen() < minRSABits {
			return "", false
		}
		switch k.Algorithm {
		case "":
			return "RS256", true
		case "RS256", "RS384", "RS512", "PS256", "PS384", "PS512":
			return k.Algorithm, true
		}
		return "", false
	case ed25519.PublicKey:
		return "EdDSA", k.Algorithm == "" || k.Algorithm == "EdDSA" || k.Algorithm == "Ed25519"
	}
	return "", false
}
