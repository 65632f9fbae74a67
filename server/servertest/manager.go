package servertest

import (
	"net/http"
	"testing"
)

// CreateManager creates a team management key (key_management, granted
// with the operator's consent) with the admin token tok, plus perms, or
// fails the test.
func (e *Env) CreateManager(t testing.TB, tok, team, name string, perms ...string) Key {
	t.Helper()
	r := e.API(t, tok, http.MethodPost, "/v1/teams/"+team+"/keys", map[string]any{
		"name": name, "permissions": append([]string{"key_management"}, perms...), "grant_operator_permissions": true})
	if r.Status != http.StatusCreated {
		t.Fatalf("create manager key in %s: %s", team, r)
	}
	return decodeKey(t, r)
}
