package apikey

// The status schedule (statusschedule.go): the audit worker sets the bits
// that are due from the schedule, walking every key only until the
// schedule is complete and then every StatusRepairEvery.

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keygate/keygate/store"
)

// watchedStore is revokeFails that also counts walks of every key; Unwrap
// lets store.Feature find the bbolt store's schedule behind it (revokeFails
// alone hides it).
type watchedStore struct {
	revokeFails
	walks atomic.Int64
}

func (w *watchedStore) ForEachKey(ctx context.Context, fn func(store.Key) error) error {
	w.walks.Add(1)
	return w.Store.ForEachKey(ctx, fn)
}

func (w *watchedStore) Unwrap() store.Store { return w.Store }

func openScheduleService(t *testing.T) (*Service, *watchedStore, *clock) {
	return openWrapped(t, func(st store.Store) *watchedStore { return &watchedStore{revokeFails: revokeFails{Store: st}} })
}

// rotatedKey creates a key and rotates it with grace, at t0.
func rotatedKey(t *testing.T, svc *Service, grace time.Duration) store.Key {
	t.Helper()
	ctx := context.Background()
	k0, _, err := svc.Create(ctx, testReq, NewKey{Team: "acme", Name: "a", Permissions: []string{"accounting_api"}})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := svc.Rotate(ctx, testReq, "acme", k0.ClientID, grace); err != nil {
		t.Fatal(err)
	}
	return k0
}

// startWorker starts svc's audit worker on injected ticks; tick runs one
// round and returns once it is done.
func startWorker(t *testing.T, svc *Service) (tick func(time.Time)) {
	t.Helper()
	ticks := make(chan time.Time)
	w := svc.StartAudit(AuditOptions{Ticks: ticks})
	t.Cleanup(w.Close)
	return func(at time.Time) {
		ticks <- at
		ticks <- at
	}
}

func dueChecks(t *testing.T, st store.Store, now time.Time) []store.StatusCheck {
	t.Helper()
	sc, ok := store.Feature[store.StatusSchedule](st)
	if !ok {
		t.Fatal("the store has no status schedule")
	}
	due, err := sc.DueStatusChecks(context.Background(), now, 100)
	if err != nil {
		t.Fatal(err)
	}
	return due
}

func isScheduleComplete(t *testing.T, st store.Store) bool {
	t.Helper()
	ok, err := scheduleComplete(context.Background(), st)
	if err != nil {
		t.Fatal(err)
	}
	return ok
}

// TestScheduleSetsGraceEndWithoutWalk: on a store that is not known to be
// complete the first round walks and completes the schedule; from then on
// the bit of a rotated secret is set at its grace end from the schedule,
// with no walk, until a repair walk is due StatusRepairEvery later.
func TestScheduleSetsGraceEndWithoutWalk(t *testing.T) {
	ctx := context.Background()
	svc, st, clk := openScheduleService(t)
	t0 := clk.now()
	k0 := rotatedKey(t, svc, time.Minute)
	if due := dueChecks(t, st, t0.Add(time.Minute)); len(due) != 1 || due[0].ClientID != k0.ClientID || !due[0].At.Equal(t0.Add(time.Minute)) {
		t.Fatalf("schedule after a rotation with a minute of grace: %v, want the key at the grace end", due)
	}
	if isScheduleComplete(t, st) {
		t.Fatal("a store opened by Open, never walked, counts as complete")
	}
	tick := startWorker(t, svc)
	tick(t0)
	if st.walks.Load() != 1 || !isScheduleComplete(t, st) {
		t.Fatalf("first round: %d walks, complete %v; want one walk that completes the schedule", st.walks.Load(), isScheduleComplete(t, st))
	}
	if revoked(t, st, k0.StatusIndex) {
		t.Fatal("the bit was set inside the grace period")
	}
	tick(t0.Add(time.Minute))
	if !revoked(t, st, k0.StatusIndex) {
		t.Fatal("the bit was not set at the grace end")
	}
	if n := st.walks.Load(); n != 1 {
		t.Fatalf("%d walks by the grace end; want the first one only", n)
	}
	if k, _ := svc.Get(ctx, "acme", k0.ClientID); k.PreviousStatusIndex != 0 {
		t.Fatalf("the ended index %d is still on the record", k.PreviousStatusIndex)
	}
	if due := dueChecks(t, st, t0.Add(time.Hour)); len(due) != 0 {
		t.Fatalf("handled entries left in the schedule: %v", due)
	}
	tick(t0.Add(DefaultStatusRepairEvery - time.Minute))
	if n := st.walks.Load(); n != 1 {
		t.Fatalf("a walk before the repair is due: %d walks", n)
	}
	tick(t0.Add(DefaultStatusRepairEvery))
	if n := st.walks.Load(); n != 2 {
		t.Fatalf("%d walks at StatusRepairEvery; want the repair walk", n)
	}
}

// TestScheduleFilledByFirstWalk: a key rotated by a release without the
// schedule (no entry) is found by the first walk, which schedules its grace
// end; the bit is then set from the schedule, not by another walk.
func TestScheduleFilledByFirstWalk(t *testing.T) {
	ctx := context.Background()
	st, mk := FreshStore(t)
	clk := &clock{}
	clk.t.Store(time.Date(2026, 12, 4, 10, 0, 0, 0, time.UTC).UnixNano())
	// revokeFails hides the schedule (no Unwrap): the old release.
	old, err := Open(ctx, Config{Store: &revokeFails{Store: st}, MasterKey: mk, Now: clk.now})
	if err != nil {
		t.Fatal(err)
	}
	t0 := clk.now()
	k0 := rotatedKey(t, old, 5*time.Minute)
	if due := dueChecks(t, st, t0.Add(time.Hour)); len(due) != 0 {
		t.Fatalf("a store without the schedule wrote entries: %v", due)
	}
	ws := &watchedStore{revokeFails: revokeFails{Store: st}}
	svc, err := Open(ctx, Config{Store: ws, MasterKey: mk, Now: clk.now})
	if err != nil {
		t.Fatal(err)
	}
	tick := startWorker(t, svc)
	tick(t0.Add(time.Minute))
	if due := dueChecks(t, st, t0.Add(time.Hour)); len(due) != 1 || !due[0].At.Equal(t0.Add(5*time.Minute)) {
		t.Fatalf("schedule after the first walk: %v, want the grace end", due)
	}
	if !isScheduleComplete(t, st) || revoked(t, st, k0.StatusIndex) {
		t.Fatalf("after the first walk: complete %v, bit %v; want complete, bit not set", isScheduleComplete(t, st), revoked(t, st, k0.StatusIndex))
	}
	tick(t0.Add(5 * time.Minute))
	if !revoked(t, st, k0.StatusIndex) || ws.walks.Load() != 1 {
		t.Fatalf("at the grace end: bit %v, %d walks; want the bit set from the schedule after one walk", revoked(t, st, k0.StatusIndex), ws.walks.Load())
	}
}

// TestScheduleMendsFailedLeak: a leaked secret whose bit could not be set
// when it was reported is set by the next round from the schedule (the
// entry written before the change), without a walk; an entry whose work
// fails stays for the round after.
func TestScheduleMendsFailedLeak(t *testing.T) {
	ctx := context.Background()
	svc, st, clk := openScheduleService(t)
	k0, s0, err := svc.Create(ctx, testReq, NewKey{Team: "acme", Name: "a", Permissions: []string{"accounting_api"}})
	if err != nil {
		t.Fatal(err)
	}
	tick := startWorker(t, svc)
	t0 := clk.now()
	tick(t0) // the first walk: the schedule is complete from here
	st.fail.Store(true)
	if _, err := svc.ReportLeaked(ctx, testReq, []string{s0}); err != nil {
		t.Logf("ReportLeaked with the status list down: %v", err)
	}
	if k, _ := svc.Get(ctx, "acme", k0.ClientID); !SecretSuspended(k) {
		t.Fatal("the leaked secret was not suspended")
	}
	if revoked(t, st, k0.StatusIndex) {
		t.Fatal("bit set although RevokeStatus failed")
	}
	tick(t0.Add(time.Minute)) // still failing: the entry stays
	if due := dueChecks(t, st, t0.Add(time.Minute)); len(due) != 1 || due[0].ClientID != k0.ClientID {
		t.Fatalf("schedule after a failed round: %v, want the key's entry kept", due)
	}
	st.fail.Store(false)
	tick(t0.Add(2 * time.Minute))
	if !revoked(t, st, k0.StatusIndex) {
		t.Fatal("the suspended secret's bit was not set by the round after")
	}
	if n := st.walks.Load(); n != 1 {
		t.Fatalf("%d walks; want the first one only", n)
	}
	if due := dueChecks(t, st, t0.Add(time.Hour)); len(due) != 0 {
		t.Fatalf("handled entries left in the schedule: %v", due)
	}
}

// TestScheduleEntryBeforeItsTime: an entry due before the record's grace
// period ends (written by a clock behind the record's) sets nothing and is
// moved to the record's end, where it does its work.
func TestScheduleEntryBeforeItsTime(t *testing.T) {
	ctx := context.Background()
	svc, st, clk := openScheduleService(t)
	t0 := clk.now()
	k0 := rotatedKey(t, svc, time.Minute)
	sc, _ := store.Feature[store.StatusSchedule](st)
	if err := sc.ScheduleStatusCheck(ctx, k0.ClientID, t0.Add(10*time.Second)); err != nil {
		t.Fatal(err)
	}
	if n, err := svc.RevokeDueStatusChecks(ctx, t0.Add(20*time.Second)); err != nil || n != 0 || revoked(t, st, k0.StatusIndex) {
		t.Fatalf("an early entry: %d mended, %v, bit %v; want nothing set", n, err, revoked(t, st, k0.StatusIndex))
	}
	if due := dueChecks(t, st, t0.Add(time.Minute)); len(due) != 1 || !due[0].At.Equal(t0.Add(time.Minute)) {
		t.Fatalf("schedule after the early entry: %v, want one entry at the grace end", due)
	}
	if n, err := svc.RevokeDueStatusChecks(ctx, t0.Add(time.Minute)); err != nil || n != 1 || !revoked(t, st, k0.StatusIndex) {
		t.Fatalf("at the grace end: %d mended, %v; want the bit set", n, err)
	}
}

// getFails fails GetKey for one client ID.
type getFails struct {
	store.Store
	id string
}

func (g *getFails) GetKey(ctx context.Context, id string) (store.Key, error) {
	if id == g.id {
		return store.Key{}, errRevokeDown
	}
	return g.Store.GetKey(ctx, id)
}

func (g *getFails) Unwrap() store.Store { return g.Store }

// TestScheduleDueInBatches: more entries due than one read returns are all
// handled in one call, a failing one among them included: it alone stays.
func TestScheduleDueInBatches(t *testing.T) {
	ctx := context.Background()
	svc, st, clk := openWrapped(t, func(st store.Store) *getFails { return &getFails{Store: st, id: "kg_fails"} })
	t0 := clk.now()
	sc, _ := store.Feature[store.StatusSchedule](st)
	if err := sc.ScheduleStatusCheck(ctx, "kg_fails", t0.Add(-time.Second)); err != nil {
		t.Fatal(err)
	}
	for i := range dueCheckBatch + 50 {
		// Keys that no longer exist: each entry is dropped.
		if err := sc.ScheduleStatusCheck(ctx, fmt.Sprintf("kg_gone%04d", i), t0); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := svc.RevokeDueStatusChecks(ctx, t0); !errors.Is(err, errRevokeDown) {
		t.Fatalf("RevokeDueStatusChecks: %v, want the failing entry's error", err)
	}
	if due := dueChecks(t, st, t0); len(due) != 1 || due[0].ClientID != "kg_fails" {
		t.Fatalf("%d entries left after one call (first %v); want the failing one only", len(due), due[:min(len(due), 1)])
	}
}
