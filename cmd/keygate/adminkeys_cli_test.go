package main

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/keygate/keygate/client"
)

func adminKeysArgs(e cliEnv, sub string, rest ...string) []string {
	return append(append([]string{"admin-keys", sub}, e.conn()...), rest...)
}

func adminKeyList(t *testing.T, e cliEnv) ([]client.AdminKey, string) {
	t.Helper()
	out, stderr, err := run(t, adminKeysArgs(e, "list", "--json")...)
	if err != nil {
		t.Fatalf("admin-keys list --json: %v (%s)", err, stderr)
	}
	var l []client.AdminKey
	if err := json.Unmarshal([]byte(out), &l); err != nil {
		t.Fatalf("admin-keys list --json: %v in %s", err, out)
	}
	return l, out
}

// TestCLIAdminKeys: list, create (secret printed once), rotate, delete with
// --yes; refusals (no --yes, a bad role, the environment's key) change
// nothing.
func TestCLIAdminKeys(t *testing.T) {
	t.Parallel()
	e := startCLIServer(t)
	l, _ := adminKeyList(t, e)
	if len(l) != 1 || l[0].ClientID != cliAdminID || !l[0].ManagedByEnvironment {
		t.Fatalf("initial admin keys: %+v", l)
	}
	out, _, err := run(t, adminKeysArgs(e, "list")...)
	if err != nil || !strings.HasPrefix(out, "CLIENT ID") || !strings.Contains(out, cliAdminID) || !strings.Contains(out, "environment") {
		t.Fatalf("admin-keys list: %v\n%s", err, out)
	}

	out, _, err = run(t, adminKeysArgs(e, "create", "--name", "Billing", "--json")...)
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	var created client.CreatedAdminKey
	if err := json.Unmarshal([]byte(out), &created); err != nil || created.ClientSecret == "" || created.Role != "admin" {
		t.Fatalf("create --json: %v %s", err, out)
	}
	out, _, err = run(t, adminKeysArgs(e, "create", "--name", "Second")...)
	if err != nil || !strings.Contains(out, "client_secret: kgs_") || !strings.Contains(out, "cannot be shown again") {
		t.Fatalf("create: %v\n%s", err, out)
	}
	_, before := adminKeyList(t, e)

	for _, c := range []struct {
		args []string
		want string
	}{
		{adminKeysArgs(e, "delete", created.ClientID), "not deleted: admin key " + created.ClientID + " and its tokens stop working at once. Run again with --yes to delete it"},
		{adminKeysArgs(e, "create", "--name", "x", "--role", "owner"), `--role "owner": want admin (every change) or read (read only)`},
		{adminKeysArgs(e, "create"), "--name is required: give the admin key a name people will recognise"},
		{adminKeysArgs(e, "rotate", cliAdminID), "admin key " + cliAdminID + " is managed by the environment (KEYGATE_ADMIN_CLIENT_ID): change KEYGATE_ADMIN_CLIENT_SECRET and restart to rotate it, or unset both to stop configuring it"},
		{adminKeysArgs(e, "delete", "--yes", cliAdminID), "admin key " + cliAdminID + " is managed by the environment (KEYGATE_ADMIN_CLIENT_ID): change KEYGATE_ADMIN_CLIENT_SECRET and restart to rotate it, or unset both to stop configuring it"},
	} {
		wantExit(t, c.want, c.args...)
		if _, after := adminKeyList(t, e); after != before {
			t.Fatalf("keygate %s changed the admin keys:\n%s\n%s", strings.Join(c.args, " "), before, after)
		}
	}

	out, _, err = run(t, adminKeysArgs(e, "rotate", "--grace-period", "0s", created.ClientID)...)
	if err != nil || !strings.Contains(out, "client_secret: kgs_") || !strings.Contains(out, "The old secret no longer works.") {
		t.Fatalf("rotate: %v\n%s", err, out)
	}
	if _, stderr, err := run(t, adminKeysArgs(e, "delete", "--yes", created.ClientID)...); err != nil || !strings.Contains(stderr, "deleted admin key "+created.ClientID) {
		t.Fatalf("delete: %v %s", err, stderr)
	}
	if l, _ := adminKeyList(t, e); len(l) != 2 {
		t.Fatalf("after delete: %+v", l)
	}
}

// TestCLITeamsDeleteNeedsYes: without --yes nothing is deleted.
func TestCLITeamsDeleteNeedsYes(t *testing.T) {
	t.Parallel()
	e := startCLIServer(t)
	k := createKey(t, e, "acme", "accounting_api")
	wantExit(t, "not deleted: every key of team acme stops working at once and its usage and sessions are removed. Run again with --yes to delete it",
		append(append([]string{"teams", "delete"}, e.conn()...), "acme")...)
	out, _, err := run(t, append(append([]string{"keys", "list"}, e.conn()...), "--team", "acme")...)
	if err != nil || !strings.Contains(out, k.ClientID) {
		t.Fatalf("the key is gone after a refused teams delete: %v\n%s", err, out)
	}
}
