// Package verify checks keygate access tokens offline: an RFC 9068 JWT is
// accepted only when its signature comes from a known key with the
// algorithm that key is meant for, its header says it is an access token,
// and its issuer, audience and lifetime are right. No call to keygate is
// made per token.
//
// A Verifier needs to know where its keys come from (Options.Keys). keygate
// itself verifies admin tokens on its management API against its own
// in-memory key set this way.
//
//	v, err := verify.New(ctx, verify.Options{
//		Issuer:   "https://auth.example.com",
//		Audience: "https://api.example.com",
//		Keys:     keys,
//	})
//	claims, err := v.Verify(ctx, bearerToken)
//	if errors.Is(err, verify.ErrExpired) { … }
package verify

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"errors"
	"fmt"
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

// Options configures a Verifier. Issuer, Audience and Keys are required.
type Options struct {
	// Issuer must equal the token's iss exactly.
	Issuer string
	// Audience must be one of the token's aud values.
	Audience string
	// Keys supplies verification keys by kid.
	Keys KeySource
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

// New returns a Verifier for opts.
func New(_ context.Context, opts Options) (*Verifier, error) {
	if opts.Issuer == "" || opts.Audience == "" {
		return nil, errors.New("verify: Issuer and Audience are required")
	}
	if opts.Keys == nil {
		return nil, errors.New("verify: Keys is required")
	}
	if opts.Leeway == 0 {
		opts.Leeway = 30 * time.Second
	} else if opts.Leeway < 0 {
		opts.Leeway = 0
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &Verifier{
		opts: opts,
		// Time, issuer and audience are checked by hand below so that each
		// failure maps to its own error; the parser only handles the JWS.
		parser: jwt.NewParser(
			jwt.WithValidMethods(allowedAlgs),
			jwt.WithoutClaimsValidation(),
			jwt.WithJSONNumber(),
		),
	}, nil
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
