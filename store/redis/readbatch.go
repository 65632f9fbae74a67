package redis

// Reads of keys the cache does not hold, coalesced into pipelines.
//
// A token request for a key nobody asked for within redis_key_cache is a
// round trip: a HMGET written, Redis woken, the reply read. Under a load
// spread over many keys, each used every few minutes (as integrators that
// cache their tokens use them), that is nearly every request, and most of
// the cost of the round trip is the system calls around it, on both sides:
// in a profile of serve on a 1 000 000-key store with the load over all of
// it, GetKey took 17 % of the process's CPU, and redis-server used about
// 33 µs of CPU per token on the same cores (docs/scale.md). Requests that
// miss at the same moment now share one pipeline: a worker takes the miss
// waiting first and every miss queued behind it, up to readBatchMax, and
// sends their reads in one write; while that pipeline is in flight, the
// next misses queue for the next one. Only misses beyond readDirectMax at
// once queue: fewer go to Redis directly, as before, so a lone read pays no
// hand-over to a worker and back (about 15 µs here, and it made a known
// ID's refusal measurably slower than an unknown one's:
// server/authtiming_test.go). An idle store sends each read alone; a busy
// one sends fewer, larger writes.
//
// The equal cost of known and unknown client IDs is kept: both go the
// same way (readKey decodes the decoy afterwards, as it did).

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"

	"github.com/keygate/keygate/store"
)

const (
	// readBatchMax bounds the reads in one pipeline.
	readBatchMax = 64
	// readBatchWorkers is how many pipelines may be in flight at once, so
	// a slow reply delays the misses queued behind it, not every miss.
	readBatchWorkers = 4
	// readDirectMax is how many misses at once go to Redis directly.
	readDirectMax = 4
)

// errStoreClosed: a read asked of a Store after Close.
var errStoreClosed = errors.New("redis store closed")

type readBatcher struct {
	// direct counts the reads sent directly and still in flight.
	direct        atomic.Int64
	start, closed sync.Once
	reqs          chan *readReq
	stop          chan struct{}
	wg            sync.WaitGroup
	// pipelines counts the pipelines sent (for tests).
	pipelines atomic.Int64
}

type readReq struct {
	ctx  context.Context
	id   string
	done chan readResult // buffered: a worker never waits for a reader that gave up
}

func newReadBatcher() *readBatcher {
	return &readBatcher{reqs: make(chan *readReq, readBatchWorkers*readBatchMax), stop: make(chan struct{})}
}

// readBatched reads id as readOne does: directly while fewer than
// readDirectMax reads are, else in a pipeline shared with the other misses
// of the moment. The workers start with the first read queued, so a Store
// that never serves a busy token endpoint runs none.
func (s *Store) readBatched(ctx context.Context, id string) (store.Key, keyFound, error) {
	b := s.reads
	if b.direct.Add(1) <= readDirectMax {
		defer b.direct.Add(-1)
		return s.readOne(ctx, s.rdb, id)
	}
	b.direct.Add(-1)
	b.start.Do(func() {
		for range readBatchWorkers {
			b.wg.Go(func() { b.work(s) })
		}
	})
	r := &readReq{ctx: ctx, id: id, done: make(chan readResult, 1)}
	select {
	case b.reqs <- r:
	case <-ctx.Done():
		return store.Key{}, keyFound{}, fail(ctx, "get key "+id, ctx.Err())
	case <-b.stop:
		return store.Key{}, keyFound{}, fail(ctx, "get key "+id, errStoreClosed)
	}
	select {
	case res := <-r.done:
		return res.k, res.at, res.err
	case <-ctx.Done():
		return store.Key{}, keyFound{}, fail(ctx, "get key "+id, ctx.Err())
	case <-b.stop:
		return store.Key{}, keyFound{}, fail(ctx, "get key "+id, errStoreClosed)
	}
}

// work sends pipelines until the batcher stops: the first miss waiting,
// then every miss queued behind it, up to readBatchMax.
func (b *readBatcher) work(s *Store) {
	batch := make([]*readReq, 0, readBatchMax)
	for {
		select {
		case r := <-b.reqs:
			batch = append(batch[:0], r)
		case <-b.stop:
			return
		}
	drain:
		for len(batch) < readBatchMax {
			select {
			case r := <-b.reqs:
				batch = append(batch, r)
			default:
				break drain
			}
		}
		b.send(s, batch)
	}
}

// send reads batch's keys in one pipeline and answers each reader. The
// pipeline carries the first reader's context values (a trace follows the
// round trip) but not its end, and the store's own deadline: a reader that
// gives up does not cut the others' reads short.
func (b *readBatcher) send(s *Store, batch []*readReq) {
	b.pipelines.Add(1)
	ctx, cancel := s.op(context.WithoutCancel(batch[0].ctx))
	defer cancel()
	if len(batch) == 1 {
		// Alone: the read as it was, one command (or, until the compact
		// layout's migration is done, the pipeline of both layouts).
		k, at, err := s.readOne(ctx, s.rdb, batch[0].id)
		batch[0].done <- readResult{k, at, err}
		return
	}
	ids := make([]string, len(batch))
	for i, r := range batch {
		ids[i] = r.id
	}
	for i, res := range s.readMany(ctx, ids) {
		batch[i].done <- res
	}
}

// close stops the workers; reads asked afterwards fail. Idempotent, like
// Store.Close.
func (b *readBatcher) close() {
	b.closed.Do(func() { close(b.stop) })
	b.wg.Wait()
}
