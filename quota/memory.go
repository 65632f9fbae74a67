package quota

import (
	"context"
	"sync"
	"time"
)

// Memory is a Shared counter in this process: what store/redis does with
// INCRBY, for tests of several Limiters sharing a count, and for a store
// that several servers share in one process (storetest.MemStore). Its
// counters never expire (names carry their window, so a stale one is
// merely unused); it is not meant for long-lived production use.
type Memory struct {
	mu sync.Mutex
	n  map[string]int64
	// Fail, when set, makes every Add fail with it.
	Fail error
	// Adds counts the calls of AddQuota (round trips, for a real store).
	Adds int
}

// NewMemory returns an empty Memory.
func NewMemory() *Memory { return &Memory{n: map[string]int64{}} }

// AddQuota implements Shared.
func (m *Memory) AddQuota(ctx context.Context, name string, n int64, _ time.Duration) (int64, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.Adds++
	if m.Fail != nil {
		return 0, m.Fail
	}
	m.n[name] += n
	return m.n[name], nil
}
