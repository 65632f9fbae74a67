package main

import (
	"errors"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/keygate/keygate/client"
)

func signingKeysCommand(e env) *cobra.Command {
	f := keysFlags{getenv: e.getenv}
	cmd := &cobra.Command{
		Use:   "signing-keys",
		Short: "List and rotate the keys tokens are signed with",
		Long: `List and rotate the keys keygate signs tokens with, through a running
keygate's management API.

A key is next (in the JWKS, not signing yet), current (signing), or
retired (in the JWKS until every token it signed has expired), then it is
removed. signing_key_rotation schedules rotations; these commands rotate
by hand.

Credentials and --url as for keygate keys (see keygate keys --help).`,
	}
	f.bindFlags(cmd.PersistentFlags())
	cmd.AddCommand(signingKeysListCommand(&f), signingKeysRotateCommand(&f))
	return cmd
}

func signingKeysListCommand(f *keysFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "list",
		Short: "List the signing keys and their states",
		Args:  noArgs,
		RunE: f.command(func(cmd *cobra.Command, c *client.Client, _ []string) error {
			l, err := c.SigningKeys(cmd.Context())
			if err != nil {
				return err
			}
			if f.json {
				return writeJSON(cmd.OutOrStdout(), l)
			}
			writeSigningKeyTable(cmd.OutOrStdout(), l)
			return nil
		}),
	}
}

// Warnings of the rotations that cost something; the README says the same.
const (
	rotateNowWarning = "warning: the new key signs at once. Resource servers that have not fetched it yet refuse its tokens until their JWKS cache refreshes (verify refreshes on the first unknown kid, at most every 30s; other libraries may wait out the JWKS max-age of 300s). A rotation without --now publishes the key first and avoids this."
	revokeWarning    = "every token signed by %s stops verifying: keygate refuses it at once; resource servers drop the key when their JWKS cache refreshes (verify: max-age 300s, and up to MaxStale, 1h by default, while keygate is unreachable)."
)

func signingKeysRotateCommand(f *keysFlags) *cobra.Command {
	var (
		now, yes bool
		revoke   string
	)
	cmd := &cobra.Command{
		Use:   "rotate [--now | --revoke KID --yes]",
		Short: "Publish a next signing key, make it sign now, or revoke a key",
		Long: `Without flags, publish a new next key: it signs once signing_key_prepublish
has passed, by when every resource server's JWKS cache holds it, so no token
fails. Refused while a next key already waits.

--now makes the next key (a new one if none waits) sign at once: resource
servers that have not fetched it refuse its tokens until they refresh
their JWKS.

--revoke KID removes a compromised key from the JWKS at once: every token
it signed fails. Revoking the current key makes the next one (a new one if
none waits) sign in the same step. It needs --yes.`,
		Args: noArgs,
		RunE: f.command(func(cmd *cobra.Command, c *client.Client, _ []string) error {
			if now && revoke != "" {
				return errors.New("use either --now or --revoke, not both: revoking the current key already makes the next one sign at once")
			}
			if yes && revoke == "" {
				return errors.New("--yes confirms a --revoke; there is nothing to confirm without one")
			}
			if revoke != "" && !yes {
				return fmt.Errorf("not revoked: "+revokeWarning+" Run again with --yes to revoke it", revoke)
			}
			l, err := c.RotateSigningKeys(cmd.Context(), client.SigningKeyRotation{Now: now, Revoke: revoke})
			if err != nil {
				return err
			}
			errOut := cmd.ErrOrStderr()
			switch {
			case revoke != "":
				fmt.Fprintf(errOut, "revoked %s: "+revokeWarning+"\n", revoke, revoke)
			case now:
				fmt.Fprintln(errOut, rotateNowWarning)
			}
			if f.json {
				return writeJSON(cmd.OutOrStdout(), l)
			}
			writeSigningKeyTable(cmd.OutOrStdout(), l)
			return nil
		}),
	}
	cmd.Flags().BoolVar(&now, "now", false, "make the next key sign at once (its tokens fail where it is not yet fetched)")
	cmd.Flags().StringVar(&revoke, "revoke", "", "remove the key with this kid at once (every token it signed fails)")
	cmd.Flags().BoolVar(&yes, "yes", false, "confirm --revoke")
	return cmd
}

func writeSigningKeyTable(w io.Writer, l *client.SigningKeyList) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "KID\tALG\tSTATE\tCREATED\tSIGNS FROM\tRETIRES AT\tPUBLISHED UNTIL")
	opt := func(t *time.Time) string {
		if t == nil {
			return "-"
		}
		return formatTime(*t)
	}
	for _, k := range l.Keys {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", k.KID, k.Alg, k.State, formatTime(k.CreatedAt), formatTime(k.SignsFrom), opt(k.RetiresAt), opt(k.PublishedUntil))
	}
	tw.Flush()
	rotation := "manual only"
	if l.RotationSeconds > 0 {
		rotation = "every " + formatDays(time.Duration(l.RotationSeconds)*time.Second)
	}
	fmt.Fprintf(w, "\nrotation: %s; a next key is published %s before it signs\n", rotation, time.Duration(l.PrepublishSeconds)*time.Second)
}
