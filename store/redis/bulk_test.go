package redis_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/keygate/keygate/credential"
	"github.com/keygate/keygate/store"
	"github.com/keygate/keygate/store/redis"
)

// bulkKeys makes perTeam keys for each of teams teams ("bulk-000001", …)
// plus admins admin keys, all with distinct contents and times at Redis's
// millisecond precision.
func bulkKeys(t *testing.T, teams, perTeam, admins int) []store.Key {
	t.Helper()
	base := time.Now().UTC().Truncate(time.Millisecond)
	var out []store.Key
	add := func(team string, i int) {
		id, err := credential.NewClientID(team)
		if err != nil {
			t.Fatal(err)
		}
		hash := make([]byte, 32)
		rand.Read(hash)
		k := store.Key{
			ClientID:    id,
			TeamID:      team,
			Name:        fmt.Sprintf("bulk %d", i),
			Permissions: []string{"p1", fmt.Sprintf("p%d", i%7)},
			CreatedAt:   base.Add(time.Duration(i) * time.Millisecond),
			SecretHash:  hash,
		}
		if i%3 == 0 {
			k.LastUsedAt = base.Add(time.Hour)
		}
		out = append(out, k)
	}
	for tm := 1; tm <= teams; tm++ {
		for j := 0; j < perTeam; j++ {
			add(fmt.Sprintf("bulk-%06d", tm), len(out))
		}
	}
	for j := 0; j < admins; j++ {
		add("", len(out))
	}
	return out
}

func sameKey(want, got store.Key) bool {
	return got.ClientID == want.ClientID && got.TeamID == want.TeamID && got.Name == want.Name &&
		slices.Equal(got.Permissions, want.Permissions) &&
		bytes.Equal(got.SecretHash, want.SecretHash) && bytes.Equal(got.PreviousSecretHash, want.PreviousSecretHash) &&
		got.CreatedAt.Equal(want.CreatedAt) && got.LastUsedAt.Equal(want.LastUsedAt) &&
		got.PreviousSecretExpiresAt.Equal(want.PreviousSecretExpiresAt) && got.SecretRotatedAt.Equal(want.SecretRotatedAt) &&
		got.StatusIndex == want.StatusIndex && got.CreatedAt.Location() == time.UTC
}

// parallel runs fn(i) for i in [0, n) on a few goroutines (each call is a
// Redis round trip) and returns the first error.
func parallel(n int, fn func(i int) error) error {
	var next atomic.Int64
	var mu sync.Mutex
	var first error
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				if err := fn(i); err != nil {
					mu.Lock()
					if first == nil {
						first = err
					}
					mu.Unlock()
					next.Store(int64(n)) // stop the others
					return
				}
			}
		})
	}
	wg.Wait()
	return first
}

func newBulkStore(t *testing.T, c goredis.UniversalClient) *redis.Store {
	t.Helper()
	prefix := randomPrefix(t)
	cleanup(t, c, prefix)
	s, err := redis.New(c, prefix, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestBulkCreateKeys(t *testing.T) {
	ctx := context.Background()
	s := newBulkStore(t, requireRedis(t))

	var prev int64
	for range 3 {
		var err error
		if prev, err = s.NextStatusIndex(ctx); err != nil {
			t.Fatal(err)
		}
	}

	keys := bulkKeys(t, 4990, 5, 50) // 25 000 keys
	type span struct{ first, n int64 }
	var spans []span
	for start, size := 0, 10000; start < len(keys); start += size {
		batch := keys[start:min(start+size, len(keys))]
		first, err := s.NextStatusIndices(ctx, len(batch))
		if err != nil {
			t.Fatal(err)
		}
		spans = append(spans, span{first, int64(len(batch))})
		for i := range batch {
			batch[i].StatusIndex = first + int64(i)
		}
		if err := s.CreateKeys(ctx, batch); err != nil {
			t.Fatal(err)
		}
	}
	if len(spans) != 3 {
		t.Fatalf("%d calls, want 3", len(spans))
	}
	for i, sp := range spans {
		if sp.first <= prev {
			t.Fatalf("span %d starts at %d, not beyond the last allocated index %d", i, sp.first, prev)
		}
		prev = sp.first + sp.n - 1
	}
	next, err := s.NextStatusIndex(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if next != prev+1 {
		t.Fatalf("NextStatusIndex after the bulk allocations = %d, want %d", next, prev+1)
	}
	if sl, err := s.StatusList(ctx); err != nil || sl.Allocated != next {
		t.Fatalf("StatusList.Allocated = %d (%v), want %d", sl.Allocated, err, next)
	}

	err = parallel(len(keys), func(i int) error {
		want := keys[i]
		got, err := s.GetKey(ctx, want.ClientID)
		if err != nil {
			return err
		}
		if !sameKey(want, got) {
			return fmt.Errorf("key %s:\n got  %+v\n want %+v", want.ClientID, got, want)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}

	byTeam := map[string][]store.Key{}
	var teams []string
	for _, k := range keys {
		if _, ok := byTeam[k.TeamID]; !ok {
			teams = append(teams, k.TeamID)
		}
		byTeam[k.TeamID] = append(byTeam[k.TeamID], k)
	}
	err = parallel(len(teams), func(i int) error {
		want := byTeam[teams[i]]
		got, err := s.ListKeys(ctx, teams[i])
		if err != nil {
			return err
		}
		if len(got) != len(want) {
			return fmt.Errorf("team %q lists %d keys, want %d", teams[i], len(got), len(want))
		}
		for j := range want { // bulkKeys made them oldest first
			if !sameKey(want[j], got[j]) {
				return fmt.Errorf("team %q key %d: got %+v, want %+v", teams[i], j, got[j], want[j])
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestBulkCreateKeysRefusals(t *testing.T) {
	ctx := context.Background()
	s := newBulkStore(t, requireRedis(t))
	existing := bulkKeys(t, 1, 1, 0)[0]
	if err := s.CreateKey(ctx, existing, 0); err != nil {
		t.Fatal(err)
	}
	fresh := bulkKeys(t, 300, 5, 2) // > one pipeline chunk
	assertNoneWritten := func(what string) {
		t.Helper()
		for _, k := range fresh {
			if _, err := s.GetKey(ctx, k.ClientID); !errors.Is(err, store.ErrNotFound) {
				t.Fatalf("%s: key %s: err %v, want ErrNotFound (nothing of a refused call written)", what, k.ClientID, err)
			}
		}
		got, err := s.ListKeys(ctx, "bulk-000002")
		if err != nil || len(got) != 0 {
			t.Fatalf("%s: team bulk-000002 lists %d keys (%v), want none", what, len(got), err)
		}
	}

	// An existing ID in the second pipeline chunk: refused before any write.
	batch := slices.Concat(fresh[:1200], []store.Key{existing}, fresh[1200:])
	if err := s.CreateKeys(ctx, batch); !errors.Is(err, store.ErrAlreadyExists) {
		t.Fatalf("batch with an existing ID: err %v, want ErrAlreadyExists", err)
	}
	assertNoneWritten("existing ID")
	if got, err := s.GetKey(ctx, existing.ClientID); err != nil || !sameKey(existing, got) {
		t.Fatalf("existing key after the refused batch: %+v, %v", got, err)
	}

	if err := s.CreateKeys(ctx, slices.Concat(fresh, fresh[3:4])); !errors.Is(err, store.ErrAlreadyExists) {
		t.Fatalf("ID given twice: err %v, want ErrAlreadyExists", err)
	}
	assertNoneWritten("ID twice")

	bad := fresh[7]
	bad.TeamID = "another-team"
	if err := s.CreateKeys(ctx, slices.Concat(fresh[:7], []store.Key{bad}, fresh[8:])); !errors.Is(err, store.ErrInvalid) {
		t.Fatalf("ID without its team tag: err %v, want ErrInvalid", err)
	}
	assertNoneWritten("tag rule")

	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if err := s.CreateKeys(cctx, fresh); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled: err %v, want context.Canceled", err)
	}
	assertNoneWritten("cancelled")

	if _, err := s.NextStatusIndices(ctx, 0); !errors.Is(err, store.ErrInvalid) {
		t.Fatalf("NextStatusIndices(0): err %v, want ErrInvalid", err)
	}
	if err := s.CreateKeys(ctx, nil); err != nil {
		t.Fatalf("empty batch: %v", err)
	}
}

// collideHook creates a key through another store just before the first
// EVALSHA pipeline: a key created between CreateKeys' check and its insert.
type collideHook struct {
	fired  atomic.Bool
	create func() error
	err    error
}

func (h *collideHook) DialHook(next goredis.DialHook) goredis.DialHook { return next }
func (h *collideHook) ProcessHook(next goredis.ProcessHook) goredis.ProcessHook {
	return next
}
func (h *collideHook) ProcessPipelineHook(next goredis.ProcessPipelineHook) goredis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []goredis.Cmder) error {
		if len(cmds) > 0 && strings.EqualFold(cmds[0].Name(), "evalsha") && h.fired.CompareAndSwap(false, true) {
			h.err = h.create()
		}
		return next(ctx, cmds)
	}
}

// TestBulkCreateKeysLateCollision: a key created by someone else after the
// existence check is neither overwritten nor silently accepted; the rest of
// the call is written, as the doc says.
func TestBulkCreateKeysLateCollision(t *testing.T) {
	ctx := context.Background()
	c := requireRedis(t)
	hooked := goredis.NewClient(c.Options())
	t.Cleanup(func() { hooked.Close() })
	prefix := randomPrefix(t)
	cleanup(t, c, prefix)
	plain, err := redis.New(c, prefix, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	s, err := redis.New(hooked, prefix, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}

	keys := bulkKeys(t, 500, 5, 0)
	theirs := keys[1700]
	theirs.Name = "created meanwhile"
	hook := &collideHook{create: func() error { return plain.CreateKey(ctx, theirs, 0) }}
	hooked.AddHook(hook)

	err = s.CreateKeys(ctx, keys)
	if !hook.fired.Load() || hook.err != nil {
		t.Fatalf("hook fired %v, err %v", hook.fired.Load(), hook.err)
	}
	if !errors.Is(err, store.ErrAlreadyExists) {
		t.Fatalf("late collision: err %v, want ErrAlreadyExists", err)
	}
	if !strings.Contains(err.Error(), theirs.ClientID) {
		t.Errorf("error %q does not name the colliding key %s", err, theirs.ClientID)
	}
	got, err := s.GetKey(ctx, theirs.ClientID)
	if err != nil || !sameKey(theirs, got) {
		t.Fatalf("the other writer's key was changed: %+v, %v", got, err)
	}
	for i, k := range keys {
		if i == 1700 {
			continue
		}
		got, err := s.GetKey(ctx, k.ClientID)
		if err != nil || !sameKey(k, got) {
			t.Fatalf("key %d (%s) not written: %+v, %v", i, k.ClientID, got, err)
		}
	}
}

// TestClusterBulkCreateKeys: on a 3-master cluster the pipelines split by
// slot and the script is cached on every master.
func TestClusterBulkCreateKeys(t *testing.T) {
	cl := startCluster(t)
	cc := cl.newClusterClient(t)
	ctx := context.Background()
	s := newBulkStore(t, cc)

	keys := bulkKeys(t, 1000, 5, 10)
	first, err := s.NextStatusIndices(ctx, len(keys))
	if err != nil {
		t.Fatal(err)
	}
	for i := range keys {
		keys[i].StatusIndex = first + int64(i)
	}
	if err := s.CreateKeys(ctx, keys); err != nil {
		t.Fatal(err)
	}
	err = parallel(len(keys), func(i int) error {
		got, err := s.GetKey(ctx, keys[i].ClientID)
		if err != nil {
			return err
		}
		if !sameKey(keys[i], got) {
			return fmt.Errorf("key %s:\n got  %+v\n want %+v", keys[i].ClientID, got, keys[i])
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, team := range []string{"bulk-000001", "bulk-000500", "bulk-001000", ""} {
		want := 5
		if team == "" {
			want = 10
		}
		if got, err := s.ListKeys(ctx, team); err != nil || len(got) != want {
			t.Fatalf("team %q: %d keys (%v), want %d", team, len(got), err, want)
		}
	}
	fresh := bulkKeys(t, 10, 5, 0)
	if err := s.CreateKeys(ctx, slices.Concat(fresh, keys[4000:4001])); !errors.Is(err, store.ErrAlreadyExists) {
		t.Fatalf("existing ID on the cluster: %v", err)
	}
	if _, err := s.GetKey(ctx, fresh[0].ClientID); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("refused call wrote key %s: %v", fresh[0].ClientID, err)
	}
}
