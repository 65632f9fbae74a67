package apikey

import (
	"context"
	"time"
)

// Walks over every key run beside the token path: the check of stored keys
// after a start (keycheck.go) and the search for ended secret generations
// (RevokeEndedGenerations, a repair every few hours once the status
// schedule is complete: statusschedule.go). At ten thousand keys either
// takes milliseconds; at ten million it is a minute of decoding on one
// core, which, run flat out, would take that core from the token endpoint
// for that minute. A pacer spreads such a walk out instead: after every
// walkPaceEvery keys it rests walkPaceRest times as long as those keys
// took, so a walk costs the machine at most a tenth of a core however
// large the store. Small stores (tests among them) never rest: their walks
// end within the first stretch.
const (
	walkPaceEvery = 4096
	walkPaceRest  = 9
)

// walkPacer paces one walk; the zero value is ready (it starts its clock on
// the first key). now and rest replace the clock and the timer in tests.
type walkPacer struct {
	n       int
	stretch time.Time // when the current stretch of walkPaceEvery keys began
	now     func() time.Time
	rest    func(ctx context.Context, d time.Duration) error
}

// step counts one key, resting when a stretch is done. It returns ctx's
// error if ctx ends while resting.
func (p *walkPacer) step(ctx context.Context) error {
	now, rest := p.now, p.rest
	if now == nil {
		now = time.Now
	}
	if rest == nil {
		rest = sleep
	}
	if p.n == 0 {
		p.stretch = now()
	}
	p.n++
	if p.n%walkPaceEvery != 0 {
		return nil
	}
	if err := rest(ctx, now().Sub(p.stretch)*walkPaceRest); err != nil {
		return err
	}
	p.stretch = now()
	return nil
}

// sleep waits d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
