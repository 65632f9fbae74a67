package server

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

// Writing last_used_at on every token would put a synchronous store write on
// the hot path. Instead the token path records uses in memory (an atomic
// store on a per-key entry; no process-wide lock) and a background loop
// writes them in batches:
//
//   - a key that had never been used is written at the next tick (≤ 1 s), so
//     an admin who just handed out a key sees it come alive;
//   - afterwards at most one write per key per coalesce interval (1 min);
//   - everything pending is flushed on shutdown.
const (
	lastUsedTick     = 250 * time.Millisecond
	lastUsedCoalesce = time.Minute
	// Entries of keys idle this long are dropped, so deleted or dormant keys
	// do not accumulate in memory.
	lastUsedIdle = 2 * lastUsedCoalesce
)

type lastUsedEntry struct {
	used    atomic.Int64 // unix nanos of the latest use seen here
	written atomic.Int64 // unix nanos of the latest use known to be stored
	// wroteAt is when that value was stored (by anyone, as far as we know),
	// the start of the coalescing window.
	wroteAt atomic.Int64
}

type toucher interface {
	TouchKeys(ctx context.Context, lastUsed map[string]time.Time) error
}

type lastUsedTracker struct {
	entries sync.Map // client ID → *lastUsedEntry
	store   toucher
	log     *slog.Logger
	flushMu sync.Mutex // serialises flushes (loop vs shutdown), never taken on the token path
	now     func() time.Time
	ticks   <-chan time.Time
	stop    chan struct{}
	done    chan struct{}
}

func newLastUsedTracker(st toucher, log *slog.Logger, now func() time.Time, ticks <-chan time.Time) *lastUsedTracker {
	t := &lastUsedTracker{store: st, log: log, now: now, ticks: ticks, stop: make(chan struct{}), done: make(chan struct{})}
	go t.loop()
	return t
}

// record notes a successful token exchange. stored is the key's last_used_at
// as loaded from the store for this request.
func (t *lastUsedTracker) record(clientID string, stored, now time.Time) {
	v, ok := t.entries.Load(clientID)
	if !ok {
		e := &lastUsedEntry{}
		if !stored.IsZero() {
			e.written.Store(stored.UnixNano())
			e.wroteAt.Store(stored.UnixNano())
		}
		v, _ = t.entries.LoadOrStore(clientID, e)
	}
	e := v.(*lastUsedEntry)
	n := now.UnixNano()
	for {
		cur := e.used.Load()
		if cur >= n || e.used.CompareAndSwap(cur, n) {
			return
		}
	}
}

func (t *lastUsedTracker) loop() {
	defer close(t.done)
	ticks := t.ticks
	if ticks == nil {
		tick := time.NewTicker(lastUsedTick)
		defer tick.Stop()
		ticks = tick.C
	}
	for {
		select {
		case <-t.stop:
			return
		case now := <-ticks:
			t.flush(now, false)
		}
	}
}

// flush writes due entries (all pending ones when final).
func (t *lastUsedTracker) flush(now time.Time, final bool) {
	t.flushMu.Lock()
	defer t.flushMu.Unlock()
	batch := map[string]time.Time{}
	entries := map[string]*lastUsedEntry{}
	t.entries.Range(func(k, v any) bool {
		id, e := k.(string), v.(*lastUsedEntry)
		used, written := e.used.Load(), e.written.Load()
		switch {
		case used > written && (final || written == 0 || now.UnixNano()-e.wroteAt.Load() >= int64(lastUsedCoalesce)):
			batch[id] = time.Unix(0, used).UTC()
			entries[id] = e
		case used != 0 && used <= written && now.UnixNano()-used > int64(lastUsedIdle):
			// A use recorded into this entry while it is being dropped is
			// lost; the next use re-creates it. Only last_used_at lags.
			t.entries.CompareAndDelete(k, v)
		}
		return true
	})
	if len(batch) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := t.store.TouchKeys(ctx, batch); err != nil {
		// Not fatal: the uses stay pending and are retried next tick.
		t.log.Warn("last-used flush failed; will retry", "keys", len(batch), "err", err)
		return
	}
	for id, e := range entries {
		e.written.Store(batch[id].UnixNano())
		e.wroteAt.Store(now.UnixNano())
	}
}

// close stops the loop and writes everything pending.
func (t *lastUsedTracker) close() {
	select {
	case <-t.stop:
		return
	default:
	}
	close(t.stop)
	<-t.done
	t.flush(t.now(), true)
}
