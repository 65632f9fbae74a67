package server

// The store's compatibility record (store.CompatChecker, store/redis's
// schema.go): on a store shared by several keygates, this instance renews
// its heartbeat and learns which record formats may be written, at every
// tick of Options.CompatTicks.
//
// When a check finds that the store may now hold a format this build cannot
// read (every other instance was upgraded, and this one's heartbeat had
// lapsed: a long pause, a partition), the instance stops: /readyz answers
// 503 at once and Options.OnIncompatible is called (serve shuts down and
// exits 1). Refusing only writes would not be enough: the danger is
// reading, since an older build ignores a field it does not know, and a
// field that restricts access (roles, policies, status) ignored grants
// access.

import (
	"context"
	"errors"
	"sync/atomic"
	"time"

	"github.com/keygate/keygate/store"
)

// DefaultCompatTick is how often the compatibility record is checked when
// Options.CompatTicks is nil: well inside store/redis's heartbeat TTL.
const DefaultCompatTick = 5 * time.Second

type compatWatch struct {
	checker      store.CompatChecker
	incompatible atomic.Bool
	stop         context.CancelFunc
	done         chan struct{}
}

// startCompat runs the checks when the store has a compatibility record.
func (s *Server) startCompat() {
	checker, ok := store.Feature[store.CompatChecker](s.store)
	if !ok {
		return
	}
	ticks := s.cfg.CompatTicks
	var ticker *time.Ticker
	if ticks == nil {
		ticker = time.NewTicker(DefaultCompatTick)
		ticks = ticker.C
	}
	ctx, cancel := context.WithCancel(context.Background())
	w := &compatWatch{checker: checker, stop: cancel, done: make(chan struct{})}
	s.compat = w
	go func() {
		defer close(w.done)
		if ticker != nil {
			defer ticker.Stop()
		}
		for {
			select {
			case <-ctx.Done():
				return
			case <-ticks:
			}
			err := checker.Check(ctx)
			switch {
			case err == nil || ctx.Err() != nil:
			case errors.Is(err, store.ErrUnreadableFormat):
				if !w.incompatible.Swap(true) {
					s.log.Error("the store now requires a record format this keygate cannot read: stopping; run the release the other instances run", "err", err)
					if s.cfg.OnIncompatible != nil {
						s.cfg.OnIncompatible(err)
					}
				}
			default:
				// Redis unreachable: the heartbeat may lapse, and the
				// next successful check decides again.
				s.log.Warn("compatibility check failed", "err", err)
			}
		}
	}()
}

// incompatible reports whether a check refused this build.
func (s *Server) incompatible() bool { return s.compat != nil && s.compat.incompatible.Load() }

// closeCompat stops the checks and removes this instance's heartbeat, so
// the others need not wait for it to expire.
func (s *Server) closeCompat() {
	if s.compat == nil {
		return
	}
	s.compat.stop()
	<-s.compat.done
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := s.compat.checker.Leave(ctx); err != nil {
		s.log.Warn("leave the compatibility record", "err", err)
	}
}
