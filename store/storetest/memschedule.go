package storetest

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/keygate/keygate/store"
)

// memCheck is one entry of MemStore's status schedule: the client ID and
// the time in unix nanoseconds, so that equal times are one entry.
type memCheck struct {
	clientID string
	at       int64
}

var _ store.StatusSchedule = (*MemStore)(nil)

// ScheduleStatusCheck implements store.StatusSchedule.
func (m *MemStore) ScheduleStatusCheck(ctx context.Context, clientID string, at time.Time) error {
	if clientID == "" {
		return fmt.Errorf("schedule status check: %w: empty client id", store.ErrInvalid)
	}
	unlock, err := m.lock(ctx)
	if err != nil {
		return err
	}
	defer unlock()
	if m.checks == nil {
		m.checks = map[memCheck]struct{}{}
	}
	m.checks[memCheck{clientID, at.UnixNano()}] = struct{}{}
	return nil
}

// DueStatusChecks implements store.StatusSchedule.
func (m *MemStore) DueStatusChecks(ctx context.Context, now time.Time, limit int) ([]store.StatusCheck, error) {
	unlock, err := m.lock(ctx)
	if err != nil {
		return nil, err
	}
	defer unlock()
	var due []memCheck
	for c := range m.checks {
		if c.at <= now.UnixNano() {
			due = append(due, c)
		}
	}
	slices.SortFunc(due, func(a, b memCheck) int {
		return cmp.Or(cmp.Compare(a.at, b.at), cmp.Compare(a.clientID, b.clientID))
	})
	out := []store.StatusCheck{}
	for _, c := range due[:min(len(due), max(limit, 0))] {
		out = append(out, store.StatusCheck{ClientID: c.clientID, At: time.Unix(0, c.at).UTC()})
	}
	return out, nil
}

// DropStatusCheck implements store.StatusSchedule.
func (m *MemStore) DropStatusCheck(ctx context.Context, c store.StatusCheck) error {
	unlock, err := m.lock(ctx)
	if err != nil {
		return err
	}
	defer unlock()
	delete(m.checks, memCheck{c.ClientID, c.At.UnixNano()})
	return nil
}
