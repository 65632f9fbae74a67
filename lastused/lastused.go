// Package lastused keeps the last_used_at of API keys without putting a store
// write on the token path.
//
// Writing last_used_at on every token would put a synchronous store write on
// the hot path. Instead the token path records uses in memory (an atomic
// store on a per-key entry; no process-wide lock) and a background loop
// writes them in batches:
//
//   - a key that had never been used is written at the next tick, so an
//     admin who just handed out a key sees it come alive;
//   - afterwards at most one write per key per Coalesce interval;
//   - everything pending is flushed on Close.
package lastused

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

const (
	// Tick is the period of the default tick source.
	Tick = 250 * time.Millisecond
	// Coalesce is the shortest interval between two writes of one key.
	Coalesce = time.Minute
	// Idle is how long an entry may go unused before it is dropped, so
	// deleted or dormant keys do not accumulate in memory.
	Idle = 2 * Coalesce
)

// flushTimeout bounds one TouchKeys call, so a hung store delays the next
// flush (and Close) by at most this much.
const flushTimeout = 5 * time.Second

// Store is what the tracker writes to (store.Store satisfies it).
type Store interface {
	TouchKeys(ctx context.Context, lastUsed map[string]time.Time) error
}

// Options configures a Tracker. The zero value is production behaviour.
type Options struct {
	// Now is the clock for the final flush on Close; nil means time.Now.
	Now func() time.Time
	// Ticks drives the flushes: each value received is one flush at that
	// time. nil means a time.Ticker of Tick owned by the tracker. The loop
	// takes the next tick only after the previous flush returned, so with an
	// unbuffered channel a sender knows that when a second send returns, the
	// flush of the first has completed.
	Ticks <-chan time.Time
	// Logger receives flush failures; nil discards.
	Logger *slog.Logger
	// Observer, when set, hears of every flush (for metrics: package
	// metrics satisfies it). nil observes nothing.
	Observer Observer
}

// Observer hears of each flush: how many keys still have a use not yet
// stored after it (deferred by coalescing, or a failed write), and how long
// its store write took (0 when there was nothing to write).
type Observer interface {
	LastUsedFlushed(pending int, took time.Duration)
}

type entry struct {
	used    atomic.Int64 // unix nanos of the latest use seen here
	written atomic.Int64 // unix nanos of the latest use known to be stored
	// wroteAt is when that value was stored (by anyone, as far as we know),
	// the start of the coalescing window.
	wroteAt atomic.Int64
}

// Tracker batches last-used writes. Create it with New and stop it with Close.
type Tracker struct {
	entries sync.Map // client ID → *entry
	store   Store
	log     *slog.Logger
	obs     Observer
	flushMu sync.Mutex // serialises flushes (loop vs Close), never taken by Record
	now     func() time.Time
	ticks   <-chan time.Time
	stop    chan struct{}
	done    chan struct{}
	closing sync.Once
}

// New starts a tracker writing to st. Call Close to stop it.
func New(st Store, opts Options) *Tracker {
	t := &Tracker{
		store: st,
		log:   opts.Logger,
		obs:   opts.Observer,
		now:   opts.Now,
		ticks: opts.Ticks,
		stop:  make(chan struct{}),
		done:  make(chan struct{}),
	}
	if t.log == nil {
		t.log = slog.New(slog.DiscardHandler)
	}
	if t.now == nil {
		t.now = time.Now
	}
	go t.loop()
	return t
}

// Record notes a successful token exchange at now; stored is the key's
// last_used_at as loaded from the store for this request. Safe for
// concurrent use; lock-free.
func (t *Tracker) Record(clientID string, stored, now time.Time) {
	v, ok := t.entries.Load(clientID)
	if !ok {
		e := &entry{}
		if !stored.IsZero() {
			// The store already holds this use, so the coalescing window
			// runs from it: a process that has just started (or another
			// replica) does not rewrite a key the store shows as written
			// moments ago.
			e.written.Store(stored.UnixNano())
			e.wroteAt.Store(stored.UnixNano())
		}
		v, _ = t.entries.LoadOrStore(clientID, e)
	}
	e := v.(*entry)
	n := now.UnixNano()
	for {
		cur := e.used.Load()
		// Concurrent requests finish out of order; an older time must never
		// replace a newer one.
		if cur >= n || e.used.CompareAndSwap(cur, n) {
			return
		}
	}
}

func (t *Tracker) loop() {
	defer close(t.done)
	ticks := t.ticks
	if ticks == nil {
		tick := time.NewTicker(Tick)
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
func (t *Tracker) flush(now time.Time, final bool) {
	t.flushMu.Lock()
	defer t.flushMu.Unlock()
	batch := map[string]time.Time{}
	entries := map[string]*entry{}
	deferred := 0 // pending uses this flush leaves for a later one
	t.entries.Range(func(k, v any) bool {
		id, e := k.(string), v.(*entry)
		used, written := e.used.Load(), e.written.Load()
		switch {
		case used > written && (final || written == 0 || now.UnixNano()-e.wroteAt.Load() >= int64(Coalesce)):
			batch[id] = time.Unix(0, used).UTC()
			entries[id] = e
		case used > written:
			deferred++
		case used != 0 && used <= written && now.UnixNano()-used > int64(Idle):
			// A use recorded into this entry while it is being dropped is
			// lost; the next use re-creates it. Only last_used_at lags.
			t.entries.CompareAndDelete(k, v)
		}
		return true
	})
	if len(batch) == 0 {
		if t.obs != nil {
			t.obs.LastUsedFlushed(deferred, 0)
		}
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), flushTimeout)
	defer cancel()
	start := time.Now() // the real clock: the flush's own cost, whatever now says
	err := t.store.TouchKeys(ctx, batch)
	if t.obs != nil {
		pending := deferred
		if err != nil {
			pending += len(batch)
		}
		t.obs.LastUsedFlushed(pending, time.Since(start))
	}
	if err != nil {
		// Not fatal: the uses stay pending and are retried next tick. Only
		// the count is logged, so the log carries no key material.
		t.log.Warn("last-used flush failed; will retry", "keys", len(batch), "err", err)
		return
	}
	for id, e := range entries {
		e.written.Store(batch[id].UnixNano())
		e.wroteAt.Store(now.UnixNano())
	}
}

// Close stops the loop and writes everything pending (idempotent). A
// concurrent second Close returns once the first has finished writing.
func (t *Tracker) Close() {
	t.closing.Do(func() {
		close(t.stop)
		<-t.done
		t.flush(t.now(), true)
	})
}
