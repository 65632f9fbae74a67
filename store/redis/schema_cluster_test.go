package redis_test

import (
	"context"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/keygate/keygate/internal/redistest"
	"github.com/keygate/keygate/store"
	"github.com/keygate/keygate/store/redis"
	"github.com/keygate/keygate/store/storetest"
)

// testClusterSchema: on the 3-master cluster, a store from before schema
// versions (keys on every master, no index entries, no version) is migrated
// by Open through the URL, and two instances' compatibility checks agree
// on the writable formats.
func testClusterSchema(t *testing.T, cl *testCluster, cc *goredis.ClusterClient) {
	ctx := context.Background()
	prefix := redistest.Prefix(t, cc, "")
	s, err := redis.New(cc, prefix, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	keys := storetest.BulkKeys(t, 12, 2, 1)
	for _, k := range keys {
		if err := s.CreateKey(ctx, k, 0); err != nil {
			t.Fatal(err)
		}
	}
	err = cc.ForEachMaster(ctx, func(ctx context.Context, c *goredis.Client) error {
		names, err := c.Keys(ctx, prefix+"secret:*").Result()
		if err != nil || len(names) == 0 {
			return err
		}
		for _, n := range names {
			if err := c.Del(ctx, n).Err(); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := cc.Del(ctx, prefix+"{kg}:schema", prefix+"{kg}:secret:indexed").Err(); err != nil {
		t.Fatal(err)
	}

	a := cl.addrs()
	url := "redis://" + a[0] + "?addr=" + a[1] + "&addr=" + a[2]
	open := func(id string, formats ...store.Format) *redis.Store {
		st, err := redis.Open(ctx, redis.Options{URL: url, Prefix: prefix, Schema: redis.SchemaOptions{InstanceID: id, Formats: formats}})
		if err != nil {
			t.Fatalf("Open on the cluster: %v", err)
		}
		t.Cleanup(func() { st.Close() })
		return st
	}
	neu := open("new", "test-a", "test-b")
	if v, err := neu.SchemaVersion(ctx); err != nil || v != 1 {
		t.Fatalf("after Open on the cluster: version %d, %v", v, err)
	}
	for _, k := range keys {
		if got, err := neu.KeyBySecretHash(ctx, k.SecretHash); err != nil || got.ClientID != k.ClientID {
			t.Fatalf("key %s by its hash after the migration: %q, %v", k.ClientID, got.ClientID, err)
		}
	}
	if !neu.Writable("test-b") {
		t.Fatal("alone, the new instance may not write test-b")
	}
	// An older instance joining now is refused: test-b may be in the store.
	if _, err := redis.Open(ctx, redis.Options{URL: url, Prefix: prefix, Schema: redis.SchemaOptions{InstanceID: "old", Formats: []store.Format{"test-a"}}}); err == nil {
		t.Fatal("an instance that cannot read test-b joined after it became writable")
	}
}
