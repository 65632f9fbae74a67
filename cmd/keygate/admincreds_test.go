package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/keygate/keygate/client"
	"github.com/keygate/keygate/credential"
)

// writeAdminFile writes an admin credentials file as serve writes it, with
// the token URL of baseURL.
func writeAdminFile(t *testing.T, dir, id, secret, baseURL string) string {
	t.Helper()
	b, err := json.MarshalIndent(map[string]string{"client_id": id, "client_secret": secret, "token_url": baseURL + "/oauth/token"}, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, adminCredentialsFile)
	if err := os.WriteFile(path, append(b, '\n'), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// snapshot is every team's keys as the admin sees them, to show that a
// refused command changed nothing.
func snapshot(t *testing.T, e cliEnv) string {
	t.Helper()
	c := client.New(client.Config{URL: e.url, ClientID: cliAdminID, ClientSecret: e.secret})
	ctx := context.Background()
	teams, err := c.Teams(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	var all []client.Key
	for _, tm := range teams.Teams {
		l, err := c.ListKeys(ctx, tm.TeamID)
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, l.Keys...)
	}
	b, _ := json.Marshal(all)
	return string(b)
}

// localhostURL is e's URL under another name: the same server, another
// origin.
func localhostURL(e cliEnv) string { return strings.Replace(e.url, "127.0.0.1", "localhost", 1) }

func TestCLIAdminCredentialsFile(t *testing.T) {
	t.Parallel()
	e := startCLIServer(t)
	file := writeAdminFile(t, t.TempDir(), cliAdminID, e.secret, e.url)

	// The flag, with --url and without (the file names its keygate).
	for _, args := range [][]string{
		{"keys", "create", "--team", "acme", "--name", "k", "--permission", "accounting_api", "--admin-credentials-file", file, "--url", e.url},
		{"keys", "create", "--team", "acme", "--name", "k2", "--permission", "accounting_api", "--admin-credentials-file", file},
	} {
		out, stderr, err := run(t, args...)
		if err != nil || !strings.Contains(out, "client_secret: kgs_") || stderr != "" {
			t.Fatalf("%v: %v\nstdout %q\nstderr %q", args, err, out, stderr)
		}
	}
	// The environment variable.
	out, _, err := runWith(t, map[string]string{envAdminCredentialsFile: file}, "keys", "list", "--team", "acme")
	if err != nil || !strings.Contains(out, "2 of 5 keys used") {
		t.Fatalf("%s: %v\n%s", envAdminCredentialsFile, err, out)
	}

	// Another origin than the file's token_url: refused before anything is
	// sent, with the reason.
	before := snapshot(t, e)
	other := localhostURL(e)
	for name, c := range map[string]struct {
		vars map[string]string
		args []string
	}{
		"flag":     {nil, []string{"--admin-credentials-file", file, "--url", other}},
		"env":      {map[string]string{envAdminCredentialsFile: file, envURL: other}, nil},
		"flag+env": {map[string]string{envURL: other}, []string{"--admin-credentials-file", file}},
	} {
		args := append([]string{"keys", "create", "--team", "acme", "--name", "x", "--permission", "accounting_api"}, c.args...)
		_, _, err := runWith(t, c.vars, args...)
		from := "--url"
		if c.args == nil || name == "flag+env" {
			from = envURL
		}
		want := "the admin credentials in " + file + " belong to the keygate at " + e.url + " (their token_url), not to " + other + " (" + from + "); " +
			"pass --url " + e.url + ", or give the credentials of " + other + " with --admin-credentials-file or --client-id and --client-secret-file"
		if err == nil || err.Error() != want {
			t.Errorf("%s: err %v\nwant %s", name, err, want)
		}
	}
	if after := snapshot(t, e); after != before {
		t.Fatalf("a refused command changed the store:\n%s\n%s", before, after)
	}

	// Both kinds of credentials at once.
	_, _, err = run(t, "keys", "list", "--team", "acme", "--admin-credentials-file", file, "--client-id", cliAdminID, "--client-secret-file", e.secretFile)
	if err == nil || err.Error() != "use either --admin-credentials-file or --client-id with --client-secret-file, not both" {
		t.Fatalf("both: %v", err)
	}
	// A file that is not serve's.
	notJSON := filepath.Join(t.TempDir(), "creds")
	os.WriteFile(notJSON, []byte(e.secret), 0o600)
	_, _, err = run(t, "keys", "list", "--team", "acme", "--admin-credentials-file", notJSON)
	if want := "--admin-credentials-file " + notJSON + " does not hold admin credentials as serve writes them (JSON with client_id, client_secret and token_url)"; err == nil || err.Error() != want || strings.Contains(err.Error(), e.secret) {
		t.Fatalf("not JSON: %v", err)
	}
}

// With no credentials at all, serve's file in data_dir is used, only for
// its own keygate.
func TestCLIDefaultAdminCredentialsFile(t *testing.T) {
	t.Parallel()
	e := startCLIServer(t)
	dir := t.TempDir()
	file := writeAdminFile(t, dir, cliAdminID, e.secret, e.url)

	out, _, err := runWith(t, map[string]string{"KEYGATE_DATA_DIR": dir}, "keys", "teams", "--url", e.url)
	if err != nil || !strings.Contains(out, "No team holds API keys yet") {
		t.Fatalf("KEYGATE_DATA_DIR: %v\n%s", err, out)
	}
	out, _, err = run(t, "keys", "teams", "--url", e.url, "--data-dir", dir)
	if err != nil || !strings.Contains(out, "No team holds API keys yet") {
		t.Fatalf("--data-dir: %v\n%s", err, out)
	}

	before := snapshot(t, e)
	other := localhostURL(e)
	_, _, err = run(t, "keys", "create", "--team", "acme", "--name", "x", "--permission", "accounting_api", "--url", other, "--data-dir", dir)
	want := "the admin credentials in " + file + " belong to the keygate at " + e.url + " (their token_url), not to " + other + " (--url); " +
		"pass --url " + e.url + ", or give the credentials of " + other + " with --admin-credentials-file or --client-id and --client-secret-file"
	if err == nil || err.Error() != want {
		t.Fatalf("other origin: %v\nwant %s", err, want)
	}
	// Without --url the default URL is compared, and is not this server's.
	_, _, err = run(t, "keys", "create", "--team", "acme", "--name", "x", "--permission", "accounting_api", "--data-dir", dir)
	if err == nil || !strings.Contains(err.Error(), "not to "+defaultURL+" (the default URL)") {
		t.Fatalf("default URL: %v", err)
	}
	if after := snapshot(t, e); after != before {
		t.Fatalf("a refused command changed the store:\n%s\n%s", before, after)
	}

	// No file there: the message says where it looked.
	empty := t.TempDir()
	_, _, err = run(t, "keys", "teams", "--url", e.url, "--data-dir", empty)
	if err == nil || !strings.HasPrefix(err.Error(), "admin credentials missing: ") || !strings.HasSuffix(err.Error(), "(no "+filepath.Join(empty, adminCredentialsFile)+" either)") {
		t.Fatalf("no file: %v", err)
	}
}

func TestCLIClientSecretFileRefused(t *testing.T) {
	t.Parallel()
	e := startCLIServer(t)
	dir := t.TempDir()
	jsonFile := writeAdminFile(t, dir, cliAdminID, e.secret, e.url)
	junk := filepath.Join(dir, "junk")
	os.WriteFile(junk, []byte("hunter2\n"), 0o600)
	before := snapshot(t, e)
	for _, c := range []struct{ file, want string }{
		{jsonFile, "keygate: --client-secret-file " + jsonFile + " holds JSON, not a secret alone; for the admin credentials file serve writes, use --admin-credentials-file " + jsonFile + "\n"},
		{junk, "keygate: --client-secret-file " + junk + " does not hold a keygate secret (kgs_ followed by 49 letters and digits)\n"},
	} {
		stdout, stderr, code := runMain(t, "keys", "create", "--team", "acme", "--name", "x", "--permission", "accounting_api",
			"--url", e.url, "--client-id", cliAdminID, "--client-secret-file", c.file)
		if code != 1 || stdout != "" || stderr != c.want {
			t.Errorf("exit %d stdout %q stderr %q, want %q", code, stdout, stderr, c.want)
		}
		if strings.Contains(stderr, e.secret) || strings.Contains(stderr, "hunter2") {
			t.Errorf("the secret was printed: %q", stderr)
		}
	}
	if after := snapshot(t, e); after != before {
		t.Fatalf("a refused command changed the store")
	}
	if err := credential.CheckSecretFormat(e.secret); err != nil {
		t.Fatal(err) // the refusal is not because of the harness's secret
	}
}

// bench --create-key takes the admin credentials file too.
func TestBenchCreateKeyAdminCredentialsFile(t *testing.T) {
	t.Parallel()
	e := startCLIServer(t)
	file := writeAdminFile(t, t.TempDir(), cliAdminID, e.secret, e.url)
	stdout, stderr, err := run(t, "bench", "--url", e.url, "--create-key", "--admin-credentials-file", file, "--duration", "200ms", "--connections", "1", "--json")
	if err != nil {
		t.Fatalf("%v\n%s", err, stderr)
	}
	checkBenchClean(t, benchResult(t, stdout))
	if !strings.Contains(stderr, "created key") || !strings.Contains(stderr, "deleted key") {
		t.Errorf("stderr: %q", stderr)
	}
	_, _, err = run(t, "bench", "--url", localhostURL(e), "--create-key", "--admin-credentials-file", file, "--duration", "200ms")
	if err == nil || !strings.HasPrefix(err.Error(), "--create-key needs admin credentials: the admin credentials in "+file+" belong to the keygate at "+e.url) {
		t.Fatalf("other origin: %v", err)
	}
}
