// Package verify checks keygate access tokens offline: an RFC 9068 JWT is
// accepted only when its signature comes from a known key with the
// algorithm that key is meant for, its header says it is an access token,
// and its issuer, audience and lifetime are right. No call to keygate is
// made per token.
//
// A resource server needs only keygate's issuer URL and its own audience:
//
//	v, err := verify.New(ctx, verify.Options{
//		Issuer:   "https://auth.example.com",
//		Audience: "https://api.example.com",
//	})
//	claims, err := v.Verify(ctx, bearerToken)
//	if errors.Is(err, verify.ErrExpired) { … }
//
// New reads the issuer's RFC 8414 metadata to find the JWKS (or takes
// Options.JWKSURL) and fetches it once; afterwards keys are cached and
// refreshed in the background, following the JWKS's Cache-Control. Both URLs
// must be https except on loopback (or with Options.Insecure). Key locations
// named inside tokens (jku, x5u, jwk headers) are never used.
//
// For HTTP services, Middleware (and ginverify.Middleware for gin) checks
// the bearer token and the scopes a route needs and answers failures per
// RFC 6750.
//
// Checks follow RFC 9068 §4 and RFC 8725: the signature with a key from the
// JWKS, with the one algorithm that key is for (ES256, RS256 or EdDSA; never
// none or HMAC); typ at+jwt; iss equal to the issuer; aud containing the
// audience; exp, nbf and iat within a small leeway; the required claims
// present with numeric dates as numbers; no unknown crit header; tokens at
// most 8 KiB.
//
// A token that names a Token Status List (draft-ietf-oauth-status-list) in
// its status claim is, once everything above has checked out, also looked
// up in that list: keygate sets a key's entry when the key is deleted, and
// Verify then refuses the key's tokens with ErrRevoked. Lists are fetched
// only from under the issuer, signed with the same keys, and cached for
// their ttl; see Options.IgnoreStatus, StatusFailOpen and StatusMaxStale.
package verify

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Reasons a token is refused; Verify's errors wrap exactly one of them.
var (
	ErrMalformed         = errors.New("malformed token")
	ErrTooLarge          = errors.New("token too large")
	ErrWrongType         = errors.New("not an access token (typ is not at+jwt)")
	ErrUnknownKey        = errors.New("unknown signing key")
	ErrAlgorithm         = errors.New("algorithm not allowed for this key")
	ErrSignature         = errors.New("bad signature")
	ErrExpired           = errors.New("token expired")
	ErrNotYetValid       = errors.New("token not valid yet")
	ErrIssuedInFuture    = errors.New("token issued in the future")
	ErrWrongIssuer       = errors.New("wrong issuer")
	ErrWrongAudience     = errors.New("wrong audience")
	ErrMissingClaim      = errors.New("required claim missing")
	ErrKeysUnavailable   = errors.New("verification keys unavailable")
	ErrInsufficientScope = errors.New("insufficient scope")
	// ErrRevoked: the token's entry in its status list is INVALID (the
	// key was deleted, its secret ended) or any status but VALID and
	// SUSPENDED.
	ErrRevoked = errors.New("token revoked (status list)")
	// ErrSuspended: the token's entry in its status list is SUSPENDED
	// (0x02): its key is suspended. Unlike a revocation it may end — a
	// resumed key's unexpired tokens are VALID again — so it is refused
	// now and may be accepted later.
	ErrSuspended = errors.New("token suspended (status list)")
	// ErrStatusUnavailable: the token names a status list that cannot be
	// fetched, does not check out, or has been stale too long, and
	// Options.StatusFailOpen is not set.
	ErrStatusUnavailable = errors.New("token status list unavailable")
)

// MaxTokenSize bounds what Verify will parse; keygate's tokens are well
// under 2 KiB, and an unbounded input is an easy way to burn CPU.
const MaxTokenSize = 8 << 10

// KeySource yields the public key for a kid together with the one JWS
// algorithm that key may be used with.
type KeySource interface {
	VerificationKey(ctx context.Context, kid string) (key crypto.PublicKey, alg string, err error)
}

// Options configures a Verifier. Issuer and Audience are required; every
// other zero value means the documented default.
type Options struct {
	// Issuer must equal the token's iss exactly. Unless JWKSURL or Keys is
	// set, the JWKS location is discovered from the issuer's metadata.
	Issuer string
	// Audience must be one of the token's aud values.
	Audience string
	// OtherAudiences are accepted besides Audience: a resource server
	// known by several names, or keygate itself, which checks tokens of
	// every audience its keys may be given.
	OtherAudiences []string

	// JWKSURL skips discovery and fetches keys from this URL.
	JWKSURL string
	// Keys, when set, supplies keys directly; no JWKS is fetched (status
	// lists still are, unless IgnoreStatus). keygate uses this to check
	// admin tokens against its own keys.
	Keys KeySource
	// HTTPClient fetches metadata, keys and status lists. Nil means a
	// client with a 10-second timeout per request. Redirects are never
	// followed, whichever client is used.
	HTTPClient *http.Client
	// Insecure allows http:// for the issuer, JWKS and status lists on
	// hosts other than loopback. Only for tests and closed networks.
	Insecure bool
	// MinRefreshInterval is the least time between two fetches caused by
	// tokens with an unknown kid, or by status indices beyond the cached
	// status list; it also caps the time between retries of a status list
	// that could not be fetched. Zero means 30s.
	MinRefreshInterval time.Duration
	// MaxStale is how long past its cache lifetime the last good key set is
	// still used while keygate cannot be reached; after that Verify fails
	// with ErrKeysUnavailable. Zero means 1h; negative means no limit.
	MaxStale time.Duration

	// IgnoreStatus turns off Token Status List checks: the status claim is
	// not read and no list is fetched, so a deleted key's tokens are
	// accepted until they expire. By default a token that names a status
	// list is refused (ErrRevoked) unless its entry there is VALID (0).
	IgnoreStatus bool
	// StatusFailOpen accepts a token whose status cannot be established
	// (the list cannot be fetched, does not verify, or is older than its
	// ttl plus StatusMaxStale) instead of refusing it with
	// ErrStatusUnavailable. The risk: while keygate is unreachable, or
	// whenever someone can make the list fetch fail, tokens of deleted keys
	// are accepted until they expire. A list that does say "revoked" is
	// always obeyed.
	StatusFailOpen bool
	// StatusMaxStale is how long past its ttl the last good status list is
	// still used while it cannot be refreshed; after that Verify fails with
	// ErrStatusUnavailable (or accepts, with StatusFailOpen). Zero means
	// 5m; negative means not at all: past its ttl only a fresh list will do.
	StatusMaxStale time.Duration
	// StatusDefaultTTL is how long a status list without a ttl claim is
	// cached. Zero (or negative) means 60s. A list's ttl, or this, is
	// clamped to [1s, 24h].
	StatusDefaultTTL time.Duration

	// CacheSize is how many verified tokens the Verifier remembers, so
	// that a token it has accepted before is accepted again without a
	// signature check: microseconds instead of tens of them (cache.go says
	// what is still checked on every call: the key, exp, nbf, iat, the
	// status list). Zero means DefaultCacheSize; negative turns the cache
	// off.
	CacheSize int

	// Leeway tolerates clock skew on exp, nbf and iat (of tokens and of
	// status lists). Zero means 30s; negative means none.
	Leeway time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Claims are the verified contents of an access token.
type Claims struct {
	Issuer    string
	Subject   string
	ClientID  string
	TeamID    string
	Audience  []string
	Scopes    []string
	ExpiresAt time.Time
	IssuedAt  time.Time
	NotBefore time.Time
	ID        string
	// StatusIndex is the token's index in its Token Status List (the
	// status claim's idx), 0 when the token names none. For keygate it
	// names, with StatusList, the secret generation the token was minted
	// with: keygate's lists are shards, and idx counts within its shard.
	StatusIndex int64
	// StatusList is the uri of that list (the status claim's uri), ""
	// when the token names none.
	StatusList string
	// Actor is the sub of the token's act claim (RFC 8693 §4.1): the
	// person acting through a delegated token (keygate's console sessions
	// and exchanged tokens name the user), "" when the token has none.
	Actor string
	// SessionID is the sid claim: keygate's console-session and exchanged
	// management tokens name the revocable session record behind them.
	SessionID string
}

// HasScope reports whether the token grants scope.
func (c *Claims) HasScope(scope string) bool {
	for _, s := range c.Scopes {
		if s == scope {
			return true
		}
	}
	return false
}

// Verifier checks tokens. It is safe for concurrent use.
type Verifier struct {
	opts   Options
	parser *jwt.Parser
	status *statusLists // nil with IgnoreStatus
	cache  *tokenCache  // nil with a negative CacheSize
}

// New returns a Verifier for opts. Unless Options.Keys is set it discovers
// and fetches the JWKS, so an unreachable or misconfigured issuer is
// reported here, at start-up, rather than on the first request. ctx bounds
// that start-up work only.
func New(ctx context.Context, opts Options) (*Verifier, error) {
	if opts.Issuer == "" || opts.Audience == "" {
		return nil, errors.New("verify: Issuer and Audience are required")
	}
	if opts.Leeway == 0 {
		opts.Leeway = 30 * time.Second
	} else if opts.Leeway < 0 {
		opts.Leeway = 0
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.MinRefreshInterval <= 0 {
		opts.MinRefreshInterval = 30 * time.Second
	}
	// One client for keys and status lists; with caller-supplied Keys it
	// still fetches status lists.
	client := fetchClient(opts.HTTPClient)
	if opts.Keys == nil {
		keys, err := newRemoteKeys(ctx, opts, client)
		if err != nil {
			return nil, err
		}
		opts.Keys = keys
	}
	v := &Verifier{
		opts: opts,
		// Time, issuer and audience are checked by hand below so that each
		// failure maps to its own error; the parser only handles the JWS.
		parser: jwt.NewParser(
			jwt.WithValidMethods(allowedAlgs),
			jwt.WithoutClaimsValidation(),
			jwt.WithStrictDecoding(),
		),
	}
	if !opts.IgnoreStatus {
		v.status = newStatusLists(v, client)
	}
	v.cache = newTokenCache(opts.CacheSize)
	return v, nil
}

func newRemoteKeys(ctx context.Context, opts Options, client *http.Client) (*remoteKeys, error) {
	jwksURL := opts.JWKSURL
	if jwksURL == "" {
		iss, err := checkFetchURL("issuer", opts.Issuer, opts.Insecure)
		if err != nil {
			return nil, err
		}
		if jwksURL, err = discover(ctx, client, iss, opts.Insecure); err != nil {
			return nil, err
		}
	} else if _, err := checkFetchURL("JWKSURL", jwksURL, opts.Insecure); err != nil {
		return nil, err
	}
	r := &remoteKeys{
		url:         jwksURL,
		client:      client,
		now:         opts.Now,
		minInterval: opts.MinRefreshInterval,
		maxStale:    opts.MaxStale,
		flight:      flight{now: opts.Now},
	}
	if r.minInterval <= 0 {
		r.minInterval = 30 * time.Second
	}
	if r.maxStale == 0 {
		r.maxStale = time.Hour
	}
	if err := r.refresh(ctx, true); err != nil {
		return nil, fmt.Errorf("verify: fetch keys: %w", err)
	}
	return r, nil
}

type tokenClaims struct {
	jwt.RegisteredClaims
	// These shadow RegisteredClaims' fields so that numeric dates must be
	// JSON numbers (RFC 7519 §2); golang-jwt also accepts numeric strings.
	ExpiresAt *numericDate `json:"exp,omitempty"`
	NotBefore *numericDate `json:"nbf,omitempty"`
	IssuedAt  *numericDate `json:"iat,omitempty"`
	ClientID  string       `json:"client_id"`
	Scope     string       `json:"scope"`
	TeamID    string       `json:"team_id"`
	Act       *actClaim    `json:"act,omitempty"`
	SessionID string       `json:"sid,omitempty"`
	// Status is checked (statuslist.go) only after everything else.
	Status json.RawMessage `json:"status,omitempty"`
}

// actClaim is RFC 8693 §4.1's actor; only its sub is read (a nested act,
// a chain of earlier actors, is informational and ignored).
type actClaim struct {
	Subject string `json:"sub"`
}

type numericDate struct{ jwt.NumericDate }

func (d *numericDate) UnmarshalJSON(b []byte) error {
	if len(b) == 0 || !(b[0] == '-' || '0' <= b[0] && b[0] <= '9') {
		return errors.New("NumericDate must be a JSON number")
	}
	return d.NumericDate.UnmarshalJSON(b)
}

// Verify checks token and returns its claims, or an error wrapping one of
// the Err* reasons.
func (v *Verifier) Verify(ctx context.Context, token string) (*Claims, error) {
	if len(token) > MaxTokenSize {
		return nil, ErrTooLarge
	}
	var h [sha256.Size]byte
	if v.cache != nil {
		h = sha256.Sum256([]byte(token))
		if c, err, ok := v.cached(ctx, &h); ok {
			return c, err
		}
	}
	var tc tokenClaims
	var used usedKey
	if err := v.parseJWS(ctx, token, &tc, isAccessTokenType, ErrWrongType, &used); err != nil {
		return nil, err
	}
	c, err := v.checkClaims(&tc)
	if err != nil {
		return nil, err
	}
	// Only now, with the signature and every claim checked, may the token
	// make this verifier fetch anything.
	var statusURI string
	var statusIdx uint64
	if v.status != nil && tc.Status != nil {
		if err := v.status.check(ctx, tc.Status); err != nil {
			return nil, err
		}
		statusURI, statusIdx, _ = parseStatusClaim(tc.Status) // checked just now
	}
	if v.cache != nil {
		v.remember(&h, c, used.kid, used.key, used.alg, statusURI, statusIdx)
	}
	return c, nil
}

// parseJWS checks a compact JWS — its characters, its header (typ as
// typeOK wants, else wrongType; no crit; a kid) and its signature with the
// KeySource's key for the kid, with that key's one algorithm — and decodes
// its payload into claims. Errors wrap one of the Err* reasons (or are
// wrongType).
// usedKey is the key a JWS was verified with.
type usedKey struct {
	kid string
	key crypto.PublicKey
	alg string
}

func (v *Verifier) parseJWS(ctx context.Context, token string, claims jwt.Claims, typeOK func(string) bool, wrongType error, used *usedKey) error {
	// RFC 7515 §7.1: base64url segments and dots, nothing else; base64
	// decoding would skip CR and LF, giving one token many spellings.
	for i := 0; i < len(token); i++ {
		if c := token[i]; !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_' || c == '.') {
			return fmt.Errorf("%w: byte %d is neither base64url nor a dot", ErrMalformed, i)
		}
	}
	var keyErr error
	tok, err := v.parser.ParseWithClaims(token, claims, func(t *jwt.Token) (any, error) {
		typ, _ := t.Header["typ"].(string)
		if !typeOK(typ) {
			keyErr = wrongType
			return nil, keyErr
		}
		if _, ok := t.Header["crit"]; ok {
			keyErr = fmt.Errorf("%w: crit header not understood", ErrMalformed)
			return nil, keyErr
		}
		kid, _ := t.Header["kid"].(string)
		if kid == "" {
			keyErr = fmt.Errorf("%w: no kid", ErrUnknownKey)
			return nil, keyErr
		}
		key, alg, err := v.opts.Keys.VerificationKey(ctx, kid)
		if err != nil {
			keyErr = err
			return nil, err
		}
		if t.Method.Alg() != alg || !keyFits(key, alg) {
			keyErr = ErrAlgorithm
			return nil, keyErr
		}
		if used != nil {
			*used = usedKey{kid: kid, key: key, alg: alg}
		}
		return key, nil
	})
	if err != nil {
		switch {
		case keyErr != nil:
			return keyErr
		case tok != nil && tok.Method != nil && !allowedAlg(tok.Header["alg"]):
			// "none", HS256 and friends stop here, before any key is used.
			return fmt.Errorf("%w: %v", ErrAlgorithm, tok.Header["alg"])
		case errors.Is(err, jwt.ErrTokenSignatureInvalid):
			return ErrSignature
		case errors.Is(err, jwt.ErrTokenUnverifiable), errors.Is(err, jwt.ErrSignatureInvalid):
			return fmt.Errorf("%w: %v", ErrAlgorithm, err)
		default:
			return fmt.Errorf("%w: %v", ErrMalformed, err)
		}
	}
	return nil
}

func (v *Verifier) checkClaims(tc *tokenClaims) (*Claims, error) {
	now := v.opts.Now()
	leeway := v.opts.Leeway
	// RFC 9068 §2.2 required claims, checked in a fixed order so the error
	// is deterministic.
	for _, c := range []struct {
		name    string
		missing bool
	}{
		{"iss", tc.Issuer == ""}, {"exp", tc.ExpiresAt == nil}, {"aud", len(tc.Audience) == 0},
		{"sub", tc.Subject == ""}, {"client_id", tc.ClientID == ""}, {"iat", tc.IssuedAt == nil}, {"jti", tc.ID == ""},
	} {
		if c.missing {
			return nil, fmt.Errorf("%w: %s", ErrMissingClaim, c.name)
		}
	}
	if tc.Issuer != v.opts.Issuer {
		return nil, ErrWrongIssuer
	}
	audOK := false
	for _, a := range tc.Audience {
		if a == v.opts.Audience || slices.Contains(v.opts.OtherAudiences, a) {
			audOK = true
		}
	}
	if !audOK {
		return nil, ErrWrongAudience
	}
	if !now.Before(tc.ExpiresAt.Add(leeway)) {
		return nil, ErrExpired
	}
	if tc.NotBefore != nil && now.Add(leeway).Before(tc.NotBefore.Time) {
		return nil, ErrNotYetValid
	}
	if now.Add(leeway).Before(tc.IssuedAt.Time) {
		return nil, ErrIssuedInFuture
	}
	c := &Claims{
		Issuer:    tc.Issuer,
		Subject:   tc.Subject,
		ClientID:  tc.ClientID,
		TeamID:    tc.TeamID,
		Audience:  tc.Audience,
		Scopes:    strings.Fields(tc.Scope),
		ExpiresAt: tc.ExpiresAt.Time,
		IssuedAt:  tc.IssuedAt.Time,
		ID:        tc.ID,
		SessionID: tc.SessionID,
	}
	if tc.Act != nil {
		c.Actor = tc.Act.Subject
	}
	if tc.NotBefore != nil {
		c.NotBefore = tc.NotBefore.Time
	}
	if tc.Status != nil {
		// A malformed claim is refused by the status check (unless
		// IgnoreStatus); here it just names no index.
		if uri, idx, err := parseStatusClaim(tc.Status); err == nil {
			c.StatusIndex, c.StatusList = int64(idx), uri
		}
	}
	return c, nil
}

var allowedAlgs = []string{"ES256", "RS256", "EdDSA"}

func allowedAlg(alg any) bool {
	s, _ := alg.(string)
	for _, a := range allowedAlgs {
		if s == a {
			return true
		}
	}
	return false
}

// isAccessTokenType accepts "at+jwt" and "application/at+jwt", any case
// (RFC 9068 §4, RFC 7515 §4.1.9).
func isAccessTokenType(typ string) bool {
	typ = strings.ToLower(typ)
	return typ == "at+jwt" || typ == "application/at+jwt"
}

// keyFits makes sure the algorithm matches the key's type, so that an RSA
// public key can never be used as an HMAC secret and vice versa.
func keyFits(key crypto.PublicKey, alg string) bool {
	switch key.(type) {
	case *ecdsa.PublicKey:
		return alg == "ES256"
	case *rsa.PublicKey:
		return alg == "RS256"
	case ed25519.PublicKey:
		return alg == "EdDSA"
	}
	return false
}
