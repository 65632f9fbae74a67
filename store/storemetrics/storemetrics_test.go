package storemetrics_test

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"testing"
	"time"

	"github.com/keygate/keygate/internal/redistest"
	"github.com/keygate/keygate/metrics"
	"github.com/keygate/keygate/metrics/metricstest"
	"github.com/keygate/keygate/store"
	"github.com/keygate/keygate/store/bolt"
	"github.com/keygate/keygate/store/redis"
	"github.com/keygate/keygate/store/storemetrics"
	"github.com/keygate/keygate/store/storetest"
)

func scrape(t *testing.T, m *metrics.Metrics) metricstest.Scrape {
	t.Helper()
	w := httptest.NewRecorder()
	m.Handler().ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	return metricstest.Parse(t, bytes.NewReader(w.Body.Bytes()))
}

func openBolt(t *testing.T) *bolt.Store {
	t.Helper()
	b, err := bolt.Open(filepath.Join(t.TempDir(), "keygate.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

// A measured store keeps the whole store contract, the bulk one included.
func TestConformance(t *testing.T) {
	t.Run("memory", func(t *testing.T) {
		storetest.Run(t, func(t *testing.T) store.Store {
			return storemetrics.Wrap(storetest.NewMemStore(), "memory", metrics.New(metrics.BuildInfo{}))
		})
	})
	t.Run("bolt", func(t *testing.T) {
		storetest.Run(t, func(t *testing.T) store.Store {
			return storemetrics.Wrap(openBolt(t), "bolt", metrics.New(metrics.BuildInfo{}))
		})
	})
	t.Run("bolt bulk", func(t *testing.T) {
		storetest.RunBulk(t, func(t *testing.T) storetest.BulkStore {
			return storemetrics.Wrap(openBolt(t), "bolt", metrics.New(metrics.BuildInfo{})).(storetest.BulkStore)
		})
	})
}

// The wrapper has exactly the optional interfaces of the store inside.
func TestOptionalInterfacesForwarded(t *testing.T) {
	m := metrics.New(metrics.BuildInfo{})
	type live interface{ KeyCacheLive() bool }

	mem := storemetrics.Wrap(storetest.NewMemStore(), "memory", m)
	_, memBulk := any(storetest.NewMemStore()).(store.BulkLoader)
	if _, ok := mem.(store.BulkLoader); ok != memBulk {
		t.Errorf("memory: wrapper is a BulkLoader: %v, the store: %v", ok, memBulk)
	}
	if _, ok := mem.(live); ok {
		t.Error("memory: wrapper claims a key cache")
	}
	if _, ok := storemetrics.Wrap(openBolt(t), "bolt", m).(store.BulkLoader); !ok {
		t.Error("bolt: the wrapper hides store.BulkLoader")
	}

	c := redistest.Require(t)
	prefix := redistest.Prefix(t, c, "")
	rs, err := redis.New(c, prefix, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rs.Close() })
	w := storemetrics.Wrap(rs, "redis", m)
	l, ok := w.(live)
	if !ok {
		t.Fatal("redis: the wrapper hides KeyCacheLive")
	}
	if l.KeyCacheLive() != rs.KeyCacheLive() {
		t.Error("redis: KeyCacheLive not forwarded")
	}
	if _, ok := w.(store.BulkLoader); !ok {
		t.Error("redis: the wrapper hides store.BulkLoader")
	}
}

// Each call is observed once under its operation and backend; a not-found
// answer counts as ok, a failing call as error.
func TestCallsObserved(t *testing.T) {
	m := metrics.New(metrics.BuildInfo{})
	st := storemetrics.Wrap(openBolt(t), "bolt", m)
	ctx := context.Background()
	if _, err := st.GetKey(ctx, storetest.ID("team-x", "absent")); err == nil {
		t.Fatal("GetKey of an absent key succeeded")
	}
	if err := st.Ping(ctx); err != nil {
		t.Fatal(err)
	}
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	_, _ = st.ListKeys(cancelled, "team-x") // may or may not fail on bolt; counted either way
	s := scrape(t, m)
	for _, c := range []struct {
		labels map[string]string
		want   float64
	}{
		{map[string]string{"operation": "get_key", "backend": "bolt", "result": "ok"}, 1},
		{map[string]string{"operation": "get_key", "backend": "bolt", "result": "error"}, 0},
		{map[string]string{"operation": "ping", "backend": "bolt"}, 1},
		{map[string]string{"operation": "list_keys", "backend": "bolt"}, 1},
	} {
		if got := s.Value("keygate_store_operation_duration_seconds", c.labels); got != c.want {
			t.Errorf("keygate_store_operation_duration_seconds%v count %v, want %v", c.labels, got, c.want)
		}
	}
}
