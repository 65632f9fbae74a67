package bolt

import (
	"encoding/json"
	"net/netip"
	"time"

	"github.com/keygate/keygate/store"
)

// The on-disk records. They mirror the store types field for field but are
// owned by this package, so the file format changes only when someone edits
// this file (and bumps schemaVersion if old files would be misread).
// JSON keeps the file inspectable with the bbolt CLI; times are RFC 3339
// with nanoseconds, always UTC.

type keyRecord struct {
	ClientID                string    `json:"client_id"`
	TeamID                  string    `json:"team_id"`
	Name                    string    `json:"name"`
	Permissions             []string  `json:"permissions,omitempty"`
	CreatedAt               time.Time `json:"created_at"`
	LastUsedAt              time.Time `json:"last_used_at,omitzero"`
	SecretHash              []byte    `json:"secret_hash,omitempty"`
	PreviousSecretHash      []byte    `json:"previous_secret_hash,omitempty"`
	PreviousSecretExpiresAt time.Time `json:"previous_secret_expires_at,omitzero"`
	SecretRotatedAt         time.Time `json:"secret_rotated_at,omitzero"`
	StatusIndex             int64     `json:"status_index,omitempty"`
	PreviousStatusIndex     int64     `json:"previous_status_index,omitempty"`
	SecretSuspendedAt       time.Time `json:"secret_suspended_at,omitzero"`
	quotaRecord                       // flattened: token_quota_limit, …_per, …_mode
	// Role: admin keys only; absent for full admins. A file holding a
	// read-only one is schema version 3 (sessions.go, RaiseSchema), which a
	// keygate that would ignore the field refuses.
	Role string `json:"role,omitempty"`
	policyRecord
}

// policyRecord is a key's policy (store.Key's issue 17 fields), each member
// absent when the key has none, so records without a policy read as
// before. A file holding one is schema version 4 (RaiseSchema at
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

func toPolicyRecord(k store.Key) policyRecord {
	return policyRecord{ExpiresAt: utc(k.ExpiresAt), DisabledAt: utc(k.DisabledAt), TokenTTL: k.TokenTTL,
		Audiences: k.Audiences, AllowedCIDRs: k.AllowedCIDRs, Metadata: k.Metadata}
}

// setPolicy copies r's fields into k.
func (r policyRecord) setPolicy(k *store.Key) {
	k.ExpiresAt, k.DisabledAt, k.TokenTTL = utc(r.ExpiresAt), utc(r.DisabledAt), r.TokenTTL
	k.Audiences, k.AllowedCIDRs = r.Audiences, r.AllowedCIDRs
	if len(r.Metadata) > 0 {
		k.Metadata = []byte(r.Metadata)
	}
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

func toQuotaRecord(q store.TokenQuota) quotaRecord {
	return quotaRecord{Limit: q.Limit, Per: store.QuotaWord(q.Per), Mode: store.QuotaWord(q.Mode)}
}

func fromQuotaRecord(r quotaRecord) store.TokenQuota {
	return store.TokenQuota{Limit: r.Limit, Per: string(r.Per), Mode: string(r.Mode)}
}

type signingKeyRecord struct {
	KID              string    `json:"kid"`
	Alg              string    `json:"alg"`
	PrivateKeySealed []byte    `json:"private_key_sealed"`
	CreatedAt        time.Time `json:"created_at"`
	SignsFrom        time.Time `json:"signs_from,omitzero"`
}

type retiredRecord struct {
	signingKeyRecord
	PublishUntil time.Time `json:"publish_until"`
	RetiredAt    time.Time `json:"retired_at,omitzero"`
}

// signingRecord: next and the times were added with key states; records
// written before them decode with none (see store.SigningKeys).
type signingRecord struct {
	Active  *signingKeyRecord `json:"active,omitempty"`
	Retired []retiredRecord   `json:"retired,omitempty"`
	// MasterKeyID: store.SigningKeys.MasterKeyID.
	MasterKeyID string            `json:"master_key_id,omitempty"`
	Next        *signingKeyRecord `json:"next,omitempty"`
}

// utc normalises a time for storage. Zero stays the canonical zero, so that
// "never" survives whatever zone the caller's zero value carried.
func utc(t time.Time) time.Time {
	if t.IsZero() {
		return time.Time{}
	}
	return t.UTC()
}

// encodeKey serialises k. Decoding the result is the only way values leave
// this package, so every returned key is a fresh copy with UTC times.
func encodeKey(k store.Key) ([]byte, error) {
	return json.Marshal(keyRecord{
		ClientID:                k.ClientID,
		TeamID:                  k.TeamID,
		Name:                    k.Name,
		Permissions:             k.Permissions,
		CreatedAt:               utc(k.CreatedAt),
		LastUsedAt:              utc(k.LastUsedAt),
		SecretHash:              k.SecretHash,
		PreviousSecretHash:      k.PreviousSecretHash,
		PreviousSecretExpiresAt: utc(k.PreviousSecretExpiresAt),
		SecretRotatedAt:         utc(k.SecretRotatedAt),
		StatusIndex:             k.StatusIndex,
		PreviousStatusIndex:     k.PreviousStatusIndex,
		SecretSuspendedAt:       utc(k.SecretSuspendedAt),
		quotaRecord:             toQuotaRecord(k.TokenQuota),
		Role:                    k.Role,
		policyRecord:            toPolicyRecord(k),
	})
}

func decodeKey(b []byte) (store.Key, error) {
	var r keyRecord
	if err := json.Unmarshal(b, &r); err != nil {
		return store.Key{}, err
	}
	k := store.Key{
		ClientID:                r.ClientID,
		TeamID:                  r.TeamID,
		Name:                    r.Name,
		Permissions:             r.Permissions,
		CreatedAt:               utc(r.CreatedAt),
		LastUsedAt:              utc(r.LastUsedAt),
		SecretHash:              r.SecretHash,
		PreviousSecretHash:      r.PreviousSecretHash,
		PreviousSecretExpiresAt: utc(r.PreviousSecretExpiresAt),
		SecretRotatedAt:         utc(r.SecretRotatedAt),
		StatusIndex:             r.StatusIndex,
		PreviousStatusIndex:     r.PreviousStatusIndex,
		SecretSuspendedAt:       utc(r.SecretSuspendedAt),
		TokenQuota:              fromQuotaRecord(r.quotaRecord),
		Role:                    r.Role,
	}
	r.setPolicy(&k)
	return k, nil
}

func toSigningKeyRecord(k store.SigningKey) signingKeyRecord {
	return signingKeyRecord{KID: k.KID, Alg: k.Alg, PrivateKeySealed: k.PrivateKeySealed, CreatedAt: utc(k.CreatedAt), SignsFrom: utc(k.SignsFrom)}
}

func fromSigningKeyRecord(r signingKeyRecord) store.SigningKey {
	return store.SigningKey{KID: r.KID, Alg: r.Alg, PrivateKeySealed: r.PrivateKeySealed, CreatedAt: utc(r.CreatedAt), SignsFrom: utc(r.SignsFrom)}
}

func encodeSigning(s store.SigningKeys) ([]byte, error) {
	r := signingRecord{MasterKeyID: s.MasterKeyID}
	if s.Active != nil {
		a := toSigningKeyRecord(*s.Active)
		r.Active = &a
	}
	for _, k := range s.Retired {
		r.Retired = append(r.Retired, retiredRecord{toSigningKeyRecord(k.SigningKey), utc(k.PublishUntil), utc(k.RetiredAt)})
	}
	if s.Next != nil {
		n := toSigningKeyRecord(*s.Next)
		r.Next = &n
	}
	return json.Marshal(r)
}

func decodeSigning(b []byte) (store.SigningKeys, error) {
	var r signingRecord
	if err := json.Unmarshal(b, &r); err != nil {
		return store.SigningKeys{}, err
	}
	s := store.SigningKeys{MasterKeyID: r.MasterKeyID}
	if r.Active != nil {
		a := fromSigningKeyRecord(*r.Active)
		s.Active = &a
	}
	for _, k := range r.Retired {
		s.Retired = append(s.Retired, store.RetiredSigningKey{SigningKey: fromSigningKeyRecord(k.signingKeyRecord), PublishUntil: utc(k.PublishUntil), RetiredAt: utc(k.RetiredAt)})
	}
	if r.Next != nil {
		n := fromSigningKeyRecord(*r.Next)
		s.Next = &n
	}
	return s, nil
}
