package server

// The key policy fields of the management API's key bodies (create and
// PATCH), read one by one with their exact JSON shape. token_quota is the
// first; later policy fields (expiry, audiences, source addresses…) join
// here and in apikey.NewKey / apikey.KeyChange the same way: a decoder
// here for the JSON shape, a Check… in apikey/rules.go for the rules.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/keygate/keygate/apikey"
	"github.com/keygate/keygate/config"

	"github.com/keygate/keygate/quota"
	"github.com/keygate/keygate/store"
)

// tokenQuotaFields are the members of a token_quota object.
var tokenQuotaFields = []string{"limit", "per", "mode"}

// tokenQuotaView is a key's token_quota in its JSON: null when the key has
// none of its own.
type tokenQuotaView struct {
	Limit int64  `json:"limit"`
	Per   string `json:"per"`
	Mode  string `json:"mode"`
}

func viewTokenQuota(q store.TokenQuota) *tokenQuotaView {
	if q.IsZero() {
		return nil
	}
	return &tokenQuotaView{Limit: q.Limit, Per: q.Per, Mode: q.Mode}
}

// decodeTokenQuota reads a token_quota member: an object with "limit" (a
// whole number) and "per" (a string), and optionally "mode" (a string,
// default "enforce"), each named exactly so; JSON null is the zero Policy
// (none of the key's own). The values' ranges are apikey.CheckTokenQuota's.
// A non-empty string is the problem's detail.
func decodeTokenQuota(raw json.RawMessage) (quota.Policy, string) {
	const shape = `"token_quota" must be null or an object such as {"limit": 1000, "per": "hour", "mode": "enforce"}`
	raw = bytes.TrimSpace(raw)
	if string(raw) == "null" {
		return quota.Policy{}, ""
	}
	var members map[string]json.RawMessage
	if len(raw) == 0 || raw[0] != '{' || json.Unmarshal(raw, &members) != nil {
		return quota.Policy{}, shape
	}
	// encoding/json matches names in any case; the API does not.
	// (Duplicates were refused by checkStrictJSON already.)
	for name := range members {
		known := false
		for _, f := range tokenQuotaFields {
			known = known || name == f
		}
		if !known {
			return quota.Policy{}, fmt.Sprintf(`unknown field %q in "token_quota"; it may hold %s`, truncate(name, 80), quotedList(tokenQuotaFields))
		}
	}
	p := quota.Policy{Mode: quota.Enforce}
	lim, ok := members["limit"]
	if !ok {
		return quota.Policy{}, `"token_quota.limit" is required: the number of tokens allowed per window`
	}
	n, err := strconv.ParseInt(string(bytes.TrimSpace(lim)), 10, 64)
	if err != nil {
		return quota.Policy{}, fmt.Sprintf(`"token_quota.limit" must be a whole number from 1 to %d`, quota.MaxLimit)
	}
	p.Limit = n
	per, ok := members["per"]
	if !ok {
		return quota.Policy{}, `"token_quota.per" is required: "hour" or "day"`
	}
	var s string
	if json.Unmarshal(per, &s) != nil {
		return quota.Policy{}, `"token_quota.per" must be a JSON string, "hour" or "day"`
	}
	p.Per = quota.Period(s)
	if m, ok := members["mode"]; ok {
		if json.Unmarshal(m, &s) != nil || string(bytes.TrimSpace(m)) == "null" {
			return quota.Policy{}, `"token_quota.mode" must be a JSON string, "enforce" or "log"`
		}
		p.Mode = quota.Mode(s)
	}
	return p, ""
}

// audienceFor is the aud of a token for key with the granted scope, and
// whether the request's RFC 8707 resource (empty: none sent) may have it.
// A management token's audience is the management API's, and a resource
// may only name that. Otherwise a resource must be one of the key's
// audiences, or, for a key without audiences, the server's audience;
// without a resource the key's first audience, else the server's. It
// allocates nothing: string comparisons over the key's short list.
func (s *Server) audienceFor(key store.Key, scope, resource string) (string, bool) {
	base := s.tokenAudience(scope)
	if base == s.managementAudience() || len(key.Audiences) == 0 {
		return base, resource == "" || resource == base
	}
	if resource == "" {
		return key.Audiences[0], true
	}
	for _, a := range key.Audiences {
		if a == resource {
			return a, true
		}
	}
	return "", false
}

// metadataClaim is the value of a token's "metadata" claim for key: an
// object of the key's metadata members named in metadata_claims, in that
// order, or nil when none applies (the claim is left out). Only operators
// choose what reaches tokens, and under this one claim, so no member can
// pose as a registered or keygate claim. It costs nothing unless both the
// setting and the key's metadata are there, and then a map lookup: each
// distinct metadata's claim is built once (metadataClaims).
func (s *Server) metadataClaim(key store.Key) []byte {
	if len(s.cfg.MetadataClaims) == 0 || len(key.Metadata) == 0 {
		return nil
	}
	return s.metadataClaims.claim(key.Metadata, s.cfg.MetadataClaims)
}

// maxMetadataMemo bounds metadataClaims' memo (distinct metadata values;
// past it the memo starts over).
const maxMetadataMemo = 4096

// metadataClaims memoises the "metadata" claim of each distinct metadata
// value: an immutable map behind an atomic pointer, copied on a miss, so
// the token path takes no lock and, once a key's metadata was seen,
// allocates nothing for it.
type metadataClaims struct {
	memo atomic.Pointer[map[string][]byte]
}

func (m *metadataClaims) claim(metadata []byte, names []string) []byte {
	cur := m.memo.Load()
	if cur != nil {
		if v, ok := (*cur)[string(metadata)]; ok {
			return v
		}
	}
	v := buildMetadataClaim(metadata, names)
	next := make(map[string][]byte, 1)
	if cur != nil && len(*cur) < maxMetadataMemo {
		next = make(map[string][]byte, len(*cur)+1)
		for k, c := range *cur {
			next[k] = c
		}
	}
	next[string(metadata)] = v
	m.memo.CompareAndSwap(cur, &next) // a lost race loses a memo entry, nothing else
	return v
}

func buildMetadataClaim(metadata []byte, names []string) []byte {
	var members map[string]json.RawMessage
	if json.Unmarshal(metadata, &members) != nil {
		return nil // stored by apikey as a compact object: not reached
	}
	var out []byte
	for _, name := range names {
		v, ok := members[name]
		if !ok {
			continue
		}
		if out == nil {
			out = append(make([]byte, 0, len(metadata)+2), '{')
		} else {
			out = append(out, ',')
		}
		out = appendJSONString(out, name)
		out = append(out, ':')
		out = append(out, v...)
	}
	if out == nil {
		return nil
	}
	return append(out, '}')
}

// policyFields are the policy members of a key's create body and merge
// patch besides token_quota, read by decodePolicyMember.
var policyFields = []string{"expires_at", "disabled", "token_ttl", "audiences", "allowed_cidrs", "metadata"}

// decodePolicyMember reads the policy member name of a create body or a
// merge patch into ch, with its exact JSON type; null clears the field
// (except "disabled", which is true or false). Ranges and the rest of the
// rules are apikey's (policy.go). A non-empty string is the problem's
// detail.
func decodePolicyMember(name string, raw json.RawMessage, ch *apikey.KeyChange) string {
	raw = bytes.TrimSpace(raw)
	isNull := string(raw) == "null"
	switch name {
	case "expires_at":
		var t time.Time
		if !isNull {
			var s string
			var err error
			if json.Unmarshal(raw, &s) != nil {
				return `"expires_at" must be a JSON string holding an RFC 3339 time such as "2027-03-01T00:00:00Z", or null for no expiry`
			}
			if t, err = time.Parse(time.RFC3339, s); err != nil {
				return fmt.Sprintf(`"expires_at" (%q) is not an RFC 3339 time such as "2027-03-01T00:00:00Z"`, truncate(s, 80))
			}
		}
		ch.ExpiresAt = &t
	case "disabled":
		var b bool
		if isNull || json.Unmarshal(raw, &b) != nil {
			return `"disabled" must be true (suspend the key) or false (resume it)`
		}
		ch.Disabled = &b
	case "token_ttl":
		var d time.Duration
		switch {
		case isNull:
		case len(raw) > 0 && raw[0] == '"':
			var s string
			_ = json.Unmarshal(raw, &s)
			v, err := config.ParseDuration(s)
			if err != nil {
				return fmt.Sprintf(`"token_ttl" (%q) is not a duration such as "5m" or "1h"; or send whole seconds as a number`, truncate(s, 80))
			}
			d = v
		default:
			n, err := strconv.ParseInt(string(raw), 10, 64)
			if err != nil || n <= 0 || n > int64(config.MaxTokenTTL/time.Second) {
				return fmt.Sprintf(`"token_ttl" must be whole seconds (a number from %d to %d) or a duration string such as "5m", or null for the server's`,
					int64(config.MinTokenTTL/time.Second), int64(config.MaxTokenTTL/time.Second))
			}
			d = time.Duration(n) * time.Second
		}
		ch.TokenTTL = &d
	case "audiences", "allowed_cidrs":
		var list []string
		if !isNull && (len(raw) == 0 || raw[0] != '[' || json.Unmarshal(raw, &list) != nil) {
			return fmt.Sprintf(`%q must be a JSON array of strings, or null`, name)
		}
		if name == "audiences" {
			ch.Audiences = &list
		} else {
			ch.AllowedCIDRs = &list
		}
	case "metadata":
		var m json.RawMessage
		if !isNull {
			if len(raw) == 0 || raw[0] != '{' {
				return `"metadata" must be a JSON object such as {"tenant": "acme"}, or null`
			}
			m = append(json.RawMessage{}, raw...)
		}
		ch.Metadata = &m
	}
	return ""
}

// policyOf is a new key's policy from the members a create body set.
func policyOf(ch apikey.KeyChange) apikey.Policy {
	var p apikey.Policy
	if ch.ExpiresAt != nil {
		p.ExpiresAt = *ch.ExpiresAt
	}
	if ch.Disabled != nil {
		p.Disabled = *ch.Disabled
	}
	if ch.TokenTTL != nil {
		p.TokenTTL = *ch.TokenTTL
	}
	if ch.Audiences != nil {
		p.Audiences = *ch.Audiences
	}
	if ch.AllowedCIDRs != nil {
		p.AllowedCIDRs = *ch.AllowedCIDRs
	}
	if ch.Metadata != nil {
		p.Metadata = *ch.Metadata
	}
	return p
}

// policyView is the policy part of a key's JSON.
type policyView struct {
	// ExpiresAt is null for a key that never expires.
	ExpiresAt *time.Time `json:"expires_at"`
	// ExpiringSoon: expires_at is within key_expiry_warning, not past.
	ExpiringSoon bool `json:"expiring_soon"`
	// Status is "active", "suspended" or "expired" (expiry wins: it is
	// final).
	Status     string     `json:"status"`
	Disabled   bool       `json:"disabled"`
	DisabledAt *time.Time `json:"disabled_at"`
	// TokenTTL is in whole seconds; null: the server's token_ttl.
	TokenTTL *int64 `json:"token_ttl"`
	// Audiences and AllowedCIDRs are null when the key has none.
	Audiences    []string        `json:"audiences"`
	AllowedCIDRs []string        `json:"allowed_cidrs"`
	Metadata     json.RawMessage `json:"metadata"`
}

// Key statuses of policyView.Status.
const (
	keyActive    = "active"
	keySuspended = "suspended"
	keyExpired   = "expired"
)

func (s *Server) viewPolicy(k store.Key) policyView {
	now := s.cfg.Now()
	v := policyView{Status: keyActive, Disabled: apikey.KeySuspended(k)}
	if !k.ExpiresAt.IsZero() {
		t := k.ExpiresAt.UTC()
		v.ExpiresAt = &t
		v.ExpiringSoon = !apikey.KeyExpired(k, now) && s.cfg.KeyExpiryWarning > 0 && k.ExpiresAt.Sub(now) <= s.cfg.KeyExpiryWarning
	}
	if v.Disabled {
		t := k.DisabledAt.UTC().Truncate(time.Second)
		v.DisabledAt = &t
		v.Status = keySuspended
	}
	if apikey.KeyExpired(k, now) {
		v.Status = keyExpired
	}
	if k.TokenTTL > 0 {
		n := int64(k.TokenTTL / time.Second)
		v.TokenTTL = &n
	}
	if len(k.Audiences) > 0 {
		v.Audiences = append([]string{}, k.Audiences...)
	}
	for _, p := range k.AllowedCIDRs {
		v.AllowedCIDRs = append(v.AllowedCIDRs, p.String())
	}
	if len(k.Metadata) > 0 {
		v.Metadata = append(json.RawMessage{}, k.Metadata...)
	}
	return v
}
