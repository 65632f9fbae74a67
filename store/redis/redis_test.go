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

// TestConformanceTeamRegistry runs the suite on stores whose team registry
// is built (a repair walk has run), so Teams reads the registry.
func TestConformanceTeamRegistry(t *testing.T) {
	c := redistest.Require(t)
	storetest.Run(t, func(t *testing.T) store.Store {
		s, err := redis.New(c, redistest.Prefix(t, c, ""), 2*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if r, err := s.RepairTeams(context.Background()); err != nil || !r.RegistryComplete {
			t.Fatalf("repair walk of an empty store: %+v, %v", r, err)
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

// TestOpenReadOnlyWritesNothing: Open writes the secret index's marker on
// a prefix that lacks it; with ReadOnly (keygate store export) it writes
// nothing at all.
func TestOpenReadOnlyWritesNothing(t *testing.T) {
	c := redistest.Require(t)
	ctx := context.Background()
	count := func(prefix string) int {
		n := 0
		iter := c.Scan(ctx, 0, prefix+"*", 500).Iterator()
		for iter.Next(ctx) {
			n++
		}
		if err := iter.Err(); err != nil {
			t.Fatal(err)
		}
		return n
	}
	for _, readOnly := range []bool{true, false} {
		prefix := redistest.Prefix(t, c, "")
		s, err := redis.Open(ctx, redis.Options{URL: redistest.URL(), Prefix: prefix, ReadOnly: readOnly})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.Singletons(ctx); err != nil {
			t.Fatal(err)
		}
		s.Close()
		if n := count(prefix); readOnly && n != 0 {
			t.Errorf("ReadOnly Open wrote %d names under %s", n, prefix)
		} else if !readOnly && n == 0 {
			t.Error("Open wrote no secret index marker: this test no longer shows what ReadOnly spares")
		}
	}
}

// TestConformanceCompact runs the suite on stores that write the compact
// layout (compact.go): "dual" right after the format became writable
// (reads look in both layouts), "migrated" once the migration found
// nothing to move (reads look only in buckets).
func TestConformanceCompact(t *testing.T) {
	c := redistest.Require(t)
	for _, migrated := range []bool{false, true} {
		name := map[bool]string{false: "dual", true: "migrated"}[migrated]
		t.Run(name, func(t *testing.T) {
			storetest.Run(t, func(t *testing.T) store.Store {
				return compactStore(t, c, redistest.Prefix(t, c, ""), migrated)
			})
		})
	}
}

// compactStore is a store on prefix whose compatibility check made the
// compact layout writable and, with migrated, whose migration is done
// (its clock moved past the grace).
func compactStore(t *testing.T, c goredis.UniversalClient, prefix string, migrated bool) *redis.Store {
	t.Helper()
	ctx := context.Background()
	s, err := redis.New(c, prefix, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	s.SetSchemaOptions(redis.SchemaOptions{Now: func() time.Time { return now }})
	if err := s.Check(ctx); err != nil {
		t.Fatal(err)
	}
	if !s.Writable(redis.FormatCompactKeys) {
		t.Fatal("the compact layout is not writable after a check by the only instance")
	}
	if migrated {
		now = now.Add(redis.DefaultHeartbeatTTL)
		if err := s.Check(ctx); err != nil {
			t.Fatal(err)
		}
		if !s.CompactOnly() {
			t.Fatal("the migration of an empty store did not finish")
		}
	}
	t.Cleanup(func() { s.Close() })
	return s
}
