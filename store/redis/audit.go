package redis

// The audit trail on Redis.
//
// A team's trail is a sorted set in the team's slot, so the script that
// changes a key writes its event in the same atomic step, even on Cluster.
// Its scores are sequence numbers from a counter of the slot, INCR'd by
// that same script: a cursor is never a clock reading, so a reader paging
// with it never skips an event committed later with an earlier time.
//
// The operator-wide stream cannot be written by those scripts (it lives in
// one slot, the teams in all of them). Each script also adds its event to
// an outbox of its slot; MoveAudit walks the slots' outboxes (16 384 on
// Cluster, one otherwise — a fixed number, however many teams there are),
// appends what it finds to the stream under a global counter, and only
// then drops it from the outbox. The stream records per slot the highest
// slot sequence it holds, so a mover that dies half-way, or two instances
// moving at once, add nothing twice.
//
// Retention: each slot also keeps its teams with audit events, scored by
// the time of their oldest one, so PruneAudit visits only teams with
// events to drop instead of SCANning the keyspace.

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/keygate/keygate/credential"
	"github.com/keygate/keygate/store"
)

const clusterSlots = 16384

// auditLua appends one event: KEYS[k..k+3] are trail, slot counter, slot
// outbox, slot team index; ARGV[a..a+2] the record, the team ID and the
// event time (unix ms). Scripts that change a key include it.
const auditLua = `
local function audit(k, a)
  local seq = redis.call('INCR', KEYS[k+1])
  redis.call('ZADD', KEYS[k], seq, ARGV[a])
  redis.call('ZADD', KEYS[k+2], seq, ARGV[a])
  redis.call('ZADD', KEYS[k+3], 'NX', ARGV[a+2], ARGV[a+1])
  return seq
end
`

var appendAuditScript = goredis.NewScript(auditLua + `return audit(1, 1)`)

// auditKeys and auditArgs are auditLua's KEYS and ARGV for ev.
func (s *Store) auditKeys(teamID string) []string {
	slot := s.slotTag(credential.TeamTag(teamID))
	return []string{s.auditTrailKey(teamID), s.auditSeqKey(slot), s.auditOutboxKey(slot), s.auditTeamsKey(slot)}
}

func auditArgs(ev store.AuditEvent) ([]any, error) {
	rec, err := store.EncodeAuditEvent(ev)
	if err != nil {
		return nil, err
	}
	return []any{string(rec), ev.TeamID, ev.Time.UnixMilli()}, nil
}

// AppendAudit implements store.Store.
func (s *Store) AppendAudit(ctx context.Context, ev store.AuditEvent) error {
	if err := store.CheckAuditEvent(ev, nil, nil); err != nil {
		return fmt.Errorf("append audit event: %w", err)
	}
	args, err := auditArgs(ev)
	if err != nil {
		return err
	}
	ctx, cancel := s.op(ctx)
	defer cancel()
	if err := appendAuditScript.Run(ctx, s.rdb, s.auditKeys(ev.TeamID), args...).Err(); err != nil {
		return fail(ctx, "append audit event "+ev.ID, err)
	}
	return nil
}

// auditReadBatch is how many events one read command fetches.
const auditReadBatch = 500

// AuditEvents implements store.Store: the team's trail, newest first.
func (s *Store) AuditEvents(ctx context.Context, teamID string, q store.AuditQuery) (store.AuditPage, error) {
	q.TeamID, q.HasTeam = teamID, true
	page, err := s.readAudit(ctx, s.auditTrailKey(teamID), q)
	if err != nil {
		return store.AuditPage{}, fail(ctx, "audit events of team "+teamID, err)
	}
	return page, nil
}

// AllAuditEvents implements store.Store: the stream MoveAudit feeds.
func (s *Store) AllAuditEvents(ctx context.Context, q store.AuditQuery) (store.AuditPage, error) {
	page, err := s.readAudit(ctx, s.auditAllKey(), q)
	if err != nil {
		return store.AuditPage{}, fail(ctx, "audit events", err)
	}
	return page, nil
}

// readAudit pages through one sorted set of events newest first, each
// command starting below the last score seen (not at an offset, which a
// concurrent prune would shift).
func (s *Store) readAudit(ctx context.Context, name string, q store.AuditQuery) (store.AuditPage, error) {
	p, err := store.NewAuditPager(q)
	if err != nil {
		return store.AuditPage{}, err
	}
	ctx, cancel := s.op(ctx)
	defer cancel()
	max := "+inf"
	if q.After > 0 {
		max = "(" + strconv.FormatInt(q.After, 10)
	}
	min := "-inf"
	if q.NewerThan > 0 {
		min = "(" + strconv.FormatInt(q.NewerThan, 10)
	}
	for {
		zs, err := s.rdb.ZRevRangeByScoreWithScores(ctx, name, &goredis.ZRangeBy{Max: max, Min: min, Count: auditReadBatch}).Result()
		if err != nil {
			return store.AuditPage{}, err
		}
		for _, z := range zs {
			seq := int64(z.Score)
			ev, err := store.DecodeAuditEvent([]byte(z.Member.(string)), seq)
			if err != nil {
				return store.AuditPage{}, err
			}
			if !p.Offer(ev) {
				return p.Page(), nil
			}
			max = "(" + strconv.FormatInt(seq, 10)
		}
		if len(zs) < auditReadBatch {
			return p.Page(), nil
		}
	}
}

// moveBatch is how many events of one outbox one move step takes.
const moveBatch = 200

// moveScript appends an outbox's events to the stream, skipping those it
// already holds. KEYS: stream, global counter, moved (slot → highest slot
// sequence moved). ARGV: the slot's tag, then slot sequence and record
// pairs in ascending order. Returns the highest slot sequence moved.
var moveScript = goredis.NewScript(`
local last = tonumber(redis.call('HGET', KEYS[3], ARGV[1]) or '0')
for i = 2, #ARGV, 2 do
  local seq = tonumber(ARGV[i])
  if seq > last then
    local g = redis.call('INCR', KEYS[2])
    redis.call('ZADD', KEYS[1], g, ARGV[i+1])
    last = seq
  end
end
redis.call('HSET', KEYS[3], ARGV[1], last)
return last
`)

// MoveAudit implements store.Store: every slot's outbox is read in one
// pipeline; each non-empty one is moved in batches.
func (s *Store) MoveAudit(ctx context.Context) (int, error) {
	slots := s.auditSlots()
	octx, cancel := context.WithTimeout(ctx, 10*s.timeout)
	defer cancel()
	cmds := make([]*goredis.ZSliceCmd, len(slots))
	_, err := s.rdb.Pipelined(octx, func(p goredis.Pipeliner) error {
		for i, slot := range slots {
			cmds[i] = p.ZRangeWithScores(octx, s.auditOutboxKey(slot), 0, moveBatch-1)
		}
		return nil
	})
	if err != nil {
		return 0, fail(octx, "move audit events: read outboxes", err)
	}
	moved := 0
	for i, slot := range slots {
		zs := cmds[i].Val()
		for len(zs) > 0 {
			n, err := s.moveOutbox(ctx, slot, zs)
			moved += n
			if err != nil {
				return moved, err
			}
			if len(zs) < moveBatch {
				break
			}
			octx, cancel := s.op(ctx)
			zs, err = s.rdb.ZRangeWithScores(octx, s.auditOutboxKey(slot), 0, moveBatch-1).Result()
			cancel()
			if err != nil {
				return moved, fail(octx, "move audit events: read outbox", err)
			}
		}
	}
	return moved, nil
}

// moveOutbox moves zs, the oldest entries of slot's outbox, to the stream
// and then drops from the outbox everything the stream now holds.
func (s *Store) moveOutbox(ctx context.Context, slot string, zs []goredis.Z) (int, error) {
	ctx, cancel := s.op(ctx)
	defer cancel()
	args := make([]any, 0, 1+2*len(zs))
	args = append(args, slot)
	for _, z := range zs {
		args = append(args, int64(z.Score), z.Member)
	}
	last, err := moveScript.Run(ctx, s.rdb, []string{s.auditAllKey(), s.auditNextKey(), s.auditMovedKey()}, args...).Int64()
	if err != nil {
		return 0, fail(ctx, "move audit events", err)
	}
	n, err := s.rdb.ZRemRangeByScore(ctx, s.auditOutboxKey(slot), "-inf", strconv.FormatInt(last, 10)).Result()
	if err != nil {
		return 0, fail(ctx, "move audit events: trim outbox", err)
	}
	return int(n), nil
}

// pruneTeamScript drops members from a team's trail and files the team
// again in its slot's index under the time of its oldest remaining event
// (or not at all, once the trail is empty). KEYS: trail, slot team index.
// ARGV: team ID, the oldest remaining event time (unix ms), members.
var pruneTeamScript = goredis.NewScript(`
for i = 3, #ARGV do redis.call('ZREM', KEYS[1], ARGV[i]) end
if redis.call('ZCARD', KEYS[1]) == 0 then
  redis.call('ZREM', KEYS[2], ARGV[1])
else
  redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])
end
return 0
`)

// PruneAudit implements store.Store: the teams each slot's index names as
// holding an event older than before, then the stream.
func (s *Store) PruneAudit(ctx context.Context, before time.Time) (int, error) {
	cutoff := "(" + strconv.FormatInt(before.UnixMilli(), 10)
	slots := s.auditSlots()
	octx, cancel := context.WithTimeout(ctx, 10*s.timeout)
	defer cancel()
	cmds := make([]*goredis.StringSliceCmd, len(slots))
	_, err := s.rdb.Pipelined(octx, func(p goredis.Pipeliner) error {
		for i, slot := range slots {
			cmds[i] = p.ZRangeByScore(octx, s.auditTeamsKey(slot), &goredis.ZRangeBy{Min: "-inf", Max: cutoff})
		}
		return nil
	})
	if err != nil {
		return 0, fail(octx, "prune audit events: read team indexes", err)
	}
	pruned := 0
	for i, slot := range slots {
		for _, team := range cmds[i].Val() {
			n, err := s.pruneSet(ctx, s.auditTrailKey(team), before, func(ctx context.Context, members []any, oldest int64) error {
				return pruneTeamScript.Run(ctx, s.rdb, []string{s.auditTrailKey(team), s.auditTeamsKey(slot)},
					append([]any{team, oldest}, members...)...).Err()
			})
			pruned += n
			if err != nil {
				return pruned, fail(ctx, "prune audit events of team "+team, err)
			}
		}
	}
	n, err := s.pruneSet(ctx, s.auditAllKey(), before, func(ctx context.Context, members []any, _ int64) error {
		if len(members) == 0 {
			return nil
		}
		return s.rdb.ZRem(ctx, s.auditAllKey(), members...).Err()
	})
	pruned += n
	if err != nil {
		return pruned, fail(ctx, "prune audit events", err)
	}
	return pruned, nil
}

// pruneSet drops the events of one sorted set older than before, walking
// from the oldest and stopping at the first stamped AuditPruneSlack after
// before (see store.AuditStore.PruneAudit); remove gets each batch's old
// members and the time of the oldest event left in the set (0 when the
// walk has not met one yet).
func (s *Store) pruneSet(ctx context.Context, name string, before time.Time, remove func(ctx context.Context, members []any, oldest int64) error) (int, error) {
	stop := before.Add(store.AuditPruneSlack)
	pruned, oldest, min := 0, int64(0), "-inf"
	for {
		octx, cancel := s.op(ctx)
		zs, err := s.rdb.ZRangeByScoreWithScores(octx, name, &goredis.ZRangeBy{Min: min, Max: "+inf", Count: auditReadBatch}).Result()
		if err != nil {
			cancel()
			return pruned, err
		}
		var members []any
		done := len(zs) < auditReadBatch
		for _, z := range zs {
			ev, err := store.DecodeAuditEvent([]byte(z.Member.(string)), int64(z.Score))
			if err != nil {
				cancel()
				return pruned, err
			}
			if !ev.Time.Before(stop) {
				done = true
				if oldest == 0 {
					oldest = ev.Time.UnixMilli()
				}
				break
			}
			if ev.Time.Before(before) {
				members = append(members, z.Member)
			} else if oldest == 0 {
				oldest = ev.Time.UnixMilli()
			}
			min = "(" + strconv.FormatInt(int64(z.Score), 10)
		}
		if len(members) > 0 || done {
			err = remove(octx, members, oldest)
		}
		cancel()
		if err != nil {
			return pruned, err
		}
		pruned += len(members)
		if done {
			return pruned, nil
		}
	}
}

// auditSlots are the tags of the slots that hold outboxes and team
// indexes: one per Cluster slot, or a single one on a single node or
// Sentinel.
func (s *Store) auditSlots() []string {
	if !s.cluster {
		return []string{"kg"}
	}
	return clusterSlotTags()
}

// slotTag is the tag of the outbox slot for a team tag: on Cluster a tag
// hashing to the same slot, so one script may use both.
func (s *Store) slotTag(teamTag string) string {
	if !s.cluster {
		return "kg"
	}
	return clusterSlotTags()[keySlot(teamTag)]
}

// clusterSlotTags holds, for each Cluster slot, a short tag that hashes to
// it: found once by trying "a0", "a1", … (about 170 000 CRC16s).
var clusterSlotTags = sync.OnceValue(func() []string {
	tags := make([]string, clusterSlots)
	left := clusterSlots
	for i := 0; left > 0; i++ {
		tag := "a" + strconv.FormatInt(int64(i), 36)
		if slot := keySlot(tag); tags[slot] == "" {
			tags[slot] = tag
			left--
		}
	}
	return tags
})

// keySlot is Redis Cluster's slot of a hash tag: CRC16 (XMODEM) mod 16384,
// as the Cluster specification defines it.
func keySlot(tag string) int {
	var crc uint16
	for i := 0; i < len(tag); i++ {
		crc ^= uint16(tag[i]) << 8
		for range 8 {
			if crc&0x8000 != 0 {
				crc = crc<<1 ^ 0x1021
			} else {
				crc <<= 1
			}
		}
	}
	return int(crc) % clusterSlots
}

var errAuditChanged = errors.New("key changed while deleting")
