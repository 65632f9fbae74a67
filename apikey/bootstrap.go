package apikey

// What a start does before the first request: the store's secrets (pepper,
// signing keys: signingkeys.go, admin key) and the checks and repairs of stored keys.

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"errors"
	"fmt"
	"time"

	"github.com/keygate/keygate/credential"
	"github.com/keygate/keygate/store"
)

const pepperName = "pepper"

// loadPepper returns the hasher keyed with the store's pepper, creating the
// pepper on the first start. Concurrent first starts agree on one pepper
// because the store's create-if-absent decides the winner.
func loadPepper(ctx context.Context, st store.Store, mk *MasterKey) (*credential.Hasher, error) {
	_, pepper, err := ensurePepper(ctx, st, mk)
	if err != nil {
		// A pepper sealed under a master key mk does not hold arrives as
		// a *masterkey.UnknownKeyError naming it (the store was re-sealed
		// under a new one): cmd/keygate turns it into what to do.
		return nil, fmt.Errorf("load pepper (is this the master key the store was created with?): %w", err)
	}
	return credential.NewHasher(pepper)
}

// ensurePepper returns the store's pepper, sealed as stored and opened
// with mk, storing a fresh one first when there is none: the store's
// create-if-absent returns whichever was there, so concurrent first
// starts agree on one.
func ensurePepper(ctx context.Context, st store.Store, mk *MasterKey) (sealed, pepper []byte, err error) {
	fresh := make([]byte, credential.PepperLen)
	if _, err := rand.Read(fresh); err != nil {
		return nil, nil, fmt.Errorf("generate pepper: %w", err)
	}
	candidate, err := mk.Seal(pepperName, fresh)
	if err != nil {
		return nil, nil, err
	}
	sealed, err = st.CreateSingleton(ctx, pepperName, candidate)
	if err != nil {
		return nil, nil, fmt.Errorf("store pepper: %w", err)
	}
	if pepper, err = mk.Open(pepperName, sealed); err != nil {
		return nil, nil, err
	}
	return sealed, pepper, nil
}

// ensureAdmin makes sure an admin key exists: the operator's when given,
// else one generated on the first start (exactly one, even when several
// instances start at once: the store's admin limit of 1 decides).
func (s *Service) ensureAdmin(ctx context.Context) error {
	now := s.cfg.Now().UTC()
	if s.cfg.AdminClientID != "" || s.cfg.AdminClientSecret != "" {
		if err := ValidateAdminCredentials(s.cfg.AdminClientID, s.cfg.AdminClientSecret); err != nil {
			return err
		}
		hash := s.hasher.Hash(s.cfg.AdminClientSecret)
		k := store.Key{ClientID: s.cfg.AdminClientID, Name: "admin", CreatedAt: now, SecretHash: hash}
		// No status index here: the key may exist already; indexAdminKeys
		// after ensureAdmin gives a new one its index (a changed secret
		// gets one in setAdminSecret). Admin-key changes are audit events
		// of the system, written with the change.
		created := s.newEvent(bootstrapRequest, store.AuditKeyCreated, "", k.ClientID)
		err := s.store.CreateKey(ctx, k, 0, created)
		if !errors.Is(err, store.ErrAlreadyExists) {
			if err != nil {
				return fmt.Errorf("create admin key %s: %w", k.ClientID, err)
			}
			s.logAudit(ctx, created)
			return nil
		}
		return s.setAdminSecret(ctx, k.ClientID, hash, now)
	}
	admins, err := s.store.ListKeys(ctx, "")
	if err != nil {
		return fmt.Errorf("list admin keys: %w", err)
	}
	if len(admins) > 0 {
		return nil
	}
	id, err := credential.NewClientID("")
	if err != nil {
		return err
	}
	secret, err := credential.NewSecret()
	if err != nil {
		return err
	}
	creds := AdminCredentials{ClientID: id, ClientSecret: secret}
	undo := func() error { return nil }
	if s.cfg.KeepNewAdmin != nil {
		u, err := s.cfg.KeepNewAdmin(creds)
		if err != nil {
			return fmt.Errorf("first admin key not created: %w", err)
		}
		if u != nil {
			undo = u
		}
	}
	k := store.Key{ClientID: id, Name: "admin", CreatedAt: now, SecretHash: s.hasher.Hash(secret)}
	created := s.newEvent(bootstrapRequest, store.AuditKeyCreated, "", k.ClientID)
	switch err := s.store.CreateKey(ctx, k, 1, created); {
	case errors.Is(err, store.ErrTeamLimit):
		// Another instance created the first admin key: what was kept
		// for this one names a key that does not exist.
		if err := undo(); err != nil {
			return fmt.Errorf("another instance created the first admin key; taking back this start's credentials: %w", err)
		}
		return nil
	case err != nil:
		return errors.Join(fmt.Errorf("create admin key: %w", err), undo())
	}
	s.logAudit(ctx, created)
	s.generatedAdmin = &creds
	return nil
}

// setAdminSecret makes hash the configured admin key's secret. Every start
// sets the configured secret; only a different one is a change (a new
// secret, or the end of a rotation's old one), and only a change is
// written and recorded. A new secret is a new generation, as a grace-0
// Rotate makes one: a status index of its own, and the replaced
// generations' bits set, so the old secret's tokens are cut off too (the
// same order as Rotate: the record first, keeping the ended index as
// PreviousStatusIndex until its bit is set, after an entry in the status
// schedule, so the next audit round sets it if this start cannot).
func (s *Service) setAdminSecret(ctx context.Context, clientID string, hash []byte, now time.Time) error {
	stored, err := s.store.GetKey(ctx, clientID)
	if err != nil {
		return fmt.Errorf("read admin key %s: %w", clientID, err)
	}
	// A secret reported leaked (ReportLeaked) is never set again; a new
	// one replaces it like any changed secret.
	if err := leakedAdminSecret(stored, hash); err != nil {
		return err
	}
	if adminUnchanged(stored, hash) {
		return nil // the common start: no index to allocate
	}
	idx, err := s.store.NextStatusIndex(ctx)
	if err != nil {
		return fmt.Errorf("allocate status index for admin key %s: %w", clientID, err)
	}
	rotated := s.newEvent(bootstrapRequest, store.AuditKeyRotated, "", clientID)
	if err := s.scheduleStatusCheck(ctx, clientID, now); err != nil {
		return fmt.Errorf("admin key %s: %w", clientID, err)
	}
	var old store.Key
	_, err = s.store.UpdateKey(ctx, clientID, func(k store.Key) (store.Key, error) {
		old = k
		if !k.IsAdmin() {
			return k, fmt.Errorf("client id %s belongs to team %s and cannot be an admin key", k.ClientID, k.TeamID)
		}
		if err := leakedAdminSecret(k, hash); err != nil {
			return k, err
		}
		if adminUnchanged(k, hash) {
			return k, errAdminUnchanged // another instance's start set it
		}
		k.SecretHash = hash
		k.SecretSuspendedAt = time.Time{}
		k.PreviousSecretHash = nil
		k.PreviousSecretExpiresAt = time.Time{}
		k.SecretRotatedAt = now
		k.PreviousStatusIndex = k.StatusIndex
		k.StatusIndex = idx
		return k, nil
	}, rotated)
	switch {
	case errors.Is(err, errAdminUnchanged):
		return nil
	case err != nil:
		return fmt.Errorf("update admin key %s: %w", clientID, err)
	}
	if err := s.revokeEnded(ctx, []int64{old.PreviousStatusIndex, old.StatusIndex}); err != nil {
		return fmt.Errorf("admin key %s: %w", clientID, err)
	}
	s.logAudit(ctx, rotated)
	return nil
}

// adminUnchanged reports whether k already has exactly the configured
// secret (and no previous one still live or pending).
func adminUnchanged(k store.Key, hash []byte) bool {
	return subtle.ConstantTimeCompare(k.SecretHash, hash) == 1 && len(k.PreviousSecretHash) == 0
}

// bootstrapRequest is who changes admin keys at start: keygate itself,
// from its configuration.
var bootstrapRequest = SystemRequest("bootstrap")

// errAdminUnchanged: the configured admin secret is the stored one; returned
// from inside UpdateKey so that nothing (no event either) is written.
var errAdminUnchanged = errors.New("admin key unchanged")

// indexAdminKeys gives admin keys without a status index one: an admin key
// ensureAdmin just created, or one that predates status lists. Admin keys
// are few (one team's index), so this stays on the start path; team keys
// get theirs on their first token or from the background walk
// (keycheck.go). An index lost to a concurrent start is burned.
func (s *Service) indexAdminKeys(ctx context.Context) error {
	admins, err := s.store.ListKeys(ctx, "")
	if err != nil {
		return fmt.Errorf("list admin keys: %w", err)
	}
	for _, k := range admins {
		if k.StatusIndex != 0 {
			continue
		}
		if _, err := s.assignStatusIndex(ctx, k.ClientID); err != nil && !errors.Is(err, store.ErrNotFound) {
			return err
		}
	}
	return nil
}
