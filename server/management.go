package server

// The management API: API keys of a team, for holders of an admin token.
// Teams are implicit — a team exists while it has keys. Handlers decode the
// request, call apikey.Service, and map its errors; every error is RFC 9457
// problem+json whose detail says what to do next.

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"reflect"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/gin-gonic/gin"

	"github.com/keygate/keygate/apikey"
	"github.com/keygate/keygate/store"
)

const maxManagementBody = 64 << 10

// Problem types clients can branch on.
const (
	problemUnauthorized  = "urn:keygate:problem:unauthorized"
	problemForbidden     = "urn:keygate:problem:forbidden"
	problemInvalid       = "urn:keygate:problem:invalid-request"
	problemNotFound      = "urn:keygate:problem:not-found"
	problemTeamLimit     = "urn:keygate:problem:team-limit"
	problemUnavailable   = "urn:keygate:problem:unavailable"
	problemInternal      = "urn:keygate:problem:internal"
	problemMediaType     = "urn:keygate:problem:unsupported-media-type"
	problemBodyTooLarge  = "urn:keygate:problem:body-too-large"
	problemKeyIDConflict = "urn:keygate:problem:conflict"
	problemKeyExpired    = "urn:keygate:problem:key-expired"
)

// claimsKey is where authenticate (server/authz.go) leaves the verified
// claims.
const claimsKey = "keygate.claims"

func (s *Server) mountManagement(r *gin.Engine) {
	// authenticate admits each caller by the route table (server/authz.go).
	v1 := r.Group("/v1", noStore, s.authenticate)
	getHead(v1, "/me", s.me)
	getHead(v1, "/teams", s.listTeams)
	getHead(v1, "/permissions", s.listPermissions)
	getHead(v1, "/keys/:client_id", s.getKeyByID)
	getHead(v1, "/events", s.listEvents)
	getHead(v1, "/teams/:team_id/events", validTeam, s.listTeamEvents)
	keys := v1.Group("/teams/:team_id/keys", validTeam)
	keys.POST("", s.createKey)
	getHead(keys, "", s.listKeys)
	getHead(keys, "/:client_id", s.getKey)
	keys.PATCH("/:client_id", s.updateKey)
	keys.DELETE("/:client_id", s.deleteKey)
	keys.POST("/:client_id/rotate", s.rotateKey)
	getHead(v1, "/teams/:team_id/usage", validTeam, s.teamUsage)
	getHead(v1, "/store/backup", s.storeBackup)
	getHead(v1, "/signing-keys", s.listSigningKeys)
	v1.POST("/signing-keys/rotate", s.rotateSigningKeys)
	s.mountAdminKeys(v1)
	s.mountOffboarding(v1)
	s.mountConsoleSessions(v1)
	// Outside the admin group: a report needs no token (leaked.go).
	s.mountLeaked(r)
}

// noStore: management responses may describe keys; no cache may keep them.
func noStore(c *gin.Context) {
	c.Header("Cache-Control", "no-store")
	c.Next()
}

func validTeam(c *gin.Context) {
	if team := c.Param("team_id"); !apikey.ValidTeamID(team) {
		problem(c, http.StatusBadRequest, problemInvalid,
			fmt.Sprintf("team id %q is not valid: %s", truncate(team, 80), apikey.TeamIDRule))
		return
	}
	c.Next()
}

// keyView is the JSON shape of a key (docs/ARCHITECTURE.md): never a secret or hash.
type keyView struct {
	ClientID    string     `json:"client_id"`
	TeamID      string     `json:"team_id"`
	Name        string     `json:"name"`
	Permissions []string   `json:"permissions"`
	Scopes      []string   `json:"scopes"`
	CreatedAt   time.Time  `json:"created_at"`
	LastUsedAt  *time.Time `json:"last_used_at"`
	// SecretRotatedAt is null for a key never rotated.
	SecretRotatedAt *time.Time `json:"secret_rotated_at"`
	// PreviousSecretExpiresAt is when the secret replaced by the last
	// rotation stops working; null when there is no such secret any more.
	PreviousSecretExpiresAt *time.Time `json:"previous_secret_expires_at"`
	// SecretSuspendedAt is when the current secret was reported leaked
	// (POST /v1/leaked-secrets); the key gets no token until it is
	// rotated. null while the secret is not suspended.
	SecretSuspendedAt *time.Time `json:"secret_suspended_at"`
	// TokenQuota is the key's own issuance quota; null when it has none
	// (the server's token_quota_per_key, if any, applies).
	TokenQuota *tokenQuotaView `json:"token_quota"`
	// The other policy fields (keypolicy.go).
	policyView
}

type createdKeyView struct {
	keyView
	ClientSecret string `json:"client_secret"`
}

type keyListView struct {
	Keys    []keyView `json:"keys"`
	MaxKeys int       `json:"max_keys"`
}

func (s *Server) view(k store.Key) keyView {
	v := keyView{
		ClientID:    k.ClientID,
		TeamID:      k.TeamID,
		Name:        k.Name,
		Permissions: append([]string{}, k.Permissions...),
		CreatedAt:   k.CreatedAt.UTC().Truncate(time.Second),
		TokenQuota:  viewTokenQuota(k.TokenQuota),
		policyView:  s.viewPolicy(k),
	}
	if sc, err := s.keys.Scopes(k); err == nil {
		v.Scopes = sc
	} else {
		v.Scopes = []string{}
	}
	if !k.LastUsedAt.IsZero() {
		t := k.LastUsedAt.UTC().Truncate(time.Second)
		v.LastUsedAt = &t
	}
	if !k.SecretRotatedAt.IsZero() {
		t := k.SecretRotatedAt.UTC().Truncate(time.Second)
		v.SecretRotatedAt = &t
	}
	// Live exactly when the token endpoint still accepts it (same clock,
	// same rule as apikey.Service.Authenticate). Truncating shows a time at
	// or before the real end, never after it.
	if apikey.PreviousSecretLive(k, s.cfg.Now()) {
		t := k.PreviousSecretExpiresAt.UTC().Truncate(time.Second)
		v.PreviousSecretExpiresAt = &t
	}
	if apikey.SecretSuspended(k) {
		t := k.SecretSuspendedAt.UTC().Truncate(time.Second)
		v.SecretSuspendedAt = &t
	}
	return v
}

type createKeyRequest struct {
	Name        *string  `json:"name"`
	Permissions []string `json:"permissions"`
	// GrantOperatorPermissions is the admin's explicit consent to grant
	// operator-only permissions (such as token_introspection for a
	// resource server), which are never offered to teams.
	GrantOperatorPermissions bool `json:"grant_operator_permissions"`
	// TokenQuota is read by decodeTokenQuota, the other policy members
	// by decodePolicyMember (server/keypolicy.go).
	TokenQuota   json.RawMessage `json:"token_quota"`
	ExpiresAt    json.RawMessage `json:"expires_at"`
	Disabled     json.RawMessage `json:"disabled"`
	TokenTTL     json.RawMessage `json:"token_ttl"`
	Audiences    json.RawMessage `json:"audiences"`
	AllowedCIDRs json.RawMessage `json:"allowed_cidrs"`
	Metadata     json.RawMessage `json:"metadata"`
}

// policy reads the policy members the request holds, or returns the
// problem's detail.
func (r *createKeyRequest) policy() (apikey.Policy, string) {
	var ch apikey.KeyChange
	for _, m := range []struct {
		name string
		raw  json.RawMessage
	}{{"expires_at", r.ExpiresAt}, {"disabled", r.Disabled}, {"token_ttl", r.TokenTTL},
		{"audiences", r.Audiences}, {"allowed_cidrs", r.AllowedCIDRs}, {"metadata", r.Metadata}} {
		if m.raw == nil {
			continue
		}
		if bad := decodePolicyMember(m.name, m.raw, &ch); bad != "" {
			return apikey.Policy{}, bad
		}
	}
	return policyOf(ch), ""
}

var createFields = structFields(&createKeyRequest{})

func (s *Server) createKey(c *gin.Context) {
	team := c.Param("team_id")
	var req createKeyRequest
	if !decodeJSON(c, &req, createFields) {
		return
	}
	if req.Name == nil {
		problem(c, http.StatusBadRequest, problemInvalid, `"name" is required: give the key a name people will recognise, e.g. "Production sync"`)
		return
	}
	if m := callerOf(c).manager(); m != nil {
		if req.GrantOperatorPermissions {
			problem(c, http.StatusForbidden, problemForbidden, `a team manager cannot grant operator-only permissions; leave out "grant_operator_permissions"`)
			return
		}
		var forb *apikey.ForbiddenError
		if err := s.keys.CheckManagerGrant(req.Permissions); errors.As(err, &forb) {
			problem(c, http.StatusForbidden, problemForbidden, forb.Detail)
			return
		}
	}
	nk := apikey.NewKey{
		Team:                     team,
		Name:                     *req.Name,
		Permissions:              req.Permissions,
		GrantOperatorPermissions: req.GrantOperatorPermissions,
	}
	if req.TokenQuota != nil {
		var bad string
		if nk.TokenQuota, bad = decodeTokenQuota(req.TokenQuota); bad != "" {
			problem(c, http.StatusBadRequest, problemInvalid, bad)
			return
		}
	}
	var bad string
	if nk.Policy, bad = req.policy(); bad != "" {
		problem(c, http.StatusBadRequest, problemInvalid, bad)
		return
	}
	k, secret, err := s.keys.Create(c.Request.Context(), s.requestMeta(c), nk)
	var inv *apikey.InvalidError
	switch {
	case errors.As(err, &inv):
		problem(c, http.StatusBadRequest, problemInvalid, inv.Detail)
		return
	case errors.Is(err, apikey.ErrTeamLimit):
		problem(c, http.StatusConflict, problemTeamLimit, fmt.Sprintf(
			"team %s already has %d API keys, the maximum (suspended and expired keys count too); delete one before creating another", team, s.keys.MaxKeysPerTeam()))
		return
	case errors.Is(err, apikey.ErrConflict):
		problem(c, http.StatusConflict, problemKeyIDConflict, "a key with the generated client ID exists; retry the request")
		return
	case err != nil:
		s.storeProblem(c, err)
		return
	}
	if apikey.KeySuspended(k) {
		s.statusLists.invalidate() // its entry is SUSPENDED already
	}
	c.Header("Location", "/v1/teams/"+team+"/keys/"+k.ClientID)
	c.JSON(http.StatusCreated, createdKeyView{keyView: s.view(k), ClientSecret: secret})
}

func (s *Server) listKeys(c *gin.Context) {
	keys, err := s.keys.List(c.Request.Context(), c.Param("team_id"))
	if err != nil {
		s.storeProblem(c, err)
		return
	}
	if m := callerOf(c).manager(); m != nil {
		keys = s.keys.VisibleTo(*m, keys)
	}
	out := keyListView{Keys: make([]keyView, 0, len(keys)), MaxKeys: s.keys.MaxKeysPerTeam()}
	for _, k := range keys {
		out.Keys = append(out.Keys, s.view(k))
	}
	c.JSON(http.StatusOK, out)
}

type teamView struct {
	TeamID   string `json:"team_id"`
	KeyCount int    `json:"key_count"`
}

type teamListView struct {
	Teams   []teamView `json:"teams"`
	MaxKeys int        `json:"max_keys"`
	// Next is the after= of the next page; null on the last one.
	Next *string `json:"next"`
}

const (
	defaultTeamsPage = 100
	maxTeamsPage     = 1000
)

// listTeams answers GET /v1/teams[?prefix=&after=&limit=]: the teams that
// hold keys, with their key counts, a page at a time, so a console can
// offer them without the admin remembering team IDs and without loading
// every team of a large installation. Teams are implicit, so a team
// without keys is not listed.
func (s *Server) listTeams(c *gin.Context) {
	q, ok := teamQuery(c)
	if !ok {
		return
	}
	limit := q.Limit
	q.Limit++ // one more than asked: is there a next page?
	teams, err := s.keys.Teams(c.Request.Context(), q)
	if err != nil {
		s.storeProblem(c, err)
		return
	}
	out := teamListView{Teams: make([]teamView, 0, min(len(teams), limit)), MaxKeys: s.keys.MaxKeysPerTeam()}
	if len(teams) > limit {
		teams = teams[:limit]
		next := teams[limit-1].TeamID
		out.Next = &next
	}
	for _, t := range teams {
		out.Teams = append(out.Teams, teamView{TeamID: t.TeamID, KeyCount: t.Keys})
	}
	c.JSON(http.StatusOK, out)
}

// teamQuery reads and checks listTeams' query parameters; on bad input it
// answers with a problem and returns false.
func teamQuery(c *gin.Context) (store.TeamQuery, bool) {
	q := store.TeamQuery{Limit: defaultTeamsPage}
	for name, values := range c.Request.URL.Query() {
		if len(values) != 1 {
			problem(c, http.StatusBadRequest, problemInvalid, fmt.Sprintf("query parameter %q is given %d times; give it once", truncate(name, 40), len(values)))
			return q, false
		}
		v := values[0]
		switch name {
		case "prefix":
			if !apikey.ValidTeamPrefix(v) {
				problem(c, http.StatusBadRequest, problemInvalid, fmt.Sprintf("prefix %q cannot start a team ID: use up to 64 characters of A-Z a-z 0-9 . _ -, starting with a letter or digit", truncate(v, 80)))
				return q, false
			}
			q.Prefix = v
		case "after":
			if v != "" && !apikey.ValidTeamID(v) {
				problem(c, http.StatusBadRequest, problemInvalid, fmt.Sprintf("after %q is not a team ID: pass the \"next\" value of the previous page", truncate(v, 80)))
				return q, false
			}
			q.After = v
		case "limit":
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 || n > maxTeamsPage {
				problem(c, http.StatusBadRequest, problemInvalid, fmt.Sprintf("limit %q must be a whole number from 1 to %d", truncate(v, 40), maxTeamsPage))
				return q, false
			}
			q.Limit = n
		default:
			problem(c, http.StatusBadRequest, problemInvalid, fmt.Sprintf("unknown query parameter %q; GET /v1/teams takes prefix, after and limit", truncate(name, 40)))
			return q, false
		}
	}
	return q, true
}

type permissionView struct {
	ID          string   `json:"id"`
	Name        string   `json:"name"`
	Description string   `json:"description"`
	Scopes      []string `json:"scopes"`
}

// listPermissions answers GET /v1/permissions: the catalog entries a team
// key may hold, in catalog order, with the display names and descriptions
// a console shows. Operator-only entries are left out: they are granted
// through the API with an explicit flag, never picked from a list.
func (s *Server) listPermissions(c *gin.Context) {
	offered := s.keys.Catalog().Offered()
	out := make([]permissionView, 0, len(offered))
	for _, p := range offered {
		out = append(out, permissionView{ID: p.ID, Name: p.Name, Description: p.Description, Scopes: p.Scopes})
	}
	c.JSON(http.StatusOK, gin.H{"permissions": out, "max_name_length": apikey.MaxNameLen})
}

func (s *Server) getKey(c *gin.Context) {
	team, id := c.Param("team_id"), c.Param("client_id")
	k, err := s.keyFor(c, team, id)
	if err != nil {
		s.keyProblem(c, team, id, err)
		return
	}
	c.JSON(http.StatusOK, s.view(k))
}

// getKeyByID answers GET /v1/keys/{client_id}: a team key found by its
// client ID alone (the ID carries its team's tag: one store read), in the
// same shape as GET /v1/teams/{team_id}/keys/{client_id}. An admin key is
// not found here, as an unknown ID is.
func (s *Server) getKeyByID(c *gin.Context) {
	id := c.Param("client_id")
	k, err := s.keys.GetByID(c.Request.Context(), id)
	if m := callerOf(c).manager(); m != nil && (err == nil || errors.Is(err, apikey.ErrNotFound)) {
		// Another team's key, one hidden from managers, or none: the same
		// answer, in the caller's own team's terms.
		if err != nil || !s.keys.Sees(*m, k) {
			keyNotFound(c, m.Team, id)
			return
		}
	}
	if errors.Is(err, apikey.ErrNotFound) {
		problem(c, http.StatusNotFound, problemNotFound, fmt.Sprintf(
			"no team has a key %q; list the teams with GET /v1/teams and a team's keys with GET /v1/teams/{team_id}/keys", truncate(id, 80)))
		return
	}
	if err != nil {
		s.storeProblem(c, err)
		return
	}
	c.JSON(http.StatusOK, s.view(k))
}

func (s *Server) deleteKey(c *gin.Context) {
	team, id := c.Param("team_id"), c.Param("client_id")
	if !s.managerSees(c, team, id) {
		return
	}
	err := s.keys.Delete(c.Request.Context(), s.requestMeta(c), team, id)
	// The key's status bit may be set even when the delete failed after it:
	// the next status list request rebuilds the list either way.
	s.statusLists.invalidate()
	if err != nil {
		s.keyProblem(c, team, id, err)
		return
	}
	c.Status(http.StatusNoContent)
}

// keyFor reads the team's key for the caller: for a team-bound caller, a
// key it does not see (apikey/managers.go) is ErrNotFound. Delete and
// rotate check with it first; the check and the change are two steps, so
// a permission an operator adds in between is not seen (PATCH checks in its
// atomic step).
func (s *Server) keyFor(c *gin.Context, team, id string) (store.Key, error) {
	if m := callerOf(c).manager(); m != nil {
		return s.keys.GetFor(c.Request.Context(), *m, id)
	}
	return s.keys.Get(c.Request.Context(), team, id)
}

// managerSees answers 404 for a key a team-bound caller does not see and
// returns false; true for operators, with no store read.
func (s *Server) managerSees(c *gin.Context, team, id string) bool {
	if callerOf(c).manager() == nil {
		return true
	}
	if _, err := s.keyFor(c, team, id); err != nil {
		s.keyProblem(c, team, id, err)
		return false
	}
	return true
}

// keyProblem answers an error of a call on one key of the path's team:
// 404 for a key the team does not have (also a key of another team: the
// path is the scope), else the store's problem.
func (s *Server) keyProblem(c *gin.Context, team, id string, err error) {
	switch {
	case errors.Is(err, apikey.ErrNotFound):
		keyNotFound(c, team, id)
	case errors.Is(err, apikey.ErrExpiredFinal):
		problem(c, http.StatusConflict, problemKeyExpired, fmt.Sprintf(
			"key %s has expired, and expiry is final: its expiry cannot be moved or cleared, nor its secret rotated; create a new key", truncate(id, 80)))
	default:
		s.storeProblem(c, err)
	}
}

func keyNotFound(c *gin.Context, team, id string) {
	problem(c, http.StatusNotFound, problemNotFound, fmt.Sprintf(
		"team %s has no key %q; list the team's keys with GET /v1/teams/%s/keys", team, truncate(id, 80), team))
}

// storeProblem answers a store failure: 503 when the store did not answer
// in time, 500 otherwise. The detail is a constant; the error goes to the
// log only.
func (s *Server) storeProblem(c *gin.Context, err error) {
	if s.clientGone(c, err) {
		problem(c, http.StatusServiceUnavailable, problemUnavailable, "the request was canceled")
		return
	}
	if apikey.Unavailable(err) {
		s.reqLog(c).Warn("management: store unavailable", "err", err)
		c.Header("Retry-After", "1")
		problem(c, http.StatusServiceUnavailable, problemUnavailable, "the key store is temporarily unavailable; retry shortly")
		return
	}
	s.internalProblem(c, err)
}

func (s *Server) internalProblem(c *gin.Context, err error) {
	s.reqLog(c).Error("management: internal error", "route", c.FullPath(), "err", err)
	problem(c, http.StatusInternalServerError, problemInternal, "keygate could not complete the request; the server log has details")
}

// bodyFields is what a management request body may hold: the members of
// its one JSON object, named exactly, and the detail of the answer to any
// other member (each endpoint says what it takes).
type bodyFields struct {
	names   []string
	unknown func(name string) string
}

// structFields is bodyFields for decoding into the struct v points to.
func structFields(v any) bodyFields {
	names := jsonFields(v)
	return bodyFields{names: names, unknown: func(name string) string {
		return fmt.Sprintf("the body is not the expected JSON object: unknown field %q; allowed fields are %s", name, quotedList(names))
	}}
}

// decodeJSON reads a single JSON object holding only the members of f
// into v, or answers with a problem and returns false.
func decodeJSON(c *gin.Context, v any, f bodyFields) bool {
	mt, _, err := mime.ParseMediaType(c.GetHeader("Content-Type"))
	if err != nil || mt != "application/json" {
		problem(c, http.StatusUnsupportedMediaType, problemMediaType, "send the body as JSON with Content-Type: application/json")
		return false
	}
	return decodeBody(c, v, f)
}

// decodeBody is decodeJSON after the content type was checked.
func decodeBody(c *gin.Context, v any, f bodyFields) bool {
	body, err := io.ReadAll(io.LimitReader(c.Request.Body, maxManagementBody+1))
	if err != nil {
		problem(c, http.StatusBadRequest, problemInvalid, "could not read the request body")
		return false
	}
	if len(body) > maxManagementBody {
		problem(c, http.StatusRequestEntityTooLarge, problemBodyTooLarge, "the request body is over 64 KiB")
		return false
	}
	// encoding/json would replace invalid bytes with U+FFFD and store a name
	// nobody typed; refuse instead.
	if !utf8.Valid(body) {
		problem(c, http.StatusBadRequest, problemInvalid, "the body is not valid UTF-8: send JSON encoded as UTF-8 (RFC 8259)")
		return false
	}
	var unknown *unknownFieldError
	switch err := checkStrictJSON(body, f.names); {
	case errors.As(err, &unknown):
		problem(c, http.StatusBadRequest, problemInvalid, f.unknown(unknown.name))
		return false
	case err != nil:
		problem(c, http.StatusBadRequest, problemInvalid, "the body is not the expected JSON object: "+err.Error())
		return false
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		problem(c, http.StatusBadRequest, problemInvalid, "the body is not the expected JSON object: "+jsonProblem(err, v))
		return false
	}
	return true
}

// jsonProblem describes a decoding error of a body checkStrictJSON passed,
// without echoing the body or naming a Go type.
func jsonProblem(err error, v any) string {
	var typ *json.UnmarshalTypeError
	if errors.As(err, &typ) && typ.Field != "" {
		name, _, _ := strings.Cut(typ.Field, ".")
		return fmt.Sprintf("field %q must be %s", name, jsonFieldKind(v, name))
	}
	return "malformed JSON"
}

// jsonFieldKind says in JSON's words what the field of the struct v points
// to with JSON name name holds.
func jsonFieldKind(v any, name string) string {
	t := reflect.TypeOf(v)
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	for i := 0; i < t.NumField(); i++ {
		if n, _, _ := strings.Cut(t.Field(i).Tag.Get("json"), ","); n == name {
			return jsonKindOf(t.Field(i).Type)
		}
	}
	return "of another JSON type"
}

func jsonKindOf(t reflect.Type) string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "true or false"
	case reflect.Int, reflect.Int64, reflect.Int32, reflect.Uint, reflect.Uint64, reflect.Uint32, reflect.Float64:
		return "a number"
	case reflect.Slice, reflect.Array:
		if e := t.Elem(); e.Kind() == reflect.String {
			return "an array of strings"
		}
		return "an array"
	default:
		return "a JSON object"
	}
}

// jsonFields lists the JSON field names of the struct v points to.
func jsonFields(v any) []string {
	t := reflect.TypeOf(v)
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	var names []string
	for i := 0; i < t.NumField(); i++ {
		name, _, _ := strings.Cut(t.Field(i).Tag.Get("json"), ",")
		if name != "" && name != "-" {
			names = append(names, name)
		}
	}
	return names
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
