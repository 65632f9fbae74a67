package redis

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/keygate/keygate/store"
)

// The store.StatusSchedule is one sorted set, P{kg}:statuschecks, scored by
// the entry's time in unix milliseconds (exact in a float64); each member
// is the time in unix nanoseconds, 19 digits, then "|" and the client ID,
// so that an entry is one member whatever else the key has scheduled, and
// members of one millisecond sort by time too. One slot on Cluster: the
// schedule holds the keys rotated within a grace period (7 days at most),
// not every key.
func (s *Store) statusChecksKey() string { return s.prefix + "{kg}:statuschecks" }

func statusCheckMember(clientID string, at time.Time) string {
	return fmt.Sprintf("%019d|%s", max(at.UnixNano(), 0), clientID)
}

// ScheduleStatusCheck implements store.StatusSchedule.
func (s *Store) ScheduleStatusCheck(ctx context.Context, clientID string, at time.Time) error {
	if clientID == "" {
		return fmt.Errorf("schedule status check: %w: empty client id", store.ErrInvalid)
	}
	octx, cancel := s.op(ctx)
	defer cancel()
	z := goredis.Z{Score: float64(max(at.UnixMilli(), 0)), Member: statusCheckMember(clientID, at)}
	if err := s.rdb.ZAdd(octx, s.statusChecksKey(), z).Err(); err != nil {
		return fail(octx, "schedule status check of key "+clientID, err)
	}
	return nil
}

// DueStatusChecks implements store.StatusSchedule.
func (s *Store) DueStatusChecks(ctx context.Context, now time.Time, limit int) ([]store.StatusCheck, error) {
	if limit <= 0 {
		return nil, nil
	}
	octx, cancel := s.op(ctx)
	defer cancel()
	members, err := s.rdb.ZRangeByScore(octx, s.statusChecksKey(), &goredis.ZRangeBy{
		Min: "-inf", Max: strconv.FormatInt(max(now.UnixMilli(), 0), 10), Count: int64(limit),
	}).Result()
	if err != nil {
		return nil, fail(octx, "read due status checks", err)
	}
	cut := max(now.UnixNano(), 0)
	due := make([]store.StatusCheck, 0, len(members))
	for _, m := range members {
		ns, id, ok := strings.Cut(m, "|")
		at, err := strconv.ParseInt(ns, 10, 64)
		if !ok || err != nil || id == "" {
			continue // not a member this package writes
		}
		if at > cut {
			break // in now's millisecond, after now
		}
		due = append(due, store.StatusCheck{ClientID: id, At: time.Unix(0, at).UTC()})
	}
	return due, nil
}

// DropStatusCheck implements store.StatusSchedule.
func (s *Store) DropStatusCheck(ctx context.Context, c store.StatusCheck) error {
	octx, cancel := s.op(ctx)
	defer cancel()
	if err := s.rdb.ZRem(octx, s.statusChecksKey(), statusCheckMember(c.ClientID, c.At)).Err(); err != nil {
		return fail(octx, "drop status check of key "+c.ClientID, err)
	}
	return nil
}
