package server

// Changing a key: PATCH /v1/teams/{team_id}/keys/{client_id} with an RFC
// 7396 JSON merge patch. The rules (name, permission list, operator-only
// consent, atomic write) are apikey.Service.Update's; this file reads the
// patch. Fields are read one by one rather than into a struct because a
// merge patch gives null a meaning (remove the member) that a struct would
// lose: a name or a permission list cannot be removed, and saying so beats
// ignoring it, while a key policy field's null (token_quota) clears it back
// to the server's default.

import (
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"slices"
	"sort"
	"strings"

	"github.com/gin-gonic/gin"

	"github.com/keygate/keygate/apikey"
)

const mergePatchType = "application/merge-patch+json"

// patchFields are the members a key's merge patch may hold, as the error
// for an unknown member lists them. Later settings of a key join here.
var patchFields = append([]string{"name", "permissions", "grant_operator_permissions", "token_quota"}, policyFields...)

var patchBody = bodyFields{names: patchFields, unknown: func(name string) string {
	return fmt.Sprintf("unknown field %q; a key's patch may hold %s", name, quotedList(patchFields))
}}

func (s *Server) updateKey(c *gin.Context) {
	team, id := c.Param("team_id"), c.Param("client_id")
	ch, ok := readKeyPatch(c)
	if !ok {
		return
	}
	ch.By = callerOf(c).manager()
	if ch.By != nil && ch.GrantOperatorPermissions {
		problem(c, http.StatusForbidden, problemForbidden, `a team manager cannot grant operator-only permissions; leave out "grant_operator_permissions"`)
		return
	}
	k, changed, err := s.keys.Update(c.Request.Context(), s.requestMeta(c), team, id, ch)
	var inv *apikey.InvalidError
	var forb *apikey.ForbiddenError
	switch {
	case errors.As(err, &inv):
		problem(c, http.StatusBadRequest, problemInvalid, inv.Detail)
		return
	case errors.As(err, &forb):
		problem(c, http.StatusForbidden, problemForbidden, forb.Detail)
		return
	case err != nil:
		s.keyProblem(c, team, id, err)
		return
	}
	if len(changed) > 0 {
		s.reqLog(c).Info("management: key updated", "team_id", team, "client_id", id, "changed", changed)
	}
	if slices.Contains(changed, "disabled") {
		// Suspended or resumed: this instance's list shows it at once.
		s.statusLists.invalidate()
	}
	c.JSON(http.StatusOK, s.view(k))
}

// readKeyPatch reads a key's merge patch into an apikey.KeyChange, or
// answers with a problem and returns false. Each member must have its
// type: a wrong one is refused, not coerced.
func readKeyPatch(c *gin.Context) (apikey.KeyChange, bool) {
	var ch apikey.KeyChange
	mt, _, err := mime.ParseMediaType(c.GetHeader("Content-Type"))
	if err != nil || mt != mergePatchType {
		// RFC 5789 §2.2: a 415 to a PATCH says which patch formats work.
		c.Header("Accept-Patch", mergePatchType)
		problem(c, http.StatusUnsupportedMediaType, problemMediaType,
			"send the change as a JSON merge patch (RFC 7396) with Content-Type: "+mergePatchType)
		return ch, false
	}
	// decodeBody refuses null, anything but an object, and any member
	// not in patchFields.
	var members map[string]json.RawMessage
	if !decodeBody(c, &members, patchBody) {
		return ch, false
	}
	names := make([]string, 0, len(members))
	for name := range members {
		names = append(names, name)
	}
	sort.Strings(names) // the first bad member is the same on every try
	for _, name := range names {
		raw := members[name]
		isNull := string(raw) == "null"
		var bad string
		switch name {
		case "name":
			var v string
			if isNull {
				bad = `"name" cannot be removed: a key always has a name; send the new name`
			} else if json.Unmarshal(raw, &v) != nil {
				bad = `"name" must be a JSON string`
			}
			ch.Name = &v
		case "permissions":
			var v []string
			if isNull {
				bad = `"permissions" cannot be removed: send the whole new list of permission IDs`
			} else if json.Unmarshal(raw, &v) != nil || v == nil {
				bad = `"permissions" must be a JSON array of permission IDs; it replaces the whole list`
			}
			ch.Permissions = &v
		case "token_quota":
			// null clears the key's own quota: the zero Policy.
			p, msg := decodeTokenQuota(raw)
			bad = msg
			ch.TokenQuota = &p
		case "expires_at", "disabled", "token_ttl", "audiences", "allowed_cidrs", "metadata":
			bad = decodePolicyMember(name, raw, &ch)
		case "grant_operator_permissions":
			if json.Unmarshal(raw, &ch.GrantOperatorPermissions) != nil || isNull {
				bad = `"grant_operator_permissions" must be true or false`
			}
		}
		if bad != "" {
			problem(c, http.StatusBadRequest, problemInvalid, bad)
			return ch, false
		}
	}
	if ch.GrantOperatorPermissions && ch.Permissions == nil {
		problem(c, http.StatusBadRequest, problemInvalid,
			`"grant_operator_permissions" consents to operator-only permissions in the same patch's "permissions"; this patch has none`)
		return ch, false
	}
	return ch, true
}

func quotedList(names []string) string {
	q := make([]string, len(names))
	for i, n := range names {
		q[i] = fmt.Sprintf("%q", n)
	}
	return strings.Join(q, ", ")
}
