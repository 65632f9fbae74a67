// Package quota counts access tokens against issuance quotas: at most Limit
// tokens per hour or per UTC day, for one key or for one team, either
// enforced (the token endpoint refuses past the limit) or only logged.
//
// # Windows
//
// A quota counts in fixed windows aligned to the clock: the hour from
// hh:00:00 to hh+1:00:00, or the UTC day. A fixed window is cheap (one
// counter, no history) and easy to explain, at a known price: a client may
// take Limit tokens at the end of one window and Limit more at the start of
// the next. Time is always the caller's clock reading (the server's
// injected clock), never time.Now, so tests move windows by moving a clock.
//
// # Counting without a lock or a round trip per token
//
// A Limiter keeps one entry per key and per team that obtained a token. On
// one instance (no Shared counter) an entry is a single atomic word, the
// window number and the count packed together, updated by compare-and-swap:
// the count is exact and no lock is taken.
//
// Several instances share a count through a Shared counter (store/redis
// implements it with INCRBY). A round trip per token would cost the token
// endpoint its throughput, so each instance leases a block of tokens at
// once (LeaseSize of the limit): it adds the block to the shared counter,
// keeps the part of the block that is still under the limit, and hands
// those tokens out locally with the same atomic word until the block is
// used up. Because a lease never grants past the limit, an enforced quota
// is never exceeded, whatever the number of instances; the price is the
// other way: tokens leased by an instance that gets no more requests for
// that key are stranded, so a client may be refused by one instance while
// up to (instances − 1) × (lease − 1) tokens of its quota sit unused on the
// others (they are still issued there). When the shared counter does not
// answer, the Limiter fails open for that entry for a second (FailOpenFor):
// tokens are issued and not counted, and it tries again.
//
// # Log mode
//
// A quota in Mode Log never refuses. The Decision of the first token over
// the limit in a window says so (FirstOver), exactly once per entry and
// window on one instance; with a Shared counter the instances agree through
// the counter which one of them reports it, so the caller writes one log
// line per key (or team) per window.
package quota

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Period is the length of a quota's window.
type Period string

// The periods a quota counts in.
const (
	Hour Period = "hour"
	Day  Period = "day"
)

// Duration is the length of the period's window (0 for an unknown period).
func (p Period) Duration() time.Duration {
	switch p {
	case Hour:
		return time.Hour
	case Day:
		return 24 * time.Hour
	}
	return 0
}

// Mode says what happens past the limit.
type Mode string

// The modes of a quota.
const (
	// Enforce refuses tokens past the limit until the window ends.
	Enforce Mode = "enforce"
	// Log issues them, and reports the first one over the limit per
	// window (Decision.FirstOver).
	Log Mode = "log"
)

// MaxLimit is the largest limit of a quota: a billion tokens (per day, about
// 11 600 a second).
const MaxLimit = 1_000_000_000

// Policy is one quota: Limit tokens per Per, enforced or logged. The zero
// Policy is no quota.
type Policy struct {
	Limit int64
	Per   Period
	Mode  Mode
}

// IsZero reports whether p is no quota.
func (p Policy) IsZero() bool { return p == Policy{} }

// Errors of Validate, for callers that word their own messages.
var (
	ErrLimit  = fmt.Errorf("the limit must be a whole number from 1 to %d", MaxLimit)
	ErrPeriod = errors.New(`the period must be "hour" or "day"`)
	ErrMode   = errors.New(`the mode must be "enforce" or "log"`)
)

// Validate checks a non-zero policy: limit in 1..MaxLimit, a known period
// and mode. It returns ErrLimit, ErrPeriod or ErrMode.
func (p Policy) Validate() error {
	switch {
	case p.Limit < 1 || p.Limit > MaxLimit:
		return ErrLimit
	case p.Per != Hour && p.Per != Day:
		return ErrPeriod
	case p.Mode != Enforce && p.Mode != Log:
		return ErrMode
	}
	return nil
}

// String is the policy in Parse's syntax ("1000/hour", "50/day:log"); the
// zero Policy is "off".
func (p Policy) String() string {
	if p.IsZero() {
		return "off"
	}
	s := strconv.FormatInt(p.Limit, 10) + "/" + string(p.Per)
	if p.Mode == Log {
		s += ":log"
	}
	return s
}

// Syntax describes Parse's input, for error messages and help text.
const Syntax = `LIMIT/hour or LIMIT/day, optionally followed by :log (count and log, never refuse) or :enforce (the default), e.g. 1000/hour or 100000/day:log; "off" for none`

// Parse reads a policy as settings and CLI flags write it: "1000/hour",
// "100000/day:log", "500/hour:enforce"; "off" or "" is the zero Policy.
// Spaces around the parts are allowed, and the words may be in any case.
func Parse(s string) (Policy, error) {
	s = strings.TrimSpace(s)
	if s == "" || strings.EqualFold(s, "off") {
		return Policy{}, nil
	}
	rest, mode, hasMode := strings.Cut(s, ":")
	limit, per, ok := strings.Cut(rest, "/")
	if !ok {
		return Policy{}, fmt.Errorf("%q is not a quota: want %s", s, Syntax)
	}
	p := Policy{Per: Period(strings.ToLower(strings.TrimSpace(per))), Mode: Enforce}
	if hasMode {
		p.Mode = Mode(strings.ToLower(strings.TrimSpace(mode)))
	}
	n, err := strconv.ParseInt(strings.TrimSpace(limit), 10, 64)
	if err != nil {
		n = 0 // ErrLimit below
	}
	p.Limit = n
	if err := p.Validate(); err != nil {
		return Policy{}, fmt.Errorf("%q: %w", s, err)
	}
	return p, nil
}

// window is the number of the window of period per that holds t, with the
// period in its lowest bit so that an hour and a day never share a number,
// and the time the window ends.
func window(per Period, t time.Time) (uint64, time.Time) {
	d := per.Duration()
	secs := int64(d / time.Second)
	u := t.Unix()
	n := u / secs
	if u < 0 && u%secs != 0 {
		n-- // floor, for clocks before 1970 (tests)
	}
	end := time.Unix((n+1)*secs, 0)
	var bit uint64
	if per == Day {
		bit = 1
	}
	return uint64(n)<<1 | bit, end
}
