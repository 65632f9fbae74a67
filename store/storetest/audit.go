package storetest

// The audit trail's conformance cases (#13): events are written by the
// same atomic step as the key change they record, and never for a change
// that was refused; trails read newest first with sequence cursors;
// filters; the operator-wide stream after MoveAudit; retention.

import (
	"context"
	"fmt"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keygate/keygate/store"
)

var auditCases = []struct {
	name string
	fn   func(t *testing.T, s store.Store)
}{
	{"Audit/WrittenWithEachChange", testAuditWithChanges},
	{"Audit/NotWrittenWhenRefused", testAuditRefused},
	{"Audit/InvalidEventRefusesChange", testAuditInvalidEvent},
	{"Audit/OrderAndCursorPages", testAuditPages},
	{"Audit/CursorIsNotTheClock", testAuditCursorNotClock},
	{"Audit/Filters", testAuditFilters},
	{"Audit/OperatorWideAfterMove", testAuditAllAfterMove},
	{"Audit/ConcurrentCreatesEachHaveEvent", testAuditConcurrentCreates},
	{"Audit/Retention", testAuditRetention},
	{"Audit/LimitRange", testAuditLimitRange},
}

var eventSeq atomic.Int64

// newEvent returns an event with every field set, so a backend that drops
// one fails the comparison.
func newEvent(action store.AuditAction, team, clientID string, when time.Time) store.AuditEvent {
	n := eventSeq.Add(1)
	return store.AuditEvent{
		ID:         fmt.Sprintf("01STORETEST%015d", n),
		Time:       when,
		Action:     action,
		Actor:      store.AuditActor{Type: store.ActorAdminKey, ID: "kgc_admin", OnBehalfOf: "console-user", Via: "console"},
		TeamID:     team,
		ClientID:   clientID,
		RequestID:  fmt.Sprintf("req-%d", n),
		SourceAddr: "192.0.2.7",
		UserAgent:  "storetest/1",
		Outcome:    store.OutcomeSuccess,
		Fields:     []string{"name"},
		Reason:     "because",
		Count:      1,
	}
}

// eventDiff lists how got differs from want (Seq aside).
func eventDiff(want, got store.AuditEvent) []string {
	var d []string
	if s := timeDiff(want.Time, got.Time); s != "" {
		d = append(d, "Time: "+s)
	}
	want.Time, got.Time, want.Seq, got.Seq = time.Time{}, time.Time{}, 0, 0
	if len(want.Fields) == 0 && len(got.Fields) == 0 {
		want.Fields, got.Fields = nil, nil
	}
	if fmt.Sprint(want) != fmt.Sprint(got) {
		d = append(d, fmt.Sprintf("got %+v, want %+v", got, want))
	}
	return d
}

func assertEvent(t testing.TB, what string, want, got store.AuditEvent) {
	t.Helper()
	if d := eventDiff(want, got); len(d) > 0 {
		t.Fatalf("%s: event %s differs:\n  %s", what, want.ID, joinLines(d))
	}
}

// readAll follows Next from the newest event to the end.
func readAll(t testing.TB, read func(q store.AuditQuery) (store.AuditPage, error), q store.AuditQuery) []store.AuditEvent {
	t.Helper()
	var out []store.AuditEvent
	for page := 0; ; page++ {
		if page > 10000 {
			t.Fatal("audit pages never end")
		}
		p, err := read(q)
		if err != nil {
			t.Fatalf("read audit events %+v: %v", q, err)
		}
		out = append(out, p.Events...)
		if p.Next == 0 {
			return out
		}
		if q.After != 0 && p.Next >= q.After {
			t.Fatalf("Next %d does not move past After %d", p.Next, q.After)
		}
		q.After = p.Next
	}
}

func teamEvents(t testing.TB, s store.Store, team string, q store.AuditQuery) []store.AuditEvent {
	t.Helper()
	return readAll(t, func(q store.AuditQuery) (store.AuditPage, error) {
		return s.AuditEvents(context.Background(), team, q)
	}, q)
}

func allEvents(t testing.TB, s store.Store, q store.AuditQuery) []store.AuditEvent {
	t.Helper()
	return readAll(t, func(q store.AuditQuery) (store.AuditPage, error) {
		return s.AllAuditEvents(context.Background(), q)
	}, q)
}

func mustMove(t testing.TB, s store.Store) int {
	t.Helper()
	n, err := s.MoveAudit(context.Background())
	if err != nil {
		t.Fatalf("MoveAudit: %v", err)
	}
	return n
}

func eventIDs(evs []store.AuditEvent) []string {
	out := make([]string, len(evs))
	for i, ev := range evs {
		out[i] = ev.ID
	}
	return out
}

// assertNewestFirst checks strictly falling cursors and no repeats.
func assertNewestFirst(t testing.TB, what string, evs []store.AuditEvent) {
	t.Helper()
	for i := 1; i < len(evs); i++ {
		if evs[i].Seq >= evs[i-1].Seq {
			t.Fatalf("%s: event %d has Seq %d after Seq %d: not newest first", what, i, evs[i].Seq, evs[i-1].Seq)
		}
	}
	for _, ev := range evs {
		if ev.Seq <= 0 {
			t.Fatalf("%s: event %s has Seq %d, want > 0", what, ev.ID, ev.Seq)
		}
	}
}

func testAuditWithChanges(t *testing.T, s store.Store) {
	ctx := context.Background()
	k := newKey(t, "audited", "team-a", at(0))
	created := newEvent(store.AuditKeyCreated, k.TeamID, k.ClientID, at(1))
	created.Fields = nil
	if err := s.CreateKey(ctx, k, 5, created); err != nil {
		t.Fatal(err)
	}
	updated := newEvent(store.AuditKeyUpdated, k.TeamID, k.ClientID, at(2))
	updated.Fields = []string{"caller's fields are replaced"}
	if _, err := s.UpdateKey(ctx, k.ClientID, func(k store.Key) (store.Key, error) {
		k.Name = "renamed"
		return k, nil
	}, updated); err != nil {
		t.Fatal(err)
	}
	rotated := newEvent(store.AuditKeyRotated, k.TeamID, k.ClientID, at(3))
	if _, err := s.UpdateKey(ctx, k.ClientID, func(k store.Key) (store.Key, error) {
		k.PreviousSecretHash, k.PreviousSecretExpiresAt = k.SecretHash, at(100)
		k.SecretHash = randomBytes(t, 32)
		return k, nil
	}, rotated); err != nil {
		t.Fatal(err)
	}
	deleted := newEvent(store.AuditKeyDeleted, k.TeamID, k.ClientID, at(4))
	deleted.Fields = nil
	if err := s.DeleteKey(ctx, k.TeamID, k.ClientID, deleted); err != nil {
		t.Fatal(err)
	}
	// A change without an event writes none.
	plain := newKey(t, "plain", "team-a", at(5))
	mustCreate(t, s, plain, 5)

	updated.Fields = []string{"name"}
	rotated.Fields = []string{"secret", "previous_secret"}
	deleted.StatusIndex = k.StatusIndex
	want := []store.AuditEvent{deleted, rotated, updated, created}
	got := teamEvents(t, s, "team-a", store.AuditQuery{})
	if len(got) != len(want) {
		t.Fatalf("team trail holds %v, want %v", eventIDs(got), eventIDs(want))
	}
	assertNewestFirst(t, "team trail", got)
	for i := range want {
		assertEvent(t, fmt.Sprintf("team trail [%d]", i), want[i], got[i])
	}
	if other := teamEvents(t, s, "team-b", store.AuditQuery{}); len(other) != 0 {
		t.Fatalf("team-b's trail holds %v, want nothing", eventIDs(other))
	}

	// An event with no key change lands in its team's trail too.
	revoked := newEvent(store.AuditTokenRevoked, "team-b", ID("team-b", "x"), at(6))
	if err := s.AppendAudit(ctx, revoked); err != nil {
		t.Fatal(err)
	}
	got = teamEvents(t, s, "team-b", store.AuditQuery{})
	if len(got) != 1 {
		t.Fatalf("team-b's trail holds %v, want [%s]", eventIDs(got), revoked.ID)
	}
	assertEvent(t, "AppendAudit", revoked, got[0])
}

func testAuditRefused(t *testing.T, s store.Store) {
	ctx := context.Background()
	team := "team-r"
	k1 := newKey(t, "first", team, at(0))
	mustCreate(t, s, k1, 1)
	errFn := errBoom
	attempts := []struct {
		what string
		do   func() error
	}{
		{"create over the team limit", func() error {
			k := newKey(t, "second", team, at(1))
			return s.CreateKey(ctx, k, 1, newEvent(store.AuditKeyCreated, team, k.ClientID, at(1)))
		}},
		{"create of an existing ID", func() error {
			return s.CreateKey(ctx, k1, 0, newEvent(store.AuditKeyCreated, team, k1.ClientID, at(1)))
		}},
		{"update whose function fails", func() error {
			_, err := s.UpdateKey(ctx, k1.ClientID, func(store.Key) (store.Key, error) { return store.Key{}, errFn },
				newEvent(store.AuditKeyUpdated, team, k1.ClientID, at(1)))
			return err
		}},
		{"update of a missing key", func() error {
			id := ID(team, "missing")
			_, err := s.UpdateKey(ctx, id, func(k store.Key) (store.Key, error) { return k, nil },
				newEvent(store.AuditKeyUpdated, team, id, at(1)))
			return err
		}},
		{"delete of a missing key", func() error {
			id := ID(team, "missing")
			return s.DeleteKey(ctx, team, id, newEvent(store.AuditKeyDeleted, team, id, at(1)))
		}},
		{"delete naming another team", func() error {
			return s.DeleteKey(ctx, "team-other", k1.ClientID, newEvent(store.AuditKeyDeleted, "team-other", k1.ClientID, at(1)))
		}},
	}
	for _, a := range attempts {
		if err := a.do(); err == nil {
			t.Fatalf("%s: succeeded, want refused", a.what)
		}
	}
	for _, tm := range []string{team, "team-other"} {
		if evs := teamEvents(t, s, tm, store.AuditQuery{}); len(evs) != 0 {
			t.Fatalf("after refused changes, %s's trail holds %v, want nothing", tm, eventIDs(evs))
		}
	}
	mustMove(t, s)
	if evs := allEvents(t, s, store.AuditQuery{}); len(evs) != 0 {
		t.Fatalf("after refused changes, the stream holds %v, want nothing", eventIDs(evs))
	}
	assertKey(t, "key after refused changes", k1, mustGet(t, s, k1.ClientID))
}

func testAuditInvalidEvent(t *testing.T, s store.Store) {
	ctx := context.Background()
	k := newKey(t, "k", "team-i", at(0))
	wrongTeam := newEvent(store.AuditKeyCreated, "team-j", k.ClientID, at(1))
	wantErr(t, "CreateKey with another team's event", s.CreateKey(ctx, k, 0, wrongTeam), store.ErrInvalid)
	noID := newEvent(store.AuditKeyCreated, k.TeamID, k.ClientID, at(1))
	noID.ID = ""
	wantErr(t, "CreateKey with an event without ID", s.CreateKey(ctx, k, 0, noID), store.ErrInvalid)
	badAction := newEvent("key.exploded", k.TeamID, k.ClientID, at(1))
	wantErr(t, "CreateKey with an unknown action", s.CreateKey(ctx, k, 0, badAction), store.ErrInvalid)
	two := []store.AuditEvent{newEvent(store.AuditKeyCreated, k.TeamID, k.ClientID, at(1)), newEvent(store.AuditKeyCreated, k.TeamID, k.ClientID, at(1))}
	wantErr(t, "CreateKey with two events", s.CreateKey(ctx, k, 0, two...), store.ErrInvalid)
	if _, err := s.GetKey(ctx, k.ClientID); err == nil {
		t.Fatal("a create refused for its event wrote the key")
	}
	mustCreate(t, s, k, 0)
	_, err := s.UpdateKey(ctx, k.ClientID, func(k store.Key) (store.Key, error) {
		k.Name = "changed"
		return k, nil
	}, newEvent(store.AuditKeyUpdated, k.TeamID, ID(k.TeamID, "other"), at(2)))
	wantErr(t, "UpdateKey with another key's event", err, store.ErrInvalid)
	assertKey(t, "key after an update refused for its event", k, mustGet(t, s, k.ClientID))
	wantErr(t, "AppendAudit without time", s.AppendAudit(ctx, store.AuditEvent{ID: "x", Action: store.AuditTokenRevoked}), store.ErrInvalid)
	if evs := teamEvents(t, s, k.TeamID, store.AuditQuery{}); len(evs) != 0 {
		t.Fatalf("refused events were written: %v", eventIDs(evs))
	}
}

func testAuditPages(t *testing.T, s store.Store) {
	ctx := context.Background()
	var want []store.AuditEvent // newest first
	for i := range 37 {
		ev := newEvent(store.AuditTokenRevoked, "team-p", "", at(i))
		if err := s.AppendAudit(ctx, ev); err != nil {
			t.Fatal(err)
		}
		want = append([]store.AuditEvent{ev}, want...)
		if i%5 == 0 { // another team's events interleaved
			if err := s.AppendAudit(ctx, newEvent(store.AuditTokenRevoked, "team-q", "", at(i))); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, limit := range []int{1, 10, 37, 1000} {
		var pages int
		got := readAll(t, func(q store.AuditQuery) (store.AuditPage, error) {
			pages++
			p, err := s.AuditEvents(ctx, "team-p", q)
			if err == nil && len(p.Events) > limit {
				t.Fatalf("limit %d: page of %d events", limit, len(p.Events))
			}
			return p, err
		}, store.AuditQuery{Limit: limit})
		if !slices.Equal(eventIDs(got), eventIDs(want)) {
			t.Fatalf("limit %d: pages hold %v, want %v", limit, eventIDs(got), eventIDs(want))
		}
		assertNewestFirst(t, fmt.Sprintf("limit %d", limit), got)
		if min := (37 + limit - 1) / limit; pages < min || pages > min+1 {
			t.Fatalf("limit %d: %d pages, want %d or %d", limit, pages, min, min+1)
		}
	}
	// NewerThan: only what came after a cursor, still newest first.
	all := teamEvents(t, s, "team-p", store.AuditQuery{})
	mark := all[10].Seq
	got := teamEvents(t, s, "team-p", store.AuditQuery{NewerThan: mark, Limit: 4})
	if !slices.Equal(eventIDs(got), eventIDs(all[:10])) {
		t.Fatalf("NewerThan %d: got %v, want %v", mark, eventIDs(got), eventIDs(all[:10]))
	}
}

func testAuditCursorNotClock(t *testing.T, s store.Store) {
	ctx := context.Background()
	first := newEvent(store.AuditTokenRevoked, "team-c", "", at(100))
	if err := s.AppendAudit(ctx, first); err != nil {
		t.Fatal(err)
	}
	page, err := s.AuditEvents(ctx, "team-c", store.AuditQuery{})
	if err != nil || len(page.Events) != 1 {
		t.Fatalf("AuditEvents: %v, %v", page, err)
	}
	cursor := page.Events[0].Seq
	// Committed later by an instance whose clock is behind.
	late := newEvent(store.AuditTokenRevoked, "team-c", "", at(50))
	if err := s.AppendAudit(ctx, late); err != nil {
		t.Fatal(err)
	}
	got := teamEvents(t, s, "team-c", store.AuditQuery{NewerThan: cursor})
	if len(got) != 1 || got[0].ID != late.ID {
		t.Fatalf("events newer than cursor %d: %v, want [%s] (committed later, stamped earlier)", cursor, eventIDs(got), late.ID)
	}
	mustMove(t, s)
	stream := allEvents(t, s, store.AuditQuery{})
	if len(stream) != 2 || stream[0].ID != late.ID {
		t.Fatalf("stream: %v, want [%s %s] in commit order", eventIDs(stream), late.ID, first.ID)
	}
}

func testAuditFilters(t *testing.T, s store.Store) {
	ctx := context.Background()
	type fixture struct {
		team   string
		action store.AuditAction
		at     int
	}
	fixtures := []fixture{
		{"team-f", store.AuditKeyCreated, 0}, {"team-f", store.AuditKeyRotated, 10}, {"team-f", store.AuditKeyDeleted, 20},
		{"team-f", store.AuditKeyCreated, 30}, {"team-g", store.AuditKeyCreated, 15}, {"", store.AuditAuthFailed, 25},
	}
	byTime := map[int]string{}
	for _, f := range fixtures {
		ev := newEvent(f.action, f.team, "", at(f.at))
		if err := s.AppendAudit(ctx, ev); err != nil {
			t.Fatal(err)
		}
		byTime[f.at] = ev.ID
	}
	ids := func(times ...int) []string {
		var out []string
		for _, n := range times {
			out = append(out, byTime[n])
		}
		return out
	}
	mustMove(t, s)
	cases := []struct {
		name string
		team *string
		q    store.AuditQuery
		want []string
	}{
		{"team, one action", ptr("team-f"), store.AuditQuery{Actions: []store.AuditAction{store.AuditKeyCreated}}, ids(30, 0)},
		{"team, two actions", ptr("team-f"), store.AuditQuery{Actions: []store.AuditAction{store.AuditKeyRotated, store.AuditKeyDeleted}}, ids(20, 10)},
		{"team, since inclusive, until exclusive", ptr("team-f"), store.AuditQuery{Since: at(10), Until: at(30)}, ids(20, 10)},
		{"team, since only", ptr("team-f"), store.AuditQuery{Since: at(11)}, ids(30, 20)},
		{"team-less events", ptr(""), store.AuditQuery{}, ids(25)},
		{"stream, one team", nil, store.AuditQuery{TeamID: "team-g", HasTeam: true}, ids(15)},
		{"stream, team \"\"", nil, store.AuditQuery{TeamID: "", HasTeam: true}, ids(25)},
		{"stream, action and time", nil, store.AuditQuery{Actions: []store.AuditAction{store.AuditKeyCreated}, Since: at(1), Until: at(30)}, ids(15)},
		{"stream, nothing matches", nil, store.AuditQuery{Actions: []store.AuditAction{store.AuditKeyUpdated}}, nil},
	}
	// The stream holds everything once, each team's events in trail order
	// (teams may interleave otherwise: the mover visits slots in turn).
	stream := allEvents(t, s, store.AuditQuery{})
	got := eventIDs(stream)
	slices.Sort(got)
	want := ids(0, 10, 15, 20, 25, 30)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("stream: got %v, want %v", got, want)
	}
	var teamF []string
	for _, ev := range stream {
		if ev.TeamID == "team-f" {
			teamF = append(teamF, ev.ID)
		}
	}
	if want := ids(30, 20, 10, 0); !slices.Equal(teamF, want) {
		t.Errorf("team-f in the stream: got %v, want its trail order %v", teamF, want)
	}
	for _, c := range cases {
		var got []store.AuditEvent
		if c.team != nil {
			got = teamEvents(t, s, *c.team, c.q)
		} else {
			got = allEvents(t, s, c.q)
		}
		if !slices.Equal(eventIDs(got), c.want) {
			t.Errorf("%s: got %v, want %v", c.name, eventIDs(got), c.want)
		}
	}
}

func ptr[T any](v T) *T { return &v }

func testAuditAllAfterMove(t *testing.T, s store.Store) {
	ctx := context.Background()
	// Enough teams to land in many Cluster slots.
	var want []string
	for i := range 60 {
		team := fmt.Sprintf("team-%02d", i)
		k := newKey(t, "k", team, at(i))
		ev := newEvent(store.AuditKeyCreated, team, k.ClientID, at(i))
		if err := s.CreateKey(ctx, k, 0, ev); err != nil {
			t.Fatal(err)
		}
		want = append(want, ev.ID)
	}
	// Two movers at once (two instances): nothing twice, nothing lost.
	concurrently(2, func(int) { mustMove(t, s) })
	mustMove(t, s)
	got := allEvents(t, s, store.AuditQuery{})
	assertNewestFirst(t, "stream", got)
	gotIDs := eventIDs(got)
	slices.Sort(gotIDs)
	slices.Sort(want)
	if !slices.Equal(gotIDs, want) {
		t.Fatalf("stream after MoveAudit holds %d events %v, want the %d created", len(gotIDs), gotIDs, len(want))
	}
	// New events come after the old ones in the stream, and a reader
	// polling with its cursor sees exactly them.
	cursor := got[0].Seq
	late := newEvent(store.AuditTokenRevoked, "team-07", "", at(0))
	if err := s.AppendAudit(ctx, late); err != nil {
		t.Fatal(err)
	}
	mustMove(t, s)
	newer := allEvents(t, s, store.AuditQuery{NewerThan: cursor})
	if len(newer) != 1 || newer[0].ID != late.ID {
		t.Fatalf("stream newer than %d: %v, want [%s]", cursor, eventIDs(newer), late.ID)
	}
	if n := mustMove(t, s); n != 0 {
		t.Fatalf("MoveAudit with nothing new moved %d", n)
	}
}

func testAuditConcurrentCreates(t *testing.T, s store.Store) {
	ctx := context.Background()
	const tries, limit = 20, 7
	var ok atomic.Int64
	concurrently(tries, func(i int) {
		k := newKey(t, fmt.Sprintf("c%02d", i), "team-cc", at(i))
		if err := s.CreateKey(ctx, k, limit, newEvent(store.AuditKeyCreated, k.TeamID, k.ClientID, at(i))); err == nil {
			ok.Add(1)
		}
	})
	evs := teamEvents(t, s, "team-cc", store.AuditQuery{})
	keys := mustList(t, s, "team-cc")
	if ok.Load() != limit || len(keys) != limit || len(evs) != limit {
		t.Fatalf("%d creates succeeded, %d keys stored, %d events; want %d of each", ok.Load(), len(keys), len(evs), limit)
	}
	byClient := map[string]bool{}
	for _, ev := range evs {
		byClient[ev.ClientID] = true
	}
	for _, k := range keys {
		if !byClient[k.ClientID] {
			t.Fatalf("key %s has no key.created event", k.ClientID)
		}
	}
}

func testAuditRetention(t *testing.T, s store.Store) {
	ctx := context.Background()
	var keep []string
	for i := range 10 {
		for _, team := range []string{"team-x", "team-y", ""} {
			ev := newEvent(store.AuditTokenRevoked, team, "", at(i*60))
			if err := s.AppendAudit(ctx, ev); err != nil {
				t.Fatal(err)
			}
			if i >= 4 {
				keep = append(keep, ev.ID)
			}
		}
	}
	mustMove(t, s)
	total := 0
	for range 100 {
		n, err := s.PruneAudit(ctx, at(4*60))
		if err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			break
		}
		total += n
	}
	if total < 12 {
		t.Fatalf("PruneAudit removed %d, want at least the 12 events older than the cut", total)
	}
	slices.Sort(keep)
	for _, team := range []string{"team-x", "team-y", ""} {
		for _, ev := range teamEvents(t, s, team, store.AuditQuery{}) {
			if ev.Time.Before(at(4 * 60)) {
				t.Fatalf("team %q still holds event %s of %v", team, ev.ID, ev.Time)
			}
		}
		if n := len(teamEvents(t, s, team, store.AuditQuery{})); n != 6 {
			t.Fatalf("team %q holds %d events after the prune, want 6", team, n)
		}
	}
	got := eventIDs(allEvents(t, s, store.AuditQuery{}))
	slices.Sort(got)
	if !slices.Equal(got, keep) {
		t.Fatalf("stream after the prune holds %v, want %v", got, keep)
	}
	// A team with nothing left to prune stays as it is, and new events are
	// pruned in turn.
	if n, err := s.PruneAudit(ctx, at(4*60)); err != nil || n != 0 {
		t.Fatalf("second PruneAudit: %d, %v; want 0", n, err)
	}
	for range 100 {
		n, err := s.PruneAudit(ctx, at(24*60*60))
		if err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			break
		}
	}
	if evs := allEvents(t, s, store.AuditQuery{}); len(evs) != 0 {
		t.Fatalf("after pruning everything the stream holds %v", eventIDs(evs))
	}
	if evs := teamEvents(t, s, "team-x", store.AuditQuery{}); len(evs) != 0 {
		t.Fatalf("after pruning everything team-x holds %v", eventIDs(evs))
	}
}

func testAuditLimitRange(t *testing.T, s store.Store) {
	ctx := context.Background()
	for _, limit := range []int{-1, store.MaxAuditLimit + 1} {
		_, err := s.AuditEvents(ctx, "team", store.AuditQuery{Limit: limit})
		wantErr(t, fmt.Sprintf("AuditEvents limit %d", limit), err, store.ErrInvalid)
		_, err = s.AllAuditEvents(ctx, store.AuditQuery{Limit: limit})
		wantErr(t, fmt.Sprintf("AllAuditEvents limit %d", limit), err, store.ErrInvalid)
	}
	for _, limit := range []int{1, store.MaxAuditLimit} {
		if _, err := s.AuditEvents(ctx, "team", store.AuditQuery{Limit: limit}); err != nil {
			t.Fatalf("AuditEvents limit %d: %v", limit, err)
		}
	}
}
