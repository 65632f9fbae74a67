package main

// The keys commands as issue #12 wants them: client IDs without --team,
// errors in CLI words (exact text, exit status, nothing changed), lists for
// --permission, --quiet for scripts, URLs without a scheme.

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/keygate/keygate/client"
	"github.com/keygate/keygate/quota"
)

// createKey makes a key through the CLI and returns it with its secret.
func createKey(t *testing.T, e cliEnv, team string, perms string) client.CreatedKey {
	t.Helper()
	out, stderr, err := run(t, keysArgs(e, "create", "--json", "--team", team, "--name", "k", "--permission", perms)...)
	if err != nil {
		t.Fatalf("keys create: %v (%s)", err, stderr)
	}
	var k client.CreatedKey
	if err := json.Unmarshal([]byte(out), &k); err != nil {
		t.Fatal(err)
	}
	return k
}

// wantExit runs keygate as a process and wants exit status 1, nothing on
// stdout and exactly "keygate: want" on stderr.
func wantExit(t *testing.T, want string, args ...string) {
	t.Helper()
	stdout, stderr, code := runMain(t, args...)
	if code != 1 || stdout != "" || stderr != "keygate: "+want+"\n" {
		t.Errorf("keygate %s:\nexit %d, stdout %q\nstderr %q\nwant   %q", strings.Join(args, " "), code, stdout, stderr, "keygate: "+want+"\n")
	}
}

func TestCLIKeysWithoutTeam(t *testing.T) {
	t.Parallel()
	e := startCLIServer(t)
	k := createKey(t, e, "globex", "accounting_api")

	out, _, err := run(t, keysArgs(e, "get", k.ClientID)...)
	if err != nil || !strings.Contains(out, k.ClientID) || strings.Contains(out, "kgs_") {
		t.Fatalf("get without --team: %v\n%s", err, out)
	}
	out, _, err = run(t, keysArgs(e, "get", "--json", "--team", "globex", k.ClientID)...)
	var got client.Key
	if err != nil || json.Unmarshal([]byte(out), &got) != nil || got.TeamID != "globex" {
		t.Fatalf("get with the right --team: %v\n%s", err, out)
	}

	// Refusals, each as the process prints it; nothing changes.
	before := snapshot(t, e)
	admin := cliAdminID
	for _, c := range []struct {
		args []string
		want string
	}{
		{keysArgs(e, "delete", "--team", "acme", k.ClientID),
			"key " + k.ClientID + " belongs to team globex, not --team acme; nothing was changed (omit --team, or pass --team globex)"},
		{keysArgs(e, "get", "--team", "acme", k.ClientID),
			"key " + k.ClientID + " belongs to team globex, not --team acme; nothing was changed (omit --team, or pass --team globex)"},
		{keysArgs(e, "delete", "kgc_nosuchkey"),
			"no team has a key \"kgc_nosuchkey\"; list the teams with `keygate keys teams` and a team's keys with `keygate keys list --team T`"},
		{keysArgs(e, "get", admin),
			"no team has a key \"" + admin + "\"; list the teams with `keygate keys teams` and a team's keys with `keygate keys list --team T`"},
		{keysArgs(e, "get", "--team", "other", "kgc_nosuchkey"),
			"team other has no key \"kgc_nosuchkey\"; list the team's keys with `keygate keys list --team other`"},
		{keysArgs(e, "get"),
			"keygate keys get needs CLIENT_ID (the key's client ID, as keygate keys list shows it): keygate keys get [--team T] CLIENT_ID [flags]"},
		{keysArgs(e, "delete", k.ClientID, "second"),
			"keygate keys delete takes one CLIENT_ID, not 2 arguments: keygate keys delete [--team T] CLIENT_ID [flags]"},
		{keysArgs(e, "teams", "extra"),
			"keygate keys teams takes no arguments, got \"extra\": keygate keys teams [--prefix P] [flags]"},
		{keysArgs(e, "list"),
			"keygate keys list needs --team T; list the teams with `keygate keys teams`"},
		{keysArgs(e, "list", "--team", "globex", "--json", "-q"),
			"use either --json or --quiet, not both"},
		{keysArgs(e, "rotate", "--grace-period", "soon", k.ClientID),
			`invalid argument "soon" for "--grace-period" flag: want a Go duration such as 15m or 24h, or days such as 7d or 1d12h`},
	} {
		wantExit(t, c.want, c.args...)
	}
	if after := snapshot(t, e); after != before {
		t.Fatalf("a refused command changed the store:\n%s\n%s", before, after)
	}

	out, _, err = run(t, keysArgs(e, "delete", k.ClientID)...)
	if err != nil || out != "deleted "+k.ClientID+"\n" {
		t.Fatalf("delete without --team: %v %q", err, out)
	}
	if after := snapshot(t, e); after != "null" {
		t.Fatalf("the key is still there: %s", after)
	}
}

func TestCLIKeysURLs(t *testing.T) {
	t.Parallel()
	e := startCLIServer(t)
	// No scheme: http:// is meant.
	bare := strings.TrimPrefix(e.url, "http://")
	out, _, err := run(t, "keys", "teams", "--url", bare, "--client-id", cliAdminID, "--client-secret-file", e.secretFile)
	if err != nil || !strings.Contains(out, "No team holds API keys yet") {
		t.Fatalf("--url %s: %v\n%s", bare, err, out)
	}
	creds := []string{"--client-id", cliAdminID, "--client-secret-file", e.secretFile}
	wantExit(t, `--url "ftp://example.com" is not a keygate URL: want http://host:port or https://host`,
		append([]string{"keys", "teams", "--url", "ftp://example.com"}, creds...)...)
	wantExit(t, `--url "http://" is not a keygate URL: want http://host:port or https://host`,
		append([]string{"keys", "teams", "--url", "http://"}, creds...)...)
	// Nothing listening: one sentence, with the URL as used.
	wantExit(t, "cannot reach keygate at http://127.0.0.1:1 — is it running? (--url, KEYGATE_URL)",
		append([]string{"keys", "teams", "--url", "127.0.0.1:1"}, creds...)...)
	_, _, err = runWith(t, map[string]string{envURL: "http://127.0.0.1:1/"}, append([]string{"keys", "list", "--team", "acme"}, creds...)...)
	if err == nil || err.Error() != "cannot reach keygate at http://127.0.0.1:1 — is it running? (--url, KEYGATE_URL)" {
		t.Fatalf("KEYGATE_URL unreachable: %v", err)
	}
}

func TestCLIKeysPermissionListAndQuiet(t *testing.T) {
	t.Parallel()
	e := startCLIServer(t)
	// --permission a,b is a list, as keys list prints it; repeating works too.
	out, _, err := run(t, keysArgs(e, "create", "-q", "--team", "acme", "--name", "two", "--permission", "accounting_api,visualization_sdk")...)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if len(lines) != 2 || !clientIDRe.MatchString(lines[0]) || !strings.HasPrefix(lines[1], "kgs_") {
		t.Fatalf("create -q printed %q, want the client ID and the secret on two lines", out)
	}
	id := lines[0]
	if got := tokenStatus(t, e.url, id, lines[1]); got != 200 {
		t.Fatalf("the secret create -q printed gets no token: %d", got)
	}
	out, _, err = run(t, keysArgs(e, "list", "--team", "acme")...)
	if err != nil || !strings.Contains(out, "accounting_api,visualization_sdk") {
		t.Fatalf("list after create with a,b: %v\n%s", err, out)
	}
	out, _, err = run(t, keysArgs(e, "create", "--quiet", "--team", "acme", "--name", "rep", "--permission", "accounting_api", "--permission", " visualization_sdk ,")...)
	if err != nil {
		t.Fatal(err)
	}
	id2 := strings.SplitN(out, "\n", 2)[0]

	out, _, err = run(t, keysArgs(e, "list", "-q", "--team", "acme")...)
	if err != nil || out != id+"\n"+id2+"\n" {
		t.Fatalf("list -q printed %q, want %q", out, id+"\n"+id2+"\n")
	}
	createKey(t, e, "globex", "accounting_api")
	out, _, err = run(t, keysArgs(e, "teams", "-q")...)
	if err != nil || out != "acme\nglobex\n" {
		t.Fatalf("teams -q printed %q", out)
	}
	k, _, _ := run(t, keysArgs(e, "get", "--json", id2)...)
	var got client.Key
	if json.Unmarshal([]byte(k), &got) != nil || strings.Join(got.Permissions, ",") != "accounting_api,visualization_sdk" {
		t.Fatalf("repeated --permission with commas and spaces: %s", k)
	}

	// An unknown permission in the list: refused, nothing created.
	before := snapshot(t, e)
	_, _, err = run(t, keysArgs(e, "create", "--team", "acme", "--name", "x", "--permission", "accounting_api,nope")...)
	if err == nil || !strings.Contains(err.Error(), "nope") {
		t.Fatalf("unknown permission in a list: %v", err)
	}
	if after := snapshot(t, e); after != before {
		t.Fatal("a refused create changed the store")
	}
}

func TestCLIKeysUpdate(t *testing.T) {
	t.Parallel()
	e := startCLIServer(t)
	k := createKey(t, e, "globex", "visualization_sdk")

	// Rename and a new list, found by client ID alone; the table shows both.
	out, _, err := run(t, keysArgs(e, "update", k.ClientID, "--name", "Nightly sync", "--permission", "accounting_api,visualization_sdk")...)
	if err != nil || !strings.Contains(out, "Nightly sync") || !strings.Contains(out, "accounting_api,visualization_sdk") || strings.Contains(out, "kgs_") {
		t.Fatalf("update: %v\n%s", err, out)
	}
	// The secret is unchanged and the next token has the new scope.
	if got := tokenScope(t, e.url, k.ClientID, k.ClientSecret); !strings.Contains(got, "accounting:write") {
		t.Fatalf("scope after update: %q", got)
	}
	out, _, err = run(t, keysArgs(e, "update", "-q", "--team", "globex", k.ClientID, "--permission", "visualization_sdk")...)
	if err != nil || out != k.ClientID+"\n" {
		t.Fatalf("update -q printed %q, %v", out, err)
	}
	out, _, err = run(t, keysArgs(e, "update", "--json", k.ClientID, "--name", "Viz")...)
	var got client.Key
	if err != nil || json.Unmarshal([]byte(out), &got) != nil || got.Name != "Viz" || strings.Join(got.Permissions, ",") != "visualization_sdk" {
		t.Fatalf("update --json: %v\n%s", err, out)
	}

	// Refusals, each as the process prints it; nothing changes.
	before := snapshot(t, e)
	for _, c := range []struct {
		args []string
		want string
	}{
		{keysArgs(e, "update", k.ClientID),
			"keygate keys update needs --name, --permission, --token-quota or a policy flag: nothing to change"},
		{keysArgs(e, "update", k.ClientID, "--permission", " , "),
			"--permission is empty; give the key's whole new list of permission IDs (see keygate keys permissions)"},
		{keysArgs(e, "update", k.ClientID, "--name", "x", "--grant-operator-permissions"),
			"--grant-operator-permissions applies to the permissions given with --permission; there are none"},
		{keysArgs(e, "update", "--name", "x"),
			"keygate keys update needs CLIENT_ID (the key's client ID, as keygate keys list shows it): keygate keys update [--team T] [--name N] [--permission P[,P…]] [--token-quota Q] [policy flags] CLIENT_ID [flags]"},
		{keysArgs(e, "update", "--team", "acme", k.ClientID, "--name", "x"),
			"key " + k.ClientID + " belongs to team globex, not --team acme; nothing was changed (omit --team, or pass --team globex)"},
		{keysArgs(e, "update", k.ClientID, "--name", "  "),
			`"name" must not be empty: give the key a name people will recognise`},
		{keysArgs(e, "update", k.ClientID, "--permission", "accounting_api,nope"),
			`unknown permission "nope": valid permissions are accounting_api, visualization_sdk`},
		{keysArgs(e, "update", k.ClientID, "--permission", "token_introspection"),
			`permission "token_introspection" is operator-only; adding it to a key needs "grant_operator_permissions": true in the same request`},
		{keysArgs(e, "update", "kgc_nosuchkey", "--name", "x"),
			"no team has a key \"kgc_nosuchkey\"; list the teams with `keygate keys teams` and a team's keys with `keygate keys list --team T`"},
	} {
		wantExit(t, c.want, c.args...)
	}
	if after := snapshot(t, e); after != before {
		t.Fatalf("a refused update changed the store:\n%s\n%s", before, after)
	}
	// With consent the operator-only permission is granted.
	out, _, err = run(t, keysArgs(e, "update", k.ClientID, "--permission", "token_introspection", "--grant-operator-permissions")...)
	if err != nil || !strings.Contains(out, "token_introspection") {
		t.Fatalf("update with consent: %v\n%s", err, out)
	}
}

// TestCLIKeysTokenQuota: --token-quota at create and update (off removes
// it), shown by get; a malformed value is refused before anything is sent.
func TestCLIKeysTokenQuota(t *testing.T) {
	t.Parallel()
	e := startCLIServer(t)
	out, stderr, err := run(t, keysArgs(e, "create", "--json", "--team", "acme", "--name", "q", "--permission", "accounting_api", "--token-quota", "1000/hour")...)
	var k client.CreatedKey
	if err != nil || json.Unmarshal([]byte(out), &k) != nil {
		t.Fatalf("create --token-quota: %v %s\n%s", err, stderr, out)
	}
	if q := k.TokenQuota; q == nil || *q != (client.TokenQuota{Limit: 1000, Per: "hour", Mode: "enforce"}) {
		t.Fatalf("created key's quota %+v", k.TokenQuota)
	}
	out, _, err = run(t, keysArgs(e, "update", "--json", k.ClientID, "--token-quota", "50/day:log")...)
	var got client.Key
	if err != nil || json.Unmarshal([]byte(out), &got) != nil || got.TokenQuota == nil || *got.TokenQuota != (client.TokenQuota{Limit: 50, Per: "day", Mode: "log"}) {
		t.Fatalf("update --token-quota: %v\n%s", err, out)
	}
	out, _, err = run(t, keysArgs(e, "get", k.ClientID)...)
	if err != nil || !strings.Contains(out, "token quota: 50 per day (log)") {
		t.Fatalf("get: %v\n%s", err, out)
	}
	before := snapshot(t, e)
	wantExit(t, `--token-quota: "50/week": the period must be "hour" or "day"; want `+quota.Syntax,
		keysArgs(e, "update", k.ClientID, "--token-quota", "50/week")...)
	if after := snapshot(t, e); after != before {
		t.Fatalf("a refused update changed the store")
	}
	out, _, err = run(t, keysArgs(e, "update", "--json", k.ClientID, "--token-quota", "off")...)
	got = client.Key{}
	if err != nil || json.Unmarshal([]byte(out), &got) != nil || got.TokenQuota != nil {
		t.Fatalf("update --token-quota off: %v\n%s", err, out)
	}
}
