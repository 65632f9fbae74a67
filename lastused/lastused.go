// Package lastused keeps the last_used_at of API keys, and their usage
// counts, without putting a store write on the token path.
//
// Writing last_used_at on every token would put a synchronous store write on
// the hot path. Instead the token path records uses in memory (an atomic
// store on a per-key entry; no process-wide lock) and a background loop
// writes them in batches:
//
//   - a key that had never been used is written at the next tick, so an
//     admin who just handed out a key sees it come alive;
//   - afterwards at most one write per key per Coalesce interval;
//   - and at most Options.WriteRate later writes per second in all, the
//     longest-waiting first, so the write load is bounded however many
//     keys are in use (see WriteRate);
//   - everything pending is flushed on Close.
//
// A flush visits only the keys used since the last one (a lock-free list
// their first use after a flush pushes them onto) and those whose
// coalescing window has just ended (a heap by its end), not every key in
// use: under a load spread over a million keys, ranging over all of them
// four times a second cost more CPU than the writes (docs/scale.md). Every
// sweepEvery the flush ranges over all of them once, to drop idle ones.
//
// Usage (tokens issued and failed authentications per key per hour) rides
// on the same entries: the token path adds to per-key atomic counters, and
// every flush collects them into the hour of its own clock reading (so a
// use made in the last tick before the hour turns may count in the next
// hour: at most one Tick late) and writes what it collected in one
// store.UsageStore.AddUsage call: everything, or, when more keys have
// counts than Options.WriteRate allows, those collected longest ago, the
// rest adding up in memory until their turn. Counts that could not be written stay
// pending and are retried with their hour, so a failed write that the
// store had partly applied may count that part twice; none is lost while
// the process lives. Once per hour of the flush clock the tracker also
// asks the store to prune usage past its retention.
package lastused

import (
	"cmp"
	"container/heap"
	"context"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/time/rate"

	"github.com/keygate/keygate/internal/shardmap"
	"github.com/keygate/keygate/store"
)

const (
	// Tick is the period of the default tick source.
	Tick = 250 * time.Millisecond
	// Coalesce is the shortest interval between two writes of one key.
	Coalesce = time.Minute
	// Idle is how long an entry may go unused before it is dropped, so
	// deleted or dormant keys do not accumulate in memory.
	Idle = 2 * Coalesce
	// sweepEvery is how often a flush ranges over every entry (dropping
	// idle ones); an entry goes at most sweepEvery (and a tick) after Idle,
	// so within twice Idle of its last use. No more often: the range is
	// the one part of a flush that costs every key in use rather than the
	// keys used since the last flush, about 1.2 s of CPU at a million keys
	// in a profile of serve (4 % of its CPU when it ran every 30 s;
	// docs/scale.md).
	sweepEvery = Idle
)

// flushTimeout bounds one TouchKeys call, so a hung store delays the next
// flush (and Close) by at most this much.
const flushTimeout = 5 * time.Second

// Store is what the tracker writes to (store.Store satisfies it).
type Store interface {
	TouchKeys(ctx context.Context, lastUsed map[string]time.Time) error
	AddUsage(ctx context.Context, now time.Time, deltas []store.UsageDelta) error
	PruneUsage(ctx context.Context, now time.Time) error
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
	// WriteRate bounds the last-used writes of keys used before, in keys
	// per second, and the usage deltas written, in the same unit (each a
	// bucket that holds one second's worth); 0 means
	// DefaultWriteRate, a negative value no bound. A key's first use is
	// written at the next tick whatever the bound and not counted: it
	// happens once in a key's life, so it adds no lasting load.
	WriteRate int
}

// DefaultWriteRate is Options.WriteRate's default. With one write per key
// per Coalesce, a load spread over more keys than Coalesce × WriteRate
// (60 000) would otherwise cost a store write per token: at a million keys
// in use that was most of what a token cost beyond signing (docs/scale.md).
// Past that many keys, last_used_at and usage lag by up to keys in use ÷
// WriteRate (a quarter of an hour at a million) instead, and the write
// load stays at the bound.
const DefaultWriteRate = 1000

// Observer hears of each flush: how many keys still have a use not yet
// stored after it (deferred by coalescing, or a failed write), and how long
// its store write took (0 when there was nothing to write).
type Observer interface {
	LastUsedFlushed(pending int, took time.Duration)
}

type entry struct {
	// ids is the client ID (the key of entries) followed by the key's
	// team ID, set once at creation: one string, kept in buf when it fits
	// (every team key's does), so the collector, which visits every entry
	// in every cycle, finds the IDs, and the entries map's key, in the
	// entry it is marking anyway instead of in an object of their own (a
	// million entries at a million keys in use, docs/scale.md). Usage is
	// counted only for team keys (admin keys have no team to report it to).
	ids     string
	buf     [inlineIDs]byte
	idLen   int
	serial  uint64       // names the entry in pending usage (usageKey)
	used    atomic.Int64 // unix nanos of the latest use seen here
	written atomic.Int64 // unix nanos of the latest use known to be stored
	// wroteAt is when that value was stored (by anyone, as far as we know),
	// the start of the coalescing window.
	wroteAt atomic.Int64

	// tokens and failures are counts not yet collected by a flush. A
	// dropped entry has both at dropped, so a count can never land in an
	// entry after its last collection (see addLive).
	tokens, failures atomic.Int64
	failedAt         atomic.Int64 // unix nanos of the latest failure seen here

	// queued: the entry is on the tracker's dirty list (or is the decoy,
	// which is never put there). Set by whoever pushes it (markDirty), with
	// next; cleared by the flush that takes it off, after reading next.
	queued atomic.Bool
	next   *entry
	// Owned by the flush: the entry waits in the tracker's heap for its
	// coalescing window to end; it was dropped from entries.
	waiting, gone bool
}

// inlineIDs is the longest client and team ID an entry keeps in itself: a
// generated client ID (32 bytes) and the longest team ID (64).
const inlineIDs = 96

func (e *entry) id() string     { return e.ids[:e.idLen] }
func (e *entry) teamID() string { return e.ids[e.idLen:] }

// waitItem is an entry waiting for its coalescing window to end at due
// (unix nanos).
type waitItem struct {
	e   *entry
	due int64
}

// waitHeap orders waiting entries by due (container/heap).
type waitHeap []waitItem

func (h waitHeap) Len() int           { return len(h) }
func (h waitHeap) Less(i, j int) bool { return h[i].due < h[j].due }
func (h waitHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *waitHeap) Push(x any)        { *h = append(*h, x.(waitItem)) }
func (h *waitHeap) Pop() any {
	old := *h
	it := old[len(old)-1]
	*h = old[:len(old)-1]
	return it
}

// dropped marks the counters of an entry removed from the map.
const dropped = -1

// addLive adds one to n unless n's entry was dropped; false means the
// caller must count in the entry that replaces it.
func addLive(n *atomic.Int64) bool {
	for {
		c := n.Load()
		if c == dropped {
			return false
		}
		if n.CompareAndSwap(c, c+1) {
			return true
		}
	}
}

// usageKey is one key's usage in one hour, as the flush collects it. It
// names the key by its entry's serial, so the index of pending usage holds
// no pointer: past the write bound a million keys may wait there, and the
// collector scans none of it. An entry dropped and re-created (a new
// serial) makes two deltas of one key and hour, which the store adds up.
type usageKey struct {
	serial uint64
	hour   int64 // unix seconds of the hour's start
}

// pendingUsage is one key's usage in one hour not yet written. It names
// the key by its entry (which holds the client and team IDs): one pointer.
type pendingUsage struct {
	e                *entry
	hour             int64
	tokens, failures int64
}

// Tracker batches last-used writes. Create it with New and stop it with Close.
type Tracker struct {
	entries *shardmap.Map[*entry] // client ID → *entry (shardmap says why not a sync.Map)
	store   Store
	log     *slog.Logger
	obs     Observer
	flushMu sync.Mutex // serialises flushes (loop vs Close), never taken by Record
	now     func() time.Time
	ticks   <-chan time.Time
	stop    chan struct{}
	done    chan struct{}
	closing sync.Once

	// decoy takes RecordUnknownFailure's work: never in entries, never
	// collected or written.
	decoy entry

	// dirty is the head of the list of entries used since the last flush
	// (a Treiber stack linked through entry.next).
	dirty atomic.Pointer[entry]

	// Owned by the flush (under flushMu): usage collected but not yet
	// written, and the hour of the last successful prune. order holds it
	// from orderHead on, in the order it was first collected, for
	// writeUsage to take from the front; pending maps the usage not yet
	// written to its place there, counted from the start of all (order's
	// first element is place orderBase), so cutting order's written
	// front moves nothing in the map.
	pending    map[usageKey]int
	order      []pendingUsage
	orderHead  int
	orderBase  int
	serials    atomic.Uint64 // the last entry serial given out
	prunedHour int64
	waiting    waitHeap
	lastSweep  int64 // unix nanos of the last flush that ranged over every entry
	// lastUseWrites and usageWrites are Options.WriteRate's buckets (one
	// second's worth each), read at the flush clock; nil: no bound.
	lastUseWrites, usageWrites *rate.Limiter
	// visits counts the entries flushes have looked at, for the tests of
	// what a flush costs (export_test.go).
	visits atomic.Int64
}

// New starts a tracker writing to st. Call Close to stop it.
func New(st Store, opts Options) *Tracker {
	t := &Tracker{
		store:   st,
		entries: shardmap.New[*entry](),
		log:     opts.Logger,
		obs:     opts.Observer,
		now:     opts.Now,
		ticks:   opts.Ticks,
		stop:    make(chan struct{}),
		done:    make(chan struct{}),

		pending: map[usageKey]int{},
	}
	t.decoy.queued.Store(true) // markDirty's work on it: one load
	if r := cmp.Or(opts.WriteRate, DefaultWriteRate); r > 0 {
		t.lastUseWrites = rate.NewLimiter(rate.Limit(r), r)
		t.usageWrites = rate.NewLimiter(rate.Limit(r), r)
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

// Record notes a successful token exchange at now by a key of teamID (""
// for an admin key, whose tokens are not counted); stored is the key's
// last_used_at as loaded from the store for this request. Safe for
// concurrent use: it takes one shard's read lock to find the entry (no
// process-wide lock), and allocates nothing once the key has an entry.
func (t *Tracker) Record(clientID, teamID string, stored, now time.Time) {
	e := t.entry(clientID, teamID, stored)
	for teamID != "" && !addLive(&e.tokens) {
		e = t.entry(clientID, teamID, stored) // dropped meanwhile: count in its successor
	}
	n := now.UnixNano()
	for {
		cur := e.used.Load()
		// Concurrent requests finish out of order; an older time must never
		// replace a newer one.
		if cur >= n || e.used.CompareAndSwap(cur, n) {
			break
		}
	}
	t.markDirty(e)
}

// markDirty puts e on the dirty list unless it is there already: one
// atomic load on the token path once a key was used since the last flush,
// and a compare-and-swap or two the first time. Lock-free.
func (t *Tracker) markDirty(e *entry) {
	if e.queued.Load() || !e.queued.CompareAndSwap(false, true) {
		return
	}
	for {
		head := t.dirty.Load()
		e.next = head
		if t.dirty.CompareAndSwap(head, e) {
			return
		}
	}
}

// RecordFailure notes a failed authentication at now of a known key (a
// wrong or expired secret; unknown client IDs are not counted, so guessing
// IDs cannot grow the tracker). It changes no last-used time. Safe for
// concurrent use; no process-wide lock (one shard's read lock).
func (t *Tracker) RecordFailure(clientID, teamID string, stored, now time.Time) {
	if teamID == "" {
		return
	}
	e := t.entry(clientID, teamID, stored)
	for !addLive(&e.failures) {
		e = t.entry(clientID, teamID, stored)
	}
	n := now.UnixNano()
	for {
		cur := e.failedAt.Load()
		if cur >= n || e.failedAt.CompareAndSwap(cur, n) {
			break
		}
	}
	t.markDirty(e)
}

// RecordUnknownFailure does for a failed authentication of an unknown
// client ID the work RecordFailure does for a known team key's, on an entry
// of its own that is never stored: unknown IDs count nowhere (so guessing
// IDs cannot grow the tracker), yet the failure costs the same, so the time
// of a refusal does not tell whether the ID exists. (A known admin key's
// failure costs nothing here, so the caller skips this for an ID shaped
// like an admin key's.) Safe for concurrent use; no process-wide lock.
func (t *Tracker) RecordUnknownFailure(clientID string, now time.Time) {
	t.entries.Load(clientID) // RecordFailure's lookup (an unknown ID has no entry)
	e := &t.decoy
	addLive(&e.failures) // never dropped: always counts
	n := now.UnixNano()
	for {
		cur := e.failedAt.Load()
		if cur >= n || e.failedAt.CompareAndSwap(cur, n) {
			break
		}
	}
	t.markDirty(e) // always queued: never listed
}

// entry returns the key's entry, making it on first use.
func (t *Tracker) entry(clientID, teamID string, stored time.Time) *entry {
	if e, ok := t.entries.Load(clientID); ok {
		return e
	}
	// A copy of both IDs, made once per key: the entry and its key in
	// entries keep it, and nothing of the request's memory. The entry's
	// own bytes are written before it is published (LoadOrStore) and
	// never again, so ids may be a string over them.
	e := &entry{idLen: len(clientID), serial: t.serials.Add(1)}
	if n := len(clientID) + len(teamID); n > 0 && n <= inlineIDs {
		copy(e.buf[copy(e.buf[:], clientID):], teamID)
		e.ids = unsafe.String(&e.buf[0], n)
	} else if teamID == "" {
		e.ids = strings.Clone(clientID) // + would hand back clientID itself
	} else {
		e.ids = clientID + teamID
	}
	if !stored.IsZero() {
		// The store already holds this use, so the coalescing window
		// runs from it: a process that has just started (or another
		// replica) does not rewrite a key the store shows as written
		// moments ago.
		e.written.Store(stored.UnixNano())
		e.wroteAt.Store(stored.UnixNano())
	}
	e, _ = t.entries.LoadOrStore(e.id(), e)
	return e
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

// flush writes the usage collected and the due last-used times (all
// pending ones when final), then prunes old usage once per hour.
func (t *Tracker) flush(now time.Time, final bool) {
	t.flushMu.Lock()
	defer t.flushMu.Unlock()
	hour := now.UTC().Truncate(time.Hour).Unix()
	collect := func(e *entry, tokens, failures int64) {
		if tokens <= 0 && failures <= 0 {
			return
		}
		k := usageKey{serial: e.serial, hour: hour}
		at, ok := t.pending[k]
		if !ok {
			at = t.orderBase + len(t.order)
			t.pending[k] = at
			t.order = append(t.order, pendingUsage{e: e, hour: hour})
		}
		u := &t.order[at-t.orderBase]
		u.tokens += max(tokens, 0)
		u.failures += max(failures, 0)
	}
	batch := map[string]time.Time{}
	entries := map[string]*entry{}
	nowN := now.UnixNano()
	sweep := final || nowN-t.lastSweep >= int64(sweepEvery)
	limited := t.lastUseWrites != nil && !final
	visit := func(e *entry) {
		t.visits.Add(1)
		if e.gone {
			return
		}
		if e.teamID() != "" {
			collect(e, e.tokens.Swap(0), e.failures.Swap(0))
		}
		used, written := e.used.Load(), e.written.Load()
		last := max(used, e.failedAt.Load())
		due := e.wroteAt.Load() + int64(Coalesce)
		switch {
		case used > written && (written == 0 || final ||
			nowN >= due && (!limited || entries[e.id()] != nil || t.lastUseWrites.TokensAt(now) >= 1)):
			if limited && written != 0 && entries[e.id()] == nil {
				t.lastUseWrites.AllowN(now, 1)
			}
			batch[e.id()] = time.Unix(0, used).UTC()
			entries[e.id()] = e
		case used > written:
			// Not due yet, or due with the write budget spent: it waits
			// in the heap, ordered by when it fell due, so the longest
			// waiting go first once there is budget again.
			if !e.waiting {
				e.waiting = true
				heap.Push(&t.waiting, waitItem{e: e, due: due})
			}
		case sweep && last != 0 && nowN-last > int64(Idle):
			// A last use recorded into this entry while it is being dropped
			// is lost; the next use re-creates it. Only last_used_at lags.
			// Counts are not lost: marking them dropped, after the entry
			// left the map, collects the last ones and sends any later
			// Record to the successor entry.
			if t.entries.CompareAndDelete(e.id(), e) {
				e.gone = true
				if e.teamID() != "" {
					collect(e, e.tokens.Swap(dropped), e.failures.Swap(dropped))
				}
			}
		}
	}
	// The keys whose coalescing window has ended (all of them on Close),
	// first: they have waited longest, and while the budget lasts. Then
	// the keys used since the last flush (a due one past the budget joins
	// the heap). next is read before queued is cleared: from then on a
	// Record may push the entry again.
	for t.waiting.Len() > 0 && (final || t.waiting[0].due <= nowN && (!limited || t.lastUseWrites.TokensAt(now) >= 1)) {
		it := heap.Pop(&t.waiting).(waitItem)
		it.e.waiting = false
		visit(it.e)
	}
	for e := t.dirty.Swap(nil); e != nil; {
		next := e.next
		e.next = nil
		e.queued.Store(false)
		visit(e)
		e = next
	}
	if sweep {
		t.lastSweep = nowN
		t.entries.Range(func(_ string, e *entry) bool { visit(e); return true })
	}
	deferred := t.waiting.Len() // pending uses this flush leaves for a later one
	// Usage first: a test that waits for TouchKeys (the flush's barrier in
	// lastused's tests) then knows the usage was written too.
	t.writeUsage(now, limited)
	t.touch(now, batch, entries, deferred)
	if final || hour == t.prunedHour {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), flushTimeout)
	defer cancel()
	if err := t.store.PruneUsage(ctx, now); err != nil {
		t.log.Warn("usage prune failed; will retry", "err", err)
		return
	}
	t.prunedHour = hour
}

// touch writes the due last-used times.
func (t *Tracker) touch(now time.Time, batch map[string]time.Time, entries map[string]*entry, deferred int) {
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
		for _, e := range entries {
			t.markDirty(e)
		}
		return
	}
	for id, e := range entries {
		e.written.Store(batch[id].UnixNano())
		e.wroteAt.Store(now.UnixNano())
	}
}

// writeUsage writes the collected counts in one AddUsage call: all of
// them, or when limited as many as the usage budget allows, those first
// collected longest ago first (a key's later counts add to its waiting
// ones, so waiting costs no extra writes). Hours the store would no longer
// keep are dropped as they come up, so a long outage cannot grow the
// pending counts without bound.
func (t *Tracker) writeUsage(now time.Time, limited bool) {
	if len(t.pending) == 0 {
		return
	}
	n := len(t.pending)
	if limited {
		n = min(n, int(t.usageWrites.TokensAt(now)))
	}
	deltas := make([]store.UsageDelta, 0, n)
	written := make([]usageKey, 0, n)
	i := t.orderHead
	for ; i < len(t.order) && len(deltas) < n; i++ {
		u := &t.order[i]
		k := usageKey{serial: u.e.serial, hour: u.hour}
		if _, ok := t.pending[k]; !ok {
			continue // dropped by a round whose write then failed
		}
		h := time.Unix(u.hour, 0).UTC()
		if !store.UsageKept(store.Day, store.Day.Truncate(h), now) {
			delete(t.pending, k)
			continue
		}
		deltas = append(deltas, store.UsageDelta{TeamID: u.e.teamID(), ClientID: u.e.id(), Hour: h, Tokens: u.tokens, Failures: u.failures})
		written = append(written, k)
	}
	if len(deltas) > 0 {
		ctx, cancel := context.WithTimeout(context.Background(), flushTimeout)
		defer cancel()
		if err := t.store.AddUsage(ctx, now, deltas); err != nil {
			t.log.Warn("usage flush failed; will retry", "keys", len(deltas), "err", err)
			return
		}
		if limited {
			t.usageWrites.AllowN(now, len(deltas))
		}
		for _, k := range written {
			delete(t.pending, k)
		}
	}
	// Everything before i is written or dropped. The slice is cut once
	// its written front is half of it, so each key is moved at most once
	// on average; what the cut leaves past the end is cleared, or the
	// backing array would keep dropped entries alive.
	t.orderHead = i
	if t.orderHead == len(t.order) || t.orderHead > len(t.order)/2 {
		was := len(t.order)
		t.order = t.order[:copy(t.order, t.order[t.orderHead:])]
		clear(t.order[len(t.order):was])
		t.orderBase += t.orderHead
		t.orderHead = 0
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
