// Package store is keygate's persistence contract: one interface, its
// records and the errors callers branch on. Backends live in sub-packages
// (store/bolt for the embedded default) and every one of them must pass the
// conformance suite in store/storetest, so the rest of keygate can treat them
// as interchangeable.
//
// The store knows nothing of HTTP, OAuth or cryptography: secrets arrive
// already hashed, private keys already encrypted. What it does own is
// atomicity: limits (keys per team) and read-modify-write changes happen
// inside the backend, never as check-then-act in a caller.
package store

import (
	"bytes"
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/keygate/keygate/credential"
)

// Errors callers branch on. Backends wrap them with context; test with
// errors.Is.
var (
	// ErrNotFound: no record with that identity (or not in the given team).
	ErrNotFound = errors.New("not found")
	// ErrAlreadyExists: a record with that identity exists already.
	ErrAlreadyExists = errors.New("already exists")
	// ErrTeamLimit: the team already holds the maximum number of keys.
	ErrTeamLimit = errors.New("team key limit reached")
	// ErrLastAdmin: DeleteKey of the last full admin key (team "", Role
	// RoleAdmin); the store refuses it atomically so that concurrent
	// deletes can never leave no full admin.
	ErrLastAdmin = errors.New("last full admin key")
	// ErrInvalid: the record breaks a rule of the contract (see Key).
	ErrInvalid = errors.New("invalid record")
	// ErrUnavailable: the backend could not be reached or did not answer in
	// time; the operation may or may not have happened.
	ErrUnavailable = errors.New("store unavailable")
)

// Key is one API key: an OAuth 2.0 confidential client.
//
// TeamID is empty for admin keys, which belong to no team and never count
// toward a team's limit.
//
// A key's ClientID carries its team's tag: credential.TagOf(ClientID) ==
// credential.TeamTag(TeamID), as credential.NewClientID makes them (any ID
// not in keygate's kgc_ form carries the admin tag, so operators may choose
// admin IDs freely). A sharded backend (Redis Cluster) relies on it to keep
// a key and its team's index in one shard while still finding the key from
// its ID alone; CreateKey refuses a key that breaks it with ErrInvalid.
type Key struct {
	ClientID    string    `json:"client_id"`
	TeamID      string    `json:"team_id"`
	Name        string    `json:"name"`
	Permissions []string  `json:"permissions"` // permission IDs from the catalog, not OAuth scopes
	CreatedAt   time.Time `json:"created_at"`
	// LastUsedAt is the zero time for a key that never obtained a token.
	LastUsedAt time.Time `json:"last_used_at"`

	// SecretHash is HMAC-SHA-256(pepper, secret). The secret itself is never
	// stored.
	// Tagged "-" so that marshalling a Key by mistake never publishes it.
	SecretHash []byte `json:"-"`
	// PreviousSecretHash stays valid until PreviousSecretExpiresAt, so that a
	// rotation does not break a running integration.
	PreviousSecretHash      []byte    `json:"-"`
	PreviousSecretExpiresAt time.Time `json:"previous_secret_expires_at"`
	SecretRotatedAt         time.Time `json:"secret_rotated_at"`

	// StatusIndex is the current secret's position in the Token Status
	// List, shared by all the tokens minted with it (a rotation gives the
	// new secret a new one); 0 means none assigned yet (indices start at 1
	// and are never reused).
	StatusIndex int64 `json:"status_index"`
	// PreviousStatusIndex is the status index of the secret generation a
	// rotation replaced (each generation has its own, so cutting one off
	// leaves the other working): tokens minted with the previous secret
	// carry it. 0 when there is none, or once it was revoked at the end of
	// the grace period (apikey sets its bit then).
	PreviousStatusIndex int64 `json:"previous_status_index"`

	// SecretSuspendedAt, when not zero, is when the current secret was
	// reported leaked (POST /v1/leaked-secrets): its generation is cut off
	// (status bit set) and SecretHash no longer is the HMAC of any secret
	// (apikey.SuspendedHash), so only a rotation, which clears this, gives
	// the key a working secret again.
	SecretSuspendedAt time.Time `json:"secret_suspended_at"`

	// TokenQuota is the key's own issuance quota (package quota); the
	// zero value means none of its own, so the server's default
	// (token_quota_per_key) applies.
	TokenQuota TokenQuota `json:"token_quota"`

	// Role is an admin key's role (team ""): RoleAdmin ("", every admin
	// key written before roles existed) or RoleRead. Empty for team keys.
	// An older keygate ignores it and would read a read-only key as a
	// full admin: the schema version is raised before the first RoleRead
	// key is stored (SchemaRaiser).
	Role string `json:"role,omitempty"`

	// The key policy fields of issue 17 (docs/ARCHITECTURE.md, "Key
	// policy"). Each one's zero value is "none of the key's own"; an older
	// keygate would ignore them and issue tokens to a suspended, expired or
	// restricted key, so apikey raises the schema to SchemaLevelKeyPolicy
	// before the first of them is written.

	// ExpiresAt, when not zero, is when the key stops getting tokens; a
	// token's exp is never later.
	ExpiresAt time.Time `json:"expires_at"`
	// DisabledAt, when not zero, is when the key was suspended: it gets no
	// token, and its secret generations' status list entries read
	// SUSPENDED until it is resumed (which clears this).
	DisabledAt time.Time `json:"disabled_at"`
	// TokenTTL is the lifetime of the key's tokens; 0 is the server's
	// token_ttl.
	TokenTTL time.Duration `json:"token_ttl"`
	// Audiences are the audiences the key's tokens may carry (from the
	// operator's audiences_allowed); the first is the default. Empty: the
	// server's audience only.
	Audiences []string `json:"audiences"`
	// AllowedCIDRs are the source addresses the key may be used from
	// (masked prefixes, IPv4 ones unmapped); empty: anywhere.
	AllowedCIDRs []netip.Prefix `json:"allowed_cidrs"`
	// Metadata is a compact JSON object (at most 1 KiB, 16 members), or
	// nil. Only the members an operator lists in metadata_claims ever
	// reach a token, under its one "metadata" claim.
	Metadata []byte `json:"metadata"`
}

// HasPolicy reports whether k holds any of the key policy fields an older
// keygate would ignore (the ones SchemaLevelKeyPolicy guards).
func (k Key) HasPolicy() bool {
	return !k.ExpiresAt.IsZero() || !k.DisabledAt.IsZero() || k.TokenTTL != 0 ||
		len(k.Audiences) > 0 || len(k.AllowedCIDRs) > 0 || len(k.Metadata) > 0
}

// Admin key roles (Key.Role).
const (
	RoleAdmin = ""     // full admin: scope keys:admin
	RoleRead  = "read" // read-only admin: scope keys:read
)

// TokenQuota is a key's issuance quota as stored: at most Limit tokens per
// Per ("hour" or "day"), Mode "enforce" or "log". apikey validates it; the
// store keeps it as given.
type TokenQuota struct {
	Limit int64  `json:"limit"`
	Per   string `json:"per"`
	Mode  string `json:"mode"`
}

// IsZero reports whether q is no quota of the key's own.
func (q TokenQuota) IsZero() bool { return q == TokenQuota{} }

// IsFullAdmin reports whether the key is a full admin key (DeleteKey
// refuses to remove the last one: ErrLastAdmin).
func (k Key) IsFullAdmin() bool { return k.TeamID == "" && k.Role == RoleAdmin }

// IsAdmin reports whether the key is an admin key (outside any team).
func (k Key) IsAdmin() bool { return k.TeamID == "" }

// DecoyKey is the record a backend's GetKey decodes (or copies) when it
// finds no key, so that a missing client ID costs what a present one does:
// an admin key's when admin is true, else a team key's, each with the
// field sizes of a typical key of its kind that has been used. An ID's
// kind shows in the ID itself (DecoyAdmin), so matching the decoy to it
// hides nothing the ID did not already say. No client ID can name a decoy
// (its ID does not carry its team's tag). Each call returns a fresh copy.
func DecoyKey(admin bool) Key {
	k := Key{
		ClientID:    "kgc_decoy00000000000000000000000",
		TeamID:      "decoy-team",
		Name:        "decoy key",
		Permissions: []string{"accounting_api"},
		CreatedAt:   time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC),
		LastUsedAt:  time.Date(2025, 1, 2, 3, 4, 5, 6_000_000, time.UTC),
		SecretHash: []byte{
			0x5d, 0x1c, 0x3a, 0x9e, 0x42, 0x77, 0x0b, 0xe1, 0x8f, 0x26, 0xc4, 0x13, 0x6a, 0xd0, 0x95, 0x3f,
			0x71, 0xb8, 0x2e, 0x04, 0xca, 0x59, 0x86, 0xf7, 0x1d, 0x63, 0xa2, 0x38, 0xef, 0x4b, 0x90, 0x07,
		},
		StatusIndex: 1,
	}
	if admin {
		// As apikey's bootstrap makes them: no team, no permissions.
		k.TeamID, k.Name, k.Permissions = "", "admin", nil
	}
	return k
}

// KeyNotFound is GetKey's ErrNotFound for clientID ("get key <id>: not
// found"), its text made only when read: a missing key must not cost more
// than a present one either (GetKey).
func KeyNotFound(clientID string) error { return &keyNotFound{clientID} }

type keyNotFound struct{ clientID string }

func (e *keyNotFound) Error() string { return "get key " + e.clientID + ": " + ErrNotFound.Error() }
func (e *keyNotFound) Unwrap() error { return ErrNotFound }

// adminTag is the tag admin keys' IDs carry.
var adminTag = credential.TeamTag("")

// DecoyAdmin reports which decoy (DecoyKey) stands in for a missing
// clientID: an admin key's when the ID has an admin key's tag.
func DecoyAdmin(clientID string) bool { return credential.TagOf(clientID) == adminTag }

// SigningKey is one JWT signing key pair. The private key is sealed by the
// caller (AES-256-GCM under the master key); the store only keeps bytes.
type SigningKey struct {
	KID string `json:"kid"`
	Alg string `json:"alg"`
	// PrivateKeySealed is the encrypted PKCS #8 DER private key.
	PrivateKeySealed []byte    `json:"private_key_sealed"`
	CreatedAt        time.Time `json:"created_at"`
	// SignsFrom is when the key starts (started) signing: a next key is
	// published ahead of it, and every instance switches to it by its clock
	// at this absolute time. Zero in records written before key states
	// existed: the active key then signed from CreatedAt (signing.Resolve).
	SignsFrom time.Time `json:"signs_from,omitzero"`
}

// RetiredSigningKey is a key that no longer signs but whose public half is
// still published until PublishUntil, so tokens it signed keep verifying.
type RetiredSigningKey struct {
	SigningKey
	PublishUntil time.Time `json:"publish_until"`
	// RetiredAt is when it stopped signing (zero in records written before
	// key states existed).
	RetiredAt time.Time `json:"retired_at,omitzero"`
}

// SigningKeys is the whole signing key set, stored and updated as one record
// so that every change of state (a next key published, promoted, a key
// retired, removed or revoked) is one atomic compare-and-set every instance
// agrees on.
//
// Compatibility: the record is {"active": …, "retired": […]} as before key
// states; "next", "signs_from" and "retired_at" are only added. A record
// written by older code loads with no next key and zero times, which
// signing.Resolve reads as "the active key signs since it was created"; a
// record written by this code and read by older code loses only the next
// key (it was not signing) and the times.
type SigningKeys struct {
	// Active signs new tokens: the "current" key. Nil only before the first
	// start.
	Active  *SigningKey         `json:"active"`
	Retired []RetiredSigningKey `json:"retired"`
	// MasterKeyID is the ID (masterkey.Key.ID) of the master key every
	// private key of the set is sealed under; empty in a set written before
	// sets recorded it. Whoever adds a sealed key checks it in the same
	// update (signing.CheckMasterKey), so an instance still holding a
	// master key the store was rotated away from cannot add one.
	MasterKeyID string `json:"master_key_id,omitempty"`
	// Next is published but does not sign until its SignsFrom; then it
	// replaces Active, which is retired. Nil when no rotation is scheduled.
	Next *SigningKey `json:"next,omitempty"`
}

// StatusList is the stored state of the Token Status List.
type StatusList struct {
	// Statuses holds 2 bits per index in the draft's layout
	// (draft-ietf-oauth-status-list §4.1): entries packed least
	// significant bits first, entry i at bits (2i mod 8) of byte
	// ⌊2i/8⌋. Each entry is a Status. Bytes past its end are all zero
	// (VALID).
	Statuses []byte
	// Allocated is the highest index NextStatusIndex has handed out.
	Allocated int64
}

// Status is one status list entry (draft-ietf-oauth-status-list §7.1).
type Status uint8

const (
	// StatusValid: the tokens of the index are valid.
	StatusValid Status = 0
	// StatusInvalid: revoked for good (a deleted key, an ended or leaked
	// secret). Terminal: no later write changes it.
	StatusInvalid Status = 1
	// StatusSuspended: the key is suspended; resuming sets StatusValid.
	StatusSuspended Status = 2
)

// Entry returns index i's status in a Statuses array (VALID past its end).
func (l StatusList) Entry(i int64) Status {
	b := i / 4
	if i < 0 || b >= int64(len(l.Statuses)) {
		return StatusValid
	}
	return Status(l.Statuses[b] >> (uint(i%4) * 2) & 3)
}

// MaxStatusIndex bounds status list indices on every backend (Redis keeps
// the list in one string of at most 512 MiB: 2^31 two-bit entries).
const MaxStatusIndex = 1<<31 - 1

// TeamQuery selects a page of teams for Store.Teams. The zero value
// selects every team.
type TeamQuery struct {
	// Prefix keeps the teams whose ID starts with it.
	Prefix string
	// After keeps the teams whose ID sorts after it: the last ID of the
	// previous page.
	After string
	// Limit bounds how many teams are returned; 0 means no bound.
	Limit int
}

// TeamCount is a team and how many keys it holds (see Store.Teams).
type TeamCount struct {
	TeamID string
	Keys   int
}

// Store is the persistence contract every backend implements.
//
// Shared rules, enforced by store/storetest:
//   - Times come back in UTC with at least millisecond precision; a zero
//     time stays zero.
//   - Returned values are copies: changing them changes nothing stored.
//   - Update functions (UpdateKey, UpdateSigningKeys) run inside the
//     backend's atomic step. They must be quick, must not call the store
//     (a backend may deadlock) and must have no side effects: an optimistic
//     backend (Redis WATCH) may call them more than once.
//   - A cancelled context makes an operation fail; ErrUnavailable is for a
//     backend that does not answer.
type Store interface {
	// WebhookStates keeps webhook delivery positions (see its block below).
	WebhookStates

	// CreateKey inserts k. When maxPerTeam > 0 and k belongs to a team, it
	// fails with ErrTeamLimit if the team already holds maxPerTeam keys; for
	// an admin key (empty TeamID) maxPerTeam bounds the number of admin keys
	// instead. The check and the insert are one atomic step. ErrAlreadyExists
	// when the client ID is taken; ErrInvalid when the ID does not carry the
	// team's tag. Returns only once the key is durable.
	//
	// audit, at most one event (see AuditStore), is appended to the key's
	// team's audit trail in the same atomic step: both are written or
	// neither. Its TeamID and ClientID must be k's (else ErrInvalid).
	CreateKey(ctx context.Context, k Key, maxPerTeam int, audit ...AuditEvent) error

	// GetKey returns the key with that client ID, or ErrNotFound.
	//
	// A missing ID costs what a present one does: the backend does a found
	// record's work (a round trip, a decode, a copy) on DecoyKey's record
	// before it answers ErrNotFound, and a cache of records caches absence
	// too, so client authentication's timing does not tell which IDs
	// exist (docs/ARCHITECTURE.md, "Equal cost for unknown client IDs").
	GetKey(ctx context.Context, clientID string) (Key, error)

	// ListKeys returns the keys of one team (teamID "" lists admin keys),
	// oldest first (ties by client ID); an unknown team yields an empty,
	// non-nil list, not an error.
	ListKeys(ctx context.Context, teamID string) ([]Key, error)

	// Teams returns the teams that hold at least one key and match q, with
	// their numbers of keys, ordered by team ID (byte order). Admin keys
	// (team "") are not a team and are never listed; a team whose last key
	// was deleted is gone. No match yields an empty, non-nil list.
	Teams(ctx context.Context, q TeamQuery) ([]TeamCount, error)

	// ForEachKey calls fn for every key of every team and every admin key,
	// in no particular order, stopping at the first error fn returns. fn
	// runs outside any transaction and may call the store; a key present for
	// the whole walk is visited exactly once.
	ForEachKey(ctx context.Context, fn func(Key) error) error

	// UpdateKey atomically replaces the key with update(current). If update
	// returns an error nothing changes and that error is returned. The client
	// ID and team ID cannot be changed. ErrNotFound when absent.
	//
	// audit, at most one event, is appended in the same atomic step as the
	// change, with its Fields set to ChangedFields(current, new); nothing
	// is appended when nothing is written (update's error, not found).
	UpdateKey(ctx context.Context, clientID string, update func(Key) (Key, error), audit ...AuditEvent) (Key, error)

	// DeleteKey removes the key if it belongs to teamID; ErrNotFound if it
	// does not exist or belongs to another team (nothing changes then).
	// ErrLastAdmin, with nothing changed, when it is the only full admin
	// key left (IsFullAdmin): the count and the removal are one atomic step.
	//
	// audit, at most one event, is appended in the same atomic step as the
	// removal, with its StatusIndex set to the removed key's: the status
	// bit the caller set before (RevokeStatus lives in another Redis
	// Cluster slot, so it cannot be part of this step; it is idempotent).
	DeleteKey(ctx context.Context, teamID, clientID string, audit ...AuditEvent) error

	// TouchKeys advances LastUsedAt of each listed key to the given time,
	// never moving it backwards. Unknown client IDs are ignored: a key may be
	// deleted between its use and the flush.
	TouchKeys(ctx context.Context, lastUsed map[string]time.Time) error

	// CreateSingleton stores value under name unless a value is there
	// already, and returns the value that is stored afterwards: the caller's
	// own if it won, the earlier one otherwise. Used for process-wide
	// one-of-a-kind secrets such as the pepper.
	CreateSingleton(ctx context.Context, name string, value []byte) (stored []byte, err error)

	// CompareAndSwapSingleton replaces the value stored under name with
	// value only if the stored one is old, byte for byte, in one atomic
	// step, and reports whether it did: of concurrent swaps from the same
	// old value exactly one wins. ErrNotFound when nothing is stored under
	// name; ErrInvalid for an empty value. Durable when it returns true.
	// Used to re-seal the pepper under a new master key
	// (apikey.RotateMasterKey) without ever replacing a value it did not
	// read.
	CompareAndSwapSingleton(ctx context.Context, name string, old, value []byte) (swapped bool, err error)

	// SigningKeys returns the current signing key set (zero value before the
	// first start).
	SigningKeys(ctx context.Context) (SigningKeys, error)

	// UpdateSigningKeys atomically replaces the signing key set with
	// update(current). If update returns an error nothing changes.
	UpdateSigningKeys(ctx context.Context, update func(SigningKeys) (SigningKeys, error)) (SigningKeys, error)

	// NextStatusIndex hands out a fresh status list index (≥ 1), unique
	// across every caller and instance, never reused. An index taken by a
	// create that then fails is simply burned.
	NextStatusIndex(ctx context.Context) (int64, error)

	// RevokeStatus sets idx's entry to StatusInvalid, whatever it was.
	// Idempotent.
	RevokeStatus(ctx context.Context, idx int64) error

	// SetStatus writes idx's entry whole (never OR-ed into it) as st,
	// which is StatusValid or StatusSuspended (suspend and resume), in one
	// atomic step that leaves an entry already StatusInvalid as it is
	// (INVALID is terminal; that is not an error). Any other st, or an
	// index outside 1..MaxStatusIndex, is ErrInvalid and changes nothing.
	SetStatus(ctx context.Context, idx int64, st Status) error

	// StatusList returns every entry and the highest allocated index.
	StatusList(ctx context.Context) (StatusList, error)

	// DenyToken puts an access token's jti on the deny list until its
	// expiry; every instance sees it. Entries past until are dropped.
	DenyToken(ctx context.Context, jti string, until time.Time) error

	// TokenDenied reports whether jti is on the deny list (and not expired).
	TokenDenied(ctx context.Context, jti string) (bool, error)

	// PruneDeniedTokens removes deny-list entries that expired at or before
	// now, at most MaxDenyPrune per call, and returns how many it removed
	// (call again until 0). Neither DenyToken nor TokenDenied walks the
	// list, so their cost does not grow with it; this is the background
	// round's work (apikey.AuditWorker). A backend whose entries expire by
	// themselves (Redis TTLs) returns 0.
	PruneDeniedTokens(ctx context.Context, now time.Time) (int, error)

	// KeyBySecretHash returns the key whose SecretHash or
	// PreviousSecretHash equals hash (an HMAC of a reported secret; see
	// POST /v1/leaked-secrets), or ErrNotFound. A backend keeps an index
	// from every non-empty SecretHash and PreviousSecretHash of its keys to
	// the key's client ID, maintained by CreateKey, CreateKeys (BulkLoader),
	// UpdateKey (an update that changes either hash) and DeleteKey, and
	// built on open for keys written before it existed. The answer is
	// always checked against the key as stored now, so an index entry left
	// behind by an interrupted write (Redis Cluster cannot write a key and
	// an entry in another slot atomically) finds nothing. Whether the
	// previous secret is still live is the caller's to judge. The work
	// does not depend on whether hash is found beyond the read of the key.
	KeyBySecretHash(ctx context.Context, hash []byte) (Key, error)

	// Ping reports whether the backend answers.
	Ping(ctx context.Context) error

	// Close releases the backend. The store must not be used afterwards.
	Close() error

	UsageStore // usage per key (below)
	// The audit trail (#13): see AuditStore.
	AuditStore
}

// Feature finds an optional interface T of st (BulkLoader, Exporter,
// SharedThrottle…), looking through wrappers that Unwrap
// (store/storemetrics): a wrapper cannot know every optional interface, so
// it hides them and Unwrap shows what it wraps.
func Feature[T any](st Store) (T, bool) {
	for st != nil {
		if f, ok := st.(T); ok {
			return f, true
		}
		u, ok := st.(interface{ Unwrap() Store })
		if !ok {
			break
		}
		st = u.Unwrap()
	}
	var zero T
	return zero, false
}

// TeamRegistry is an optional feature of a store whose list of teams is
// kept beside the team indexes and cannot change in the same atomic step
// as them (Redis Cluster: each team's index in its own slot), so drift is
// possible — after a crash between the two writes, say — and is repaired
// by a walk. apikey.AuditWorker runs RepairTeams at most every
// apikey.DefaultTeamsRepairEvery; until one walk has completed, Teams
// answers without the registry.
type TeamRegistry interface {
	// RepairTeams walks the team indexes and makes the registry agree:
	// teams with keys added, teams without removed.
	RepairTeams(ctx context.Context) (TeamRepair, error)
	// TeamsComplete reports whether a walk has completed the registry
	// (until then Teams answers without it, and the repair is due at once).
	TeamsComplete(ctx context.Context) (bool, error)
}

// StatusSchedule is an optional feature of a store (bbolt, Redis): a
// schedule of keys whose status entries will need work at a known time —
// the end of a rotated secret's grace period, or at once after a change
// whose entries follow the record (a leaked secret, a suspension). The
// caller writes the entry before the change it is for (apikey: Rotate,
// cutOff, Update), so a crash between the two leaves an entry that finds
// nothing to do, never a change without an entry; an entry carries no
// more than the key's client ID and a time, and whoever handles it reads
// the key as stored then. It spares a walk of every key to find the few
// due: apikey.AuditWorker reads what is due each minute and walks every
// key only now and then, as a repair (docs/scale.md, "The thirteenth
// change"). Entries with the same client ID and time are one entry.
type StatusSchedule interface {
	// ScheduleStatusCheck records that clientID's status entries need a
	// look at at (durably, when it returns nil).
	ScheduleStatusCheck(ctx context.Context, clientID string, at time.Time) error
	// DueStatusChecks returns at most limit entries due at or before now,
	// earliest first.
	DueStatusChecks(ctx context.Context, now time.Time, limit int) ([]StatusCheck, error)
	// DropStatusCheck removes exactly the entry c (not another entry of the
	// same key); removing one that is not there is not an error.
	DropStatusCheck(ctx context.Context, c StatusCheck) error
}

// StatusCheck is one entry of a StatusSchedule.
type StatusCheck struct {
	ClientID string
	At       time.Time
}

// StatusScheduleComplete names the singleton saying that every key whose
// status entries need work has its entry in the StatusSchedule: written by
// a complete walk of every key (apikey.RevokeEndedGenerations) or by a
// seed into a new store. Until it is there, the walk runs every minute as
// it did before the schedule existed. An export never carries it
// (storeio/export.go): the schedule is not exported, and the target's
// first start completes its own.
const StatusScheduleComplete = "status-schedule-v1"

// TeamRepair is what one RepairTeams walk changed.
type TeamRepair struct {
	// Walked is false when another instance holds the walk's lease (the
	// walk is one instance's at a time) and nothing was done.
	Walked           bool
	Teams            int // teams with keys found
	Added, Removed   int
	RegistryComplete bool // the registry may be used by Teams from now on
}

// SharedThrottle is an optional feature of a store that several instances
// share (Redis): the buckets of package throttle's failed-authentication
// throttle, counted together, and a broadcast of throttles, so that a
// guesser who spreads attempts over the instances behind a load balancer
// meets one limit. Only failures reach it: a request that authenticates
// reads its instance's memory alone. server/throttle.go adapts it to
// throttle.Shared; a store without it leaves each instance to count its
// own failures.
type SharedThrottle interface {
	// AddThrottleFailures adds one failure to each of the buckets fs, all
	// in one atomic step on the caller's clock (the GCRA of package
	// throttle), and returns the buckets after. The buckets of one call
	// are those of one failure; group names what they have in common (the
	// source), for a backend that places data by it (a Redis Cluster's
	// slot).
	AddThrottleFailures(ctx context.Context, now time.Time, group string, fs []ThrottleFailure) ([]ThrottleBucket, error)
	// AnnounceThrottle tells every instance listening that bucket is
	// empty until until.
	AnnounceThrottle(ctx context.Context, bucket string, until time.Time) error
	// ListenThrottles calls f for every announcement of any instance, this
	// one included, until ctx ends.
	ListenThrottles(ctx context.Context, f func(bucket string, until time.Time))
}

// ThrottleFailure is one failure to add to the shared bucket named Bucket,
// whose limits are Every (one failure is forgiven per interval),
// Threshold (how far the bucket's theoretical arrival time may run ahead
// of now before it is empty) and Span (how long an episode of throttling
// lasts after the bucket was last found empty).
type ThrottleFailure struct {
	Bucket                 string
	Every, Threshold, Span time.Duration
}

// ThrottleBucket is a shared bucket after a failure: its theoretical
// arrival time, and whether that failure emptied it at the start of a new
// episode (exactly one caller hears Started for an episode).
type ThrottleBucket struct {
	TAT     time.Time
	Started bool
}

// BulkLoader is an optional fast path a backend may offer for writing many
// keys at once: seeding a store for a benchmark (`keygate seed`) or a
// migration run by an operator. It is not for the management API: it
// ignores team limits, and its durability and atomicity are per call as
// each backend documents, not per key. Callers find it with a type
// assertion (st.(store.BulkLoader)) and batch their keys themselves (bbolt
// holds a whole call in memory as one transaction; tens of thousands of
// keys per call is a good size).
type BulkLoader interface {
	// CreateKeys inserts keys without any team limit. Every key must pass
	// CheckClientID (else ErrInvalid and nothing is written); a client ID
	// that exists already, or appears twice in keys, fails the call with
	// ErrAlreadyExists. Whether the rest of a failed call is written is the
	// backend's to document (bbolt: never; Redis: see there). The keys'
	// StatusIndex values are taken as given: allocate them with
	// NextStatusIndices. Returns once the written keys are durable as far
	// as the backend makes writes durable.
	CreateKeys(ctx context.Context, keys []Key) error

	// NextStatusIndices allocates n ≥ 1 consecutive status list indices in
	// one step and returns the first: first, first+1, …, first+n-1 are
	// unique across every caller and instance, as from NextStatusIndex,
	// with which they share the counter.
	NextStatusIndices(ctx context.Context, n int) (first int64, err error)
}

// CheckClientID enforces the tag rule of Key for backends.
func CheckClientID(k Key) error {
	if k.ClientID == "" {
		return fmt.Errorf("%w: empty client ID", ErrInvalid)
	}
	if credential.TagOf(k.ClientID) != credential.TeamTag(k.TeamID) {
		return fmt.Errorf("%w: client ID %s does not carry the tag of team %q (make IDs with credential.NewClientID)", ErrInvalid, k.ClientID, k.TeamID)
	}
	return nil
}

// CheckBatch is CreateKeys' validation, for backends: every key passes
// CheckClientID, and no client ID is given twice. It writes nothing and
// reads no store, so a backend can run it before any I/O.
func CheckBatch(keys []Key) error {
	seen := make(map[string]struct{}, len(keys))
	for i, k := range keys {
		if err := CheckClientID(k); err != nil {
			return fmt.Errorf("key %d of %d: %w", i+1, len(keys), err)
		}
		if _, dup := seen[k.ClientID]; dup {
			return fmt.Errorf("key %s: %w (given twice)", k.ClientID, ErrAlreadyExists)
		}
		seen[k.ClientID] = struct{}{}
	}
	return nil
}

// SecretHashes are the index entries of k for KeyBySecretHash: its
// non-empty SecretHash and PreviousSecretHash (shared, not copied).
func SecretHashes(k Key) [][]byte {
	var out [][]byte
	for _, h := range [][]byte{k.SecretHash, k.PreviousSecretHash} {
		if len(h) > 0 {
			out = append(out, h)
		}
	}
	return out
}

// SecretIndexChanges is what an update from old to new does to the secret
// index: the hashes new holds and old did not (to add), and the hashes
// old held and new does not (to remove). For backends.
func SecretIndexChanges(old, new Key) (add, remove [][]byte) {
	oldH, newH := SecretHashes(old), SecretHashes(new)
	has := func(list [][]byte, h []byte) bool {
		return slices.ContainsFunc(list, func(x []byte) bool { return bytes.Equal(x, h) })
	}
	for _, h := range newH {
		if !has(oldH, h) {
			add = append(add, h)
		}
	}
	for _, h := range oldH {
		if !has(newH, h) {
			remove = append(remove, h)
		}
	}
	return add, remove
}

// HoldsSecretHash reports whether hash is k's SecretHash or
// PreviousSecretHash, comparing in constant time: the check every
// KeyBySecretHash makes on the key its index names.
func HoldsSecretHash(k Key, hash []byte) bool {
	if len(hash) == 0 {
		return false
	}
	cur := subtle.ConstantTimeCompare(k.SecretHash, hash)
	prev := subtle.ConstantTimeCompare(k.PreviousSecretHash, hash)
	return cur|prev == 1
}

// ---- Usage per key ------------------------------------------------------
//
// Usage is kept outside the key records, so writing it never changes a key
// (and never invalidates a cached one): per team, one counter pair (tokens
// issued, failed authentications) per key per bucket. Each use counts in
// an hourly bucket and in the daily bucket of the same UTC day; the hourly
// ones are kept for UsageHourRetention after their hour ends, the daily ones
// for UsageDayRetention after their day ends. Only buckets with activity
// exist. Usage of a deleted key stays until it ages out, so a team's total
// keeps counting it.

// Granularity is the width of a usage bucket.
type Granularity int

const (
	// Hour buckets start on the full hour (UTC).
	Hour Granularity = iota + 1
	// Day buckets start at midnight UTC.
	Day
)

// Retention of usage buckets, counted from the end of the bucket.
const (
	UsageHourRetention = 48 * time.Hour
	UsageDayRetention  = 35 * 24 * time.Hour
)

// Size is the width of one bucket: an hour or a day.
func (g Granularity) Size() time.Duration {
	if g == Day {
		return 24 * time.Hour
	}
	return time.Hour
}

// Retention is how long a bucket of g is kept after it ends.
func (g Granularity) Retention() time.Duration {
	if g == Day {
		return UsageDayRetention
	}
	return UsageHourRetention
}

// Truncate returns the start of the bucket of g that holds t, in UTC.
func (g Granularity) Truncate(t time.Time) time.Time {
	// UTC hours and days are whole multiples of their size since the Unix
	// epoch (no leap seconds in Go's time), so Truncate is exact.
	return t.UTC().Truncate(g.Size())
}

// Valid reports whether g is Hour or Day.
func (g Granularity) Valid() bool { return g == Hour || g == Day }

func (g Granularity) String() string {
	switch g {
	case Hour:
		return "hour"
	case Day:
		return "day"
	}
	return fmt.Sprintf("Granularity(%d)", int(g))
}

// UsageKept reports whether a bucket of g starting at start is still kept
// at now: it has not begun after now and ended less than g's retention
// before now. Every backend decides by it, so Usage answers the same
// whether or not PruneUsage has run yet.
func UsageKept(g Granularity, start, now time.Time) bool {
	return !start.After(now) && now.Before(start.Add(g.Size()+g.Retention()))
}

// UsageDelta is what one flush adds to one key's counters for one hour.
type UsageDelta struct {
	TeamID   string
	ClientID string
	// Hour is any time in the hour the uses fell in; the backend truncates.
	Hour     time.Time
	Tokens   int64 // access tokens issued
	Failures int64 // failed authentications (a known client ID, a wrong secret)
}

// UsageQuery selects usage for Store.Usage.
type UsageQuery struct {
	TeamID      string
	Granularity Granularity
	// From and To select the buckets whose start lies in [From, To).
	From, To time.Time
	// Now decides retention (UsageKept): buckets not kept at Now are never
	// returned, whether or not they are still stored.
	Now time.Time
}

// UsageBucket is one key's counters in one bucket.
type UsageBucket struct {
	ClientID string
	Start    time.Time // UTC
	Tokens   int64
	Failures int64
}

// UsageStore is the part of Store that keeps usage per key.
type UsageStore interface {
	// AddUsage adds each delta's counts to its key's hourly bucket and to
	// the daily bucket of the same UTC day, in the delta's team; buckets no
	// longer kept at now (UsageKept) are skipped. Increments are atomic, so
	// concurrent calls (several instances) add up. A delta with an empty
	// team or client ID, a client ID without the team's tag
	// (CheckClientID) or a negative count fails the call with ErrInvalid
	// before anything is written. A call that fails otherwise may have
	// added part of the batch.
	AddUsage(ctx context.Context, now time.Time, deltas []UsageDelta) error

	// Usage returns the team's buckets of q.Granularity selected by q, kept
	// at q.Now, ordered by start, then client ID; only buckets with a
	// non-zero counter exist. No usage yields an empty, non-nil list.
	// ErrInvalid for an invalid granularity.
	Usage(ctx context.Context, q UsageQuery) ([]UsageBucket, error)

	// PruneUsage removes the buckets of every team that are no longer kept
	// at now. A backend whose buckets expire by themselves (Redis, with a
	// time to live set from the writer's clock) may do nothing.
	PruneUsage(ctx context.Context, now time.Time) error
}

// CheckUsage is AddUsage's validation, for backends. It reads nothing and
// writes nothing.
func CheckUsage(deltas []UsageDelta) error {
	for i, d := range deltas {
		switch {
		case d.TeamID == "":
			return fmt.Errorf("usage %d of %d: %w: empty team ID", i+1, len(deltas), ErrInvalid)
		case d.Tokens < 0 || d.Failures < 0:
			return fmt.Errorf("usage %d of %d: %w: negative count", i+1, len(deltas), ErrInvalid)
		}
		if err := CheckClientID(Key{ClientID: d.ClientID, TeamID: d.TeamID}); err != nil {
			return fmt.Errorf("usage %d of %d: %w", i+1, len(deltas), err)
		}
	}
	return nil
}

// ---- Audit trail (#13) ----
//
// Every change of a key is recorded as an AuditEvent in its team's trail,
// written by the same atomic step as the change (CreateKey, UpdateKey,
// DeleteKey take the event); events that change no key (a revoked token, a
// refused management call) are appended alone. Each team's trail is read
// newest first with a cursor; an operator-wide stream of all teams is fed
// from the teams' trails and may lag behind them (MoveAudit) but loses
// nothing. Events never hold a secret, a hash, a token or a pepper.

// AuditAction is what an event records; the set is closed (ValidAuditAction).
type AuditAction string

// The audit actions.
const (
	AuditKeyCreated   AuditAction = "key.created"
	AuditKeyUpdated   AuditAction = "key.updated"
	AuditKeyRotated   AuditAction = "key.rotated"
	AuditKeyDeleted   AuditAction = "key.deleted"
	AuditTokenRevoked AuditAction = "token.revoked"
	// AuditAuthFailed is a management API call refused for lack of
	// authority; Count says how many were folded into one event.
	AuditAuthFailed AuditAction = "management.auth_failed"
	// AuditWebhookDisabled is a webhook endpoint keygate stopped
	// delivering to after it failed every attempt for webhook_give_up
	// (package webhook); Reason names the endpoint by index and ID.
	AuditWebhookDisabled AuditAction = "webhook.disabled"
	// AuditSecretLeaked is a key's secret reported leaked (POST
	// /v1/leaked-secrets): its generation was cut off. Fields names which
	// secret ("secret" for the current one, "previous_secret" for the one
	// kept during a grace period), as ChangedFields does.
	AuditSecretLeaked AuditAction = "key.secret_leaked"
	// AuditAuthThrottled is the start of a throttle of failed client
	// authentication (package throttle): one event per episode, not per
	// failure. Reason is "client" (a source's failures for one client ID,
	// named in ClientID when the key exists) or "source" (a source's
	// failures for any client IDs).
	AuditAuthThrottled AuditAction = "auth.throttled"
	// AuditStoreBackedUp is a copy of the whole store handed to an admin
	// (GET /v1/store/backup): every key's hash, the sealed pepper and
	// signing keys left keygate, so who took it is on record.
	AuditStoreBackedUp AuditAction = "store.backed_up"
	// AuditSessionCreated is a management session started (issue 16): by
	// a token exchange (Actor: the exchanging client, OnBehalfOf the user,
	// Via "token_exchange") in the trail of the session's team.
	AuditSessionCreated AuditAction = "session.created"
	// AuditTeamDeleted is a team offboarded (DELETE /v1/teams/{team}):
	// its keys, sessions and usage removed (each key also has its
	// key.deleted event); Reason holds the counts.
	AuditTeamDeleted AuditAction = "team.deleted"
	// Console sessions (POST/DELETE /v1/teams/{team}/console-sessions,
	// POST /console/session): Actor.ID is the key that minted the session
	// (created, redeemed) or the caller that ended it, Actor.OnBehalfOf the
	// session's user, Fields the session's ID.
	AuditConsoleSessionCreated  AuditAction = "console_session.created"
	AuditConsoleSessionRedeemed AuditAction = "console_session.redeemed"
	AuditConsoleSessionEnded    AuditAction = "console_session.ended"
)

// AuditActions lists every action, in the order of the constants above.
var AuditActions = []AuditAction{AuditKeyCreated, AuditKeyUpdated, AuditKeyRotated, AuditKeyDeleted, AuditTokenRevoked, AuditAuthFailed, AuditWebhookDisabled, AuditSecretLeaked, AuditAuthThrottled, AuditStoreBackedUp, AuditSessionCreated, AuditTeamDeleted, AuditConsoleSessionCreated, AuditConsoleSessionRedeemed, AuditConsoleSessionEnded}

// ValidAuditAction reports whether a is one of AuditActions.
func ValidAuditAction(a AuditAction) bool {
	for _, x := range AuditActions {
		if a == x {
			return true
		}
	}
	return false
}

// Actor types.
const (
	ActorAdminKey = "admin_key"
	ActorTeamKey  = "team_key"
	ActorSystem   = "system"
	// ActorAnonymous is a caller that proved no identity (a refused call
	// without a valid token).
	ActorAnonymous = "anonymous"
)

// Outcomes.
const (
	OutcomeSuccess = "success"
	OutcomeDenied  = "denied"
)

// AuditActor is who acted. OnBehalfOf and Via leave room for delegation
// (a console user acting through a session, an exchanged token).
type AuditActor struct {
	Type       string // ActorAdminKey, ActorTeamKey, ActorSystem or ActorAnonymous
	ID         string // a client ID; empty when unknown (a bad token)
	OnBehalfOf string
	Via        string
}

// AuditEvent is one entry of the audit trail.
type AuditEvent struct {
	// Seq is the event's cursor in the view it was read from, assigned by
	// the store in the committing step (never a clock reading). Ignored on
	// writes.
	Seq int64
	// ID is unique and sortable (a ULID), made by the caller.
	ID     string
	Time   time.Time
	Action AuditAction
	Actor  AuditActor
	// TeamID is the team whose trail holds the event ("" for admin keys and
	// for calls that name no team).
	TeamID string
	// ClientID is the key acted on, if any.
	ClientID   string
	RequestID  string
	SourceAddr string
	UserAgent  string
	Outcome    string // OutcomeSuccess or OutcomeDenied
	// Fields names what a key.updated or key.rotated changed (see
	// ChangedFields); Reason says why a call was denied.
	Fields []string
	Reason string
	// Count is how many occurrences the event stands for (≥ 1).
	Count int
	// StatusIndex, on key.deleted, is the status list bit set before the
	// removal.
	StatusIndex int64
}

// AuditQuery selects events. The zero value selects the newest
// DefaultAuditLimit events of every action.
type AuditQuery struct {
	// TeamID keeps one team's events; only Store.AllAuditEvents reads it
	// (AuditEvents takes the team as an argument). HasTeam tells team ""
	// (admin keys) from no filter.
	TeamID  string
	HasTeam bool
	// Actions keeps events with one of these actions; empty keeps all.
	Actions []AuditAction
	// Since (inclusive) and Until (exclusive) bound the event time; zero
	// means unbounded.
	Since, Until time.Time
	// After continues a page: only events with Seq < After. 0 starts at the
	// newest.
	After int64
	// NewerThan keeps only events with Seq > NewerThan (polling for new
	// events).
	NewerThan int64
	// Limit bounds the page, 1…MaxAuditLimit; 0 means DefaultAuditLimit.
	Limit int
}

// MaxDenyPrune bounds one PruneDeniedTokens call: one short write
// transaction at a time.
const MaxDenyPrune = 1000

// Page sizes and the work bound of one audit read.
const (
	DefaultAuditLimit = 100
	MaxAuditLimit     = 1000
	// MaxAuditScan bounds how many events one read examines, so a filter
	// that matches little cannot make one call walk a whole trail: the page
	// then comes back short (even empty) with Next set.
	MaxAuditScan = 10000
	// AuditPruneSlack: see AuditStore.PruneAudit.
	AuditPruneSlack = 10 * time.Minute
)

// AuditPage is one page of events, newest first.
type AuditPage struct {
	Events []AuditEvent
	// Next is the After of the following page; 0 when no older event can
	// match. A page may be short, even empty, while Next is not 0.
	Next int64
}

// Matches reports whether ev passes q's filters (not the cursor bounds).
func (q AuditQuery) Matches(ev AuditEvent) bool {
	if q.HasTeam && ev.TeamID != q.TeamID {
		return false
	}
	if len(q.Actions) > 0 {
		found := false
		for _, a := range q.Actions {
			found = found || a == ev.Action
		}
		if !found {
			return false
		}
	}
	if !q.Since.IsZero() && ev.Time.Before(q.Since) {
		return false
	}
	if !q.Until.IsZero() && !ev.Time.Before(q.Until) {
		return false
	}
	return true
}

// PageLimit is q.Limit with the default applied and the range enforced.
func (q AuditQuery) PageLimit() (int, error) {
	switch {
	case q.Limit == 0:
		return DefaultAuditLimit, nil
	case q.Limit < 1 || q.Limit > MaxAuditLimit:
		return 0, fmt.Errorf("%w: audit page limit %d is outside 1…%d", ErrInvalid, q.Limit, MaxAuditLimit)
	}
	return q.Limit, nil
}

// AuditStore is the audit part of Store.
type AuditStore interface {
	// AppendAudit appends an event that goes with no key change (a revoked
	// token, a refused call) to its team's trail. Durable on return.
	AppendAudit(ctx context.Context, ev AuditEvent) error

	// AuditEvents returns a page of one team's trail ("" for admin keys and
	// team-less events), newest first. Every event committed before the
	// call is visible.
	AuditEvents(ctx context.Context, teamID string, q AuditQuery) (AuditPage, error)

	// AllAuditEvents returns a page of the operator-wide stream of every
	// team, newest first: in the order events reached the stream, which
	// keeps each team's trail order but may interleave teams otherwise
	// than they committed. Its Seq cursors are its own (not those of
	// AuditEvents), and a new event always gets a higher one, so polling
	// with NewerThan misses nothing. It may lag behind the teams' trails
	// until MoveAudit has run, but every event reaches it once.
	AllAuditEvents(ctx context.Context, q AuditQuery) (AuditPage, error)

	// MoveAudit feeds the operator-wide stream: once it returns without
	// error, every event committed before it was called is in the stream.
	// It returns how many events it moved (0 on a backend whose stream
	// never lags). Safe to run from several instances at once.
	MoveAudit(ctx context.Context) (int, error)

	// PruneAudit removes events older than before from the trails and the
	// stream. Each is walked from its oldest event and the walk stops at the
	// first event stamped AuditPruneSlack or more after before: events are
	// appended in about time order (clocks of instances differ a little,
	// the mover visits slots one after another), so one that sits behind a
	// much newer event waits for a later prune. It returns how many it
	// removed; it may stop early after a bounded amount of work, and is
	// called again until it returns 0.
	PruneAudit(ctx context.Context, before time.Time) (int, error)
}

// CheckAuditEvent is the validation backends apply to an event before
// writing it. teamID and clientID, when not nil, are what the event must
// name (the key it goes with).
func CheckAuditEvent(ev AuditEvent, teamID, clientID *string) error {
	switch {
	case ev.ID == "":
		return fmt.Errorf("%w: audit event without ID", ErrInvalid)
	case ev.Time.IsZero():
		return fmt.Errorf("%w: audit event %s without time", ErrInvalid, ev.ID)
	case !ValidAuditAction(ev.Action):
		return fmt.Errorf("%w: audit event %s has unknown action %q", ErrInvalid, ev.ID, ev.Action)
	case teamID != nil && ev.TeamID != *teamID:
		return fmt.Errorf("%w: audit event %s names team %q, the key is in %q", ErrInvalid, ev.ID, ev.TeamID, *teamID)
	case clientID != nil && ev.ClientID != *clientID:
		return fmt.Errorf("%w: audit event %s names key %q, not %q", ErrInvalid, ev.ID, ev.ClientID, *clientID)
	}
	return nil
}

// OneAuditEvent returns the single event of a variadic audit argument, or
// nil; more than one is ErrInvalid.
func OneAuditEvent(audit []AuditEvent) (*AuditEvent, error) {
	switch len(audit) {
	case 0:
		return nil, nil
	case 1:
		ev := audit[0]
		return &ev, nil
	}
	return nil, fmt.Errorf("%w: %d audit events for one change, want at most one", ErrInvalid, len(audit))
}

// ChangedFields names what differs between two versions of a key, in the
// management API's vocabulary: name, permissions, secret (the current
// secret), previous_secret (the one kept during a grace period). Times
// that only follow those changes (secret_rotated_at) and last use are not
// reported.
func ChangedFields(old, new Key) []string {
	out := []string{}
	if old.Name != new.Name {
		out = append(out, "name")
	}
	if !slices.Equal(old.Permissions, new.Permissions) {
		out = append(out, "permissions")
	}
	if !bytes.Equal(old.SecretHash, new.SecretHash) {
		out = append(out, "secret")
	}
	if !bytes.Equal(old.PreviousSecretHash, new.PreviousSecretHash) || !old.PreviousSecretExpiresAt.Equal(new.PreviousSecretExpiresAt) {
		out = append(out, "previous_secret")
	}
	if old.TokenQuota != new.TokenQuota {
		out = append(out, "token_quota")
	}
	if !old.ExpiresAt.Equal(new.ExpiresAt) {
		out = append(out, "expires_at")
	}
	if old.DisabledAt.IsZero() != new.DisabledAt.IsZero() {
		out = append(out, "disabled")
	}
	if old.TokenTTL != new.TokenTTL {
		out = append(out, "token_ttl")
	}
	if !slices.Equal(old.Audiences, new.Audiences) {
		out = append(out, "audiences")
	}
	if !slices.Equal(old.AllowedCIDRs, new.AllowedCIDRs) {
		out = append(out, "allowed_cidrs")
	}
	if !bytes.Equal(old.Metadata, new.Metadata) {
		out = append(out, "metadata")
	}
	return out
}

// ---- Webhook delivery state ------------------------------------------------
//
// Package webhook delivers the operator-wide event stream to each configured
// endpoint and keeps here, per endpoint, how far it got, so that a restart
// neither loses an event nor delivers again one the receiver acknowledged,
// and so that several instances sharing a store take turns (a lease) instead
// of each delivering every event.

// WebhookState is one webhook endpoint's delivery state. The zero value is
// an endpoint that has delivered nothing, is not failing and is not being
// delivered to.
type WebhookState struct {
	// Delivered is the stream cursor (sequence) of the last event the
	// endpoint acknowledged or was not subscribed to; delivery resumes
	// after it.
	Delivered uint64
	// Attempts counts the failed attempts to deliver the event after
	// Delivered; 0 when none failed.
	Attempts int
	// NextAttempt is when that event may be tried again; zero means at once.
	NextAttempt time.Time
	// FailingSince is the first failure of the current run of failures
	// (zero while the endpoint is healthy): the give-up clock.
	FailingSince time.Time
	// Disabled stops delivery to the endpoint until an operator enables it
	// again; DisabledAt and DisabledReason say when and why (a reason is
	// written by keygate, never a receiver's answer).
	Disabled       bool
	DisabledAt     time.Time
	DisabledReason string
	// Owner is the dispatcher (one per endpoint per keygate instance)
	// delivering to the endpoint until LeaseUntil; empty when none is.
	Owner      string
	LeaseUntil time.Time
}

// WebhookStates is the part of Store that keeps WebhookState, keyed by an
// endpoint ID (a stable hash of the endpoint's URL chosen by the caller).
type WebhookStates interface {
	// WebhookState returns the endpoint's state, or the zero state when
	// none was saved (an unknown endpoint is not an error).
	WebhookState(ctx context.Context, endpoint string) (WebhookState, error)
	// UpdateWebhookState atomically replaces the endpoint's state with
	// update(current), current being the zero state when none was saved,
	// and returns what it stored; durable when it returns. If update
	// returns an error nothing changes and that error is returned. update
	// follows the rules of UpdateKey's (quick, no store calls, no side
	// effects: it may run more than once).
	UpdateWebhookState(ctx context.Context, endpoint string, update func(WebhookState) (WebhookState, error)) (WebhookState, error)
}

// ---- Export between stores (keygate store export, package storeio) ----

// Exporter is an optional feature of a backend: reading, for `keygate
// store export`, what no contract method lists (the singletons, the deny
// list, every team's audit trail, the webhook states). Every backend of
// keygate has it; callers find it through wrappers that Unwrap
// (storemetrics). Its methods only read: they work on a store opened
// read-only (bolt.OpenReadOnly).
type Exporter interface {
	// Singletons returns every value CreateSingleton stored, by name; none
	// yields an empty, non-nil map.
	Singletons(ctx context.Context) (map[string][]byte, error)

	// ForEachDenied calls fn for every deny-list entry (DenyToken) that has
	// not expired at now, in no particular order, stopping at the first
	// error fn returns. until is the entry's expiry, to the millisecond.
	ForEachDenied(ctx context.Context, now time.Time, fn func(jti string, until time.Time) error) error

	// ForEachAuditEvent calls fn for every event of every team's trail
	// (AuditEvents), each team's oldest first (teams in no particular
	// order, possibly interleaved), stopping at the first error fn
	// returns. The events' Seq is their cursor in the team's trail.
	ForEachAuditEvent(ctx context.Context, fn func(AuditEvent) error) error

	// ForEachWebhookState calls fn for every saved webhook state
	// (UpdateWebhookState), in no particular order, stopping at the first
	// error fn returns.
	ForEachWebhookState(ctx context.Context, fn func(endpoint string, st WebhookState) error) error
}

// ---- Schema versions and formats (issue 15 item 5) -------------------------
//
// A store records the schema version of its layout (store/bolt/schema.go,
// store/redis/schema.go): a keygate refuses a store of a newer version and
// migrates an older one. Within a version, a Format names one way of
// encoding a record that an older keygate of the same version cannot read
// (a sealed blob bound to a master-key ID, signing keys with states): such a
// record is written only once every keygate that may read the store reads
// that format, which the store records as the formats it may hold.

// Format names a record encoding that not every keygate of the current
// schema version reads. Names are short lowercase words ("sealed-v2").
type Format string

// ReadableFormats are the formats this build reads. A change that adds a
// format adds it here in the same commit as its reader, and writes it only
// where its FormatGate says Writable.
var ReadableFormats = []Format{}

// FormatGate is asked by code about to write a record in a Format that
// older keygates cannot read. Stores that have one implement it (found
// through wrappers' Unwrap, as for BulkLoader): bbolt (one process: every
// readable format is writable once recorded in the file) and Redis (only
// formats every live instance announced it reads). Without a gate (the
// memory store), write only the formats every keygate reads.
type FormatGate interface {
	// Writable reports whether records in format f may be written now.
	Writable(f Format) bool
}

// CompatChecker is a store shared by running keygates (store/redis): each
// instance announces the formats it reads and learns which may be written.
// server calls Check at start and every few seconds, and Leave on Close.
type CompatChecker interface {
	FormatGate
	// Check renews this instance's heartbeat and refreshes the writable
	// formats; an error wrapping ErrUnreadableFormat means the store now
	// holds a format this build cannot read and the instance must stop.
	Check(ctx context.Context) error
	// Leave removes this instance's heartbeat (a clean shutdown), so the
	// others need not wait for it to expire.
	Leave(ctx context.Context) error
}

var (
	// ErrNewerSchema: the store was written by a newer keygate
	// (a *SchemaError says which versions).
	ErrNewerSchema = errors.New("store written by a newer keygate")
	// ErrUnreadableFormat: the store may hold records in a format this
	// keygate cannot read (a *FormatError says which).
	ErrUnreadableFormat = errors.New("store holds a format this keygate cannot read")
)

// SchemaError is the refusal of a store whose schema version is newer than
// the one this build knows; its message names both.
type SchemaError struct{ Store, Known int }

func (e *SchemaError) Error() string {
	return fmt.Sprintf("the store has schema version %d, newer than this keygate's %d: run the keygate release that wrote it (or a later one); see the upgrade and rollback procedure in README.md", e.Store, e.Known)
}

func (e *SchemaError) Unwrap() error { return ErrNewerSchema }

// FormatError is the refusal of a store that may hold records in formats
// this build cannot read.
type FormatError struct{ Missing []Format }

func (e *FormatError) Error() string {
	return fmt.Sprintf("the store may hold records in format %s, which this keygate cannot read: run a keygate release that reads it; see the upgrade and rollback procedure in README.md", strings.Join(formatStrings(e.Missing), ", "))
}

func (e *FormatError) Unwrap() error { return ErrUnreadableFormat }

func formatStrings(fs []Format) []string {
	out := make([]string, len(fs))
	for i, f := range fs {
		out[i] = string(f)
	}
	return out
}

// MissingFormats returns the formats of required not in readable, sorted.
func MissingFormats(required, readable []Format) []Format {
	var out []Format
	for _, f := range required {
		if !slices.Contains(readable, f) {
			out = append(out, f)
		}
	}
	slices.Sort(out)
	return out
}

// FormatGateOf finds the store's FormatGate through wrappers; without one,
// a gate under which no new format is writable.
func FormatGateOf(st Store) FormatGate {
	for st != nil {
		if g, ok := st.(FormatGate); ok {
			return g
		}
		u, ok := st.(interface{ Unwrap() Store })
		if !ok {
			break
		}
		st = u.Unwrap()
	}
	return noGate{}
}

type noGate struct{}

func (noGate) Writable(Format) bool { return false }

// ---- Management sessions (issue 16) ----------------------------------------

// ManagementSession is the revocable record behind a team-bound management
// token that no key of the team holds: a console session a platform handed
// out (POST /v1/teams/{team}/console-sessions) or a token exchanged for a
// trusted identity provider's (RFC 8693). The token names it in its sid
// claim and the management API checks it on every call, so deleting the
// record ends the session at once.
type ManagementSession struct {
	ID     string `json:"id"` // "ses_" and 22 characters of base64url randomness
	TeamID string `json:"team_id"`
	// User is the person acting (the token's act.sub).
	User string `json:"user"`
	// Kind is SessionConsole or SessionExchange.
	Kind string `json:"kind"`
	// MintedBy is the client ID of the operator key that minted a console
	// session, or of the client that exchanged the token.
	MintedBy  string    `json:"minted_by"`
	CreatedAt time.Time `json:"created_at"`
	// ExpiresAt is the session token's expiry; the record is worthless
	// afterwards and PruneSessions removes it.
	ExpiresAt time.Time `json:"expires_at"`
}

// Kinds of ManagementSession.
const (
	SessionConsole  = "console"
	SessionExchange = "exchange"
)

// Sessions keeps management sessions and console sessions' one-time codes.
// Every backend implements it (found with Feature, through wrappers);
// storetest runs its contract on each.
type Sessions interface {
	// CreateSession stores sess. With a non-empty codeHash (SHA-256 of a
	// one-time code) it also stores the code, redeemable until codeExpires,
	// in the same atomic step. ErrAlreadyExists when the ID is taken. audit,
	// at most one event, is appended to sess.TeamID's trail in that step.
	CreateSession(ctx context.Context, sess ManagementSession, codeHash []byte, codeExpires time.Time, audit ...AuditEvent) error
	// RedeemSessionCode removes the code and returns its session, in one
	// atomic step (a bbolt transaction, Redis GETDEL): of two concurrent
	// redemptions exactly one succeeds. ErrNotFound for a code that never
	// existed, was redeemed, or expired at now (an expired one is removed
	// too), or whose session is gone.
	RedeemSessionCode(ctx context.Context, codeHash []byte, now time.Time) (ManagementSession, error)
	// GetSession returns the session, or ErrNotFound. It returns an expired
	// one as stored: the caller judges ExpiresAt on its own clock.
	GetSession(ctx context.Context, id string) (ManagementSession, error)
	// ListSessions returns the team's sessions not expired at now, oldest
	// first; none is an empty, non-nil list.
	ListSessions(ctx context.Context, teamID string, now time.Time) ([]ManagementSession, error)
	// DeleteSession removes the session if it belongs to teamID (its code,
	// if unredeemed, stops working too); ErrNotFound otherwise, with
	// nothing changed. audit as for CreateSession.
	DeleteSession(ctx context.Context, teamID, id string, audit ...AuditEvent) error
	// DeleteTeamSessions removes every session of the team and returns how
	// many there were.
	DeleteTeamSessions(ctx context.Context, teamID string) (int, error)
	// PruneSessions removes sessions and codes expired at now, in bounded
	// batches, and returns how many sessions went.
	PruneSessions(ctx context.Context, now time.Time) (int, error)
}

// TeamEraser is what team offboarding (DELETE /v1/teams/{team}) needs
// beyond deleting the team's keys one by one. Every backend implements it.
type TeamEraser interface {
	// DeleteTeamUsage removes every usage bucket of the team's keys and of
	// the team.
	DeleteTeamUsage(ctx context.Context, teamID string) error
	// EraseAuditPersonalData blanks SourceAddr, UserAgent and
	// Actor.OnBehalfOf (user names) in every event of the team's trail and
	// of the operator-wide stream that belongs to the team, leaving the
	// events themselves; it returns how many events it changed.
	EraseAuditPersonalData(ctx context.Context, teamID string) (int, error)
}

// SchemaRaiser raises the store's recorded schema version, atomically and
// never downwards, before a record that older keygates would misread is
// first written (a read-only admin key, which an older keygate would read
// as a full admin). Every backend implements it; a keygate of an older
// schema then refuses the store at its next start or compatibility check.
//
// level is backend-independent: each backend maps it to its own version
// number (bolt: 2 + level, Redis: 1 + level), and opening a store below a
// level this build knows does not raise it — only a write that needs the
// level does, so a store that never holds such a record can still be
// rolled back to the previous release.
type SchemaRaiser interface {
	RaiseSchema(ctx context.Context, level int) error
}

// SchemaLevelAdminRoles is the level of read-only admin keys (Key.Role) and
// management sessions: raised before the first of them is stored.
const SchemaLevelAdminRoles = 1

// SchemaLevelKeyPolicy is the level of the key policy fields (Key.HasPolicy)
// and of SUSPENDED status entries: raised before the first is stored.
const SchemaLevelKeyPolicy = 2
