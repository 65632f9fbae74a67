// Package redistest is the Redis keygate's tests share: the one that
// KEYGATE_TEST_REDIS_URL names (default redis://127.0.0.1:6379/15), a
// random key prefix per test so tests never see each other's keys, and
// those keys deleted when the test ends. Without a Redis a test skips with
// a message saying so, except under CI=true, where a missing Redis is a
// broken CI set-up and the test fails. For tests only, like net/http/httptest.
package redistest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"
)

// URL is the test Redis.
func URL() string {
	if u := os.Getenv("KEYGATE_TEST_REDIS_URL"); u != "" {
		return u
	}
	return "redis://127.0.0.1:6379/15"
}

// NewClient returns a new client on the test Redis, closed when the test
// ends. It does not check that Redis answers: call Require once for that.
func NewClient(t testing.TB) *goredis.Client {
	t.Helper()
	opt, err := goredis.ParseURL(URL())
	if err != nil {
		t.Fatalf("KEYGATE_TEST_REDIS_URL: %v", err)
	}
	c := goredis.NewClient(opt)
	t.Cleanup(func() { c.Close() })
	return c
}

// Require returns a client on the test Redis once it answers; otherwise
// the test skips loudly (fails under CI=true).
func Require(t testing.TB) *goredis.Client {
	t.Helper()
	c := NewClient(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := c.Ping(ctx).Err(); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("no Redis at %s (required under CI): %v", URL(), err)
		}
		t.Skipf("SKIPPING: no Redis at %s (%v); start one or set KEYGATE_TEST_REDIS_URL", URL(), err)
	}
	return c
}

// RandomPrefix returns a fresh key prefix, "kgtest:" then tag and ":" when
// tag is set, then random hex and ":". Nothing deletes its keys: see Prefix.
func RandomPrefix(t testing.TB, tag string) string {
	t.Helper()
	b := make([]byte, 6)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	if tag != "" {
		tag += ":"
	}
	return "kgtest:" + tag + hex.EncodeToString(b) + ":"
}

// Prefix returns a fresh key prefix whose keys are deleted when the test
// ends, after every cleanup registered later (servers, stores) has run.
func Prefix(t testing.TB, c goredis.UniversalClient, tag string) string {
	t.Helper()
	prefix := RandomPrefix(t, tag)
	Cleanup(t, c, prefix)
	return prefix
}

// Cleanup deletes every key under prefix when the test ends, on every
// master when c is a Cluster client.
func Cleanup(t testing.TB, c goredis.UniversalClient, prefix string) {
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
