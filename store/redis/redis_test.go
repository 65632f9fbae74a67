package redis_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/keygate/keygate/store"
	"github.com/keygate/keygate/store/redis"
	"github.com/keygate/keygate/store/storetest"
)

// testRedisURL is the Redis the tests use; each test isolates itself with a
// random key prefix and deletes its keys afterwards.
func testRedisURL() string {
	if u := os.Getenv("KEYGATE_TEST_REDIS_URL"); u != "" {
		return u
	}
	return "redis://127.0.0.1:6379/15"
}

// requireRedis returns a client for the test Redis, or skips loudly when
// there is none — except under CI, where a missing Redis is a failure.
func requireRedis(t testing.TB) *goredis.Client {
	t.Helper()
	opt, err := goredis.ParseURL(testRedisURL())
	if err != nil {
		t.Fatalf("KEYGATE_TEST_REDIS_URL: %v", err)
	}
	c := goredis.NewClient(opt)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := c.Ping(ctx).Err(); err != nil {
		c.Close()
		if os.Getenv("CI") == "true" {
			t.Fatalf("no Redis at %s (required under CI): %v", testRedisURL(), err)
		}
		t.Skipf("SKIPPING: no Redis at %s (%v); start one or set KEYGATE_TEST_REDIS_URL", testRedisURL(), err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func randomPrefix(t testing.TB) string {
	b := make([]byte, 6)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return "kgtest:" + hex.EncodeToString(b) + ":"
}

// cleanup deletes every key under prefix.
func cleanup(t testing.TB, c goredis.UniversalClient, prefix string) {
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		del := func(ctx context.Context, c goredis.Cmdable) error {
			iter := c.Scan(ctx, 0, prefix+"*", 1000).Iterator()
			for iter.Next(ctx) {
				c.Del(ctx, iter.Val())
			}
			return iter.Err()
		}
		var err error
		if cc, ok := c.(*goredis.ClusterClient); ok {
			err = cc.ForEachMaster(ctx, func(ctx context.Context, m *goredis.Client) error { return del(ctx, m) })
		} else {
			err = del(ctx, c)
		}
		if err != nil {
			t.Logf("cleanup of %s: %v", prefix, err)
		}
	})
}

func TestConformance(t *testing.T) {
	c := requireRedis(t)
	storetest.Run(t, func(t *testing.T) store.Store {
		prefix := randomPrefix(t)
		cleanup(t, c, prefix)
		s, err := redis.New(c, prefix, 2*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		return s
	})
}

func TestOpenURL(t *testing.T) {
	requireRedis(t)
	ctx := context.Background()
	s, err := redis.Open(ctx, redis.Options{URL: testRedisURL(), Prefix: randomPrefix(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Ping(ctx); err != nil {
		t.Fatal(err)
	}
}
