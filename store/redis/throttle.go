package redis

// store.SharedThrottle: the failed-authentication throttle buckets shared
// by the instances on one Redis (package throttle says what the buckets
// are). Only failures reach Redis: a
// request that authenticates reads its instance's memory alone.

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/keygate/keygate/store"
)

// addThrottleScript adds one failure to each GCRA bucket of KEYS at the
// caller's now and answers {TAT, started} for each, in one atomic step.
// A hash holds a bucket's theoretical arrival time (tat) and the end of
// its episode (ep), both in unix microseconds: Lua numbers are doubles,
// exact to 2^53, which nanoseconds since 1970 outgrow and microseconds do
// not. Values are written with %d because Lua's tostring keeps only 14
// digits. ARGV: now, then every, threshold, span of each key (µs).
//
// A key lives until its bucket is full again and its episode over; after
// that it holds nothing a fresh bucket would not.
var addThrottleScript = goredis.NewScript(`
local now = tonumber(ARGV[1])
local out = {}
for i, key in ipairs(KEYS) do
  local every, threshold, span = tonumber(ARGV[3*i-1]), tonumber(ARGV[3*i]), tonumber(ARGV[3*i+1])
  local v = redis.call('HMGET', key, 'tat', 'ep')
  local tat = math.max(tonumber(v[1]) or 0, now) + every
  local ep = tonumber(v[2]) or 0
  local started = 0
  local untilT = tat - threshold
  if untilT > now then
    if ep <= now then started = 1 end
    ep = untilT + span
  end
  redis.call('HSET', key, 'tat', string.format('%d', tat), 'ep', string.format('%d', ep))
  redis.call('PEXPIRE', key, math.floor((math.max(tat, ep) - now) / 1000) + 1000)
  out[2*i-1] = string.format('%d', tat)
  out[2*i] = started
end
return out
`)

// AddThrottleFailures implements store.SharedThrottle: one script, one
// round trip, on a Cluster too: the buckets of one failure share group
// (their source) as their hash tag, so they live in one slot.
func (s *Store) AddThrottleFailures(ctx context.Context, now time.Time, group string, fs []store.ThrottleFailure) ([]store.ThrottleBucket, error) {
	ctx, cancel := s.op(ctx)
	defer cancel()
	keys := make([]string, len(fs))
	args := make([]any, 1, 1+3*len(fs))
	args[0] = now.UnixMicro()
	for i, f := range fs {
		keys[i] = s.throttleKey(group, f.Bucket)
		args = append(args, f.Every.Microseconds(), f.Threshold.Microseconds(), f.Span.Microseconds())
	}
	v, err := addThrottleScript.Run(ctx, s.rdb, keys, args...).Slice()
	if err != nil {
		return nil, fail(ctx, "add a failed authentication to the shared throttle", err)
	}
	if len(v) != 2*len(fs) {
		return nil, fmt.Errorf("add a failed authentication to the shared throttle: %d values for %d buckets", len(v), len(fs))
	}
	out := make([]store.ThrottleBucket, len(fs))
	for i := range fs {
		tatText, _ := v[2*i].(string)
		tat, err := strconv.ParseInt(tatText, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("add a failed authentication to the shared throttle: bucket time %q: %w", tatText, err)
		}
		started, _ := v[2*i+1].(int64)
		out[i] = store.ThrottleBucket{TAT: time.UnixMicro(tat), Started: started == 1}
	}
	return out, nil
}

// AnnounceThrottle implements store.SharedThrottle, on pub/sub.
func (s *Store) AnnounceThrottle(ctx context.Context, bucket string, until time.Time) error {
	ctx, cancel := s.op(ctx)
	defer cancel()
	msg := strconv.FormatInt(until.UnixNano(), 10) + " " + bucket
	if err := s.rdb.Publish(ctx, s.throttleChannel(), msg).Err(); err != nil {
		return fail(ctx, "announce a throttle", err)
	}
	return nil
}

// ListenThrottles implements store.SharedThrottle. go-redis resubscribes after a lost connection
// by itself; announcements made meanwhile are missed, which the shared
// counts make good: this instance's next failure of that bucket reads the
// bucket's TAT from Redis.
func (s *Store) ListenThrottles(ctx context.Context, f func(bucket string, until time.Time)) {
	ps := s.rdb.Subscribe(ctx, s.throttleChannel())
	defer ps.Close()
	// Wait for Redis to confirm the subscription, so that a caller who
	// sees this instance counted among the channel's subscribers (PUBSUB
	// NUMSUB) knows it hears every later announcement. An error here is
	// left to the channel below, which reconnects.
	_, _ = ps.Receive(ctx)
	ch := ps.Channel()
	for {
		select {
		case <-ctx.Done():
			return
		case m, ok := <-ch:
			if !ok {
				return
			}
			at, bucket, found := strings.Cut(m.Payload, " ")
			ns, err := strconv.ParseInt(at, 10, 64)
			if !found || err != nil {
				continue // not an announcement of this version: nothing to apply
			}
			f(bucket, time.Unix(0, ns))
		}
	}
}
