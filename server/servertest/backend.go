package servertest

import (
	"path/filepath"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/keygate/keygate/internal/redistest"
	"github.com/keygate/keygate/store"
	"github.com/keygate/keygate/store/bolt"
	"github.com/keygate/keygate/store/redis"
	"github.com/keygate/keygate/store/storetest"
)

// redisTimeout is the store timeout of the Redis backends: well above a
// loaded CI machine's round trip, well below the HTTP client's timeout.
const redisTimeout = 2 * time.Second

// Backend is the store a keygate under test runs on. The zero value is
// Bolt().
type Backend struct {
	name string
	// open makes fresh, empty data and returns a store on it, plus a
	// function that returns a store on that same data for another instance
	// (a new connection where the backend has connections, else the same
	// store). Whatever open makes is released when the test ends.
	open func(t testing.TB) (first store.Store, another func(testing.TB) store.Store)
}

// Name is a short name for subtest names: bolt, memory, redis or existing.
func (b Backend) Name() string {
	if b.open == nil {
		return "bolt"
	}
	return b.name
}

// Bolt is a bbolt file in the test's temporary directory. Instances share
// the one open store: bbolt locks its file against a second opener.
func Bolt() Backend {
	return Backend{name: "bolt", open: func(t testing.TB) (store.Store, func(testing.TB) store.Store) {
		t.Helper()
		st, err := bolt.Open(filepath.Join(t.TempDir(), "keygate.db"))
		if err != nil {
			t.Fatalf("open bbolt store: %v", err)
		}
		t.Cleanup(func() {
			if err := st.Close(); err != nil {
				t.Errorf("close bbolt store: %v", err)
			}
		})
		return st, func(testing.TB) store.Store { return st }
	}}
}

// Memory is storetest's in-memory reference store, shared by instances.
func Memory() Backend {
	return Backend{name: "memory", open: func(testing.TB) (store.Store, func(testing.TB) store.Store) {
		st := storetest.NewMemStore()
		return st, func(testing.TB) store.Store { return st }
	}}
}

// Redis is the test Redis (see package redistest: it skips loudly without
// one, and fails under CI) under a fresh random prefix whose keys are
// deleted when the test ends. Every instance has its own client.
func Redis() Backend {
	return Backend{name: "redis", open: func(t testing.TB) (store.Store, func(testing.TB) store.Store) {
		t.Helper()
		prefix := redistest.Prefix(t, redistest.Require(t), "")
		return RedisOn(func(t testing.TB) goredis.UniversalClient { return redistest.NewClient(t) }, prefix).open(t)
	}}
}

// RedisOn is Redis under prefix, each instance on a client of its own from
// newClient (a Cluster client for a cluster). The caller owns the clients
// and the prefix: close the one and delete the other when the test ends
// (redistest.NewClient and redistest.Prefix do).
func RedisOn(newClient func(testing.TB) goredis.UniversalClient, prefix string) Backend {
	open := func(t testing.TB) store.Store {
		t.Helper()
		st, err := redis.New(newClient(t), prefix, redisTimeout)
		if err != nil {
			t.Fatalf("redis store on %q: %v", prefix, err)
		}
		t.Cleanup(func() { st.Close() })
		return st
	}
	return Backend{name: "redis", open: func(t testing.TB) (store.Store, func(testing.TB) store.Store) {
		t.Helper()
		return open(t), open
	}}
}

// Existing is st as it is, for a test that opens a store its own way (a
// Redis it kills, a store with a key cache). Every instance uses st; the
// caller closes it.
func Existing(st store.Store) Backend {
	return Backend{name: "existing", open: func(testing.TB) (store.Store, func(testing.TB) store.Store) {
		return st, func(testing.TB) store.Store { return st }
	}}
}
