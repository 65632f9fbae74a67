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
