package redis

// The online migration to the compact layout (compact.go), in two phases
// under the compatibility record (schema.go):
//
//  1. A keygate of this release reads both layouts and announces
//     FormatCompactKeys. Until every live instance does, it writes
//     the old layout, so a previous release running beside it reads every
//     key it writes.
//  2. Once every live instance reads the format, Check makes it writable
//     (and from then on refuses a keygate that does not read it): new keys,
//     updated keys and new secret index entries go compact. After a grace
//     of one heartbeat TTL, by which every live instance has seen the
//     format writable (an instance that has not checked for that long
//     counts as gone), the instance holding the lease moves the old
//     records in batches, at most DefaultMigrationBudget per Check (not
//     in the check Open runs: a start never waits for the walk), each key
//     with one script on its slot (its old hash, its old team index entry and
//     its bucket), each secret index entry written to its bucket before the
//     old one is dropped. A walk that finds nothing left to move marks the
//     migration done, and from their next Check on instances read only
//     the compact layout (one HMGET per token request without the cache).
//
//	P{kg}:keys:compact         string "done": nothing is left in the old layout
//	P{kg}:keys:compact:lease   string with expiry: the instance migrating
//	P{kg}:formats:since        hash: format → when it became writable (ms)

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/keygate/keygate/store"
)

func (s *Store) compactDoneKey() string  { return s.prefix + "{kg}:keys:compact" }
func (s *Store) compactLeaseKey() string { return s.prefix + "{kg}:keys:compact:lease" }
func (s *Store) formatsSinceKey() string { return s.prefix + "{kg}:formats:since" }

// DefaultMigrationBudget is how many records one Check moves at most: a
// million keys migrate in about 50 checks, a few minutes at CheckEvery.
const DefaultMigrationBudget = 20000

// moveKeyScript moves one key from the old layout to its bucket, unless its
// record changed since it was read (-1: the next walk takes it) or it is
// gone (0). Its last use is taken from the old hash as it is now. A
// record already in the bucket wins (the old one is dropped). KEYS: old
// hash, old team index, bucket. ARGV: the JSON record as read, field,
// client ID, n, the n chunks.
var moveKeyScript = goredis.NewScript(compactLua + `
local rec = redis.call('HGET', KEYS[1], 'rec')
if not rec then return 0 end
if rec ~= ARGV[1] then return -1 end
if redis.call('HEXISTS', KEYS[3], ARGV[2]) == 0 then
  local n = tonumber(ARGV[4])
  local fs, kv = kg_fields(ARGV[2], n), {}
  for i = 1, n do kv[2 * i - 1] = fs[i]; kv[2 * i] = ARGV[4 + i] end
  kv[2] = kg_setlu(kv[2], tonumber(redis.call('HGET', KEYS[1], 'lu') or '0'))
  redis.call('HSET', KEYS[3], unpack(kv))
end
redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[3])
return 1
`)

// CompactOnly reports whether this instance knows the migration to the
// compact layout is done, so it reads only that layout.
func (s *Store) CompactOnly() bool { return s.compactOnly.Load() }

// errBudget stops a walk that has used its budget.
var errBudget = errors.New("migration budget used")

// migrateCompact is Check's step of the migration; see the comment above.
// Without move it only learns whether the migration is done.
func (s *Store) migrateCompact(ctx context.Context, move bool) error {
	if s.compactOnly.Load() || !s.writeCompact() {
		return nil
	}
	c := s.schema()
	now := c.opts.Now()
	octx, cancel := s.op(ctx)
	done, err := s.rdb.Get(octx, s.compactDoneKey()).Result()
	var since int64
	if err == nil || errors.Is(err, goredis.Nil) {
		// A store whose format was recorded without its time counts from now.
		err = s.rdb.HSetNX(octx, s.formatsSinceKey(), string(FormatCompactKeys), now.UnixMilli()).Err()
	}
	if err == nil {
		var v string
		v, err = s.rdb.HGet(octx, s.formatsSinceKey(), string(FormatCompactKeys)).Result()
		since, _ = strconv.ParseInt(v, 10, 64)
	}
	cancel()
	if err != nil {
		return fail(octx, "migrate to the compact layout", err)
	}
	if done == "done" {
		s.compactOnly.Store(true)
		return nil
	}
	if !move || now.Sub(time.UnixMilli(since)) < c.opts.HeartbeatTTL {
		return nil // (or instances may still write the old layout)
	}
	release, err := s.takeLease(ctx, s.compactLeaseKey())
	if err != nil || release == nil {
		return err
	}
	defer release()
	budget := c.budget
	if budget <= 0 {
		budget = DefaultMigrationBudget
	}
	keys, err := s.moveOldKeys(ctx, budget)
	if err != nil && !errors.Is(err, errBudget) {
		return fmt.Errorf("migrate to the compact layout: %w", err)
	}
	secrets, err := s.moveOldSecrets(ctx, budget-keys)
	if err != nil && !errors.Is(err, errBudget) {
		return fmt.Errorf("migrate to the compact layout: %w", err)
	}
	c.mu.Lock()
	c.moved += keys + secrets
	c.mu.Unlock()
	if keys+secrets > 0 {
		return nil // the next walk tells whether anything is left
	}
	octx, cancel = s.op(ctx)
	defer cancel()
	if err := s.rdb.Set(octx, s.compactDoneKey(), "done", 0).Err(); err != nil {
		return fail(octx, "migrate to the compact layout: mark done", err)
	}
	s.compactOnly.Store(true)
	return nil
}

// moveOldKeys moves up to budget old-layout keys; it reports how many
// records it found to move (moved, changed meanwhile or gone).
func (s *Store) moveOldKeys(ctx context.Context, budget int) (int, error) {
	if budget <= 0 {
		return 0, errBudget
	}
	lctx, cancel := s.op(ctx)
	err := s.loadScript(lctx, moveKeyScript)
	cancel()
	if err != nil {
		return 0, fail(ctx, "load script", err)
	}
	found := 0
	err = s.scanKind(ctx, "key", "", func(ids []string) error {
		for len(ids) > 0 {
			batch := ids[:min(200, len(ids), budget-found)]
			ids = ids[len(batch):]
			if err := s.moveKeys(ctx, batch); err != nil {
				return err
			}
			if found += len(batch); found >= budget {
				return errBudget
			}
		}
		return nil
	})
	return found, err
}

// moveKeys moves a batch of old-layout keys, one pipeline to read them and
// one of moveScripts.
func (s *Store) moveKeys(ctx context.Context, ids []string) error {
	octx, cancel := s.op(ctx)
	defer cancel()
	reads := make([]*goredis.SliceCmd, len(ids))
	_, err := s.rdb.Pipelined(octx, func(p goredis.Pipeliner) error {
		for i, id := range ids {
			reads[i] = p.HMGet(octx, s.keyKey(id), "rec", "team", "lu")
		}
		return nil
	})
	if err != nil {
		return fail(octx, "read old keys", err)
	}
	_, err = s.rdb.Pipelined(octx, func(p goredis.Pipeliner) error {
		for i, id := range ids {
			vals := reads[i].Val()
			k, err := decodeKey(id, vals)
			if errors.Is(err, store.ErrNotFound) {
				continue
			}
			if err != nil {
				return err
			}
			chunks, err := encodeCompact(k)
			if err != nil {
				return err
			}
			bucket, field := s.bucketOf(id)
			args := []any{vals[0], field, id, len(chunks)}
			for _, c := range chunks {
				args = append(args, c)
			}
			moveKeyScript.EvalSha(octx, p, []string{s.keyKey(id), s.teamKey(k.TeamID), bucket}, args...)
		}
		return nil
	})
	if err != nil {
		return fail(octx, "move keys", err)
	}
	return nil
}

// moveOldSecrets moves up to budget old secret index entries to their
// buckets; it reports how many it found.
func (s *Store) moveOldSecrets(ctx context.Context, budget int) (int, error) {
	if budget <= 0 {
		return 0, errBudget
	}
	head := s.prefix + "secret:"
	found := 0
	err := s.scanPages(ctx, globEscape(head)+"*", func(names []string) error {
		var hashes [][]byte
		for _, n := range names {
			if h, err := hexHash(strings.TrimPrefix(n, head)); err == nil {
				hashes = append(hashes, h)
			}
		}
		for len(hashes) > 0 {
			batch := hashes[:min(200, len(hashes), budget-found)]
			hashes = hashes[len(batch):]
			if err := s.moveSecrets(ctx, batch); err != nil {
				return err
			}
			if found += len(batch); found >= budget {
				return errBudget
			}
		}
		return nil
	})
	return found, err
}

// moveSecrets writes the bucket entries of old ones, then drops the old
// ones that still name the same key (secrets.go's order: an entry is
// written before the old one goes).
func (s *Store) moveSecrets(ctx context.Context, hashes [][]byte) error {
	octx, cancel := s.op(ctx)
	defer cancel()
	ids := make([]*goredis.StringCmd, len(hashes))
	_, err := s.rdb.Pipelined(octx, func(p goredis.Pipeliner) error {
		for i, h := range hashes {
			ids[i] = p.Get(octx, s.secretKey(h))
		}
		return nil
	})
	if err != nil && !errors.Is(err, goredis.Nil) {
		return fail(octx, "read old secret index", err)
	}
	_, err = s.rdb.Pipelined(octx, func(p goredis.Pipeliner) error {
		for i, h := range hashes {
			if id, err := ids[i].Result(); err == nil {
				s.queueSecretEntry(octx, p, true, h, id)
			}
		}
		return nil
	})
	if err != nil {
		return fail(octx, "write secret index buckets", err)
	}
	if err := s.loadScript(octx, dropSecretScript); err != nil {
		return fail(octx, "load script", err)
	}
	_, err = s.rdb.Pipelined(octx, func(p goredis.Pipeliner) error {
		for i, h := range hashes {
			if id, err := ids[i].Result(); err == nil {
				dropSecretScript.EvalSha(octx, p, []string{s.secretKey(h)}, id)
			}
		}
		return nil
	})
	if err != nil {
		return fail(octx, "drop old secret index entries", err)
	}
	return nil
}

// hexHash is the secret hash an old index entry's name holds.
func hexHash(s string) ([]byte, error) {
	if len(s) != 2*32 {
		return nil, store.ErrBadRecord
	}
	return hex.DecodeString(s)
}
