package redis_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/keygate/keygate/internal/redistest"
	"github.com/keygate/keygate/store"
	"github.com/keygate/keygate/store/redis"
	"github.com/keygate/keygate/store/storetest"
)

// A store written before the secret index existed (its entries and marker
// deleted here) gets them from the schema 1 migration (Migrate); a second
// run writes nothing;
// an entry left stale (a write interrupted between the entry and the key)
// finds nothing.
func TestSecretIndexBackfill(t *testing.T) {
	c := redistest.Require(t)
	ctx := context.Background()
	prefix := redistest.Prefix(t, c, "")
	s, err := redis.New(c, prefix, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	keys := storetest.BulkKeys(t, 3, 2, 1)
	keys[0].PreviousSecretHash = []byte("0123456789abcdef0123456789abcdef")
	for _, k := range keys {
		if err := s.CreateKey(ctx, k, 0); err != nil {
			t.Fatal(err)
		}
	}
	// The state of a store from before the index: no entries, no marker.
	entries, err := c.Keys(ctx, prefix+"secret:*").Result()
	if err != nil || len(entries) != len(keys)+1 {
		t.Fatalf("secret index entries after create: %d (%v), want %d", len(entries), err, len(keys)+1)
	}
	if err := c.Del(ctx, entries...).Err(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.KeyBySecretHash(ctx, keys[1].SecretHash); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("without its entry a key is found: %v", err)
	}

	if err := s.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		for _, h := range store.SecretHashes(k) {
			if got, err := s.KeyBySecretHash(ctx, h); err != nil || got.ClientID != k.ClientID {
				t.Fatalf("after the backfill, key %s by its hash: %q, %v", k.ClientID, got.ClientID, err)
			}
		}
	}
	if n, _ := c.Exists(ctx, prefix+"{kg}:secret:indexed").Result(); n != 1 {
		t.Fatal("the backfill did not mark the index complete")
	}

	// Marked: a second run walks nothing (an entry deleted now stays gone).
	if err := c.Del(ctx, entries[0]).Err(); err != nil {
		t.Fatal(err)
	}
	if err := s.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	if n, _ := c.Exists(ctx, entries[0]).Result(); n != 0 {
		t.Fatal("a second backfill walked the keys again despite the marker")
	}

	// A stale entry (naming a key that does not hold the hash) finds nothing.
	stale := []byte("stale-hash-stale-hash-stale-hash")
	if err := c.Set(ctx, prefix+"secret:"+hexOf(stale), keys[2].ClientID, 0).Err(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.KeyBySecretHash(ctx, stale); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("a stale entry found a key: %v", err)
	}
}

func hexOf(b []byte) string {
	const digits = "0123456789abcdef"
	out := make([]byte, 0, 2*len(b))
	for _, x := range b {
		out = append(out, digits[x>>4], digits[x&15])
	}
	return string(out)
}
