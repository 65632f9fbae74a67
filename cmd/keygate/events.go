package main

// keygate events: the audit trail (docs/audit.md) through the management
// API, a team's (--team) or every team's, once or followed.

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/keygate/keygate/client"
	"github.com/keygate/keygate/config"
)

// defaultFollowInterval is how often --follow polls.
const defaultFollowInterval = 2 * time.Second

func eventsCommand(e env) *cobra.Command {
	f := keysFlags{getenv: e.getenv}
	var (
		team, since, until string
		actions            []string
		limit              int
		follow             bool
		interval           time.Duration
	)
	cmd := &cobra.Command{
		Use:   "events [--team T] [--follow]",
		Short: "Show the audit trail: who created, changed, rotated or deleted keys, revoked tokens, or was refused",
		Long: `Show audit events, oldest first (the last --limit of them), from a running
keygate's management API. Without --team, every team's events and those of
no team (refused management calls, admin keys) from the operator-wide
stream, which may lag a few seconds behind; with --team T, team T's trail.

--follow keeps polling for new events (every --interval) and prints each
once, until interrupted; with --json it prints one JSON object a line.
--since and --until take an RFC 3339 time or a duration back from now
(--since 24h, --since 7d). --action keeps only the given actions
(key.created, key.updated, key.rotated, key.deleted, key.secret_leaked, token.revoked,
management.auth_failed); repeat it or separate them with commas.

Credentials and --url as for keygate keys (see keygate keys --help).`,
		Args: noArgs,
		RunE: f.command(func(cmd *cobra.Command, c *client.Client, _ []string) error {
			if limit < 1 || limit > 1000 {
				return fmt.Errorf("--limit %d must be from 1 to 1000", limit)
			}
			if follow && interval < 100*time.Millisecond {
				return fmt.Errorf("--interval %v is too short for --follow; use 100ms or more", interval)
			}
			now := time.Now()
			q := client.EventQuery{Team: team, AllTeams: team == "", Actions: permissionList(actions), Limit: limit}
			var err error
			if q.Since, err = timeFlag("--since", since, now); err != nil {
				return err
			}
			if q.Until, err = timeFlag("--until", until, now); err != nil {
				return err
			}
			page, err := c.Events(cmd.Context(), q)
			if err != nil {
				return err
			}
			evs := reversed(page.Events)
			out := cmd.OutOrStdout()
			if !follow {
				switch {
				case f.json:
					return writeJSON(out, evs)
				case f.quiet:
					for _, ev := range evs {
						fmt.Fprintln(out, ev.ID)
					}
					return nil
				case len(evs) == 0:
					fmt.Fprintln(out, "No audit events match.")
					return nil
				}
				writeEventTable(out, evs, true)
				return nil
			}
			newest := ""
			if len(page.Events) > 0 {
				newest = page.Events[0].Cursor
			}
			if err := writeEvents(out, evs, f.json, f.quiet, true); err != nil {
				return err
			}
			ticks, stop := e.ticker(interval)
			defer stop()
			for range ticks {
				if newest == "" {
					// Nothing seen yet: the newest page, as at the start.
					page, err := c.Events(cmd.Context(), q)
					if err != nil {
						return err
					}
					if len(page.Events) > 0 {
						newest = page.Events[0].Cursor
					}
					evs = reversed(page.Events)
				} else if evs, newest, err = c.NewEvents(cmd.Context(), q, newest); err != nil {
					return err
				}
				if err := writeEvents(out, evs, f.json, f.quiet, false); err != nil {
					return err
				}
			}
			return nil
		}),
	}
	f.bindFlags(cmd.Flags())
	fl := cmd.Flags()
	fl.StringVar(&team, "team", "", "one team's events (default: every team's)")
	fl.StringSliceVar(&actions, "action", nil, "only these actions (repeat, or separate with commas)")
	fl.StringVar(&since, "since", "", "only events at or after this RFC 3339 time, or this long ago (24h, 7d)")
	fl.StringVar(&until, "until", "", "only events before this RFC 3339 time, or this long ago")
	fl.IntVar(&limit, "limit", 100, "how many of the newest events to show, 1 to 1000 (per poll with --follow)")
	fl.BoolVarP(&follow, "follow", "f", false, "keep polling for new events until interrupted")
	fl.DurationVar(&interval, "interval", defaultFollowInterval, "how often --follow polls")
	fl.BoolVarP(&f.quiet, "quiet", "q", false, "print only the event IDs, one a line")
	return cmd
}

// ticker is e.newTicker, or a real ticker.
func (e env) ticker(d time.Duration) (<-chan time.Time, func()) {
	if e.newTicker != nil {
		return e.newTicker(d)
	}
	t := time.NewTicker(d)
	return t.C, t.Stop
}

// timeFlag reads --since or --until: an RFC 3339 time, or a duration
// (config.ParseDuration) back from now. "" is unbounded.
func timeFlag(name, v string, now time.Time) (time.Time, error) {
	if v == "" {
		return time.Time{}, nil
	}
	if t, err := time.Parse(time.RFC3339, v); err == nil {
		return t, nil
	}
	d, err := config.ParseDuration(v)
	if err != nil || d < 0 {
		return time.Time{}, fmt.Errorf("%s %q is neither an RFC 3339 time (2026-01-31T08:00:00Z) nor a duration back from now (24h, 7d)", name, v)
	}
	return now.Add(-d), nil
}

func reversed(evs []client.Event) []client.Event {
	out := make([]client.Event, len(evs))
	for i, ev := range evs {
		out[len(evs)-1-i] = ev
	}
	return out
}

// writeEvents prints events as --follow does: JSON lines, IDs, or table
// rows (with the header only on the first call).
func writeEvents(w io.Writer, evs []client.Event, asJSON, quiet, header bool) error {
	switch {
	case asJSON:
		enc := json.NewEncoder(w)
		for _, ev := range evs {
			if err := enc.Encode(ev); err != nil {
				return err
			}
		}
	case quiet:
		for _, ev := range evs {
			fmt.Fprintln(w, ev.ID)
		}
	default:
		writeEventTable(w, evs, header)
	}
	if fl, ok := w.(interface{ Flush() error }); ok {
		return fl.Flush()
	}
	return nil
}

// writeEventTable prints one row per event. With --follow rows come a
// few at a time, so columns are fixed-width rather than aligned per batch.
func writeEventTable(w io.Writer, evs []client.Event, header bool) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	if header {
		fmt.Fprintln(tw, "TIME\tACTION\tACTOR\tTEAM\tKEY\tSOURCE\tDETAIL")
	}
	for _, ev := range evs {
		actor := ev.Actor.Type
		if ev.Actor.ID != "" {
			actor += " " + ev.Actor.ID
		}
		if ev.Actor.Via != "" {
			actor += " via " + ev.Actor.Via
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", formatTime(ev.Time), ev.Action, actor,
			dash(ev.TeamID), dash(ev.ClientID), dash(ev.SourceAddress), eventDetail(ev))
	}
	tw.Flush()
}

func eventDetail(ev client.Event) string {
	var parts []string
	if len(ev.Fields) > 0 {
		parts = append(parts, "changed "+strings.Join(ev.Fields, ", "))
	}
	if ev.Reason != "" {
		parts = append(parts, ev.Reason)
	}
	if ev.Count > 1 {
		parts = append(parts, fmt.Sprintf("%d times", ev.Count))
	}
	if ev.StatusIndex > 0 {
		parts = append(parts, fmt.Sprintf("status index %d revoked", ev.StatusIndex))
	}
	return dash(strings.Join(parts, "; "))
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
