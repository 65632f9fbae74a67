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

	"golang.org/x/time/rate"

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
// (15 000) would otherwise cost a store write per token: at a million keys
// in use that was most of what a token cost beyond signing (docs/scale.md).
// Past that many keys, last_used_at and usage lag by up to keys in use ÷
// WriteRate (an hour at a million) instead, and the write load stays at
// the bound.
//
// Why 250 and not more: each write is a random record's page and the
// branch pages above it. In a 10 000 000-key bbolt store that is about
// three 4 KiB pages and 70–100 µs of CPU a key, so at 1 000 a second (the
// default until 2026-12-07) the bookkeeping alone took 5 % of a two-core
// machine's token throughput and wrote 10–20 MB/s to the disk for as long
// as a million keys stayed in use: on a cloud volume, a good part of its
// baseline IOPS. Hour-scale freshness is what the large providers give for
// a key's last use; an operator who wants fresher values past 15 000 keys
// in use raises last_used_write_rate and pays that cost.
const DefaultWriteRate = 250

// Observer hears of each flush: how many keys still have a use not yet
// stored after it (deferred by coalescing, or a failed write), and how long
// its store write took (0 when there was nothing to write).
type Observer interface {
	LastUsedFlushed(pending int, took time.Duration)
}

// waitItem is an entry waiting for its coalescing window to end at due
// (unix nanos).
type waitItem struct {
	r   ref
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
// the key by its slot, which keeps the client and team IDs until every
// pendingUsage naming it is written (entry.pendingUses).
type pendingUsage struct {
	r                ref
	serial           uint64
	hour             int64
	tokens, failures int64
}

// Tracker batches last-used writes. Create it with New and stop it with Close.
type Tracker struct {
	entries *table // client ID → entry (table.go)
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
	dirty atomic.Uint64

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
	// dropped are the slots dropped by earlier flushes and not yet free;
	// dropping, those this flush dropped (see table.go).
	dropped, dropping []ref
	// lastUseWrites and usageWrites are Options.WriteRate's buckets (one
	// second's worth each), read at the flush clock; nil: no bound.
	lastUseWrites, usageWrites *rate.Limiter
	// visits counts the entries flushes have looked at, and releaseChecks
	// the dropped slots release has looked at, for the tests of what a
	// flush costs (export_test.go).
	visits, releaseChecks atomic.Int64
}

// New starts a tracker writing to st. Call Close to stop it.
func New(st Store, opts Options) *Tracker {
	t := &Tracker{
		store:   st,
		entries: newTable(),
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

// use is what Record and RecordFailure do to a key's entry.
type use int

const (
	useToken use = iota
	useFailure
)

// Record notes a successful token exchange at now by a key of teamID (""
// for an admin key, whose tokens are not counted); stored is the key's
// last_used_at as loaded from the store for this request. Safe for
// concurrent use: it takes one shard's read lock (no process-wide lock),
// and allocates nothing once the key has an entry.
func (t *Tracker) Record(clientID, teamID string, stored, now time.Time) {
	t.note(clientID, teamID, stored, now, useToken)
}

// RecordFailure notes a failed authentication at now of a known key (a
// wrong or expired secret; unknown client IDs are not counted, so guessing
// IDs cannot grow the tracker). It changes no last-used time. Safe for
// concurrent use; no process-wide lock (one shard's read lock).
func (t *Tracker) RecordFailure(clientID, teamID string, stored, now time.Time) {
	if teamID == "" {
		return
	}
	t.note(clientID, teamID, stored, now, useFailure)
}

// note finds the key's entry, making it on first use, and counts u in it
// while holding the entry's shard lock: a flush drops an entry only under
// that lock's write side, so the count cannot land in a slot that has
// meanwhile gone to another key.
func (t *Tracker) note(clientID, teamID string, stored, now time.Time, u use) {
	h, sh := t.entries.hash(clientID)
	s := &t.entries.shards[sh]
	s.mu.RLock()
	i, e, ok := s.find(clientID, h)
	if ok {
		t.count(makeRef(sh, i), e, teamID != "", now, u)
		s.mu.RUnlock()
		return
	}
	s.mu.RUnlock()
	s.mu.Lock()
	if i, e, ok = s.find(clientID, h); !ok {
		i, e = s.add(clientID, teamID, h, t.serials.Add(1))
		if !stored.IsZero() {
			// The store already holds this use, so the coalescing window
			// runs from it: a process that has just started (or another
			// replica) does not rewrite a key the store shows as written
			// moments ago.
			e.written.Store(stored.UnixNano())
			e.wroteAt.Store(stored.UnixNano())
		}
	}
	t.count(makeRef(sh, i), e, teamID != "", now, u)
	s.mu.Unlock()
}

// count records u at now in e (r), under e's shard lock.
func (t *Tracker) count(r ref, e *entry, team bool, now time.Time, u use) {
	n := now.UnixNano()
	at := &e.used
	if u == useFailure {
		e.failures.Add(1)
		at = &e.failedAt
	} else if team {
		e.tokens.Add(1)
	}
	for {
		cur := at.Load()
		// Concurrent requests finish out of order; an older time must never
		// replace a newer one.
		if cur >= n || at.CompareAndSwap(cur, n) {
			break
		}
	}
	t.markDirty(r, e)
}

// markDirty puts e (r) on the dirty list unless it is there already: one
// atomic load on the token path once a key was used since the last flush,
// and a compare-and-swap or two the first time. Lock-free.
func (t *Tracker) markDirty(r ref, e *entry) {
	if e.queued.Load() || !e.queued.CompareAndSwap(false, true) {
		return
	}
	for {
		head := t.dirty.Load()
		e.next = ref(head)
		if t.dirty.CompareAndSwap(head, uint64(r)) {
			return
		}
	}
}

// RecordUnknownFailure does for a failed authentication of an unknown
// client ID the work RecordFailure does for a known team key's, on an entry
// of its own that is never stored: unknown IDs count nowhere (so guessing
// IDs cannot grow the tracker), yet the failure costs the same, so the time
// of a refusal does not tell whether the ID exists. (A known admin key's
// failure costs nothing here, so the caller skips this for an ID shaped
// like an admin key's.) Safe for concurrent use; no process-wide lock.
func (t *Tracker) RecordUnknownFailure(clientID string, now time.Time) {
	h, sh := t.entries.hash(clientID)
	s := &t.entries.shards[sh]
	s.mu.RLock()
	s.find(clientID, h)                         // RecordFailure's lookup (an unknown ID has none)
	t.count(0, &t.decoy, true, now, useFailure) // always queued: never listed
	s.mu.RUnlock()
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
	collect := func(r ref, e *entry, tokens, failures int64) {
		if tokens <= 0 && failures <= 0 {
			return
		}
		// The entry remembers where its latest usage waits: while that is
		// this hour's and not yet taken by writeUsage, the counts go
		// there without a lookup in pending, a map as large as the keys
		// in use (at a million, a lookup was a cache miss or three on
		// every visit; docs/scale.md). Only usage of the current hour is
		// found this way, and writeUsage removes from pending only what
		// it has moved orderHead past, or hours no longer kept.
		if at := e.pendingAt - t.orderBase; at >= t.orderHead && at < len(t.order) {
			if u := &t.order[at]; u.serial == e.serial && u.hour == hour {
				u.tokens += tokens
				u.failures += failures
				return
			}
		}
		k := usageKey{serial: e.serial, hour: hour}
		at, ok := t.pending[k]
		if !ok {
			at = t.orderBase + len(t.order)
			t.pending[k] = at
			t.order = append(t.order, pendingUsage{r: r, serial: e.serial, hour: hour})
			e.pendingUses++
		}
		e.pendingAt = at
		u := &t.order[at-t.orderBase]
		u.tokens += tokens
		u.failures += failures
	}
	batch := map[string]time.Time{}
	var batched []ref
	nowN := now.UnixNano()
	sweep := final || nowN-t.lastSweep >= int64(sweepEvery)
	limited := t.lastUseWrites != nil && !final
	visit := func(r ref) {
		t.visits.Add(1)
		e := t.entries.at(r)
		if e.gone {
			return
		}
		team := e.idsLen > e.idLen
		if team {
			collect(r, e, e.tokens.Swap(0), e.failures.Swap(0))
		}
		used, written := e.used.Load(), e.written.Load()
		last := max(used, e.failedAt.Load())
		due := e.wroteAt.Load() + int64(Coalesce)
		switch {
		case used > written && (written == 0 || final ||
			nowN >= due && (!limited || e.batched || t.lastUseWrites.TokensAt(now) >= 1)):
			if e.batched { // visited twice: the later use (a map update keeps the key passed, so a copy)
				batch[strings.Clone(t.clientID(r, e))] = time.Unix(0, used).UTC()
				return
			}
			if limited && written != 0 {
				t.lastUseWrites.AllowN(now, 1)
			}
			e.batched = true
			batched = append(batched, r)
			batch[strings.Clone(t.clientID(r, e))] = time.Unix(0, used).UTC()
		case used > written:
			// Not due yet, or due with the write budget spent: it waits
			// in the heap, ordered by when it fell due, so the longest
			// waiting go first once there is budget again.
			if !e.waiting {
				e.waiting = true
				heap.Push(&t.waiting, waitItem{r: r, due: due})
			}
		case sweep && last != 0 && nowN-last > int64(Idle) && !e.waiting:
			t.drop(r, e, last, team, collect)
		}
	}
	// The keys whose coalescing window has ended (all of them on Close),
	// first: they have waited longest, and while the budget lasts. Then
	// the keys used since the last flush (a due one past the budget joins
	// the heap). next is read before queued is cleared: from then on a
	// Record may push the entry again.
	for t.waiting.Len() > 0 && (final || t.waiting[0].due <= nowN && (!limited || t.lastUseWrites.TokensAt(now) >= 1)) {
		it := heap.Pop(&t.waiting).(waitItem)
		t.entries.at(it.r).waiting = false
		visit(it.r)
	}
	for r := ref(t.dirty.Swap(0)); r != 0; {
		e := t.entries.at(r)
		next := e.next
		e.next = 0
		e.queued.Store(false)
		visit(r)
		r = next
	}
	if sweep {
		t.lastSweep = nowN
		var refs []ref
		var slots []uint32
		for sh := range t.entries.shards {
			s := &t.entries.shards[sh]
			refs = refs[:0]
			s.mu.RLock()
			slots = s.index.appendSlots(slots[:0])
			for _, i := range slots {
				refs = append(refs, makeRef(sh, i))
			}
			for _, i := range s.other {
				refs = append(refs, makeRef(sh, i))
			}
			s.mu.RUnlock()
			for _, r := range refs {
				visit(r)
			}
		}
	}
	deferred := t.waiting.Len() // pending uses this flush leaves for a later one
	// Usage first: a test that waits for TouchKeys (the flush's barrier in
	// lastused's tests) then knows the usage was written too.
	t.writeUsage(now, limited)
	t.touch(now, batch, batched, deferred)
	t.release()
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

// joinedIDs is r's client ID and team ID joined: over the table's memory
// when the entry keeps them (copy it to keep it), else the shard's long
// map's string, read under its lock (other keys come and go in that map).
func (t *Tracker) joinedIDs(r ref, e *entry) string {
	s := &t.entries.shards[r.shard()]
	if e.idsLen <= inlineIDs {
		return s.ids(e, r.slot())
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.ids(e, r.slot())
}

// clientID is the client ID of r's entry e (see joinedIDs).
func (t *Tracker) clientID(r ref, e *entry) string { return t.joinedIDs(r, e)[:e.idLen] }

// ids is r's client ID and team ID, copied.
func (t *Tracker) ids(r ref, e *entry) (clientID, teamID string) {
	all := strings.Clone(t.joinedIDs(r, e))
	return all[:e.idLen], all[e.idLen:]
}

// drop takes an idle entry out of the table, unless a use came in since
// the flush looked (last). Its last counts are collected under the write
// lock, after which no Record can find it; the slot is freed by a later
// flush (release).
func (t *Tracker) drop(r ref, e *entry, last int64, team bool, collect func(ref, *entry, int64, int64)) {
	s := &t.entries.shards[r.shard()]
	s.mu.Lock()
	defer s.mu.Unlock()
	if max(e.used.Load(), e.failedAt.Load()) != last {
		return // used meanwhile: it is on the dirty list for the next flush
	}
	s.remove(r.slot(), e)
	e.gone = true
	if team {
		collect(r, e, e.tokens.Swap(0), e.failures.Swap(0))
	}
	t.dropping = append(t.dropping, r)
}

// release frees the slots dropped by earlier flushes whose usage is
// written: this flush has taken the dirty list past any push made before
// their drop, so nothing refers to them any more. Those this flush dropped
// wait for the next one.
//
// A slot whose usage still waits for the write budget is parked: taken off
// the list rather than kept on it, and listed again (as dropped by this
// flush) by the usage write that takes its pendingUses to 0. Past the
// budget, with a million keys in use, up to a million slots wait that way
// for a quarter of an hour; looking at each of them at every flush cost
// 3 % of serve's CPU at 10 000 000 keys (docs/scale.md).
func (t *Tracker) release() {
	kept := t.dropped[:0]
	for _, r := range t.dropped {
		t.releaseChecks.Add(1)
		e := t.entries.at(r)
		if e.pendingUses > 0 {
			e.parked = true
			continue
		}
		if e.queued.Load() {
			kept = append(kept, r)
			continue
		}
		s := &t.entries.shards[r.shard()]
		s.mu.Lock()
		s.release(r.slot(), e)
		s.mu.Unlock()
	}
	t.dropped = append(kept, t.dropping...)
	clear(t.dropping)
	t.dropping = t.dropping[:0]
}

// touch writes the due last-used times; batched are their entries.
func (t *Tracker) touch(now time.Time, batch map[string]time.Time, batched []ref, deferred int) {
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
	}
	for _, r := range batched {
		e := t.entries.at(r)
		e.batched = false
		if err != nil {
			t.markDirty(r, e)
			continue
		}
		e.written.Store(batch[t.clientID(r, e)].UnixNano())
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
		k := usageKey{serial: u.serial, hour: u.hour}
		if _, ok := t.pending[k]; !ok {
			continue // dropped by a round whose write then failed
		}
		h := time.Unix(u.hour, 0).UTC()
		if !store.UsageKept(store.Day, store.Day.Truncate(h), now) {
			delete(t.pending, k)
			continue
		}
		clientID, teamID := t.ids(u.r, t.entries.at(u.r))
		deltas = append(deltas, store.UsageDelta{TeamID: teamID, ClientID: clientID, Hour: h, Tokens: u.tokens, Failures: u.failures})
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
	// Everything before i is written or dropped: its slots may be freed
	// (release). The slice is cut once its written front is half of it, so
	// each key is moved at most once on average.
	for _, u := range t.order[t.orderHead:i] {
		e := t.entries.at(u.r)
		if e.pendingUses--; e.pendingUses == 0 && e.parked {
			e.parked = false
			t.dropping = append(t.dropping, u.r)
		}
	}
	t.orderHead = i
	if t.orderHead == len(t.order) || t.orderHead > len(t.order)/2 {
		t.order = t.order[:copy(t.order, t.order[t.orderHead:])]
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
