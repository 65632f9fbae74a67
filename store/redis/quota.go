package redis

import (
	"context"
	"time"

	goredis "github.com/redis/go-redis/v9"
)

// addQuotaScript adds ARGV[1] to the counter KEYS[1] and, when that made
// the counter (its value is what was added), gives it ARGV[2] milliseconds
// to live, in one step: a window's counter never outlives its window by
// more than the caller's margin, and never lives forever.
var addQuotaScript = goredis.NewScript(`
local v = redis.call('INCRBY', KEYS[1], ARGV[1])
if v == tonumber(ARGV[1]) then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return v
`)

// AddQuota implements quota.Shared: the issuance quota counters instances
// share (package quota takes a lease of several tokens per call, never
// one call per token). The time to live is relative, so it follows the
// caller's clock, not Redis's.
func (s *Store) AddQuota(ctx context.Context, name string, n int64, ttl time.Duration) (int64, error) {
	ctx, cancel := s.op(ctx)
	defer cancel()
	ms := max(ttl.Milliseconds(), 1)
	v, err := addQuotaScript.Run(ctx, s.rdb, []string{s.quotaKey(name)}, n, ms).Int64()
	if err != nil {
		return 0, fail(ctx, "add to quota counter", err)
	}
	return v, nil
}
