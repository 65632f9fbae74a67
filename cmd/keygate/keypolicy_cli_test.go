package main

// The key policy flags of keys create and update, keys suspend and resume,
// and the policy columns of keys list and get (issue 17), against a real
// keygate.

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/client"
	"github.com/keygate/keygate/server"
	"github.com/keygate/keygate/server/servertest"
)

const cliAudience = "https://api.example.com/accounting"

func startPolicyCLIServer(t *testing.T) cliEnv {
	t.Helper()
	e := servertest.Start(t, server.Options{AdminClientID: cliAdminID, AudiencesAllowed: []string{cliAudience}}, nil)
	file := filepath.Join(t.TempDir(), "admin-secret")
	if err := os.WriteFile(file, []byte(e.AdminSecret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return cliEnv{url: e.URL, secret: e.AdminSecret, secretFile: file}
}

func getKeyJSON(t *testing.T, e cliEnv, id string) client.Key {
	t.Helper()
	out, stderr, err := run(t, keysArgs(e, "get", "--json", id)...)
	var k client.Key
	if err != nil || json.Unmarshal([]byte(out), &k) != nil {
		t.Fatalf("keys get: %v (%s)\n%s", err, stderr, out)
	}
	return k
}

// listLine is the keys list line of the key id.
func listLine(t *testing.T, e cliEnv, id string) string {
	t.Helper()
	out, stderr, err := run(t, keysArgs(e, "list", "--team", "acme")...)
	if err != nil {
		t.Fatalf("keys list: %v (%s)", err, stderr)
	}
	if !strings.Contains(out, "STATUS") || !strings.Contains(out, "EXPIRES") || !strings.Contains(out, "ROTATED") || !strings.Contains(out, "RESTRICTIONS") {
		t.Fatalf("keys list header lacks the policy columns:\n%s", out)
	}
	for _, l := range strings.Split(out, "\n") {
		if strings.Contains(l, id) {
			return l
		}
	}
	t.Fatalf("keys list has no %s:\n%s", id, out)
	return ""
}

func TestCLIKeyPolicy(t *testing.T) {
	t.Parallel()
	e := startPolicyCLIServer(t)

	out, stderr, err := run(t, keysArgs(e, "create", "--json", "--team", "acme", "--name", "k", "--permission", "accounting_api",
		"--expires-in", "30d", "--token-ttl", "5m", "--audience", cliAudience,
		"--allowed-cidr", "10.0.0.0/8", "--allowed-cidr", "2001:db8::/32", "--metadata", `{"tenant":"acme"}`)...)
	var k client.CreatedKey
	if err != nil || json.Unmarshal([]byte(out), &k) != nil {
		t.Fatalf("keys create: %v (%s)\n%s", err, stderr, out)
	}
	if k.Status != "active" || k.ExpiresAt == nil || k.ExpiresAt.Sub(time.Now()) < 29*24*time.Hour || k.ExpiresAt.Sub(time.Now()) > 30*24*time.Hour ||
		k.TokenTTL == nil || *k.TokenTTL != 300 || strings.Join(k.Audiences, ",") != cliAudience ||
		strings.Join(k.AllowedCIDRs, ",") != "10.0.0.0/8,2001:db8::/32" || compactJSON(t, k.Metadata) != `{"tenant":"acme"}` || k.ExpiringSoon {
		t.Fatalf("created key %+v", k.Key)
	}
	line := listLine(t, e, k.ClientID)
	for _, want := range []string{"active", "in 29 days", "2 cidrs; aud " + cliAudience + "; ttl 5m0s", "never"} {
		if !strings.Contains(line, want) {
			t.Errorf("list line lacks %q:\n%s", want, line)
		}
	}
	if strings.Contains(line, "(!)") {
		t.Errorf("a key 29 days from expiry is marked expiring soon:\n%s", line)
	}

	// Refusals: exit 1 with the reason, nothing changed.
	before := snapshot(t, e)
	for _, c := range []struct {
		args []string
		want string
	}{
		{keysArgs(e, "update", "--expires-at", "2030-01-01T00:00:00Z", "--expires-in", "3d", k.ClientID), "--expires-at and --expires-in exclude each other"},
		{keysArgs(e, "update", "--expires-at", "tomorrow", k.ClientID), `--expires-at "tomorrow" is not an RFC 3339 time such as 2027-03-01T00:00:00Z`},
		{keysArgs(e, "update", "--expires-in", "-1d", k.ClientID), `--expires-in "-1d" is not a positive duration such as 90d or 720h`},
		{keysArgs(e, "update", "--token-ttl", "soon", k.ClientID), `--token-ttl "soon" is not a positive duration such as 5m or 1h`},
		{keysArgs(e, "update", "--metadata", `["a"]`, k.ClientID), `--metadata is not a JSON object such as {"tenant":"acme"}`},
		{keysArgs(e, "update", "--audience", cliAudience, "--no-audiences", k.ClientID), "--audience and --no-audiences exclude each other"},
		{keysArgs(e, "update", "--expires-in", "3d", "--no-expiry", k.ClientID), "--expires-in and --no-expiry exclude each other"},
		{keysArgs(e, "update", "--allowed-cidr", "10.0.0.0/8", "--no-allowed-cidrs", k.ClientID), "--allowed-cidr and --no-allowed-cidrs exclude each other"},
		{keysArgs(e, "create", "--team", "acme", "--name", "x", "--permission", "accounting_api", "--expires-at", "2030-01-01T00:00:00Z", "--expires-in", "3d"), "--expires-at and --expires-in exclude each other"},
		{keysArgs(e, "suspend"), "keygate keys suspend needs CLIENT_ID (the key's client ID, as keygate keys list shows it): keygate keys suspend [--team T] CLIENT_ID [flags]"},
	} {
		wantExit(t, c.want, c.args...)
	}
	// The server's refusal names the field (an audience outside audiences_allowed).
	stdout, stderr, code := runMain(t, keysArgs(e, "update", "--audience", "https://elsewhere.example", k.ClientID)...)
	if code != 1 || stdout != "" || !strings.Contains(stderr, "audiences") {
		t.Errorf("an audience not allowed: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	if after := snapshot(t, e); after != before {
		t.Fatalf("a refused command changed keys:\n%s\n---\n%s", before, after)
	}

	// Suspend, then resume.
	out, stderr, err = run(t, keysArgs(e, "suspend", k.ClientID)...)
	if err != nil || !strings.Contains(out, k.ClientID+" is suspended: no new tokens") {
		t.Fatalf("keys suspend: %v (%s)\n%s", err, stderr, out)
	}
	if got := getKeyJSON(t, e, k.ClientID); got.Status != "suspended" || !got.Disabled || got.DisabledAt == nil {
		t.Fatalf("after suspend: %+v", got)
	}
	if line := listLine(t, e, k.ClientID); !strings.Contains(line, "suspended") {
		t.Fatalf("list after suspend:\n%s", line)
	}
	out, _, _ = run(t, keysArgs(e, "get", k.ClientID)...)
	if !strings.Contains(out, "status: suspended") || !strings.Contains(out, "suspended since: ") {
		t.Fatalf("get after suspend:\n%s", out)
	}
	out, stderr, err = run(t, keysArgs(e, "resume", k.ClientID)...)
	if err != nil || !strings.Contains(out, k.ClientID+" is active: it gets tokens again") {
		t.Fatalf("keys resume: %v (%s)\n%s", err, stderr, out)
	}
	if got := getKeyJSON(t, e, k.ClientID); got.Status != "active" || got.Disabled || got.DisabledAt != nil {
		t.Fatalf("after resume: %+v", got)
	}

	// Near expiry: marked in the list and in get.
	soon := time.Now().Add(3*24*time.Hour + time.Hour).UTC().Truncate(time.Second)
	if _, stderr, err := run(t, keysArgs(e, "update", "--expires-at", soon.Format(time.RFC3339), k.ClientID)...); err != nil {
		t.Fatalf("update --expires-at: %v (%s)", err, stderr)
	}
	if line := listLine(t, e, k.ClientID); !strings.Contains(line, "in 3 days (!)") {
		t.Fatalf("a key 3 days from expiry is not marked:\n%s", line)
	}
	out, _, _ = run(t, keysArgs(e, "get", k.ClientID)...)
	for _, want := range []string{"status: active", "(in 3 days (!), expiring soon)", "token ttl: 5m0s", "audiences: " + cliAudience,
		"allowed cidrs: 10.0.0.0/8, 2001:db8::/32", `metadata: {"tenant":"acme"}`} {
		if !strings.Contains(out, want) {
			t.Errorf("keys get lacks %q:\n%s", want, out)
		}
	}

	// Clear every policy field.
	if _, stderr, err := run(t, keysArgs(e, "update", "--no-expiry", "--no-token-ttl", "--no-audiences", "--no-allowed-cidrs", "--no-metadata", k.ClientID)...); err != nil {
		t.Fatalf("update --no-…: %v (%s)", err, stderr)
	}
	got := getKeyJSON(t, e, k.ClientID)
	if got.ExpiresAt != nil || got.TokenTTL != nil || len(got.Audiences) != 0 || len(got.AllowedCIDRs) != 0 || (got.Metadata != nil && string(got.Metadata) != "null") || got.Status != "active" {
		t.Fatalf("after clearing: %+v (metadata %s)", got, got.Metadata)
	}
	line = listLine(t, e, k.ClientID)
	if !strings.Contains(line, "never") || strings.Contains(line, "cidr") || strings.Contains(line, "aud ") {
		t.Fatalf("list after clearing:\n%s", line)
	}

	// Rotation with a grace period shows in the ROTATED column.
	if _, stderr, err := run(t, keysArgs(e, "rotate", "--grace-period", "2h", k.ClientID)...); err != nil {
		t.Fatalf("rotate: %v (%s)", err, stderr)
	}
	if line := listLine(t, e, k.ClientID); !strings.Contains(line, "(previous secret live until ") {
		t.Fatalf("list after rotation:\n%s", line)
	}
}

func TestKeyExpiresColumn(t *testing.T) {
	now := time.Date(2027, 1, 10, 9, 0, 0, 0, time.UTC)
	at := func(d time.Duration) *time.Time { t := now.Add(d); return &t }
	for _, c := range []struct {
		k    client.Key
		want string
	}{
		{client.Key{}, "never"},
		{client.Key{ExpiresAt: at(12*24*time.Hour + time.Minute)}, "in 12 days"},
		{client.Key{ExpiresAt: at(24 * time.Hour)}, "in 1 day"},
		{client.Key{ExpiresAt: at(5 * time.Hour), ExpiringSoon: true}, "in 5 hours (!)"},
		{client.Key{ExpiresAt: at(30 * time.Second), ExpiringSoon: true}, "in under a minute (!)"},
		{client.Key{ExpiresAt: at(-time.Second), Status: "expired"}, "expired"},
		{client.Key{ExpiresAt: at(time.Hour), Status: "expired"}, "expired"}, // the server's clock says so
	} {
		if got := keyExpires(c.k, now); got != c.want {
			t.Errorf("keyExpires(%v) = %q, want %q", c.k.ExpiresAt, got, c.want)
		}
	}
}

func compactJSON(t *testing.T, raw json.RawMessage) string {
	t.Helper()
	var b bytes.Buffer
	if err := json.Compact(&b, raw); err != nil {
		t.Fatalf("%q: %v", raw, err)
	}
	return b.String()
}
