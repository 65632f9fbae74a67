package apikey

import (
	"context"
	"errors"
	"testing"

	"github.com/keygate/keygate/store"
)

// TestReadAdminScope: a read-only admin key's tokens get keys:read and
// never keys:admin, even when asked for; a full admin key's keys:admin.
func TestReadAdminScope(t *testing.T) {
	svc, _, _ := openTestService(t)
	read := store.Key{ClientID: "kga_read", Role: store.RoleRead}
	full := store.Key{ClientID: "kga_full"}
	if got, err := svc.GrantScope(read, ""); err != nil || got != "keys:read" {
		t.Errorf("read admin's scope %q, %v; want keys:read", got, err)
	}
	if got, err := svc.GrantScope(read, "keys:admin"); !errors.Is(err, ErrInvalidScope) {
		t.Errorf("read admin asking for keys:admin: %q, %v; want ErrInvalidScope", got, err)
	}
	if got, err := svc.GrantScope(full, ""); err != nil || got != "keys:admin" {
		t.Errorf("full admin's scope %q, %v; want keys:admin", got, err)
	}
}

// TestManagerRules: what a manager sees, and the grants it may make.
func TestManagerRules(t *testing.T) {
	ctx := context.Background()
	svc, _, _ := openTestService(t)
	mk := func(name string, perms ...string) store.Key {
		k, _, err := svc.Create(ctx, testReq, NewKey{Team: "acme", Name: name, Permissions: perms, GrantOperatorPermissions: true})
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	self := mk("self", "key_management")
	other := mk("other manager", "key_management", "accounting_api")
	intro := mk("introspector", "token_introspection")
	plain := mk("plain", "accounting_api")
	m := Manager{Team: "acme", Self: self.ClientID}
	for _, c := range []struct {
		k    store.Key
		sees bool
	}{{self, true}, {other, false}, {intro, false}, {plain, true}} {
		if got := svc.Sees(m, c.k); got != c.sees {
			t.Errorf("sees %s: %v, want %v", c.k.Name, got, c.sees)
		}
	}
	if svc.Sees(Manager{Team: "beta"}, plain) {
		t.Error("a manager of beta sees a key of acme")
	}
	if _, err := svc.GetFor(ctx, m, intro.ClientID); !errors.Is(err, ErrNotFound) {
		t.Errorf("GetFor a hidden key: %v", err)
	}
	var forb *ForbiddenError
	if err := svc.CheckManagerGrant([]string{"accounting_api", "token_exchange"}); !errors.As(err, &forb) {
		t.Errorf("granting token_exchange: %v", err)
	}
	if err := svc.CheckManagerGrant([]string{"accounting_api"}); err != nil {
		t.Errorf("granting accounting_api: %v", err)
	}
	// PATCH through a manager, in the update's atomic step.
	perms := []string{"accounting_api"}
	if _, _, err := svc.Update(ctx, testReq, "acme", self.ClientID, KeyChange{Permissions: &perms, By: &m}); !errors.As(err, &forb) {
		t.Errorf("manager changing its own permissions: %v", err)
	}
	name := "x"
	if _, _, err := svc.Update(ctx, testReq, "acme", intro.ClientID, KeyChange{Name: &name, By: &m}); !errors.Is(err, ErrNotFound) {
		t.Errorf("manager renaming a hidden key: %v", err)
	}
	if k, _, err := svc.Update(ctx, testReq, "acme", self.ClientID, KeyChange{Name: &name, By: &m}); err != nil || k.Name != "x" {
		t.Errorf("manager renaming itself: %v", err)
	}
}
