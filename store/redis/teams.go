package redis

import (
	"context"
	"slices"

	goredis "github.com/redis/go-redis/v9"

	"github.com/keygate/keygate/store"
)

// Teams implements store.Store from the team registry (teamregistry.go):
// a page is a ZRANGEBYLEX and its teams' ZCARDs, milliseconds whatever the
// number of keys. Until a repair walk has built the registry (a store
// written by an older keygate) it SCANs for team indexes as it used to:
// the walk grows with the whole keyspace, about 2 s at 1.2M Redis names
// (1M keys, 200k teams).
//
// Either way the IDs are filtered (the admin index, P{t}:team: with no
// team ID, and IDs not after q.After are dropped), sorted, and only then
// counted, in order, by pipelined ZCARDs of twice the teams still missing
// at a time (at most 1000; 500 without a limit), until q.Limit teams are
// collected. A team without keys (an index emptied since, a registry
// entry not yet repaired) counts 0 and is skipped without taking a place
// in the page.
//
// It always reads Redis, never the key cache, so it reflects creates and
// deletes made through any instance.
func (s *Store) Teams(ctx context.Context, q store.TeamQuery) ([]store.TeamCount, error) {
	if complete, err := s.registryComplete(ctx); err != nil {
		return nil, err
	} else if complete {
		return s.registeredTeams(ctx, q)
	}
	teams, err := s.scanIDs(ctx, "team", q.Prefix)
	if err != nil {
		return nil, fail(ctx, "list teams", err)
	}
	teams = slices.DeleteFunc(teams, func(id string) bool { return id == "" || id <= q.After })
	slices.Sort(teams) // byte order, as strings compare
	return s.countTeams(ctx, teams, q.Limit)
}

// registeredTeams is Teams from the team registry (teamregistry.go): a
// ZRANGEBYLEX of the page (prefix and after as its bounds), then the
// page's ZCARDs; teams listed without keys are skipped and the range read
// on until the page is full.
func (s *Store) registeredTeams(ctx context.Context, q store.TeamQuery) ([]store.TeamCount, error) {
	lo, hi := "-", "+"
	if q.Prefix != "" {
		// Team IDs are ASCII: every ID with the prefix sorts below it
		// followed by 0xff.
		lo, hi = "["+q.Prefix, "["+q.Prefix+"\xff"
	}
	if q.After != "" && q.After >= q.Prefix {
		lo = "(" + q.After
	}
	out := []store.TeamCount{}
	for {
		batch := int64(500)
		if q.Limit > 0 {
			batch = int64(min(2*(q.Limit-len(out)), 1000))
		}
		octx, cancel := s.op(ctx)
		ids, err := s.rdb.ZRangeByLex(octx, s.teamsKey(), &goredis.ZRangeBy{Min: lo, Max: hi, Count: batch}).Result()
		cancel()
		if err != nil {
			return nil, fail(ctx, "list teams", err)
		}
		if len(ids) == 0 {
			return out, nil
		}
		limit := 0
		if q.Limit > 0 {
			limit = q.Limit - len(out)
		}
		more, err := s.countTeams(ctx, ids, limit)
		if err != nil {
			return nil, err
		}
		out = append(out, more...)
		if (q.Limit > 0 && len(out) >= q.Limit) || int64(len(ids)) < batch {
			return out, nil
		}
		lo = "(" + ids[len(ids)-1]
	}
}

// countTeams counts the keys of teams, in order, by pipelined ZCARDs, until
// limit teams with keys are collected (0: all); a team whose index is empty
// is skipped.
func (s *Store) countTeams(ctx context.Context, teams []string, limit int) ([]store.TeamCount, error) {
	out := []store.TeamCount{}
	// On Cluster the client routes each ZCARD to its slot's node.
	for len(teams) > 0 && (limit <= 0 || len(out) < limit) {
		batch := 500
		if limit > 0 {
			batch = min(2*(limit-len(out)), 1000)
		}
		chunk := teams[:min(batch, len(teams))]
		teams = teams[len(chunk):]
		octx, cancel := s.op(ctx)
		cmds := make([]*goredis.IntCmd, len(chunk))
		_, err := s.rdb.Pipelined(octx, func(p goredis.Pipeliner) error {
			for i, id := range chunk {
				cmds[i] = p.ZCard(octx, s.teamKey(id))
			}
			return nil
		})
		cancel()
		if err != nil {
			return nil, fail(ctx, "list teams", err)
		}
		for i, c := range cmds {
			if limit > 0 && len(out) >= limit {
				break
			}
			if n := c.Val(); n > 0 {
				out = append(out, store.TeamCount{TeamID: chunk[i], Keys: int(n)})
			}
		}
	}
	return out, nil
}
