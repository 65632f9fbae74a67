package main

import (
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

// TestCLIKeysUsage: keys usage shows what the server counted, as a table,
// as JSON and with --quiet; bad flags are refused in flag words.
func TestCLIKeysUsage(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 11, 28, 10, 30, 0, 0, time.UTC)
	se := servertest.StartWith(t, servertest.Config{Options: server.Options{AdminClientID: cliAdminID}, Clock: servertest.NewClock(now)})
	file := filepath.Join(t.TempDir(), "admin-secret")
	if err := os.WriteFile(file, []byte(se.AdminSecret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	e := cliEnv{url: se.URL, secret: se.AdminSecret, secretFile: file}
	k := createKey(t, e, "acme", "accounting_api")
	for range 3 {
		se.Token(t, k.ClientID, k.ClientSecret, "")
	}
	if got := tokenStatus(t, e.url, k.ClientID, "kgs_wrong"); got != 401 {
		t.Fatalf("wrong secret: %d", got)
	}
	se.FlushLastUsed(t)

	out, _, err := run(t, keysArgs(e, "usage", "--team", "acme")...)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"Usage of team acme by day, 2026-10-30 to 2026-11-28 (UTC)",
		"CLIENT ID", "TOKENS", "FAILED AUTH",
		"TOTAL", "2026-11-28  3       1",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
	out, _, err = run(t, keysArgs(e, "usage", "-q", "--team", "acme", "--granularity", "hour")...)
	if err != nil || out != k.ClientID+"\t3\t1\n" {
		t.Errorf("usage -q: %v %q", err, out)
	}
	out, _, err = run(t, keysArgs(e, "usage", "--json", "--team", "acme", "--granularity", "hour", "--from", "2026-11-28T09:00:00Z")...)
	var u client.Usage
	if err != nil || json.Unmarshal([]byte(out), &u) != nil || u.Total.Tokens != 3 || !u.From.Equal(now.Add(-90*time.Minute)) || len(u.Buckets) != 1 {
		t.Errorf("usage --json: %v\n%s", err, out)
	}

	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--granularity", "week"}, `--granularity "week" must be hour or day`},
		{[]string{"--granularity", "hour", "--from", "2026-11-20"}, "--from 2026-11-20T00:00:00Z is too far back: usage by hour is kept for 48 hours, so --from must be 2026-11-26T10:00:00Z or later; for older usage use --granularity day (kept 35 days)"},
		{[]string{"--from", "soon"}, `--from "soon" is neither an RFC 3339 time (2025-03-01T12:00:00Z) nor a date (2025-03-01)`},
		{[]string{"--from", "2026-11-28", "--to", "2026-11-27"}, "--from 2026-11-28T00:00:00Z must be before --to 2026-11-28T00:00:00Z"},
	} {
		_, _, err := run(t, keysArgs(e, "usage", append([]string{"--team", "acme"}, c.args...)...)...)
		if err == nil || err.Error() != c.want {
			t.Errorf("usage %s: %v\nwant %s", strings.Join(c.args, " "), err, c.want)
		}
	}
	if _, _, err := run(t, keysArgs(e, "usage")...); err == nil || !strings.Contains(err.Error(), "needs --team T") {
		t.Errorf("usage without --team: %v", err)
	}
}
