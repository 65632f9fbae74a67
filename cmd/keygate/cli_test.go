package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"maps"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/keygate/keygate/client"
	"github.com/keygate/keygate/config"
	"github.com/keygate/keygate/credential"
	"github.com/keygate/keygate/scopes"
	"github.com/keygate/keygate/server"
	"github.com/keygate/keygate/server/servertest"
)

const cliAdminID = "cli-admin"

type cliEnv struct {
	url        string
	secret     string
	secretFile string
}

// startCLIServer runs a real keygate with a known admin key whose secret
// is also in a file, for --client-secret-file.
func startCLIServer(t *testing.T) cliEnv {
	t.Helper()
	e := servertest.Start(t, server.Options{AdminClientID: cliAdminID}, nil)
	file := filepath.Join(t.TempDir(), "admin-secret")
	if err := os.WriteFile(file, []byte(e.AdminSecret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return cliEnv{url: e.URL, secret: e.AdminSecret, secretFile: file}
}

// testEnv is a command's environment in a test: the variables in vars and
// nothing of the process's, which the test never changes, so tests run in
// parallel and no variable of the developer's shell leaks in.
func testEnv(vars map[string]string) env {
	vars = maps.Clone(vars) // the caller may go on changing its map
	return env{
		getenv: func(name string) string { return vars[name] },
		stdin:  strings.NewReader(""),
		stdout: io.Discard,
		stderr: io.Discard,
	}
}

// run executes the CLI like main does, in an empty environment, with its
// output captured.
func run(t *testing.T, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	return runWith(t, nil, args...)
}

// runWith is run with the environment variables vars.
func runWith(t *testing.T, vars map[string]string, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var out, errOut bytes.Buffer
	e := testEnv(vars)
	e.stdout, e.stderr = &out, &errOut
	root := rootCommand(e)
	root.SetArgs(args)
	err = root.ExecuteContext(ctx)
	return out.String(), errOut.String(), err
}

func (e cliEnv) conn() []string {
	return []string{"--url", e.url, "--client-id", cliAdminID, "--client-secret-file", e.secretFile}
}

func keysArgs(e cliEnv, sub string, rest ...string) []string {
	return append(append([]string{"keys", sub}, e.conn()...), rest...)
}

var clientIDRe = regexp.MustCompile(`kgc_[0-9A-Za-z]+`)

func TestCLIKeysTable(t *testing.T) {
	t.Parallel()
	e := startCLIServer(t)

	out, stderr, err := run(t, keysArgs(e, "create", "--team", "acme", "--name", "Production sync", "--permission", "accounting_api")...)
	if err != nil {
		t.Fatalf("keys create: %v (stderr %q)", err, stderr)
	}
	id := clientIDRe.FindString(out)
	if id == "" {
		t.Fatalf("no client ID in the create output:\n%s", out)
	}
	m := regexp.MustCompile(`client_secret: (kgs_\S+)`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no client_secret line in the create output:\n%s", out)
	}
	if err := credential.CheckSecretFormat(m[1]); err != nil {
		t.Fatalf("printed secret %q: %v", m[1], err)
	}
	if !strings.Contains(out, "cannot be shown again") {
		t.Fatalf("create output lacks the show-once warning:\n%s", out)
	}
	for _, h := range []string{"NAME", "CLIENT ID", "CREATED", "LAST USED", "PERMISSIONS", "Production sync", "accounting_api", "never"} {
		if !strings.Contains(out, h) {
			t.Errorf("create table lacks %q:\n%s", h, out)
		}
	}
	if strings.Contains(stderr, "warning") {
		t.Errorf("--client-secret-file printed a warning: %q", stderr)
	}

	out, _, err = run(t, keysArgs(e, "list", "--team", "acme")...)
	if err != nil {
		t.Fatalf("keys list: %v", err)
	}
	for _, h := range []string{"NAME", "CLIENT ID", "CREATED", "LAST USED", "PERMISSIONS", id, "Production sync", "never", "accounting_api", "1 of 5 keys used"} {
		if !strings.Contains(out, h) {
			t.Errorf("list output lacks %q:\n%s", h, out)
		}
	}
	if strings.Contains(out, m[1]) || strings.Contains(out, "kgs_") {
		t.Errorf("list output shows a secret:\n%s", out)
	}

	out, _, err = run(t, keysArgs(e, "get", "--team", "acme", id)...)
	if err != nil {
		t.Fatalf("keys get: %v", err)
	}
	if !strings.Contains(out, id) || !strings.Contains(out, "Production sync") || strings.Contains(out, "kgs_") {
		t.Fatalf("get output:\n%s", out)
	}

	out, _, err = run(t, keysArgs(e, "delete", "--team", "acme", id)...)
	if err != nil {
		t.Fatalf("keys delete: %v", err)
	}
	if !strings.Contains(out, "deleted "+id) {
		t.Fatalf("delete output %q", out)
	}

	out, _, err = run(t, keysArgs(e, "get", "--team", "acme", id)...)
	if err == nil {
		t.Fatalf("keys get of a deleted key succeeded:\n%s", out)
	}
	// The error main prints is the server's detail.
	want := `team acme has no key "` + id + `"`
	if !strings.Contains(err.Error(), want) {
		t.Fatalf("error %q, want the server's detail containing %q", err, want)
	}
	var ce *client.Error
	if !asClientError(err, &ce) || ce.Status != http.StatusNotFound || err.Error() != ce.Detail {
		t.Fatalf("error %v is not the server's 404 problem detail", err)
	}
	if out != "" {
		t.Fatalf("failed get printed %q", out)
	}

	out, _, err = run(t, keysArgs(e, "delete", "--team", "acme", id)...)
	if err == nil || !strings.Contains(err.Error(), "has no key") {
		t.Fatalf("second delete: %v, %q", err, out)
	}

	out, _, err = run(t, keysArgs(e, "list", "--team", "acme")...)
	if err != nil || !strings.Contains(out, "0 of 5 keys used") {
		t.Fatalf("list after delete: %v\n%s", err, out)
	}
}

func asClientError(err error, target **client.Error) bool {
	ce, ok := err.(*client.Error)
	if ok {
		*target = ce
	}
	return ok
}

func TestCLIKeysJSON(t *testing.T) {
	t.Parallel()
	e := startCLIServer(t)
	out, _, err := run(t, keysArgs(e, "create", "--json", "--team", "acme", "--name", "Dashboards",
		"--permission", "visualization_sdk", "--permission", "accounting_api")...)
	if err != nil {
		t.Fatal(err)
	}
	var created client.CreatedKey
	if err := json.Unmarshal([]byte(out), &created); err != nil {
		t.Fatalf("create --json output is not JSON: %v\n%s", err, out)
	}
	var raw map[string]any
	if err := json.Unmarshal([]byte(out), &raw); err != nil {
		t.Fatal(err)
	}
	if _, ok := raw["client_secret"]; !ok {
		t.Fatalf("create --json lacks client_secret: %s", out)
	}
	if _, ok := raw["last_used_at"]; !ok || raw["last_used_at"] != nil {
		t.Fatalf("create --json last_used_at should be present and null: %s", out)
	}
	if err := credential.CheckSecretFormat(created.ClientSecret); err != nil {
		t.Fatal(err)
	}
	if created.TeamID != "acme" || created.Name != "Dashboards" || len(created.Permissions) != 2 {
		t.Fatalf("created %+v", created)
	}

	out, _, err = run(t, keysArgs(e, "list", "--json", "--team", "acme")...)
	if err != nil {
		t.Fatal(err)
	}
	var l client.KeyList
	if err := json.Unmarshal([]byte(out), &l); err != nil {
		t.Fatalf("list --json: %v\n%s", err, out)
	}
	if len(l.Keys) != 1 || l.Keys[0].ClientID != created.ClientID || l.MaxKeys != 5 {
		t.Fatalf("list --json %+v", l)
	}
	if strings.Contains(out, "client_secret") || strings.Contains(out, created.ClientSecret) {
		t.Fatalf("list --json shows a secret: %s", out)
	}

	out, _, err = run(t, keysArgs(e, "get", "--json", "--team", "acme", created.ClientID)...)
	if err != nil {
		t.Fatal(err)
	}
	var k client.Key
	if err := json.Unmarshal([]byte(out), &k); err != nil || k.ClientID != created.ClientID {
		t.Fatalf("get --json: %v\n%s", err, out)
	}

	out, _, err = run(t, keysArgs(e, "delete", "--json", "--team", "acme", created.ClientID)...)
	if err != nil {
		t.Fatal(err)
	}
	var del map[string]string
	if err := json.Unmarshal([]byte(out), &del); err != nil || del["deleted"] != created.ClientID {
		t.Fatalf("delete --json: %v\n%s", err, out)
	}
}

func TestCLIServerErrors(t *testing.T) {
	t.Parallel()
	e := startCLIServer(t)
	// Unknown permission: the server's 400 detail names the valid ones.
	_, _, err := run(t, keysArgs(e, "create", "--team", "acme", "--name", "x", "--permission", "nope")...)
	if err == nil || !strings.Contains(err.Error(), "accounting_api") {
		t.Fatalf("unknown permission: %v", err)
	}
	// Sixth key: 409 with the limit detail.
	for i := 0; i < 5; i++ {
		if _, _, err := run(t, keysArgs(e, "create", "--team", "acme", "--name", "k", "--permission", "visualization_sdk")...); err != nil {
			t.Fatal(err)
		}
	}
	_, _, err = run(t, keysArgs(e, "create", "--team", "acme", "--name", "k6", "--permission", "visualization_sdk")...)
	if err == nil || !strings.Contains(err.Error(), "already has 5 API keys") {
		t.Fatalf("6th key: %v", err)
	}
	// Missing --team.
	_, _, err = run(t, keysArgs(e, "list")...)
	if err == nil || !strings.Contains(err.Error(), "--team") {
		t.Fatalf("missing --team: %v", err)
	}
	// Wrong admin secret: the token could not be obtained.
	wrong := filepath.Join(t.TempDir(), "wrong")
	other, _ := credential.NewSecret()
	os.WriteFile(wrong, []byte(other), 0o600)
	_, _, err = run(t, "keys", "list", "--team", "acme", "--url", e.url, "--client-id", cliAdminID, "--client-secret-file", wrong)
	if err == nil || !strings.Contains(err.Error(), "admin token") || strings.Contains(err.Error(), other) {
		t.Fatalf("wrong secret: %v", err)
	}
	// Unreadable secret file.
	_, _, err = run(t, "keys", "list", "--team", "acme", "--url", e.url, "--client-id", cliAdminID, "--client-secret-file", filepath.Join(t.TempDir(), "missing"))
	if err == nil || !strings.Contains(err.Error(), "--client-secret-file") {
		t.Fatalf("missing secret file: %v", err)
	}
}

func TestCLIEnvCredentials(t *testing.T) {
	t.Parallel()
	e := startCLIServer(t)
	vars := map[string]string{envURL: e.url, envAdminClientID: cliAdminID, envAdminClientSecret: e.secret}
	out, stderr, err := runWith(t, vars, "keys", "create", "--team", "globex", "--name", "From env", "--permission", "accounting_api")
	if err != nil {
		t.Fatalf("keys create with env credentials: %v", err)
	}
	if !strings.Contains(out, "client_secret: kgs_") || stderr != "" {
		t.Fatalf("stdout %q stderr %q", out, stderr)
	}
	out, _, err = runWith(t, vars, "keys", "list", "--team", "globex")
	if err != nil || !strings.Contains(out, "From env") {
		t.Fatalf("keys list with env credentials: %v\n%s", err, out)
	}
	// Flags win over the environment: a wrong --url fails.
	_, _, err = runWith(t, vars, "keys", "list", "--team", "globex", "--url", "http://127.0.0.1:1")
	if err == nil {
		t.Fatal("--url did not override KEYGATE_URL")
	}
}

func TestCLIClientSecretFlagWarns(t *testing.T) {
	t.Parallel()
	e := startCLIServer(t)
	out, stderr, err := run(t, "keys", "list", "--team", "acme", "--url", e.url, "--client-id", cliAdminID, "--client-secret", e.secret)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(stderr, "warning") || !strings.Contains(stderr, "process list") {
		t.Fatalf("--client-secret did not warn about the process list; stderr %q", stderr)
	}
	if strings.Contains(stderr, e.secret) || strings.Contains(out, e.secret) {
		t.Fatal("the secret was echoed")
	}
	if !strings.Contains(out, "0 of 5 keys used") {
		t.Fatalf("output %q", out)
	}
}

func TestCLIMissingCredentials(t *testing.T) {
	t.Parallel()
	for name, args := range map[string][]string{
		"nothing":     {"keys", "list", "--team", "acme", "--url", "http://127.0.0.1:1"},
		"id only":     {"keys", "list", "--team", "acme", "--url", "http://127.0.0.1:1", "--client-id", "x"},
		"secret only": {"keys", "list", "--team", "acme", "--url", "http://127.0.0.1:1", "--client-secret", "y"},
	} {
		t.Run(name, func(t *testing.T) {
			_, _, err := run(t, args...)
			if err == nil {
				t.Fatal("ran without credentials")
			}
			for _, want := range []string{"admin credentials missing", envAdminClientID, envAdminClientSecret, "--client-secret-file"} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not mention %q", err, want)
				}
			}
		})
	}
}

// createKeysInTwoTeams leaves globex with two keys and acme with one,
// created out of order so that the sorting by team ID shows.
func createKeysInTwoTeams(t *testing.T, e cliEnv) {
	t.Helper()
	for _, team := range []string{"globex", "acme", "globex"} {
		if _, stderr, err := run(t, keysArgs(e, "create", "--team", team, "--name", "k", "--permission", "visualization_sdk")...); err != nil {
			t.Fatalf("keys create --team %s: %v (stderr %q)", team, err, stderr)
		}
	}
}

// offeredPermissions is what keys permissions must show: the default
// catalog's team permissions.
func offeredPermissions() []client.Permission {
	var out []client.Permission
	for _, p := range scopes.Default().Offered() {
		out = append(out, client.Permission{ID: p.ID, Name: p.Name, Description: p.Description, Scopes: p.Scopes})
	}
	return out
}

func TestCLIKeysTeamsTable(t *testing.T) {
	t.Parallel()
	e := startCLIServer(t)
	out, stderr, err := run(t, keysArgs(e, "teams")...)
	if err != nil {
		t.Fatalf("keys teams: %v (stderr %q)", err, stderr)
	}
	if out != "No team holds API keys yet; create one with: keygate keys create --team T --name N --permission P\n" {
		t.Fatalf("keys teams on an empty server printed %q", out)
	}

	createKeysInTwoTeams(t, e)
	out, stderr, err = run(t, keysArgs(e, "teams")...)
	if err != nil {
		t.Fatalf("keys teams: %v (stderr %q)", err, stderr)
	}
	want := "" +
		"TEAM    KEYS\n" +
		"acme    1 of 5\n" +
		"globex  2 of 5\n"
	if out != want || stderr != "" {
		t.Fatalf("keys teams printed\n%s\nwant\n%s(stderr %q)", out, want, stderr)
	}

	out, stderr, err = run(t, keysArgs(e, "teams", "--prefix", "glo")...)
	if want := "TEAM    KEYS\nglobex  2 of 5\n"; err != nil || out != want {
		t.Fatalf("keys teams --prefix glo printed %q (%v, stderr %q), want %q", out, err, stderr, want)
	}
	out, _, err = run(t, keysArgs(e, "teams", "--prefix", "zz")...)
	if want := "No team whose ID starts with \"zz\" holds API keys.\n"; err != nil || out != want {
		t.Fatalf("keys teams --prefix zz printed %q (%v), want %q", out, err, want)
	}
}

func TestCLIKeysTeamsJSON(t *testing.T) {
	t.Parallel()
	e := startCLIServer(t)
	out, _, err := run(t, keysArgs(e, "teams", "--json")...)
	if err != nil {
		t.Fatal(err)
	}
	// The API's shape: an empty array, not null, and max_keys.
	var raw map[string]any
	if err := json.Unmarshal([]byte(out), &raw); err != nil {
		t.Fatalf("teams --json output is not JSON: %v\n%s", err, out)
	}
	if teams, ok := raw["teams"].([]any); !ok || len(teams) != 0 || raw["max_keys"] != 5.0 || len(raw) != 2 {
		t.Fatalf("teams --json on an empty server: %s", out)
	}

	createKeysInTwoTeams(t, e)
	out, _, err = run(t, keysArgs(e, "teams", "--json")...)
	if err != nil {
		t.Fatal(err)
	}
	var l client.TeamList
	if err := json.Unmarshal([]byte(out), &l); err != nil {
		t.Fatalf("teams --json: %v\n%s", err, out)
	}
	want := client.TeamList{Teams: []client.Team{{TeamID: "acme", KeyCount: 1}, {TeamID: "globex", KeyCount: 2}}, MaxKeys: 5}
	if !reflect.DeepEqual(l, want) {
		t.Fatalf("teams --json %+v, want %+v", l, want)
	}
	if !strings.Contains(out, `"team_id": "acme"`) || !strings.Contains(out, `"key_count": 2`) {
		t.Fatalf("teams --json does not use the API's field names:\n%s", out)
	}
}

// permissionRow is one permission as the keys permissions table shows it:
// the NAME column's lines joined (name, then description) and the SCOPES
// column's words.
type permissionRow struct {
	ID, Text string
	Scopes   []string
}

// parsePermissionTable reads the keys permissions table back by column,
// from the positions of the header's column names.
func parsePermissionTable(t *testing.T, out string) (rows []permissionRow, footer string) {
	t.Helper()
	table, footer, ok := strings.Cut(out, "\n\nGrant them with:")
	if !ok {
		t.Fatalf("no footer line in:\n%s", out)
	}
	lines := strings.Split(table, "\n")
	// The header is ASCII, so its byte offsets are the columns' rune offsets.
	nameAt, scopesAt := strings.Index(lines[0], "NAME"), strings.Index(lines[0], "SCOPES")
	if !strings.HasPrefix(lines[0], "ID ") || nameAt < 0 || scopesAt < nameAt || utf8.RuneCountInString(lines[0]) != len(lines[0]) {
		t.Fatalf("header %q", lines[0])
	}
	for _, line := range lines[1:] {
		r := []rune(line)
		if len(r) > 100 {
			t.Errorf("line wider than 100 columns (%d): %q", len(r), line)
		}
		if line == "" {
			continue
		}
		col := func(from, to int) string {
			from, to = min(from, len(r)), min(to, len(r))
			return strings.TrimSpace(string(r[from:to]))
		}
		if id := col(0, nameAt); id != "" {
			rows = append(rows, permissionRow{ID: id})
		} else if len(rows) == 0 {
			t.Fatalf("continuation line before the first permission: %q", line)
		}
		row := &rows[len(rows)-1]
		if text := col(nameAt, scopesAt); text != "" {
			row.Text = strings.TrimSpace(row.Text + " " + text)
		}
		row.Scopes = append(row.Scopes, strings.Fields(col(scopesAt, len(r)))...)
	}
	return rows, "Grant them with:" + footer
}

func TestCLIKeysPermissionsTable(t *testing.T) {
	t.Parallel()
	e := startCLIServer(t)
	createKeysInTwoTeams(t, e) // keys do not change the catalog's list
	out, stderr, err := run(t, keysArgs(e, "permissions")...)
	if err != nil {
		t.Fatalf("keys permissions: %v (stderr %q)", err, stderr)
	}
	if stderr != "" {
		t.Fatalf("stderr %q", stderr)
	}
	rows, footer := parsePermissionTable(t, out)
	var want []permissionRow
	for _, p := range offeredPermissions() {
		want = append(want, permissionRow{ID: p.ID, Text: p.Name + " " + p.Description, Scopes: p.Scopes})
	}
	if !reflect.DeepEqual(rows, want) {
		t.Fatalf("keys permissions shows\n%+v\nwant\n%+v\n%s", rows, want, out)
	}
	if footer != "Grant them with: keygate keys create --team T --name N --permission ID [--permission ID…]\n" {
		t.Fatalf("footer %q", footer)
	}
	// The long name of accounting_api stays on one line, next to its ID.
	if !regexp.MustCompile(`(?m)^accounting_api +Accounting Data as a Service API — full read/write +common:read common:write$`).MatchString(out) {
		t.Fatalf("first accounting_api line not as expected:\n%s", out)
	}
	if strings.Contains(out, "token_introspection") || strings.Contains(out, "tokens:introspect") {
		t.Fatalf("keys permissions offers the operator-only permission:\n%s", out)
	}
}

func TestPermissionTableWraps(t *testing.T) {
	t.Parallel()
	// An operator's catalog with long names, descriptions and scope lists
	// still fits 100 columns, and nothing is lost in the wrapping.
	perms := []client.Permission{
		{ID: "reports.v2-beta_with_a_long_identifier", Name: strings.Repeat("Quarterly reporting ", 5) + "— read",
			Description: strings.Repeat("Lets an integration read every quarterly report. ", 4),
			Scopes:      []string{"reports:read", "reports:export", "reports.archive:read", "reports.drafts:read", "x"}},
		{ID: "a", Name: "Short", Description: "", Scopes: []string{"a:b"}},
	}
	var b bytes.Buffer
	writePermissionTable(&b, perms)
	b.WriteString("\nGrant them with: …\n")
	rows, _ := parsePermissionTable(t, b.String())
	var want []permissionRow
	for _, p := range perms {
		want = append(want, permissionRow{ID: p.ID, Text: strings.Join(strings.Fields(p.Name+" "+p.Description), " "), Scopes: p.Scopes})
	}
	if !reflect.DeepEqual(rows, want) {
		t.Fatalf("wrapped table reads back as\n%+v\nwant\n%+v\n%s", rows, want, b.String())
	}
}

func TestCLIKeysPermissionsJSON(t *testing.T) {
	t.Parallel()
	e := startCLIServer(t)
	out, _, err := run(t, keysArgs(e, "permissions", "--json")...)
	if err != nil {
		t.Fatal(err)
	}
	var l client.PermissionList
	if err := json.Unmarshal([]byte(out), &l); err != nil {
		t.Fatalf("permissions --json: %v\n%s", err, out)
	}
	if want := offeredPermissions(); !reflect.DeepEqual(l.Permissions, want) || l.MaxNameLength != 64 {
		t.Fatalf("permissions --json %+v, want %+v and max_name_length 64", l, want)
	}
	var raw map[string]any
	if err := json.Unmarshal([]byte(out), &raw); err != nil || len(raw) != 2 || raw["max_name_length"] != 64.0 {
		t.Fatalf("permissions --json is not the API's shape: %v\n%s", err, out)
	}
	if strings.Contains(out, "token_introspection") || strings.Contains(out, "operator_only") {
		t.Fatalf("permissions --json shows operator-only data:\n%s", out)
	}
}

func TestCLIKeysTeamsPermissionsErrors(t *testing.T) {
	t.Parallel()
	e := startCLIServer(t)
	wrong := filepath.Join(t.TempDir(), "wrong")
	other, err := credential.NewSecret()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(wrong, []byte(other), 0o600); err != nil {
		t.Fatal(err)
	}
	// A team key authenticates, but its token lacks keys:admin: the
	// server's 403 problem detail.
	out, _, err := run(t, keysArgs(e, "create", "--json", "--team", "acme", "--name", "team key", "--permission", "accounting_api")...)
	if err != nil {
		t.Fatal(err)
	}
	var teamKey client.CreatedKey
	if err := json.Unmarshal([]byte(out), &teamKey); err != nil {
		t.Fatal(err)
	}
	teamSecret := filepath.Join(t.TempDir(), "team")
	if err := os.WriteFile(teamSecret, []byte(teamKey.ClientSecret), 0o600); err != nil {
		t.Fatal(err)
	}

	for _, sub := range []string{"teams", "permissions"} {
		t.Run(sub, func(t *testing.T) {
			for _, asJSON := range []bool{false, true} {
				args := []string{"keys", sub, "--url", e.url, "--client-id", cliAdminID, "--client-secret-file", wrong}
				if asJSON {
					args = append(args, "--json")
				}
				out, stderr, err := run(t, args...)
				if err == nil || !strings.Contains(err.Error(), "admin token") || !strings.Contains(err.Error(), "invalid_client") || strings.Contains(err.Error(), other) {
					t.Fatalf("wrong secret (json %v): %v", asJSON, err)
				}
				if out != "" || stderr != "" {
					t.Fatalf("wrong secret (json %v) printed stdout %q stderr %q", asJSON, out, stderr)
				}
			}

			out, _, err := run(t, "keys", sub, "--url", e.url, "--client-id", teamKey.ClientID, "--client-secret-file", teamSecret)
			var ce *client.Error
			// An ordinary team key's token is no management token (aud).
			if !asClientError(err, &ce) || ce.Status != http.StatusUnauthorized || !strings.Contains(ce.Detail, "wrong audience") || err.Error() != ce.Detail {
				t.Fatalf("team key: %v, want the server's 401 problem detail", err)
			}
			if out != "" {
				t.Fatalf("team key printed %q", out)
			}

			// As a process: exit status 1, the detail on stderr, nothing on stdout.
			stdout, stderr, code := runMain(t, "keys", sub, "--url", e.url, "--client-id", teamKey.ClientID, "--client-secret-file", teamSecret)
			if code != 1 || stdout != "" || stderr != "keygate: "+ce.Detail+"\n" {
				t.Fatalf("keygate keys %s with a team key: exit %d, stdout %q, stderr %q", sub, code, stdout, stderr)
			}
		})
	}

	// Arguments are refused.
	for _, sub := range []string{"teams", "permissions"} {
		if _, _, err := run(t, keysArgs(e, sub, "extra")...); err == nil {
			t.Fatalf("keys %s accepted an argument", sub)
		}
	}
}

// envMainArgs makes the test binary run main with these (JSON-encoded)
// arguments instead of the tests; see TestMain.
const envMainArgs = "KEYGATE_TEST_MAIN_ARGS"

func TestMain(m *testing.M) {
	if raw, ok := os.LookupEnv(envMainArgs); ok {
		var args []string
		if err := json.Unmarshal([]byte(raw), &args); err != nil {
			panic(err)
		}
		os.Args = append([]string{"keygate"}, args...)
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// runMain runs keygate as a process (the test binary running main), for
// what main itself does: the exit status and the error on stderr.
func runMain(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	raw, err := json.Marshal(args)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0])
	// The process's environment without keygate's variables: no test sets
	// them, but the developer's shell might.
	cmd.Env = slices.DeleteFunc(os.Environ(), func(kv string) bool { return strings.HasPrefix(kv, config.EnvPrefix) })
	cmd.Env = append(cmd.Env, envMainArgs+"="+string(raw))
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err = cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		code = ee.ExitCode()
	default:
		t.Fatal(err)
	}
	return out.String(), errOut.String(), code
}

func TestCLISecretGenerate(t *testing.T) {
	t.Parallel()
	seen := map[string]bool{}
	for i := 0; i < 3; i++ {
		out, _, err := run(t, "secret", "generate")
		if err != nil {
			t.Fatal(err)
		}
		s := strings.TrimSuffix(out, "\n")
		if strings.Contains(s, "\n") || s == out {
			t.Fatalf("want exactly one line, got %q", out)
		}
		if err := credential.CheckSecretFormat(s); err != nil {
			t.Fatalf("secret generate printed %q: %v", s, err)
		}
		if seen[s] {
			t.Fatal("secret generate repeated itself")
		}
		seen[s] = true
	}
	if _, _, err := run(t, "secret", "generate", "extra"); err == nil {
		t.Fatal("secret generate accepted an argument")
	}
}

func TestCLIVersion(t *testing.T) {
	t.Parallel()
	out, _, err := run(t, "version")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(out, "keygate ") || len(strings.TrimSpace(out)) <= len("keygate") {
		t.Fatalf("version printed %q", out)
	}
}
