package main

import (
	"fmt"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/keygate/keygate/config"
	"github.com/keygate/keygate/store/bolt"
)

// storeCommand is `keygate store`: tools for the embedded store's file.
func storeCommand(e env) *cobra.Command {
	cmd := &cobra.Command{Use: "store", Short: "Check the embedded store's file"}
	dataDir := config.Default().DataDir
	cmd.AddCommand(storeBackupCommand(e))
	check := &cobra.Command{
		Use:   "check",
		Short: "Check every page of <data-dir>/keygate.db (read-only)",
		Long: `Check every page of the embedded store's file, read-only: what serve's
start-up check does not (it reads only the meta pages, to stay fast).
Run it while keygate is stopped: a running serve holds the file's lock.
Exits non-zero, listing the problems, when the file is not sound.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			path := filepath.Join(dataDir, dbFileName)
			problems, err := bolt.Check(path, bolt.DefaultLockTimeout)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			for _, p := range problems {
				fmt.Fprintln(out, p)
			}
			if len(problems) > 0 {
				return fmt.Errorf("store file %s has %d problems: restore it from a backup", path, len(problems))
			}
			fmt.Fprintf(out, "store file %s is sound\n", path)
			return nil
		},
	}
	check.Flags().StringVar(&dataDir, "data-dir", dataDir, "the data directory holding keygate.db")
	cmd.AddCommand(check)
	cmd.AddCommand(storeExportCommand(e), storeImportCommand(e))
	return cmd
}
