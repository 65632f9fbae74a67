// Package throttle slows down guessing of client credentials (RFC 6749
// §2.3.1: "the authorization server MUST protect the endpoint against
// brute force attacks"). It counts failed authentications, never
// requests: a client that authenticates correctly never spends anything.
//
// Two token buckets of failures, both on the caller's clock:
//
//   - one per (source, client ID) pair. When it is empty the pair is
//     throttled: every request of that pair is refused (429 with
//     Retry-After) before its secret is looked at, a correct secret
//     included. Refusing without evaluating is the point: a throttled
//     guesser learns nothing and makes the server do no work.
//   - one per source, looser, against spraying many client IDs (existing
//     or not) from one address. It never blocks a pair that authenticated
//     successfully from that source recently (Config.Recent), so one
//     misconfigured integration behind a NAT or a load balancer cannot lock
//     out the others there.
//
// A source is an IPv4 address or an IPv6 /64 (whoever holds one address
// of a /64 usually holds all of it). Nothing here is per client ID alone:
// a key is never locked out from everywhere, which would let anyone disable
// anyone's key by failing on purpose, and its 256-bit secret makes
// guessing futile anyway. The throttle only makes guessing slow and cheap
// for the server.
//
// Every failure, of a known client ID or of an unknown one, counts once in
// its pair's bucket and once in its source's: the throttle does the same
// work for both and so cannot become an oracle of which client IDs exist.
//
// The buckets are GCRA (the generic cell rate algorithm): one number per
// bucket, its theoretical arrival time (TAT). A failure moves it one
// interval (1/rate) later, starting from now if it lies in the past; the
// bucket is empty, and its owner throttled, while TAT − now exceeds
// (burst−1) intervals. A steady guesser is held to rate failures per
// second after a burst of burst.
//
// Memory is bounded: the pair and source tables are sets of LRU shards
// (github.com/hashicorp/golang-lru/v2), and the table of recent successes
// one array of slots per shard that forgets the oldest success first
// (successes.go), each shard with its own lock, so no request takes a
// process-wide lock. Client IDs are kept as 64-bit hashes, so an 8 KiB
// garbage client ID costs the same 16 bytes as a real one. A request that
// succeeds reads the tables (shared locks of three shards) and writes the
// success table at most once a minute per pair; it allocates nothing.
//
// Several instances (Config.Shared, store/redis) count failures together:
// each failure is added to the shared buckets (one round trip, on the
// failure path only) and, when a bucket is found empty, the instance
// announces it over pub/sub so every instance's local table refuses the
// pair or source too. A request that succeeds reads local memory only.
package throttle

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
)

// Defaults of Config's zero values.
const (
	// DefaultRecent is how long a successful authentication keeps its pair
	// clear of its source's bucket.
	DefaultRecent = 24 * time.Hour
	// DefaultMaxEntries bounds each table (pairs, sources, successes).
	DefaultMaxEntries = 100_000
	// shards is the number of LRU shards per table: enough that two
	// requests rarely meet on one lock.
	shards = 64
	// successRefresh is how often a pair's success is written again while
	// it keeps succeeding: the success path writes at most once a minute.
	successRefresh = time.Minute
)

// Bucket is one kind of bucket's limits: Burst failures at once, then one
// more every Every. A zero Burst turns the bucket off.
type Bucket struct {
	Burst int
	Every time.Duration
}

func (b Bucket) on() bool { return b.Burst > 0 && b.Every > 0 }

// threshold is how far TAT may lie ahead of now before the bucket is
// empty: burst−1 intervals.
func (b Bucket) threshold() time.Duration { return time.Duration(b.Burst-1) * b.Every }

// span is how long an episode of throttling lasts after the last time the
// bucket was found empty: the time a full bucket takes to refill. A
// throttle that starts again within it is the same episode (one audit
// event, not one per failure).
func (b Bucket) span() time.Duration { return time.Duration(b.Burst) * b.Every }

// Config configures a Limiter.
type Config struct {
	// Pair is the bucket of a (source, client ID) pair; Source the bucket
	// of a source. Either may be off (zero Burst); both off, New returns a
	// Limiter that never throttles.
	Pair, Source Bucket
	// Recent is how long a pair that authenticated successfully stays
	// clear of its source's bucket. Default DefaultRecent.
	Recent time.Duration
	// MaxEntries bounds each table. Default DefaultMaxEntries.
	MaxEntries int
	// Now is the clock (the server's). Default time.Now.
	Now func() time.Time
	// Shared, when set, counts failures together with other instances.
	Shared Shared
	// Logger hears of a failing Shared (at most one line a minute).
	Logger *slog.Logger
}

// Shared is what several instances hold in common: the failure counts and
// a broadcast of throttles. store/redis implements it on Redis.
type Shared interface {
	// AddFailures adds a failure to each bucket of adds, atomically
	// (GCRA, as described in the package comment, on the caller's now),
	// and returns their new states, in one round trip. The buckets are
	// one failure's, all of source (a Redis Cluster keeps them in one
	// slot by it).
	AddFailures(ctx context.Context, now time.Time, source string, adds []SharedAdd) ([]SharedState, error)
	// Announce tells every instance that a bucket is empty until a time.
	Announce(ctx context.Context, n Notice) error
	// Listen calls f for every notice announced by any instance (this one
	// included) until ctx ends; it resubscribes after errors.
	Listen(ctx context.Context, f func(Notice))
}

// SharedAdd is one bucket's failure: Key names the bucket the same way on
// every instance; Every, Threshold and Span are the bucket's limits.
type SharedAdd struct {
	Key       string
	Every     time.Duration
	Threshold time.Duration
	Span      time.Duration
}

// SharedState is a bucket after a failure: its TAT, and whether this
// failure emptied it at the start of a new episode (exactly one instance
// hears Started for an episode).
type SharedState struct {
	TAT     time.Time
	Started bool
}

// Notice says the bucket named Key is empty until Until.
type Notice struct {
	Key   string
	Until time.Time
}

// Pair is a request's (source, client ID), resolved once per request.
type Pair struct {
	src Source
	id  uint64
}

// Source is the bucket a source address falls in: an IPv4 address or an
// IPv6 /64. The zero Source (an unreadable address) is one bucket.
type Source struct{ a netip.Addr }

// SourceOf is the source of address a.
func SourceOf(a netip.Addr) Source {
	a = a.Unmap().WithZone("")
	if a.Is6() {
		p, _ := a.Prefix(64)
		a = p.Addr()
	}
	return Source{a}
}

// String is the source as audit events and logs show it: the address, or
// the /64 prefix.
func (s Source) String() string {
	switch {
	case !s.a.IsValid():
		return "unknown"
	case s.a.Is6():
		return netip.PrefixFrom(s.a, 64).String()
	}
	return s.a.String()
}

// Source is the pair's source.
func (p Pair) Source() Source { return p.src }

// hashID is FNV-1a of a client ID: stable across instances (shared
// buckets are named by it), allocation-free. A collision only makes two
// client IDs of one source share a bucket, which an attacker gains nothing
// from: client IDs are not secret, so failing on purpose with the victim's
// own ID does the same.
func hashID(id string) uint64 {
	h := uint64(14695981039346656037)
	for i := 0; i < len(id); i++ {
		h ^= uint64(id[i])
		h *= 1099511628211
	}
	return h
}

// shard picks a key's shard.
func (p Pair) shard() int { return int(p.hash() >> 58) } // top 6 bits: 64 shards

func (s Source) shard() int { return Pair{src: s}.shard() }

// bucket is one GCRA bucket. Writes (failures, notices) take mu; the
// request path reads blocked without it.
type bucket struct {
	blocked atomic.Int64 // unix ns until which the bucket is empty; 0 never
	mu      sync.Mutex
	tat     int64 // unix ns
	episode int64 // unix ns: a throttle before this is the same episode
}

// fail adds one failure at now (ns) and reports whether the bucket is now
// empty and whether that starts a new episode.
func (b *bucket) fail(lim Bucket, now int64) (blockedUntil int64, started bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.tat = max(b.tat, now) + int64(lim.Every)
	until := b.tat - int64(lim.threshold())
	if until <= now {
		return 0, false
	}
	started = b.episode <= now
	b.episode = until + int64(lim.span())
	b.raise(until)
	return until, started
}

// merge takes in a shared bucket's state (its TAT), or a notice (until).
func (b *bucket) merge(lim Bucket, tat int64) int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.tat = max(b.tat, tat)
	until := b.tat - int64(lim.threshold())
	b.episode = max(b.episode, until+int64(lim.span()))
	b.raise(until)
	return until
}

func (b *bucket) raise(until int64) {
	if until > b.blocked.Load() {
		b.blocked.Store(until)
	}
}

// table is a bounded map of buckets, sharded.
type table[K comparable] struct {
	shards [shards]*lru.Cache[K, *bucket]
}

func newTable[K comparable](entries int) *table[K] {
	t := &table[K]{}
	per := max(1, entries/shards)
	for i := range t.shards {
		t.shards[i], _ = lru.New[K, *bucket](per) // only a size ≤ 0 is an error
	}
	return t
}

func (t *table[K]) peek(shard int, k K) *bucket {
	b, _ := t.shards[shard].Peek(k)
	return b
}

// get returns k's bucket, made if absent (and marked recently used).
func (t *table[K]) get(shard int, k K) *bucket {
	c := t.shards[shard]
	if b, ok := c.Get(k); ok {
		return b
	}
	b := &bucket{}
	if prev, ok, _ := c.PeekOrAdd(k, b); ok {
		return prev
	}
	return b
}

func (t *table[K]) len() int {
	n := 0
	for _, c := range t.shards {
		n += c.Len()
	}
	return n
}

// Limiter holds the tables. A nil *Limiter never throttles.
type Limiter struct {
	cfg       Config
	pairs     *table[Pair]
	sources   *table[Source]
	successes *successTable
	warned    atomic.Int64 // unix ns of the last warning about Shared
}

// New returns a Limiter, or nil when both buckets are off.
func New(cfg Config) *Limiter {
	if !cfg.Pair.on() && !cfg.Source.on() {
		return nil
	}
	if cfg.Recent <= 0 {
		cfg.Recent = DefaultRecent
	}
	if cfg.MaxEntries <= 0 {
		cfg.MaxEntries = DefaultMaxEntries
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	l := &Limiter{cfg: cfg, pairs: newTable[Pair](cfg.MaxEntries), sources: newTable[Source](cfg.MaxEntries)}
	l.successes = newSuccessTable(cfg.MaxEntries)
	return l
}

// PairOf is the pair of a request from address src naming clientID.
func PairOf(src netip.Addr, clientID string) Pair {
	return Pair{src: SourceOf(src), id: hashID(clientID)}
}

// Check says whether a request of p may be authenticated now: 0 when it
// may, else how long until it may (the pair's bucket is empty, or its
// source's is and the pair has not succeeded recently). It only reads.
func (l *Limiter) Check(p Pair) time.Duration {
	if l == nil {
		return 0
	}
	now := l.cfg.Now().UnixNano()
	sh := p.shard()
	var wait int64
	if b := l.pairs.peek(sh, p); b != nil {
		wait = b.blocked.Load() - now
	}
	if b := l.sources.peek(p.src.shard(), p.src); b != nil {
		if w := b.blocked.Load() - now; w > wait && !l.recentSuccess(p, now) {
			wait = w
		}
	}
	return time.Duration(max(wait, 0))
}

func (l *Limiter) recentSuccess(p Pair, now int64) bool {
	at, ok := l.successes.last(p)
	return ok && now-at < int64(l.cfg.Recent)
}

// Succeeded records that p authenticated: the pair stays clear of its
// source's bucket for Config.Recent. Local memory only; a write at most
// once a minute per pair, an allocation only for a pair not yet known.
func (l *Limiter) Succeeded(p Pair) {
	if l == nil {
		return
	}
	l.successes.record(p, l.cfg.Now().UnixNano(), int64(successRefresh))
}

// Started says which buckets a failure emptied at the start of a new
// episode: the moment to write one audit event, not one per failure.
type Started struct{ Pair, Source bool }

// Failed records a failed authentication of p: one failure in the pair's
// bucket and one in its source's, whether or not the client ID exists
// (the same work for both: see the package comment). With Shared set it
// also counts them there and announces an emptied bucket; if Shared
// fails, the local count stands alone.
func (l *Limiter) Failed(ctx context.Context, p Pair) Started {
	if l == nil {
		return Started{}
	}
	now := l.cfg.Now()
	ns := now.UnixNano()
	pb := l.pairs.get(p.shard(), p)
	sb := l.sources.get(p.src.shard(), p.src)
	var local Started
	if l.cfg.Pair.on() {
		_, local.Pair = pb.fail(l.cfg.Pair, ns)
	}
	if l.cfg.Source.on() {
		_, local.Source = sb.fail(l.cfg.Source, ns)
	}
	if l.cfg.Shared == nil {
		return local
	}
	// Shared: the shared store decides episodes, so that exactly one
	// instance reports each.
	var st Started
	var adds []SharedAdd
	var bs []*bucket
	var lims []Bucket
	var started []*bool
	if l.cfg.Pair.on() {
		adds = append(adds, SharedAdd{Key: p.key(), Every: l.cfg.Pair.Every, Threshold: l.cfg.Pair.threshold(), Span: l.cfg.Pair.span()})
		bs, lims, started = append(bs, pb), append(lims, l.cfg.Pair), append(started, &st.Pair)
	}
	if l.cfg.Source.on() {
		adds = append(adds, SharedAdd{Key: p.src.key(), Every: l.cfg.Source.Every, Threshold: l.cfg.Source.threshold(), Span: l.cfg.Source.span()})
		bs, lims, started = append(bs, sb), append(lims, l.cfg.Source), append(started, &st.Source)
	}
	states, err := l.cfg.Shared.AddFailures(ctx, now, p.src.keyAddr(), adds)
	if err != nil || len(states) != len(adds) {
		l.warn("throttle: counting a failed authentication in the shared store failed; counting it on this instance only", err)
		return local
	}
	for i, s := range states {
		until := bs[i].merge(lims[i], s.TAT.UnixNano())
		*started[i] = s.Started
		if until > ns {
			if err := l.cfg.Shared.Announce(ctx, Notice{Key: adds[i].Key, Until: time.Unix(0, until)}); err != nil {
				l.warn("throttle: announcing a throttle to the other instances failed", err)
			}
		}
	}
	return st
}

func (l *Limiter) warn(msg string, err error) {
	now := time.Now().UnixNano() // the real clock: this only paces a log line
	if last := l.warned.Load(); now-last >= int64(time.Minute) && l.warned.CompareAndSwap(last, now) {
		l.cfg.Logger.Warn(msg, "err", err)
	}
}

// Listen applies the notices of other instances until ctx ends (a no-op
// without Shared). Run it in a goroutine of its own.
func (l *Limiter) Listen(ctx context.Context) {
	if l == nil || l.cfg.Shared == nil {
		return
	}
	l.cfg.Shared.Listen(ctx, l.apply)
}

// apply takes in a notice: the named bucket is empty until n.Until.
func (l *Limiter) apply(n Notice) {
	kind, src, id, err := parseKey(n.Key)
	if err != nil {
		return // another version's notice, or noise: nothing to apply
	}
	until := n.Until.UnixNano()
	switch {
	case kind == "p" && l.cfg.Pair.on():
		p := Pair{src: src, id: id}
		l.pairs.get(p.shard(), p).merge(l.cfg.Pair, until+int64(l.cfg.Pair.threshold()))
	case kind == "s" && l.cfg.Source.on():
		l.sources.get(src.shard(), src).merge(l.cfg.Source, until+int64(l.cfg.Source.threshold()))
	}
}

// key names a pair's bucket across instances: "p/<source>/<id hash>".
func (p Pair) key() string {
	return "p/" + p.src.keyAddr() + "/" + strconv.FormatUint(p.id, 16)
}

// key names a source's bucket across instances: "s/<source>".
func (s Source) key() string { return "s/" + s.keyAddr() }

func (s Source) keyAddr() string {
	if !s.a.IsValid() {
		return "-"
	}
	return s.a.String()
}

func parseKey(k string) (kind string, src Source, id uint64, err error) {
	parts := strings.Split(k, "/")
	if len(parts) < 2 {
		return "", Source{}, 0, fmt.Errorf("throttle key %q: no kind", k)
	}
	if parts[1] != "-" {
		a, err := netip.ParseAddr(parts[1])
		if err != nil {
			return "", Source{}, 0, fmt.Errorf("throttle key %q: %w", k, err)
		}
		src = SourceOf(a)
	}
	switch {
	case parts[0] == "s" && len(parts) == 2:
		return "s", src, 0, nil
	case parts[0] == "p" && len(parts) == 3:
		id, err := strconv.ParseUint(parts[2], 16, 64)
		if err != nil {
			return "", Source{}, 0, fmt.Errorf("throttle key %q: %w", k, err)
		}
		return "p", src, id, nil
	}
	return "", Source{}, 0, fmt.Errorf("throttle key %q: unknown form", k)
}

// Len reports the entries of the pair and source tables (tests: the bound).
func (l *Limiter) Len() (pairs, sources int) {
	if l == nil {
		return 0, 0
	}
	return l.pairs.len(), l.sources.len()
}
