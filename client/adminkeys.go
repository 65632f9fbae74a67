package client

// Admin keys (/v1/admin-keys) and team offboarding (DELETE
// /v1/teams/{team_id}).

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"time"
)

// Admin key roles.
const (
	RoleAdmin = "admin" // every change (scope keys:admin)
	RoleRead  = "read"  // reads only (scope keys:read)
)

// AdminKey is an admin key as the management API shows it.
type AdminKey struct {
	ClientID                string     `json:"client_id"`
	Name                    string     `json:"name"`
	Role                    string     `json:"role"`
	CreatedAt               time.Time  `json:"created_at"`
	LastUsedAt              *time.Time `json:"last_used_at"`
	SecretRotatedAt         *time.Time `json:"secret_rotated_at"`
	PreviousSecretExpiresAt *time.Time `json:"previous_secret_expires_at"`
	// ManagedByEnvironment: the key KEYGATE_ADMIN_CLIENT_ID names; the
	// API neither rotates nor deletes it.
	ManagedByEnvironment bool `json:"managed_by_environment"`
}

// CreatedAdminKey is an admin key with its secret, shown once.
type CreatedAdminKey struct {
	AdminKey
	ClientSecret string `json:"client_secret"`
}

// AdminKeys lists the admin keys.
func (c *Client) AdminKeys(ctx context.Context) ([]AdminKey, error) {
	var out struct {
		AdminKeys []AdminKey `json:"admin_keys"`
	}
	if err := c.do(ctx, http.MethodGet, "/v1/admin-keys", nil, http.StatusOK, &out); err != nil {
		return nil, err
	}
	return out.AdminKeys, nil
}

// AdminKey returns one admin key.
func (c *Client) AdminKey(ctx context.Context, clientID string) (*AdminKey, error) {
	var out AdminKey
	return &out, c.do(ctx, http.MethodGet, "/v1/admin-keys/"+url.PathEscape(clientID), nil, http.StatusOK, &out)
}

// CreateAdminKey creates an admin key of role RoleAdmin or RoleRead.
func (c *Client) CreateAdminKey(ctx context.Context, name, role string) (*CreatedAdminKey, error) {
	body, err := json.Marshal(map[string]string{"name": name, "role": role})
	if err != nil {
		return nil, err
	}
	var out CreatedAdminKey
	return &out, c.do(ctx, http.MethodPost, "/v1/admin-keys", body, http.StatusCreated, &out)
}

// RotateAdminKey gives an admin key a new secret; gracePeriod as for
// RotateKey. The key managed by the environment is a 409 *Error.
func (c *Client) RotateAdminKey(ctx context.Context, clientID string, gracePeriod *time.Duration) (*CreatedAdminKey, error) {
	var body []byte
	if gracePeriod != nil {
		var err error
		if body, err = json.Marshal(map[string]string{"grace_period": gracePeriod.String()}); err != nil {
			return nil, err
		}
	}
	var out CreatedAdminKey
	return &out, c.do(ctx, http.MethodPost, "/v1/admin-keys/"+url.PathEscape(clientID)+"/rotate", body, http.StatusOK, &out)
}

// DeleteAdminKey deletes an admin key. The last full admin key and the key
// managed by the environment are 409 *Errors.
func (c *Client) DeleteAdminKey(ctx context.Context, clientID string) error {
	return c.do(ctx, http.MethodDelete, "/v1/admin-keys/"+url.PathEscape(clientID), nil, http.StatusNoContent, nil)
}

// TeamDeletion is what DeleteTeam removed.
type TeamDeletion struct {
	TeamID        string `json:"team_id"`
	KeysDeleted   int    `json:"keys_deleted"`
	SessionsEnded int    `json:"sessions_ended"`
	EventsErased  int    `json:"events_erased"`
}

// DeleteTeam offboards a team: its keys, usage and sessions go; with
// erase, the personal data of its audit events is blanked too.
func (c *Client) DeleteTeam(ctx context.Context, team string, erase bool) (*TeamDeletion, error) {
	path := "/v1/teams/" + url.PathEscape(team)
	if erase {
		path += "?erase=true"
	}
	var out TeamDeletion
	return &out, c.do(ctx, http.MethodDelete, path, nil, http.StatusOK, &out)
}
