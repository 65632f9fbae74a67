package storetest

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/store"
)

// usageCases are the conformance cases of store.UsageStore, run by Run.
var usageCases = []struct {
	name string
	fn   func(t *testing.T, s store.Store)
}{
	{"Usage/AddsUpAcrossBatches", testUsageAddsUp},
	{"Usage/ConcurrentWritersAddUp", testUsageConcurrent},
	{"Usage/HourAndDay", testUsageHourAndDay},
	{"Usage/RangeBoundaries", testUsageRange},
	{"Usage/Retention", testUsageRetention},
	{"Usage/PruneKeepsWhatIsKept", testUsagePrune},
	{"Usage/OnlyActivePeriods", testUsageOnlyActive},
	{"Usage/TeamIsolation", testUsageTeams},
	{"Usage/InvalidRefusedNothingWritten", testUsageInvalid},
	{"Usage/OutsideKeyRecordKeptAfterDelete", testUsageKeyRecord},
	{"Usage/CancelledContext", testUsageCancelled},
}

// usageDay is a UTC midnight; usage fixtures are hours of it.
var usageDay = time.Date(2024, 5, 1, 0, 0, 0, 0, time.UTC)

// hourOf returns a time inside hour h of usageDay (h may pass 23), with
// minutes, nanoseconds and a non-UTC zone, which backends must truncate.
func hourOf(h int) time.Time {
	return usageDay.Add(time.Duration(h)*time.Hour + 17*time.Minute + 123_456_789).In(zone)
}

// hourStart is the start of hour h of usageDay.
func hourStart(h int) time.Time { return usageDay.Add(time.Duration(h) * time.Hour) }

func delta(team, key string, h int, tokens, failures int64) store.UsageDelta {
	return store.UsageDelta{TeamID: team, ClientID: ID(team, key), Hour: hourOf(h), Tokens: tokens, Failures: failures}
}

func mustAddUsage(t testing.TB, s store.Store, now time.Time, ds ...store.UsageDelta) {
	t.Helper()
	if err := s.AddUsage(context.Background(), now, ds); err != nil {
		t.Fatalf("AddUsage: %v", err)
	}
}

func mustUsage(t testing.TB, s store.Store, q store.UsageQuery) []store.UsageBucket {
	t.Helper()
	got, err := s.Usage(context.Background(), q)
	if err != nil {
		t.Fatalf("Usage(%+v): %v", q, err)
	}
	if got == nil {
		t.Fatalf("Usage(%+v): nil list, want a non-nil one", q)
	}
	for _, b := range got {
		if b.Start.Location() != time.UTC {
			t.Fatalf("Usage: bucket start %v not in UTC", b.Start)
		}
	}
	return got
}

// ub is an expected bucket: key name (of team), start, counts.
func ub(team, key string, start time.Time, tokens, failures int64) store.UsageBucket {
	return store.UsageBucket{ClientID: ID(team, key), Start: start, Tokens: tokens, Failures: failures}
}

func fmtUsage(bs []store.UsageBucket) string {
	if len(bs) == 0 {
		return "(none)"
	}
	var parts []string
	for _, b := range bs {
		parts = append(parts, fmt.Sprintf("%s@%s t=%d f=%d", b.ClientID, b.Start.Format(time.RFC3339), b.Tokens, b.Failures))
	}
	return strings.Join(parts, "; ")
}

func assertUsage(t testing.TB, what string, got []store.UsageBucket, want ...store.UsageBucket) {
	t.Helper()
	same := len(got) == len(want)
	for i := 0; same && i < len(got); i++ {
		g, w := got[i], want[i]
		same = g.ClientID == w.ClientID && g.Start.Equal(w.Start) && g.Tokens == w.Tokens && g.Failures == w.Failures
	}
	if !same {
		t.Fatalf("%s:\n got  %s\n want %s", what, fmtUsage(got), fmtUsage(want))
	}
}

// hourQuery selects team's hourly buckets of usageDay's hours [from, to),
// judged at hour now's end.
func hourQuery(team string, from, to, now int) store.UsageQuery {
	return store.UsageQuery{TeamID: team, Granularity: store.Hour, From: hourStart(from), To: hourStart(to), Now: hourStart(now + 1)}
}

func testUsageAddsUp(t *testing.T, s store.Store) {
	now := hourStart(11)
	mustAddUsage(t, s, now, delta("team-a", "k1", 10, 3, 1), delta("team-a", "k2", 10, 1, 0))
	mustAddUsage(t, s, now, delta("team-a", "k1", 10, 4, 0))
	mustAddUsage(t, s, now, delta("team-a", "k1", 10, 0, 2), delta("team-a", "k1", 10, 1, 0))
	got := mustUsage(t, s, hourQuery("team-a", 0, 24, 11))
	assertUsage(t, "three batches on one hour", got,
		ub("team-a", "k1", hourStart(10), 8, 3),
		ub("team-a", "k2", hourStart(10), 1, 0))
}

// testUsageConcurrent: writers adding at once (as several instances
// flushing) lose no increment.
func testUsageConcurrent(t *testing.T, s store.Store) {
	const writers, calls = 8, 10
	now := hourStart(11)
	errs := make(chan error, writers*calls)
	concurrently(writers, func(i int) {
		for range calls {
			errs <- s.AddUsage(context.Background(), now, []store.UsageDelta{
				delta("team-a", "k1", 10, 2, 1),
				delta("team-a", fmt.Sprintf("w%d", i), 10, 1, 0),
			})
		}
	})
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("concurrent AddUsage: %v", err)
		}
	}
	want := []store.UsageBucket{ub("team-a", "k1", hourStart(10), 2*writers*calls, writers*calls)}
	for i := range writers {
		want = append(want, ub("team-a", fmt.Sprintf("w%d", i), hourStart(10), calls, 0))
	}
	assertUsage(t, "after concurrent writers", mustUsage(t, s, hourQuery("team-a", 0, 24, 11)), want...)
}

func testUsageHourAndDay(t *testing.T, s store.Store) {
	now := hourStart(27)
	mustAddUsage(t, s, now,
		delta("team-a", "k1", 10, 1, 0),
		delta("team-a", "k1", 23, 2, 1),
		delta("team-a", "k1", 24, 4, 0), // the next UTC day
		delta("team-a", "k2", 26, 0, 5))
	hours := mustUsage(t, s, hourQuery("team-a", 0, 48, 27))
	assertUsage(t, "hourly", hours,
		ub("team-a", "k1", hourStart(10), 1, 0),
		ub("team-a", "k1", hourStart(23), 2, 1),
		ub("team-a", "k1", hourStart(24), 4, 0),
		ub("team-a", "k2", hourStart(26), 0, 5))
	days := mustUsage(t, s, store.UsageQuery{TeamID: "team-a", Granularity: store.Day,
		From: usageDay, To: usageDay.AddDate(0, 0, 2), Now: now})
	assertUsage(t, "daily (UTC days)", days,
		ub("team-a", "k1", usageDay, 3, 1),
		ub("team-a", "k1", usageDay.AddDate(0, 0, 1), 4, 0),
		ub("team-a", "k2", usageDay.AddDate(0, 0, 1), 0, 5))
}

func testUsageRange(t *testing.T, s store.Store) {
	now := hourStart(20)
	for h := 5; h <= 9; h++ {
		mustAddUsage(t, s, now, delta("team-a", "k1", h, int64(h), 0))
	}
	assertUsage(t, "[6h, 8h): From inclusive, To exclusive", mustUsage(t, s, hourQuery("team-a", 6, 8, 20)),
		ub("team-a", "k1", hourStart(6), 6, 0), ub("team-a", "k1", hourStart(7), 7, 0))
	// From inside hour 6: the bucket that started before From is left out.
	q := hourQuery("team-a", 6, 9, 20)
	q.From = q.From.Add(time.Minute)
	assertUsage(t, "From inside a bucket", mustUsage(t, s, q),
		ub("team-a", "k1", hourStart(7), 7, 0), ub("team-a", "k1", hourStart(8), 8, 0))
	// To one nanosecond after a bucket's start includes it.
	q = hourQuery("team-a", 9, 9, 20)
	q.To = q.To.Add(time.Nanosecond)
	assertUsage(t, "To just after a start", mustUsage(t, s, q), ub("team-a", "k1", hourStart(9), 9, 0))
	assertUsage(t, "empty range", mustUsage(t, s, hourQuery("team-a", 8, 8, 20)))
	// Times in another zone mean the same instants.
	q = hourQuery("team-a", 8, 9, 20)
	q.From, q.To = q.From.In(zone), q.To.In(zone)
	assertUsage(t, "non-UTC bounds", mustUsage(t, s, q), ub("team-a", "k1", hourStart(8), 8, 0))
}

// testUsageRetention: hourly buckets last UsageHourRetention after their
// hour ends, daily ones UsageDayRetention after their day ends, judged by
// the query's Now; a write for a bucket already past it is dropped.
func testUsageRetention(t *testing.T, s store.Store) {
	mustAddUsage(t, s, hourStart(3), delta("team-a", "k1", 2, 5, 1))
	hourEnd, dayEnd := hourStart(3), usageDay.AddDate(0, 0, 1)
	hq := func(now time.Time) store.UsageQuery {
		return store.UsageQuery{TeamID: "team-a", Granularity: store.Hour, From: usageDay, To: dayEnd, Now: now}
	}
	dq := func(now time.Time) store.UsageQuery {
		return store.UsageQuery{TeamID: "team-a", Granularity: store.Day, From: usageDay, To: dayEnd, Now: now}
	}
	lastHour := hourEnd.Add(store.UsageHourRetention - time.Nanosecond)
	assertUsage(t, "hourly at the last instant kept", mustUsage(t, s, hq(lastHour)), ub("team-a", "k1", hourStart(2), 5, 1))
	assertUsage(t, "hourly at its retention's end", mustUsage(t, s, hq(lastHour.Add(time.Nanosecond))))
	assertUsage(t, "daily then", mustUsage(t, s, dq(lastHour.Add(time.Nanosecond))), ub("team-a", "k1", usageDay, 5, 1))
	lastDay := dayEnd.Add(store.UsageDayRetention - time.Nanosecond)
	assertUsage(t, "daily at the last instant kept", mustUsage(t, s, dq(lastDay)), ub("team-a", "k1", usageDay, 5, 1))
	assertUsage(t, "daily at its retention's end", mustUsage(t, s, dq(lastDay.Add(time.Nanosecond))))

	// A late write (a flush delayed past the hourly retention) still
	// counts in its day, not in its expired hour.
	late := hourEnd.Add(store.UsageHourRetention)
	mustAddUsage(t, s, late, delta("team-a", "k2", 2, 7, 0))
	assertUsage(t, "late write, hourly", mustUsage(t, s, hq(hourStart(2).Add(30*time.Minute))), ub("team-a", "k1", hourStart(2), 5, 1))
	assertUsage(t, "late write, daily", mustUsage(t, s, dq(late)),
		ub("team-a", "k1", usageDay, 5, 1), ub("team-a", "k2", usageDay, 7, 0))
}

// testUsagePrune: PruneUsage removes only what is no longer kept; kept
// buckets of every team survive it with their counts.
func testUsagePrune(t *testing.T, s store.Store) {
	now := hourStart(30)
	mustAddUsage(t, s, now, delta("team-a", "k1", 1, 1, 0), delta("team-a", "k1", 29, 2, 0), delta("team-b", "k1", 29, 0, 3))
	pruneAt := hourStart(2).Add(store.UsageHourRetention) // hour 1 has just aged out
	if err := s.PruneUsage(context.Background(), pruneAt); err != nil {
		t.Fatalf("PruneUsage: %v", err)
	}
	q := store.UsageQuery{TeamID: "team-a", Granularity: store.Hour, From: usageDay, To: hourStart(48), Now: pruneAt}
	assertUsage(t, "team-a hourly after pruning", mustUsage(t, s, q), ub("team-a", "k1", hourStart(29), 2, 0))
	q.Now = hourStart(30) // an earlier clock still finds nothing of the pruned hour, or only it
	got := mustUsage(t, s, q)
	if len(got) == 0 || !got[len(got)-1].Start.Equal(hourStart(29)) || got[len(got)-1].Tokens != 2 {
		t.Fatalf("kept hour 29 lost by pruning: %s", fmtUsage(got))
	}
	q.TeamID = "team-b"
	q.Now = pruneAt
	assertUsage(t, "team-b after pruning", mustUsage(t, s, q), ub("team-b", "k1", hourStart(29), 0, 3))
	dq := store.UsageQuery{TeamID: "team-a", Granularity: store.Day, From: usageDay, To: usageDay.AddDate(0, 0, 3), Now: pruneAt}
	assertUsage(t, "team-a daily after pruning", mustUsage(t, s, dq),
		ub("team-a", "k1", usageDay, 1, 0), ub("team-a", "k1", usageDay.AddDate(0, 0, 1), 2, 0))
	// Pruning twice, and pruning an empty store, are harmless.
	for range 2 {
		if err := s.PruneUsage(context.Background(), dq.Now); err != nil {
			t.Fatalf("PruneUsage again: %v", err)
		}
	}
	assertUsage(t, "team-a daily after pruning again", mustUsage(t, s, dq),
		ub("team-a", "k1", usageDay, 1, 0), ub("team-a", "k1", usageDay.AddDate(0, 0, 1), 2, 0))
}

func testUsageOnlyActive(t *testing.T, s store.Store) {
	now := hourStart(20)
	assertUsage(t, "no usage at all", mustUsage(t, s, hourQuery("team-a", 0, 24, 20)))
	// A delta of zeros is no activity: it creates no bucket.
	mustAddUsage(t, s, now, delta("team-a", "k1", 3, 0, 0), delta("team-a", "k1", 5, 1, 0), delta("team-a", "k1", 9, 0, 1))
	mustAddUsage(t, s, now)
	assertUsage(t, "hours 3 (zeros), 5 and 9", mustUsage(t, s, hourQuery("team-a", 0, 24, 20)),
		ub("team-a", "k1", hourStart(5), 1, 0), ub("team-a", "k1", hourStart(9), 0, 1))
	assertUsage(t, "unknown team", mustUsage(t, s, hourQuery("team-nobody", 0, 24, 20)))
}

func testUsageTeams(t *testing.T, s store.Store) {
	now := hourStart(11)
	mustAddUsage(t, s, now, delta("team-a", "k1", 10, 1, 0), delta("team-b", "k1", 10, 2, 0), delta("team-ab", "k1", 10, 3, 0))
	for team, want := range map[string]int64{"team-a": 1, "team-b": 2, "team-ab": 3} {
		assertUsage(t, team, mustUsage(t, s, hourQuery(team, 0, 24, 11)), ub(team, "k1", hourStart(10), want, 0))
	}
}

func testUsageInvalid(t *testing.T, s store.Store) {
	now := hourStart(11)
	good := delta("team-a", "k1", 10, 1, 0)
	bad := map[string]store.UsageDelta{
		"empty team":        {TeamID: "", ClientID: ID("", "k1"), Hour: hourOf(10), Tokens: 1},
		"empty client ID":   {TeamID: "team-a", ClientID: "", Hour: hourOf(10), Tokens: 1},
		"another team tag":  {TeamID: "team-a", ClientID: ID("team-b", "k1"), Hour: hourOf(10), Tokens: 1},
		"negative tokens":   delta("team-a", "k1", 10, -1, 0),
		"negative failures": delta("team-a", "k1", 10, 0, -1),
	}
	for name, d := range bad {
		err := s.AddUsage(context.Background(), now, []store.UsageDelta{good, d})
		wantErr(t, "AddUsage with "+name, err, store.ErrInvalid)
	}
	assertUsage(t, "after refused batches", mustUsage(t, s, hourQuery("team-a", 0, 24, 11)))
	for _, g := range []store.Granularity{0, 3} {
		_, err := s.Usage(context.Background(), store.UsageQuery{TeamID: "team-a", Granularity: g, From: usageDay, To: hourStart(24), Now: now})
		wantErr(t, fmt.Sprintf("Usage with granularity %d", g), err, store.ErrInvalid)
	}
}

// testUsageKeyRecord: usage lives outside the key record (writing it
// changes no key), and a deleted key's usage stays, so the team's total
// keeps counting it until it ages out.
func testUsageKeyRecord(t *testing.T, s store.Store) {
	k := newKey(t, "k1", "team-a", at(0))
	k.ClientID = ID("team-a", "k1")
	mustCreate(t, s, k, 0)
	before := mustGet(t, s, k.ClientID)
	now := hourStart(11)
	mustAddUsage(t, s, now, delta("team-a", "k1", 10, 4, 1))
	assertKey(t, "key after AddUsage", before, mustGet(t, s, k.ClientID))
	if err := s.DeleteKey(context.Background(), "team-a", k.ClientID); err != nil {
		t.Fatal(err)
	}
	assertUsage(t, "usage of the deleted key", mustUsage(t, s, hourQuery("team-a", 0, 24, 11)), ub("team-a", "k1", hourStart(10), 4, 1))
	if _, err := s.GetKey(context.Background(), k.ClientID); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("GetKey after delete: %v, want ErrNotFound (usage must not recreate the key)", err)
	}
}

func testUsageCancelled(t *testing.T, s store.Store) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	now := hourStart(11)
	if err := s.AddUsage(ctx, now, []store.UsageDelta{delta("team-a", "k1", 10, 1, 0)}); err == nil {
		t.Error("AddUsage with a cancelled context: nil error")
	}
	if _, err := s.Usage(ctx, hourQuery("team-a", 0, 24, 11)); err == nil {
		t.Error("Usage with a cancelled context: nil error")
	}
	if err := s.PruneUsage(ctx, now); err == nil {
		t.Error("PruneUsage with a cancelled context: nil error")
	}
	assertUsage(t, "after a cancelled AddUsage", mustUsage(t, s, hourQuery("team-a", 0, 24, 11)))
}
