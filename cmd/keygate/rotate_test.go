package main

import (
	"encoding/json"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/client"
	"github.com/keygate/keygate/credential"
)

var secretLineRe = regexp.MustCompile(`client_secret: (kgs_\S+)`)

// tokenStatus asks the server's token endpoint for a token with a key's
// credentials (HTTP Basic) and returns the status.
func tokenStatus(t *testing.T, base, id, secret string) int {
	t.Helper()
	status, _ := tokenAnswer(t, base, id, secret)
	return status
}

// tokenScope is the scope of the token a key's credentials get, or fails
// the test.
func tokenScope(t *testing.T, base, id, secret string) string {
	t.Helper()
	status, scope := tokenAnswer(t, base, id, secret)
	if status != http.StatusOK {
		t.Fatalf("token for %s: status %d", id, status)
	}
	return scope
}

func tokenAnswer(t *testing.T, base, id, secret string) (status int, scope string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, base+"/oauth/token", strings.NewReader("grant_type=client_credentials"))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(url.QueryEscape(id), url.QueryEscape(secret))
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var tr struct {
		Scope string `json:"scope"`
	}
	if resp.StatusCode == http.StatusOK {
		if err := json.NewDecoder(resp.Body).Decode(&tr); err != nil {
			t.Fatalf("token answer: %v", err)
		}
	}
	return resp.StatusCode, tr.Scope
}

func TestCLIKeysRotate(t *testing.T) {
	t.Parallel()
	e := startCLIServer(t)
	out, _, err := run(t, keysArgs(e, "create", "--team", "acme", "--name", "Production sync", "--permission", "accounting_api")...)
	if err != nil {
		t.Fatal(err)
	}
	id := clientIDRe.FindString(out)
	m := secretLineRe.FindStringSubmatch(out)
	if id == "" || m == nil {
		t.Fatalf("create output:\n%s", out)
	}
	old := m[1]

	// Default grace period: the new secret works, and so does the old one.
	out, stderr, err := run(t, keysArgs(e, "rotate", "--team", "acme", id)...)
	if err != nil {
		t.Fatalf("keys rotate: %v (stderr %q)", err, stderr)
	}
	m = secretLineRe.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no client_secret line in the rotate output:\n%s", out)
	}
	secret := m[1]
	if err := credential.CheckSecretFormat(secret); err != nil {
		t.Fatalf("printed secret: %v", err)
	}
	if secret == old {
		t.Fatal("rotate printed the old secret")
	}
	for _, want := range []string{id, "Production sync", "NAME", "CLIENT ID", "cannot be shown again", "old secret keeps working until"} {
		if !strings.Contains(out, want) {
			t.Errorf("rotate output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, old) {
		t.Fatalf("rotate output shows the old secret:\n%s", out)
	}
	if got := tokenStatus(t, e.url, id, secret); got != http.StatusOK {
		t.Fatalf("new secret: token status %d", got)
	}
	if got := tokenStatus(t, e.url, id, old); got != http.StatusOK {
		t.Fatalf("old secret inside the default grace period: token status %d", got)
	}

	// get shows the rotation, never a secret.
	out, _, err = run(t, keysArgs(e, "get", "--team", "acme", id)...)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "secret rotated:") || !strings.Contains(out, "previous secret works until:") || strings.Contains(out, "kgs_") {
		t.Fatalf("get output after a rotation:\n%s", out)
	}

	// --json and --grace-period 0s: the secret just printed stops at once.
	out, _, err = run(t, keysArgs(e, "rotate", "--json", "--team", "acme", "--grace-period", "0s", id)...)
	if err != nil {
		t.Fatal(err)
	}
	var rotated client.CreatedKey
	if err := json.Unmarshal([]byte(out), &rotated); err != nil {
		t.Fatalf("rotate --json output is not JSON: %v\n%s", err, out)
	}
	var raw map[string]any
	if err := json.Unmarshal([]byte(out), &raw); err != nil {
		t.Fatal(err)
	}
	if v, ok := raw["previous_secret_expires_at"]; !ok || v != nil {
		t.Fatalf("after grace 0, previous_secret_expires_at should be present and null: %s", out)
	}
	if rotated.ClientID != id || rotated.SecretRotatedAt == nil || credential.CheckSecretFormat(rotated.ClientSecret) != nil {
		t.Fatalf("rotate --json: %s", out)
	}
	for _, s := range []string{old, secret} {
		if got := tokenStatus(t, e.url, id, s); got != http.StatusUnauthorized {
			t.Fatalf("an earlier secret after a rotation with grace 0: token status %d, want 401", got)
		}
	}
	if got := tokenStatus(t, e.url, id, rotated.ClientSecret); got != http.StatusOK {
		t.Fatalf("newest secret: token status %d", got)
	}

	// Table output for grace 0 says the old secret is gone.
	out, _, err = run(t, keysArgs(e, "rotate", "--team", "acme", "--grace-period", "0s", id)...)
	if err != nil || !strings.Contains(out, "old secret no longer works") {
		t.Fatalf("rotate --grace-period 0s: %v\n%s", err, out)
	}

	// Refusals: out of range (checked before anything is sent, echoed as
	// written), another team's --team, no client ID; nothing changes.
	before := snapshot(t, e)
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--grace-period", "169h", id}, "--grace-period 169h is out of range: want 0s to 7d (168h)"},
		{[]string{"--grace-period", "8d", id}, "--grace-period 8d is out of range: want 0s to 7d (168h)"},
		{[]string{"--grace-period", "10d", id}, "--grace-period 10d is out of range: want 0s to 7d (168h)"},
		{[]string{"--grace-period", "200h", id}, "--grace-period 200h is out of range: want 0s to 7d (168h)"},
		{[]string{"--grace-period", "-1d", id}, "--grace-period -1d is out of range: want 0s to 7d (168h)"},
		{[]string{"--team", "globex", id}, "key " + id + " belongs to team acme, not --team globex; nothing was changed (omit --team, or pass --team acme)"},
		{[]string{"--team", "acme"}, "keygate keys rotate needs CLIENT_ID (the key's client ID, as keygate keys list shows it): keygate keys rotate [--team T] [--grace-period 24h] CLIENT_ID [flags]"},
	} {
		stdout, stderr, code := runMain(t, keysArgs(e, "rotate", c.args...)...)
		if code != 1 || stdout != "" || stderr != "keygate: "+c.want+"\n" {
			t.Errorf("rotate %v: exit %d stdout %q stderr %q\nwant %q", c.args, code, stdout, stderr, c.want)
		}
	}
	if after := snapshot(t, e); after != before {
		t.Fatalf("a refused rotate changed the store:\n%s\n%s", before, after)
	}

	// Without --team, and in days: the grace period is echoed as written.
	out, _, err = run(t, keysArgs(e, "rotate", "--grace-period", "7d", id)...)
	if err != nil || !regexp.MustCompile(`The old secret keeps working until .+ \(grace period 7d\)`).MatchString(out) {
		t.Fatalf("rotate --grace-period 7d without --team: %v\n%s", err, out)
	}
	out, _, err = run(t, keysArgs(e, "get", "--json", id)...)
	var k client.Key
	if err != nil || json.Unmarshal([]byte(out), &k) != nil || k.PreviousSecretExpiresAt == nil || k.SecretRotatedAt == nil ||
		k.PreviousSecretExpiresAt.Sub(*k.SecretRotatedAt) != 7*24*time.Hour {
		t.Fatalf("the 7d grace period was not sent as 168h: %v\n%s", err, out)
	}
}
