package apikey

import (
	"context"
	"fmt"
	"time"

	"github.com/keygate/keygate/store"
)

// Defaults of a usage report when from is not given: the last 24 hours by
// hour, the last 30 days (today included) by day.
const (
	DefaultUsageHours = 24
	DefaultUsageDays  = 30
)

// UsageRequest asks for a team's usage. Zero From and To take the defaults
// (DefaultUsageHours or DefaultUsageDays back from the current bucket, up
// to the end of the current bucket).
type UsageRequest struct {
	Team        string
	Granularity store.Granularity
	From, To    time.Time
}

// UsageReport is a team's usage over [From, To), both on bucket bounds.
type UsageReport struct {
	Granularity store.Granularity
	From, To    time.Time
	// Keys are the team's keys now, oldest first, in ListKeys order.
	Keys []store.Key
	// Buckets are the active buckets of every key that has usage in the
	// range, deleted keys included (store.UsageStore keeps their usage).
	Buckets []store.UsageBucket
}

// UsageWindow is how far back usage of g can be asked for: the oldest
// bucket start is the current bucket's start minus the retention (48 hours
// back by hour, 35 days back by day), the buckets store.UsageKept still
// guarantees.
func UsageWindow(g store.Granularity) time.Duration { return g.Retention() }

// Usage reports a team's usage. The range is aligned outwards to whole
// buckets: From down to its bucket's start, To up to the next bucket
// bound, and a To past the end of the current bucket is cut there. A From
// older than UsageWindow, or not before To, is an *InvalidError, as are an
// invalid team or granularity.
func (s *Service) Usage(ctx context.Context, req UsageRequest) (UsageReport, error) {
	g := req.Granularity
	if !ValidTeamID(req.Team) {
		return UsageReport{}, invalid("team id %q is not valid: %s", req.Team, TeamIDRule)
	}
	if !g.Valid() {
		return UsageReport{}, invalid("granularity must be hour or day")
	}
	now := s.cfg.Now().UTC()
	current := g.Truncate(now)
	end := current.Add(g.Size())
	from, to := req.From, req.To
	if from.IsZero() {
		n := DefaultUsageDays
		if g == store.Hour {
			n = DefaultUsageHours
		}
		from = current.Add(-time.Duration(n-1) * g.Size())
	}
	if to.IsZero() || to.After(end) {
		to = end
	}
	from = g.Truncate(from)
	if t := g.Truncate(to); t.Before(to) {
		to = t.Add(g.Size())
	}
	oldest := current.Add(-UsageWindow(g))
	if from.Before(oldest) {
		if g == store.Hour {
			return UsageReport{}, invalid("from %s is too far back: usage by hour is kept for %d hours, so from must be %s or later; for older usage use granularity=day (kept %d days)",
				req.From.UTC().Format(time.RFC3339), int(store.UsageHourRetention/time.Hour), oldest.Format(time.RFC3339), int(store.UsageDayRetention/(24*time.Hour)))
		}
		return UsageReport{}, invalid("from %s is too far back: usage by day is kept for %d days, so from must be %s or later",
			req.From.UTC().Format(time.RFC3339), int(store.UsageDayRetention/(24*time.Hour)), oldest.Format(time.DateOnly))
	}
	if !from.Before(to) {
		return UsageReport{}, invalid("from %s must be before to %s", from.Format(time.RFC3339), to.Format(time.RFC3339))
	}
	buckets, err := s.store.Usage(ctx, store.UsageQuery{TeamID: req.Team, Granularity: g, From: from, To: to, Now: now})
	if err != nil {
		return UsageReport{}, fmt.Errorf("usage of team %s: %w", req.Team, err)
	}
	keys, err := s.List(ctx, req.Team)
	if err != nil {
		return UsageReport{}, err
	}
	return UsageReport{Granularity: g, From: from, To: to, Keys: keys, Buckets: buckets}, nil
}
