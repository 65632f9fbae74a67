package main

import (
	"fmt"
	"io"
	"regexp"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/keygate/keygate/client"
)

func keysUsageCommand(f *keysFlags) *cobra.Command {
	var team string
	var opts client.UsageOptions
	cmd := &cobra.Command{
		Use:   "usage --team T [--granularity hour|day] [--from F] [--to T]",
		Short: "Show a team's usage per key: tokens issued and failed authentications",
		Long: `Show a team's usage per key: access tokens issued and failed
authentications (a known client ID with a wrong or expired secret), by hour
or by UTC day, with the team's total.

--from and --to take an RFC 3339 time (2026-11-28T10:00:00Z) or a date
(2026-11-28, UTC; in --to, the end of that day). By day (the default) the
report covers the last 30 days, today included, and --from may reach 35 days
back; by hour it covers the last 24 hours, and --from may reach 48 hours
back. Usage is written by the server every fraction of a second, so the very
latest tokens may not show yet. A deleted key's usage stays, marked
"(deleted)", until it ages out.

--quiet prints one line per key: client ID, tokens, failed authentications,
separated by tabs.`,
		Args: noArgs,
		RunE: f.teamCommand(&team, func(cmd *cobra.Command, c *client.Client, _ []string) error {
			if g := opts.Granularity; g != "" && g != "hour" && g != "day" {
				return fmt.Errorf("--granularity %q must be hour or day", g)
			}
			u, err := c.Usage(cmd.Context(), team, opts)
			if err != nil {
				return usageFlagWords(err)
			}
			out := cmd.OutOrStdout()
			switch {
			case f.json:
				return writeJSON(out, u)
			case f.quiet:
				for _, k := range u.Keys {
					fmt.Fprintf(out, "%s\t%d\t%d\n", k.ClientID, k.Tokens, k.FailedAuthentications)
				}
				return nil
			}
			writeUsage(out, u)
			return nil
		}),
	}
	fl := cmd.Flags()
	fl.StringVar(&team, "team", "", "team ID")
	fl.StringVar(&opts.Granularity, "granularity", "", "hour or day (default day)")
	fl.StringVar(&opts.From, "from", "", "start: RFC 3339 time or date (default: 30 days back by day, 24 hours by hour)")
	fl.StringVar(&opts.To, "to", "", "end: RFC 3339 time, or date meaning its end (default: now)")
	fl.BoolVarP(&f.quiet, "quiet", "q", false, "print client ID, tokens and failed authentications per key, tab-separated")
	return cmd
}

// usageParamWords turn the query parameters the usage endpoint's problem
// details name into the flags that set them.
var usageParamWords = []struct {
	re   *regexp.Regexp
	with string
}{
	{regexp.MustCompile(`\bgranularity=(hour|day)\b`), "--granularity $1"},
	{regexp.MustCompile(`^(from|to|granularity) `), "--$1 "},
	{regexp.MustCompile(`\bso from must\b`), "so --from must"},
	{regexp.MustCompile(`\bmust be before to\b`), "must be before --to"},
}

func usageFlagWords(err error) error {
	ce, ok := err.(*client.Error)
	if !ok {
		return err
	}
	out := *ce
	for _, w := range usageParamWords {
		out.Detail = w.re.ReplaceAllString(out.Detail, w.with)
	}
	return &out
}

// writeUsage prints the per-key totals, then the team's active buckets.
func writeUsage(w io.Writer, u *client.Usage) {
	size, layout := 24*time.Hour, time.DateOnly
	if u.Granularity == "hour" {
		size, layout = time.Hour, "2006-01-02 15:04"
	}
	fmt.Fprintf(w, "Usage of team %s by %s, %s to %s (UTC)\n\n", u.TeamID, u.Granularity,
		u.From.UTC().Format(layout), u.To.Add(-size).UTC().Format(layout))
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "CLIENT ID\tNAME\tTOKENS\tFAILED AUTH")
	for _, k := range u.Keys {
		name := "(deleted)"
		if k.Name != nil {
			name = *k.Name
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\n", k.ClientID, name, k.Tokens, k.FailedAuthentications)
	}
	fmt.Fprintf(tw, "TOTAL\t\t%d\t%d\n", u.Total.Tokens, u.Total.FailedAuthentications)
	tw.Flush()
	if len(u.Buckets) == 0 {
		fmt.Fprintln(w, "\nNo tokens or failed authentications in this range.")
		return
	}
	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, strings.ToUpper(u.Granularity)+"\tTOKENS\tFAILED AUTH")
	for _, b := range u.Buckets {
		fmt.Fprintf(tw, "%s\t%d\t%d\n", b.Start.UTC().Format(layout), b.Tokens, b.FailedAuthentications)
	}
	tw.Flush()
}
