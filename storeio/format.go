// Package storeio moves a whole keygate store from one backend to another
// (`keygate store export`, `keygate store import`): an operator leaves the
// embedded store for Redis, or comes back, without re-issuing a key.
//
// # The stream
//
// An export is JSON Lines: one JSON object per line, each with a "kind",
// in this order (docs/export.md has an example):
//
//	header        once: {"kind":"header","format":"keygate-store-export",
//	              "version":1,"source":"bolt","exported_at":…,
//	              "status_counter":N} — the status-index counter when the
//	              export began
//	singleton     one per singleton: {"name":"pepper","value":<base64>},
//	              the sealed bytes as stored
//	signing_keys  once: {"keys":<store.SigningKeys as JSON>}, the private
//	              keys sealed as stored
//	key           one per key: every field of store.Key, the secret hashes
//	              in base64
//	status        once: {"allocated":N,"revoked":<base64 bitmap, LSB
//	              first>} — read after the keys
//	deny          one per live deny-list entry: {"jti":…,"until":…}
//	audit         one per audit event: {"event":<store.EncodeAuditEvent>,
//	              "stream_seq":N}, each team's events oldest first; N is
//	              the event's cursor in the source's operator-wide stream
//	webhook       one per webhook endpoint's state: {"endpoint":…,
//	              "delivered":N,"disabled":…} — N a stream_seq
//	end           once: the number of singleton, key, deny, audit and
//	              webhook lines, so a stream cut at a line boundary is
//	              refused
//
// Nothing secret leaves the store in the clear: the pepper and the signing
// keys stay sealed under the master key, which does not change across a
// move (the target must be started with the same master key and issuer),
// and secrets are there only as their HMAC under that pepper.
//
// The status list and the deny list are read after the keys, so a key
// deleted while an export runs arrives with its bit set (keygate sets a
// key's bit before it deletes the key). The import sets the status-index
// counter to the status line's allocated, which is at least every
// exported key's index.
//
// Webhook positions are cursors into the operator-wide event stream,
// which the target numbers anew: import moves each endpoint to the last
// event of the target's stream up to which every event had been delivered
// on the source, so no event is skipped and few are sent again.
//
// What is not moved: usage counters and issuance quota windows (history
// that ages out within 35 days; a quota's current window starts afresh),
// failed-authentication throttle buckets (seconds to minutes of state), a
// webhook's retry state and lease. Teams have no records of their own: they
// are their keys, and the per-team key limit is configuration.
//
// # Version
//
// The header's version changes whenever a reader of the previous version
// could misread a stream (a new field that restricts access, a new kind).
// An import refuses any version but its own, naming both; within a version
// an unknown field or kind is refused too, never ignored.
package storeio

import (
	"encoding/json"
	"errors"
	"net/netip"
	"time"

	"github.com/keygate/keygate/store"
)

// Format and Version name the stream in its header.
const (
	Format  = "keygate-store-export"
	Version = 1
)

// Errors callers branch on.
var (
	// ErrVersion: the stream is of another format version.
	ErrVersion = errors.New("unsupported export format version")
	// ErrCorrupt: the stream is not a complete, well-formed export.
	ErrCorrupt = errors.New("not a complete keygate store export")
	// ErrNotEmpty: the import's target already holds a store.
	ErrNotEmpty = errors.New("target store is not empty")
	// ErrUnsupported: the backend cannot be exported (no store.Exporter),
	// or cannot be imported into (no store.BulkLoader).
	ErrUnsupported = errors.New("backend does not support export or import")
)

// The kinds of line, in stream order.
const (
	kindHeader    = "header"
	kindSingleton = "singleton"
	kindSigning   = "signing_keys"
	kindKey       = "key"
	kindStatus    = "status"
	kindDeny      = "deny"
	kindAudit     = "audit"
	kindWebhook   = "webhook"
	kindEnd       = "end"
)

// rank orders the kinds; once marks the kinds that appear exactly once.
var rank = map[string]int{kindHeader: 0, kindSingleton: 1, kindSigning: 2, kindKey: 3, kindStatus: 4, kindDeny: 5, kindAudit: 6, kindWebhook: 7, kindEnd: 8}
var once = map[string]bool{kindHeader: true, kindSigning: true, kindStatus: true, kindEnd: true}

type headerLine struct {
	Kind          string    `json:"kind"`
	Format        string    `json:"format"`
	Version       int       `json:"version"`
	Source        string    `json:"source"`
	ExportedAt    time.Time `json:"exported_at"`
	StatusCounter int64     `json:"status_counter"`
}

type singletonLine struct {
	Kind  string `json:"kind"`
	Name  string `json:"name"`
	Value []byte `json:"value"`
}

type signingLine struct {
	Kind string          `json:"kind"`
	Keys json.RawMessage `json:"keys"`
}

// keyLine is every field of store.Key (TestKeyLineHasEveryField keeps it
// so): store.Key's own JSON hides the hashes, and a private type keeps an
// edit to the API's tags from changing the format.
type keyLine struct {
	Kind                    string           `json:"kind"`
	ClientID                string           `json:"client_id"`
	TeamID                  string           `json:"team_id"`
	Name                    string           `json:"name"`
	Permissions             []string         `json:"permissions"`
	CreatedAt               time.Time        `json:"created_at"`
	LastUsedAt              time.Time        `json:"last_used_at"`
	SecretHash              []byte           `json:"secret_hash"`
	PreviousSecretHash      []byte           `json:"previous_secret_hash"`
	PreviousSecretExpiresAt time.Time        `json:"previous_secret_expires_at"`
	SecretRotatedAt         time.Time        `json:"secret_rotated_at"`
	StatusIndex             int64            `json:"status_index"`
	PreviousStatusIndex     int64            `json:"previous_status_index"`
	SecretSuspendedAt       time.Time        `json:"secret_suspended_at"`
	TokenQuota              store.TokenQuota `json:"token_quota"`
	// Role is omitted for full admins and team keys, so only a stream
	// holding a read-only admin key has it, and an importer that does not
	// know it refuses that stream (unknown fields are refused) rather than
	// make the key a full admin.
	Role string `json:"role,omitempty"`
	// The key policy (store.Key's issue 17 fields), each omitted when the
	// key has none, for the same reason: an importer that does not know
	// them refuses a stream holding one rather than import a suspended,
	// expired or restricted key without its restriction. TokenTTL in
	// whole nanoseconds, as time.Duration.
	ExpiresAt    time.Time       `json:"expires_at,omitzero"`
	DisabledAt   time.Time       `json:"disabled_at,omitzero"`
	TokenTTL     time.Duration   `json:"token_ttl_ns,omitempty"`
	Audiences    []string        `json:"audiences,omitempty"`
	AllowedCIDRs []netip.Prefix  `json:"allowed_cidrs,omitempty"`
	Metadata     json.RawMessage `json:"metadata,omitempty"`
}

func toKeyLine(k store.Key) keyLine {
	return keyLine{
		Kind: kindKey, ClientID: k.ClientID, TeamID: k.TeamID, Name: k.Name, Permissions: k.Permissions,
		CreatedAt: k.CreatedAt, LastUsedAt: k.LastUsedAt, SecretHash: k.SecretHash, PreviousSecretHash: k.PreviousSecretHash,
		PreviousSecretExpiresAt: k.PreviousSecretExpiresAt, SecretRotatedAt: k.SecretRotatedAt,
		StatusIndex: k.StatusIndex, PreviousStatusIndex: k.PreviousStatusIndex,
		SecretSuspendedAt: k.SecretSuspendedAt, TokenQuota: k.TokenQuota, Role: k.Role,
		ExpiresAt: k.ExpiresAt, DisabledAt: k.DisabledAt, TokenTTL: k.TokenTTL,
		Audiences: k.Audiences, AllowedCIDRs: k.AllowedCIDRs, Metadata: k.Metadata,
	}
}

func (l keyLine) key() store.Key {
	return store.Key{
		ClientID: l.ClientID, TeamID: l.TeamID, Name: l.Name, Permissions: l.Permissions,
		CreatedAt: l.CreatedAt, LastUsedAt: l.LastUsedAt, SecretHash: l.SecretHash, PreviousSecretHash: l.PreviousSecretHash,
		PreviousSecretExpiresAt: l.PreviousSecretExpiresAt, SecretRotatedAt: l.SecretRotatedAt,
		StatusIndex: l.StatusIndex, PreviousStatusIndex: l.PreviousStatusIndex,
		SecretSuspendedAt: l.SecretSuspendedAt, TokenQuota: l.TokenQuota, Role: l.Role,
		ExpiresAt: l.ExpiresAt, DisabledAt: l.DisabledAt, TokenTTL: l.TokenTTL,
		Audiences: l.Audiences, AllowedCIDRs: l.AllowedCIDRs, Metadata: []byte(l.Metadata),
	}
}

type statusLine struct {
	Kind      string `json:"kind"`
	Allocated int64  `json:"allocated"`
	// Revoked is the bitmap of INVALID indices (LSB first), Suspended the
	// one of SUSPENDED indices, omitted when there are none (an importer
	// that does not know it refuses a stream holding one).
	Revoked   []byte `json:"revoked"`
	Suspended []byte `json:"suspended,omitempty"`
}

type denyLine struct {
	Kind  string    `json:"kind"`
	JTI   string    `json:"jti"`
	Until time.Time `json:"until"`
}

type auditLine struct {
	Kind  string          `json:"kind"`
	Event json.RawMessage `json:"event"`
	// StreamSeq is the event's cursor in the source's operator-wide
	// stream (AllAuditEvents), 0 when it had not reached it yet: what
	// webhook positions are counted in.
	StreamSeq int64 `json:"stream_seq"`
}

// webhookLine is an endpoint's delivery position and whether it is
// disabled. The retry state and the lease are not moved: they belong to
// the source's dispatchers.
type webhookLine struct {
	Kind           string    `json:"kind"`
	Endpoint       string    `json:"endpoint"`
	Delivered      uint64    `json:"delivered"`
	Disabled       bool      `json:"disabled"`
	DisabledAt     time.Time `json:"disabled_at"`
	DisabledReason string    `json:"disabled_reason"`
}

type endLine struct {
	Kind        string `json:"kind"`
	Singletons  int    `json:"singletons"`
	Keys        int    `json:"keys"`
	Denied      int    `json:"denied"`
	AuditEvents int    `json:"audit_events"`
	Webhooks    int    `json:"webhooks"`
}

// Summary counts what an export wrote or an import read and wrote.
type Summary struct {
	Singletons  int
	Keys        int
	Denied      int // deny-list entries (an import skips those expired since)
	AuditEvents int
	Webhooks    int // webhook endpoints' delivery states
	// StatusAllocated is the status-index counter; RevokedBits and
	// SuspendedBits the number of INVALID and SUSPENDED entries.
	StatusAllocated int64
	RevokedBits     int
	SuspendedBits   int
}
