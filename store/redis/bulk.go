package redis

import (
	"context"
	"fmt"

	goredis "github.com/redis/go-redis/v9"

	"github.com/keygate/keygate/store"
)

var _ store.BulkLoader = (*Store)(nil)

// bulkChunk is how many commands CreateKeys sends per pipeline: large
// enough that round trips stop mattering, small enough that one chunk stays
// far inside the store's per-call timeout and Redis is never busy with one
// client's commands for long.
const bulkChunk = 1000

// CreateKeys implements store.BulkLoader. Redis has no transaction that
// spans a Cluster, so a call is not all-or-nothing; it runs in two passes,
// each pipelined in chunks of bulkChunk commands (every chunk bounded by the
// store's timeout):
//
//  1. Validation (tag rule, IDs given twice) before anything is sent, then
//     EXISTS for every key: if any ID is taken, the call fails with
//     ErrAlreadyExists and writes nothing.
//  2. The insert, with the same script as CreateKey minus the team limit
//     (the existence check, the write and the key caches' invalidation as
//     one atomic step per key), so an existing key is never overwritten even if
//     someone created it after pass 1. Such a late collision fails the call
//     with ErrAlreadyExists once the pass has finished: every other key of
//     the call is written.
//
// If Redis stops answering during pass 2 (ErrUnavailable) or the context
// ends, the chunks sent before are written, the chunk in flight may be in
// part, the rest is not. Each key on its own is all there or absent, never
// half written. Re-running the same call then fails in pass 1 on the keys
// already written; a seeding tool should start over on a fresh prefix (or
// delete the seeded keys) rather than resume.
//
// Durability is Redis's own, as for CreateKey (AOF with appendfsync always
// to survive a crash).
func (s *Store) CreateKeys(ctx context.Context, keys []store.Key) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("create keys: %w", err)
	}
	if len(keys) == 0 {
		return nil
	}
	if err := store.CheckBatch(keys); err != nil {
		return fmt.Errorf("create keys: %w", err)
	}
	type entry struct {
		keys []string
		args []any
	}
	entries := make([]entry, len(keys))
	for i, k := range keys {
		ks, args, err := s.createArgs(k, 0)
		if err != nil {
			return fmt.Errorf("create keys: key %s: %w", k.ClientID, err)
		}
		entries[i] = entry{keys: ks, args: args}
	}

	// Pass 1: refuse the whole call if any ID is taken.
	for start := 0; start < len(keys); start += bulkChunk {
		end := min(start+bulkChunk, len(keys))
		octx, cancel := s.op(ctx)
		cmds := make([]*goredis.IntCmd, 0, end-start)
		inBucket := make([]*goredis.BoolCmd, 0, end-start)
		_, err := s.rdb.Pipelined(octx, func(p goredis.Pipeliner) error {
			for _, k := range keys[start:end] {
				cmds = append(cmds, p.Exists(octx, s.keyKey(k.ClientID)))
				bucket, field := s.bucketOf(k.ClientID)
				inBucket = append(inBucket, p.HExists(octx, bucket, field))
			}
			return nil
		})
		cancel()
		if err != nil {
			return fail(ctx, "create keys: check for existing IDs (nothing written)", err)
		}
		for i, c := range cmds {
			if c.Val() != 0 || inBucket[i].Val() {
				return fmt.Errorf("create keys: key %s: %w (nothing written)", keys[start+i].ClientID, store.ErrAlreadyExists)
			}
		}
	}

	// The secret index before the keys (another slot: see secrets.go).
	for start := 0; start < len(keys); start += bulkChunk {
		end := min(start+bulkChunk, len(keys))
		octx, cancel := s.op(ctx)
		compact := s.writeCompact()
		_, err := s.rdb.Pipelined(octx, func(p goredis.Pipeliner) error {
			for _, k := range keys[start:end] {
				for _, h := range store.SecretHashes(k) {
					s.queueSecretEntry(octx, p, compact, h, k.ClientID)
				}
			}
			return nil
		})
		cancel()
		if err != nil {
			return fail(ctx, "create keys: secret index (no key written)", err)
		}
	}

	// The teams, before their keys are in their indexes (teamregistry.go):
	// a seed that fails after this leaves teams listed without keys, which
	// GET /v1/teams skips, never keys of a team it misses.
	teams := make([]string, 0, len(keys))
	for _, k := range keys {
		if len(teams) == 0 || teams[len(teams)-1] != k.TeamID {
			teams = append(teams, k.TeamID)
		}
	}
	for start := 0; start < len(teams); start += bulkChunk {
		if err := s.registerTeams(ctx, teams[start:min(start+bulkChunk, len(teams))]...); err != nil {
			return fmt.Errorf("create keys: team registry (no key written): %w", err)
		}
	}

	// Pass 2: insert. EVALSHA in a pipeline cannot fall back to EVAL, so the
	// script must be cached on every node first.
	if s.cache != nil {
		// This instance reads its own writes at once, messages or not.
		defer func() {
			for _, k := range keys {
				s.cache.created(k.ClientID)
			}
		}()
	}
	lctx, cancel := s.op(ctx)
	err := s.loadScript(lctx, createScript)
	cancel()
	if err != nil {
		return fail(ctx, "create keys: load script (nothing written)", err)
	}
	var late []string
	for start := 0; start < len(keys); start += bulkChunk {
		end := min(start+bulkChunk, len(keys))
		octx, cancel := s.op(ctx)
		cmds := make([]*goredis.Cmd, 0, end-start)
		_, err := s.rdb.Pipelined(octx, func(p goredis.Pipeliner) error {
			for _, e := range entries[start:end] {
				cmds = append(cmds, createScript.EvalSha(octx, p, e.keys, e.args...))
			}
			return nil
		})
		cancel()
		if err != nil {
			return fail(ctx, fmt.Sprintf("create keys: keys %d–%d of %d (those before are written, these may be in part)", start+1, end, len(keys)), err)
		}
		for i, c := range cmds {
			switch res, _ := c.Text(); res {
			case "ok":
			case "exists":
				late = append(late, keys[start+i].ClientID)
			default:
				return fmt.Errorf("create keys: key %s: unexpected script answer %q", keys[start+i].ClientID, res)
			}
		}
	}
	if len(late) > 0 {
		return fmt.Errorf("create keys: %d keys (first %s) were created by someone else meanwhile and left as they were, the other %d are written: %w",
			len(late), late[0], len(keys)-len(late), store.ErrAlreadyExists)
	}
	return nil
}

// NextStatusIndices implements store.BulkLoader with one INCRBY on the
// counter NextStatusIndex increments.
func (s *Store) NextStatusIndices(ctx context.Context, n int) (int64, error) {
	if n < 1 {
		return 0, fmt.Errorf("next status indices: %w: n = %d, want ≥ 1", store.ErrInvalid, n)
	}
	ctx, cancel := s.op(ctx)
	defer cancel()
	last, err := s.rdb.IncrBy(ctx, s.statusNextKey(), int64(n)).Result()
	if err != nil {
		return 0, fail(ctx, "next status indices", err)
	}
	return last - int64(n) + 1, nil
}
