package apikey

// Admin keys through the API (issue 16): list, create with a role, rotate,
// delete. The key named by Config.AdminClientID belongs to the environment
// (each start sets its secret), so the API neither rotates nor deletes it:
// a change would be undone, or the key re-created, at the next start.

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/keygate/keygate/store"
)

// API names of the admin roles (store.RoleAdmin, store.RoleRead).
const (
	AdminRoleFull = "admin"
	AdminRoleRead = "read"
)

// ReadRoleSchema is the store schema level raised (store.SchemaRaiser)
// before the first read-only admin key is written: an older keygate
// ignores Key.Role and would take such a key for a full admin, so it must
// refuse the store instead.
const ReadRoleSchema = store.SchemaLevelAdminRoles

var (
	// ErrEnvironmentManaged: the admin key named by KEYGATE_ADMIN_CLIENT_ID
	// cannot be rotated or deleted through the API.
	ErrEnvironmentManaged = errors.New("admin key managed by the environment")
	// ErrLastAdmin: the key is the last full admin key; the store refused
	// to delete it (atomically, see store.ErrLastAdmin).
	ErrLastAdmin = errors.New("last full admin key")
)

// NewAdminKey is what an admin key is created from.
type NewAdminKey struct {
	Name string // checked by ValidateName
	Role string // AdminRoleFull or AdminRoleRead
}

// AdminRoleName is the API name of an admin key's role.
func AdminRoleName(k store.Key) string {
	if k.Role == store.RoleRead {
		return AdminRoleRead
	}
	return AdminRoleFull
}

// EnvironmentManaged reports whether clientID is the admin key the
// environment configures (KEYGATE_ADMIN_CLIENT_ID).
func (s *Service) EnvironmentManaged(clientID string) bool {
	return s.cfg.AdminClientID != "" && clientID == s.cfg.AdminClientID
}

// AdminKeys lists the admin keys.
func (s *Service) AdminKeys(ctx context.Context) ([]store.Key, error) {
	return s.List(ctx, "")
}

// AdminKey returns one admin key; a team key is ErrNotFound.
func (s *Service) AdminKey(ctx context.Context, clientID string) (store.Key, error) {
	return s.Get(ctx, "", clientID)
}

// CreateAdminKey makes an admin key and returns it with its secret (show it
// once). A read-only key first raises the store's schema version; if that
// fails nothing is stored.
func (s *Service) CreateAdminKey(ctx context.Context, by Request, nk NewAdminKey) (store.Key, string, error) {
	name, err := ValidateName(nk.Name)
	if err != nil {
		return store.Key{}, "", err
	}
	var role string
	switch nk.Role {
	case AdminRoleFull:
		role = store.RoleAdmin
	case AdminRoleRead:
		role = store.RoleRead
	default:
		return store.Key{}, "", invalid(`"role" must be %q (every change) or %q (read only), not %q`, AdminRoleFull, AdminRoleRead, truncateUTF8(nk.Role, 40))
	}
	if role == store.RoleRead {
		if err := s.requireSchemaLevel(ctx, ReadRoleSchema, "create read-only admin key"); err != nil {
			return store.Key{}, "", err
		}
	}
	id, secret, idx, err := s.newCredentials(ctx, "")
	if err != nil {
		return store.Key{}, "", err
	}
	k := store.Key{
		ClientID:    id,
		Name:        name,
		Role:        role,
		CreatedAt:   s.cfg.Now().UTC(),
		SecretHash:  s.hasher.Hash(secret),
		StatusIndex: idx,
	}
	ev := s.newEvent(by, store.AuditKeyCreated, "", k.ClientID)
	// Limit 0: admin keys are not limited in number (as ensureAdmin's
	// configured key).
	switch err := s.store.CreateKey(ctx, k, 0, ev); {
	case errors.Is(err, store.ErrAlreadyExists):
		return store.Key{}, "", ErrConflict
	case err != nil:
		return store.Key{}, "", fmt.Errorf("create admin key: %w", err)
	}
	s.logAudit(ctx, ev)
	return k, secret, nil
}

// RotateAdminKey gives an admin key a new secret with Rotate's grace
// semantics.
func (s *Service) RotateAdminKey(ctx context.Context, by Request, clientID string, grace time.Duration) (store.Key, string, error) {
	if s.EnvironmentManaged(clientID) {
		return store.Key{}, "", ErrEnvironmentManaged
	}
	return s.Rotate(ctx, by, "", clientID, grace)
}

// DeleteAdminKey removes an admin key. Unlike Delete (a team key), the
// record goes first and the status bits after: the store refuses to delete
// the last full admin (ErrLastAdmin) and a refused delete must change
// nothing, bits included. An admin token opens only the management API,
// which reads the key on every call (CheckAdminToken), so the key's tokens
// stop working the moment the record is gone; the bits then tell the
// status list. If setting them fails the key is gone all the same and the
// error says so.
func (s *Service) DeleteAdminKey(ctx context.Context, by Request, clientID string) error {
	if s.EnvironmentManaged(clientID) {
		return ErrEnvironmentManaged
	}
	k, err := s.AdminKey(ctx, clientID)
	if err != nil {
		return err
	}
	ev := s.newEvent(by, store.AuditKeyDeleted, "", clientID)
	switch err := s.store.DeleteKey(ctx, "", clientID, ev); {
	case errors.Is(err, store.ErrNotFound):
		return ErrNotFound
	case errors.Is(err, store.ErrLastAdmin):
		return ErrLastAdmin
	case err != nil:
		return fmt.Errorf("delete admin key %s: %w", clientID, err)
	}
	ev.StatusIndex = k.StatusIndex
	s.logAudit(ctx, ev)
	for _, idx := range []int64{k.StatusIndex, k.PreviousStatusIndex} {
		if idx > 0 {
			if err := s.store.RevokeStatus(ctx, idx); err != nil {
				return fmt.Errorf("admin key %s deleted, but setting its status bit failed: %w", clientID, err)
			}
		}
	}
	return nil
}
