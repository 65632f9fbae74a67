package main

// keygate events: a team's trail and the operator-wide view as a table and
// as JSON, --follow driven by the test's own ticks (each new event printed
// once), and refusals worded for the command line.

import (
	"bytes"
	"context"
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/client"
)

func eventsArgs(e cliEnv, rest ...string) []string {
	return append(append([]string{"events"}, e.conn()...), rest...)
}

func eventActions(evs []client.Event) []string {
	var out []string
	for _, ev := range evs {
		out = append(out, ev.Action+" "+ev.TeamID)
	}
	return out
}

func TestCLIEvents(t *testing.T) {
	t.Parallel()
	e := startCLIServer(t)
	k := createKey(t, e, "acme", "accounting_api")
	if _, stderr, err := run(t, keysArgs(e, "rotate", k.ClientID)...); err != nil {
		t.Fatalf("rotate: %v %s", err, stderr)
	}
	createKey(t, e, "globex", "accounting_api")
	if _, stderr, err := run(t, keysArgs(e, "delete", k.ClientID)...); err != nil {
		t.Fatalf("delete: %v %s", err, stderr)
	}

	out, stderr, err := run(t, eventsArgs(e, "--team", "acme", "--json")...)
	var evs []client.Event
	if err != nil || json.Unmarshal([]byte(out), &evs) != nil {
		t.Fatalf("events --team acme --json: %v %s\n%s", err, stderr, out)
	}
	if got, want := eventActions(evs), []string{"key.created acme", "key.rotated acme", "key.deleted acme"}; !slices.Equal(got, want) {
		t.Fatalf("acme's events, oldest first: %v, want %v", got, want)
	}
	for _, ev := range evs {
		if ev.Actor.Type != "admin_key" || ev.Actor.ID != cliAdminID || ev.ClientID != k.ClientID {
			t.Errorf("%s: actor %+v, key %s", ev.Action, ev.Actor, ev.ClientID)
		}
	}

	out, _, err = run(t, eventsArgs(e, "--action", "key.created")...)
	if err != nil || strings.Count(out, "key.created") != 3 || !strings.Contains(out, "globex") ||
		!strings.Contains(out, "system via bootstrap") /* the admin key, created at start */ || strings.Contains(out, "key.deleted") ||
		!strings.HasPrefix(out, "TIME") || !strings.Contains(out, "admin_key "+cliAdminID) {
		t.Fatalf("events --action key.created (every team): %v\n%s", err, out)
	}
	out, _, err = run(t, eventsArgs(e, "--team", "acme", "-q", "--action", "key.rotated,key.deleted")...)
	if lines := strings.Fields(out); err != nil || len(lines) != 2 || lines[0] != evs[1].ID || lines[1] != evs[2].ID {
		t.Fatalf("events -q: %v\n%s", err, out)
	}
	out, _, err = run(t, eventsArgs(e, "--team", "nobody")...)
	if err != nil || out != "No audit events match.\n" {
		t.Fatalf("events of a team without any: %v %q", err, out)
	}

	before := snapshot(t, e)
	for _, c := range []struct {
		args []string
		want string
	}{
		{eventsArgs(e, "--limit", "0"), "--limit 0 must be from 1 to 1000"},
		{eventsArgs(e, "--since", "yesterday"), `--since "yesterday" is neither an RFC 3339 time (2026-01-31T08:00:00Z) nor a duration back from now (24h, 7d)`},
		{eventsArgs(e, "--action", "key.made"), "key.made"},
		{eventsArgs(e, "--json", "-q"), "use either --json or --quiet, not both"},
		{eventsArgs(e, "extra"), `keygate events takes no arguments, got "extra"`},
	} {
		_, _, err := run(t, c.args...)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("keygate %s: %v, want an error saying %q", strings.Join(c.args, " "), err, c.want)
		}
	}
	if after := snapshot(t, e); after != before {
		t.Error("refused events commands changed the store")
	}
}

// --follow prints what there is, then each new event once per poll, and
// ends when its ticks end.
func TestCLIEventsFollow(t *testing.T) {
	t.Parallel()
	e := startCLIServer(t)
	first := createKey(t, e, "acme", "accounting_api")

	ticks := make(chan time.Time)
	var out bytes.Buffer
	env := testEnv(nil)
	env.stdout = &out
	env.newTicker = func(d time.Duration) (<-chan time.Time, func()) {
		if d != 250*time.Millisecond {
			t.Errorf("ticker of %v, want --interval's 250ms", d)
		}
		return ticks, func() {}
	}
	root := rootCommand(env)
	root.SetArgs(eventsArgs(e, "--team", "acme", "--follow", "--json", "--interval", "250ms", "--limit", "2"))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- root.ExecuteContext(ctx) }()

	tick := func() {
		select {
		case ticks <- time.Now():
		case err := <-done:
			t.Fatalf("follow ended early: %v\n%s", err, out.String())
		case <-ctx.Done():
			t.Fatal("follow took no tick")
		}
	}
	tick() // the start is printed and the first poll ran once this returns
	var want []string
	want = append(want, first.ClientID)
	// More new events than one page (--limit 2): none is cut.
	for range 3 {
		want = append(want, createKey(t, e, "acme", "accounting_api").ClientID)
	}
	tick() // polls the three
	tick() // polls nothing new
	close(ticks)
	if err := <-done; err != nil {
		t.Fatalf("follow: %v", err)
	}
	var got []string
	for _, line := range strings.Split(strings.TrimSpace(out.String()), "\n") {
		var ev client.Event
		if err := json.Unmarshal([]byte(line), &ev); err != nil {
			t.Fatalf("follow --json line %q: %v", line, err)
		}
		if ev.Action != "key.created" {
			t.Fatalf("unexpected event %+v", ev)
		}
		got = append(got, ev.ClientID)
	}
	if !slices.Equal(got, want) {
		t.Fatalf("follow printed keys %v, want each created key once in order %v", got, want)
	}
}
