package redis

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	goredis "github.com/redis/go-redis/v9"

	"github.com/keygate/keygate/store"
)

// singletonScript: SET NX, then return whatever is stored.
var singletonScript = goredis.NewScript(`
redis.call('SET', KEYS[1], ARGV[1], 'NX')
return redis.call('GET', KEYS[1])
`)

// CreateSingleton implements store.Store.
func (s *Store) CreateSingleton(ctx context.Context, name string, value []byte) ([]byte, error) {
	if len(value) == 0 {
		return nil, fmt.Errorf("create singleton %s: %w: empty value", name, store.ErrInvalid)
	}
	ctx, cancel := s.op(ctx)
	defer cancel()
	v, err := singletonScript.Run(ctx, s.rdb, []string{s.singletonKey(name)}, value).Text()
	if err != nil {
		return nil, fail(ctx, "create singleton "+name, err)
	}
	return []byte(v), nil
}

// swapSingletonScript: GET, compare, SET; -1 when nothing is stored.
var swapSingletonScript = goredis.NewScript(`
local cur = redis.call('GET', KEYS[1])
if not cur then return -1 end
if cur ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[2])
return 1
`)

// CompareAndSwapSingleton implements store.Store: one script, so the
// comparison and the write are one atomic step.
func (s *Store) CompareAndSwapSingleton(ctx context.Context, name string, old, value []byte) (bool, error) {
	if len(value) == 0 {
		return false, fmt.Errorf("swap singleton %s: %w: empty value", name, store.ErrInvalid)
	}
	ctx, cancel := s.op(ctx)
	defer cancel()
	n, err := swapSingletonScript.Run(ctx, s.rdb, []string{s.singletonKey(name)}, old, value).Int()
	if err != nil {
		return false, fail(ctx, "swap singleton "+name, err)
	}
	if n < 0 {
		return false, fmt.Errorf("swap singleton %s: %w", name, store.ErrNotFound)
	}
	return n == 1, nil
}

// SigningKeys implements store.Store.
func (s *Store) SigningKeys(ctx context.Context) (store.SigningKeys, error) {
	ctx, cancel := s.op(ctx)
	defer cancel()
	return s.readSigning(ctx, s.rdb)
}

func (s *Store) readSigning(ctx context.Context, c goredis.Cmdable) (store.SigningKeys, error) {
	b, err := c.Get(ctx, s.signingKey()).Bytes()
	if errors.Is(err, goredis.Nil) {
		return store.SigningKeys{}, nil
	}
	if err != nil {
		return store.SigningKeys{}, fail(ctx, "load signing keys", err)
	}
	var ks store.SigningKeys
	if err := json.Unmarshal(b, &ks); err != nil {
		return store.SigningKeys{}, fmt.Errorf("decode signing keys: %w", err)
	}
	normalizeSigning(&ks)
	return ks, nil
}

func normalizeSigning(ks *store.SigningKeys) {
	one := func(k *store.SigningKey) {
		k.CreatedAt = utc(k.CreatedAt)
		k.SignsFrom = utc(k.SignsFrom)
	}
	if ks.Active != nil {
		one(ks.Active)
	}
	if ks.Next != nil {
		one(ks.Next)
	}
	for i := range ks.Retired {
		one(&ks.Retired[i].SigningKey)
		ks.Retired[i].PublishUntil = utc(ks.Retired[i].PublishUntil)
		ks.Retired[i].RetiredAt = utc(ks.Retired[i].RetiredAt)
	}
}

// UpdateSigningKeys implements store.Store with WATCH/MULTI and retries.
func (s *Store) UpdateSigningKeys(ctx context.Context, update func(store.SigningKeys) (store.SigningKeys, error)) (store.SigningKeys, error) {
	ctx, cancel := s.op(ctx)
	defer cancel()
	out, err := s.updateValue(ctx, s.signingKey(), "signing keys", func(tx *goredis.Tx) ([]byte, error, error) {
		cur, err := s.readSigning(ctx, tx)
		if err != nil {
			return nil, nil, err
		}
		next, err := update(cur)
		if err != nil {
			return nil, err, nil
		}
		b, err := json.Marshal(next)
		return b, nil, err
	})
	if err != nil {
		return store.SigningKeys{}, err
	}
	var ks store.SigningKeys
	if err := json.Unmarshal(out, &ks); err != nil {
		return store.SigningKeys{}, err
	}
	normalizeSigning(&ks)
	return ks, nil
}
