package servertest

import (
	"sync"
	"time"
)

// Clock is the time a keygate under test sees (server.Options.Now). A
// stopped clock (NewClock) reads the same until Set or Advance moves it, so a
// test can name exact instants; a running clock (NewWallClock) goes on
// with the wall clock from wherever it was last set, so code that orders
// events by time (creation order, say) still sees them apart. It is safe
// for concurrent use.
type Clock struct {
	mu      sync.Mutex
	at      time.Time // the reading at setAt
	setAt   time.Time // wall time of the last Set or Advance
	running bool
}

// NewClock returns a clock stopped at t.
func NewClock(t time.Time) *Clock { return &Clock{at: t} }

// NewWallClock returns a running clock that reads the wall clock until a
// Set or Advance moves it.
func NewWallClock() *Clock {
	now := time.Now()
	return &Clock{at: now, setAt: now, running: true}
}

// Now is the clock's reading; pass it as server.Options.Now.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.running {
		return c.at
	}
	return c.at.Add(time.Since(c.setAt))
}

// Set makes the clock read t now; a running clock goes on from there.
func (c *Clock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.at, c.setAt = t, time.Now()
}

// Advance moves the clock d forward (backward when d < 0) and returns the
// new reading.
func (c *Clock) Advance(d time.Duration) time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.running {
		c.at, c.setAt = c.at.Add(time.Since(c.setAt)), time.Now()
	}
	c.at = c.at.Add(d)
	return c.at
}
