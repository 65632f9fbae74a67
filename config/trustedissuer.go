package config

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Trusted issuers: identity providers whose JWTs a client holding the
// token_exchange permission may exchange for a team-bound management token
// (RFC 8693, README "Token exchange"). Verification lives in package
// trustedissuer; this file only reads and checks the settings.

// trustedIssuerFields are the keys of one trusted_issuers entry.
var trustedIssuerFields = []string{"issuer", "jwks_uri", "audience", "team_claim", "user_claim", "teams", "clients", "algorithms"}

// TrustedIssuerAlgorithms are the algorithms a trusted issuer's allowlist
// may name: asymmetric ones only, since the verification key is public (an
// HMAC "signed" with a public key would be a forgery anyone can make).
var TrustedIssuerAlgorithms = []string{"ES256", "ES384", "ES512", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "EdDSA"}

// DefaultTrustedIssuerAlgorithms is the allowlist of an issuer that names
// none: what identity providers sign with in practice.
var DefaultTrustedIssuerAlgorithms = []string{"ES256", "RS256", "EdDSA"}

// TrustedIssuer is one identity provider whose tokens may be exchanged.
// It can only come from the config file (a list does not fit in a flag).
type TrustedIssuer struct {
	// Issuer is the subject token's iss, compared exactly (no trailing
	// slash is added or removed: providers differ on it).
	Issuer string `yaml:"issuer"`
	// JWKSURI is the only place its keys are fetched from: https, or http
	// to a loopback host.
	JWKSURI string `yaml:"jwks_uri"`
	// Audience must be one of the subject token's aud values.
	Audience string `yaml:"audience"`
	// TeamClaim and UserClaim name the claims holding the team ID and the
	// user acting (the issued token's act.sub).
	TeamClaim string `yaml:"team_claim"`
	UserClaim string `yaml:"user_claim"`
	// Teams are team-ID prefixes: the team claim must start with one of
	// them. Required, so that an issuer can never name every team by
	// accident.
	Teams []string `yaml:"teams"`
	// Clients, when set, are the only client IDs that may exchange this
	// issuer's tokens.
	Clients []string `yaml:"clients,omitempty"`
	// Algorithms is the allowlist of signing algorithms; nil means
	// DefaultTrustedIssuerAlgorithms (Validate fills it in).
	Algorithms []string `yaml:"algorithms,omitempty"`

	// where is the config file line the entry came from, for errors.
	where string
}

// teamPrefixPattern is a non-empty prefix of a team ID (apikey.TeamIDRule;
// config cannot import apikey, which imports config).
var teamPrefixPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

// loadTrustedIssuers reads the trusted_issuers list of the config file:
// its shape only; validateTrustedIssuers checks the values.
func (c *Config) loadTrustedIssuers(path string, v *yaml.Node) error {
	if isNull(v) {
		return nil
	}
	if v.Kind != yaml.SequenceNode {
		return fmt.Errorf("config file %s, line %d: want a list of issuers, each with %s", path, v.Line, strings.Join(trustedIssuerFields, ", "))
	}
	list := []TrustedIssuer{}
	for i, e := range v.Content {
		e = deref(e)
		where := fmt.Sprintf("config file %s, line %d", path, e.Line)
		if e.Kind != yaml.MappingNode {
			return fmt.Errorf("trusted_issuers[%d] in %s: want a mapping with %s", i, where, strings.Join(trustedIssuerFields, ", "))
		}
		ti := TrustedIssuer{where: where}
		seen := map[string]bool{}
		for j := 0; j+1 < len(e.Content); j += 2 {
			k, val := e.Content[j], deref(e.Content[j+1])
			at := fmt.Sprintf("config file %s, line %d", path, k.Line)
			if !contains(trustedIssuerFields, k.Value) {
				return fmt.Errorf("trusted_issuers[%d] in %s: unknown field %q; known fields are %s", i, at, k.Value, strings.Join(trustedIssuerFields, ", "))
			}
			if seen[k.Value] {
				return fmt.Errorf("trusted_issuers[%d] in %s: field %q appears twice", i, at, k.Value)
			}
			seen[k.Value] = true
			switch k.Value {
			case "teams", "clients", "algorithms":
				if val.Kind != yaml.SequenceNode {
					return fmt.Errorf("trusted_issuers[%d].%s in %s: want a list, e.g. [a, b]", i, k.Value, at)
				}
				l := []string{}
				for _, x := range val.Content {
					if x = deref(x); x.Kind != yaml.ScalarNode {
						return fmt.Errorf("trusted_issuers[%d].%s in %s: want a list of single values", i, k.Value, at)
					}
					l = append(l, strings.TrimSpace(x.Value))
				}
				switch k.Value {
				case "teams":
					ti.Teams = l
				case "clients":
					ti.Clients = l
				default:
					ti.Algorithms = l
				}
				continue
			}
			if val.Kind != yaml.ScalarNode {
				return fmt.Errorf("trusted_issuers[%d].%s in %s: want a single value", i, k.Value, at)
			}
			s := strings.TrimSpace(val.Value)
			switch k.Value {
			case "issuer":
				ti.Issuer = s
			case "jwks_uri":
				ti.JWKSURI = s
			case "audience":
				ti.Audience = s
			case "team_claim":
				ti.TeamClaim = s
			case "user_claim":
				ti.UserClaim = s
			}
		}
		list = append(list, ti)
	}
	c.TrustedIssuers = list
	return nil
}

func (ti *TrustedIssuer) invalid(field, why string) error {
	if ti.where != "" {
		return fmt.Errorf("invalid %s (%s): %s", field, ti.where, why)
	}
	return fmt.Errorf("invalid %s: %s", field, why)
}

// validateTrustedIssuers checks every entry and fills in the default
// algorithms. c.Issuer must be final: keygate's own issuer is refused, so
// that a keygate token can never be exchanged for a management token.
func (c *Config) validateTrustedIssuers() error {
	seen := map[string]int{}
	for i := range c.TrustedIssuers {
		ti := &c.TrustedIssuers[i]
		name := fmt.Sprintf("trusted_issuers[%d]", i)
		if err := ti.Validate(c.Issuer); err != nil {
			return ti.invalid(name, err.Error())
		}
		if j, dup := seen[ti.Issuer]; dup {
			return ti.invalid(name+".issuer", fmt.Sprintf("trusted_issuers[%d] has the same issuer: name each issuer once", j))
		}
		seen[ti.Issuer] = i
	}
	return nil
}

// Validate checks one trusted issuer against keygate's own issuer and
// fills in the default algorithms. The error names the field at fault.
func (ti *TrustedIssuer) Validate(ownIssuer string) error {
	if !printable(ti.Issuer) {
		return errHint("issuer is required: the exact iss of the provider's tokens")
	}
	if own, ok := canonicalIssuer(strings.ToLower(ownIssuer)); ok {
		if mine, ok := canonicalIssuer(strings.ToLower(ti.Issuer)); ok && own == mine {
			return errHint("issuer " + strconv.Quote(ti.Issuer) + " is keygate's own: its tokens cannot be exchanged for management tokens")
		}
	}
	if err := checkJWKSURI(ti.JWKSURI); err != nil {
		return errHint("jwks_uri " + strconv.Quote(ti.JWKSURI) + " " + err.Error())
	}
	if !printable(ti.Audience) {
		return errHint("audience is required: the aud the provider puts in tokens meant for keygate")
	}
	for _, f := range []struct{ name, v string }{{"team_claim", ti.TeamClaim}, {"user_claim", ti.UserClaim}} {
		if !printable(f.v) {
			return errHint(f.name + " is required: the name of the claim, e.g. org_id or email")
		}
		if reservedClaim(f.v) {
			return errHint(f.name + " " + strconv.Quote(f.v) + " is a registered JWT claim, not one that can name a team or user")
		}
	}
	if ti.TeamClaim == ti.UserClaim {
		return errHint("team_claim and user_claim must be different claims")
	}
	if len(ti.Teams) == 0 {
		return errHint("teams is required: the team-ID prefixes this issuer may name, e.g. [acme-]")
	}
	for _, p := range ti.Teams {
		if !teamPrefixPattern.MatchString(p) {
			return errHint("teams: " + strconv.Quote(p) + " is not a team-ID prefix (1–64 characters of A-Z a-z 0-9 . _ -, starting with a letter or digit)")
		}
	}
	if ti.Clients != nil && len(ti.Clients) == 0 {
		return errHint("clients is empty, so no client could exchange: leave it out to let every client holding token_exchange")
	}
	for _, cl := range ti.Clients {
		if !printable(cl) {
			return errHint("clients: " + strconv.Quote(cl) + " is not a client ID")
		}
	}
	if ti.Algorithms == nil {
		ti.Algorithms = append([]string(nil), DefaultTrustedIssuerAlgorithms...)
	}
	if len(ti.Algorithms) == 0 {
		return errHint("algorithms is empty: leave it out for " + strings.Join(DefaultTrustedIssuerAlgorithms, ", "))
	}
	for k, a := range ti.Algorithms {
		if !canonical(&ti.Algorithms[k], TrustedIssuerAlgorithms) {
			return errHint("algorithms: " + strconv.Quote(a) + " is not allowed; use asymmetric ones: " + strings.Join(TrustedIssuerAlgorithms, ", ") + " (never HS* or none: the key is public)")
		}
	}
	return nil
}

// reservedClaim: claims whose meaning is fixed (RFC 7519 §4.1), which an
// operator must not mistake for a team or a user.
func reservedClaim(name string) bool {
	switch name {
	case "iss", "aud", "exp", "nbf", "iat", "jti":
		return true
	}
	return false
}

// checkJWKSURI accepts an absolute https URL, or http to a loopback host
// (a provider on the same machine, tests): keys fetched in the clear could
// be replaced on the path, and with them every user's identity.
func checkJWKSURI(raw string) error {
	return checkHTTPSURL(raw, "https://idp.example.com/.well-known/jwks.json", "")
}
