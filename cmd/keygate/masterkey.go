package main

// `keygate master-key rotate`: re-seal the store's secrets under a new
// master key (apikey.RotateMasterKey), on a stopped embedded store or on
// Redis while instances run. The procedure and its reasons are in
// README.md, "Rotating the master key".

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/keygate/keygate/apikey"
	"github.com/keygate/keygate/config"
	"github.com/keygate/keygate/masterkey"
	"github.com/keygate/keygate/store"
	"github.com/keygate/keygate/store/bolt"
)

// newKeySuffix names, beside <data_dir>/master.key, the new key of a
// rotation of the file-based master key until the rotation is done: a
// rotation interrupted after the re-seal is finished by running it again,
// which takes this key instead of generating another.
const newKeySuffix = ".new"

func masterKeyCommand(e env) *cobra.Command {
	cmd := &cobra.Command{Use: "master-key", Short: "Rotate the master key that seals the store's secrets"}
	rotate := &cobra.Command{
		Use:   "rotate",
		Short: "Re-seal the pepper and every signing key under a new master key",
		Long: `Re-seal the store's secrets — the pepper and every signing key — under the
new master key. Nothing else changes: the pepper is re-sealed, never
regenerated, so every API key's secret keeps working, and the signing keys
stay the same key pairs, so every token keeps verifying.

The store is found exactly as serve finds it (--config, KEYGATE_* environment
and flags: --store, --data-dir, --redis-url, …). The keys:

  KEYGATE_MASTER_KEY (or _FILE)           the new master key
  KEYGATE_MASTER_KEY_PREVIOUS (or _FILE)  the old one, the store's until now

On Redis, run it while the instances run, once every instance has been
restarted with both keys; then restart them with the new key alone. An
instance that still has only the old key is refused at its next start, and
cannot add a signing key meanwhile.

On the embedded store, stop serve first (the file has one process at a
time). With the master key in <data_dir>/master.key and neither variable set,
rotate generates the new key, re-seals, then replaces master.key with it;
if it is interrupted, run it again: it finishes with the same new key
(kept in master.key.new until then).

A key that does not open the store's secrets changes nothing.`,
		Example: `  KEYGATE_MASTER_KEY=$NEW KEYGATE_MASTER_KEY_PREVIOUS=$OLD keygate master-key rotate --data-dir /var/lib/keygate
  KEYGATE_MASTER_KEY=$NEW KEYGATE_MASTER_KEY_PREVIOUS=$OLD keygate master-key rotate --store redis --redis-url redis://redis:6379
  keygate master-key rotate --data-dir /var/lib/keygate   # key in /var/lib/keygate/master.key`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			// Like seed, rotate signs no token: Redis' required issuer
			// does not matter here (seedGetenv).
			getenv := seedGetenv(e.getenv)
			cfg, err := config.LoadFor(cmd.Flags(), getenv, storeBackends.names())
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return rotateMasterKey(ctx, cfg, getenv, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	config.BindFlagsFor(rotate.Flags(), storeBackends.names())
	cmd.AddCommand(rotate)
	return cmd
}

// rotateMasterKey is master-key rotate on the store cfg names.
func rotateMasterKey(ctx context.Context, cfg config.Config, getenv func(string) string, stdout, stderr io.Writer) error {
	log := newLogger(cfg, stderr)
	var (
		st      store.Store
		mk      *masterkey.Key
		keyFile *fileRotation
		err     error
	)
	if cfg.Store == config.StoreBolt {
		st, mk, keyFile, err = openBoltForRotation(cfg, getenv)
	} else {
		st, mk, err = storeBackends.open(ctx, cfg, getenv, log)
	}
	if err != nil {
		return err
	}
	defer st.Close()

	r, err := apikey.RotateMasterKey(ctx, st, mk)
	if err != nil {
		return rotationError(err, mk, keyFile)
	}
	if keyFile != nil {
		if err := keyFile.finish(); err != nil {
			return err
		}
	}
	from := "unversioned values, sealed before keygate recorded the key"
	if len(r.From) > 0 {
		from = "master key " + strings.Join(r.From, " and ")
	}
	fmt.Fprintf(stdout, "re-sealed the pepper and %d signing keys under master key %s (they were under %s)\n", r.SigningKeys, r.To, from)
	if keyFile != nil {
		fmt.Fprintf(stdout, "replaced %s with the new master key; backups of the store taken before now still need the old one\n", keyFile.path)
		return nil
	}
	fmt.Fprintf(stdout, "next: restart every instance with the new master key alone (drop %s); an instance given only the old one can no longer start; backups taken before now still need the old one\n", envMasterKeyPrevious)
	return nil
}

// rotationError says what a failed rotation means for the operator. A key
// that opens nothing fails before anything is written (RotateMasterKey).
func rotationError(err error, mk *masterkey.Key, keyFile *fileRotation) error {
	prevName := envMasterKeyPrevious
	if keyFile != nil {
		prevName = keyFile.oldPath
	}
	var unknown *masterkey.UnknownKeyError
	switch {
	case errors.As(err, &unknown):
		return fmt.Errorf("the store is sealed under master key %s, which is neither the new key (%s) nor the previous one (%s): %s must be the master key the store is sealed under; nothing was changed",
			unknown.SealedBy, mk.ID(), previousID(mk), prevName)
	case errors.Is(err, masterkey.ErrOpen):
		return fmt.Errorf("neither the new master key (%s) nor the previous one (%s) opens the store's secrets: %s must be the master key the store is sealed under; nothing was changed (%w)",
			mk.ID(), previousID(mk), prevName, err)
	}
	return fmt.Errorf("master-key rotation: %w", err)
}

func previousID(mk *masterkey.Key) string {
	if p := mk.Previous(); p != nil {
		return p.ID()
	}
	return "none given"
}

// openBoltForRotation opens the embedded store of cfg for a rotation:
// never creating a database or a key file for a store that is not there,
// and refusing a store a running serve holds. The keys come from the
// environment, or else from <data_dir>/master.key (fileRotation).
func openBoltForRotation(cfg config.Config, getenv func(string) string) (store.Store, *masterkey.Key, *fileRotation, error) {
	dbPath := filepath.Join(cfg.DataDir, dbFileName)
	contents, err := bolt.Inspect(dbPath, bolt.DefaultLockTimeout)
	switch {
	case errors.Is(err, bolt.ErrLocked):
		return nil, nil, nil, fmt.Errorf("store file %s is %w, most likely by a running `keygate serve`: stop it, rotate, then start it with the new master key", dbPath, bolt.ErrLocked)
	case err != nil:
		return nil, nil, nil, err
	case contents != bolt.HoldsData:
		return nil, nil, nil, fmt.Errorf("no store in %s (%s is missing or empty): nothing to re-seal", cfg.DataDir, dbPath)
	}
	var rot *fileRotation
	mk, err := masterKeyFromEnv(getenv)
	if err != nil {
		return nil, nil, nil, err
	}
	if mk == nil {
		if rot, err = startFileRotation(cfg.DataDir); err != nil {
			return nil, nil, nil, err
		}
		mk = rot.key
	}
	st, err := bolt.Open(dbPath)
	if err != nil {
		return nil, nil, nil, err
	}
	return st, mk, rot, nil
}

// fileRotation is the rotation of a master key kept in
// <data_dir>/master.key: the new key waits in master.key.new until the
// store is re-sealed, then replaces master.key in one rename.
type fileRotation struct {
	path, oldPath, newPath string
	key                    *masterkey.Key // the new key, with the old as previous
}

func startFileRotation(dataDir string) (*fileRotation, error) {
	path := filepath.Join(dataDir, masterkey.FileName)
	r := &fileRotation{path: path, oldPath: path, newPath: path + newKeySuffix}
	b, err := readMasterKeyFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("no master key: set %s to the new master key and %s to the old one (the store's), or keep the key in %s", envMasterKey, envMasterKeyPrevious, path)
	}
	if err != nil {
		return nil, err
	}
	old, err := masterkey.Parse(string(b))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	newKey, err := r.newKey()
	if err != nil {
		return nil, err
	}
	if newKey.ID() == old.ID() {
		return nil, fmt.Errorf("%s holds the same key as %s: remove %s and run the rotation again", r.newPath, path, r.newPath)
	}
	r.key = newKey.WithPrevious(old)
	return r, nil
}

// newKey reads master.key.new, left by an interrupted rotation, or writes
// a fresh key there (0600, durable before anything is sealed under it).
func (r *fileRotation) newKey() (*masterkey.Key, error) {
	if b, err := readMasterKeyFile(r.newPath); err == nil {
		k, err := masterkey.Parse(string(b))
		if err != nil {
			return nil, fmt.Errorf("%s (left by an interrupted rotation): %w", r.newPath, err)
		}
		return k, nil
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	encoded, err := masterkey.Generate()
	if err != nil {
		return nil, err
	}
	f, err := os.OpenFile(r.newPath, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, fmt.Errorf("write new master key: %w", err)
	}
	_, werr := f.WriteString(encoded + "\n")
	if err := errors.Join(werr, f.Sync(), f.Close()); err != nil {
		os.Remove(r.newPath)
		return nil, fmt.Errorf("write new master key %s: %w", r.newPath, err)
	}
	syncDir(filepath.Dir(r.newPath))
	return masterkey.Parse(encoded)
}

// finish makes the new key master.key: one rename, so master.key is
// always one whole key, the old until the rename and the new after it.
func (r *fileRotation) finish() error {
	if err := os.Rename(r.newPath, r.path); err != nil {
		return fmt.Errorf("the store is re-sealed under the new master key, but it could not replace %s: %w (move %s to %s by hand)", r.path, err, r.newPath, r.path)
	}
	syncDir(filepath.Dir(r.path))
	return nil
}

// syncDir makes a new name in dir durable (best effort, as for the first
// start's key file).
func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
}
