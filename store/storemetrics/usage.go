package storemetrics

import (
	"context"
	"time"

	"github.com/keygate/keygate/metrics"
	"github.com/keygate/keygate/store"
)

// The operation label's values of store.UsageStore.
const (
	OpAddUsage   = "add_usage"
	OpUsage      = "usage"
	OpPruneUsage = "prune_usage"
)

type usageOps struct{ add, read, prune *metrics.StoreOp }

func newUsageOps(op func(string) *metrics.StoreOp) usageOps {
	return usageOps{add: op(OpAddUsage), read: op(OpUsage), prune: op(OpPruneUsage)}
}

func (s *Store) AddUsage(ctx context.Context, now time.Time, deltas []store.UsageDelta) error {
	start := time.Now()
	err := s.st.AddUsage(ctx, now, deltas)
	s.usage.add.Since(start, err)
	return err
}

func (s *Store) Usage(ctx context.Context, q store.UsageQuery) ([]store.UsageBucket, error) {
	start := time.Now()
	b, err := s.st.Usage(ctx, q)
	s.usage.read.Since(start, err)
	return b, err
}

func (s *Store) PruneUsage(ctx context.Context, now time.Time) error {
	start := time.Now()
	err := s.st.PruneUsage(ctx, now)
	s.usage.prune.Since(start, err)
	return err
}
