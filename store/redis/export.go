package redis

// store.Exporter on Redis, for `keygate store export`.

import (
	"context"
	"fmt"
	"strings"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/keygate/keygate/store"
)

var _ store.Exporter = (*Store)(nil)

// scanNames is scanPages collected: the names matching pattern, each once.
func (s *Store) scanNames(ctx context.Context, pattern string) ([]string, error) {
	return collectPages(func(page func([]string) error) error { return s.scanPages(ctx, pattern, page) })
}

// Singletons implements store.Exporter: the singletons share the {kg}
// slot, so one SCAN of the keyspace finds their names.
func (s *Store) Singletons(ctx context.Context) (map[string][]byte, error) {
	head := s.singletonKey("")
	names, err := s.scanNames(ctx, globEscape(head)+"*")
	if err != nil {
		return nil, fail(ctx, "read singletons", err)
	}
	out := map[string][]byte{}
	for _, n := range names {
		octx, cancel := s.op(ctx)
		v, err := s.rdb.Get(octx, n).Bytes()
		cancel()
		if err == goredis.Nil {
			continue // removed since the scan
		}
		if err != nil {
			return nil, fail(ctx, "read singleton", err)
		}
		out[strings.TrimPrefix(n, head)] = v
	}
	return out, nil
}

// ForEachDenied implements store.Exporter: entries are keys with a time
// to live at the token's expiry, spread over the cluster, found by SCAN.
func (s *Store) ForEachDenied(ctx context.Context, now time.Time, fn func(jti string, until time.Time) error) error {
	head := s.denyKey("")
	names, err := s.scanNames(ctx, globEscape(head)+"*")
	if err != nil {
		return fail(ctx, "read deny list", err)
	}
	for _, n := range names {
		octx, cancel := s.op(ctx)
		// PEXPIRETIME (Redis 7) would be exact; the time left, read now,
		// is off by the round trip at most.
		ttl, err := s.rdb.PTTL(octx, n).Result()
		cancel()
		if err != nil {
			return fail(ctx, "read deny list", err)
		}
		if ttl <= 0 {
			continue // gone, or without expiry (not written by DenyToken)
		}
		until := time.Now().Add(ttl).UTC().Truncate(time.Millisecond)
		if !until.After(now) {
			continue
		}
		if err := fn(strings.TrimPrefix(n, head), until); err != nil {
			return err
		}
	}
	return nil
}

// ForEachAuditEvent implements store.Exporter: each slot's index of teams
// with events, then each team's trail from its oldest event.
func (s *Store) ForEachAuditEvent(ctx context.Context, fn func(store.AuditEvent) error) error {
	for _, slot := range s.auditSlots() {
		octx, cancel := s.op(ctx)
		teams, err := s.rdb.ZRange(octx, s.auditTeamsKey(slot), 0, -1).Result()
		cancel()
		if err != nil {
			return fail(ctx, "read audit team index", err)
		}
		for _, team := range teams {
			if err := s.forEachTrailEvent(ctx, team, fn); err != nil {
				return err
			}
		}
	}
	return nil
}

func (s *Store) forEachTrailEvent(ctx context.Context, team string, fn func(store.AuditEvent) error) error {
	min := "-inf"
	for {
		octx, cancel := s.op(ctx)
		zs, err := s.rdb.ZRangeByScoreWithScores(octx, s.auditTrailKey(team), &goredis.ZRangeBy{Min: min, Max: "+inf", Count: auditReadBatch}).Result()
		cancel()
		if err != nil {
			return fail(ctx, "read audit events of team "+team, err)
		}
		for _, z := range zs {
			ev, err := store.DecodeAuditEvent([]byte(z.Member.(string)), int64(z.Score))
			if err != nil {
				return err
			}
			if err := fn(ev); err != nil {
				return err
			}
			min = fmt.Sprintf("(%d", int64(z.Score))
		}
		if len(zs) < auditReadBatch {
			return nil
		}
	}
}

// ForEachWebhookState implements store.Exporter: the states share the
// {kg} slot; SCAN finds their names.
func (s *Store) ForEachWebhookState(ctx context.Context, fn func(string, store.WebhookState) error) error {
	head := s.webhookKey("")
	names, err := s.scanNames(ctx, globEscape(head)+"*")
	if err != nil {
		return fail(ctx, "read webhook states", err)
	}
	for _, n := range names {
		ep := strings.TrimPrefix(n, head)
		octx, cancel := s.op(ctx)
		st, err := s.readWebhookState(octx, s.rdb, ep)
		cancel()
		if err != nil {
			return err
		}
		if err := fn(ep, st); err != nil {
			return err
		}
	}
	return nil
}
