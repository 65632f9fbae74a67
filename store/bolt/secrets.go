package bolt

// The secret index (store.Store.KeyBySecretHash): bucket "secrets",
// HMAC(pepper, secret) → client ID, for every key's current and previous
// secret hash. Each write that changes a key's hashes changes the index in
// the same transaction, so on bbolt the index is never stale; lookups check
// the key all the same, as the contract asks.

import (
	"bytes"
	"context"
	"fmt"

	bbolt "go.etcd.io/bbolt"

	"github.com/keygate/keygate/store"
)

var bucketSecrets = []byte("secrets")

// indexSecrets moves the index from old's hashes to new's (the zero Key
// for none) inside tx. An entry is removed only while it names old's key.
func indexSecrets(tx *bbolt.Tx, old, new store.Key) error {
	b := tx.Bucket(bucketSecrets)
	add, remove := store.SecretIndexChanges(old, new)
	for _, h := range remove {
		if bytes.Equal(b.Get(h), []byte(old.ClientID)) {
			if err := b.Delete(h); err != nil {
				return fmt.Errorf("secret index: %w", err)
			}
		}
	}
	for _, h := range add {
		if err := b.Put(bytes.Clone(h), []byte(new.ClientID)); err != nil {
			return fmt.Errorf("secret index: %w", err)
		}
	}
	return nil
}

// buildSecretIndex creates the index on a file written before it existed:
// the migration to schema 2 (schema.go) calls it in Open's one write
// transaction, so it is all or nothing. A version-1 file written by a
// keygate that already kept the index has the bucket, and nothing is done.
func buildSecretIndex(tx *bbolt.Tx) error {
	if tx.Bucket(bucketSecrets) != nil {
		return nil
	}
	if _, err := tx.CreateBucket(bucketSecrets); err != nil {
		return err
	}
	return tx.Bucket(bucketKeys).ForEach(func(id, v []byte) error {
		k, err := decodeKey(v)
		if err != nil {
			return fmt.Errorf("build secret index: key %s: %w", id, err)
		}
		return indexSecrets(tx, store.Key{}, k)
	})
}

// KeyBySecretHash implements store.Store: one read transaction, the index
// entry and the key it names.
func (s *Store) KeyBySecretHash(ctx context.Context, hash []byte) (store.Key, error) {
	var k store.Key
	err := s.view(ctx, func(tx *bbolt.Tx) error {
		id := tx.Bucket(bucketSecrets).Get(hash)
		if id == nil {
			return store.ErrNotFound
		}
		var err error
		if k, err = getKey(tx, string(id)); err != nil {
			return err
		}
		if !store.HoldsSecretHash(k, hash) {
			return store.ErrNotFound
		}
		return nil
	})
	if err != nil {
		return store.Key{}, fmt.Errorf("key by secret hash: %w", err)
	}
	return k, nil
}
