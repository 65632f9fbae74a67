package redis

// The team registry: one sorted set of team IDs (all scores 0, so
// ZRANGEBYLEX pages it in byte order) beside the team indexes, so that
// GET /v1/teams reads a page of it instead of SCANning the whole keyspace
// (Teams, teams.go). On Cluster each team's index lives in its team's
// slot and the registry in {kg}'s, so no script can change both: the
// registry follows the indexes step by step, and a walk repairs what a
// crash between two steps leaves.
//
//   - A create adds the team before the key goes into its index (ZADD,
//     idempotent; the create fails if it cannot): a team with keys is never
//     missing, crash or not. A create that fails after the ZADD leaves a
//     team listed without keys, which Teams skips (its ZCARD is 0).
//   - A delete that empties an index removes the team, then looks again
//     and puts it back if a create raced in between: the create's ZADD came
//     before the ZREM or comes after the second look.
//   - RepairTeams (run by apikey.AuditWorker at once on a store whose
//     registry is not complete, then every apikey.DefaultTeamsRepairEvery,
//     one instance at a time by lease) walks the team indexes, adds the
//     missing teams and removes the empty ones.
//
// So there is no drift a caller of Teams can see: a team that gains its
// first key is listed before the key exists; one that loses its last
// disappears from Teams at once (a crash before its ZREM leaves it in the
// registry, skipped, until the next repair). What the repair still mends is
// what a release that added teams after their keys (before 2026-12-06)
// left after a crash; every minute, it was a walk of every team index and
// of the whole registry, 6–26 % of the token endpoint's throughput at
// 2 000 000 keys (docs/scale.md, "The thirteenth change").
//
// A store that has never had a registry (one written by an older keygate)
// gets it from the first walk, which ends by setting teamsCompleteKey;
// until then Teams SCANs as before, so the list is never short.

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/keygate/keygate/store"
)

func (s *Store) teamsKey() string         { return s.prefix + "{kg}:teams" }
func (s *Store) teamsCompleteKey() string { return s.prefix + "{kg}:teams:complete" }
func (s *Store) teamsLeaseKey() string    { return s.prefix + "{kg}:teams:lease" }

// teamsLease is how long one instance's walk holds the lease: longer than
// a walk of a million keys takes, shorter than the repair interval.
const teamsLease = 50 * time.Second

// registerTeams adds teams to the registry; the admin index ("") is not a
// team.
func (s *Store) registerTeams(ctx context.Context, teams ...string) error {
	members := make([]goredis.Z, 0, len(teams))
	for _, t := range teams {
		if t != "" {
			members = append(members, goredis.Z{Member: t})
		}
	}
	if len(members) == 0 {
		return nil
	}
	octx, cancel := s.op(ctx)
	defer cancel()
	if err := s.rdb.ZAdd(octx, s.teamsKey(), members...).Err(); err != nil {
		return fail(octx, "register teams", err)
	}
	return nil
}

// unregisterIfEmpty removes team from the registry when its index is
// empty, and puts it back if a key arrived meanwhile.
func (s *Store) unregisterIfEmpty(ctx context.Context, team string) error {
	if team == "" {
		return nil
	}
	octx, cancel := s.op(ctx)
	defer cancel()
	n, err := s.teamKeyCount(octx, team)
	if err != nil || n > 0 {
		return err
	}
	if err := s.rdb.ZRem(octx, s.teamsKey(), team).Err(); err != nil {
		return fail(octx, "unregister team "+team, err)
	}
	if n, err = s.teamKeyCount(octx, team); err != nil {
		return err
	}
	if n > 0 {
		return s.registerTeams(ctx, team)
	}
	return nil
}

// TeamsComplete implements store.TeamRegistry: whether a walk has built the
// registry.
func (s *Store) TeamsComplete(ctx context.Context) (bool, error) {
	octx, cancel := s.op(ctx)
	defer cancel()
	n, err := s.rdb.Exists(octx, s.teamsCompleteKey()).Result()
	if err != nil {
		return false, fail(octx, "read team registry marker", err)
	}
	return n == 1, nil
}

// RepairTeams implements store.TeamRegistry: one walk of every team index
// (SCAN, as Teams did before the registry: about 2 s at 1 M keys), by the
// instance holding the lease.
func (s *Store) RepairTeams(ctx context.Context) (store.TeamRepair, error) {
	var r store.TeamRepair
	octx, cancel := s.op(ctx)
	got, err := s.rdb.SetNX(octx, s.teamsLeaseKey(), "1", teamsLease).Result()
	cancel()
	if err != nil {
		return r, fail(ctx, "repair team registry: lease", err)
	}
	if !got {
		return r, nil
	}
	defer func() {
		octx, cancel := s.op(context.WithoutCancel(ctx))
		defer cancel()
		s.rdb.Del(octx, s.teamsLeaseKey())
	}()
	r.Walked = true
	// The registry first: a team registered during the walk is then
	// either in this snapshot or in the indexes found below.
	octx, cancel = s.op(ctx)
	listed, err := s.rdb.ZRange(octx, s.teamsKey(), 0, -1).Result()
	cancel()
	if err != nil {
		return r, fail(ctx, "repair team registry: read", err)
	}
	teams, err := s.scanTeams(ctx, "")
	if err != nil {
		return r, fail(ctx, "repair team registry: walk team indexes", err)
	}
	teams = slices.DeleteFunc(teams, func(id string) bool { return id == "" })
	r.Teams = len(teams)
	slices.Sort(teams)
	slices.Sort(listed)
	var missing []string
	for _, t := range teams {
		if _, found := slices.BinarySearch(listed, t); !found {
			missing = append(missing, t)
		}
	}
	for start := 0; start < len(missing); start += bulkChunk {
		chunk := missing[start:min(start+bulkChunk, len(missing))]
		if err := s.registerTeams(ctx, chunk...); err != nil {
			return r, fmt.Errorf("repair team registry: %w", err)
		}
		r.Added += len(chunk)
	}
	for _, t := range listed {
		if _, found := slices.BinarySearch(teams, t); found {
			continue
		}
		// Listed but no index seen: empty, or created after the SCAN
		// passed it; unregisterIfEmpty looks at the index itself.
		if err := s.unregisterIfEmpty(ctx, t); err != nil {
			return r, fmt.Errorf("repair team registry: %w", err)
		}
		octx, cancel := s.op(ctx)
		err := s.rdb.ZScore(octx, s.teamsKey(), t).Err()
		cancel()
		switch {
		case errors.Is(err, goredis.Nil):
			r.Removed++
		case err != nil:
			return r, fail(ctx, "repair team registry", err)
		}
	}
	octx, cancel = s.op(ctx)
	err = s.rdb.Set(octx, s.teamsCompleteKey(), "1", 0).Err()
	cancel()
	if err != nil {
		return r, fail(ctx, "repair team registry: mark complete", err)
	}
	r.RegistryComplete = true
	return r, nil
}
