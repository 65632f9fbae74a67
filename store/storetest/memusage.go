package storetest

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/keygate/keygate/store"
)

// memBucket names one key's counters in one bucket of a team.
type memBucket struct {
	g        store.Granularity
	start    int64 // unix seconds
	clientID string
}

type memCounts struct{ tokens, failures int64 }

// AddUsage implements store.Store.
func (m *MemStore) AddUsage(ctx context.Context, now time.Time, deltas []store.UsageDelta) error {
	if err := store.CheckUsage(deltas); err != nil {
		return fmt.Errorf("add usage: %w", err)
	}
	unlock, err := m.lock(ctx)
	if err != nil {
		return err
	}
	defer unlock()
	if m.usage == nil {
		m.usage = map[string]map[memBucket]memCounts{}
	}
	for _, d := range deltas {
		if d.Tokens == 0 && d.Failures == 0 {
			continue
		}
		for _, g := range []store.Granularity{store.Hour, store.Day} {
			start := g.Truncate(d.Hour)
			if !store.UsageKept(g, start, now) {
				continue
			}
			team := m.usage[d.TeamID]
			if team == nil {
				team = map[memBucket]memCounts{}
				m.usage[d.TeamID] = team
			}
			b := memBucket{g, start.Unix(), d.ClientID}
			c := team[b]
			c.tokens += d.Tokens
			c.failures += d.Failures
			team[b] = c
		}
	}
	return nil
}

// Usage implements store.Store.
func (m *MemStore) Usage(ctx context.Context, q store.UsageQuery) ([]store.UsageBucket, error) {
	if !q.Granularity.Valid() {
		return nil, fmt.Errorf("usage: %w: granularity %v", store.ErrInvalid, q.Granularity)
	}
	unlock, err := m.lock(ctx)
	if err != nil {
		return nil, err
	}
	defer unlock()
	out := []store.UsageBucket{}
	for b, c := range m.usage[q.TeamID] {
		start := time.Unix(b.start, 0).UTC()
		if b.g != q.Granularity || start.Before(q.From) || !start.Before(q.To) || !store.UsageKept(b.g, start, q.Now) {
			continue
		}
		out = append(out, store.UsageBucket{ClientID: b.clientID, Start: start, Tokens: c.tokens, Failures: c.failures})
	}
	slices.SortFunc(out, func(a, b store.UsageBucket) int {
		return cmp.Or(a.Start.Compare(b.Start), cmp.Compare(a.ClientID, b.ClientID))
	})
	return out, nil
}

// PruneUsage implements store.Store.
func (m *MemStore) PruneUsage(ctx context.Context, now time.Time) error {
	unlock, err := m.lock(ctx)
	if err != nil {
		return err
	}
	defer unlock()
	for team, buckets := range m.usage {
		for b := range buckets {
			if !store.UsageKept(b.g, time.Unix(b.start, 0), now) {
				delete(buckets, b)
			}
		}
		if len(buckets) == 0 {
			delete(m.usage, team)
		}
	}
	return nil
}

// UsageBuckets counts the buckets the store holds, pruned or not, for tests
// of pruning.
func (m *MemStore) UsageBuckets() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	n := 0
	for _, b := range m.usage {
		n += len(b)
	}
	return n
}
