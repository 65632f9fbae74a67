package bolt

import (
	"context"
	"errors"
	"testing"

	bbolt "go.etcd.io/bbolt"

	"github.com/keygate/keygate/store"
	"github.com/keygate/keygate/store/storetest"
)

// A version-1 file written before the secret index existed (its bucket
// dropped here) gets the index at the next Open, by the migration to
// schema 2.
func TestSecretIndexBuiltOnOpen(t *testing.T) {
	ctx := context.Background()
	s, path := openTemp(t)
	keys := storetest.BulkKeys(t, 2, 2, 1)
	keys[1].PreviousSecretHash = []byte("0123456789abcdef0123456789abcdef")
	if err := s.CreateKeys(ctx, keys); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	db, err := bbolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Update(func(tx *bbolt.Tx) error {
		if err := tx.Bucket(bucketMeta).Put(metaSchema, []byte("1")); err != nil {
			return err
		}
		return tx.DeleteBucket(bucketSecrets)
	}); err != nil {
		t.Fatal(err)
	}
	db.Close()

	s, err = Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for _, k := range keys {
		for _, h := range store.SecretHashes(k) {
			if got, err := s.KeyBySecretHash(ctx, h); err != nil || got.ClientID != k.ClientID {
				t.Fatalf("after reopening, key %s by its hash: %q, %v", k.ClientID, got.ClientID, err)
			}
		}
	}
	if _, err := s.KeyBySecretHash(ctx, []byte("no-such-hash-no-such-hash-no-such")); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("an unknown hash: %v, want ErrNotFound", err)
	}
}
