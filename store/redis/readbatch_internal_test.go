package redis

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/keygate/keygate/credential"
	"github.com/keygate/keygate/internal/redistest"
	"github.com/keygate/keygate/store"
	"github.com/keygate/keygate/store/storetest"
)

// batchStore is a store holding keys; with hold, its read workers do not
// start by themselves, so the test decides when they run.
func batchStore(t *testing.T, hold bool) (*Store, []store.Key) {
	t.Helper()
	c := redistest.Require(t)
	ctx := context.Background()
	s := instance(t, c, redistest.Prefix(t, c, ""), SchemaOptions{InstanceID: "batch"})
	if err := s.Check(ctx); err != nil {
		t.Fatal(err)
	}
	keys := storetest.BulkKeys(t, 10, 3, 1)
	if err := s.CreateKeys(ctx, keys); err != nil {
		t.Fatal(err)
	}
	if hold {
		s.reads.start.Do(func() {})
	}
	// Every read queues, as when readDirectMax reads are in flight already.
	s.reads.direct.Store(readDirectMax)
	t.Cleanup(func() { s.Close() })
	return s, keys
}

func unknownID(t *testing.T, i int) string {
	t.Helper()
	id, err := credential.NewClientID(fmt.Sprintf("nobody-%d", i))
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// TestReadsShareAPipeline: misses queued behind one another go to Redis in
// one pipeline, and each reader gets its own key, or store.ErrNotFound for
// an ID Redis does not have, exactly as a read of its own would answer.
func TestReadsShareAPipeline(t *testing.T) {
	s, keys := batchStore(t, true)
	var reqs []*readReq
	want := map[string]*store.Key{}
	for i, k := range keys {
		want[k.ClientID] = &keys[i]
		reqs = append(reqs, &readReq{ctx: context.Background(), id: k.ClientID, done: make(chan readResult, 1)})
		if i%4 == 0 {
			id := unknownID(t, i)
			want[id] = nil
			reqs = append(reqs, &readReq{ctx: context.Background(), id: id, done: make(chan readResult, 1)})
		}
	}
	if len(reqs) > readBatchMax {
		t.Fatalf("%d reads, more than one pipeline takes", len(reqs))
	}
	for _, r := range reqs {
		s.reads.reqs <- r
	}
	s.reads.wg.Go(func() { s.reads.work(s) })
	for _, r := range reqs {
		var res readResult
		select {
		case res = <-r.done:
		case <-time.After(10 * time.Second):
			t.Fatalf("no answer for %s", r.id)
		}
		k := want[r.id]
		switch {
		case k == nil && !errors.Is(res.err, store.ErrNotFound):
			t.Errorf("unknown %s: %+v, %v; want ErrNotFound", r.id, res.k, res.err)
		case k != nil && res.err != nil:
			t.Errorf("%s: %v", r.id, res.err)
		case k != nil && !reflect.DeepEqual(emptyAsNil(res.k), emptyAsNil(*k)):
			t.Errorf("%s: read\n%+v\nwant\n%+v", r.id, res.k, *k)
		}
	}
	if n := s.reads.pipelines.Load(); n != 1 {
		t.Errorf("%d reads queued together went in %d pipelines, want 1", len(reqs), n)
	}
}

// TestBatchedReadsConcurrent: GetKey from many goroutines at once, known
// and unknown IDs mixed, through the running workers (the direct reads'
// slots taken): every answer is the reader's own (run with -race).
func TestBatchedReadsConcurrent(t *testing.T) {
	s, keys := batchStore(t, false)
	ctx := context.Background()
	var wg sync.WaitGroup
	for g := range 32 {
		wg.Go(func() {
			for i := range 20 {
				k := keys[(g+i)%len(keys)]
				got, err := s.GetKey(ctx, k.ClientID)
				if err != nil || got.ClientID != k.ClientID || got.TeamID != k.TeamID || !reflect.DeepEqual(got.SecretHash, k.SecretHash) {
					t.Errorf("GetKey %s: %s/%s, %v", k.ClientID, got.ClientID, got.TeamID, err)
				}
				if _, err := s.GetKey(ctx, unknownID(t, g*100+i)); !errors.Is(err, store.ErrNotFound) {
					t.Errorf("GetKey of an unknown ID: %v, want ErrNotFound", err)
				}
			}
		})
	}
	wg.Wait()
	if n := s.reads.pipelines.Load(); n < 1 || n > 32*20*2 {
		t.Errorf("%d pipelines for %d reads", n, 32*20*2)
	}
}

// TestBatchedReadGivesUp: a reader whose context ends while its read waits
// gets the context's error at once; the worker that later reads for a
// reader gone does not block on it, and serves the next one. After Close a
// queued read fails instead of waiting.
func TestBatchedReadGivesUp(t *testing.T) {
	s, keys := batchStore(t, true)
	// A read whose reader has gone: nobody takes its answer.
	s.reads.reqs <- &readReq{ctx: context.Background(), id: keys[0].ClientID, done: make(chan readResult, 1)}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, _, err := s.readBatched(ctx, keys[1].ClientID); !errors.Is(err, context.Canceled) {
		t.Fatalf("a read given up: %v, want context.Canceled", err)
	}
	s.reads.wg.Go(func() { s.reads.work(s) })
	k, _, err := s.readBatched(context.Background(), keys[2].ClientID)
	if err != nil || k.ClientID != keys[2].ClientID {
		t.Fatalf("the read after them: %s, %v", k.ClientID, err)
	}

	s.Close()
	done := make(chan error, 1)
	go func() {
		_, _, err := s.readBatched(context.Background(), keys[3].ClientID)
		done <- err
	}()
	select {
	case err := <-done:
		if !errors.Is(err, errStoreClosed) {
			t.Errorf("a read after Close: %v, want errStoreClosed", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a read after Close did not return")
	}
}

// TestLoneReadsGoDirectly: while fewer than readDirectMax reads are in
// flight, a read is sent as it always was, without a worker: no pipeline
// of the batcher's, and the count of direct reads back to zero after each.
func TestLoneReadsGoDirectly(t *testing.T) {
	s, keys := batchStore(t, false)
	s.reads.direct.Store(0)
	for _, k := range keys[:5] {
		got, _, err := s.readBatched(context.Background(), k.ClientID)
		if err != nil || got.ClientID != k.ClientID {
			t.Fatalf("read %s: %s, %v", k.ClientID, got.ClientID, err)
		}
	}
	if n := s.reads.pipelines.Load(); n != 0 {
		t.Errorf("%d pipelines of the batcher for sequential reads, want 0", n)
	}
	if n := s.reads.direct.Load(); n != 0 {
		t.Errorf("%d direct reads still counted in flight, want 0", n)
	}
}
