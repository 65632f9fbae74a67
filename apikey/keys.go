package apikey

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/keygate/keygate/credential"
	"github.com/keygate/keygate/quota"
	"github.com/keygate/keygate/store"
)

// NewKey is what a team key is created from.
type NewKey struct {
	Team        string
	Name        string // checked by ValidateName
	Permissions []string
	// GrantOperatorPermissions is an operator's explicit consent to grant
	// operator-only permissions (such as token_introspection for a resource
	// server), which are never offered to teams.
	GrantOperatorPermissions bool

	// Key policy (docs/ARCHITECTURE.md, "Key policy"); the zero value of
	// each field is "none of the key's own".

	// TokenQuota is the key's own issuance quota (CheckTokenQuota); the
	// zero Policy leaves the server's token_quota_per_key in force.
	TokenQuota quota.Policy
	// Policy holds the other policy fields (policy.go).
	Policy Policy
}

// Create makes a team key and returns it with its secret, which exists
// nowhere else: show it once. Input is checked first (team ID, name,
// permissions: *InvalidError); the team limit is enforced atomically by the
// store (ErrTeamLimit), never by counting here; and Create returns only
// once the store holds the key durably, with its key.created event (one
// atomic step: see store.Store.CreateKey).
func (s *Service) Create(ctx context.Context, by Request, nk NewKey) (store.Key, string, error) {
	if !ValidTeamID(nk.Team) {
		return store.Key{}, "", invalid("team id %q is not valid: %s", nk.Team, TeamIDRule)
	}
	name, err := ValidateName(nk.Name)
	if err != nil {
		return store.Key{}, "", err
	}
	if err := s.cfg.Catalog.ValidateIDs(nk.Permissions, nk.GrantOperatorPermissions); err != nil {
		return store.Key{}, "", &InvalidError{Detail: err.Error()}
	}
	if err := CheckTokenQuota(nk.TokenQuota); err != nil {
		return store.Key{}, "", err
	}
	now := s.cfg.Now().UTC()
	pf, err := s.checkPolicy(nk.Policy, now)
	if err != nil {
		return store.Key{}, "", err
	}
	var probe store.Key
	pf.apply(&probe, now)
	if probe.HasPolicy() {
		if err := s.requireSchemaLevel(ctx, store.SchemaLevelKeyPolicy, "store a key policy"); err != nil {
			return store.Key{}, "", err
		}
	}
	id, secret, idx, err := s.newCredentials(ctx, nk.Team)
	if err != nil {
		return store.Key{}, "", err
	}
	k := store.Key{
		ClientID:    id,
		TeamID:      nk.Team,
		Name:        name,
		Permissions: append([]string{}, nk.Permissions...),
		CreatedAt:   now,
		SecretHash:  s.hasher.Hash(secret),
		StatusIndex: idx,
		TokenQuota:  storedQuota(nk.TokenQuota),
	}
	pf.apply(&k, now)
	if pf.disabled {
		// Created suspended: its one generation's entry says so before the
		// key exists, so no token of it is ever valid offline until resumed.
		if err := s.store.SetStatus(ctx, idx, store.StatusSuspended); err != nil {
			return store.Key{}, "", fmt.Errorf("suspend the new key's status entry: %w", err)
		}
	}
	ev := s.newEvent(by, store.AuditKeyCreated, k.TeamID, k.ClientID)
	switch err := s.store.CreateKey(ctx, k, s.cfg.MaxKeysPerTeam, ev); {
	case errors.Is(err, store.ErrTeamLimit):
		return store.Key{}, "", ErrTeamLimit
	case errors.Is(err, store.ErrAlreadyExists):
		return store.Key{}, "", ErrConflict
	case err != nil:
		return store.Key{}, "", fmt.Errorf("create key in team %s: %w", nk.Team, err)
	}
	s.logAudit(ctx, ev)
	return k, secret, nil
}

// Get returns the team's key; a key of another team is ErrNotFound.
func (s *Service) Get(ctx context.Context, team, clientID string) (store.Key, error) {
	k, err := s.store.GetKey(ctx, clientID)
	if errors.Is(err, store.ErrNotFound) || (err == nil && k.TeamID != team) {
		return store.Key{}, ErrNotFound
	}
	if err != nil {
		return store.Key{}, fmt.Errorf("load key %s: %w", clientID, err)
	}
	return k, nil
}

// List returns the team's keys (team "" lists admin keys).
func (s *Service) List(ctx context.Context, team string) ([]store.Key, error) {
	keys, err := s.store.ListKeys(ctx, team)
	if err != nil {
		return nil, fmt.Errorf("list keys of team %s: %w", team, err)
	}
	return keys, nil
}

// Teams lists the teams that hold keys, a page at a time.
func (s *Service) Teams(ctx context.Context, q store.TeamQuery) ([]store.TeamCount, error) {
	teams, err := s.store.Teams(ctx, q)
	if err != nil {
		return nil, fmt.Errorf("list teams: %w", err)
	}
	return teams, nil
}

// errOtherTeam: the key exists but belongs to another team; returned from
// inside UpdateKey so that nothing is written.
var errOtherTeam = errors.New("key belongs to another team")

// Rotate gives the team's key a new secret, returned once, and keeps the
// secret current until now working for grace (CheckGracePeriod's range),
// so a running integration can switch without an outage. A key has at most
// two live secrets: rotating again during a grace period makes the
// then-current secret the previous one, which ends the older one at once.
// Grace 0 ends the old secret at once. The key.rotated event is written
// with the change.
//
// Each secret generation has a status index of its own, and the tokens
// minted with a secret name its generation's (Auth.StatusIndex), so ending
// a secret cuts off its tokens at resource servers too. The order:
//
//  1. a new index is allocated (store-wide counter, outside the key's
//     atomic step, as Create does: a refused rotate burns it, harmlessly),
//     and the key's entry in the status schedule is written, due at the
//     grace period's end (statusschedule.go);
//  2. one UpdateKey writes the new hash and index and records the replaced
//     generation's index as PreviousStatusIndex — with grace 0 too, where
//     no previous secret stays live: the record then says "this index
//     still has to be set", durably;
//  3. the bits of every generation that ended are set: the replaced one
//     for grace 0, and the older one a rotation during a grace period
//     ends. Only then does Rotate answer success.
//
// Why this order is safe: from step 2 on the old secret gets no token (the
// token endpoint reads the key on every request) and introspection calls
// its tokens inactive (GenerationLive reads the key). If step 3 fails the
// caller gets an error, and the ended index is still on the record: a
// retried rotate sets it (it ends PreviousStatusIndex whatever the grace),
// and so does the audit round that reads the schedule's entry, which also
// sets the index of a grace period that ran out. The other order (bits first) could
// cut off a secret whose rotation then failed.
func (s *Service) Rotate(ctx context.Context, by Request, team, clientID string, grace time.Duration) (store.Key, string, error) {
	if err := CheckGracePeriod(grace); err != nil {
		return store.Key{}, "", err
	}
	// An expired key is refused before an index is taken for nothing (the
	// update checks again: it may expire in between).
	if k, err := s.store.GetKey(ctx, clientID); err == nil && k.TeamID == team && KeyExpired(k, s.cfg.Now()) {
		return store.Key{}, "", ErrExpiredFinal
	}
	secret, err := credential.NewSecret()
	if err != nil {
		return store.Key{}, "", fmt.Errorf("generate secret: %w", err)
	}
	newHash := s.hasher.Hash(secret)
	idx, err := s.store.NextStatusIndex(ctx)
	if err != nil {
		return store.Key{}, "", fmt.Errorf("allocate status index: %w", err)
	}
	ev := s.newEvent(by, store.AuditKeyRotated, team, clientID)
	now := ev.Time
	// The schedule's entry first (statusschedule.go): the replaced
	// generation's bit is due when its grace period ends.
	if err := s.scheduleStatusCheck(ctx, clientID, now.Add(grace)); err != nil {
		return store.Key{}, "", fmt.Errorf("rotate key %s: %w", clientID, err)
	}
	// One atomic read-modify-write: the hash that becomes the previous one is
	// the hash current at the moment of the write, even when two rotations
	// race. The function is pure, as UpdateKey requires (it may run twice),
	// but for remembering the version it was given: the last run is the one
	// committed, and the log line names what changed from it.
	var old store.Key
	k, err := s.store.UpdateKey(ctx, clientID, func(k store.Key) (store.Key, error) {
		old = k
		if k.TeamID != team {
			return store.Key{}, errOtherTeam
		}
		if KeyExpired(k, now) {
			// A new secret would not bring it back: expiry is final.
			return store.Key{}, ErrExpiredFinal
		}
		// A suspended secret (reported leaked) gets no grace period: it
		// works nowhere already, and its hash is no secret's.
		if grace > 0 && !SecretSuspended(k) {
			k.PreviousSecretHash = append([]byte(nil), k.SecretHash...)
			k.PreviousSecretExpiresAt = now.Add(grace)
		} else {
			k.PreviousSecretHash = nil
			k.PreviousSecretExpiresAt = time.Time{}
		}
		k.PreviousStatusIndex = k.StatusIndex
		k.SecretHash = append([]byte(nil), newHash...)
		k.StatusIndex = idx
		k.SecretRotatedAt = now
		k.SecretSuspendedAt = time.Time{}
		return k, nil
	}, ev)
	switch {
	case errors.Is(err, store.ErrNotFound), errors.Is(err, errOtherTeam):
		return store.Key{}, "", ErrNotFound
	case errors.Is(err, ErrExpiredFinal):
		return store.Key{}, "", err
	case err != nil:
		return store.Key{}, "", fmt.Errorf("rotate key %s: %w", clientID, err)
	}
	ended := []int64{old.PreviousStatusIndex}
	if grace == 0 || SecretSuspended(old) {
		ended = append(ended, old.StatusIndex)
	}
	if err := s.revokeEnded(ctx, ended); err != nil {
		return store.Key{}, "", fmt.Errorf("rotate key %s: %w", clientID, err)
	}
	// The store filled the stored event's fields from the same two versions.
	ev.Fields = store.ChangedFields(old, k)
	s.logAudit(ctx, ev)
	return k, secret, nil
}

// revokeEnded sets the status bits of the secret generations a change of
// secret ended (Rotate, a new configured admin secret); 0 is a key from
// before status lists, or none recorded.
func (s *Service) revokeEnded(ctx context.Context, indices []int64) error {
	for _, i := range indices {
		if i == 0 {
			continue
		}
		if err := s.store.RevokeStatus(ctx, i); err != nil {
			return fmt.Errorf("revoke status of the ended secret: %w", err)
		}
	}
	return nil
}

// errGenerationMoved: the key's previous generation changed since the walk
// saw it; returned from inside UpdateKey so that nothing is written.
var errGenerationMoved = errors.New("previous secret generation changed")

// KeyChange is a change to a team key's settings (PATCH's merge patch):
// a nil field is left as it is. Permissions replaces the whole list.
type KeyChange struct {
	Name        *string
	Permissions *[]string
	// GrantOperatorPermissions consents to operator-only permissions that
	// Permissions adds; ones the key already holds need no new consent. It
	// is not stored: each change that adds one asks again.
	GrantOperatorPermissions bool

	// Key policy fields: nil leaves the field as it is; a pointer to the
	// zero value clears it back to the server's default (a merge patch's
	// null).

	// TokenQuota replaces the key's own issuance quota.
	TokenQuota *quota.Policy
	// ExpiresAt sets (the zero time: clears) the key's expiry.
	ExpiresAt *time.Time
	// Disabled suspends (true) or resumes (false) the key.
	Disabled *bool
	// TokenTTL sets (0: clears) the key's own token lifetime.
	TokenTTL *time.Duration
	// Audiences replaces (nil inside: clears) the key's audiences.
	Audiences *[]string
	// AllowedCIDRs replaces (nil inside: clears) the key's source
	// addresses, as sent.
	AllowedCIDRs *[]string
	// Metadata replaces (nil inside: clears) the key's metadata, a JSON
	// object as sent.
	Metadata *json.RawMessage
	// By, when set, is the team manager making the change: the rules of
	// managers (managers.go) apply in the same atomic step.
	By *Manager
}

// Update applies ch to the team's key in one atomic read-modify-write and
// returns the key as stored, with the names of the fields whose value
// changed ("name", "permissions", "token_quota"; none for a change that
// changes nothing).
// Input is checked before anything is written (*InvalidError); a key of
// another team is ErrNotFound. A new permission list applies from the key's
// next token: the token path reads the key on every request, and tokens
// already issued keep their scope until they expire.
func (s *Service) Update(ctx context.Context, by Request, team, clientID string, ch KeyChange) (store.Key, []string, error) {
	var name string
	if ch.Name != nil {
		n, err := ValidateName(*ch.Name)
		if err != nil {
			return store.Key{}, nil, err
		}
		name = n
	}
	var perms []string
	if ch.Permissions != nil {
		perms = append([]string{}, (*ch.Permissions)...)
		// Structure first (empty list, duplicates, unknown IDs), with
		// operator-only IDs allowed: whether this key may take them depends
		// on what it holds, which only the atomic step below can see.
		if err := s.cfg.Catalog.ValidateIDs(perms, true); err != nil {
			return store.Key{}, nil, &InvalidError{Detail: err.Error()}
		}
	}
	if ch.TokenQuota != nil {
		if err := CheckTokenQuota(*ch.TokenQuota); err != nil {
			return store.Key{}, nil, err
		}
	}
	policy, err := s.checkPolicyChange(ch)
	if err != nil {
		return store.Key{}, nil, err
	}
	if ch.setsPolicy() {
		if err := s.requireSchemaLevel(ctx, store.SchemaLevelKeyPolicy, "store a key policy"); err != nil {
			return store.Key{}, nil, err
		}
	}
	var changed []string
	// The key.updated event is written with the change; the store names
	// the changed fields in it as changed does (store.ChangedFields).
	ev := s.newEvent(by, store.AuditKeyUpdated, team, clientID)
	if ch.Disabled != nil {
		// A suspension or resumption's entries follow the record below
		// (syncSuspension); the schedule's entry first, for the round
		// that mends them if they do not (statusschedule.go).
		if err := s.scheduleStatusCheck(ctx, clientID, ev.Time); err != nil {
			return store.Key{}, nil, fmt.Errorf("update key %s: %w", clientID, err)
		}
	}
	k, err := s.store.UpdateKey(ctx, clientID, func(k store.Key) (store.Key, error) {
		changed = changed[:0] // UpdateKey may run this more than once
		if k.TeamID != team {
			return store.Key{}, errOtherTeam
		}
		if err := s.checkManagerChange(ch.By, k, ch); err != nil {
			return store.Key{}, err
		}
		if ch.Name != nil && name != k.Name {
			k.Name = name
			changed = append(changed, "name")
		}
		if ch.Permissions != nil {
			if !ch.GrantOperatorPermissions {
				if err := s.checkOperatorConsent(k.Permissions, perms); err != nil {
					return store.Key{}, err
				}
			}
			if !slices.Equal(perms, k.Permissions) {
				k.Permissions = append([]string{}, perms...)
				changed = append(changed, "permissions")
			}
		}
		if ch.TokenQuota != nil {
			if q := storedQuota(*ch.TokenQuota); q != k.TokenQuota {
				k.TokenQuota = q
				changed = append(changed, "token_quota")
			}
		}
		more, err := s.applyPolicy(&k, ch, policy, ev.Time)
		if err != nil {
			return store.Key{}, err
		}
		changed = append(changed, more...)
		return k, nil
	}, ev)
	var inv *InvalidError
	var forb *ForbiddenError
	switch {
	case errors.Is(err, store.ErrNotFound), errors.Is(err, errOtherTeam):
		return store.Key{}, nil, ErrNotFound
	case errors.As(err, &inv), errors.As(err, &forb), errors.Is(err, ErrExpiredFinal):
		return store.Key{}, nil, err
	case err != nil:
		return store.Key{}, nil, fmt.Errorf("update key %s: %w", clientID, err)
	}
	if slices.Contains(changed, "disabled") {
		// The record holds the suspension from here; the status entries
		// follow, so resource servers checking the list agree.
		if err := s.syncSuspension(ctx, k); err != nil {
			return store.Key{}, nil, err
		}
	}
	ev.Fields = append([]string{}, changed...)
	s.logAudit(ctx, ev)
	return k, append([]string(nil), changed...), nil
}

// checkOperatorConsent refuses a permission list that adds an
// operator-only permission the key does not hold yet: that needs the
// operator's explicit consent, as at creation.
func (s *Service) checkOperatorConsent(held, want []string) error {
	for _, id := range want {
		if slices.Contains(held, id) {
			continue
		}
		if p, ok := s.cfg.Catalog.Lookup(id); ok && p.OperatorOnly {
			return invalid("permission %q is operator-only; adding it to a key needs \"grant_operator_permissions\": true in the same request", id)
		}
	}
	return nil
}

// Delete removes the team's key. Its status bits are set first — the
// current secret generation's and, when one is recorded, the previous
// one's (live during a grace period, or ended and not yet set: see
// Rotate) — then the record goes: if the delete then fails, the key is cut
// off at resource servers anyway and the caller retries; the other order
// could leave a deleted key's tokens accepted offline. The token endpoint reads the store
// on every request, so the key gets no token from the moment this returns.
// The key.deleted event is written by the removal itself and names the
// status bit (which lives apart from the key on Redis Cluster, so it cannot
// share the removal's atomic step; setting it again is harmless).
func (s *Service) Delete(ctx context.Context, by Request, team, clientID string) error {
	k, err := s.Get(ctx, team, clientID)
	if err != nil {
		return err
	}
	for _, idx := range []int64{k.StatusIndex, k.PreviousStatusIndex} {
		if idx > 0 {
			if err := s.store.RevokeStatus(ctx, idx); err != nil {
				return fmt.Errorf("revoke status of key %s: %w", clientID, err)
			}
		}
	}
	ev := s.newEvent(by, store.AuditKeyDeleted, team, clientID)
	switch err := s.store.DeleteKey(ctx, team, clientID, ev); {
	case errors.Is(err, store.ErrNotFound):
		return ErrNotFound
	case err != nil:
		return fmt.Errorf("delete key %s: %w", clientID, err)
	}
	ev.StatusIndex = k.StatusIndex
	s.logAudit(ctx, ev)
	return nil
}

// newCredentials draws a new key's client ID (carrying team's tag), its
// secret, and its status index. The index is taken before the create,
// outside the team's atomic step (it is a store-wide counter); a create
// refused for the team limit burns it, which is harmless.
func (s *Service) newCredentials(ctx context.Context, team string) (id, secret string, idx int64, err error) {
	if id, err = credential.NewClientID(team); err != nil {
		return "", "", 0, fmt.Errorf("generate client ID: %w", err)
	}
	if secret, err = credential.NewSecret(); err != nil {
		return "", "", 0, fmt.Errorf("generate secret: %w", err)
	}
	if idx, err = s.store.NextStatusIndex(ctx); err != nil {
		return "", "", 0, fmt.Errorf("allocate status index: %w", err)
	}
	return id, secret, idx, nil
}
