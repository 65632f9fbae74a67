package storetest

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/keygate/keygate/store"
)

// The status schedule (store.StatusSchedule): every backend has one.
var scheduleCases = []struct {
	name string
	fn   func(t *testing.T, s store.Store)
}{
	{"StatusSchedule/DueEarliestFirstUpToNow", testScheduleDue},
	{"StatusSchedule/OneEntryPerKeyAndTime", testScheduleSameEntry},
	{"StatusSchedule/DropRemovesExactlyThatEntry", testScheduleDrop},
	{"StatusSchedule/EmptyIDRefusedAndNothingWritten", testScheduleRefused},
}

func mustDue(t *testing.T, sc store.StatusSchedule, now time.Time, limit int) []store.StatusCheck {
	t.Helper()
	due, err := sc.DueStatusChecks(context.Background(), now, limit)
	if err != nil {
		t.Fatalf("DueStatusChecks(%v, %d): %v", now, limit, err)
	}
	return due
}

func mustSchedule(t *testing.T, sc store.StatusSchedule, id string, at time.Time) {
	t.Helper()
	if err := sc.ScheduleStatusCheck(context.Background(), id, at); err != nil {
		t.Fatalf("ScheduleStatusCheck(%s, %v): %v", id, at, err)
	}
}

// assertDue compares entries by client ID and instant (to the nanosecond:
// base carries nanoseconds).
func assertDue(t *testing.T, what string, want, got []store.StatusCheck) {
	t.Helper()
	ok := len(want) == len(got)
	for i := 0; ok && i < len(want); i++ {
		ok = want[i].ClientID == got[i].ClientID && want[i].At.Equal(got[i].At)
	}
	if !ok {
		t.Fatalf("%s: got %v, want %v", what, got, want)
	}
}

func testScheduleDue(t *testing.T, s store.Store) {
	sc := feature[store.StatusSchedule](t, s)
	if due := mustDue(t, sc, at(100), 10); len(due) != 0 {
		t.Fatalf("an empty schedule has due entries: %v", due)
	}
	mustSchedule(t, sc, "kg_a", at(3))
	mustSchedule(t, sc, "kg_b", at(1))
	mustSchedule(t, sc, "kg_c", at(2))
	mustSchedule(t, sc, "kg_d", at(10))
	want := []store.StatusCheck{{ClientID: "kg_b", At: at(1)}, {ClientID: "kg_c", At: at(2)}, {ClientID: "kg_a", At: at(3)}}
	assertDue(t, "due at the third entry's time", want, mustDue(t, sc, at(3), 10))
	assertDue(t, "a nanosecond before it", want[:2], mustDue(t, sc, at(3).Add(-time.Nanosecond), 10))
	assertDue(t, "limit 2", want[:2], mustDue(t, sc, at(3), 2))
	if due := mustDue(t, sc, at(0), 10); len(due) != 0 {
		t.Fatalf("entries due before any is: %v", due)
	}
	// Reading changes nothing: the same answer again, and the later entry
	// once its time comes.
	assertDue(t, "all at the end", append(want, store.StatusCheck{ClientID: "kg_d", At: at(10)}), mustDue(t, sc, at(10), 10))
}

func testScheduleSameEntry(t *testing.T, s store.Store) {
	sc := feature[store.StatusSchedule](t, s)
	mustSchedule(t, sc, "kg_a", at(1))
	mustSchedule(t, sc, "kg_a", at(1).In(time.UTC)) // the same instant in another zone
	mustSchedule(t, sc, "kg_a", at(2))
	want := []store.StatusCheck{{ClientID: "kg_a", At: at(1)}, {ClientID: "kg_a", At: at(2)}}
	assertDue(t, "one key at two times", want, mustDue(t, sc, at(5), 10))
}

func testScheduleDrop(t *testing.T, s store.Store) {
	sc := feature[store.StatusSchedule](t, s)
	ctx := context.Background()
	mustSchedule(t, sc, "kg_a", at(1))
	mustSchedule(t, sc, "kg_a", at(2))
	mustSchedule(t, sc, "kg_b", at(1))
	due := mustDue(t, sc, at(5), 10)
	if len(due) != 3 {
		t.Fatalf("due before the drop: %v", due)
	}
	// Drop the entry as DueStatusChecks returned it.
	if err := sc.DropStatusCheck(ctx, due[0]); err != nil {
		t.Fatalf("DropStatusCheck: %v", err)
	}
	if err := sc.DropStatusCheck(ctx, store.StatusCheck{ClientID: "kg_c", At: at(1)}); err != nil {
		t.Fatalf("dropping an entry that is not there: %v", err)
	}
	if err := sc.DropStatusCheck(ctx, due[0]); err != nil {
		t.Fatalf("dropping an entry twice: %v", err)
	}
	want := []store.StatusCheck{{ClientID: "kg_b", At: at(1)}, {ClientID: "kg_a", At: at(2)}}
	if due[0].ClientID == "kg_b" {
		want[0] = store.StatusCheck{ClientID: "kg_a", At: at(1)}
	}
	assertDue(t, "after dropping one entry", want, mustDue(t, sc, at(5), 10))
}

func testScheduleRefused(t *testing.T, s store.Store) {
	sc := feature[store.StatusSchedule](t, s)
	err := sc.ScheduleStatusCheck(context.Background(), "", at(1))
	if !errors.Is(err, store.ErrInvalid) {
		t.Fatalf("an empty client ID: %v, want ErrInvalid", err)
	}
	if due := mustDue(t, sc, at(5), 10); len(due) != 0 {
		t.Fatalf("a refused entry was written: %v", due)
	}
}
