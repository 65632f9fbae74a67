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
package verify

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"errors"
	"fmt"
	"net/http"
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

	// JWKSURL skips discovery and fetches keys from this URL.
	JWKSURL string
	// Keys, when set, supplies keys directly; nothing is fetched. keygate
	// uses this to check admin tokens against its own keys.
	Keys KeySource
	// HTTPClient fetches metadata and keys. Nil means a client that follows
	// no redirects, with a 10-second timeout per request.
	HTTPClient *http.Client
	// Insecure allows http:// for the issuer and JWKS on hosts other than
	// loopback. Only for tests and closed networks.
	Insecure bool
	// MinRefreshInterval is the least time between two fetches caused by
	// tokens with an unknown kid. Zero means 30s.
	MinRefreshInterval time.Duration
	// MaxStale is how long past its cache lifetime the last good key set is
	// still used while keygate cannot be reached; after that Verify fails
	// with ErrKeysUnavailable. Zero means 1h; negative means no limit.
	MaxStale time.Duration

	// Leeway tolerates clock skew on exp, nbf and iat. Zero means 30s;
	// negative means none.
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
	if opts.Keys == nil {
		keys, err := newRemoteKeys(ctx, opts)
		if err != nil {
			return nil, err
		}
		opts.Keys = keys
	}
	return &Verifier{
		opts: opts,
		// Time, issuer and audience are checked by hand below so that each
		// failure maps to its own error; the parser only handles the JWS.
		parser: jwt.NewParser(
			jwt.WithValidMethods(allowedAlgs),
			jwt.WithoutClaimsValidation(),
			jwt.WithStrictDecoding(),
		),
	}, nil
}

func newRemoteKeys(ctx context.Context, opts Options) (*remoteKeys, error) {
	client := opts.HTTPClient
	if client == nil {
		client = &http.Client{Timeout: fetchTimeout}
	} else {
		c := *client // the caller's client stays as it is
		client = &c
	}
	// Never follow redirects, whoever built the client: a key location is
	// configuration, and a redirect could lead off https.
	client.CheckRedirect = noRedirects
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
	// RFC 7515 §7.1: base64url segments and dots, nothing else; base64
	// decoding would skip CR and LF, giving one token many spellings.
	for i := 0; i < len(token); i++ {
		if c := token[i]; !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_' || c == '.') {
			return nil, fmt.Errorf("%w: byte %d is neither base64url nor a dot", ErrMalformed, i)
		}
	}
	var tc tokenClaims
	var keyErr error
	tok, err := v.parser.ParseWithClaims(token, &tc, func(t *jwt.Token) (any, error) {
		typ, _ := t.Header["typ"].(string)
		if !isAccessTokenType(typ) {
			keyErr = ErrWrongType
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
		return key, nil
	})
	if err != nil {
		switch {
		case keyErr != nil:
			return nil, keyErr
		case tok != nil && tok.Method != nil && !allowedAlg(tok.Header["alg"]):
			// "none", HS256 and friends stop here, before any key is used.
			return nil, fmt.Errorf("%w: %v", ErrAlgorithm, tok.Header["alg"])
		case errors.Is(err, jwt.ErrTokenSignatureInvalid):
			return nil, ErrSignature
		case errors.Is(err, jwt.ErrTokenUnverifiable), errors.Is(err, jwt.ErrSignatureInvalid):
			return nil, fmt.Errorf("%w: %v", ErrAlgorithm, err)
		default:
			return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
		}
	}
	return v.checkClaims(&tc)
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
		if a == v.opts.Audience {
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
	}
	if tc.NotBefore != nil {
		c.NotBefore = tc.NotBefore.Time
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
