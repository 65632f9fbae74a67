package apikey

// Key policy (docs/ARCHITECTURE.md, "Key policy"): what limits a key beyond
// its permissions — when it expires, whether it is suspended, its tokens'
// lifetime and audiences, where it may be used from, and the metadata it
// carries. The rules of each field are here; Create and Update apply them
// inside their atomic writes, and the token path asks KeyUsable once the
// secret verified.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/keygate/keygate/clientaddr"
	"github.com/keygate/keygate/config"
	"github.com/keygate/keygate/store"
)

// Limits of the policy fields.
const (
	// MaxAllowedCIDRs bounds a key's allowed_cidrs.
	MaxAllowedCIDRs = 32
	// MaxMetadataBytes bounds a key's metadata, as compact JSON.
	MaxMetadataBytes = 1024
	// MaxMetadataMembers bounds the members of a key's metadata.
	MaxMetadataMembers = 16
	// maxMetadataName bounds a metadata member's name, in bytes.
	maxMetadataName = 64
)

// Refusals of a key whose secret verified (KeyUsable). Each one is answered
// only after the secret checked out: before that every refusal is the
// wrong-secret one, so a policy cannot be probed without the secret.
var (
	// ErrKeyExpired: the key's expires_at has passed.
	ErrKeyExpired = errors.New("key expired")
	// ErrKeySuspended: the key is suspended (disabled).
	ErrKeySuspended = errors.New("key suspended")
	// ErrSourceRefused: the request came from outside the key's
	// allowed_cidrs.
	ErrSourceRefused = errors.New("source address not allowed for this key")
	// ErrExpiredFinal: a change would bring an expired key back (its
	// expires_at moved or cleared). 409: expiry is final.
	ErrExpiredFinal = errors.New("an expired key cannot be brought back")
)

// KeyExpired reports whether k has expired at now.
func KeyExpired(k store.Key, now time.Time) bool {
	return !k.ExpiresAt.IsZero() && !now.Before(k.ExpiresAt)
}

// KeySuspended reports whether k is suspended.
func KeySuspended(k store.Key) bool { return !k.DisabledAt.IsZero() }

// KeyInForce reports whether k may be used at now as far as expiry and
// suspension go: what introspection and the management API's live checks
// ask of the key behind a token.
func KeyInForce(k store.Key, now time.Time) bool {
	return !KeyExpired(k, now) && !KeySuspended(k)
}

// KeyUsable is the policy check of the token path, run after the secret
// verified: expiry, suspension, then the source address. from is the
// request's source as clientaddr resolved it (unmapped). It allocates
// nothing: a key's allowed_cidrs are parsed prefixes.
func KeyUsable(k store.Key, now time.Time, from netip.Addr) error {
	switch {
	case KeyExpired(k, now):
		return ErrKeyExpired
	case KeySuspended(k):
		return ErrKeySuspended
	case len(k.AllowedCIDRs) > 0 && !addrAllowed(k.AllowedCIDRs, from):
		return ErrSourceRefused
	}
	return nil
}

func addrAllowed(allowed []netip.Prefix, from netip.Addr) bool {
	from = from.Unmap()
	for _, p := range allowed {
		if p.Contains(from) {
			return true
		}
	}
	return false
}

// TokenTTL is the lifetime of k's tokens: its own token_ttl, else the
// server's.
func (s *Service) TokenTTL(k store.Key) time.Duration {
	if k.TokenTTL > 0 {
		return k.TokenTTL
	}
	return s.cfg.TokenTTL
}

// Policy is the key policy fields of a new key (NewKey) as its creator sent
// them; the zero value of each is "none of the key's own".
type Policy struct {
	ExpiresAt time.Time
	Disabled  bool
	TokenTTL  time.Duration
	Audiences []string
	// AllowedCIDRs are CIDRs or single addresses, as sent.
	AllowedCIDRs []string
	// Metadata is a JSON object as sent (any spacing), or nil.
	Metadata json.RawMessage
}

// policyFields is a checked Policy, in the form the store keeps.
type policyFields struct {
	expiresAt    time.Time
	disabled     bool
	tokenTTL     time.Duration
	audiences    []string
	allowedCIDRs []netip.Prefix
	metadata     []byte
}

// checkPolicy applies the rules of every field of a new key created at now.
// With max_key_lifetime, a key sent without expires_at gets now plus the
// limit, and one sent with a later expires_at is refused.
func (s *Service) checkPolicy(p Policy, now time.Time) (policyFields, error) {
	var f policyFields
	var err error
	if !p.ExpiresAt.IsZero() {
		if f.expiresAt, err = s.checkExpiresAt(p.ExpiresAt, now, now); err != nil {
			return f, err
		}
	} else if s.cfg.MaxKeyLifetime > 0 {
		f.expiresAt = now.Add(s.cfg.MaxKeyLifetime).UTC().Truncate(time.Second)
	}
	f.disabled = p.Disabled
	if p.TokenTTL != 0 {
		if err := s.checkTokenTTL(p.TokenTTL); err != nil {
			return f, err
		}
		f.tokenTTL = p.TokenTTL
	}
	if p.Audiences != nil {
		if f.audiences, err = s.checkAudiences(p.Audiences); err != nil {
			return f, err
		}
	}
	if p.AllowedCIDRs != nil {
		if f.allowedCIDRs, err = checkAllowedCIDRs(p.AllowedCIDRs); err != nil {
			return f, err
		}
	}
	if p.Metadata != nil {
		if f.metadata, err = checkMetadata(p.Metadata); err != nil {
			return f, err
		}
	}
	return f, nil
}

// checkExpiresAt checks an expires_at set at now on a key created at
// created: in the future, and within max_key_lifetime of the key's
// creation. It returns the time as stored (UTC).
func (s *Service) checkExpiresAt(t, created, now time.Time) (time.Time, error) {
	t = t.UTC()
	if !t.After(now) {
		return time.Time{}, invalid(`"expires_at" (%s) is not in the future; a key's expiry must be later than now (%s)`, t.Format(time.RFC3339), now.UTC().Format(time.RFC3339))
	}
	if max := s.cfg.MaxKeyLifetime; max > 0 {
		if limit := created.Add(max); t.After(limit) {
			return time.Time{}, invalid(`"expires_at" (%s) is beyond max_key_lifetime (%s) of the key's creation: the latest allowed is %s`,
				t.Format(time.RFC3339), config.FormatDuration(max), limit.UTC().Format(time.RFC3339))
		}
	}
	return t, nil
}

// checkTokenTTL: a key's own token lifetime, config.MinTokenTTL to the
// operator's max_token_ttl (by default the server's token_ttl).
func (s *Service) checkTokenTTL(d time.Duration) error {
	if d < config.MinTokenTTL || d > s.cfg.MaxKeyTokenTTL || d%time.Second != 0 {
		return invalid(`"token_ttl" is %s; use whole seconds from %s to %s (max_token_ttl; an operator may raise it up to %s)`,
			d, config.MinTokenTTL, s.cfg.MaxKeyTokenTTL, config.MaxTokenTTL)
	}
	return nil
}

// checkAudiences: a non-empty list without repeats, each one of the
// operator's audiences_allowed.
func (s *Service) checkAudiences(list []string) ([]string, error) {
	if len(s.cfg.AudiencesAllowed) == 0 {
		return nil, invalid(`"audiences" cannot be set: this server has no audiences_allowed, so every token carries its audience`)
	}
	if len(list) == 0 {
		return nil, invalid(`"audiences" must not be empty; send null to give the key the server's audience`)
	}
	for i, a := range list {
		if !slices.Contains(s.cfg.AudiencesAllowed, a) {
			return nil, invalid(`"audiences[%d]" (%q) is not one of the audiences this server allows: %s`, i, truncateRunes(a, 80), strings.Join(s.cfg.AudiencesAllowed, ", "))
		}
		if slices.Contains(list[:i], a) {
			return nil, invalid(`"audiences[%d]" (%q) is listed twice`, i, a)
		}
	}
	return slices.Clone(list), nil
}

// checkAllowedCIDRs: 1 to MaxAllowedCIDRs CIDRs or single addresses, IPv4
// or IPv6 (an IPv4-mapped one is read as IPv4), stored masked, no repeats.
func checkAllowedCIDRs(list []string) ([]netip.Prefix, error) {
	if len(list) == 0 {
		return nil, invalid(`"allowed_cidrs" must not be empty; send null to allow every source address`)
	}
	if len(list) > MaxAllowedCIDRs {
		return nil, invalid(`"allowed_cidrs" has %d entries; use at most %d`, len(list), MaxAllowedCIDRs)
	}
	out := make([]netip.Prefix, 0, len(list))
	for i, e := range list {
		p, err := clientaddr.ParsePrefix(truncateRunes(e, 100))
		if err != nil {
			return nil, invalid(`"allowed_cidrs[%d]": %v`, i, err)
		}
		if slices.Contains(out, p) {
			return nil, invalid(`"allowed_cidrs[%d]" (%s) is listed twice`, i, p)
		}
		out = append(out, p)
	}
	return out, nil
}

// checkMetadata: a JSON object of at most MaxMetadataMembers members whose
// names are 1–64 bytes of printable UTF-8, at most MaxMetadataBytes as
// compact JSON (the form stored and returned).
func checkMetadata(raw json.RawMessage) ([]byte, error) {
	raw = bytes.TrimSpace(raw)
	var members map[string]json.RawMessage
	if len(raw) == 0 || raw[0] != '{' || json.Unmarshal(raw, &members) != nil {
		return nil, invalid(`"metadata" must be a JSON object such as {"tenant": "acme"}, or null`)
	}
	if len(members) > MaxMetadataMembers {
		return nil, invalid(`"metadata" has %d members; use at most %d`, len(members), MaxMetadataMembers)
	}
	for name := range members {
		if !validMetadataName(name) {
			return nil, invalid(`"metadata" member name %q is not 1 to %d bytes of printable characters`, truncateRunes(name, 80), maxMetadataName)
		}
	}
	var buf bytes.Buffer
	if err := json.Compact(&buf, raw); err != nil {
		return nil, invalid(`"metadata" must be a JSON object such as {"tenant": "acme"}, or null`)
	}
	if buf.Len() > MaxMetadataBytes {
		return nil, invalid(`"metadata" is %d bytes as compact JSON; use at most %d`, buf.Len(), MaxMetadataBytes)
	}
	return buf.Bytes(), nil
}

func validMetadataName(s string) bool {
	if s == "" || len(s) > maxMetadataName || !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if !unicode.IsPrint(r) {
			return false
		}
	}
	return true
}

func truncateRunes(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	return string([]rune(s)[:n]) + "…"
}

// expiryChange applies a change of expires_at (t; the zero time clears it)
// to k at now, inside Update's atomic step. An expired key keeps its
// expiry (ErrExpiredFinal). With max_key_lifetime the new expiry may be no
// later than the key's creation plus the limit — or, for a key older than
// the limit's arrival, no later than what it had (a shortening), or now
// plus the limit when it had none — and clearing is refused: a rotation or
// a change never extends a key past the limit.
func (s *Service) expiryChange(k store.Key, t time.Time, now time.Time) (time.Time, error) {
	if KeyExpired(k, now) {
		if t.Equal(k.ExpiresAt) {
			return k.ExpiresAt, nil
		}
		return time.Time{}, ErrExpiredFinal
	}
	max := s.cfg.MaxKeyLifetime
	if t.IsZero() {
		if max > 0 {
			return time.Time{}, invalid(`"expires_at" cannot be cleared: max_key_lifetime (%s) requires every key to expire`, config.FormatDuration(max))
		}
		return time.Time{}, nil
	}
	created := k.CreatedAt
	if max > 0 {
		// A key from before the limit: measure from what it may keep.
		switch bound := k.CreatedAt.Add(max); {
		case k.ExpiresAt.IsZero() && now.Add(max).After(bound):
			created = now
		case !k.ExpiresAt.IsZero() && k.ExpiresAt.After(bound):
			created = k.ExpiresAt.Add(-max)
		}
	}
	return s.checkExpiresAt(t, created, now)
}

// apply writes the checked fields into a new key created at now.
func (f policyFields) apply(k *store.Key, now time.Time) {
	k.ExpiresAt = f.expiresAt
	if f.disabled {
		k.DisabledAt = now
	}
	k.TokenTTL = f.tokenTTL
	k.Audiences = f.audiences
	k.AllowedCIDRs = f.allowedCIDRs
	k.Metadata = f.metadata
}

// checkedChange is the part of a KeyChange's policy fields that can be
// checked without the key (Update checks them before its atomic step).
type checkedChange struct {
	tokenTTL     time.Duration
	audiences    []string
	allowedCIDRs []netip.Prefix
	metadata     []byte
}

func (s *Service) checkPolicyChange(ch KeyChange) (checkedChange, error) {
	var c checkedChange
	var err error
	if ch.TokenTTL != nil && *ch.TokenTTL != 0 {
		if err := s.checkTokenTTL(*ch.TokenTTL); err != nil {
			return c, err
		}
		c.tokenTTL = *ch.TokenTTL
	}
	if ch.Audiences != nil && *ch.Audiences != nil {
		if c.audiences, err = s.checkAudiences(*ch.Audiences); err != nil {
			return c, err
		}
	}
	if ch.AllowedCIDRs != nil && *ch.AllowedCIDRs != nil {
		if c.allowedCIDRs, err = checkAllowedCIDRs(*ch.AllowedCIDRs); err != nil {
			return c, err
		}
	}
	if ch.Metadata != nil && *ch.Metadata != nil {
		if c.metadata, err = checkMetadata(*ch.Metadata); err != nil {
			return c, err
		}
	}
	return c, nil
}

// setsPolicy reports whether ch may write a policy field an older keygate
// would ignore (Update raises the schema first).
func (ch KeyChange) setsPolicy() bool {
	return ch.ExpiresAt != nil && !ch.ExpiresAt.IsZero() || ch.Disabled != nil && *ch.Disabled ||
		ch.TokenTTL != nil && *ch.TokenTTL != 0 || ch.Audiences != nil && *ch.Audiences != nil ||
		ch.AllowedCIDRs != nil && *ch.AllowedCIDRs != nil || ch.Metadata != nil && *ch.Metadata != nil
}

// changesPolicy reports whether ch names any policy field.
func (ch KeyChange) changesPolicy() bool {
	return ch.ExpiresAt != nil || ch.Disabled != nil || ch.TokenTTL != nil || ch.Audiences != nil ||
		ch.AllowedCIDRs != nil || ch.Metadata != nil || ch.TokenQuota != nil
}

// applyPolicy applies ch's policy fields (checked: c) to k at now inside
// Update's atomic step and returns the names of those that changed.
func (s *Service) applyPolicy(k *store.Key, ch KeyChange, c checkedChange, now time.Time) ([]string, error) {
	var changed []string
	if ch.ExpiresAt != nil {
		t, err := s.expiryChange(*k, *ch.ExpiresAt, now)
		if err != nil {
			return nil, err
		}
		if !t.Equal(k.ExpiresAt) {
			k.ExpiresAt = t
			changed = append(changed, "expires_at")
		}
	}
	if ch.Disabled != nil && *ch.Disabled != KeySuspended(*k) {
		if *ch.Disabled {
			k.DisabledAt = now
		} else {
			k.DisabledAt = time.Time{}
		}
		changed = append(changed, "disabled")
	}
	if ch.TokenTTL != nil && c.tokenTTL != k.TokenTTL {
		k.TokenTTL = c.tokenTTL
		changed = append(changed, "token_ttl")
	}
	if ch.Audiences != nil && !slices.Equal(c.audiences, k.Audiences) {
		k.Audiences = c.audiences
		changed = append(changed, "audiences")
	}
	if ch.AllowedCIDRs != nil && !slices.Equal(c.allowedCIDRs, k.AllowedCIDRs) {
		k.AllowedCIDRs = c.allowedCIDRs
		changed = append(changed, "allowed_cidrs")
	}
	if ch.Metadata != nil && !bytes.Equal(c.metadata, k.Metadata) {
		k.Metadata = c.metadata
		changed = append(changed, "metadata")
	}
	return changed, nil
}

// syncSuspension makes the status entries of k's secret generations say
// what its record says — SUSPENDED while it is suspended, VALID once
// resumed (an INVALID entry stays: the store keeps it) — after an update
// that changed the suspension. The record is written first, so the key
// gets no token from that moment; the entries follow. Two updates racing
// could leave the entries of the first: so the record is read again after
// the write, and the entries follow it until they agree (a few rounds at
// most; the next audit round mends what is left, from the status schedule's
// entry Update writes first: statusschedule.go).
func (s *Service) syncSuspension(ctx context.Context, k store.Key) error {
	for range 3 {
		st, gens := suspensionEntries(k)
		for _, idx := range gens {
			if idx <= 0 {
				continue
			}
			if err := s.store.SetStatus(ctx, idx, st); err != nil {
				return fmt.Errorf("set status of key %s: %w", k.ClientID, err)
			}
		}
		now, err := s.store.GetKey(ctx, k.ClientID)
		if errors.Is(err, store.ErrNotFound) {
			return nil // deleted since: its entries are INVALID
		}
		if err != nil {
			return fmt.Errorf("load key %s: %w", k.ClientID, err)
		}
		if KeySuspended(now) == KeySuspended(k) && now.StatusIndex == k.StatusIndex && now.PreviousStatusIndex == k.PreviousStatusIndex {
			return nil
		}
		k = now
	}
	return nil
}

// suspensionShown reports whether the status entries of k's secret
// generations in l say what k's suspension says: SUSPENDED while it is
// suspended, not SUSPENDED otherwise (INVALID always agrees: it is final).
func suspensionShown(k store.Key, l store.StatusList) bool {
	want, gens := suspensionEntries(k)
	for _, idx := range gens {
		if idx <= 0 {
			continue
		}
		if got := l.Entry(idx); got != store.StatusInvalid && got != want {
			return false
		}
	}
	return true
}

// suspensionEntries is what k's suspension asks of its status entries: the
// status (SUSPENDED while suspended, else VALID) and the indices of its
// secret generations (0: none).
func suspensionEntries(k store.Key) (store.Status, [2]int64) {
	st := store.StatusValid
	if KeySuspended(k) {
		st = store.StatusSuspended
	}
	return st, [2]int64{k.StatusIndex, k.PreviousStatusIndex}
}
