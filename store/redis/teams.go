package redis

import (
	"context"
	"slices"

	goredis "github.com/redis/go-redis/v9"

	"github.com/keygate/keygate/store"
)

// Teams implements store.Store by SCANning for team indexes, then counting
// the page's teams with ZCARD. Teams are implicit (a team exists while its
// index holds a key), and no list of them can be kept atomically beside the
// indexes: on Cluster each team's index lives in its own team's slot, and a
// script may only touch one slot. So each call walks the keyspace once,
// with q.Prefix in the SCAN's MATCH pattern, and that walk grows with the
// whole keyspace, not with the page or the number of teams: about 2 s at
// 1.2M Redis names (1M keys, 200k teams), measured. Fine for an admin-only
// call, not for a hot path.
//
// The IDs found are filtered (the admin index, P{t}:team: with no team ID,
// and IDs not after q.After are dropped), sorted, and only then counted, in
// order, by pipelined ZCARDs of twice the teams still missing at a time
// (at most 1000; 500 without a limit), until q.Limit teams are collected:
// a page costs one SCAN and about q.Limit ZCARDs, not one per team. An
// index emptied between the SCAN and its ZCARD (Redis deletes an emptied
// sorted set) counts 0 and is skipped without taking a place in the page.
//
// It always reads Redis, never the key cache, so it reflects creates and
// deletes made through any instance.
func (s *Store) Teams(ctx context.Context, q store.TeamQuery) ([]store.TeamCount, error) {
	teams, err := s.scanIDs(ctx, "team", q.Prefix)
	if err != nil {
		return nil, fail(ctx, "list teams", err)
	}
	teams = slices.DeleteFunc(teams, func(id string) bool { return id == "" || id <= q.After })
	slices.Sort(teams) // byte order, as strings compare
	out := []store.TeamCount{}
	// On Cluster the client routes each ZCARD to its slot's node.
	for len(teams) > 0 && (q.Limit <= 0 || len(out) < q.Limit) {
		batch := 500
		if q.Limit > 0 {
			batch = min(2*(q.Limit-len(out)), 1000)
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
			if q.Limit > 0 && len(out) >= q.Limit {
				break
			}
			if n := c.Val(); n > 0 {
				out = append(out, store.TeamCount{TeamID: chunk[i], Keys: int(n)})
			}
		}
	}
	return out, nil
}
