package main

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/keygate/keygate/config"
	"github.com/keygate/keygate/masterkey"
	"github.com/keygate/keygate/store"
	"github.com/keygate/keygate/store/redis"
)

// redisOpenTimeout bounds connecting to Redis at start-up, so that an
// unreachable Redis fails the start in seconds instead of hanging it.
const redisOpenTimeout = 10 * time.Second

// backend is one store keygate can serve from.
type backend struct {
	// help says in a line what the backend is and what it needs, for
	// serve --help.
	help string
	// sharedMasterKey: several instances share the store, so the master key
	// must come from KEYGATE_MASTER_KEY or KEYGATE_MASTER_KEY_FILE (a key
	// file generated in one instance's data dir would not be the others').
	sharedMasterKey bool
	open            func(ctx context.Context, cfg config.Config, log *slog.Logger) (store.Store, error)
	// openWithKey, when set, replaces open and the master key's loading:
	// the embedded store decides from what its data directory holds
	// whether a master key may be generated (boltstart.go).
	openWithKey func(ctx context.Context, cfg config.Config, getenv func(string) string, log *slog.Logger) (store.Store, *masterkey.Key, error)
}

// backends maps the store setting's values to the stores they open.
type backends map[string]backend

// storeBackends are the stores `keygate serve` offers: the only place a
// store is added. The store setting accepts exactly these names.
var storeBackends = backends{
	config.StoreBolt: {
		help:        "embedded bbolt database in --data-dir, for one instance",
		openWithKey: openBolt,
	},
	config.StoreRedis: {
		help:            "Redis at --redis-url, shared by several instances; needs " + envMasterKey + " and --issuer",
		sharedMasterKey: true,
		open: func(ctx context.Context, cfg config.Config, log *slog.Logger) (store.Store, error) {
			redis.SetLogger(log)
			ctx, cancel := context.WithTimeout(ctx, redisOpenTimeout)
			defer cancel()
			return redis.Open(ctx, redis.Options{URL: cfg.RedisURL, Prefix: cfg.RedisPrefix, Timeout: cfg.StoreTimeout, KeyCache: cfg.RedisKeyCache, KeyCacheSize: cfg.RedisKeyCacheSize})
		},
	},
}

// names are the backends' names, sorted, as the store setting lists them.
func (b backends) names() []string {
	names := make([]string, 0, len(b))
	for name := range b {
		names = append(names, name)
	}
	slices.Sort(names)
	return names
}

// help lists the backends, one a line, for a command's long help.
func (b backends) help() string {
	var s strings.Builder
	for _, name := range b.names() {
		fmt.Fprintf(&s, "  %-6s %s", name, b[name].help)
		if name == config.DefaultStore {
			s.WriteString(" (the default)")
		}
		s.WriteByte('\n')
	}
	return s.String()
}

// open opens the store cfg names and the master key that goes with it.
// The master key is read first: without it the store's secrets cannot be
// read, so there is no point connecting to the store.
func (b backends) open(ctx context.Context, cfg config.Config, getenv func(string) string, log *slog.Logger) (store.Store, *masterkey.Key, error) {
	be, ok := b[cfg.Store]
	if !ok {
		return nil, nil, fmt.Errorf("unknown store %q: allowed values are %s", cfg.Store, strings.Join(b.names(), ", "))
	}
	if be.sharedMasterKey && !masterKeyConfigured(getenv) {
		return nil, nil, fmt.Errorf("%s (or %s, a file holding it) is required with store %s: every instance must use the same master key (generate one with `openssl rand -base64 32`)", envMasterKey, envMasterKeyFile, cfg.Store)
	}
	if be.openWithKey != nil {
		return be.openWithKey(ctx, cfg, getenv, log)
	}
	mk, err := loadMasterKey(cfg.DataDir, getenv, log)
	if err != nil {
		return nil, nil, err
	}
	st, err := be.open(ctx, cfg, log)
	if err != nil {
		return nil, nil, err
	}
	return st, mk, nil
}
