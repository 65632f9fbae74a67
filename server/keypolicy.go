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
// setting and the key's metadata are there.
func (s *Server) metadataClaim(key store.Key) []byte {
	if len(s.cfg.MetadataClaims) == 0 || len(key.Metadata) == 0 {
		return nil
	}
	var members map[string]json.RawMessage
	if json.Unmarshal(key.Metadata, &members) != nil {
		return nil // stored by apikey as a compact object: not reached
	}
	var out []byte
	for _, name := range s.cfg.MetadataClaims {
		v, ok := members[name]
		if !ok {
			continue
		}
		if out == nil {
			out = append(make([]byte, 0, len(key.Metadata)+2), '{')
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
