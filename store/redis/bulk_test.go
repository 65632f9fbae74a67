package redis_test

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/keygate/keygate/internal/redistest"
	"github.com/keygate/keygate/store"
	"github.com/keygate/keygate/store/redis"
	"github.com/keygate/keygate/store/storetest"
)

func newBulkStore(t *testing.T, c goredis.UniversalClient) storetest.BulkStore {
	t.Helper()
	prefix := redistest.Prefix(t, c, "")
	s, err := redis.New(c, prefix, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestBulkConformance(t *testing.T) {
	c := redistest.Require(t)
	storetest.RunBulk(t, func(t *testing.T) storetest.BulkStore { return newBulkStore(t, c) })
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
	c := redistest.Require(t)
	hooked := goredis.NewClient(c.Options())
	t.Cleanup(func() { hooked.Close() })
	prefix := redistest.Prefix(t, c, "")
	plain, err := redis.New(c, prefix, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	s, err := redis.New(hooked, prefix, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}

	keys := storetest.BulkKeys(t, 500, 5, 0)
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
	if err != nil || len(storetest.KeyDiff(theirs, got)) > 0 {
		t.Fatalf("the other writer's key was changed: %v, %v", storetest.KeyDiff(theirs, got), err)
	}
	for i, k := range keys {
		if i == 1700 {
			continue
		}
		got, err := s.GetKey(ctx, k.ClientID)
		if err != nil || len(storetest.KeyDiff(k, got)) > 0 {
			t.Fatalf("key %d (%s) not written as given: %v, %v", i, k.ClientID, storetest.KeyDiff(k, got), err)
		}
	}
}
