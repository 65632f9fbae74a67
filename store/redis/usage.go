package redis

import (
	"cmp"
	"context"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/keygate/keygate/credential"
	"github.com/keygate/keygate/store"
)

// usageKey names one usage bucket of a team: a hash whose fields are
// "t:<client_id>" (tokens) and "f:<client_id>" (failed authentications).
// The team's tag puts every bucket of a team in one hash slot, so a team's
// part of a flush is one MULTI and a query one pipeline to one node. The
// team ID comes last so no team ID can make two names collide.
func (s *Store) usageKey(g store.Granularity, start time.Time, teamID string) string {
	letter := "h"
	if g == store.Day {
		letter = "d"
	}
	return s.prefix + "{" + credential.TeamTag(teamID) + "}:usage:" + letter + ":" +
		strconv.FormatInt(start.Unix(), 10) + ":" + teamID
}

// addUsageScript adds one team's part of a flush: for each bucket key,
// its counters and its time to live. KEYS: the team's bucket keys (one hash
// slot). ARGV, per key in order: the number of counters n, the time to live
// in ms, then n pairs of field and increment.
var addUsageScript = goredis.NewScript(`
local a = 1
for _, k in ipairs(KEYS) do
  local n = tonumber(ARGV[a])
  local ttl = ARGV[a + 1]
  a = a + 2
  for _ = 1, n do
    redis.call('HINCRBY', k, ARGV[a], ARGV[a + 1])
    a = a + 2
  end
  redis.call('PEXPIRE', k, ttl)
end
return 1
`)

// usageArgs collects one team's part of a flush for addUsageScript.
type usageArgs struct {
	keys   []string
	fields map[string][]any // key → field, increment, field, increment…
	ttl    map[string]int64 // key → ms
}

// AddUsage implements store.Store: one script per team, all in one
// pipeline, so a team's part of the batch is atomic and a flush is one
// round trip per node. Each bucket gets a time to live computed from now,
// so Redis drops it when its retention ends (store.UsageKept), with no
// pruning pass over every team. A failure may leave other teams' parts
// written (the contract allows it).
func (s *Store) AddUsage(ctx context.Context, now time.Time, deltas []store.UsageDelta) error {
	if err := store.CheckUsage(deltas); err != nil {
		return fmt.Errorf("add usage: %w", err)
	}
	if len(deltas) == 0 {
		return ctx.Err()
	}
	teams := map[string]*usageArgs{}
	var order []string
	for _, d := range deltas {
		if d.Tokens == 0 && d.Failures == 0 {
			continue
		}
		for _, g := range []store.Granularity{store.Hour, store.Day} {
			start := g.Truncate(d.Hour)
			if !store.UsageKept(g, start, now) {
				continue
			}
			ta := teams[d.TeamID]
			if ta == nil {
				ta = &usageArgs{fields: map[string][]any{}, ttl: map[string]int64{}}
				teams[d.TeamID] = ta
				order = append(order, d.TeamID)
			}
			k := s.usageKey(g, start, d.TeamID)
			if _, seen := ta.ttl[k]; !seen {
				ta.keys = append(ta.keys, k)
			}
			// At least 1 ms: PEXPIRE 0 would delete the bucket at once.
			ta.ttl[k] = max(start.Add(g.Size()+g.Retention()).Sub(now).Milliseconds(), 1)
			if d.Tokens > 0 {
				ta.fields[k] = append(ta.fields[k], "t:"+d.ClientID, d.Tokens)
			}
			if d.Failures > 0 {
				ta.fields[k] = append(ta.fields[k], "f:"+d.ClientID, d.Failures)
			}
		}
	}
	if len(order) == 0 {
		return ctx.Err()
	}
	ctx, cancel := s.op(ctx)
	defer cancel()
	if err := s.loadScript(ctx, addUsageScript); err != nil {
		return fail(ctx, "add usage", err)
	}
	_, err := s.rdb.Pipelined(ctx, func(p goredis.Pipeliner) error {
		for _, team := range order {
			ta := teams[team]
			var args []any
			for _, k := range ta.keys {
				args = append(args, len(ta.fields[k])/2, ta.ttl[k])
				args = append(args, ta.fields[k]...)
			}
			addUsageScript.EvalSha(ctx, p, ta.keys, args...)
		}
		return nil
	})
	if err != nil {
		return fail(ctx, "add usage", err)
	}
	return nil
}

// Usage implements store.Store: one HGETALL per bucket of the range that
// can still be kept at q.Now (at most 49 hours or 36 days), in one
// pipeline to the team's slot.
func (s *Store) Usage(ctx context.Context, q store.UsageQuery) ([]store.UsageBucket, error) {
	g := q.Granularity
	if !g.Valid() {
		return nil, fmt.Errorf("usage: %w: granularity %v", store.ErrInvalid, g)
	}
	first := g.Truncate(q.From)
	if first.Before(q.From) {
		first = first.Add(g.Size())
	}
	if oldest := g.Truncate(q.Now.Add(-g.Size() - g.Retention())); first.Before(oldest) {
		first = oldest
	}
	var starts []time.Time
	for start := first; start.Before(q.To) && !start.After(q.Now); start = start.Add(g.Size()) {
		if store.UsageKept(g, start, q.Now) {
			starts = append(starts, start)
		}
	}
	out := []store.UsageBucket{}
	if len(starts) == 0 {
		return out, ctx.Err()
	}
	ctx, cancel := s.op(ctx)
	defer cancel()
	cmds := make([]*goredis.MapStringStringCmd, len(starts))
	_, err := s.rdb.Pipelined(ctx, func(p goredis.Pipeliner) error {
		for i, start := range starts {
			cmds[i] = p.HGetAll(ctx, s.usageKey(g, start, q.TeamID))
		}
		return nil
	})
	if err != nil {
		return nil, fail(ctx, "usage of team "+strconv.Quote(q.TeamID), err)
	}
	for i, cmd := range cmds {
		byKey := map[string]*store.UsageBucket{}
		for field, val := range cmd.Val() {
			kind, id, ok := strings.Cut(field, ":")
			n, err := strconv.ParseInt(val, 10, 64)
			if !ok || err != nil || (kind != "t" && kind != "f") {
				return nil, fmt.Errorf("usage of team %q: malformed counter %q", q.TeamID, field)
			}
			b := byKey[id]
			if b == nil {
				b = &store.UsageBucket{ClientID: id, Start: starts[i]}
				byKey[id] = b
			}
			if kind == "t" {
				b.Tokens = n
			} else {
				b.Failures = n
			}
		}
		for _, id := range slices.Sorted(maps.Keys(byKey)) {
			if b := byKey[id]; b.Tokens != 0 || b.Failures != 0 {
				out = append(out, *b)
			}
		}
	}
	slices.SortStableFunc(out, func(a, b store.UsageBucket) int {
		return cmp.Or(a.Start.Compare(b.Start), cmp.Compare(a.ClientID, b.ClientID))
	})
	return out, nil
}

// PruneUsage implements store.Store: nothing to do, each bucket carries a
// time to live (AddUsage) and Usage never returns one past its retention.
func (s *Store) PruneUsage(ctx context.Context, now time.Time) error { return ctx.Err() }
