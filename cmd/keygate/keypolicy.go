package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/keygate/keygate/client"
	"github.com/keygate/keygate/config"
)

// policyFlags are the key policy flags of keys create and keys update (the
// --no-… ones on update alone).
type policyFlags struct {
	expiresAt, expiresIn, tokenTTL, metadata string
	audiences, cidrs                         []string
	noExpiry, noAudiences, noCIDRs, noMeta   bool
	noTokenTTL                               bool
}

func (p *policyFlags) bind(fs *pflag.FlagSet, update bool) {
	fs.StringVar(&p.expiresAt, "expires-at", "", "when the key stops getting tokens, RFC 3339 (2027-03-01T00:00:00Z)")
	fs.StringVar(&p.expiresIn, "expires-in", "", "the key expires this long from now (e.g. 90d, 720h)")
	fs.StringVar(&p.tokenTTL, "token-ttl", "", "the lifetime of the key's tokens (e.g. 5m), within the server's bounds")
	fs.StringArrayVar(&p.audiences, "audience", nil, "an audience the key's tokens may name (from the server's audiences_allowed), repeatable")
	fs.StringArrayVar(&p.cidrs, "allowed-cidr", nil, "a source address or CIDR the key may get tokens from, repeatable (at most 32)")
	fs.StringVar(&p.metadata, "metadata", "", `the key's metadata, a JSON object ({"tenant":"acme"}; at most 1 KiB, 16 members)`)
	if update {
		fs.BoolVar(&p.noExpiry, "no-expiry", false, "the key never expires (an expired key cannot be un-expired)")
		fs.BoolVar(&p.noTokenTTL, "no-token-ttl", false, "the key's tokens get the server's token_ttl")
		fs.BoolVar(&p.noAudiences, "no-audiences", false, "remove the key's audiences (the server's apply)")
		fs.BoolVar(&p.noCIDRs, "no-allowed-cidrs", false, "remove the key's source address restriction")
		fs.BoolVar(&p.noMeta, "no-metadata", false, "remove the key's metadata")
	}
}

// flagConflict refuses a value flag given with the flag that clears it.
func flagConflict(fs *pflag.FlagSet, a, b string) error {
	if fs.Changed(a) && fs.Changed(b) {
		return fmt.Errorf("--%s and --%s exclude each other", a, b)
	}
	return nil
}

// expiry reads --expires-at or --expires-in; zero when neither is given.
func (p *policyFlags) expiry(fs *pflag.FlagSet, now time.Time) (time.Time, error) {
	if err := flagConflict(fs, "expires-at", "expires-in"); err != nil {
		return time.Time{}, err
	}
	switch {
	case fs.Changed("expires-at"):
		t, err := time.Parse(time.RFC3339, p.expiresAt)
		if err != nil {
			return time.Time{}, fmt.Errorf("--expires-at %q is not an RFC 3339 time such as 2027-03-01T00:00:00Z", p.expiresAt)
		}
		return t, nil
	case fs.Changed("expires-in"):
		d, err := config.ParseDuration(p.expiresIn)
		if err != nil || d <= 0 {
			return time.Time{}, fmt.Errorf("--expires-in %q is not a positive duration such as 90d or 720h", p.expiresIn)
		}
		return now.Add(d).Truncate(time.Second), nil
	}
	return time.Time{}, nil
}

func (p *policyFlags) ttl(fs *pflag.FlagSet) (time.Duration, error) {
	if !fs.Changed("token-ttl") {
		return 0, nil
	}
	d, err := config.ParseDuration(p.tokenTTL)
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("--token-ttl %q is not a positive duration such as 5m or 1h", p.tokenTTL)
	}
	return d, nil
}

func (p *policyFlags) meta(fs *pflag.FlagSet) (json.RawMessage, error) {
	if !fs.Changed("metadata") {
		return nil, nil
	}
	var obj map[string]any
	if err := json.Unmarshal([]byte(p.metadata), &obj); err != nil || obj == nil {
		return nil, errors.New(`--metadata is not a JSON object such as {"tenant":"acme"}`)
	}
	return json.RawMessage(p.metadata), nil
}

// createPolicy is the policy of keys create.
func (p *policyFlags) createPolicy(fs *pflag.FlagSet, now time.Time) (client.Policy, error) {
	var pol client.Policy
	var err error
	if pol.ExpiresAt, err = p.expiry(fs, now); err != nil {
		return pol, err
	}
	if pol.TokenTTL, err = p.ttl(fs); err != nil {
		return pol, err
	}
	if pol.Metadata, err = p.meta(fs); err != nil {
		return pol, err
	}
	pol.Audiences, pol.AllowedCIDRs = p.audiences, p.cidrs
	return pol, nil
}

// updatePolicy adds the policy flags of keys update to u and reports
// whether any was given.
func (p *policyFlags) updatePolicy(fs *pflag.FlagSet, now time.Time, u *client.KeyUpdate) (bool, error) {
	for _, c := range [][2]string{{"expires-at", "no-expiry"}, {"expires-in", "no-expiry"}, {"token-ttl", "no-token-ttl"},
		{"audience", "no-audiences"}, {"allowed-cidr", "no-allowed-cidrs"}, {"metadata", "no-metadata"}} {
		if err := flagConflict(fs, c[0], c[1]); err != nil {
			return false, err
		}
	}
	exp, err := p.expiry(fs, now)
	if err != nil {
		return false, err
	}
	if !exp.IsZero() {
		u.ExpiresAt = &exp
	}
	ttl, err := p.ttl(fs)
	if err != nil {
		return false, err
	}
	if ttl != 0 {
		u.TokenTTL = &ttl
	}
	if u.Metadata, err = p.meta(fs); err != nil {
		return false, err
	}
	if fs.Changed("audience") {
		u.Audiences = p.audiences
	}
	if fs.Changed("allowed-cidr") {
		u.AllowedCIDRs = p.cidrs
	}
	u.ClearExpiresAt, u.ClearTokenTTL, u.ClearAudiences, u.ClearAllowedCIDRs, u.ClearMetadata = p.noExpiry, p.noTokenTTL, p.noAudiences, p.noCIDRs, p.noMeta
	given := u.ExpiresAt != nil || u.TokenTTL != nil || u.Metadata != nil || u.Audiences != nil || u.AllowedCIDRs != nil ||
		p.noExpiry || p.noTokenTTL || p.noAudiences || p.noCIDRs || p.noMeta
	return given, nil
}

// keysSuspendCommand is keys suspend and, with resume set, keys resume.
func keysSuspendCommand(f *keysFlags, resume bool) *cobra.Command {
	var team string
	use, short, long := "suspend", "Suspend an API key: no new tokens, its tokens read suspended",
		`Suspend an API key (PATCH {"disabled": true}). It gets no new token, and
its outstanding tokens read SUSPENDED in the status list: resource servers
that check the status list refuse them once their copy refreshes (within
the list's ttl). keygate keys resume undoes it. --team, if given, must be
the key's team.`
	if resume {
		use, short, long = "resume", "Resume a suspended API key",
			`Resume a suspended API key (PATCH {"disabled": false}). It gets tokens
again, and its tokens issued before the suspension that have not expired are
valid again. --team, if given, must be the key's team.`
	}
	cmd := &cobra.Command{
		Use:   use + " [--team T] CLIENT_ID",
		Short: short,
		Long:  long,
		Args:  oneArg("CLIENT_ID", clientIDWhat),
		RunE: f.command(func(cmd *cobra.Command, c *client.Client, args []string) error {
			k, err := findKey(cmd, c, team, args[0])
			if err != nil {
				return err
			}
			change := c.SuspendKey
			if resume {
				change = c.ResumeKey
			}
			got, err := change(cmd.Context(), k.TeamID, k.ClientID)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if f.json {
				return writeJSON(out, got)
			}
			writeKeyTable(out, []client.Key{*got})
			if resume {
				fmt.Fprintf(out, "\n%s is %s: it gets tokens again, and its unexpired tokens are valid again.\n", got.ClientID, got.Status)
			} else {
				fmt.Fprintf(out, "\n%s is suspended: no new tokens; resource servers that check the status list refuse its tokens once their copy refreshes.\n", got.ClientID)
			}
			return nil
		}),
	}
	cmd.Flags().StringVar(&team, "team", "", "team ID (optional: the key's team, checked)")
	return cmd
}

// keysNow is the clock the key table's relative times read.
var keysNow = time.Now

// keyStatus is a key's STATUS column: the server's status, older servers'
// keys (no status) read active.
func keyStatus(k client.Key) string {
	if k.Status == "" {
		return "active"
	}
	return k.Status
}

// keyExpires is the EXPIRES column: "never", "expired", or "in 12 days",
// marked "!" when the server says the key is expiring soon.
func keyExpires(k client.Key, now time.Time) string {
	if k.ExpiresAt == nil {
		return "never"
	}
	left := k.ExpiresAt.Sub(now)
	if left <= 0 || k.Status == "expired" {
		return "expired"
	}
	s := "in " + humanSpan(left)
	if k.ExpiringSoon {
		s += " (!)"
	}
	return s
}

// humanSpan writes d in the largest whole unit: days, hours, minutes.
func humanSpan(d time.Duration) string {
	plural := func(n int64, unit string) string {
		if n == 1 {
			return "1 " + unit
		}
		return fmt.Sprintf("%d %ss", n, unit)
	}
	switch {
	case d >= 24*time.Hour:
		return plural(int64(d/(24*time.Hour)), "day")
	case d >= time.Hour:
		return plural(int64(d/time.Hour), "hour")
	case d >= time.Minute:
		return plural(int64(d/time.Minute), "minute")
	}
	return "under a minute"
}

// keyRotated is the ROTATED column: never, or when, and the previous
// secret's end while it works.
func keyRotated(k client.Key) string {
	if k.SecretRotatedAt == nil {
		return "never"
	}
	s := k.SecretRotatedAt.Local().Format(time.DateTime)
	if k.PreviousSecretExpiresAt != nil {
		s += " (previous secret live until " + k.PreviousSecretExpiresAt.Local().Format(time.DateTime) + ")"
	}
	return s
}

// keyRestrictions is the RESTRICTIONS column: "-" or a summary.
func keyRestrictions(k client.Key) string {
	var parts []string
	if n := len(k.AllowedCIDRs); n > 0 {
		parts = append(parts, plural(n, "cidr"))
	}
	if len(k.Audiences) > 0 {
		parts = append(parts, "aud "+strings.Join(k.Audiences, ","))
	}
	if k.TokenTTL != nil {
		parts = append(parts, "ttl "+(time.Duration(*k.TokenTTL)*time.Second).String())
	}
	if len(parts) == 0 {
		return "-"
	}
	return strings.Join(parts, "; ")
}

func plural(n int, unit string) string {
	if n == 1 {
		return "1 " + unit
	}
	return fmt.Sprintf("%d %ss", n, unit)
}

// writePolicy adds every policy field of a key below its table (keys get).
func writePolicy(w io.Writer, k client.Key, now time.Time) {
	fmt.Fprintf(w, "\nstatus: %s\n", keyStatus(k))
	if k.DisabledAt != nil {
		fmt.Fprintf(w, "suspended since: %s\n", formatTime(*k.DisabledAt))
	}
	if k.ExpiresAt != nil {
		soon := ""
		if k.ExpiringSoon {
			soon = ", expiring soon"
		}
		fmt.Fprintf(w, "expires: %s (%s%s)\n", formatTime(*k.ExpiresAt), keyExpires(k, now), soon)
	} else {
		fmt.Fprintln(w, "expires: never")
	}
	ttl := "the server's token_ttl"
	if k.TokenTTL != nil {
		ttl = (time.Duration(*k.TokenTTL) * time.Second).String()
	}
	fmt.Fprintf(w, "token ttl: %s\n", ttl)
	list := func(v []string, none string) string {
		if len(v) == 0 {
			return none
		}
		return strings.Join(v, ", ")
	}
	fmt.Fprintf(w, "audiences: %s\n", list(k.Audiences, "the server's"))
	fmt.Fprintf(w, "allowed cidrs: %s\n", list(k.AllowedCIDRs, "any source address"))
	meta := "none"
	if len(k.Metadata) > 0 && string(k.Metadata) != "null" {
		meta = string(k.Metadata)
	}
	fmt.Fprintf(w, "metadata: %s\n", meta)
}
