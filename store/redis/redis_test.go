package redis_test

import (
	"context"
	"testing"
	"time"

	"github.com/keygate/keygate/internal/redistest"
	"github.com/keygate/keygate/store"
	"github.com/keygate/keygate/store/redis"
	"github.com/keygate/keygate/store/storetest"
)

func TestConformance(t *testing.T) {
	c := redistest.Require(t)
	storetest.Run(t, func(t *testing.T) store.Store {
		prefix := redistest.Prefix(t, c, "")
		s, err := redis.New(c, prefix, 2*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		return s
	})
}

func TestOpenURL(t *testing.T) {
	redistest.Require(t)
	ctx := context.Background()
	s, err := redis.Open(ctx, redis.Options{URL: redistest.URL(), Prefix: redistest.RandomPrefix(t, "")})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Ping(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestExportConformance(t *testing.T) {
	c := redistest.Require(t)
	storetest.RunExport(t, func(t *testing.T) storetest.ExportStore {
		s, err := redis.New(c, redistest.Prefix(t, c, ""), 2*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		return s
	})
}
