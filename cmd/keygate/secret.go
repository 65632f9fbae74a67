package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/keygate/keygate/credential"
)

func secretCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "secret", Short: "Work with keygate secrets"}
	cmd.AddCommand(&cobra.Command{
		Use:   "generate",
		Short: "Print a new secret in keygate's format (e.g. for KEYGATE_ADMIN_CLIENT_SECRET)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			s, err := credential.NewSecret()
			if err != nil {
				return err
			}
			_, err = fmt.Fprintln(cmd.OutOrStdout(), s)
			return err
		},
	})
	return cmd
}
