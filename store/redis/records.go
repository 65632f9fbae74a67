package redis

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"strconv"
	"time"

	"github.com/keygate/keygate/credential"
	"github.com/keygate/keygate/store"
)

// The names of everything this package keeps in Redis, in one place so
// that the layout in the package comment can be checked against them.

func (s *Store) keyKey(clientID string) string {
	return s.prefix + "{" + credential.TagOf(clientID) + "}:key:" + clientID
}

func (s *Store) teamKey(teamID string) string {
	return s.prefix + "{" + credential.TeamTag(teamID) + "}:team:" + teamID
}

func (s *Store) singletonKey(name string) string { return s.prefix + "{kg}:single:" + name }
func (s *Store) signingKey() string              { return s.prefix + "{kg}:signing" }
func (s *Store) statusNextKey() string           { return s.prefix + "{kg}:status:next" }
func (s *Store) statusBitsKey() string           { return s.prefix + "{kg}:status:bits" }
func (s *Store) statusEntriesKey() string        { return s.prefix + "{kg}:status:entries" }
func (s *Store) keysChannel() string             { return s.prefix + "{kg}:keys:changed" }
func (s *Store) keysCreatedChannel() string      { return s.prefix + "{kg}:keys:created" }

// The audit trail (audit.go). slot is a tag of slotTag's.
func (s *Store) auditTrailKey(teamID string) string {
	return s.prefix + "{" + credential.TeamTag(teamID) + "}:audit:" + teamID
}
func (s *Store) auditSeqKey(slot string) string    { return s.prefix + "{" + slot + "}:audit:seq" }
func (s *Store) auditOutboxKey(slot string) string { return s.prefix + "{" + slot + "}:audit:outbox" }
func (s *Store) auditTeamsKey(slot string) string  { return s.prefix + "{" + slot + "}:audit:teams" }
func (s *Store) auditAllKey() string               { return s.prefix + "{kg}:audit:all" }
func (s *Store) auditNextKey() string              { return s.prefix + "{kg}:audit:next" }
func (s *Store) auditMovedKey() string             { return s.prefix + "{kg}:audit:moved" }

func (s *Store) webhookKey(endpoint string) string {
	return s.prefix + "{kg}:webhook:" + endpoint
}
func (s *Store) denyKey(jti string) string {
	return s.prefix + "deny:" + jti
}

// quotaKey names an issuance quota counter; name (package quota's) holds
// the kind, the client or team ID and the window.
func (s *Store) quotaKey(name string) string { return s.prefix + "quota:" + name }

// record is the stored JSON of a key, without the fields that live beside
// it in the hash (team, last use) and without the client ID (the key name).
// A private type: a change to store.Key's JSON tags cannot change the data.
type record struct {
	Name                    string    `json:"name"`
	Permissions             []string  `json:"permissions"`
	CreatedAt               time.Time `json:"created_at"`
	SecretHash              []byte    `json:"secret_hash"`
	PreviousSecretHash      []byte    `json:"previous_secret_hash,omitempty"`
	PreviousSecretExpiresAt time.Time `json:"previous_secret_expires_at"`
	SecretRotatedAt         time.Time `json:"secret_rotated_at"`
	StatusIndex             int64     `json:"status_index,omitempty"`
	PreviousStatusIndex     int64     `json:"previous_status_index,omitempty"`
	SecretSuspendedAt       time.Time `json:"secret_suspended_at,omitzero"`
	// Role is read by the delete script (keys.go) to count full admins.
	Role        string `json:"role,omitempty"`
	quotaRecord        // flattened: token_quota_limit, …_per, …_mode
	policyRecord
}

// policyRecord is a key's policy (store.Key's issue 17 fields), each member
// absent when the key has none, so records without one read as before. A
// store holding one is schema version 3 (RaiseSchema at
// store.SchemaLevelKeyPolicy), which a keygate that would ignore it
// refuses.
type policyRecord struct {
	ExpiresAt    time.Time       `json:"expires_at,omitzero"`
	DisabledAt   time.Time       `json:"disabled_at,omitzero"`
	TokenTTL     time.Duration   `json:"token_ttl_ns,omitempty"`
	Audiences    []string        `json:"audiences,omitempty"`
	AllowedCIDRs []netip.Prefix  `json:"allowed_cidrs,omitempty"`
	Metadata     json.RawMessage `json:"metadata,omitempty"`
}

// quotaRecord is a key's own issuance quota, its members absent when it
// has none. It is embedded in the key's record, so its members sit beside
// the others: a nested object would cost the token path's decoding of
// every key with a quota an allocation (the JSON scanner's stack).
type quotaRecord struct {
	Limit int64           `json:"token_quota_limit,omitempty"`
	Per   store.QuotaWord `json:"token_quota_per,omitempty"`
	Mode  store.QuotaWord `json:"token_quota_mode,omitempty"`
}

func encodeRecord(k store.Key) (string, error) {
	r := record{
		Name:                    k.Name,
		Permissions:             k.Permissions,
		CreatedAt:               k.CreatedAt.UTC(),
		SecretHash:              k.SecretHash,
		PreviousSecretHash:      k.PreviousSecretHash,
		PreviousSecretExpiresAt: k.PreviousSecretExpiresAt.UTC(),
		SecretRotatedAt:         k.SecretRotatedAt.UTC(),
		StatusIndex:             k.StatusIndex,
		PreviousStatusIndex:     k.PreviousStatusIndex,
		SecretSuspendedAt:       utc(k.SecretSuspendedAt),
		Role:                    k.Role,
		quotaRecord:             quotaRecord{Limit: k.TokenQuota.Limit, Per: store.QuotaWord(k.TokenQuota.Per), Mode: store.QuotaWord(k.TokenQuota.Mode)},
		policyRecord: policyRecord{ExpiresAt: utc(k.ExpiresAt), DisabledAt: utc(k.DisabledAt), TokenTTL: k.TokenTTL,
			Audiences: k.Audiences, AllowedCIDRs: k.AllowedCIDRs, Metadata: k.Metadata},
	}
	b, err := json.Marshal(r)
	return string(b), err
}

// decodeKey rebuilds a key from its hash fields (rec, team, lu).
func decodeKey(clientID string, vals []any) (store.Key, error) {
	rec, ok := vals[0].(string)
	if !ok {
		return store.Key{}, store.ErrNotFound
	}
	var r record
	if err := json.Unmarshal([]byte(rec), &r); err != nil {
		return store.Key{}, fmt.Errorf("decode key %s: %w", clientID, err)
	}
	team, _ := vals[1].(string)
	k := store.Key{
		ClientID:                clientID,
		TeamID:                  team,
		Name:                    r.Name,
		Permissions:             r.Permissions,
		CreatedAt:               utc(r.CreatedAt),
		SecretHash:              r.SecretHash,
		PreviousSecretHash:      r.PreviousSecretHash,
		PreviousSecretExpiresAt: utc(r.PreviousSecretExpiresAt),
		SecretRotatedAt:         utc(r.SecretRotatedAt),
		StatusIndex:             r.StatusIndex,
		PreviousStatusIndex:     r.PreviousStatusIndex,
		SecretSuspendedAt:       utc(r.SecretSuspendedAt),
		Role:                    r.Role,
		TokenQuota:              store.TokenQuota{Limit: r.quotaRecord.Limit, Per: string(r.quotaRecord.Per), Mode: string(r.quotaRecord.Mode)},
		ExpiresAt:               utc(r.ExpiresAt),
		DisabledAt:              utc(r.DisabledAt),
		TokenTTL:                r.TokenTTL,
		Audiences:               r.Audiences,
		AllowedCIDRs:            r.AllowedCIDRs,
	}
	if len(r.Metadata) > 0 {
		k.Metadata = []byte(r.Metadata)
	}
	if lu, ok := vals[2].(string); ok && lu != "" {
		ms, err := strconv.ParseInt(lu, 10, 64)
		if err != nil {
			return store.Key{}, fmt.Errorf("decode key %s: last use: %w", clientID, err)
		}
		k.LastUsedAt = time.UnixMilli(ms).UTC()
	}
	return k, nil
}

func utc(t time.Time) time.Time {
	if t.IsZero() {
		return time.Time{}
	}
	return t.UTC()
}

// roundTrip returns k as GetKey would (times at stored precision), sharing
// no memory with the caller's value.
func roundTrip(k store.Key) (store.Key, error) {
	rec, err := encodeRecord(k)
	if err != nil {
		return store.Key{}, err
	}
	lu := ""
	if !k.LastUsedAt.IsZero() {
		lu = strconv.FormatInt(k.LastUsedAt.UnixMilli(), 10)
	}
	return decodeKey(k.ClientID, []any{rec, k.TeamID, lu})
}

func millis(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMilli()
}

// throttleKey names a shared failed-authentication bucket (throttle.go)
// in its group's slot; bucket is package throttle's name for it
// ("p/<source>/<id hash>" or "s/<source>"), group its source, neither a
// secret nor containing braces. throttleChannel carries the throttles
// instances announce.
func (s *Store) throttleKey(group, bucket string) string {
	return s.prefix + "{t:" + group + "}:throttle:" + bucket
}
func (s *Store) throttleChannel() string { return s.prefix + "{kg}:throttle" }
