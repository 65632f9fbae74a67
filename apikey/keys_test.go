package apikey

import (
	"context"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/store"
)

// keysOf is every stored key, for "nothing changed" checks.
func keysOf(t *testing.T, st store.Store) map[string]store.Key {
	t.Helper()
	out := map[string]store.Key{}
	if err := st.ForEachKey(context.Background(), func(k store.Key) error { out[k.ClientID] = k; return nil }); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestCreateRefusalsChangeNothing(t *testing.T) {
	ctx := context.Background()
	svc, st, _ := openTestService(t)
	before := keysOf(t, st)
	var inv *InvalidError
	for _, nk := range []NewKey{
		{Team: "-acme", Name: "a", Permissions: []string{"accounting_api"}},
		{Team: strings.Repeat("t", 65), Name: "a", Permissions: []string{"accounting_api"}},
		{Team: "acme", Name: "  ", Permissions: []string{"accounting_api"}},
		{Team: "acme", Name: strings.Repeat("n", MaxNameLen+1), Permissions: []string{"accounting_api"}},
		{Team: "acme", Name: "a\u0007b", Permissions: []string{"accounting_api"}},
		{Team: "acme", Name: "a"},
		{Team: "acme", Name: "a", Permissions: []string{"payroll"}},
		{Team: "acme", Name: "a", Permissions: []string{"token_introspection"}},
	} {
		if _, secret, err := svc.Create(ctx, testReq, nk); !errors.As(err, &inv) || secret != "" {
			t.Errorf("%+v: err %v, secret %q; want an *InvalidError and no secret", nk, err, secret)
		}
	}
	if after := keysOf(t, st); !reflect.DeepEqual(before, after) {
		t.Fatalf("refused creates changed the store: %d keys before, %d after", len(before), len(after))
	}
	// The operator's explicit consent grants an operator-only permission.
	if _, _, err := svc.Create(ctx, testReq, NewKey{Team: "acme", Name: "rs", Permissions: []string{"token_introspection"}, GrantOperatorPermissions: true}); err != nil {
		t.Fatalf("operator-only permission with consent: %v", err)
	}
}

func TestCreateTeamLimit(t *testing.T) {
	ctx := context.Background()
	svc, st, _ := openTestService(t)
	for i := range svc.MaxKeysPerTeam() {
		k, secret, err := svc.Create(ctx, testReq, NewKey{Team: "acme", Name: "k", Permissions: []string{"accounting_api"}})
		if err != nil || secret == "" || k.StatusIndex == 0 || k.TeamID != "acme" || !strings.HasPrefix(k.ClientID, "kgc_") {
			t.Fatalf("key %d: %+v, %v", i, k, err)
		}
	}
	before := keysOf(t, st)
	if _, _, err := svc.Create(ctx, testReq, NewKey{Team: "acme", Name: "k", Permissions: []string{"accounting_api"}}); !errors.Is(err, ErrTeamLimit) {
		t.Fatalf("over the limit: %v", err)
	}
	if after := keysOf(t, st); !reflect.DeepEqual(before, after) {
		t.Fatal("a create refused for the limit changed the store")
	}
	if _, _, err := svc.Create(ctx, testReq, NewKey{Team: "other", Name: "k", Permissions: []string{"accounting_api"}}); err != nil {
		t.Fatalf("another team: %v", err)
	}
}

// TestTeamIsTheScope: a key of another team is not found by Get, Rotate or
// Delete, and they change nothing.
func TestTeamIsTheScope(t *testing.T) {
	ctx := context.Background()
	svc, st, _ := openTestService(t)
	k, _, err := svc.Create(ctx, testReq, NewKey{Team: "acme", Name: "a", Permissions: []string{"accounting_api"}})
	if err != nil {
		t.Fatal(err)
	}
	before := keysOf(t, st)
	if _, err := svc.Get(ctx, "other", k.ClientID); !errors.Is(err, ErrNotFound) {
		t.Errorf("Get from another team: %v", err)
	}
	if _, _, err := svc.Rotate(ctx, testReq, "other", k.ClientID, time.Hour); !errors.Is(err, ErrNotFound) {
		t.Errorf("Rotate from another team: %v", err)
	}
	if err := svc.Delete(ctx, testReq, "other", k.ClientID); !errors.Is(err, ErrNotFound) {
		t.Errorf("Delete from another team: %v", err)
	}
	if _, _, err := svc.Rotate(ctx, testReq, "acme", k.ClientID, MaxGracePeriod+time.Second); !errors.As(err, new(*InvalidError)) {
		t.Errorf("Rotate with a grace period over the maximum: %v", err)
	}
	if after := keysOf(t, st); !reflect.DeepEqual(before, after) {
		t.Fatal("refused calls changed the store")
	}
	l, err := st.StatusList(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if l.Entry(k.StatusIndex) != store.StatusValid {
		t.Fatal("a refused delete set the key's status bit")
	}
}

// TestDeleteRevokesStatusFirst: a deleted key's status bit is set, so its
// outstanding tokens stop at resource servers.
func TestDeleteRevokesStatus(t *testing.T) {
	ctx := context.Background()
	svc, st, _ := openTestService(t)
	k, _, err := svc.Create(ctx, testReq, NewKey{Team: "acme", Name: "a", Permissions: []string{"accounting_api"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := svc.Delete(ctx, testReq, "acme", k.ClientID); err != nil {
		t.Fatal(err)
	}
	if _, err := st.GetKey(ctx, k.ClientID); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("deleted key still stored: %v", err)
	}
	l, err := st.StatusList(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if l.Entry(k.StatusIndex) != store.StatusInvalid {
		t.Fatalf("status bit %d of the deleted key is not set", k.StatusIndex)
	}
	if err := svc.Delete(ctx, testReq, "acme", k.ClientID); !errors.Is(err, ErrNotFound) {
		t.Fatalf("second delete: %v", err)
	}
}

func TestNameAndTeamRules(t *testing.T) {
	for raw, want := range map[string]string{"  Production sync ": "Production sync", "é": "é", strings.Repeat("n", 64): strings.Repeat("n", 64)} {
		if got, err := ValidateName(raw); err != nil || got != want {
			t.Errorf("ValidateName(%q) = %q, %v", raw, got, err)
		}
	}
	for _, raw := range []string{"", " ", strings.Repeat("n", 65), "a\nb", "a\u200bb", "\xff"} {
		if _, err := ValidateName(raw); !errors.As(err, new(*InvalidError)) {
			t.Errorf("ValidateName(%q): %v", raw, err)
		}
	}
	for id, want := range map[string]bool{"acme": true, "a.b_c-d": true, "9": true, strings.Repeat("t", 64): true,
		"": false, "-a": false, ".a": false, "a b": false, "a/b": false, strings.Repeat("t", 65): false, "é": false} {
		if ValidTeamID(id) != want {
			t.Errorf("ValidTeamID(%q) != %v", id, want)
		}
	}
	for d, ok := range map[time.Duration]bool{0: true, time.Hour: true, MaxGracePeriod: true, -time.Second: false, MaxGracePeriod + 1: false} {
		if (CheckGracePeriod(d) == nil) != ok {
			t.Errorf("CheckGracePeriod(%s) ok = %v", d, !ok)
		}
	}
}

// TestUpdate: a change renames a key and replaces its permissions in one
// write, reports exactly the fields whose value changed, and the key's next
// token carries the new scope; refused changes change nothing.
func TestUpdate(t *testing.T) {
	ctx := context.Background()
	svc, st, _ := openTestService(t)
	k, secret, err := svc.Create(ctx, testReq, NewKey{Team: "acme", Name: "sync", Permissions: []string{"visualization_sdk"}})
	if err != nil {
		t.Fatal(err)
	}
	name, perms := " Nightly sync ", []string{"accounting_api", "visualization_sdk"}
	got, changed, err := svc.Update(ctx, testReq, "acme", k.ClientID, KeyChange{Name: &name, Permissions: &perms})
	if err != nil {
		t.Fatal(err)
	}
	if got.Name != "Nightly sync" || !reflect.DeepEqual(got.Permissions, perms) || !reflect.DeepEqual(changed, []string{"name", "permissions"}) {
		t.Fatalf("updated key %q %v, changed %v", got.Name, got.Permissions, changed)
	}
	stored, err := st.GetKey(ctx, k.ClientID)
	if err != nil || stored.Name != "Nightly sync" || !reflect.DeepEqual(stored.Permissions, perms) {
		t.Fatalf("stored %+v, %v", stored, err)
	}
	if !reflect.DeepEqual(stored.SecretHash, k.SecretHash) || stored.StatusIndex != k.StatusIndex || !stored.CreatedAt.Equal(k.CreatedAt) {
		t.Fatal("an update touched the secret, status index or creation time")
	}
	// The next token: authenticate with the unchanged secret, grant the scope.
	authed, _, err := svc.Authenticate(ctx, k.ClientID, secret)
	if err != nil {
		t.Fatal(err)
	}
	scope, err := svc.GrantScope(authed, "")
	if err != nil || !strings.Contains(scope, "banking:write") {
		t.Fatalf("scope after the update: %q, %v", scope, err)
	}
	// The same values again change nothing, and say so.
	if _, changed, err := svc.Update(ctx, testReq, "acme", k.ClientID, KeyChange{Name: &name, Permissions: &perms}); err != nil || len(changed) != 0 {
		t.Fatalf("repeated update: changed %v, %v", changed, err)
	}
}

func TestUpdateRefusalsChangeNothing(t *testing.T) {
	ctx := context.Background()
	svc, st, _ := openTestService(t)
	k, _, err := svc.Create(ctx, testReq, NewKey{Team: "acme", Name: "sync", Permissions: []string{"accounting_api"}})
	if err != nil {
		t.Fatal(err)
	}
	rs, _, err := svc.Create(ctx, testReq, NewKey{Team: "acme", Name: "rs", Permissions: []string{"token_introspection"}, GrantOperatorPermissions: true})
	if err != nil {
		t.Fatal(err)
	}
	before := keysOf(t, st)
	str := func(s string) *string { return &s }
	list := func(s ...string) *[]string { return &s }
	var inv *InvalidError
	for _, tc := range []struct {
		what     string
		team, id string
		ch       KeyChange
		want     error // nil: an *InvalidError
	}{
		{"empty name", "acme", k.ClientID, KeyChange{Name: str("  ")}, nil},
		{"long name", "acme", k.ClientID, KeyChange{Name: str(strings.Repeat("n", MaxNameLen+1))}, nil},
		{"no permissions", "acme", k.ClientID, KeyChange{Permissions: list()}, nil},
		{"unknown permission", "acme", k.ClientID, KeyChange{Permissions: list("payroll")}, nil},
		{"duplicate permission", "acme", k.ClientID, KeyChange{Permissions: list("visualization_sdk", "visualization_sdk")}, nil},
		{"operator-only without consent", "acme", k.ClientID, KeyChange{Permissions: list("accounting_api", "token_introspection")}, nil},
		{"valid name, bad permissions", "acme", k.ClientID, KeyChange{Name: str("renamed"), Permissions: list("payroll")}, nil},
		{"another team's key", "other", k.ClientID, KeyChange{Name: str("renamed")}, ErrNotFound},
		{"unknown key", "acme", "kgc_acme_nokey", KeyChange{Name: str("renamed")}, ErrNotFound},
	} {
		_, changed, err := svc.Update(ctx, testReq, tc.team, tc.id, tc.ch)
		if tc.want == nil && !errors.As(err, &inv) || tc.want != nil && !errors.Is(err, tc.want) || changed != nil {
			t.Errorf("%s: err %v, changed %v", tc.what, err, changed)
		}
	}
	if after := keysOf(t, st); !reflect.DeepEqual(before, after) {
		t.Fatal("refused updates changed the store")
	}
	// An operator-only permission the key already holds needs no new
	// consent; adding one does, and with it the change goes through.
	if _, _, err := svc.Update(ctx, testReq, "acme", rs.ClientID, KeyChange{Permissions: list("token_introspection", "accounting_api")}); err != nil {
		t.Fatalf("keeping a held operator-only permission: %v", err)
	}
	got, _, err := svc.Update(ctx, testReq, "acme", k.ClientID, KeyChange{Permissions: list("token_introspection"), GrantOperatorPermissions: true})
	if err != nil || !reflect.DeepEqual(got.Permissions, []string{"token_introspection"}) {
		t.Fatalf("operator-only permission with consent: %v, %v", got.Permissions, err)
	}
}

// testReq is the request the package's tests act as.
var testReq = Request{Actor: store.AuditActor{Type: store.ActorAdminKey, ID: "test-admin"}, SourceAddr: "192.0.2.1", UserAgent: "apikey-test"}
