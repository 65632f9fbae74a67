package main

// `keygate store export` and `keygate store import`: moving a whole store
// to another backend (package storeio has the format and the logic).

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/keygate/keygate/apikey"
	"github.com/keygate/keygate/config"
	"github.com/keygate/keygate/masterkey"
	"github.com/keygate/keygate/store"
	"github.com/keygate/keygate/store/bolt"
	"github.com/keygate/keygate/store/redis"
	"github.com/keygate/keygate/storeio"
)

// storeFlags are the settings that find a store, bound as serve binds
// them (same names, environment variables and config file keys).
var storeFlags = []string{config.ConfigFileFlag, "store", "data-dir", "redis-url", "redis-prefix", "store-timeout", "issuer"}

func bindStoreFlags(flags *pflag.FlagSet) {
	all := pflag.NewFlagSet("serve", pflag.ContinueOnError)
	config.BindFlagsFor(all, storeBackends.names())
	for _, name := range storeFlags {
		flags.AddFlag(all.Lookup(name))
	}
}

func storeExportCommand(e env) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "export",
		Short: "Write the whole store to stdout as a portable stream, to import into another backend",
		Long: `Write the whole store — keys with their secret hashes, the sealed pepper and
signing keys, the status list, the deny list, the audit trail and webhook
positions — to stdout as a versioned JSON Lines stream (docs/export.md), for
` + "`keygate store import`" + `.

The store is found as serve finds it (--store, --data-dir, --redis-url,
--redis-prefix, KEYGATE_* variables, --config) and only read: a missing
store file is an error, and neither a database nor a master key is ever
created. The master key (KEYGATE_MASTER_KEY, KEYGATE_MASTER_KEY_FILE or, for
the embedded store, <data-dir>/master.key) must open the store's secrets:
the target is started with the same one. Stop keygate first: the embedded
store's file is locked while serve runs, and on Redis a key changed during
the export may be missing from it.

Secrets stay sealed or hashed in the stream, but it is everything needed to
impersonate keygate with the master key: keep it as you keep backups.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := config.LoadFor(cmd.Flags(), e.getenv, storeBackends.names())
			if err != nil {
				return err
			}
			log := newLogger(cfg, cmd.ErrOrStderr())
			st, mk, where, err := openForExport(cmd.Context(), cfg, e.getenv)
			if err != nil {
				return err
			}
			defer st.Close()
			if err := checkStoreSecrets(cmd.Context(), st, mk); err != nil {
				return fmt.Errorf("export %s: %w", where, err)
			}
			sum, err := storeio.Export(cmd.Context(), cmd.OutOrStdout(), st, storeio.ExportOptions{Source: cfg.Store})
			if err != nil {
				return err
			}
			log.Info("exported the store", "from", where, "keys", sum.Keys, "revoked_status_bits", sum.RevokedBits,
				"status_indices", sum.StatusAllocated, "deny_entries", sum.Denied, "audit_events", sum.AuditEvents, "webhooks", sum.Webhooks)
			return nil
		},
	}
	bindStoreFlags(cmd.Flags())
	return cmd
}

func storeImportCommand(e env) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "import",
		Short: "Read a stream of `keygate store export` from stdin into an empty store",
		Long: `Read a stream written by ` + "`keygate store export`" + ` from stdin into an empty
store of any backend, found as serve finds it (--store, --data-dir,
--redis-url, --redis-prefix, KEYGATE_* variables, --config).

The master key must be set (KEYGATE_MASTER_KEY or KEYGATE_MASTER_KEY_FILE)
and be the exported store's: the whole stream is read and checked, and the
master key must open its pepper and signing keys, before the target is
opened. A truncated or corrupt stream, another format version, a wrong
master key, or a target that holds any key, pepper, signing key or status
index is refused with nothing written. Then start keygate on the target
with the same master key and issuer.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := config.LoadFor(cmd.Flags(), e.getenv, storeBackends.names())
			if err != nil {
				return err
			}
			log := newLogger(cfg, cmd.ErrOrStderr())
			mk, err := masterKeyFromEnv(e.getenv)
			if err != nil {
				return err
			}
			if mk == nil {
				return fmt.Errorf("%s (or %s) is required: set the master key of the exported store", envMasterKey, envMasterKeyFile)
			}
			stream, err := storeio.Check(cmd.InOrStdin(), storeio.ImportOptions{
				CheckSecrets: func(singletons map[string][]byte, keys store.SigningKeys) error {
					return apikey.CheckSealed(mk, singletons, keys, time.Now())
				},
			})
			if err != nil {
				return err
			}
			defer stream.Close()
			if cfg.Store == config.StoreBolt {
				if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
					return fmt.Errorf("create data dir: %w", err)
				}
			}
			st, _, err := storeBackends.open(cmd.Context(), cfg, e.getenv, log)
			if err != nil {
				return err
			}
			defer st.Close()
			sum, err := stream.Import(cmd.Context(), st)
			if err != nil {
				return err
			}
			log.Info("imported the store", "into", cfg.Store, "keys", sum.Keys, "revoked_status_bits", sum.RevokedBits,
				"status_indices", sum.StatusAllocated, "deny_entries", sum.Denied, "audit_events", sum.AuditEvents, "webhooks", sum.Webhooks)
			return nil
		},
	}
	bindStoreFlags(cmd.Flags())
	return cmd
}

// openForExport opens cfg's store read-only, with its master key, and
// says where it is (for messages). It creates nothing: not the data
// directory, not the database, not a master key.
func openForExport(ctx context.Context, cfg config.Config, getenv func(string) string) (store.Store, *masterkey.Key, string, error) {
	mk, err := masterKeyFromEnv(getenv)
	if err != nil {
		return nil, nil, "", err
	}
	switch cfg.Store {
	case config.StoreBolt:
		path := filepath.Join(cfg.DataDir, dbFileName)
		st, err := bolt.OpenReadOnly(path)
		if errors.Is(err, fs.ErrNotExist) {
			return nil, nil, "", fmt.Errorf("%w: nothing to export (is --data-dir the directory serve uses?)", err)
		}
		if errors.Is(err, bolt.ErrLocked) {
			return nil, nil, "", fmt.Errorf("%w: stop keygate before exporting", err)
		}
		if err != nil {
			return nil, nil, "", err
		}
		if mk == nil {
			keyPath := filepath.Join(cfg.DataDir, masterkey.FileName)
			b, rerr := readMasterKeyFile(keyPath)
			if rerr == nil {
				mk, rerr = masterkey.Parse(string(b))
			}
			if rerr != nil {
				st.Close()
				if errors.Is(rerr, fs.ErrNotExist) {
					return nil, nil, "", fmt.Errorf("no master key for %s (not in %s, %s or %s): set the master key the store was created with", path, envMasterKey, envMasterKeyFile, keyPath)
				}
				return nil, nil, "", fmt.Errorf("master key file %s: %w", keyPath, rerr)
			}
		}
		return st, mk, path, nil
	case config.StoreRedis:
		if mk == nil {
			return nil, nil, "", fmt.Errorf("%s (or %s, a file holding it) is required with store %s", envMasterKey, envMasterKeyFile, cfg.Store)
		}
		octx, cancel := context.WithTimeout(ctx, redisOpenTimeout)
		defer cancel()
		st, err := redis.Open(octx, redis.Options{URL: cfg.RedisURL, Prefix: cfg.RedisPrefix, Timeout: cfg.StoreTimeout, ReadOnly: true})
		if err != nil {
			return nil, nil, "", err
		}
		return st, mk, "redis prefix " + cfg.RedisPrefix, nil
	}
	return nil, nil, "", fmt.Errorf("store %q cannot be exported", cfg.Store)
}

// checkStoreSecrets refuses an export whose master key does not open the
// store's secrets: its stream could not be started anywhere.
func checkStoreSecrets(ctx context.Context, st store.Store, mk *masterkey.Key) error {
	ex, ok := st.(store.Exporter)
	if !ok {
		return storeio.ErrUnsupported
	}
	singletons, err := ex.Singletons(ctx)
	if err != nil {
		return err
	}
	keys, err := st.SigningKeys(ctx)
	if err != nil {
		return err
	}
	return apikey.CheckSealed(mk, singletons, keys, time.Now())
}
