package redis

// The secret index (store.Store.KeyBySecretHash):
//
//	Psx:<4 hex>                             the compact layout's buckets
//	                                        of entries (compact.go)
//	Psecret:<hex of HMAC(pepper, secret)>   string: the client ID whose
//	                                        current or previous secret it is
//	P{kg}:secret:indexed                    string "1": the index holds every
//	                                        key (the schema 1 migration ran: schema.go)
//
// An entry has no hash tag: it is found by the hash alone, so it cannot
// share the key's slot (the key is filed under its team's tag), and on
// Cluster no MULTI or script can write both. So an entry is written before
// the key that needs it (create, bulk create, an update that adds a hash)
// and removed after the key let go of it (an update that drops a hash,
// delete), and KeyBySecretHash checks the key's current hashes: whatever
// fails between the two steps leaves at most an entry that names a key
// without that hash, which finds nothing. Removal is conditional on the
// entry still naming the key (a script on the entry's one key).

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"

	goredis "github.com/redis/go-redis/v9"

	"github.com/keygate/keygate/store"
)

func (s *Store) secretKey(hash []byte) string {
	return s.prefix + "secret:" + hex.EncodeToString(hash)
}

func (s *Store) secretIndexedKey() string { return s.prefix + "{kg}:secret:indexed" }

// dropSecretScript deletes an old-layout index entry only while it names
// the key. KEYS: the entry. ARGV: client ID.
var dropSecretScript = goredis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
`)

// dropBucketSecretScript is dropSecretScript in the compact layout (the
// entry's bucket is another name, in another slot). KEYS: the bucket.
// ARGV: client ID, the entry's field.
var dropBucketSecretScript = goredis.NewScript(`
if redis.call('HGET', KEYS[1], ARGV[2]) == ARGV[1] then return redis.call('HDEL', KEYS[1], ARGV[2]) end
return 0
`)

// writeSecretIndex points each hash at clientID (one pipeline; on Cluster
// go-redis splits it by node), in the compact layout's buckets once that is
// writable (compact.go).
func (s *Store) writeSecretIndex(ctx context.Context, clientID string, hashes [][]byte) error {
	if len(hashes) == 0 {
		return nil
	}
	ctx, cancel := s.op(ctx)
	defer cancel()
	compact := s.writeCompact()
	_, err := s.rdb.Pipelined(ctx, func(p goredis.Pipeliner) error {
		for _, h := range hashes {
			s.queueSecretEntry(ctx, p, compact, h, clientID)
		}
		return nil
	})
	if err != nil {
		return fail(ctx, "write secret index of key "+clientID, err)
	}
	return nil
}

// queueSecretEntry queues the index entry of hash in one layout.
func (s *Store) queueSecretEntry(ctx context.Context, p goredis.Pipeliner, compact bool, hash []byte, clientID string) {
	if compact {
		bucket, field := s.secretBucket(hash)
		p.HSet(ctx, bucket, field, clientID)
	} else {
		p.Set(ctx, s.secretKey(hash), clientID, 0)
	}
}

// dropSecretIndex removes the entries of hashes that still name clientID.
func (s *Store) dropSecretIndex(ctx context.Context, clientID string, hashes [][]byte) error {
	for _, h := range hashes {
		bucket, field := s.secretBucket(h)
		octx, cancel := s.op(ctx)
		err := dropBucketSecretScript.Run(octx, s.rdb, []string{bucket}, clientID, field).Err()
		if err == nil && !s.compactOnly.Load() {
			err = dropSecretScript.Run(octx, s.rdb, []string{s.secretKey(h)}, clientID).Err()
		}
		cancel()
		if err != nil {
			return fail(octx, "drop secret index entry of key "+clientID, err)
		}
	}
	return nil
}

// KeyBySecretHash implements store.Store: the entry (in its bucket, then
// until the migration is done as an old-layout string), then the key it
// names read from Redis (never from the key cache: the check below must
// see the key as stored now), and the key's hashes compared with hash.
func (s *Store) KeyBySecretHash(ctx context.Context, hash []byte) (store.Key, error) {
	bucket, field := s.secretBucket(hash)
	octx, cancel := s.op(ctx)
	id, err := s.rdb.HGet(octx, bucket, field).Result()
	if errors.Is(err, goredis.Nil) && !s.compactOnly.Load() {
		id, err = s.rdb.Get(octx, s.secretKey(hash)).Result()
	}
	cancel()
	if errors.Is(err, goredis.Nil) {
		return store.Key{}, fmt.Errorf("key by secret hash: %w", store.ErrNotFound)
	}
	if err != nil {
		return store.Key{}, fail(octx, "key by secret hash", err)
	}
	k, err := s.readKey(ctx, id)
	if err != nil {
		return store.Key{}, fmt.Errorf("key by secret hash: %w", err)
	}
	if !store.HoldsSecretHash(k, hash) {
		return store.Key{}, fmt.Errorf("key by secret hash: %w (the index entry is stale)", store.ErrNotFound)
	}
	return k, nil
}
