package main

// Start-up on the embedded store: what the data directory holds decides
// between a first start and a refusal, before anything is written to it.
// A first start creates keygate.db before it generates master.key, so a
// crash in between leaves a store without secrets (a first start again),
// never a key without its store.

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/keygate/keygate/config"
	"github.com/keygate/keygate/masterkey"
	"github.com/keygate/keygate/store"
	"github.com/keygate/keygate/store/bolt"
)

// openBolt opens <data_dir>/keygate.db and the master key that goes with
// it, refusing (with one line naming the file and what to do, having written
// nothing) a damaged or locked store file, a missing or empty one in a
// directory that held a store, a store whose master key is nowhere, and a
// master.key others can read.
func openBolt(_ context.Context, cfg config.Config, getenv func(string) string, log *slog.Logger) (store.Store, *masterkey.Key, error) {
	mk, err := masterKeyFromEnvLogged(getenv, log)
	if err != nil {
		return nil, nil, err
	}
	dbPath := filepath.Join(cfg.DataDir, dbFileName)
	keyPath := filepath.Join(cfg.DataDir, masterkey.FileName)
	contents, err := bolt.Inspect(dbPath, bolt.DefaultLockTimeout)
	switch {
	case errors.Is(err, bolt.ErrLocked):
		return nil, nil, fmt.Errorf("store file %s is %w: stop it, or give this one another --data-dir", dbPath, bolt.ErrLocked)
	case errors.Is(err, bolt.ErrDamaged):
		return nil, nil, fmt.Errorf("%w: restore it from a backup, or move it away to start an empty store; keygate has not changed it", err)
	case err != nil:
		return nil, nil, err
	}
	keyInfo, err := os.Stat(keyPath)
	keyExists := err == nil
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, nil, fmt.Errorf("master key file %s: %w", keyPath, err)
	}
	switch contents {
	case bolt.Missing, bolt.Empty:
		if sign := priorStoreSign(cfg.DataDir, keyExists); sign != "" {
			state := "missing"
			if contents == bolt.Empty {
				state = "empty"
			}
			return nil, nil, fmt.Errorf("store file %s is %s but %s is there, so this directory held a store: restore keygate.db from a backup; if no first start ever finished here, remove %s to start afresh",
				dbPath, state, sign, sign)
		}
	case bolt.HoldsData:
		if mk == nil && !keyExists {
			return nil, nil, fmt.Errorf("store file %s holds keys but no master key was found (not in %s, %s or %s): set the master key it was created with; keygate does not generate a new one, which could not read the stored secrets",
				dbPath, envMasterKey, envMasterKeyFile, keyPath)
		}
	}
	if mk == nil && keyExists && keyInfo.Mode().Perm()&0o077 != 0 {
		return nil, nil, fmt.Errorf("master key file %s is readable by group or others (mode %#o): run `chmod 600 %s`",
			keyPath, keyInfo.Mode().Perm(), keyPath)
	}
	opened := time.Now()
	st, err := bolt.Open(dbPath, bolt.Options{KeyCacheSize: cfg.BoltKeyCacheSize})
	if err != nil {
		return nil, nil, err
	}
	if st.RebuiltFreePages() {
		// The one start whose length grows with the store (store/bolt/bolt.go,
		// "The free-page list"): worth a line, so a slow start after a
		// crash is not mistaken for a hang.
		log.Warn("the store was not closed cleanly (a crash or a kill): its free pages were found by reading the whole file",
			"file", dbPath, "took", time.Since(opened).Round(time.Millisecond))
	}
	if mk == nil {
		if mk, err = generatedMasterKey(cfg.DataDir, log); err != nil {
			st.Close()
			return nil, nil, err
		}
	}
	return st, mk, nil
}

// priorStoreSign names a file that shows the data directory held a store
// (the generated master key, the first admin's credentials), or "".
func priorStoreSign(dataDir string, keyExists bool) string {
	if keyExists {
		return filepath.Join(dataDir, masterkey.FileName)
	}
	creds := filepath.Join(dataDir, adminCredentialsFile)
	if _, err := os.Stat(creds); err == nil {
		return creds
	}
	return ""
}
