package apikey

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"time"

	"github.com/keygate/keygate/credential"
	"github.com/keygate/keygate/scopes"
	"github.com/keygate/keygate/store"
)

// Defaults of SeedOptions.
const (
	DefaultSeedKeysPerTeam = 5
	DefaultSeedBatch       = 20000
	DefaultSeedTeamPrefix  = "bench-"
)

// DefaultSeedPermissions is what seeded keys hold unless told otherwise.
var DefaultSeedPermissions = []string{"accounting_api"}

// SeedOptions configures Seed.
type SeedOptions struct {
	// Keys is how many keys to create (≥ 1).
	Keys int
	// KeysPerTeam fills teams one after another: keys 1–5 in team
	// TeamPrefix+"000001", and so on. Default DefaultSeedKeysPerTeam (the
	// default team limit, so seeded teams look like real, full ones).
	KeysPerTeam int
	// TeamPrefix starts every team ID; default DefaultSeedTeamPrefix. Seeding
	// the same store twice with one prefix puts more keys than KeysPerTeam
	// into the same teams (the bulk path ignores team limits).
	TeamPrefix string
	// Permissions of every key; default DefaultSeedPermissions.
	Permissions []string
	// Catalog, when set, is checked to hold Permissions (operator-only ones
	// included: seeding is an operator's act), so that a later server start
	// does not refuse the store.
	Catalog *scopes.Catalog
	// Record is how many keys' credentials to return (0 ≤ Record ≤ Keys),
	// spread evenly over all the keys (every Keys/Record-th key), so a load
	// generator using them touches the whole store, not its first pages.
	Record int
	// Batch is how many keys go to the store per CreateKeys call; default
	// DefaultSeedBatch. On bbolt a call is one transaction held in memory.
	Batch int
	// Progress, when set, is called after each batch is written with the
	// number of keys written so far. It runs on Seed's goroutine.
	Progress func(written int)
	// Now stamps CreatedAt; default time.Now.
	Now func() time.Time
}

// SeedCredential is one seeded key's client ID and secret.
type SeedCredential struct {
	ClientID     string `json:"client_id"`
	ClientSecret string `json:"client_secret"`
}

// SeedResult is what Seed did.
type SeedResult struct {
	Keys  int
	Teams int
	// FirstStatusIndex is the status index of the first key; the others
	// follow it, one each.
	FirstStatusIndex int64
	// Credentials are Record keys' secrets, in key order.
	Credentials []SeedCredential
	// Elapsed is the wall time of the whole seed, pepper included.
	Elapsed time.Duration
}

// Seed fills st with opts.Keys keys for benchmarks and load tests, through
// the store's bulk path (store.BulkLoader) rather than one durable create
// per key: a million keys take seconds, not hours. Keys are real: their
// secrets are hashed with the store's pepper (loaded, or created on a fresh
// store, exactly as a server start does, so mk must be the master key the
// servers use), each has its own status index, and a server started on st
// issues tokens for them. Team limits are not applied.
//
// Secrets are generated and hashed on GOMAXPROCS goroutines, one batch
// ahead of the store writes. On failure, what is written depends on the
// backend (bbolt: whole batches; Redis: see its CreateKeys); the result
// then says how many keys were written in full batches.
func Seed(ctx context.Context, st store.Store, mk *MasterKey, opts SeedOptions) (SeedResult, error) {
	start := time.Now()
	bulk, ok := st.(store.BulkLoader)
	if !ok {
		return SeedResult{}, fmt.Errorf("seed: the %T store has no bulk path (store.BulkLoader)", st)
	}
	if mk == nil {
		return SeedResult{}, errors.New("seed: a master key is required")
	}
	if opts.KeysPerTeam == 0 {
		opts.KeysPerTeam = DefaultSeedKeysPerTeam
	}
	if opts.TeamPrefix == "" {
		opts.TeamPrefix = DefaultSeedTeamPrefix
	}
	if opts.Permissions == nil {
		opts.Permissions = DefaultSeedPermissions
	}
	if opts.Batch == 0 {
		opts.Batch = DefaultSeedBatch
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	switch {
	case opts.Keys < 1:
		return SeedResult{}, fmt.Errorf("seed: %d keys: want at least 1", opts.Keys)
	case opts.Record < 0 || opts.Record > opts.Keys:
		return SeedResult{}, fmt.Errorf("seed: cannot record %d of %d keys", opts.Record, opts.Keys)
	case opts.KeysPerTeam < 1:
		return SeedResult{}, fmt.Errorf("seed: %d keys per team: want at least 1", opts.KeysPerTeam)
	case opts.Batch < 1:
		return SeedResult{}, fmt.Errorf("seed: batch of %d: want at least 1", opts.Batch)
	}
	teams := (opts.Keys + opts.KeysPerTeam - 1) / opts.KeysPerTeam
	if last := seedTeamID(opts.TeamPrefix, teams); !ValidTeamID(last) || !ValidTeamID(seedTeamID(opts.TeamPrefix, 1)) {
		return SeedResult{}, fmt.Errorf("seed: team IDs like %q are not valid team IDs", last)
	}
	if opts.Catalog != nil {
		if err := opts.Catalog.ValidateIDs(opts.Permissions, true); err != nil {
			return SeedResult{}, fmt.Errorf("seed: %w", err)
		}
	}
	perms := append([]string{}, opts.Permissions...)

	// A store without a pepper holds no key: when this seed writes every
	// key there is, each checked against opts.Catalog, the first start
	// need not walk them again (keycheck.go); and none of them has a
	// secret generation to end, so the status schedule is complete
	// (statusschedule.go).
	fresh, err := singletonAbsent(ctx, st, pepperName)
	if err != nil {
		return SeedResult{}, fmt.Errorf("seed: %w", err)
	}
	hasher, err := loadPepper(ctx, st, mk)
	if err != nil {
		return SeedResult{}, fmt.Errorf("seed: %w", err)
	}
	// One counter step for the whole seed; indices of keys a failed seed
	// never writes are burned, as the contract allows.
	first, err := bulk.NextStatusIndices(ctx, opts.Keys)
	if err != nil {
		return SeedResult{}, fmt.Errorf("seed: %w", err)
	}

	res := SeedResult{Teams: teams, FirstStatusIndex: first}
	step := 1
	if opts.Record > 0 {
		step = opts.Keys / opts.Record
		res.Credentials = make([]SeedCredential, opts.Record)
	}
	created := opts.Now().UTC()

	// gctx stops the generator when the writer fails.
	gctx, stop := context.WithCancel(ctx)
	defer stop()

	// gen builds keys [lo, hi) on GOMAXPROCS goroutines. Each worker
	// writes only its own slice elements and credential slots.
	gen := func(lo, hi int) ([]store.Key, error) {
		keys := make([]store.Key, hi-lo)
		workers := min(runtime.GOMAXPROCS(0), (hi-lo+255)/256)
		per := (hi - lo + workers - 1) / workers
		errs := make([]error, workers)
		var wg sync.WaitGroup
		for w := range workers {
			wg.Go(func() {
				for i := lo + w*per; i < min(lo+(w+1)*per, hi); i++ {
					if (i-lo)%1024 == 0 && gctx.Err() != nil {
						errs[w] = gctx.Err()
						return
					}
					team := seedTeamID(opts.TeamPrefix, i/opts.KeysPerTeam+1)
					id, err := credential.NewClientID(team)
					if err != nil {
						errs[w] = err
						return
					}
					secret, err := credential.NewSecret()
					if err != nil {
						errs[w] = err
						return
					}
					keys[i-lo] = store.Key{
						ClientID:    id,
						TeamID:      team,
						Name:        fmt.Sprintf("seed %d", i+1),
						Permissions: perms, // shared: stores encode it, none keeps it
						CreatedAt:   created,
						SecretHash:  hasher.Hash(secret),
						StatusIndex: first + int64(i),
					}
					if opts.Record > 0 && i%step == 0 && i/step < opts.Record {
						res.Credentials[i/step] = SeedCredential{ClientID: id, ClientSecret: secret}
					}
				}
			})
		}
		wg.Wait()
		return keys, errors.Join(errs...)
	}

	// The generator runs one batch ahead of the writer, so hashing and the
	// store's work (an fsync, or Redis round trips) overlap.
	type batch struct {
		keys []store.Key
		err  error
	}
	batches := make(chan batch, 1)
	var genDone sync.WaitGroup
	genDone.Go(func() {
		defer close(batches)
		for lo := 0; lo < opts.Keys; lo += opts.Batch {
			keys, err := gen(lo, min(lo+opts.Batch, opts.Keys))
			select {
			case batches <- batch{keys, err}:
			case <-gctx.Done():
				return
			}
			if err != nil {
				return
			}
		}
	})
	// Stop and wait for the generator before returning: it writes into
	// res.Credentials.
	defer genDone.Wait()
	defer stop()

	for b := range batches {
		if b.err == nil {
			b.err = bulk.CreateKeys(ctx, b.keys)
		}
		if b.err != nil {
			stop()
			genDone.Wait()
			res.Credentials = nil
			res.Elapsed = time.Since(start)
			return res, fmt.Errorf("seed: after %d of %d keys: %w", res.Keys, opts.Keys, b.err)
		}
		res.Keys += len(b.keys)
		if opts.Progress != nil {
			opts.Progress(res.Keys)
		}
	}
	if err := ctx.Err(); err != nil { // the generator stopped early
		res.Credentials = nil
		res.Elapsed = time.Since(start)
		return res, fmt.Errorf("seed: after %d of %d keys: %w", res.Keys, opts.Keys, err)
	}
	res.Elapsed = time.Since(start)
	if fresh && opts.Catalog != nil {
		if err := markChecked(ctx, st, catalogFingerprint(opts.Catalog)); err != nil {
			return res, fmt.Errorf("seed: all %d keys written; recording them as checked (the first start walks them instead): %w", res.Keys, err)
		}
	}
	if fresh {
		if err := markScheduleComplete(ctx, st); err != nil {
			return res, fmt.Errorf("seed: all %d keys written; recording the status schedule as complete (the first start walks them instead): %w", res.Keys, err)
		}
	}
	return res, nil
}

func seedTeamID(prefix string, n int) string { return fmt.Sprintf("%s%06d", prefix, n) }
