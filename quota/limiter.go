package quota

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// Shared is a counter shared by every instance, for quotas that hold across
// instances (store/redis implements it). Add adds n to the counter called
// name and returns its new value; a counter that does not exist starts at
// 0, and the counter is dropped ttl after it was created (names carry
// their window, so a window's counter is never reused after it ends). Add
// is called once per lease, never once per token.
type Shared interface {
	AddQuota(ctx context.Context, name string, n int64, ttl time.Duration) (int64, error)
}

// Kind says what a quota counts the tokens of.
type Kind uint8

// The kinds of entries.
const (
	PerKey  Kind = iota // one key's tokens (by client ID)
	PerTeam             // all of one team's keys' tokens (by team ID)
)

// Decision is what Take decided for one token.
type Decision struct {
	// Allowed is false only for an enforced quota over its limit.
	Allowed bool
	// Remaining is how many more tokens the window allows (an estimate
	// with a Shared counter: see the package comment), 0 when none.
	Remaining int64
	// Reset is the time until the window ends.
	Reset time.Duration
	// FirstOver is set on the first token over the limit in the window
	// (in Log mode, where it is issued all the same): the caller reports
	// it, once.
	FirstOver bool
	// Counted is false when the token was not counted (the Shared counter
	// failed and the quota is failing open): no headers should promise
	// anything then.
	Counted bool
}

// Options configure a Limiter.
type Options struct {
	// Shared, when set, is the counter instances share; nil counts in this
	// process only (one instance, exact).
	Shared Shared
	// Lease is the block size taken from Shared at once; 0 means
	// LeaseSize(limit) for each quota.
	Lease int64
	// OnSharedError, when set, hears of each failed Add (it must be
	// cheap: the Limiter calls it on the token path).
	OnSharedError func(error)
}

// FailOpenFor is how long an entry issues uncounted tokens after its
// Shared counter failed, before it tries the counter again.
const FailOpenFor = time.Second

// LeaseSize is the default block an instance takes from the shared counter
// for a quota of limit tokens: a hundredth of the limit, from 1 to 100. A
// quota of 1 000 an hour costs one round trip per 10 tokens; a large one
// one per 100.
func LeaseSize(limit int64) int64 { return min(max(limit/100, 1), 100) }

// Limiter counts tokens against quotas. Safe for concurrent use; it takes
// no process-wide lock (entries live in a sync.Map, each is an atomic word
// plus, with a Shared counter, a mutex of its own taken when its lease is
// renewed) and allocates nothing per token once an entry exists.
type Limiter struct {
	opts    Options
	entries [2]sync.Map // by Kind: ID → *entry
	created atomic.Uint64
}

// New returns a Limiter.
func New(opts Options) *Limiter { return &Limiter{opts: opts} }

// The packed state of an entry: the window number in the high bits, a
// count (one instance: tokens taken; shared: tokens of the lease left) in
// the low ones.
const (
	countBits = 40
	countMask = 1<<countBits - 1
	winMask   = 1<<(64-countBits) - 1
)

func pack(win uint64, n int64) uint64 { return (win&winMask)<<countBits | uint64(n)&countMask }
func unpack(s uint64) (uint64, int64) { return s >> countBits, int64(s & countMask) }

type entry struct {
	state  atomic.Uint64 // pack(window, count or lease left)
	logged atomic.Uint64 // window+1 whose FirstOver was given out
	// With a Shared counter only:
	leaseEnd atomic.Int64 // the shared count at the end of the current lease
	mu       sync.Mutex   // serialises lease renewals of this entry
	// Under mu: the window and limit at which the shared count was found
	// exhausted (so refusals cost no round trip), and the end of a
	// fail-open spell.
	exhaustedWin   uint64
	exhaustedLimit int64
	failOpenUntil  time.Time
}

func (l *Limiter) entry(kind Kind, id string, now time.Time) *entry {
	m := &l.entries[kind&1]
	if v, ok := m.Load(id); ok {
		return v.(*entry)
	}
	v, loaded := m.LoadOrStore(id, &entry{})
	if !loaded && l.created.Add(1)%sweepEvery == 0 {
		l.sweep(now)
	}
	return v.(*entry)
}

// sweepEvery is how many new entries make a sweep.
const sweepEvery = 4096

// sweep drops entries whose window ended at least a day ago (deleted keys,
// idle teams), so the table stays the size of the active set. It runs on
// one request in sweepEvery that creates an entry, never on a warm path.
// An entry swept while a request uses it loses that one count, which is
// then in a window at least a day old.
func (l *Limiter) sweep(now time.Time) {
	hour, _ := window(Hour, now)
	day, _ := window(Day, now)
	for i := range l.entries {
		l.entries[i].Range(func(k, v any) bool {
			w, _ := unpack(v.(*entry).state.Load())
			// Window numbers step by 2 (the low bit is the period).
			stale := w+2*24 < hour&winMask
			if w&1 == 1 {
				stale = w+2*1 < day&winMask
			}
			if stale {
				l.entries[i].Delete(k)
			}
			return true
		})
	}
}

// Take counts one token of id (a client ID or a team ID, per kind) against
// p at now. A zero p takes nothing and allows, and so does a policy that
// could not have passed Validate (a hand-edited record must not stop the
// token path). When the token is later not issued (another quota refused
// it), Return gives it back.
func (l *Limiter) Take(ctx context.Context, kind Kind, id string, p Policy, now time.Time) Decision {
	if p.Limit <= 0 || p.Per.Duration() == 0 {
		return Decision{Allowed: true}
	}
	win, end := window(p.Per, now)
	d := Decision{Allowed: true, Reset: end.Sub(now), Counted: true}
	e := l.entry(kind, id, now)
	var number int64 // the token's number in the window, across instances
	if l.opts.Shared == nil {
		number = l.takeLocal(e, win, p)
	} else {
		number = l.takeShared(ctx, e, kind, id, win, now, d.Reset, p)
		if number == failedOpen {
			return Decision{Allowed: true, Reset: d.Reset}
		}
	}
	if number < 0 { // refused: the limit is reached
		d.Allowed = false
		return d
	}
	d.Remaining = max(p.Limit-number, 0)
	if l.opts.Shared != nil {
		// Tokens this instance holds count as remaining; the ones others
		// hold do not.
		_, left := unpack(e.state.Load())
		d.Remaining = max(p.Limit-e.leaseEnd.Load(), 0) + left
	}
	if number > p.Limit && e.logged.Load() != win+1 && e.logged.Swap(win+1) != win+1 {
		d.FirstOver = l.firstOverShared(ctx, kind, id, win, d.Reset)
	}
	return d
}

// failedOpen is takeShared's answer when the shared counter failed.
const failedOpen = -2

// takeLocal counts the token in e's word: its number in the window, or -1
// when p is enforced and the limit is reached.
func (l *Limiter) takeLocal(e *entry, win uint64, p Policy) int64 {
	for {
		old := e.state.Load()
		w, n := unpack(old)
		if w != win&winMask {
			n = 0
		}
		if n >= p.Limit && p.Mode == Enforce {
			return -1
		}
		if n >= countMask {
			return n // saturated (log mode only): stays over the limit
		}
		if e.state.CompareAndSwap(old, pack(win, n+1)) {
			return n + 1
		}
	}
}

// takeShared takes one token from e's lease, renewing the lease from the
// shared counter when it is used up.
func (l *Limiter) takeShared(ctx context.Context, e *entry, kind Kind, id string, win uint64, now time.Time, reset time.Duration, p Policy) int64 {
	if n, ok := takeLease(e, win, p); ok {
		return n
	}
	// The lease is used up (or belongs to an old window): renew it, one
	// goroutine at a time; the others wait for its result and then take
	// from the renewed lease.
	e.mu.Lock()
	defer e.mu.Unlock()
	if n, ok := takeLease(e, win, p); ok {
		return n
	}
	if now.Before(e.failOpenUntil) {
		return failedOpen
	}
	if p.Mode == Enforce && e.exhaustedWin == win && p.Limit <= e.exhaustedLimit {
		return -1 // known to be exhausted: no round trip per refusal
	}
	lease := l.opts.Lease
	if lease <= 0 {
		lease = LeaseSize(p.Limit)
	}
	total, err := l.opts.Shared.AddQuota(ctx, counterName(kind, id, win), lease, reset+time.Minute)
	if err != nil {
		e.failOpenUntil = now.Add(FailOpenFor)
		if l.opts.OnSharedError != nil {
			l.opts.OnSharedError(err)
		}
		return failedOpen
	}
	prior := total - lease // tokens leased before this block, by every instance
	granted := lease
	if p.Mode == Enforce {
		granted = min(max(p.Limit-prior, 0), lease)
	}
	if granted == 0 {
		e.exhaustedWin, e.exhaustedLimit = win, p.Limit
		e.leaseEnd.Store(total)
		e.state.Store(pack(win, 0))
		return -1
	}
	e.leaseEnd.Store(prior + granted)
	e.state.Store(pack(win, granted-1))
	return prior + 1
}

// takeLease takes one token from e's current lease: its number in the
// window, or ok false when the lease is used up or of another window. An
// enforced quota whose limit was lowered below the lease refuses (-1).
func takeLease(e *entry, win uint64, p Policy) (int64, bool) {
	for {
		end := e.leaseEnd.Load()
		old := e.state.Load()
		w, left := unpack(old)
		if w != win&winMask || left == 0 {
			return 0, false
		}
		if e.leaseEnd.Load() != end {
			continue // renewed between the two loads
		}
		n := end - left + 1
		if p.Mode == Enforce && n > p.Limit {
			return -1, true
		}
		if e.state.CompareAndSwap(old, pack(win, left-1)) {
			return n, true
		}
	}
}

// firstOverShared decides which instance reports the first token over a
// quota in a window: with one instance, this one; with a Shared counter,
// the first to add to the window's "over" counter.
func (l *Limiter) firstOverShared(ctx context.Context, kind Kind, id string, win uint64, reset time.Duration) bool {
	if l.opts.Shared == nil {
		return true
	}
	n, err := l.opts.Shared.AddQuota(ctx, counterName(kind, id, win)+":over", 1, reset+time.Minute)
	if err != nil {
		if l.opts.OnSharedError != nil {
			l.opts.OnSharedError(err)
		}
		return true // better a second line than none
	}
	return n == 1
}

// Return gives back one token Take counted for id at now under p, when the
// token was not issued after all (the team's quota refused it after the
// key's allowed it). With a Shared counter it goes back to this
// instance's lease.
func (l *Limiter) Return(kind Kind, id string, p Policy, now time.Time) {
	if p.Limit <= 0 || p.Per.Duration() == 0 {
		return
	}
	win, _ := window(p.Per, now)
	v, ok := l.entries[kind&1].Load(id)
	if !ok {
		return
	}
	e := v.(*entry)
	for {
		old := e.state.Load()
		w, n := unpack(old)
		if w != win&winMask {
			return // the window turned: nothing to give back to
		}
		next := n - 1 // one instance: one fewer taken
		if l.opts.Shared != nil {
			next = n + 1 // shared: one more left in the lease
		}
		if next < 0 || e.state.CompareAndSwap(old, pack(win, next)) {
			return
		}
	}
}

// counterName names the shared counter of one entry's window.
func counterName(kind Kind, id string, win uint64) string {
	k := "k:"
	if kind == PerTeam {
		k = "t:"
	}
	return k + id + ":" + uitoa(win)
}

func uitoa(u uint64) string {
	var b [20]byte
	i := len(b)
	for {
		i--
		b[i] = byte('0' + u%10)
		u /= 10
		if u == 0 {
			return string(b[i:])
		}
	}
}
