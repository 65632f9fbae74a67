package main

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/keygate/keygate/client"
)

func signingKeysArgs(e cliEnv, sub string, rest ...string) []string {
	return append(append([]string{"signing-keys", sub}, e.conn()...), rest...)
}

func signingKeyList(t *testing.T, e cliEnv) (client.SigningKeyList, string) {
	t.Helper()
	out, stderr, err := run(t, signingKeysArgs(e, "list", "--json")...)
	if err != nil {
		t.Fatalf("signing-keys list --json: %v (%s)", err, stderr)
	}
	var l client.SigningKeyList
	if err := json.Unmarshal([]byte(out), &l); err != nil {
		t.Fatalf("signing-keys list --json: %v in %s", err, out)
	}
	return l, out
}

// TestCLISigningKeys: list (table and --json), a safe rotation, a refused
// second one, --now with its warning, --revoke refused without --yes (the
// warning says what it costs; nothing changes) and done with it; bad flag
// combinations are one-line errors that change nothing.
func TestCLISigningKeys(t *testing.T) {
	t.Parallel()
	e := startCLIServer(t)
	l, before := signingKeyList(t, e)
	if len(l.Keys) != 1 || l.Keys[0].State != "current" {
		t.Fatalf("initial keys: %s", before)
	}
	first := l.Keys[0].KID
	out, _, err := run(t, signingKeysArgs(e, "list")...)
	if err != nil || !strings.HasPrefix(out, "KID") || !strings.Contains(out, "SIGNS FROM") || !strings.Contains(out, "RETIRES AT") ||
		!strings.Contains(out, first) || !strings.Contains(out, "current") || !strings.Contains(out, "rotation: every 90d; a next key is published 1h0m0s before it signs") {
		t.Fatalf("signing-keys list: %v\n%s", err, out)
	}
	if strings.Contains(before, "private") || strings.Contains(before, "sealed") {
		t.Fatalf("the list shows key material: %s", before)
	}

	revokeWarning := "every token signed by " + first + " stops verifying: keygate refuses it at once; resource servers drop the key when their JWKS cache refreshes (verify: max-age 300s, and up to MaxStale, 1h by default, while keygate is unreachable)."
	for _, c := range []struct {
		args []string
		want string
	}{
		{signingKeysArgs(e, "rotate", "--revoke", first), "not revoked: " + revokeWarning + " Run again with --yes to revoke it"},
		{signingKeysArgs(e, "rotate", "--now", "--revoke", first, "--yes"), "use either --now or --revoke, not both: revoking the current key already makes the next one sign at once"},
		{signingKeysArgs(e, "rotate", "--yes"), "--yes confirms a --revoke; there is nothing to confirm without one"},
		{signingKeysArgs(e, "rotate", "--revoke", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", "--yes"),
			"no published signing key has kid AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA (see `keygate signing-keys list`)"},
		{signingKeysArgs(e, "list", "extra"), "keygate signing-keys list takes no arguments, got \"extra\": keygate signing-keys list [flags]"},
	} {
		wantExit(t, c.want, c.args...)
		if _, after := signingKeyList(t, e); after != before {
			t.Fatalf("keygate %s changed the keys:\n%s\n%s", strings.Join(c.args, " "), before, after)
		}
	}

	// Safe: pre-published.
	out, stderr, err := run(t, signingKeysArgs(e, "rotate")...)
	if err != nil || stderr != "" || !strings.Contains(out, "next") {
		t.Fatalf("rotate: %v\n%s\n%s", err, out, stderr)
	}
	l, before = signingKeyList(t, e)
	if len(l.Keys) != 2 || l.Keys[0].State != "next" || l.Keys[1].KID != first {
		t.Fatalf("after rotate: %s", before)
	}
	next := l.Keys[0].KID
	// A second safe rotation is refused; nothing changes.
	_, _, err = run(t, signingKeysArgs(e, "rotate")...)
	if err == nil || !strings.Contains(err.Error(), "a next signing key is already scheduled ("+next) {
		t.Fatalf("second rotate: %v", err)
	}
	if _, after := signingKeyList(t, e); after != before {
		t.Fatal("a refused rotation changed the keys")
	}

	// Now: the next key signs, with the warning.
	out, stderr, err = run(t, signingKeysArgs(e, "rotate", "--now", "--json")...)
	if err != nil || !strings.HasPrefix(stderr, "warning: the new key signs at once.") {
		t.Fatalf("rotate --now: %v\n%s\n%s", err, out, stderr)
	}
	var got client.SigningKeyList
	if err := json.Unmarshal([]byte(out), &got); err != nil || got.Keys[0].KID != next || got.Keys[0].State != "current" || got.Keys[1].State != "retired" {
		t.Fatalf("rotate --now --json: %v %s", err, out)
	}

	// Revoke the retired key with --yes: gone, with the warning.
	out, stderr, err = run(t, signingKeysArgs(e, "rotate", "--revoke", first, "--yes")...)
	if err != nil || stderr != "revoked "+first+": "+revokeWarning+"\n" || strings.Contains(out, first) {
		t.Fatalf("rotate --revoke --yes: %v\n%s\n%s", err, out, stderr)
	}
	if l, _ := signingKeyList(t, e); len(l.Keys) != 1 || l.Keys[0].KID != next {
		t.Fatalf("after revoking: %+v", l.Keys)
	}
}
