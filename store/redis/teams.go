package redis

import (
	"context"
	"slices"
	"strings"

	goredis "github.com/redis/go-redis/v9"

	"github.com/keygate/keygate/credential"
	"github.com/keygate/keygate/store"
)

// Teams implements store.Store from the team registry (teamregistry.go):
// a page is a ZRANGEBYLEX and its teams' counts, milliseconds whatever the
// number of keys. Until a repair walk has built the registry (a store
// written by an older keygate) it SCANs for team indexes and buckets as
// it used to: the walk grows with the whole keyspace, about 2 s at 1.2M
// Redis names (1M keys, 200k teams).
//
// Either way the IDs are filtered (the admin index, team ID "", and IDs
// not after q.After are dropped), sorted, and only then counted, in
// order, by pipelined teamCountScripts (the team's keys in its bucket and
// its old index) of twice the teams still missing
// at a time (at most 1000; 500 without a limit), until q.Limit teams are
// collected. A team without keys (an index emptied since, a registry
// entry not yet repaired) counts 0 and is skipped without taking a place
// in the page.
//
// It always reads Redis, never the key cache, so it reflects creates and
// deletes made through any instance.
func (s *Store) Teams(ctx context.Context, q store.TeamQuery) ([]store.TeamCount, error) {
	if complete, err := s.TeamsComplete(ctx); err != nil {
		return nil, err
	} else if complete {
		return s.registeredTeams(ctx, q)
	}
	teams, err := s.scanTeams(ctx, q.Prefix)
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

// countTeams counts the keys of teams, in order, by pipelined
// teamCountScripts, until
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
		cmds := make([]*goredis.Cmd, len(chunk))
		err := s.loadScript(octx, teamCountScript)
		if err == nil {
			_, err = s.rdb.Pipelined(octx, func(p goredis.Pipeliner) error {
				for i, id := range chunk {
					cmds[i] = teamCountScript.EvalSha(octx, p, s.teamCountKeys(id), id)
				}
				return nil
			})
		}
		cancel()
		if err != nil {
			return nil, fail(ctx, "list teams", err)
		}
		for i, c := range cmds {
			if limit > 0 && len(out) >= limit {
				break
			}
			if n, _ := c.Int(); n > 0 {
				out = append(out, store.TeamCount{TeamID: chunk[i], Keys: int(n)})
			}
		}
	}
	return out, nil
}

// teamCountScript counts a team's keys in both layouts. KEYS: the team's
// old index, its bucket. ARGV: team.
var teamCountScript = goredis.NewScript(compactLua + `
return redis.call('ZCARD', KEYS[1]) + kg_count(KEYS[2], ARGV[1])
`)

func (s *Store) teamCountKeys(team string) []string {
	return []string{s.teamKey(team), s.bucketKey(credential.TeamTag(team))}
}

// teamKeyCount is the number of keys of team.
func (s *Store) teamKeyCount(ctx context.Context, team string) (int, error) {
	octx, cancel := s.op(ctx)
	defer cancel()
	n, err := teamCountScript.Run(octx, s.rdb, s.teamCountKeys(team), team).Int()
	if err != nil {
		return 0, fail(octx, "count keys of team "+team, err)
	}
	return n, nil
}

// bucketTeamsScript lists the teams of a bucket's keys. KEYS: the bucket.
var bucketTeamsScript = goredis.NewScript(compactLua + `
local seen, out = {}, {}
kg_each(KEYS[1], function(_, c0)
  local t = kg_team(c0)
  if not seen[t] then seen[t] = true; out[#out + 1] = t end
end)
return out
`)

// scanTeams walks the whole keyspace for the IDs of teams with keys, in
// either layout, starting with prefix; sorted, each once, the admin
// index ("") included.
func (s *Store) scanTeams(ctx context.Context, prefix string) ([]string, error) {
	var teams []string
	if !s.compactOnly.Load() {
		var err error
		if teams, err = s.scanIDs(ctx, "team", prefix); err != nil {
			return nil, err
		}
	}
	if err := s.loadScript(ctx, bucketTeamsScript); err != nil {
		return nil, err
	}
	err := s.scanBuckets(ctx, func(tags []string) error {
		octx, cancel := s.op(ctx)
		defer cancel()
		cmds := make([]*goredis.Cmd, len(tags))
		_, err := s.rdb.Pipelined(octx, func(p goredis.Pipeliner) error {
			for i, t := range tags {
				cmds[i] = bucketTeamsScript.EvalSha(octx, p, []string{s.bucketKey(t)})
			}
			return nil
		})
		if err != nil {
			return err
		}
		for _, c := range cmds {
			found, err := c.StringSlice()
			if err != nil {
				return err
			}
			for _, t := range found {
				if strings.HasPrefix(t, prefix) {
					teams = append(teams, t)
				}
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	slices.Sort(teams)
	return slices.Compact(teams), nil
}
