package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/keygate/keygate/apikey"
	"github.com/keygate/keygate/config"
	"github.com/keygate/keygate/store/bolt"
)

// seedOptions are seed's own flags; the store comes from the serve config.
type seedOptions struct {
	keys        int
	record      int
	out         string
	batch       int
	perTeam     int
	teamPrefix  string
	permissions []string
}

func seedCommand(e env) *cobra.Command {
	var o seedOptions
	cmd := &cobra.Command{
		Use:   "seed",
		Short: "Fill the store with many keys for benchmarks (bulk path, no API)",
		Long: `Fill the configured store with --keys keys through the store's bulk path:
thousands of keys per transaction (bbolt) or pipeline (Redis) instead of one
durable create each, so a million keys take seconds. Teams are filled
--keys-per-team at a time (bench-000001, bench-000002, …); team limits are
not applied. Secrets are hashed with the store's pepper, so a server on the
same store issues tokens for the keys.

The client IDs and secrets of --record keys, spread evenly over all of them,
are written to --out (mode 0600) as "client_id secret" lines, for a load
generator such as keygate bench.

The store and master key are found exactly as serve finds them: --config,
KEYGATE_* environment and flags (--store, --data-dir, --redis-url, …), and
KEYGATE_MASTER_KEY, KEYGATE_MASTER_KEY_FILE or the data dir's key file. A
bbolt store is locked by a running serve: stop it, seed, start it again. On
Redis, seed can run beside running servers.`,
		Example: `  keygate seed --keys 1000000 --record 10000 --out creds.txt`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			getenv := seedGetenv(e.getenv)
			cfg, err := config.LoadFor(cmd.Flags(), getenv, storeBackends.names())
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return seed(ctx, cfg, o, getenv, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	config.BindFlagsFor(cmd.Flags(), storeBackends.names())
	f := cmd.Flags()
	f.IntVar(&o.keys, "keys", 1000000, "how many keys to create")
	f.IntVar(&o.record, "record", 10000, "how many keys' credentials to write to --out (0: none)")
	f.StringVar(&o.out, "out", "", "file for the recorded credentials, one \"client_id secret\" per line (mode 0600)")
	f.IntVar(&o.batch, "batch", apikey.DefaultSeedBatch, "keys per store transaction or pipeline run")
	f.IntVar(&o.perTeam, "keys-per-team", apikey.DefaultSeedKeysPerTeam, "keys in each seeded team")
	f.StringVar(&o.teamPrefix, "team-prefix", apikey.DefaultSeedTeamPrefix, "start of every seeded team ID")
	f.StringSliceVar(&o.permissions, "permission", apikey.DefaultSeedPermissions, "permission of every seeded key (repeat or comma-separate)")
	return cmd
}

// seedIssuer stands in for an issuer nobody configured: seed signs no
// token, but the config refuses store redis without one, and a seed should
// not need serve's --issuer to run.
const seedIssuer = "http://keygate-seed.invalid"

// seedGetenv is getenv with seedIssuer for an unset KEYGATE_ISSUER.
func seedGetenv(getenv func(string) string) func(string) string {
	return func(name string) string {
		v := getenv(name)
		if name == "KEYGATE_ISSUER" && v == "" {
			return seedIssuer
		}
		return v
	}
}

func seed(ctx context.Context, cfg config.Config, o seedOptions, getenv func(string) string, stdout, stderr io.Writer) error {
	if o.record > 0 && o.out == "" {
		return errors.New("--out is required to record credentials (or pass --record 0)")
	}
	if o.record > o.keys {
		return fmt.Errorf("--record %d is more than --keys %d", o.record, o.keys)
	}
	// Create the output first, so that a bad path fails before a long seed
	// rather than after it; as a temporary file (0600) renamed into place
	// at the end, so that a failed seed leaves an earlier file as it was.
	var out *os.File
	if o.record > 0 {
		var err error
		if out, err = os.CreateTemp(filepath.Dir(o.out), "."+filepath.Base(o.out)+".*"); err != nil {
			return fmt.Errorf("credentials file: %w", err)
		}
		defer func() {
			out.Close()
			os.Remove(out.Name()) // fails harmlessly once renamed
		}()
		if err := out.Chmod(0o600); err != nil { // CreateTemp's mode, made explicit
			return fmt.Errorf("credentials file: %w", err)
		}
	}

	log := newLogger(cfg, stderr)
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return fmt.Errorf("create data dir: %w", err)
	}
	st, mk, err := storeBackends.open(ctx, cfg, getenv, log)
	if errors.Is(err, bolt.ErrLocked) {
		return fmt.Errorf("the store %s is in use, most likely by a running `keygate serve`: a bbolt file has one process at a time; stop the server, seed, then start it again (%w)",
			filepath.Join(cfg.DataDir, dbFileName), err)
	}
	if err != nil {
		return err
	}
	defer st.Close()

	progress := func(int) {}
	if f, ok := stderr.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		start := time.Now()
		progress = func(n int) {
			el := time.Since(start).Seconds()
			fmt.Fprintf(stderr, "\r  %d of %d keys (%.0f keys/s)", n, o.keys, float64(n)/max(el, 1e-9))
			if n == o.keys {
				fmt.Fprintln(stderr)
			}
		}
	}
	res, err := apikey.Seed(ctx, st, mk, apikey.SeedOptions{
		Keys:        o.keys,
		KeysPerTeam: o.perTeam,
		TeamPrefix:  o.teamPrefix,
		Permissions: o.permissions,
		Catalog:     cfg.Catalog,
		Record:      o.record,
		Batch:       o.batch,
		Progress:    progress,
	})
	if err != nil {
		if res.Keys > 0 {
			fmt.Fprintf(stderr, "keygate seed: %d keys were written before the failure; they stay in the store\n", res.Keys)
		}
		return err
	}

	if out != nil {
		w := bufio.NewWriter(out)
		for _, c := range res.Credentials {
			fmt.Fprintf(w, "%s %s\n", c.ClientID, c.ClientSecret)
		}
		if err := errors.Join(w.Flush(), out.Sync(), out.Close()); err != nil {
			return fmt.Errorf("write credentials %s: %w", o.out, err)
		}
		if err := os.Rename(out.Name(), o.out); err != nil {
			return fmt.Errorf("write credentials: %w", err)
		}
	}

	secs := res.Elapsed.Seconds()
	fmt.Fprintf(stdout, "seeded %d keys in %d teams (%s … %s) into the %s store in %s: %.0f keys/s\n",
		res.Keys, res.Teams, fmt.Sprintf("%s%06d", o.teamPrefix, 1), fmt.Sprintf("%s%06d", o.teamPrefix, res.Teams),
		cfg.Store, res.Elapsed.Round(time.Millisecond), float64(res.Keys)/max(secs, 1e-9))
	fmt.Fprintf(stdout, "status indices %d–%d\n", res.FirstStatusIndex, res.FirstStatusIndex+int64(res.Keys)-1)
	if out != nil {
		fmt.Fprintf(stdout, "credentials of %d keys (one in %d) in %s\n", len(res.Credentials), o.keys/o.record, o.out)
	}
	return nil
}
