package storetest

// Conformance of the stores of issue 16: management sessions and their
// one-time codes (store.Sessions), team erasure (store.TeamEraser), schema
// raising (store.SchemaRaiser), admin roles and the last full admin key.

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keygate/keygate/store"
)

var sessionCases = []struct {
	name string
	fn   func(t *testing.T, s store.Store)
}{
	{"Sessions/CreateGetList", testSessionsCreateGetList},
	{"Sessions/RedeemOnce", testSessionsRedeemOnce},
	{"Sessions/RedeemConcurrent", testSessionsRedeemConcurrent},
	{"Sessions/ExpiredCodeRefused", testSessionsExpiredCode},
	{"Sessions/DeleteWrongTeamChangesNothing", testSessionsDelete},
	{"Sessions/DeleteTeamAndPrune", testSessionsDeleteTeamPrune},
	{"TeamEraser/UsageAndAudit", testTeamEraser},
	{"Schema/RaiseNeverDown", testRaiseSchema},
	{"AdminKeys/RoleRoundTrips", testRoleRoundTrip},
	{"AdminKeys/LastFullAdminKept", testLastFullAdmin},
	{"AdminKeys/LastFullAdminConcurrent", testLastFullAdminConcurrent},
}

// feature returns the store's T or fails the test: every backend
// implements the stores of issue 16.
func feature[T any](t *testing.T, s store.Store) T {
	t.Helper()
	f, ok := store.Feature[T](s)
	if !ok {
		var zero T
		t.Fatalf("the store does not implement %T", &zero)
	}
	return f
}

var sessionSeq atomic.Int64

func newSession(team, user string, created time.Time, ttl time.Duration) store.ManagementSession {
	n := sessionSeq.Add(1)
	return store.ManagementSession{
		ID:        fmt.Sprintf("ses_storetest%010d", n),
		TeamID:    team,
		User:      user,
		Kind:      store.SessionConsole,
		MintedBy:  "kgc_admin",
		CreatedAt: created,
		ExpiresAt: created.Add(ttl),
	}
}

func codeHash(code string) []byte {
	h := sha256.Sum256([]byte(code))
	return h[:]
}

func sessionDiff(want, got store.ManagementSession) string {
	if want.ID != got.ID || want.TeamID != got.TeamID || want.User != got.User || want.Kind != got.Kind || want.MintedBy != got.MintedBy {
		return fmt.Sprintf("got %+v, want %+v", got, want)
	}
	if d := timeDiff(want.CreatedAt, got.CreatedAt); d != "" {
		return "CreatedAt: " + d
	}
	if d := timeDiff(want.ExpiresAt, got.ExpiresAt); d != "" {
		return "ExpiresAt: " + d
	}
	return ""
}

func sessionIDs(ss []store.ManagementSession) []string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = s.ID
	}
	return out
}

func testSessionsCreateGetList(t *testing.T, st store.Store) {
	ctx := context.Background()
	s := feature[store.Sessions](t, st)
	a := newSession("team-a", "alice@example.com", at(0), time.Hour)
	b := newSession("team-a", "bob@example.com", at(1), time.Hour)
	other := newSession("team-b", "carol@example.com", at(2), time.Hour)
	ev := newEvent(store.AuditKeyCreated, "team-a", "", at(0))
	if err := s.CreateSession(ctx, a, codeHash("code-a"), at(60), ev); err != nil {
		t.Fatalf("CreateSession: %v", err)
	}
	for _, x := range []store.ManagementSession{b, other} {
		if err := s.CreateSession(ctx, x, nil, time.Time{}); err != nil {
			t.Fatalf("CreateSession %s: %v", x.ID, err)
		}
	}
	got, err := s.GetSession(ctx, a.ID)
	if err != nil {
		t.Fatalf("GetSession: %v", err)
	}
	if d := sessionDiff(a, got); d != "" {
		t.Fatalf("GetSession: %s", d)
	}
	if !got.CreatedAt.Equal(got.CreatedAt.UTC()) || got.CreatedAt.Location() != time.UTC {
		t.Errorf("CreatedAt came back in %v, want UTC", got.CreatedAt.Location())
	}
	list, err := s.ListSessions(ctx, "team-a", at(10))
	if err != nil {
		t.Fatal(err)
	}
	if ids := sessionIDs(list); !slices.Equal(ids, []string{a.ID, b.ID}) {
		t.Fatalf("ListSessions(team-a) = %v, want %v oldest first", ids, []string{a.ID, b.ID})
	}
	if list, _ := s.ListSessions(ctx, "team-none", at(10)); list == nil || len(list) != 0 {
		t.Fatalf("ListSessions of a team with none = %#v, want empty non-nil", list)
	}
	// Expired at now: not listed.
	if list, _ := s.ListSessions(ctx, "team-a", at(0).Add(time.Hour)); !slices.Equal(sessionIDs(list), []string{b.ID}) {
		t.Fatalf("ListSessions at a's expiry = %v, want only %s", sessionIDs(list), b.ID)
	}
	if list, _ := s.ListSessions(ctx, "team-a", at(1).Add(time.Hour)); len(list) != 0 {
		t.Fatalf("ListSessions after expiry = %v, want none", sessionIDs(list))
	}
	wantErr(t, "CreateSession of a taken ID", s.CreateSession(ctx, a, nil, time.Time{}), store.ErrAlreadyExists)
	_, err = s.GetSession(ctx, "ses_missing")
	wantErr(t, "GetSession of an unknown ID", err, store.ErrNotFound)
	// The audit event was written with the session.
	page, err := st.AuditEvents(ctx, "team-a", store.AuditQuery{})
	if err != nil {
		t.Fatal(err)
	}
	if len(page.Events) != 1 || page.Events[0].ID != ev.ID {
		t.Fatalf("team-a's trail = %v, want the session's event", eventIDs(page.Events))
	}
}

func testSessionsRedeemOnce(t *testing.T, st store.Store) {
	ctx := context.Background()
	s := feature[store.Sessions](t, st)
	a := newSession("team-a", "alice@example.com", at(0), time.Hour)
	if err := s.CreateSession(ctx, a, codeHash("code-a"), at(60)); err != nil {
		t.Fatal(err)
	}
	_, err := s.RedeemSessionCode(ctx, codeHash("wrong"), at(1))
	wantErr(t, "redeem an unknown code", err, store.ErrNotFound)
	got, err := s.RedeemSessionCode(ctx, codeHash("code-a"), at(1))
	if err != nil {
		t.Fatalf("RedeemSessionCode: %v", err)
	}
	if d := sessionDiff(a, got); d != "" {
		t.Fatalf("redeemed session: %s", d)
	}
	_, err = s.RedeemSessionCode(ctx, codeHash("code-a"), at(2))
	wantErr(t, "second redemption", err, store.ErrNotFound)
	// The session itself stays: its token is checked against it.
	if _, err := s.GetSession(ctx, a.ID); err != nil {
		t.Fatalf("GetSession after redemption: %v", err)
	}
}

func testSessionsRedeemConcurrent(t *testing.T, st store.Store) {
	ctx := context.Background()
	s := feature[store.Sessions](t, st)
	a := newSession("team-a", "alice@example.com", at(0), time.Hour)
	if err := s.CreateSession(ctx, a, codeHash("code-c"), at(60)); err != nil {
		t.Fatal(err)
	}
	var won, lost atomic.Int32
	concurrently(16, func(int) {
		_, err := s.RedeemSessionCode(ctx, codeHash("code-c"), at(1))
		switch {
		case err == nil:
			won.Add(1)
		case errors.Is(err, store.ErrNotFound):
			lost.Add(1)
		default:
			t.Errorf("redeem: %v", err)
		}
	})
	if won.Load() != 1 || lost.Load() != 15 {
		t.Fatalf("16 concurrent redemptions: %d succeeded, %d not found; want exactly 1 and 15", won.Load(), lost.Load())
	}
}

func testSessionsExpiredCode(t *testing.T, st store.Store) {
	ctx := context.Background()
	s := feature[store.Sessions](t, st)
	a := newSession("team-a", "alice@example.com", at(0), time.Hour)
	if err := s.CreateSession(ctx, a, codeHash("code-x"), at(60)); err != nil {
		t.Fatal(err)
	}
	_, err := s.RedeemSessionCode(ctx, codeHash("code-x"), at(60))
	wantErr(t, "redeem at the code's expiry", err, store.ErrNotFound)
	_, err = s.RedeemSessionCode(ctx, codeHash("code-x"), at(30))
	wantErr(t, "redeem after a refused expired attempt", err, store.ErrNotFound)
}

func testSessionsDelete(t *testing.T, st store.Store) {
	ctx := context.Background()
	s := feature[store.Sessions](t, st)
	a := newSession("team-a", "alice@example.com", at(0), time.Hour)
	if err := s.CreateSession(ctx, a, codeHash("code-d"), at(60)); err != nil {
		t.Fatal(err)
	}
	wantErr(t, "DeleteSession from another team", s.DeleteSession(ctx, "team-b", a.ID), store.ErrNotFound)
	if _, err := s.GetSession(ctx, a.ID); err != nil {
		t.Fatalf("the session after a refused delete: %v", err)
	}
	ev := newEvent(store.AuditKeyDeleted, "team-a", "", at(3))
	if err := s.DeleteSession(ctx, "team-a", a.ID, ev); err != nil {
		t.Fatalf("DeleteSession: %v", err)
	}
	_, err := s.GetSession(ctx, a.ID)
	wantErr(t, "GetSession after DeleteSession", err, store.ErrNotFound)
	_, err = s.RedeemSessionCode(ctx, codeHash("code-d"), at(4))
	wantErr(t, "redeem the code of a deleted session", err, store.ErrNotFound)
	wantErr(t, "second DeleteSession", s.DeleteSession(ctx, "team-a", a.ID), store.ErrNotFound)
	page, err := st.AuditEvents(ctx, "team-a", store.AuditQuery{})
	if err != nil {
		t.Fatal(err)
	}
	if len(page.Events) != 1 || page.Events[0].ID != ev.ID {
		t.Fatalf("team-a's trail = %v, want only the delete's event", eventIDs(page.Events))
	}
}

func testSessionsDeleteTeamPrune(t *testing.T, st store.Store) {
	ctx := context.Background()
	s := feature[store.Sessions](t, st)
	a1 := newSession("team-a", "a1@example.com", at(0), time.Hour)
	a2 := newSession("team-a", "a2@example.com", at(1), time.Hour)
	b1 := newSession("team-b", "b1@example.com", at(2), time.Minute)
	b2 := newSession("team-b", "b2@example.com", at(3), time.Hour)
	for i, x := range []store.ManagementSession{a1, a2, b1, b2} {
		if err := s.CreateSession(ctx, x, codeHash(fmt.Sprint("code-p", i)), at(60)); err != nil {
			t.Fatal(err)
		}
	}
	n, err := s.DeleteTeamSessions(ctx, "team-a")
	if err != nil || n != 2 {
		t.Fatalf("DeleteTeamSessions(team-a) = %d, %v; want 2", n, err)
	}
	for _, x := range []store.ManagementSession{a1, a2} {
		_, err := s.GetSession(ctx, x.ID)
		wantErr(t, "GetSession after DeleteTeamSessions", err, store.ErrNotFound)
	}
	_, err = s.RedeemSessionCode(ctx, codeHash("code-p0"), at(5))
	wantErr(t, "redeem a code of a deleted team's session", err, store.ErrNotFound)
	// b1 expires at at(2)+1m; b2 lives on.
	n, err = s.PruneSessions(ctx, at(2).Add(time.Minute))
	if err != nil || n != 1 {
		t.Fatalf("PruneSessions = %d, %v; want 1", n, err)
	}
	_, err = s.GetSession(ctx, b1.ID)
	wantErr(t, "GetSession of a pruned session", err, store.ErrNotFound)
	if _, err := s.GetSession(ctx, b2.ID); err != nil {
		t.Fatalf("a live session after pruning: %v", err)
	}
}

func testTeamEraser(t *testing.T, st store.Store) {
	ctx := context.Background()
	e := feature[store.TeamEraser](t, st)
	now := hourOf(3)
	mustAddUsage(t, st, now, delta("team-a", "kgc_a", 1, 5, 1), delta("team-b", "kgc_b", 1, 7, 0))
	evA := newEvent(store.AuditKeyCreated, "team-a", "kgc_a", at(0))
	evB := newEvent(store.AuditKeyCreated, "team-b", "kgc_b", at(1))
	for _, ev := range []store.AuditEvent{evA, evB} {
		if err := st.AppendAudit(ctx, ev); err != nil {
			t.Fatal(err)
		}
	}
	// The operator-wide stream holds copies of both events before the
	// erasure, so the erasure has to reach them there too.
	if _, err := st.MoveAudit(ctx); err != nil {
		t.Fatal(err)
	}
	if err := e.DeleteTeamUsage(ctx, "team-a"); err != nil {
		t.Fatalf("DeleteTeamUsage: %v", err)
	}
	if got := mustUsage(t, st, hourQuery("team-a", 0, 4, 3)); len(got) != 0 {
		t.Fatalf("team-a's usage after DeleteTeamUsage: %s", fmtUsage(got))
	}
	if got := mustUsage(t, st, hourQuery("team-b", 0, 4, 3)); len(got) == 0 {
		t.Fatal("team-b's usage went with team-a's")
	}
	n, err := e.EraseAuditPersonalData(ctx, "team-a")
	if err != nil || n < 1 {
		t.Fatalf("EraseAuditPersonalData = %d, %v; want at least the one event", n, err)
	}
	page, err := st.AuditEvents(ctx, "team-a", store.AuditQuery{})
	if err != nil {
		t.Fatal(err)
	}
	if len(page.Events) != 1 {
		t.Fatalf("team-a's trail has %d events after erasure, want the 1 kept", len(page.Events))
	}
	want := evA
	want.SourceAddr, want.UserAgent, want.Actor.OnBehalfOf = "", "", ""
	if d := eventDiff(want, page.Events[0]); len(d) > 0 {
		t.Fatalf("erased event: %v", d)
	}
	page, err = st.AuditEvents(ctx, "team-b", store.AuditQuery{})
	if err != nil {
		t.Fatal(err)
	}
	if len(page.Events) != 1 || len(eventDiff(evB, page.Events[0])) > 0 {
		t.Fatalf("team-b's event changed by team-a's erasure: %+v", page.Events)
	}
	page, err = st.AllAuditEvents(ctx, store.AuditQuery{})
	if err != nil {
		t.Fatal(err)
	}
	if ids := eventIDs(page.Events); !slices.Equal(ids, []string{evB.ID, evA.ID}) {
		t.Fatalf("operator-wide stream after erasure = %v, want both events kept", ids)
	}
	if d := eventDiff(want, page.Events[1]); len(d) > 0 {
		t.Fatalf("team-a's event in the operator-wide stream not erased: %v", d)
	}
	if d := eventDiff(evB, page.Events[0]); len(d) > 0 {
		t.Fatalf("team-b's event in the operator-wide stream changed by team-a's erasure: %v", d)
	}
}

func testRaiseSchema(t *testing.T, st store.Store) {
	ctx := context.Background()
	r := feature[store.SchemaRaiser](t, st)
	// What version a backend records for a level is its own test's
	// business (its numbers differ); here: raising is idempotent and never
	// fails downwards.
	for _, v := range []int{store.SchemaLevelAdminRoles, store.SchemaLevelAdminRoles, 0} {
		if err := r.RaiseSchema(ctx, v); err != nil {
			t.Fatalf("RaiseSchema(%d): %v", v, err)
		}
	}
}

func testRoleRoundTrip(t *testing.T, s store.Store) {
	ctx := context.Background()
	full := newKey(t, "kg_role_full", "", at(0))
	read := newKey(t, "kg_role_read", "", at(1))
	read.Role = store.RoleRead
	mustCreate(t, s, full, 0)
	mustCreate(t, s, read, 0)
	assertKey(t, "GetKey of a read-only admin key", read, mustGet(t, s, read.ClientID))
	assertKeys(t, "ListKeys of admin keys", []store.Key{full, read}, mustList(t, s, ""))
	got, err := s.UpdateKey(ctx, read.ClientID, func(k store.Key) (store.Key, error) {
		k.Name = "renamed"
		return k, nil
	})
	if err != nil || got.Role != store.RoleRead {
		t.Fatalf("UpdateKey kept role %q, %v; want read", got.Role, err)
	}
	seen := map[string]string{}
	if err := s.ForEachKey(ctx, func(k store.Key) error { seen[k.ClientID] = k.Role; return nil }); err != nil {
		t.Fatal(err)
	}
	if seen[read.ClientID] != store.RoleRead || seen[full.ClientID] != store.RoleAdmin {
		t.Fatalf("ForEachKey roles = %v", seen)
	}
}

func testLastFullAdmin(t *testing.T, s store.Store) {
	ctx := context.Background()
	full := newKey(t, "kg_last_full", "", at(0))
	read := newKey(t, "kg_last_read", "", at(1))
	read.Role = store.RoleRead
	mustCreate(t, s, full, 0)
	mustCreate(t, s, read, 0)
	// A read-only key does not keep the last full one company.
	wantErr(t, "DeleteKey of the only full admin key", s.DeleteKey(ctx, "", full.ClientID), store.ErrLastAdmin)
	assertKeys(t, "admin keys after the refused delete", []store.Key{full, read}, mustList(t, s, ""))
	if err := s.DeleteKey(ctx, "", read.ClientID); err != nil {
		t.Fatalf("DeleteKey of a read-only admin key: %v", err)
	}
	second := newKey(t, "kg_last_second", "", at(2))
	mustCreate(t, s, second, 0)
	if err := s.DeleteKey(ctx, "", full.ClientID); err != nil {
		t.Fatalf("DeleteKey of one of two full admin keys: %v", err)
	}
	wantErr(t, "DeleteKey of the remaining full admin key", s.DeleteKey(ctx, "", second.ClientID), store.ErrLastAdmin)
}

func testLastFullAdminConcurrent(t *testing.T, s store.Store) {
	ctx := context.Background()
	for round := range 5 {
		a := newKey(t, fmt.Sprint("kg_conc_a", round), "", at(0))
		b := newKey(t, fmt.Sprint("kg_conc_b", round), "", at(1))
		mustCreate(t, s, a, 0)
		mustCreate(t, s, b, 0)
		var deleted, refused atomic.Int32
		concurrently(2, func(i int) {
			id := []string{a.ClientID, b.ClientID}[i]
			switch err := s.DeleteKey(ctx, "", id); {
			case err == nil:
				deleted.Add(1)
			case errors.Is(err, store.ErrLastAdmin):
				refused.Add(1)
			default:
				t.Errorf("DeleteKey: %v", err)
			}
		})
		if deleted.Load() != 1 || refused.Load() != 1 {
			t.Fatalf("round %d: concurrent deletes of the last two full admins: %d deleted, %d refused; want 1 and 1", round, deleted.Load(), refused.Load())
		}
		left := mustList(t, s, "")
		if len(left) != 1 {
			t.Fatalf("round %d: %d admin keys left, want 1", round, len(left))
		}
		// Make room for the next round: a second full admin lets this one go.
		c := newKey(t, fmt.Sprint("kg_conc_c", round), "", at(2))
		mustCreate(t, s, c, 0)
		if err := s.DeleteKey(ctx, "", left[0].ClientID); err != nil {
			t.Fatal(err)
		}
		if err := s.DeleteKey(ctx, "", c.ClientID); !errors.Is(err, store.ErrLastAdmin) {
			t.Fatalf("round %d: deleting the new sole admin: %v", round, err)
		}
		// c is the last full admin; made read-only it may go, so the
		// next round starts again from none.
		if _, err := s.UpdateKey(ctx, c.ClientID, func(k store.Key) (store.Key, error) { k.Role = store.RoleRead; return k, nil }); err != nil {
			t.Fatal(err)
		}
		if err := s.DeleteKey(ctx, "", c.ClientID); err != nil {
			t.Fatalf("round %d: deleting an admin key made read-only: %v", round, err)
		}
	}
}
