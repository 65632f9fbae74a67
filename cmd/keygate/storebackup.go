package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/keygate/keygate/client"
	"github.com/keygate/keygate/masterkey"
	"github.com/keygate/keygate/store/bolt"
)

// storeBackupCommand is `keygate store backup FILE`: a copy of a running
// keygate's embedded store through the management API (GET
// /v1/store/backup, server/backup.go).
func storeBackupCommand(e env) *cobra.Command {
	f := keysFlags{getenv: e.getenv}
	var force bool
	cmd := &cobra.Command{
		Use:   "backup FILE",
		Short: "Copy a running keygate's embedded store to FILE",
		Long: `Copy a running keygate's embedded store (keygate.db) to FILE, through its
management API: a consistent copy as of one moment, taken while keygate
serves. FILE is written with mode 0600, whole or not at all (a temporary
file beside it, synced, then renamed), and checked page by page before it
takes FILE's name. An existing FILE is kept unless --force.

The copy holds every key's secret hashes and the pepper and signing keys
sealed with the master key, not the master key itself: keep the master key
apart from the copy. To restore, stop keygate, copy FILE to
<data_dir>/keygate.db and start keygate with the same master key
(KEYGATE_MASTER_KEY, KEYGATE_MASTER_KEY_FILE or <data_dir>/master.key).

A keygate on Redis answers that its store has no online backup: back Redis
up with its own tools (README, "Backup and restore").

Credentials and --url as for keygate keys (see keygate keys --help); the
admin key's token is needed.`,
		Args: oneArg("FILE", "where to write the copy"),
		RunE: f.command(func(cmd *cobra.Command, c *client.Client, args []string) error {
			return writeBackup(cmd, c, args[0], force, f.json)
		}),
	}
	f.bindFlags(cmd.Flags())
	cmd.Flags().BoolVar(&force, "force", false, "replace FILE if it exists")
	return cmd
}

// writeBackup writes the backup to path atomically: a temporary file in
// path's directory (so the rename cannot cross file systems), synced and
// checked, then given path's name, and the directory synced so the name
// survives a crash. Without force an existing path is never replaced, even
// one created while the copy was downloading.
func writeBackup(cmd *cobra.Command, c *client.Client, path string, force, asJSON bool) (err error) {
	if !force {
		if _, err := os.Lstat(path); err == nil {
			return fmt.Errorf("%s exists: keygate leaves it as it is; pass --force to replace it, or name another file", path)
		} else if !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("backup file %s: %w", path, err)
		}
	}
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*") // mode 0600
	if err != nil {
		return fmt.Errorf("backup file: %w", err)
	}
	defer func() {
		tmp.Close()
		os.Remove(tmp.Name()) // gone already once it has path's name
	}()
	if err := tmp.Chmod(0o600); err != nil {
		return fmt.Errorf("backup file: %w", err)
	}
	size, err := c.Backup(cmd.Context(), tmp)
	if err != nil {
		return err
	}
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("backup file %s: %w", tmp.Name(), err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("backup file %s: %w", tmp.Name(), err)
	}
	problems, err := bolt.Check(tmp.Name(), bolt.DefaultLockTimeout)
	if err == nil && len(problems) > 0 {
		err = errors.Join(problems...)
	}
	if err != nil {
		return fmt.Errorf("the copy keygate sent is not a sound store file; %s was not written: %w", path, err)
	}
	if force {
		err = os.Rename(tmp.Name(), path)
	} else if err = os.Link(tmp.Name(), path); errors.Is(err, fs.ErrExist) {
		// A hard link, unlike a rename, refuses an existing name.
		return fmt.Errorf("%s appeared while the copy was downloading: keygate leaves it as it is; pass --force to replace it", path)
	}
	if err != nil {
		return fmt.Errorf("backup file %s: %w", path, err)
	}
	if d, err := os.Open(dir); err == nil {
		err = d.Sync()
		d.Close()
		if err != nil {
			return fmt.Errorf("backup file %s: sync its directory: %w", path, err)
		}
	}
	if asJSON {
		return writeJSON(cmd.OutOrStdout(), map[string]any{"file": path, "bytes": size})
	}
	out := cmd.OutOrStdout()
	fmt.Fprintf(out, "wrote %s: %d bytes (%s), mode 0600\n", path, size, humanBytes(size))
	fmt.Fprintf(out, "to restore: stop keygate, copy %s to <data_dir>/%s and start keygate with the master key it was sealed with (%s, %s or <data_dir>/%s); the copy does not hold it\n",
		path, dbFileName, envMasterKey, envMasterKeyFile, masterkey.FileName)
	return nil
}

// humanBytes is n in the largest binary unit that keeps it ≥ 1.
func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
