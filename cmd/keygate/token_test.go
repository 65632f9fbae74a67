package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/credential"
)

// runStdin is run with stdin and the environment variables vars.
func runStdin(t *testing.T, stdin string, vars map[string]string, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var out, errOut bytes.Buffer
	e := testEnv(vars)
	e.stdin, e.stdout, e.stderr = strings.NewReader(stdin), &out, &errOut
	root := rootCommand(e)
	root.SetArgs(args)
	err = root.ExecuteContext(ctx)
	return out.String(), errOut.String(), err
}

var jwtRe = regexp.MustCompile(`^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$`)

// tokenKey is a team key made for the token commands, with its secret in a
// file.
type tokenKey struct {
	e          cliEnv
	id, secret string
	secretFile string
}

func (k tokenKey) args(sub ...string) []string {
	return append(append([]string{"token"}, sub...), "--url", k.e.url, "--client-id", k.id, "--client-secret-file", k.secretFile)
}

func newTokenKey(t *testing.T) tokenKey {
	t.Helper()
	e := startCLIServer(t)
	k := createKey(t, e, "acme", "accounting_api")
	file := t.TempDir() + "/key.secret"
	if err := writeFile0600(file, k.ClientSecret+"\n"); err != nil {
		t.Fatal(err)
	}
	return tokenKey{e: e, id: k.ClientID, secret: k.ClientSecret, secretFile: file}
}

func TestCLIToken(t *testing.T) {
	t.Parallel()
	k := newTokenKey(t)

	out, stderr, err := run(t, k.args()...)
	if err != nil || stderr != "" {
		t.Fatalf("token: %v (stderr %q)", err, stderr)
	}
	tok := strings.TrimSuffix(out, "\n")
	if !jwtRe.MatchString(tok) || tok+"\n" != out {
		t.Fatalf("token printed %q, want the access token alone", out)
	}

	// --json: keygate's whole answer; --scope narrows it.
	out, _, err = run(t, append(k.args(), "--json", "--scope", "common:read")...)
	if err != nil {
		t.Fatal(err)
	}
	var answer map[string]any
	if err := json.Unmarshal([]byte(out), &answer); err != nil {
		t.Fatalf("token --json: %v\n%s", err, out)
	}
	var keys []string
	for name := range answer {
		keys = append(keys, name)
	}
	slices.Sort(keys)
	if !slices.Equal(keys, []string{"access_token", "expires_in", "scope", "token_type"}) || answer["scope"] != "common:read" ||
		answer["token_type"] != "Bearer" || !jwtRe.MatchString(answer["access_token"].(string)) {
		t.Fatalf("token --json: %s", out)
	}

	// The environment, and --client-secret with its warning.
	vars := map[string]string{envURL: k.e.url, envClientID: k.id, envClientSecret: k.secret}
	if out, stderr, err := runWith(t, vars, "token"); err != nil || !jwtRe.MatchString(strings.TrimSpace(out)) || stderr != "" {
		t.Fatalf("token from the environment: %v %q %q", err, out, stderr)
	}
	out, stderr, err = run(t, "token", "--url", k.e.url, "--client-id", k.id, "--client-secret", k.secret)
	if err != nil || !jwtRe.MatchString(strings.TrimSpace(out)) ||
		stderr != "warning: --client-secret is visible to other users in the process list; prefer --client-secret-file or KEYGATE_CLIENT_SECRET\n" {
		t.Fatalf("token --client-secret: %v %q %q", err, out, stderr)
	}

	// Introspect: "-" reads stdin, silently; an argument warns.
	out, stderr, err = runStdin(t, tok+"\n", nil, k.args("introspect", "-")...)
	if err != nil || stderr != "" {
		t.Fatalf("introspect -: %v (stderr %q)", err, stderr)
	}
	for _, re := range []string{`(?m)^active +true$`, `(?m)^client_id +` + k.id + `$`, `(?m)^team_id +acme$`, `(?m)^scope +common:read`, `(?m)^exp +\d{4}-`} {
		if !regexp.MustCompile(re).MatchString(out) {
			t.Errorf("introspect table lacks %s:\n%s", re, out)
		}
	}
	out, stderr, err = run(t, append(k.args("introspect", tok), "--json")...)
	if err != nil || stderr != "warning: a TOKEN argument is visible to other users in the process list; prefer - to read it from stdin\n" {
		t.Fatalf("introspect TOKEN: %v (stderr %q)", err, stderr)
	}
	var intro map[string]any
	if json.Unmarshal([]byte(out), &intro) != nil || intro["active"] != true || intro["client_id"] != k.id {
		t.Fatalf("introspect --json: %s", out)
	}

	// Revoke, then the token is inactive.
	out, stderr, err = runStdin(t, tok, nil, k.args("revoke", "-")...)
	if err != nil || stderr != "" || out != "revoked (keygate answers the same for a token that was already invalid or expired)\n" {
		t.Fatalf("revoke -: %v %q %q", err, out, stderr)
	}
	out, _, err = runStdin(t, tok, nil, append(k.args("introspect", "-"), "--json")...)
	if err != nil || strings.TrimSpace(out) != "{\n  \"active\": false\n}" {
		t.Fatalf("introspect after revoke: %v\n%s", err, out)
	}
}

func TestCLITokenErrors(t *testing.T) {
	t.Parallel()
	k := newTokenKey(t)
	wrong := t.TempDir() + "/wrong"
	other, _ := credential.NewSecret()
	if err := writeFile0600(wrong, other); err != nil {
		t.Fatal(err)
	}
	before := snapshot(t, k.e)
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"token", "--url", k.e.url, "--client-id", k.id, "--client-secret-file", wrong},
			"keygate refused the token request: invalid_client: client authentication failed: unknown client, wrong secret, or deleted key (check --client-id and the secret)\n"},
		{[]string{"token", "introspect", "-", "--url", k.e.url, "--client-id", k.id, "--client-secret-file", wrong},
			"no token on stdin (TOKEN - reads it from there)"},
		{[]string{"token", "revoke", "x.y.z", "--url", k.e.url, "--client-id", k.id, "--client-secret-file", wrong},
			"keygate refused the revocation: invalid_client: client authentication failed: unknown client, wrong secret, or deleted key (check --client-id and the secret)\n"},
		{append(k.args(), "--scope", "payroll:write"),
			"keygate refused the token request: invalid_scope: "},
		{k.args("introspect"),
			"keygate token introspect needs TOKEN (the access token, or - to read it from stdin): keygate token introspect TOKEN|- [flags]"},
		{[]string{"token", "--url", k.e.url},
			"client credentials missing: pass --client-id and --client-secret-file, or set KEYGATE_CLIENT_ID and KEYGATE_CLIENT_SECRET"},
		{[]string{"token", "--url", "127.0.0.1:1", "--client-id", k.id, "--client-secret-file", k.secretFile},
			"cannot reach keygate at http://127.0.0.1:1 — is it running? (--url, KEYGATE_URL)"},
		{[]string{"token", "introspect", "-", "--url", "http://127.0.0.1:1", "--client-id", k.id, "--client-secret-file", k.secretFile},
			"no token on stdin (TOKEN - reads it from there)"},
		{[]string{"token", "extra"},
			"keygate token takes no arguments, got \"extra\": keygate token --client-id ID --client-secret-file F [--scope S] [flags]"},
	} {
		stdout, stderr, code := runMain(t, c.args...)
		// A TOKEN argument adds its warning first; the error is the last line.
		stderr = strings.TrimPrefix(stderr, "warning: a TOKEN argument is visible to other users in the process list; prefer - to read it from stdin\n")
		want := "keygate: " + c.want
		if !strings.HasSuffix(want, ": ") && !strings.HasSuffix(want, "\n") {
			want += "\n" // the whole message, exactly
		}
		if code != 1 || stdout != "" || !strings.HasPrefix(stderr, want) || strings.HasSuffix(want, "\n") && stderr != want || strings.Contains(stderr, other) || strings.Contains(stderr, k.secret) {
			t.Errorf("keygate %v:\nexit %d stdout %q\nstderr %q\nwant   %q", c.args, code, stdout, stderr, "keygate: "+c.want)
		}
	}
	// Unreachable through introspect too (the token from stdin is real text).
	_, _, err := runStdin(t, "a.b.c", nil, "token", "introspect", "-", "--url", "http://127.0.0.1:1", "--client-id", k.id, "--client-secret-file", k.secretFile)
	if err == nil || err.Error() != "cannot reach keygate at http://127.0.0.1:1 — is it running? (--url, KEYGATE_URL)" {
		t.Fatalf("introspect unreachable: %v", err)
	}
	if after := snapshot(t, k.e); after != before {
		t.Fatalf("refused token commands changed the store")
	}
}

func writeFile0600(path, content string) error { return os.WriteFile(path, []byte(content), 0o600) }
