package redis

import (
	"context"
	"errors"
	"fmt"
	"math/bits"
	"strconv"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/keygate/keygate/store"
)

// NextStatusIndex implements store.Store with INCR: atomic across every
// instance. It runs outside any team's script (the counter lives in its own
// slot); an index taken by a create that then fails is burned.
func (s *Store) NextStatusIndex(ctx context.Context) (int64, error) {
	ctx, cancel := s.op(ctx)
	defer cancel()
	n, err := s.rdb.Incr(ctx, s.statusNextKey()).Result()
	if err != nil {
		return 0, fail(ctx, "next status index", err)
	}
	return n, nil
}

// RevokeStatus implements store.Store with SETBIT. Redis numbers bits from
// the most significant bit of each byte; StatusList converts.
func (s *Store) RevokeStatus(ctx context.Context, idx int64) error {
	if idx < 0 || idx >= 1<<32 {
		return fmt.Errorf("revoke status %d: %w: index out of range", idx, store.ErrInvalid)
	}
	ctx, cancel := s.op(ctx)
	defer cancel()
	if err := s.rdb.SetBit(ctx, s.statusBitsKey(), idx, 1).Err(); err != nil {
		return fail(ctx, fmt.Sprintf("revoke status %d", idx), err)
	}
	return nil
}

// StatusList implements store.Store: counter and bitmap in one MGET (one
// slot), the bitmap turned LSB-first.
func (s *Store) StatusList(ctx context.Context) (store.StatusList, error) {
	ctx, cancel := s.op(ctx)
	defer cancel()
	vals, err := s.rdb.MGet(ctx, s.statusNextKey(), s.statusBitsKey()).Result()
	if err != nil {
		return store.StatusList{}, fail(ctx, "status list", err)
	}
	var out store.StatusList
	if v, ok := vals[0].(string); ok {
		if out.Allocated, err = strconv.ParseInt(v, 10, 64); err != nil {
			return store.StatusList{}, fmt.Errorf("status list: counter: %w", err)
		}
	}
	if v, ok := vals[1].(string); ok {
		lsb := make([]byte, len(v))
		for i := 0; i < len(v); i++ {
			lsb[i] = bits.Reverse8(v[i])
		}
		out.Statuses = legacyToStatuses(lsb)
	}
	return out, nil
}

// DenyToken implements store.Store: a key that Redis expires with the token.
func (s *Store) DenyToken(ctx context.Context, jti string, until time.Time) error {
	if jti == "" {
		return fmt.Errorf("deny token: %w: empty jti", store.ErrInvalid)
	}
	if !until.After(time.Now()) {
		return nil // already expired: nothing to deny
	}
	ctx, cancel := s.op(ctx)
	defer cancel()
	if err := s.rdb.SetArgs(ctx, s.denyKey(jti), "1", goredis.SetArgs{ExpireAt: until}).Err(); err != nil {
		return fail(ctx, "deny token", err)
	}
	return nil
}

// PruneDeniedTokens implements store.Store: deny entries are keys with a
// TTL at the token's expiry, which Redis removes itself.
func (s *Store) PruneDeniedTokens(ctx context.Context, now time.Time) (int, error) {
	return 0, ctx.Err()
}

// TokenDenied implements store.Store.
func (s *Store) TokenDenied(ctx context.Context, jti string) (bool, error) {
	ctx, cancel := s.op(ctx)
	defer cancel()
	err := s.rdb.Get(ctx, s.denyKey(jti)).Err()
	switch {
	case errors.Is(err, goredis.Nil):
		return false, nil
	case err != nil:
		return false, fail(ctx, "check deny list", err)
	}
	return true, nil
}
