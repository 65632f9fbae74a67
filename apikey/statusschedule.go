package apikey

// The status entries of a key change at two kinds of moment: when the key
// changes (a rotation, a leaked secret, a suspension: the record is written
// first, the entries follow) and when a rotated secret's grace period ends
// (nothing happens then but the clock). Both used to be found by a walk of
// every key every minute (RevokeEndedGenerations), which at ten million
// keys was a tenth of a core for as long as the store took to walk — the
// whole of a load test after a start (docs/scale.md, "The thirteenth
// change"). A store with a store.StatusSchedule is told instead: each
// change writes an entry for its key before it writes the key (the time it
// needs a look: now, or the end of the grace period), and AuditWorker
// handles what is due each minute (RevokeDueStatusChecks), reading the key
// as stored then and doing for it what the walk would. A crash between the
// entry and the change leaves an entry that finds nothing to do; the other
// order could leave a change no one comes back to.
//
// The walk stays, as a repair: once every StatusRepairEvery, and every
// minute on a store whose schedule is not known to be complete (one
// written by a release without it: the first complete walk schedules every
// pending grace period and records store.StatusScheduleComplete).

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/keygate/keygate/store"
)

// scheduleStatusCheck writes the schedule's entry for a change of
// clientID's status entries at (a no-op on a store without a schedule,
// whose walk finds every change).
func (s *Service) scheduleStatusCheck(ctx context.Context, clientID string, at time.Time) error {
	sched, ok := store.Feature[store.StatusSchedule](s.store)
	if !ok {
		return nil
	}
	if err := sched.ScheduleStatusCheck(ctx, clientID, at); err != nil {
		return fmt.Errorf("schedule the status entries of key %s: %w", clientID, err)
	}
	return nil
}

// scheduleComplete reports whether st has a schedule that holds every key
// whose status entries need work (store.StatusScheduleComplete).
func scheduleComplete(ctx context.Context, st store.Store) (bool, error) {
	if _, ok := store.Feature[store.StatusSchedule](st); !ok {
		return false, nil
	}
	absent, err := singletonAbsent(ctx, st, store.StatusScheduleComplete)
	return !absent && err == nil, err
}

// markScheduleComplete records that st's schedule is complete (a no-op on
// a store without one).
func markScheduleComplete(ctx context.Context, st store.Store) error {
	if _, ok := store.Feature[store.StatusSchedule](st); !ok {
		return nil
	}
	_, err := st.CreateSingleton(ctx, store.StatusScheduleComplete, []byte("1"))
	return err
}

// statusWork is what a key's status entries need at a moment, given the
// status list read before: the bit of an ended previous generation, the
// bit of a suspended current one, or entries that do not show the key's
// suspension.
type statusWork struct {
	endPrevious      int64 // PreviousStatusIndex, when that generation ended
	revokeSuspended  int64 // StatusIndex of a suspended secret whose bit is not set
	resyncSuspension bool
}

func (w statusWork) any() bool {
	return w.endPrevious != 0 || w.revokeSuspended != 0 || w.resyncSuspension
}

func statusWorkOf(k store.Key, l store.StatusList, now time.Time) statusWork {
	var w statusWork
	if k.PreviousStatusIndex != 0 && !PreviousSecretLive(k, now) {
		w.endPrevious = k.PreviousStatusIndex
	}
	if SecretSuspended(k) && k.StatusIndex != 0 && l.Entry(k.StatusIndex) != store.StatusInvalid {
		w.revokeSuspended = k.StatusIndex
	}
	w.resyncSuspension = !suspensionShown(k, l)
	return w
}

// doStatusWork does w for the key clientID, as seen at now. It returns how
// many entries or keys it mended, and the first failure after trying the
// rest; running it again is harmless (RevokeStatus is idempotent, the clear
// is conditional, the resync reads the key again).
func (s *Service) doStatusWork(ctx context.Context, clientID string, w statusWork, now time.Time) (int, error) {
	n := 0
	var firstErr error
	if w.revokeSuspended != 0 {
		if err := s.store.RevokeStatus(ctx, w.revokeSuspended); err != nil {
			firstErr = fmt.Errorf("revoke status of key %s's suspended secret: %w", clientID, err)
		} else {
			n++
		}
	}
	if w.resyncSuspension {
		// Read again: the record decides, as it is now.
		k, err := s.store.GetKey(ctx, clientID)
		if err == nil {
			err = s.syncSuspension(ctx, k)
		}
		switch {
		case errors.Is(err, store.ErrNotFound):
		case err != nil:
			firstErr = cmp.Or(firstErr, fmt.Errorf("status entries of key %s's suspension: %w", clientID, err))
		default:
			n++
		}
	}
	if w.endPrevious != 0 {
		idx := w.endPrevious
		if err := s.store.RevokeStatus(ctx, idx); err != nil {
			return n, cmp.Or(firstErr, fmt.Errorf("revoke status of key %s's ended secret: %w", clientID, err))
		}
		n++
		// The bit is set: forget the index, unless a rotation in between
		// recorded another one (whose own time will come).
		_, err := s.store.UpdateKey(ctx, clientID, func(k store.Key) (store.Key, error) {
			if k.PreviousStatusIndex != idx {
				return store.Key{}, errGenerationMoved
			}
			k.PreviousStatusIndex = 0
			if !PreviousSecretLive(k, now) {
				k.PreviousSecretHash = nil
			}
			return k, nil
		})
		if err != nil && !errors.Is(err, errGenerationMoved) && !errors.Is(err, store.ErrNotFound) {
			firstErr = cmp.Or(firstErr, fmt.Errorf("clear key %s's ended status index: %w", clientID, err))
		}
	}
	return n, firstErr
}

// dueCheckBatch bounds one read of the schedule.
const dueCheckBatch = 256

// RevokeDueStatusChecks handles the schedule's entries due at now: for each,
// it reads the key and does what RevokeEndedGenerations would do for it
// (statusWork); an entry whose key's grace period was moved later (a
// clock that differs between instances) is moved with it; an entry goes
// once its work is done. It returns how many entries or keys it mended; a
// failure keeps that entry for the next round and is returned after the
// others were tried. A store without a schedule has nothing due.
func (s *Service) RevokeDueStatusChecks(ctx context.Context, now time.Time) (int, error) {
	sched, ok := store.Feature[store.StatusSchedule](s.store)
	if !ok {
		return 0, nil
	}
	n := 0
	var firstErr error
	// Entries that failed stay due; skip past them rather than read them
	// again and again within one round.
	failed := 0
	for ctx.Err() == nil {
		limit := failed + dueCheckBatch
		due, err := sched.DueStatusChecks(ctx, now, limit)
		if err != nil {
			return n, cmp.Or(firstErr, err)
		}
		if len(due) <= failed {
			break
		}
		more := len(due) == limit // a full batch: there may be more due
		l, err := s.store.StatusList(ctx)
		if err != nil {
			return n, cmp.Or(firstErr, fmt.Errorf("read status list: %w", err))
		}
		for _, c := range due[failed:] {
			m, err := s.handleStatusCheck(ctx, sched, c, l, now)
			n += m
			if err != nil {
				firstErr = cmp.Or(firstErr, err)
				failed++
			}
		}
		if !more {
			break
		}
	}
	return n, firstErr
}

// handleStatusCheck does one due entry's work and drops it.
func (s *Service) handleStatusCheck(ctx context.Context, sched store.StatusSchedule, c store.StatusCheck, l store.StatusList, now time.Time) (int, error) {
	n := 0
	k, err := s.store.GetKey(ctx, c.ClientID)
	switch {
	case errors.Is(err, store.ErrNotFound):
		// Deleted: Delete set its bits first.
	case err != nil:
		return 0, fmt.Errorf("read key %s for its status entries: %w", c.ClientID, err)
	default:
		if k.PreviousStatusIndex != 0 && PreviousSecretLive(k, now) {
			// Not over yet (the entry was written by a clock behind the
			// record's): come back at the record's end.
			if err := sched.ScheduleStatusCheck(ctx, k.ClientID, k.PreviousSecretExpiresAt); err != nil {
				return 0, fmt.Errorf("reschedule the status entries of key %s: %w", k.ClientID, err)
			}
		}
		if w := statusWorkOf(k, l, now); w.any() {
			if n, err = s.doStatusWork(ctx, k.ClientID, w, now); err != nil {
				return n, err
			}
		}
	}
	if err := sched.DropStatusCheck(ctx, c); err != nil {
		return n, fmt.Errorf("drop the handled status check of key %s: %w", c.ClientID, err)
	}
	return n, nil
}

// RevokeEndedGenerations is the walk behind the schedule: it sets the
// status bit of every key's previous secret generation that is no longer
// live at now (a grace period that ran out, a grace-0 rotation whose own
// revoke failed, or a previous secret reported leaked) and then clears the
// key's PreviousStatusIndex and PreviousSecretHash (which also takes the
// ended secret out of the store's secret index), so each index is set
// once. It also sets the bit of every suspended current generation
// (ReportLeaked) that is not set yet, and mends the status entries of a
// key whose suspension they do not show (a failed or raced
// syncSuspension), reading the status list once. On a store with a
// schedule that is not complete yet, it schedules every grace period
// still running, and a walk that reaches the end records the schedule as
// complete. It returns how many entries or keys it mended. A failure on
// one key is returned after the others were tried; running it again is
// harmless. It walks every key (store.ForEachKey, paced: pace.go), so
// AuditWorker runs it rarely once the schedule is complete.
func (s *Service) RevokeEndedGenerations(ctx context.Context, now time.Time) (int, error) {
	type pending struct {
		clientID string
		work     statusWork
	}
	complete, err := scheduleComplete(ctx, s.store)
	if err != nil {
		return 0, fmt.Errorf("read whether the status schedule is complete: %w", err)
	}
	sched, fill := store.Feature[store.StatusSchedule](s.store)
	fill = fill && !complete
	// The list is read before the walk: an entry that disagrees with a
	// record read after it is rewritten (an entry changed in between only
	// makes a write that was due anyway, or one syncSuspension checks).
	l, err := s.store.StatusList(ctx)
	if err != nil {
		return 0, fmt.Errorf("read status list: %w", err)
	}
	var todo []pending
	var pace walkPacer // a tenth of a core at most (pace.go)
	err = s.store.ForEachKey(ctx, func(k store.Key) error {
		if err := pace.step(ctx); err != nil {
			return err
		}
		if w := statusWorkOf(k, l, now); w.any() {
			todo = append(todo, pending{k.ClientID, w})
		}
		if fill && k.PreviousStatusIndex != 0 && PreviousSecretLive(k, now) {
			if err := sched.ScheduleStatusCheck(ctx, k.ClientID, k.PreviousSecretExpiresAt); err != nil {
				return fmt.Errorf("schedule the end of key %s's grace period: %w", k.ClientID, err)
			}
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("find ended secret generations: %w", err)
	}
	n := 0
	var firstErr error
	for _, p := range todo {
		m, err := s.doStatusWork(ctx, p.clientID, p.work, now)
		n += m
		firstErr = cmp.Or(firstErr, err)
	}
	if fill {
		// Every grace period running when the walk saw its key is
		// scheduled, and every change since wrote its own entry.
		if err := markScheduleComplete(ctx, s.store); err != nil {
			firstErr = cmp.Or(firstErr, fmt.Errorf("record the status schedule as complete: %w", err))
		}
	}
	return n, firstErr
}
