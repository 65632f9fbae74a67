package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/keygate/keygate/client"
)

func teamsCommand(e env) *cobra.Command {
	f := keysFlags{getenv: e.getenv}
	cmd := &cobra.Command{
		Use:   "teams",
		Short: "Offboard a team",
		Long: `Offboard a team through a running keygate's management API (a full
admin key's credentials). List teams with keygate keys teams.

Credentials and --url as for keygate keys (see keygate keys --help).`,
	}
	f.bindFlags(cmd.PersistentFlags())
	cmd.AddCommand(teamsDeleteCommand(&f))
	return cmd
}

func teamsDeleteCommand(f *keysFlags) *cobra.Command {
	var erase, yes bool
	cmd := &cobra.Command{
		Use:   "delete [--erase] --yes TEAM",
		Short: "Delete every key, session and usage record of a team",
		Long: `Delete every key of a team (their tokens stop working), its console and
exchange sessions and its usage. Its audit events stay; with --erase their
source addresses, user agents and user names are blanked. Repeat the command
if it fails midway: every step is idempotent.`,
		Args: oneArg("TEAM", "a team ID (keygate keys teams)"),
		RunE: f.command(func(cmd *cobra.Command, c *client.Client, args []string) error {
			if !yes {
				return fmt.Errorf("not deleted: every key of team %s stops working at once and its usage and sessions are removed. Run again with --yes to delete it", args[0])
			}
			d, err := c.DeleteTeam(cmd.Context(), args[0], erase)
			if err != nil {
				return err
			}
			if f.json {
				return writeJSON(cmd.OutOrStdout(), d)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "team %s deleted: %d keys, %d sessions ended, %d audit events erased\n", d.TeamID, d.KeysDeleted, d.SessionsEnded, d.EventsErased)
			return nil
		}),
	}
	cmd.Flags().BoolVar(&erase, "erase", false, "also blank personal data (source addresses, user agents, user names) in the team's audit events")
	cmd.Flags().BoolVar(&yes, "yes", false, "confirm the deletion")
	return cmd
}
