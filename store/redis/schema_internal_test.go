package redis

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/keygate/keygate/internal/redistest"
	"github.com/keygate/keygate/store"
	"github.com/keygate/keygate/store/storetest"
)

// instance is one keygate's store on the shared prefix, with its own
// schema options (an older build announces fewer formats).
func instance(t *testing.T, c goredis.UniversalClient, prefix string, o SchemaOptions) *Store {
	t.Helper()
	s, err := New(c, prefix, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	s.SetSchemaOptions(o)
	return s
}

// preVersionStore writes keys, then removes what a keygate that predates
// schema versions and the secret index would not have written: the
// version record, the index entries and their marker.
func preVersionStore(t *testing.T, c goredis.UniversalClient, prefix string, n int) []store.Key {
	t.Helper()
	ctx := context.Background()
	s := instance(t, c, prefix, SchemaOptions{})
	keys := storetest.BulkKeys(t, 2, n/2, 0)
	for _, k := range keys {
		if err := s.CreateKey(ctx, k, 0); err != nil {
			t.Fatal(err)
		}
	}
	entries, err := c.Keys(ctx, prefix+"secret:*").Result()
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Del(ctx, append(entries, s.schemaKey(), s.secretIndexedKey())...).Err(); err != nil {
		t.Fatal(err)
	}
	return keys
}

// TestMigrationResumes: a migration that fails half-way (after two of its
// batches) leaves the version at 0 and its progress recorded; the next run,
// by another instance, starts after the last batch done and completes:
// every key is written exactly once over both runs, and the version is 1.
func TestMigrationResumes(t *testing.T) {
	c := redistest.Require(t)
	ctx := context.Background()
	prefix := redistest.Prefix(t, c, "")
	keys := preVersionStore(t, c, prefix, 10)

	var mu sync.Mutex
	written := map[string]int{}
	boom := errors.New("injected failure")
	hook := func(failAt int) func([]string) error {
		calls := 0
		return func(ids []string) error {
			mu.Lock()
			defer mu.Unlock()
			if calls++; calls == failAt {
				return boom
			}
			for _, id := range ids {
				written[id]++
			}
			return nil
		}
	}

	a := instance(t, c, prefix, SchemaOptions{InstanceID: "a"})
	a.compat.batch, a.compat.hook = 3, hook(3)
	if err := a.Migrate(ctx); !errors.Is(err, boom) {
		t.Fatalf("first run: %v, want the injected failure", err)
	}
	if v, err := a.SchemaVersion(ctx); err != nil || v != 0 {
		t.Fatalf("after the failed run: version %d, %v; want 0", v, err)
	}
	prog, err := c.HGetAll(ctx, a.migrationKey()).Result()
	if err != nil || prog["step"] != "secret-index" || len(written) != 6 {
		t.Fatalf("progress after two batches: %v, %v; %d keys written, want 6", prog, err, len(written))
	}
	if n, _ := c.Exists(ctx, a.leaseKey()).Result(); n != 0 {
		t.Fatal("the failed run kept the lease")
	}

	b := instance(t, c, prefix, SchemaOptions{InstanceID: "b"})
	b.compat.batch, b.compat.hook = 3, hook(0)
	if err := b.Migrate(ctx); err != nil {
		t.Fatalf("second run: %v", err)
	}
	if v, err := b.SchemaVersion(ctx); err != nil || v != 1 {
		t.Fatalf("after the second run: version %d, %v; want 1", v, err)
	}
	for _, k := range keys {
		if written[k.ClientID] != 1 {
			t.Errorf("key %s written %d times over both runs, want once", k.ClientID, written[k.ClientID])
		}
		if got, err := b.KeyBySecretHash(ctx, k.SecretHash); err != nil || got.ClientID != k.ClientID {
			t.Errorf("key %s by its hash after the migration: %q, %v", k.ClientID, got.ClientID, err)
		}
	}
	if n, _ := c.Exists(ctx, b.migrationKey(), b.leaseKey()).Result(); n != 0 {
		t.Fatalf("%d of progress and lease left after the migration", n)
	}
	// Done: a third run does nothing.
	b.compat.hook = func([]string) error { t.Error("a migrated store was walked again"); return nil }
	b.compat.migrated = false
	if err := b.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
}

// TestMigrationLease: while another instance holds the lease, Migrate
// leaves the store alone (and says nothing is wrong); once the lease is
// gone, the next Check migrates.
func TestMigrationLease(t *testing.T) {
	c := redistest.Require(t)
	ctx := context.Background()
	prefix := redistest.Prefix(t, c, "")
	keys := preVersionStore(t, c, prefix, 4)
	s := instance(t, c, prefix, SchemaOptions{InstanceID: "b"})
	if err := c.Set(ctx, s.leaseKey(), "a", time.Minute).Err(); err != nil {
		t.Fatal(err)
	}
	s.compat.hook = func([]string) error { t.Error("migrated while another instance held the lease"); return nil }
	if err := s.Check(ctx); err != nil {
		t.Fatal(err)
	}
	if v, _ := s.SchemaVersion(ctx); v != 0 {
		t.Fatalf("version %d while another instance holds the lease, want 0", v)
	}
	s.compat.hook = nil
	c.Del(ctx, s.leaseKey()) // a's lease expired
	if err := s.Check(ctx); err != nil {
		t.Fatal(err)
	}
	if v, _ := s.SchemaVersion(ctx); v != 1 {
		t.Fatalf("version %d after the lease expired and a Check, want 1", v)
	}
	if _, err := s.KeyBySecretHash(ctx, keys[0].SecretHash); err != nil {
		t.Fatal(err)
	}
}

// TestNewerSchemaRefusedRedis: Open refuses a store of a newer version with
// a message naming both, registers no heartbeat and writes nothing.
func TestNewerSchemaRefusedRedis(t *testing.T) {
	c := redistest.Require(t)
	ctx := context.Background()
	prefix := redistest.Prefix(t, c, "")
	if err := c.Set(ctx, prefix+"{kg}:schema", "4", 0).Err(); err != nil {
		t.Fatal(err)
	}
	_, err := Open(ctx, Options{URL: redistest.URL(), Prefix: prefix})
	want := "open redis store at " + redact(redistest.URL()) + ": the store has schema version 4, newer than this keygate's 3: run the keygate release that wrote it (or a later one); see the upgrade and rollback procedure in README.md"
	if err == nil || err.Error() != want || !errors.Is(err, store.ErrNewerSchema) {
		t.Fatalf("Open of a schema 4 store: %v\nwant: %s", err, want)
	}
	names, _ := c.Keys(ctx, prefix+"*").Result()
	if len(names) != 1 {
		t.Fatalf("the refused Open wrote: %v", names)
	}
}

// TestMixedVersions: an older instance (reading format a) and a newer one
// (a and b) on one Redis. b is not writable while the older one's
// heartbeat lives, however often the newer one checks; it becomes writable
// once the heartbeat expired (or the older one left), and from then on the
// older build is refused, at start and at its next Check.
func TestMixedVersions(t *testing.T) {
	for _, how := range []string{"expired", "left"} {
		t.Run(how, func(t *testing.T) {
			c := redistest.Require(t)
			ctx := context.Background()
			prefix := redistest.Prefix(t, c, "")
			var mu sync.Mutex
			now := time.Unix(1_800_000_000, 0)
			clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
			advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
			ttl := 30 * time.Second
			oldOpts := SchemaOptions{InstanceID: "old", Formats: []store.Format{"test-a"}, Now: clock, HeartbeatTTL: ttl}
			old := instance(t, c, prefix, oldOpts)
			neu := instance(t, c, prefix, SchemaOptions{InstanceID: "new", Formats: []store.Format{"test-a", "test-b"}, Now: clock, HeartbeatTTL: ttl})
			for _, s := range []*Store{old, neu} {
				if err := s.Check(ctx); err != nil {
					t.Fatal(err)
				}
			}
			for i := 0; i < 5; i++ { // both alive: 5 s checks, well inside the TTL
				if !neu.Writable("test-a") || neu.Writable("test-b") {
					t.Fatalf("check %d with the old instance alive: test-a %v, test-b %v; want true, false", i, neu.Writable("test-a"), neu.Writable("test-b"))
				}
				advance(5 * time.Second)
				for _, s := range []*Store{old, neu} {
					if err := s.Check(ctx); err != nil {
						t.Fatal(err)
					}
				}
			}
			if neu.Writable("test-b") {
				t.Fatal("test-b writable while the old instance is alive")
			}
			// The old instance stops checking: gone, or only silent.
			if how == "left" {
				if err := old.Leave(ctx); err != nil {
					t.Fatal(err)
				}
			} else {
				advance(ttl - time.Second)
				if err := neu.Check(ctx); err != nil || neu.Writable("test-b") {
					t.Fatalf("before the old heartbeat expired: test-b writable %v (%v)", neu.Writable("test-b"), err)
				}
				advance(2 * time.Second)
			}
			if err := neu.Check(ctx); err != nil || !neu.Writable("test-b") {
				t.Fatalf("the old instance gone: test-b writable %v (%v), want true", neu.Writable("test-b"), err)
			}
			if got, _ := c.SMembers(ctx, neu.formatsKey()).Result(); !slices.Equal(sorted(got), []string{"test-a", "test-b"}) {
				t.Fatalf("the store's formats: %v", got)
			}

			// The old build now: its next Check refuses and drops what it
			// could write; a start of it is refused with the formats named.
			err := old.Check(ctx)
			var fe *store.FormatError
			if !errors.As(err, &fe) || !slices.Equal(fe.Missing, []store.Format{"test-b"}) || old.Writable("test-a") {
				t.Fatalf("the old instance's Check: %v (test-a writable %v)", err, old.Writable("test-a"))
			}
			_, err = Open(ctx, Options{URL: redistest.URL(), Prefix: prefix, Schema: oldOpts})
			want := "the store may hold records in format test-b, which this keygate cannot read"
			if err == nil || !errors.Is(err, store.ErrUnreadableFormat) || !strings.Contains(err.Error(), want) {
				t.Fatalf("Open by the old build: %v, want %q", err, want)
			}
			if n, _ := c.ZScore(ctx, neu.instancesKey(), "old").Result(); n != 0 {
				t.Fatal("the refused old instance has a heartbeat")
			}
		})
	}
}

func sorted(s []string) []string { slices.Sort(s); return s }

// TestRaiseSchemaRedis: opening a version-1 store leaves it at 1 (so it can
// still go back to the previous release); RaiseSchema(SchemaLevelAdminRoles)
// makes it 2, a lower level never lowers it, and a keygate that knows only
// version 1 then refuses the store at start with store.SchemaError.
func TestRaiseSchemaRedis(t *testing.T) {
	c := redistest.Require(t)
	ctx := context.Background()
	prefix := redistest.Prefix(t, c, "")
	open := func() (*Store, error) {
		return Open(ctx, Options{URL: redistest.URL(), Prefix: prefix})
	}
	version := func() string {
		v, err := c.Get(ctx, prefix+"{kg}:schema").Result()
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	for range 2 {
		s, err := open()
		if err != nil {
			t.Fatal(err)
		}
		s.Close()
		if v := version(); v != "1" {
			t.Fatalf("after Open: schema version %s, want 1 (opening must not raise it)", v)
		}
	}
	s, err := open()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.RaiseSchema(ctx, store.SchemaLevelAdminRoles); err != nil {
		t.Fatal(err)
	}
	if v := version(); v != "2" {
		t.Fatalf("after RaiseSchema(%d): version %s, want 2", store.SchemaLevelAdminRoles, v)
	}
	if err := s.RaiseSchema(ctx, 0); err != nil {
		t.Fatal(err)
	}
	if v := version(); v != "2" {
		t.Fatalf("after RaiseSchema(0): version %s, want 2 (never down)", v)
	}
	if err := s.RaiseSchema(ctx, store.SchemaLevelKeyPolicy+1); !errors.Is(err, store.ErrInvalid) {
		t.Fatalf("RaiseSchema(%d), a level this build does not know: %v, want ErrInvalid", store.SchemaLevelKeyPolicy+1, err)
	}
	if v := version(); v != "2" {
		t.Fatalf("after the refused RaiseSchema: version %s", v)
	}
	s2, err := open()
	if err != nil {
		t.Fatalf("this build opening the raised store: %v", err)
	}
	s2.Close()

	// The previous release knew version 1.
	known := schemaKnown
	defer func() { schemaKnown = known }()
	schemaKnown = 1
	_, err = open()
	var se *store.SchemaError
	if !errors.As(err, &se) || se.Store != 2 || se.Known != 1 {
		t.Fatalf("a version-1 keygate opening a version-2 store: %v, want a store.SchemaError{2, 1}", err)
	}

	// Key policies: version 3, which the release before (2) refuses.
	schemaKnown = known
	if err := s.RaiseSchema(ctx, store.SchemaLevelKeyPolicy); err != nil {
		t.Fatal(err)
	}
	if v := version(); v != "3" {
		t.Fatalf("after RaiseSchema(%d): version %s, want 3", store.SchemaLevelKeyPolicy, v)
	}
	schemaKnown = 2
	if _, err = open(); !errors.As(err, &se) || se.Store != 3 || se.Known != 2 {
		t.Fatalf("a version-2 keygate opening a version-3 store: %v, want a store.SchemaError{3, 2}", err)
	}
}

// TestRaiseSchemaConcurrent: raises from several instances at once leave
// version 2, never anything else (on a migrated store, as Open leaves it).
func TestRaiseSchemaConcurrent(t *testing.T) {
	c := redistest.Require(t)
	ctx := context.Background()
	prefix := redistest.Prefix(t, c, "")
	if err := c.Set(ctx, prefix+"{kg}:schema", "1", 0).Err(); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for i := range 8 {
		s := instance(t, c, prefix, SchemaOptions{})
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- s.RaiseSchema(ctx, i%2)
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if v, _ := c.Get(ctx, prefix+"{kg}:schema").Result(); v != "2" {
		t.Fatalf("after concurrent raises: version %q, want 2", v)
	}
}
