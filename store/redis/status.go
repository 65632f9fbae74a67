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

// Status entries live in two strings of the status counter's slot (so one
// script reaches both on Cluster): "status:bits", the 1-bit bitmap of
// revoked indices every keygate since status lists writes (SETBIT, Redis's
// MSB-first bit order), and "status:entries", the 2-bit entries of
// store.StatusList in the draft's own layout, written with BITFIELD u2. A
// revocation writes both in one script, so a keygate of the release before
// (which reads only the bitmap) still sees every INVALID index;
// suspension writes only the entries; StatusList reads an index whose bit
// is set as INVALID whatever its entry. No data needs migrating.

// entryOffset is the BITFIELD bit offset of entry idx. Redis numbers bits
// from the most significant bit of each byte and a u2 field holds its
// value most significant bit first; the draft puts entry i at bits (2i mod
// 8) and (2i mod 8)+1 of byte ⌊i/4⌋, counted from the least significant
// bit, its own least significant bit first. So the field of entry i starts
// at Redis bit 8⌊i/4⌋ + 6 − 2(i mod 4): the string then holds the draft's
// bytes as they are.
func entryOffset(idx int64) int64 { return 8*(idx/4) + 6 - 2*(idx%4) }

// revokeScript sets bit ARGV[1] of KEYS[1] and the entry at bit offset
// ARGV[2] of KEYS[2] to INVALID.
var revokeScript = goredis.NewScript(`
redis.call('SETBIT', KEYS[1], ARGV[1], 1)
redis.call('BITFIELD', KEYS[2], 'SET', 'u2', ARGV[2], 1)
return 1`)

// setStatusScript writes ARGV[3] whole into the entry at bit offset
// ARGV[2] of KEYS[2], unless index ARGV[1] is INVALID in either string.
var setStatusScript = goredis.NewScript(`
if redis.call('GETBIT', KEYS[1], ARGV[1]) == 1 then return 0 end
local cur = redis.call('BITFIELD', KEYS[2], 'GET', 'u2', ARGV[2])[1]
if cur == 1 or cur == tonumber(ARGV[3]) then return 0 end
redis.call('BITFIELD', KEYS[2], 'SET', 'u2', ARGV[2], ARGV[3])
return 1`)

// RevokeStatus implements store.Store: the bitmap's bit and the entry, in
// one script.
func (s *Store) RevokeStatus(ctx context.Context, idx int64) error {
	if idx < 0 || idx > store.MaxStatusIndex {
		return fmt.Errorf("revoke status %d: %w: index out of range", idx, store.ErrInvalid)
	}
	ctx, cancel := s.op(ctx)
	defer cancel()
	keys := []string{s.statusBitsKey(), s.statusEntriesKey()}
	if err := revokeScript.Run(ctx, s.rdb, keys, idx, entryOffset(idx)).Err(); err != nil {
		return fail(ctx, fmt.Sprintf("revoke status %d", idx), err)
	}
	return nil
}

// SetStatus implements store.Store: one script, which leaves an INVALID
// index as it is.
func (s *Store) SetStatus(ctx context.Context, idx int64, st store.Status) error {
	if idx < 1 || idx > store.MaxStatusIndex || (st != store.StatusValid && st != store.StatusSuspended) {
		return fmt.Errorf("set status %d to %d: %w", idx, st, store.ErrInvalid)
	}
	ctx, cancel := s.op(ctx)
	defer cancel()
	keys := []string{s.statusBitsKey(), s.statusEntriesKey()}
	if err := setStatusScript.Run(ctx, s.rdb, keys, idx, entryOffset(idx), int(st)).Err(); err != nil {
		return fail(ctx, fmt.Sprintf("set status %d", idx), err)
	}
	return nil
}

// pokeStatus writes entry idx as v (any 2-bit value, 3 included) with none
// of SetStatus's rules: for the layout test of storetest.StatusLayout.
func (s *Store) pokeStatus(ctx context.Context, idx int64, v uint8) error {
	return s.rdb.BitField(ctx, s.statusEntriesKey(), "SET", "u2", entryOffset(idx), v&3).Err()
}

// StatusList implements store.Store: counter, bitmap and entries in one
// MGET (one slot); the entries as stored, with every index the bitmap
// revokes made INVALID.
func (s *Store) StatusList(ctx context.Context) (store.StatusList, error) {
	ctx, cancel := s.op(ctx)
	defer cancel()
	vals, err := s.rdb.MGet(ctx, s.statusNextKey(), s.statusBitsKey(), s.statusEntriesKey()).Result()
	if err != nil {
		return store.StatusList{}, fail(ctx, "status list", err)
	}
	var out store.StatusList
	if v, ok := vals[0].(string); ok {
		if out.Allocated, err = strconv.ParseInt(v, 10, 64); err != nil {
			return store.StatusList{}, fmt.Errorf("status list: counter: %w", err)
		}
	}
	entries, _ := vals[2].(string)
	revoked, _ := vals[1].(string)
	out.Statuses = make([]byte, max(len(entries), 2*len(revoked)))
	copy(out.Statuses, entries)
	for i := 0; i < len(revoked); i++ {
		for b := bits.Reverse8(revoked[i]); b != 0; b &= b - 1 {
			idx := int64(i)*8 + int64(bits.TrailingZeros8(b))
			shift := uint(idx%4) * 2
			out.Statuses[idx/4] = out.Statuses[idx/4]&^(3<<shift) | byte(store.StatusInvalid)<<shift
		}
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
