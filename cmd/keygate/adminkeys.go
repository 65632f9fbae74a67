package main

import (
	"errors"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/keygate/keygate/client"
	"github.com/keygate/keygate/config"
)

func adminKeysCommand(e env) *cobra.Command {
	f := keysFlags{getenv: e.getenv}
	cmd := &cobra.Command{
		Use:   "admin-keys",
		Short: "List, create, rotate and delete admin keys",
		Long: `List, create, rotate and delete admin keys through a running keygate's
management API (a full admin key's credentials; list works with a read-only
one too).

An admin key is full (role admin: every change) or read-only (role read:
lists, gets, events and usage; every change is refused). The key named by
KEYGATE_ADMIN_CLIENT_ID is managed by the environment: change its secret
there, not here. The last full admin key cannot be deleted.

Credentials and --url as for keygate keys (see keygate keys --help).`,
	}
	f.bindFlags(cmd.PersistentFlags())
	cmd.AddCommand(adminKeysListCommand(&f), adminKeysCreateCommand(&f), adminKeysRotateCommand(&f), adminKeysDeleteCommand(&f))
	return cmd
}

func adminKeysListCommand(f *keysFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "list",
		Short: "List the admin keys",
		Args:  noArgs,
		RunE: f.command(func(cmd *cobra.Command, c *client.Client, _ []string) error {
			keys, err := c.AdminKeys(cmd.Context())
			if err != nil {
				return err
			}
			if f.json {
				return writeJSON(cmd.OutOrStdout(), keys)
			}
			writeAdminKeyTable(cmd.OutOrStdout(), keys)
			return nil
		}),
	}
}

func adminKeysCreateCommand(f *keysFlags) *cobra.Command {
	var name, role string
	cmd := &cobra.Command{
		Use:   "create --name N [--role admin|read]",
		Short: "Create an admin key; its secret is printed once",
		Args:  noArgs,
		RunE: f.command(func(cmd *cobra.Command, c *client.Client, _ []string) error {
			if name == "" {
				return errors.New("--name is required: give the admin key a name people will recognise")
			}
			if role != client.RoleAdmin && role != client.RoleRead {
				return fmt.Errorf("--role %q: want admin (every change) or read (read only)", role)
			}
			k, err := c.CreateAdminKey(cmd.Context(), name, role)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if f.json {
				return writeJSON(out, k)
			}
			writeAdminKeyTable(out, []client.AdminKey{k.AdminKey})
			fmt.Fprintf(out, "\nclient_secret: %s\n\nStore the secret now: it cannot be shown again.\n", k.ClientSecret)
			return nil
		}),
	}
	cmd.Flags().StringVar(&name, "name", "", "the key's name, 1–64 characters")
	cmd.Flags().StringVar(&role, "role", client.RoleAdmin, "admin (every change) or read (read only)")
	return cmd
}

func adminKeysRotateCommand(f *keysFlags) *cobra.Command {
	var grace time.Duration
	graceFlag := config.NewDurationValue(24*time.Hour, &grace)
	cmd := &cobra.Command{
		Use:   "rotate [--grace-period 24h] CLIENT_ID",
		Short: "Give an admin key a new secret, printed once; the old one works for a grace period",
		Long: `Give an admin key a new secret, printed once. --grace-period as for
keygate keys rotate (0s to 7d, default 24h; 0s ends the old secret at once).
The key managed by the environment (KEYGATE_ADMIN_CLIENT_ID) is refused:
change KEYGATE_ADMIN_CLIENT_SECRET and restart instead.`,
		Args: oneArg("CLIENT_ID", "an admin key's client ID (keygate admin-keys list)"),
		RunE: f.command(func(cmd *cobra.Command, c *client.Client, args []string) error {
			gp, err := gracePeriodArg(cmd, grace, graceFlag)
			if err != nil {
				return err
			}
			r, err := c.RotateAdminKey(cmd.Context(), args[0], gp)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if f.json {
				return writeJSON(out, r)
			}
			writeAdminKeyTable(out, []client.AdminKey{r.AdminKey})
			fmt.Fprintf(out, "\nclient_secret: %s\n\nStore the secret now: it cannot be shown again.\n", r.ClientSecret)
			if r.PreviousSecretExpiresAt != nil {
				fmt.Fprintf(out, "The old secret keeps working until %s.\n", formatTime(*r.PreviousSecretExpiresAt))
			} else {
				fmt.Fprintln(out, "The old secret no longer works.")
			}
			return nil
		}),
	}
	cmd.Flags().Var(graceFlag, "grace-period", "how long the old secret keeps working, 0s to 7d (e.g. 36h, 7d)")
	return cmd
}

func adminKeysDeleteCommand(f *keysFlags) *cobra.Command {
	var yes bool
	cmd := &cobra.Command{
		Use:   "delete --yes CLIENT_ID",
		Short: "Delete an admin key; its tokens stop opening the API at once",
		Args:  oneArg("CLIENT_ID", "an admin key's client ID (keygate admin-keys list)"),
		RunE: f.command(func(cmd *cobra.Command, c *client.Client, args []string) error {
			if !yes {
				return fmt.Errorf("not deleted: admin key %s and its tokens stop working at once. Run again with --yes to delete it", args[0])
			}
			if err := c.DeleteAdminKey(cmd.Context(), args[0]); err != nil {
				return err
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "deleted admin key %s\n", args[0])
			return nil
		}),
	}
	cmd.Flags().BoolVar(&yes, "yes", false, "confirm the deletion")
	return cmd
}

func writeAdminKeyTable(w io.Writer, keys []client.AdminKey) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "CLIENT ID\tNAME\tROLE\tCREATED\tLAST USED\tMANAGED BY")
	for _, k := range keys {
		last := "never"
		if k.LastUsedAt != nil {
			last = formatTime(*k.LastUsedAt)
		}
		managed := "api"
		if k.ManagedByEnvironment {
			managed = "environment"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", k.ClientID, k.Name, k.Role, formatTime(k.CreatedAt), last, managed)
	}
	tw.Flush()
}
