package server

// Admin keys through the API (issue 16): /v1/admin-keys. Who may call
// which route is the management middleware's route table (server/authz.go);
// the rules of admin keys (roles, the environment's key, the last full
// admin) are apikey's.

import (
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/keygate/keygate/apikey"
	"github.com/keygate/keygate/store"
)

// problemAdminKeyConflict: a change the admin key's situation forbids (the
// environment's key, the last full admin).
const problemAdminKeyConflict = "urn:keygate:problem:admin-key-conflict"

func (s *Server) mountAdminKeys(v1 *gin.RouterGroup) {
	ak := v1.Group("/admin-keys")
	getHead(ak, "", s.listAdminKeys)
	ak.POST("", s.createAdminKey)
	getHead(ak, "/:client_id", s.getAdminKey)
	ak.DELETE("/:client_id", s.deleteAdminKey)
	ak.POST("/:client_id/rotate", s.rotateAdminKey)
}

// adminKeyView is the JSON shape of an admin key: never a secret or hash.
type adminKeyView struct {
	ClientID        string     `json:"client_id"`
	Name            string     `json:"name"`
	Role            string     `json:"role"`
	CreatedAt       time.Time  `json:"created_at"`
	LastUsedAt      *time.Time `json:"last_used_at"`
	SecretRotatedAt *time.Time `json:"secret_rotated_at"`
	// PreviousSecretExpiresAt: as for team keys (keyView).
	PreviousSecretExpiresAt *time.Time `json:"previous_secret_expires_at"`
	// ManagedByEnvironment: the key KEYGATE_ADMIN_CLIENT_ID names; the API
	// neither rotates nor deletes it.
	ManagedByEnvironment bool `json:"managed_by_environment"`
}

type createdAdminKeyView struct {
	adminKeyView
	ClientSecret string `json:"client_secret"`
}

type adminKeyListView struct {
	AdminKeys []adminKeyView `json:"admin_keys"`
}

func (s *Server) adminView(k store.Key) adminKeyView {
	kv := s.view(k) // the same times, read the same way
	return adminKeyView{
		ClientID:                k.ClientID,
		Name:                    k.Name,
		Role:                    apikey.AdminRoleName(k),
		CreatedAt:               kv.CreatedAt,
		LastUsedAt:              kv.LastUsedAt,
		SecretRotatedAt:         kv.SecretRotatedAt,
		PreviousSecretExpiresAt: kv.PreviousSecretExpiresAt,
		ManagedByEnvironment:    s.keys.EnvironmentManaged(k.ClientID),
	}
}

func (s *Server) listAdminKeys(c *gin.Context) {
	keys, err := s.keys.AdminKeys(c.Request.Context())
	if err != nil {
		s.storeProblem(c, err)
		return
	}
	out := adminKeyListView{AdminKeys: make([]adminKeyView, 0, len(keys))}
	for _, k := range keys {
		out.AdminKeys = append(out.AdminKeys, s.adminView(k))
	}
	c.JSON(http.StatusOK, out)
}

type createAdminKeyRequest struct {
	Name *string `json:"name"`
	Role *string `json:"role"`
}

var createAdminKeyFields = structFields(&createAdminKeyRequest{})

func (s *Server) createAdminKey(c *gin.Context) {
	var req createAdminKeyRequest
	if !decodeJSON(c, &req, createAdminKeyFields) {
		return
	}
	if req.Name == nil {
		problem(c, http.StatusBadRequest, problemInvalid, `"name" is required: give the admin key a name people will recognise, e.g. "Billing backend"`)
		return
	}
	if req.Role == nil {
		problem(c, http.StatusBadRequest, problemInvalid, `"role" is required: "admin" (every change) or "read" (read only)`)
		return
	}
	k, secret, err := s.keys.CreateAdminKey(c.Request.Context(), s.requestMeta(c), apikey.NewAdminKey{Name: *req.Name, Role: *req.Role})
	var inv *apikey.InvalidError
	switch {
	case errors.As(err, &inv):
		problem(c, http.StatusBadRequest, problemInvalid, inv.Detail)
		return
	case errors.Is(err, apikey.ErrConflict):
		problem(c, http.StatusConflict, problemKeyIDConflict, "a key with the generated client ID exists; retry the request")
		return
	case err != nil:
		s.storeProblem(c, err)
		return
	}
	c.Header("Location", "/v1/admin-keys/"+k.ClientID)
	c.JSON(http.StatusCreated, createdAdminKeyView{adminKeyView: s.adminView(k), ClientSecret: secret})
}

func (s *Server) getAdminKey(c *gin.Context) {
	id := c.Param("client_id")
	k, err := s.keys.AdminKey(c.Request.Context(), id)
	if err != nil {
		s.adminKeyProblem(c, id, err)
		return
	}
	c.JSON(http.StatusOK, s.adminView(k))
}

func (s *Server) rotateAdminKey(c *gin.Context) {
	id := c.Param("client_id")
	grace, given, ok := rotateGracePeriod(c)
	if !ok {
		return
	}
	k, secret, err := s.keys.RotateAdminKey(c.Request.Context(), s.requestMeta(c), id, grace)
	s.statusLists.invalidate() // as rotateKey: bits may be set even on failure
	if err != nil {
		s.adminKeyProblem(c, id, err)
		return
	}
	s.reqLog(c).Info("management: admin key secret rotated", "client_id", id, "grace_period", given)
	c.JSON(http.StatusOK, createdAdminKeyView{adminKeyView: s.adminView(k), ClientSecret: secret})
}

func (s *Server) deleteAdminKey(c *gin.Context) {
	id := c.Param("client_id")
	err := s.keys.DeleteAdminKey(c.Request.Context(), s.requestMeta(c), id)
	s.statusLists.invalidate()
	if err != nil {
		s.adminKeyProblem(c, id, err)
		return
	}
	c.Status(http.StatusNoContent)
}

func (s *Server) adminKeyProblem(c *gin.Context, id string, err error) {
	var inv *apikey.InvalidError
	switch {
	case errors.Is(err, apikey.ErrNotFound):
		problem(c, http.StatusNotFound, problemNotFound, fmt.Sprintf(
			"there is no admin key %q; list them with GET /v1/admin-keys", truncate(id, 80)))
	case errors.Is(err, apikey.ErrEnvironmentManaged):
		problem(c, http.StatusConflict, problemAdminKeyConflict, fmt.Sprintf(
			"admin key %s is managed by the environment (KEYGATE_ADMIN_CLIENT_ID): change KEYGATE_ADMIN_CLIENT_SECRET and restart to rotate it, or unset both to stop configuring it", id))
	case errors.Is(err, apikey.ErrLastAdmin):
		problem(c, http.StatusConflict, problemAdminKeyConflict, fmt.Sprintf(
			"admin key %s is the last full admin key: deleting it would leave no key that can manage keygate; create another full admin key (role \"admin\") first", id))
	case errors.As(err, &inv):
		problem(c, http.StatusBadRequest, problemInvalid, inv.Detail)
	default:
		s.storeProblem(c, err)
	}
}
