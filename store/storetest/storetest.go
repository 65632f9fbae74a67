// Package storetest is the conformance suite every keygate store backend
// must pass. The rest of keygate treats backends as interchangeable, so the
// guarantees it relies on (atomic limits, create-if-absent, copies not
// aliases, UTC times) are written down here once, as executable checks,
// instead of being re-derived in each backend's own tests.
//
// A backend's test calls Run with a factory:
//
//	func TestConformance(t *testing.T) {
//		storetest.Run(t, func(t *testing.T) store.Store {
//			s, err := bolt.Open(filepath.Join(t.TempDir(), "keygate.db"))
//			if err != nil {
//				t.Fatal(err)
//			}
//			t.Cleanup(func() { s.Close() })
//			return s
//		})
//	}
//
// # What backends must keep
//
// Times: every time a backend returns must be in UTC (Location() ==
// time.UTC) and within one millisecond of the time it was given; the suite
// deliberately feeds times with nanoseconds and a non-UTC zone. A zero time
// must come back as a zero time (LastUsedAt of an unused key, for one).
//
// Slices: nil and empty are interchangeable (Permissions, hashes), because
// not every encoding can tell them apart and no caller should care.
//
// The suite runs its subtests one after another (no t.Parallel), so a
// factory may hand out stores that share a server as long as each one is
// empty when returned.
package storetest

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/keygate/keygate/credential"
	"github.com/keygate/keygate/store"
)

// Run runs the whole conformance suite. newStore must return a fresh, empty
// store on every call and register its own cleanup with t.Cleanup.
func Run(t *testing.T, newStore func(t *testing.T) store.Store) {
	t.Helper()
	cases := []struct {
		name string
		fn   func(t *testing.T, s store.Store)
	}{
		{"CreateKey/GetKeyReturnsEqualRecord", testCreateGet},
		{"CreateKey/CallerSlicesNotRetained", testCreateDoesNotAliasInput},
		{"UpdateKey/ChangesPersist", testUpdatePersists},
		{"UpdateKey/FuncErrorChangesNothing", testUpdateFuncError},
		{"UpdateKey/IdentityCannotChange", testUpdateIdentityImmutable},
		{"UpdateKey/ConcurrentNoLostUpdates", testUpdateConcurrent},
		{"DeleteKey/Removes", testDelete},
		{"DeleteKey/WrongTeamIsNotFound", testDeleteWrongTeam},
		{"NotFound", testNotFound},
		{"TagRule/RefusedAndNothingWritten", testTagRule},
		{"Duplicate/RefusedAndOriginalUnchanged", testDuplicate},
		{"Duplicate/Concurrent", testDuplicateConcurrent},
		{"ListKeys/PerTeamOldestFirst", testListKeys},
		{"ListKeys/AdminKeysSeparate", testListAdminKeys},
		{"ForEachKey/VisitsEveryKeyOnce", testForEachKey},
		{"ForEachKey/StopsAtError", testForEachKeyStops},
		{"Teams/CountsPerTeamSorted", testTeams},
		{"Teams/EmptyStoreAndDeletedTeams", testTeamsEmptyAndDeleted},
		{"Teams/PrefixAfterLimit", testTeamsQuery},
		{"Limit/PerTeam", testLimit},
		{"Limit/Unlimited", testLimitUnlimited},
		{"Limit/AdminKeys", testLimitAdmin},
		{"Limit/Concurrent", testLimitConcurrent},
		{"Limit/ConcurrentAdminSeed", testAdminSeedConcurrent},
		{"TouchKeys/AdvancesLastUsed", testTouch},
		{"TouchKeys/NeverBackwards", testTouchNeverBackwards},
		{"TouchKeys/UnknownIDsIgnored", testTouchUnknown},
		{"Singleton/FirstWins", testSingleton},
		{"Singleton/Concurrent", testSingletonConcurrent},
		{"Singleton/CompareAndSwap", testSingletonSwap},
		{"Singleton/CompareAndSwapConcurrent", testSingletonSwapConcurrent},
		{"SigningKeys/EmptyStore", testSigningEmpty},
		{"SigningKeys/RoundTrip", testSigningRoundTrip},
		{"SigningKeys/StatesRoundTrip", testSigningStatesRoundTrip},
		{"SigningKeys/FuncErrorChangesNothing", testSigningFuncError},
		{"SigningKeys/ConcurrentFirstStart", testSigningConcurrent},
		{"SigningKeys/ConcurrentNoLostUpdates", testSigningConcurrentUpdates},
		{"StatusList/IndicesUniqueUnderConcurrency", testStatusIndexConcurrent},
		{"StatusList/RevokeSetsBitLSBFirst", testStatusRevoke},
		{"StatusList/SuspendAndResume", testStatusSuspendResume},
		{"StatusList/InvalidIsFinal", testStatusInvalidFinal},
		{"StatusList/SetStatusRefusesAndChangesNothing", testStatusSetRefused},
		{"StatusList/ConcurrentSetAndRevokeEndInvalid", testStatusConcurrent},
		{"StatusList/IndexRoundTripsOnKey", testStatusIndexOnKey},
		{"StatusList/PreviousIndexRoundTripsOnKey", testPreviousStatusIndexOnKey},
		{"TokenQuota/RoundTripsOnKey", testTokenQuotaOnKey},
		{"DenyList/UntilExpiry", testDenyList},
		{"DenyList/Prune", testDenyPrune},
		{"ReturnedValuesAreCopies", testReturnedCopies},
		{"CancelledContext", testCancelledContext},
		{"Ping", testPing},
	}
	cases = append(cases, usageCases...)
	cases = append(cases, auditCases...)
	cases = append(cases, webhookCases...)  // webhook.go
	cases = append(cases, secretCases...)   // secrets.go
	cases = append(cases, sessionCases...)  // sessions.go
	cases = append(cases, scheduleCases...) // schedule.go
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			c.fn(t, newStore(t))
		})
	}
}

var (
	// zone is deliberately not UTC so that a backend that stores times as
	// given, zone and all, fails the UTC check.
	zone = time.FixedZone("UTC+2", 2*60*60)
	// base carries nanoseconds so that truncation to milliseconds is visible.
	base = time.Date(2024, 5, 1, 12, 0, 0, 123_456_789, zone)

	errBoom = errors.New("storetest: update refused on purpose")
)

// at returns base plus n seconds: distinct, ordered times for fixtures.
func at(n int) time.Time { return base.Add(time.Duration(n) * time.Second) }

func randomBytes(t testing.TB, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

// newKey returns a key with every field set, so that a backend dropping any
// field fails the equality checks.
// ID turns a readable test name into a client ID that carries the team's
// tag, as the store contract requires (see store.Key).
func ID(teamID, name string) string {
	return credential.ClientIDPrefix + credential.TeamTag(teamID) + name
}

// newKey returns a complete key of teamID whose client ID is ID(teamID, name).
func newKey(t testing.TB, name, teamID string, created time.Time) store.Key {
	t.Helper()
	return store.Key{
		ClientID:                ID(teamID, name),
		TeamID:                  teamID,
		Name:                    "key " + name,
		Permissions:             []string{"accounting_api", "visualization_sdk"},
		CreatedAt:               created,
		SecretHash:              randomBytes(t, 32),
		PreviousSecretHash:      randomBytes(t, 32),
		PreviousSecretExpiresAt: created.Add(24 * time.Hour),
		SecretRotatedAt:         created.Add(time.Minute),
		StatusIndex:             int64(len(name)) * 7,
		PreviousStatusIndex:     int64(len(name))*7 + 3,
		SecretSuspendedAt:       created.Add(2 * time.Minute),
		TokenQuota:              store.TokenQuota{Limit: int64(len(name))*100 + 1, Per: "day", Mode: "log"},
		// Every policy field, so that each case round-trips them too
		// (testCreateGet checks they stay zero where unset).
		ExpiresAt:    created.Add(90 * 24 * time.Hour),
		DisabledAt:   created.Add(3 * time.Minute),
		TokenTTL:     time.Duration(len(name)) * time.Minute,
		Audiences:    []string{"https://api.example.com/" + name, "https://api.example.com/banking"},
		AllowedCIDRs: []netip.Prefix{netip.MustParsePrefix("203.0.113.0/24"), netip.MustParsePrefix("2001:db8::/32"), netip.MustParsePrefix("192.0.2.7/32")},
		Metadata:     []byte(`{"tenant":"` + name + `","n":[1,2.5,null],"nested":{"ok":true}}`),
	}
}

// withoutPolicy is k with none of the policy fields.
func withoutPolicy(k store.Key) store.Key {
	k.ExpiresAt, k.DisabledAt, k.TokenTTL = time.Time{}, time.Time{}, 0
	k.Audiences, k.AllowedCIDRs, k.Metadata = nil, nil, nil
	return k
}

func mustCreate(t testing.TB, s store.Store, k store.Key, max int) {
	t.Helper()
	if err := s.CreateKey(context.Background(), k, max); err != nil {
		t.Fatalf("CreateKey(%s, team %q, max %d): %v", k.ClientID, k.TeamID, max, err)
	}
}

func mustGet(t testing.TB, s store.Store, clientID string) store.Key {
	t.Helper()
	k, err := s.GetKey(context.Background(), clientID)
	if err != nil {
		t.Fatalf("GetKey(%s): %v", clientID, err)
	}
	return k
}

func mustList(t testing.TB, s store.Store, teamID string) []store.Key {
	t.Helper()
	ks, err := s.ListKeys(context.Background(), teamID)
	if err != nil {
		t.Fatalf("ListKeys(%q): %v", teamID, err)
	}
	return ks
}

func wantErr(t testing.TB, op string, err, want error) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Fatalf("%s: got error %v, want one matching %v", op, err, want)
	}
}

// timeDiff explains how got differs from want under the suite's time rules,
// or returns "" when it is acceptable.
func timeDiff(want, got time.Time) string {
	if want.IsZero() || got.IsZero() {
		if want.IsZero() != got.IsZero() {
			return fmt.Sprintf("got %v, want %v", got, want)
		}
		return ""
	}
	if got.Location() != time.UTC {
		return fmt.Sprintf("got %v in zone %v, want UTC", got, got.Location())
	}
	if d := got.Sub(want); d <= -time.Millisecond || d >= time.Millisecond {
		return fmt.Sprintf("got %v, want %v (off by %v, more than 1ms)", got, want.UTC(), d)
	}
	return ""
}

// keyDiff lists every field in which got differs from want.
func keyDiff(want, got store.Key) []string {
	var d []string
	if want.ClientID != got.ClientID {
		d = append(d, fmt.Sprintf("ClientID: got %q, want %q", got.ClientID, want.ClientID))
	}
	if want.TeamID != got.TeamID {
		d = append(d, fmt.Sprintf("TeamID: got %q, want %q", got.TeamID, want.TeamID))
	}
	if want.Name != got.Name {
		d = append(d, fmt.Sprintf("Name: got %q, want %q", got.Name, want.Name))
	}
	if !slices.Equal(want.Permissions, got.Permissions) {
		d = append(d, fmt.Sprintf("Permissions: got %q, want %q", got.Permissions, want.Permissions))
	}
	if want.StatusIndex != got.StatusIndex {
		d = append(d, fmt.Sprintf("StatusIndex: got %d, want %d", got.StatusIndex, want.StatusIndex))
	}
	if want.PreviousStatusIndex != got.PreviousStatusIndex {
		d = append(d, fmt.Sprintf("PreviousStatusIndex: got %d, want %d", got.PreviousStatusIndex, want.PreviousStatusIndex))
	}
	if want.Role != got.Role {
		d = append(d, fmt.Sprintf("Role: got %q, want %q", got.Role, want.Role))
	}
	if want.TokenQuota != got.TokenQuota {
		d = append(d, fmt.Sprintf("TokenQuota: got %+v, want %+v", got.TokenQuota, want.TokenQuota))
	}
	if want.TokenTTL != got.TokenTTL {
		d = append(d, fmt.Sprintf("TokenTTL: got %v, want %v", got.TokenTTL, want.TokenTTL))
	}
	// nil and empty are the same "none" (a backend may keep either).
	if !slices.Equal(want.Audiences, got.Audiences) {
		d = append(d, fmt.Sprintf("Audiences: got %q, want %q", got.Audiences, want.Audiences))
	}
	if !slices.Equal(want.AllowedCIDRs, got.AllowedCIDRs) {
		d = append(d, fmt.Sprintf("AllowedCIDRs: got %v, want %v", got.AllowedCIDRs, want.AllowedCIDRs))
	}
	if !bytes.Equal(want.Metadata, got.Metadata) {
		d = append(d, fmt.Sprintf("Metadata: got %s, want %s", got.Metadata, want.Metadata))
	}
	// Hash values are not printed: a test log is no place for them either.
	if !bytes.Equal(want.SecretHash, got.SecretHash) {
		d = append(d, "SecretHash differs")
	}
	if !bytes.Equal(want.PreviousSecretHash, got.PreviousSecretHash) {
		d = append(d, "PreviousSecretHash differs")
	}
	for _, f := range []struct {
		name      string
		want, got time.Time
	}{
		{"CreatedAt", want.CreatedAt, got.CreatedAt},
		{"LastUsedAt", want.LastUsedAt, got.LastUsedAt},
		{"PreviousSecretExpiresAt", want.PreviousSecretExpiresAt, got.PreviousSecretExpiresAt},
		{"SecretRotatedAt", want.SecretRotatedAt, got.SecretRotatedAt},
		{"SecretSuspendedAt", want.SecretSuspendedAt, got.SecretSuspendedAt},
		{"ExpiresAt", want.ExpiresAt, got.ExpiresAt},
		{"DisabledAt", want.DisabledAt, got.DisabledAt},
	} {
		if s := timeDiff(f.want, f.got); s != "" {
			d = append(d, f.name+": "+s)
		}
	}
	return d
}

func assertKey(t testing.TB, what string, want, got store.Key) {
	t.Helper()
	if d := keyDiff(want, got); len(d) > 0 {
		t.Fatalf("%s: key %s differs:\n  %s", what, want.ClientID, joinLines(d))
	}
}

func assertKeys(t testing.TB, what string, want, got []store.Key) {
	t.Helper()
	if len(want) != len(got) {
		t.Fatalf("%s: got %d keys %v, want %d %v", what, len(got), ids(got), len(want), ids(want))
	}
	for i := range want {
		if want[i].ClientID != got[i].ClientID {
			t.Fatalf("%s: got order %v, want %v", what, ids(got), ids(want))
		}
		assertKey(t, fmt.Sprintf("%s [%d]", what, i), want[i], got[i])
	}
}

func ids(ks []store.Key) []string {
	out := make([]string, len(ks))
	for i, k := range ks {
		out[i] = k.ClientID
	}
	return out
}

func joinLines(ss []string) string {
	var b bytes.Buffer
	for i, s := range ss {
		if i > 0 {
			b.WriteString("\n  ")
		}
		b.WriteString(s)
	}
	return b.String()
}

// concurrently runs fn(i) for i in [0, n) on n goroutines released at the
// same moment, so that they really contend instead of trickling in as they
// are started.
func concurrently(n int, fn func(i int)) {
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			fn(i)
		}()
	}
	close(start)
	wg.Wait()
}

// --- CRUD -----------------------------------------------------------------

func testCreateGet(t *testing.T, s store.Store) {
	team := newKey(t, "kg_team1", "team-a", at(0))
	team.LastUsedAt = at(5)
	mustCreate(t, s, team, 5)
	assertKey(t, "GetKey after CreateKey", team, mustGet(t, s, team.ClientID))

	// Never used, never rotated: zero times must stay zero, not turn into
	// 1970 or year 1 in some zone.
	admin := withoutPolicy(newKey(t, "kg_admin1", "", at(1)))
	admin.Permissions = []string{"keys:admin"}
	admin.PreviousSecretHash = nil
	admin.PreviousSecretExpiresAt = time.Time{}
	admin.SecretRotatedAt = time.Time{}
	mustCreate(t, s, admin, 0)
	got := mustGet(t, s, admin.ClientID)
	assertKey(t, "GetKey of admin key", admin, got)
	if !got.IsAdmin() {
		t.Fatalf("admin key came back with TeamID %q", got.TeamID)
	}
	// No policy stays no policy: no zero time turned into another, no
	// empty list or metadata invented.
	if got.HasPolicy() || got.Audiences != nil || got.AllowedCIDRs != nil || got.Metadata != nil {
		t.Fatalf("a key stored without a policy came back with one: %+v", got)
	}
}

func testCreateDoesNotAliasInput(t *testing.T, s store.Store) {
	k := newKey(t, "kg_alias", "team-a", at(0))
	want := k
	want.Permissions = slices.Clone(k.Permissions)
	want.SecretHash = bytes.Clone(k.SecretHash)
	want.PreviousSecretHash = bytes.Clone(k.PreviousSecretHash)
	want.Audiences = slices.Clone(k.Audiences)
	want.AllowedCIDRs = slices.Clone(k.AllowedCIDRs)
	want.Metadata = bytes.Clone(k.Metadata)
	mustCreate(t, s, k, 5)

	// The caller reusing its buffers must not reach into the store.
	k.Permissions[0] = "mutated"
	k.SecretHash[0] ^= 0xff
	k.PreviousSecretHash[0] ^= 0xff
	k.Audiences[0] = "mutated"
	k.AllowedCIDRs[0] = netip.MustParsePrefix("10.0.0.0/8")
	k.Metadata[2] = 'X'
	assertKey(t, "GetKey after mutating CreateKey's argument", want, mustGet(t, s, k.ClientID))
}

func testUpdatePersists(t *testing.T, s store.Store) {
	ctx := context.Background()
	k := newKey(t, "kg_upd", "team-a", at(0))
	mustCreate(t, s, k, 5)

	want := k
	want.Name = "renamed"
	want.Permissions = []string{"visualization_sdk"}
	want.SecretHash = randomBytes(t, 32)
	want.PreviousSecretHash = bytes.Clone(k.SecretHash)
	want.PreviousSecretExpiresAt = at(3600)
	want.SecretRotatedAt = at(60)
	want.LastUsedAt = at(30)

	var seen store.Key
	got, err := s.UpdateKey(ctx, k.ClientID, func(cur store.Key) (store.Key, error) {
		seen = cur
		cur.Name = want.Name
		cur.Permissions = []string{"visualization_sdk"}
		cur.SecretHash = bytes.Clone(want.SecretHash)
		cur.PreviousSecretHash = bytes.Clone(want.PreviousSecretHash)
		cur.PreviousSecretExpiresAt = want.PreviousSecretExpiresAt
		cur.SecretRotatedAt = want.SecretRotatedAt
		cur.LastUsedAt = want.LastUsedAt
		return cur, nil
	})
	if err != nil {
		t.Fatalf("UpdateKey: %v", err)
	}
	assertKey(t, "update func's argument", k, seen)
	assertKey(t, "UpdateKey result", want, got)
	assertKey(t, "GetKey after UpdateKey", want, mustGet(t, s, k.ClientID))
	assertKeys(t, "ListKeys after UpdateKey", []store.Key{want}, mustList(t, s, "team-a"))
}

func testUpdateFuncError(t *testing.T, s store.Store) {
	k := newKey(t, "kg_upd_err", "team-a", at(0))
	mustCreate(t, s, k, 5)

	_, err := s.UpdateKey(context.Background(), k.ClientID, func(cur store.Key) (store.Key, error) {
		// Scribble over everything, including the slices handed in, then
		// refuse: none of it may stick.
		cur.Name = "should not persist"
		if len(cur.Permissions) > 0 {
			cur.Permissions[0] = "mutated"
		}
		if len(cur.SecretHash) > 0 {
			cur.SecretHash[0] ^= 0xff
		}
		cur.LastUsedAt = at(99)
		return cur, errBoom
	})
	wantErr(t, "UpdateKey with failing func", err, errBoom)
	assertKey(t, "GetKey after failed UpdateKey", k, mustGet(t, s, k.ClientID))
}

func testUpdateIdentityImmutable(t *testing.T, s store.Store) {
	ctx := context.Background()
	k := newKey(t, "kg_ident", "team-a", at(0))
	mustCreate(t, s, k, 5)

	_, err := s.UpdateKey(ctx, k.ClientID, func(cur store.Key) (store.Key, error) {
		cur.ClientID = "kg_ident_moved"
		cur.Name = "should not persist"
		return cur, nil
	})
	if err == nil {
		t.Fatal("UpdateKey changing ClientID: got nil error, want a refusal")
	}
	assertKey(t, "GetKey after refused ClientID change", k, mustGet(t, s, k.ClientID))
	_, err = s.GetKey(ctx, "kg_ident_moved")
	wantErr(t, "GetKey of the ClientID an update tried to move to", err, store.ErrNotFound)

	for _, team := range []string{"team-b", ""} {
		_, err = s.UpdateKey(ctx, k.ClientID, func(cur store.Key) (store.Key, error) {
			cur.TeamID = team
			cur.Name = "should not persist"
			return cur, nil
		})
		if err == nil {
			t.Fatalf("UpdateKey changing TeamID to %q: got nil error, want a refusal", team)
		}
		assertKey(t, "GetKey after refused TeamID change", k, mustGet(t, s, k.ClientID))
		if ks := mustList(t, s, team); len(ks) != 0 {
			t.Fatalf("ListKeys(%q) after refused move: got %v, want none", team, ids(ks))
		}
	}
	assertKeys(t, "ListKeys of the original team", []store.Key{k}, mustList(t, s, "team-a"))
}

// testUpdateConcurrent catches read-modify-write done as a plain read then
// write: UpdateKeys and TouchKeys racing on one key must all land.
func testUpdateConcurrent(t *testing.T, s store.Store) {
	k := newKey(t, "kg_conc", "team-a", at(0))
	k.Permissions = nil
	mustCreate(t, s, k, 0)

	const n = 10
	errs := make([]error, 2*n)
	concurrently(2*n, func(i int) {
		ctx := context.Background()
		if i%2 == 0 {
			_, errs[i] = s.UpdateKey(ctx, k.ClientID, func(cur store.Key) (store.Key, error) {
				cur.Permissions = append(cur.Permissions, fmt.Sprintf("p%02d", i/2))
				return cur, nil
			})
		} else {
			errs[i] = s.TouchKeys(ctx, map[string]time.Time{k.ClientID: at(100 + i)})
		}
	})
	for i, err := range errs {
		if err != nil {
			t.Fatalf("concurrent update %d: %v", i, err)
		}
	}
	got := mustGet(t, s, k.ClientID)
	perms := slices.Sorted(slices.Values(got.Permissions))
	if len(perms) != n {
		t.Fatalf("after %d concurrent UpdateKeys adding one permission each: got %q (lost updates)", n, perms)
	}
	for i, p := range perms {
		if want := fmt.Sprintf("p%02d", i); p != want {
			t.Fatalf("permissions after concurrent updates: got %q, missing %s", perms, want)
		}
	}
	// The latest touch wins whatever order the touches ran in, and no
	// UpdateKey wrote back an older LastUsedAt it had read.
	if d := timeDiff(at(100+2*n-1), got.LastUsedAt); d != "" {
		t.Fatalf("LastUsedAt after concurrent touches: %s", d)
	}
}

func testDelete(t *testing.T, s store.Store) {
	ctx := context.Background()
	k := newKey(t, "kg_del", "team-a", at(0))
	other := newKey(t, "kg_keep", "team-a", at(1))
	mustCreate(t, s, k, 5)
	mustCreate(t, s, other, 5)

	if err := s.DeleteKey(ctx, "team-a", k.ClientID); err != nil {
		t.Fatalf("DeleteKey: %v", err)
	}
	_, err := s.GetKey(ctx, k.ClientID)
	wantErr(t, "GetKey after DeleteKey", err, store.ErrNotFound)
	assertKeys(t, "ListKeys after DeleteKey", []store.Key{other}, mustList(t, s, "team-a"))
	wantErr(t, "second DeleteKey", s.DeleteKey(ctx, "team-a", k.ClientID), store.ErrNotFound)

	admin := newKey(t, "kg_del_admin", "", at(2))
	keep := newKey(t, "kg_keep_admin", "", at(2))
	mustCreate(t, s, admin, 0)
	mustCreate(t, s, keep, 0)
	if err := s.DeleteKey(ctx, "", admin.ClientID); err != nil {
		t.Fatalf("DeleteKey of admin key: %v", err)
	}
	_, err = s.GetKey(ctx, admin.ClientID)
	wantErr(t, "GetKey after deleting admin key", err, store.ErrNotFound)
	// The last full admin key stays (sessions.go tests the rule in full).
	wantErr(t, "DeleteKey of the last full admin key", s.DeleteKey(ctx, "", keep.ClientID), store.ErrLastAdmin)
	assertKey(t, "the last full admin key after the refused delete", keep, mustGet(t, s, keep.ClientID))

	// The client ID is free again.
	mustCreate(t, s, newKey(t, k.ClientID, "team-b", at(3)), 5)
}

func testDeleteWrongTeam(t *testing.T, s store.Store) {
	ctx := context.Background()
	k := newKey(t, "kg_team_a", "team-a", at(0))
	admin := newKey(t, "kg_admin", "", at(1))
	mustCreate(t, s, k, 5)
	mustCreate(t, s, admin, 0)

	for _, team := range []string{"team-b", "", "team-a-and-more", "team"} {
		wantErr(t, fmt.Sprintf("DeleteKey(%q, team-a's key)", team), s.DeleteKey(ctx, team, k.ClientID), store.ErrNotFound)
	}
	wantErr(t, "DeleteKey(team-a, admin key)", s.DeleteKey(ctx, "team-a", admin.ClientID), store.ErrNotFound)

	assertKey(t, "team key after wrong-team deletes", k, mustGet(t, s, k.ClientID))
	assertKey(t, "admin key after wrong-team delete", admin, mustGet(t, s, admin.ClientID))
	assertKeys(t, "ListKeys(team-a)", []store.Key{k}, mustList(t, s, "team-a"))
	assertKeys(t, "ListKeys(admin)", []store.Key{admin}, mustList(t, s, ""))
}

func testNotFound(t *testing.T, s store.Store) {
	ctx := context.Background()
	mustCreate(t, s, newKey(t, "kg_exists", "team-a", at(0)), 5)

	_, err := s.GetKey(ctx, "kg_missing")
	wantErr(t, "GetKey(unknown)", err, store.ErrNotFound)

	called := false
	_, err = s.UpdateKey(ctx, "kg_missing", func(k store.Key) (store.Key, error) {
		called = true
		return k, nil
	})
	wantErr(t, "UpdateKey(unknown)", err, store.ErrNotFound)
	if called {
		t.Fatal("UpdateKey(unknown) called the update func")
	}
	_, err = s.GetKey(ctx, "kg_missing")
	wantErr(t, "GetKey after UpdateKey(unknown)", err, store.ErrNotFound)

	wantErr(t, "DeleteKey(unknown)", s.DeleteKey(ctx, "team-a", "kg_missing"), store.ErrNotFound)
	wantErr(t, "DeleteKey(unknown team)", s.DeleteKey(ctx, "team-zzz", "kg_missing"), store.ErrNotFound)
}

// testTagRule: a key whose client ID does not carry its team's tag is
// refused with ErrInvalid and nothing is written (see store.Key).
func testTagRule(t *testing.T, s store.Store) {
	ctx := context.Background()
	cases := []store.Key{
		newKey(t, "kg_other_team", "team-b", at(0)), // team-b's tag, filed under team-a below
		{ClientID: "plain-id", TeamID: "team-a", CreatedAt: at(0), SecretHash: randomBytes(t, 32)},
		{ClientID: "", TeamID: "team-a", CreatedAt: at(0)},
		newKey(t, "kg_team_as_admin", "team-a", at(0)), // filed as an admin key below
	}
	cases[0].TeamID = "team-a"
	cases[3].TeamID = ""
	for _, k := range cases {
		wantErr(t, fmt.Sprintf("CreateKey(%q in team %q)", k.ClientID, k.TeamID), s.CreateKey(ctx, k, 0), store.ErrInvalid)
		if k.ClientID != "" {
			_, err := s.GetKey(ctx, k.ClientID)
			wantErr(t, "GetKey after refused create", err, store.ErrNotFound)
		}
	}
	for _, team := range []string{"team-a", "team-b", ""} {
		if ks := mustList(t, s, team); len(ks) != 0 {
			t.Fatalf("ListKeys(%q) after refused creates: got %v, want none", team, ids(ks))
		}
	}
	// Operator-chosen admin IDs (not in kgc_ form) are fine for admin keys.
	admin := store.Key{ClientID: "ops-admin", CreatedAt: at(1), SecretHash: randomBytes(t, 32)}
	mustCreate(t, s, admin, 0)
	assertKey(t, "operator-named admin key", admin, mustGet(t, s, "ops-admin"))
}

func testDuplicate(t *testing.T, s store.Store) {
	ctx := context.Background()
	orig := newKey(t, "kg_dup", "team-a", at(0))
	mustCreate(t, s, orig, 2)

	for _, team := range []string{"team-a", "team-b", ""} {
		dup := newKey(t, "kg_dup", "team-a", at(10))
		dup.TeamID = team
		dup.Name = "impostor"
		err := s.CreateKey(ctx, dup, 2)
		if team == "team-a" {
			wantErr(t, fmt.Sprintf("CreateKey(duplicate in team %q)", team), err, store.ErrAlreadyExists)
		} else if !errors.Is(err, store.ErrAlreadyExists) && !errors.Is(err, store.ErrInvalid) {
			// In another team the ID also lacks that team's tag: either
			// refusal is right, silence is not.
			t.Fatalf("CreateKey(duplicate in team %q): got %v, want already exists or invalid", team, err)
		}
	}
	assertKey(t, "original after duplicates", orig, mustGet(t, s, orig.ClientID))
	assertKeys(t, "ListKeys(team-a)", []store.Key{orig}, mustList(t, s, "team-a"))
	if ks := mustList(t, s, "team-b"); len(ks) != 0 {
		t.Fatalf("ListKeys(team-b) after refused duplicate: got %v, want none", ids(ks))
	}
	if ks := mustList(t, s, ""); len(ks) != 0 {
		t.Fatalf("ListKeys(admin) after refused duplicate: got %v, want none", ids(ks))
	}

	// The refused duplicates must not have been counted: team-a has room
	// for exactly one more, team-b and the admins for two each.
	mustCreate(t, s, newKey(t, "kg_a2", "team-a", at(1)), 2)
	wantErr(t, "third key in team-a", s.CreateKey(ctx, newKey(t, "kg_a3", "team-a", at(2)), 2), store.ErrTeamLimit)
	for _, team := range []string{"team-b", ""} {
		mustCreate(t, s, newKey(t, "kg_1"+team, team, at(3)), 2)
		mustCreate(t, s, newKey(t, "kg_2"+team, team, at(4)), 2)
	}
}

func testDuplicateConcurrent(t *testing.T, s store.Store) {
	const n = 20
	offered := make([]store.Key, n)
	for i := range offered {
		offered[i] = newKey(t, "kg_same", "team-a", at(i))
		offered[i].Name = fmt.Sprintf("contender %d", i)
	}
	errs := make([]error, n)
	concurrently(n, func(i int) {
		errs[i] = s.CreateKey(context.Background(), offered[i], 0)
	})
	winner := -1
	for i, err := range errs {
		switch {
		case err == nil:
			if winner >= 0 {
				t.Fatalf("contenders %d and %d both created the same client ID", winner, i)
			}
			winner = i
		case !errors.Is(err, store.ErrAlreadyExists):
			t.Fatalf("contender %d: got %v, want nil or ErrAlreadyExists", i, err)
		}
	}
	if winner < 0 {
		t.Fatal("no contender created the key")
	}
	assertKey(t, "GetKey after concurrent duplicates (must be the winner's)", offered[winner], mustGet(t, s, ID("team-a", "kg_same")))
	if ks := mustList(t, s, "team-a"); len(ks) != 1 {
		t.Fatalf("ListKeys after concurrent duplicates: got %v, want one key", ids(ks))
	}
}

// --- Listing --------------------------------------------------------------

func testListKeys(t *testing.T, s store.Store) {
	// Inserted in an order that is neither creation order nor ID order, so
	// that a backend returning insertion or ID order fails.
	a3 := newKey(t, "kg_a", "team-a", at(30))
	a1 := newKey(t, "kg_z", "team-a", at(10))
	a2b := newKey(t, "kg_tie_b", "team-a", at(20))
	a2a := newKey(t, "kg_tie_a", "team-a", at(20)) // same time: ID breaks the tie
	b1 := newKey(t, "kg_b", "team-b", at(5))
	for _, k := range []store.Key{a3, b1, a2b, a1, a2a} {
		mustCreate(t, s, k, 0)
	}

	assertKeys(t, "ListKeys(team-a)", []store.Key{a1, a2a, a2b, a3}, mustList(t, s, "team-a"))
	assertKeys(t, "ListKeys(team-b)", []store.Key{b1}, mustList(t, s, "team-b"))

	// Prefixes of and extensions to existing team IDs are other teams.
	for _, team := range []string{"team-c", "team", "team-a-2", "TEAM-A"} {
		ks, err := s.ListKeys(context.Background(), team)
		if err != nil {
			t.Fatalf("ListKeys(%q): %v, want no error", team, err)
		}
		if len(ks) != 0 {
			t.Fatalf("ListKeys(%q): got %v, want none", team, ids(ks))
		}
	}
}

func testListAdminKeys(t *testing.T, s store.Store) {
	if ks := mustList(t, s, ""); len(ks) != 0 {
		t.Fatalf("ListKeys(admin) on empty store: got %v, want none", ids(ks))
	}
	ad2 := newKey(t, "kg_ad2", "", at(2))
	ad1 := newKey(t, "kg_ad1", "", at(1))
	tk := newKey(t, "kg_team", "team-a", at(0))
	for _, k := range []store.Key{ad2, tk, ad1} {
		mustCreate(t, s, k, 0)
	}
	assertKeys(t, "ListKeys(admin)", []store.Key{ad1, ad2}, mustList(t, s, ""))
	assertKeys(t, "ListKeys(team-a)", []store.Key{tk}, mustList(t, s, "team-a"))
}

func testForEachKey(t *testing.T, s store.Store) {
	want := map[string]store.Key{}
	for i, team := range []string{"team-a", "team-a", "team-b", "", "", "team-c"} {
		k := newKey(t, fmt.Sprintf("kg_each_%d", i), team, at(i))
		mustCreate(t, s, k, 0)
		want[k.ClientID] = k
	}
	// Collected first and checked afterwards: the contract does not say fn
	// runs on the caller's goroutine, and t.Fatal must.
	var visited []store.Key
	err := s.ForEachKey(context.Background(), func(k store.Key) error {
		visited = append(visited, k)
		return nil
	})
	if err != nil {
		t.Fatalf("ForEachKey: %v", err)
	}
	seen := map[string]int{}
	for _, k := range visited {
		seen[k.ClientID]++
		if w, ok := want[k.ClientID]; ok {
			assertKey(t, "ForEachKey", w, k)
		}
	}
	for id := range want {
		if seen[id] != 1 {
			t.Errorf("ForEachKey visited %s %d times, want once", id, seen[id])
		}
	}
	for id := range seen {
		if _, ok := want[id]; !ok {
			t.Errorf("ForEachKey visited unknown key %s", id)
		}
	}
}

func testForEachKeyStops(t *testing.T, s store.Store) {
	for i := range 5 {
		mustCreate(t, s, newKey(t, fmt.Sprintf("kg_stop_%d", i), "team-a", at(i)), 0)
	}
	calls := 0
	err := s.ForEachKey(context.Background(), func(store.Key) error {
		calls++
		return errBoom
	})
	wantErr(t, "ForEachKey with failing fn", err, errBoom)
	if calls != 1 {
		t.Fatalf("ForEachKey called fn %d times after it failed the first time, want 1", calls)
	}

	var empty []string
	if err := s.ForEachKey(context.Background(), func(k store.Key) error {
		empty = append(empty, k.ClientID)
		return nil
	}); err != nil || len(empty) != 5 {
		t.Fatalf("ForEachKey afterwards: visited %d keys, err %v; want 5, nil", len(empty), err)
	}
}

// --- Limits ---------------------------------------------------------------

// mustTeams lists every team (the zero TeamQuery).
func mustTeams(t testing.TB, s store.Store) []store.TeamCount {
	t.Helper()
	return mustTeamsQuery(t, s, store.TeamQuery{})
}

func mustTeamsQuery(t testing.TB, s store.Store, q store.TeamQuery) []store.TeamCount {
	t.Helper()
	ts, err := s.Teams(context.Background(), q)
	if err != nil {
		t.Fatalf("Teams(%+v): %v", q, err)
	}
	return ts
}

// assertTeams checks a Teams result: exactly want, in order, and never nil
// (an empty store lists no teams as an empty, non-nil slice).
func assertTeams(t testing.TB, what string, want, got []store.TeamCount) {
	t.Helper()
	if got == nil {
		t.Fatalf("%s: got nil, want a non-nil slice", what)
	}
	if !slices.Equal(got, want) {
		t.Fatalf("%s: got %v, want %v", what, got, want)
	}
}

// testTeams: one entry per team with its key count, sorted by team ID
// whatever the creation order; admin keys are not a team.
func testTeams(t *testing.T, s store.Store) {
	for i, k := range []store.Key{
		newKey(t, "kg_teams_b1", "team-b", at(0)),
		newKey(t, "kg_teams_admin", "", at(1)),
		newKey(t, "kg_teams_a1", "team-a", at(2)),
		newKey(t, "kg_teams_b2", "team-b", at(3)),
	} {
		mustCreate(t, s, k, 0)
		if i == 1 {
			// Only team-b so far; the admin key adds nothing.
			assertTeams(t, "Teams after team-b's first key and an admin key",
				[]store.TeamCount{{TeamID: "team-b", Keys: 1}}, mustTeams(t, s))
		}
	}
	assertTeams(t, "Teams", []store.TeamCount{
		{TeamID: "team-a", Keys: 1},
		{TeamID: "team-b", Keys: 2},
	}, mustTeams(t, s))

	// Enough teams, created out of order, that an unsorted result (a hash
	// or scan order) cannot pass by luck; the order is by bytes, so
	// upper case sorts first and a prefix before its extensions.
	for i, team := range []string{"zeta", "team-c", "Team-Z", "team-a-2", "team", "alpha", "team-b"} {
		mustCreate(t, s, newKey(t, fmt.Sprintf("kg_teams_more_%d", i), team, at(10+i)), 0)
	}
	assertTeams(t, "Teams with more teams", []store.TeamCount{
		{TeamID: "Team-Z", Keys: 1},
		{TeamID: "alpha", Keys: 1},
		{TeamID: "team", Keys: 1},
		{TeamID: "team-a", Keys: 1},
		{TeamID: "team-a-2", Keys: 1},
		{TeamID: "team-b", Keys: 3},
		{TeamID: "team-c", Keys: 1},
		{TeamID: "zeta", Keys: 1},
	}, mustTeams(t, s))
}

// testTeamsEmptyAndDeleted: no teams is an empty, non-nil list (admin keys
// alone make none); a team whose last key is deleted disappears, and counts
// follow deletes.
func testTeamsEmptyAndDeleted(t *testing.T, s store.Store) {
	ctx := context.Background()
	assertTeams(t, "Teams on an empty store", []store.TeamCount{}, mustTeams(t, s))

	admin := newKey(t, "kg_td_admin", "", at(0))
	mustCreate(t, s, admin, 0)
	assertTeams(t, "Teams with only an admin key", []store.TeamCount{}, mustTeams(t, s))

	a1 := newKey(t, "kg_td_a1", "team-a", at(1))
	b1 := newKey(t, "kg_td_b1", "team-b", at(2))
	b2 := newKey(t, "kg_td_b2", "team-b", at(3))
	for _, k := range []store.Key{a1, b1, b2} {
		mustCreate(t, s, k, 0)
	}
	assertTeams(t, "Teams", []store.TeamCount{
		{TeamID: "team-a", Keys: 1},
		{TeamID: "team-b", Keys: 2},
	}, mustTeams(t, s))

	// A refused delete (wrong team) changes no count.
	wantErr(t, "DeleteKey(team-b, team-a's key)", s.DeleteKey(ctx, "team-b", a1.ClientID), store.ErrNotFound)

	if err := s.DeleteKey(ctx, "team-a", a1.ClientID); err != nil {
		t.Fatalf("DeleteKey(team-a's only key): %v", err)
	}
	assertTeams(t, "Teams after deleting team-a's last key",
		[]store.TeamCount{{TeamID: "team-b", Keys: 2}}, mustTeams(t, s))

	if err := s.DeleteKey(ctx, "team-b", b1.ClientID); err != nil {
		t.Fatalf("DeleteKey(one of team-b's keys): %v", err)
	}
	assertTeams(t, "Teams after deleting one of team-b's keys",
		[]store.TeamCount{{TeamID: "team-b", Keys: 1}}, mustTeams(t, s))

	if err := s.DeleteKey(ctx, "team-b", b2.ClientID); err != nil {
		t.Fatalf("DeleteKey(team-b's last key): %v", err)
	}
	assertTeams(t, "Teams after deleting every team key (admin key left)", []store.TeamCount{}, mustTeams(t, s))

	// A team that comes back is listed again.
	mustCreate(t, s, newKey(t, "kg_td_a2", "team-a", at(4)), 0)
	assertTeams(t, "Teams after team-a gets a key again",
		[]store.TeamCount{{TeamID: "team-a", Keys: 1}}, mustTeams(t, s))
}

// testTeamsQuery: TeamQuery selects a page of the byte-ordered list.
// Prefix is a plain byte prefix (case matters: "Acme" is not under
// "acme"), After excludes itself and everything before, Limit bounds the
// page, and paging with After = the last ID seen walks every team exactly
// once. A team whose keys were all deleted takes no place in a page.
func testTeamsQuery(t *testing.T, s store.Store) {
	ctx := context.Background()
	counts := map[string]int{"acme": 2, "acme-eu": 1, "acme-us": 3, "acmf": 1, "beta": 1, "Acme": 1, "b": 2}
	var acmeEU store.Key
	i := 0
	// Created out of order, so no backend passes by keeping creation order.
	for _, team := range []string{"beta", "acme-us", "Acme", "acmf", "acme", "b", "acme-eu"} {
		for range counts[team] {
			k := newKey(t, fmt.Sprintf("kg_tq_%d", i), team, at(i))
			mustCreate(t, s, k, 0)
			if team == "acme-eu" {
				acmeEU = k
			}
			i++
		}
	}
	mustCreate(t, s, newKey(t, "kg_tq_admin", "", at(i)), 0)

	tc := func(ids ...string) []store.TeamCount {
		out := []store.TeamCount{}
		for _, id := range ids {
			out = append(out, store.TeamCount{TeamID: id, Keys: counts[id]})
		}
		return out
	}
	all := tc("Acme", "acme", "acme-eu", "acme-us", "acmf", "b", "beta")
	for _, c := range []struct {
		q    store.TeamQuery
		want []store.TeamCount
	}{
		{store.TeamQuery{}, all},
		{store.TeamQuery{Prefix: "acme"}, tc("acme", "acme-eu", "acme-us")},
		{store.TeamQuery{Prefix: "acme", Limit: 2}, tc("acme", "acme-eu")},
		{store.TeamQuery{Prefix: "acme", After: "acme-eu"}, tc("acme-us")},
		{store.TeamQuery{Prefix: "acme-", After: "acme"}, tc("acme-eu", "acme-us")},
		{store.TeamQuery{After: "acmf"}, tc("b", "beta")},
		{store.TeamQuery{After: "acme-f", Limit: 2}, tc("acme-us", "acmf")}, // After need not be a team
		{store.TeamQuery{After: "beta"}, tc()},
		{store.TeamQuery{Prefix: "zzz"}, tc()},
		{store.TeamQuery{Prefix: "acme", After: "acmz"}, tc()},
		{store.TeamQuery{Prefix: "a*"}, tc()}, // no glob: "*" and "?" are bytes like any other
		{store.TeamQuery{Prefix: "acm?"}, tc()},
		{store.TeamQuery{Limit: 1}, tc("Acme")},
		{store.TeamQuery{Limit: 100}, all},
	} {
		assertTeams(t, fmt.Sprintf("Teams(%+v)", c.q), c.want, mustTeamsQuery(t, s, c.q))
	}

	// Paging by 2 through everything gives the full list, in full pages
	// but the last.
	var paged []store.TeamCount
	q := store.TeamQuery{Limit: 2}
	for range len(all) + 1 {
		page := mustTeamsQuery(t, s, q)
		if len(page) > 2 {
			t.Fatalf("Teams(%+v): %d teams, more than the limit", q, len(page))
		}
		paged = append(paged, page...)
		if len(page) < 2 {
			break
		}
		q.After = page[len(page)-1].TeamID
	}
	assertTeams(t, "Teams paged by 2", all, paged)

	// acme-eu's only key deleted: the team is gone, and the page of two
	// reaches past it rather than coming back short.
	if err := s.DeleteKey(ctx, "acme-eu", acmeEU.ClientID); err != nil {
		t.Fatalf("DeleteKey(acme-eu's only key): %v", err)
	}
	assertTeams(t, "Teams(prefix acme, limit 2) after acme-eu lost its last key",
		tc("acme", "acme-us"), mustTeamsQuery(t, s, store.TeamQuery{Prefix: "acme", Limit: 2}))
	assertTeams(t, "Teams(after acme, limit 1) after acme-eu lost its last key",
		tc("acme-us"), mustTeamsQuery(t, s, store.TeamQuery{After: "acme", Limit: 1}))
}

func testLimit(t *testing.T, s store.Store) {
	ctx := context.Background()
	var keys []store.Key
	for i := range 3 {
		k := newKey(t, fmt.Sprintf("kg_lim_%d", i), "team-a", at(i))
		mustCreate(t, s, k, 3)
		keys = append(keys, k)
	}
	over := newKey(t, "kg_lim_over", "team-a", at(10))
	wantErr(t, "4th key with maxPerTeam=3", s.CreateKey(ctx, over, 3), store.ErrTeamLimit)
	_, err := s.GetKey(ctx, over.ClientID)
	wantErr(t, "GetKey of key refused by limit", err, store.ErrNotFound)
	assertKeys(t, "ListKeys at limit", keys, mustList(t, s, "team-a"))

	// A lower limit than the current count refuses too.
	wantErr(t, "key with maxPerTeam=2 when 3 exist", s.CreateKey(ctx, over, 2), store.ErrTeamLimit)

	// Other teams and the admins have their own counts.
	mustCreate(t, s, newKey(t, "kg_lim_b", "team-b", at(11)), 3)
	mustCreate(t, s, newKey(t, "kg_lim_admin", "", at(12)), 3)

	if err := s.DeleteKey(ctx, "team-a", keys[1].ClientID); err != nil {
		t.Fatalf("DeleteKey: %v", err)
	}
	mustCreate(t, s, over, 3)
	wantErr(t, "key after refilling to the limit", s.CreateKey(ctx, newKey(t, "kg_lim_over2", "team-a", at(13)), 3), store.ErrTeamLimit)
}

func testLimitUnlimited(t *testing.T, s store.Store) {
	for i := range 12 {
		mustCreate(t, s, newKey(t, fmt.Sprintf("kg_unl_%02d", i), "team-a", at(i)), 0)
	}
	if ks := mustList(t, s, "team-a"); len(ks) != 12 {
		t.Fatalf("ListKeys with maxPerTeam=0: got %d keys, want 12", len(ks))
	}
}

func testLimitAdmin(t *testing.T, s store.Store) {
	ctx := context.Background()
	// Admin keys do not use up a team's allowance...
	for i := range 3 {
		mustCreate(t, s, newKey(t, fmt.Sprintf("kg_adm_%d", i), "", at(i)), 0)
	}
	for i := range 2 {
		mustCreate(t, s, newKey(t, fmt.Sprintf("kg_tm_%d", i), "team-a", at(10+i)), 2)
	}
	wantErr(t, "3rd team key with maxPerTeam=2", s.CreateKey(ctx, newKey(t, "kg_tm_x", "team-a", at(20)), 2), store.ErrTeamLimit)

	// ...and for an admin key the limit counts admin keys only.
	wantErr(t, "admin key with maxPerTeam=3 when 3 exist", s.CreateKey(ctx, newKey(t, "kg_adm_x", "", at(21)), 3), store.ErrTeamLimit)
	mustCreate(t, s, newKey(t, "kg_adm_3", "", at(22)), 4)
	if ks := mustList(t, s, ""); len(ks) != 4 {
		t.Fatalf("ListKeys(admin): got %v, want 4 keys", ids(ks))
	}
}

func testLimitConcurrent(t *testing.T, s store.Store) {
	const n, max = 50, 5
	offered := make([]store.Key, n)
	for i := range offered {
		offered[i] = newKey(t, fmt.Sprintf("kg_race_%02d", i), "team-a", at(i))
	}
	errs := make([]error, n)
	concurrently(n, func(i int) {
		errs[i] = s.CreateKey(context.Background(), offered[i], max)
	})

	var won []store.Key
	for i, err := range errs {
		switch {
		case err == nil:
			won = append(won, offered[i])
		case !errors.Is(err, store.ErrTeamLimit):
			t.Errorf("creator %d: got %v, want nil or ErrTeamLimit", i, err)
		}
	}
	if len(won) != max {
		t.Fatalf("%d concurrent creates with maxPerTeam=%d: %d succeeded, want exactly %d", n, max, len(won), max)
	}
	// offered is in creation-time order, so won is too.
	assertKeys(t, "ListKeys after concurrent creates", won, mustList(t, s, "team-a"))
	for _, k := range won {
		assertKey(t, "GetKey after concurrent creates", k, mustGet(t, s, k.ClientID))
	}
	for i, err := range errs {
		if err != nil {
			_, gerr := s.GetKey(context.Background(), offered[i].ClientID)
			wantErr(t, "GetKey of a key refused by the limit", gerr, store.ErrNotFound)
		}
	}
}

// testAdminSeedConcurrent is several instances starting at once against one
// shared store, each trying to seed "the" admin key with an ID of its own.
func testAdminSeedConcurrent(t *testing.T, s store.Store) {
	const n = 10
	offered := make([]store.Key, n)
	for i := range offered {
		offered[i] = newKey(t, fmt.Sprintf("kg_seed_%x", randomBytes(t, 8)), "", at(i))
		offered[i].Permissions = []string{"keys:admin"}
	}
	errs := make([]error, n)
	concurrently(n, func(i int) {
		errs[i] = s.CreateKey(context.Background(), offered[i], 1)
	})
	winner := -1
	for i, err := range errs {
		switch {
		case err == nil:
			if winner >= 0 {
				t.Fatalf("starters %d and %d both seeded an admin key", winner, i)
			}
			winner = i
		case !errors.Is(err, store.ErrTeamLimit):
			t.Fatalf("starter %d: got %v, want nil or ErrTeamLimit", i, err)
		}
	}
	if winner < 0 {
		t.Fatal("no starter seeded the admin key")
	}
	assertKeys(t, "ListKeys(admin) after concurrent seeding", []store.Key{offered[winner]}, mustList(t, s, ""))
}

// --- Last used ------------------------------------------------------------

func testTouch(t *testing.T, s store.Store) {
	ctx := context.Background()
	k1 := newKey(t, "kg_t1", "team-a", at(0))
	k2 := newKey(t, "kg_t2", "", at(1))
	k3 := newKey(t, "kg_t3", "team-b", at(2))
	for _, k := range []store.Key{k1, k2, k3} {
		mustCreate(t, s, k, 0)
	}
	if got := mustGet(t, s, k1.ClientID); !got.LastUsedAt.IsZero() {
		t.Fatalf("LastUsedAt of an unused key: got %v, want zero", got.LastUsedAt)
	}
	if err := s.TouchKeys(ctx, map[string]time.Time{k1.ClientID: at(100), k2.ClientID: at(200)}); err != nil {
		t.Fatalf("TouchKeys: %v", err)
	}
	k1.LastUsedAt, k2.LastUsedAt = at(100), at(200)
	// Everything but LastUsedAt must be as it was; k3 was not touched at all.
	for _, k := range []store.Key{k1, k2, k3} {
		assertKey(t, "GetKey after TouchKeys", k, mustGet(t, s, k.ClientID))
	}
	if err := s.TouchKeys(ctx, map[string]time.Time{}); err != nil {
		t.Fatalf("TouchKeys(empty map): %v", err)
	}
	if err := s.TouchKeys(ctx, nil); err != nil {
		t.Fatalf("TouchKeys(nil): %v", err)
	}
}

func testTouchNeverBackwards(t *testing.T, s store.Store) {
	ctx := context.Background()
	k := newKey(t, "kg_tb", "team-a", at(0))
	mustCreate(t, s, k, 0)
	touch := func(when time.Time) {
		t.Helper()
		if err := s.TouchKeys(ctx, map[string]time.Time{k.ClientID: when}); err != nil {
			t.Fatalf("TouchKeys(%v): %v", when, err)
		}
	}
	touch(at(100))
	touch(at(50)) // a slower instance flushing late
	k.LastUsedAt = at(100)
	assertKey(t, "GetKey after an older touch", k, mustGet(t, s, k.ClientID))
	touch(at(150))
	k.LastUsedAt = at(150)
	assertKey(t, "GetKey after a newer touch", k, mustGet(t, s, k.ClientID))
}

func testTouchUnknown(t *testing.T, s store.Store) {
	ctx := context.Background()
	k := newKey(t, "kg_tu", "team-a", at(0))
	mustCreate(t, s, k, 0)
	err := s.TouchKeys(ctx, map[string]time.Time{
		"kg_deleted_a": at(10),
		k.ClientID:     at(20),
		"kg_deleted_z": at(30),
	})
	if err != nil {
		t.Fatalf("TouchKeys with unknown IDs: %v, want nil", err)
	}
	k.LastUsedAt = at(20)
	assertKey(t, "known key after TouchKeys with unknown IDs", k, mustGet(t, s, k.ClientID))
	for _, id := range []string{"kg_deleted_a", "kg_deleted_z"} {
		_, err := s.GetKey(ctx, id)
		wantErr(t, "GetKey of an unknown ID TouchKeys saw", err, store.ErrNotFound)
	}
	if ks := mustList(t, s, ""); len(ks) != 0 {
		t.Fatalf("TouchKeys created keys: %v", ids(ks))
	}
}

// --- Singletons -----------------------------------------------------------

func testSingleton(t *testing.T, s store.Store) {
	ctx := context.Background()
	first, second, other := randomBytes(t, 32), randomBytes(t, 32), randomBytes(t, 32)
	offered := bytes.Clone(first)

	got, err := s.CreateSingleton(ctx, "pepper", offered)
	if err != nil || !bytes.Equal(got, first) {
		t.Fatalf("first CreateSingleton: err %v, equal to own value %v; want nil, true", err, bytes.Equal(got, first))
	}
	// Neither the caller's buffer nor any returned slice may reach the
	// store.
	offered[0] ^= 0xff
	got[0] ^= 0xff
	for i := range 2 {
		got, err = s.CreateSingleton(ctx, "pepper", second)
		if err != nil || !bytes.Equal(got, first) {
			t.Fatalf("CreateSingleton again (%d): err %v, equal to first value %v; want nil, true", i, err, bytes.Equal(got, first))
		}
		got[1] ^= 0xff
	}
	got, err = s.CreateSingleton(ctx, "other", other)
	if err != nil || !bytes.Equal(got, other) {
		t.Fatalf("CreateSingleton under another name: err %v, equal to own value %v; want nil, true", err, bytes.Equal(got, other))
	}
	got, err = s.CreateSingleton(ctx, "pepper", second)
	if err != nil || !bytes.Equal(got, first) {
		t.Fatalf("CreateSingleton after another name: err %v, equal to first value %v; want nil, true", err, bytes.Equal(got, first))
	}
}

func testSingletonConcurrent(t *testing.T, s store.Store) {
	const n = 10
	offered := make([][]byte, n)
	for i := range offered {
		offered[i] = randomBytes(t, 32)
	}
	got := make([][]byte, n)
	errs := make([]error, n)
	concurrently(n, func(i int) {
		got[i], errs[i] = s.CreateSingleton(context.Background(), "pepper", offered[i])
	})
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("starter %d: CreateSingleton: %v", i, errs[i])
		}
		if !bytes.Equal(got[i], got[0]) {
			t.Fatalf("starters 0 and %d got different peppers", i)
		}
	}
	if !slices.ContainsFunc(offered, func(b []byte) bool { return bytes.Equal(b, got[0]) }) {
		t.Fatal("the stored pepper is none of the offered values")
	}
}

func mustSingleton(t *testing.T, s store.Store, name string) []byte {
	t.Helper()
	// CreateSingleton with a value never stored returns what is stored.
	got, err := s.CreateSingleton(context.Background(), name, []byte("storetest: probe, never stored"))
	if err != nil {
		t.Fatalf("read singleton %s: %v", name, err)
	}
	return got
}

func testSingletonSwap(t *testing.T, s store.Store) {
	ctx := context.Background()
	first, second, third, other := randomBytes(t, 32), randomBytes(t, 32), randomBytes(t, 32), randomBytes(t, 32)

	// Nothing stored: ErrNotFound, and nothing is created.
	ok, err := s.CompareAndSwapSingleton(ctx, "pepper", nil, first)
	wantErr(t, "CompareAndSwapSingleton of a missing singleton", err, store.ErrNotFound)
	if ok {
		t.Fatal("CompareAndSwapSingleton of a missing singleton reported a swap")
	}
	if got, err := s.CreateSingleton(ctx, "pepper", first); err != nil || !bytes.Equal(got, first) {
		t.Fatalf("CreateSingleton after a refused swap: %v; the swap created a value", err)
	}
	if _, err := s.CreateSingleton(ctx, "other", other); err != nil {
		t.Fatal(err)
	}

	// A stale old value: no swap, nothing changes.
	for _, stale := range [][]byte{second, nil, first[:31], append(bytes.Clone(first), 0)} {
		ok, err = s.CompareAndSwapSingleton(ctx, "pepper", stale, third)
		if err != nil || ok {
			t.Fatalf("CompareAndSwapSingleton from a stale value (%d bytes): %v, %v; want false, nil", len(stale), ok, err)
		}
		if got := mustSingleton(t, s, "pepper"); !bytes.Equal(got, first) {
			t.Fatal("a swap from a stale value changed the singleton")
		}
	}
	// An empty value: ErrInvalid, nothing changes.
	ok, err = s.CompareAndSwapSingleton(ctx, "pepper", first, nil)
	wantErr(t, "CompareAndSwapSingleton to an empty value", err, store.ErrInvalid)
	if ok || !bytes.Equal(mustSingleton(t, s, "pepper"), first) {
		t.Fatal("a swap to an empty value changed the singleton")
	}

	// The current value: swapped; the caller's buffers are not the store's.
	oldBuf, newBuf := bytes.Clone(first), bytes.Clone(second)
	ok, err = s.CompareAndSwapSingleton(ctx, "pepper", oldBuf, newBuf)
	if err != nil || !ok {
		t.Fatalf("CompareAndSwapSingleton from the stored value: %v, %v; want true, nil", ok, err)
	}
	newBuf[0] ^= 0xff
	if got := mustSingleton(t, s, "pepper"); !bytes.Equal(got, second) {
		t.Fatal("after a swap the singleton is not the new value (or the caller's buffer reached the store)")
	}
	// The old value no longer swaps.
	if ok, err := s.CompareAndSwapSingleton(ctx, "pepper", first, third); err != nil || ok {
		t.Fatalf("swap from the replaced value: %v, %v; want false, nil", ok, err)
	}
	if got := mustSingleton(t, s, "other"); !bytes.Equal(got, other) {
		t.Fatal("a swap of one singleton changed another")
	}
	// Swapping to the same value is allowed (a re-run).
	if ok, err := s.CompareAndSwapSingleton(ctx, "pepper", second, second); err != nil || !ok {
		t.Fatalf("swap to the same value: %v, %v; want true, nil", ok, err)
	}
}

func testSingletonSwapConcurrent(t *testing.T, s store.Store) {
	ctx := context.Background()
	const n = 10
	start := randomBytes(t, 32)
	if _, err := s.CreateSingleton(ctx, "pepper", start); err != nil {
		t.Fatal(err)
	}
	offered := make([][]byte, n)
	for i := range offered {
		offered[i] = randomBytes(t, 32)
	}
	swapped := make([]bool, n)
	errs := make([]error, n)
	concurrently(n, func(i int) {
		swapped[i], errs[i] = s.CompareAndSwapSingleton(ctx, "pepper", start, offered[i])
	})
	winner := -1
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("swapper %d: %v", i, errs[i])
		}
		if swapped[i] {
			if winner >= 0 {
				t.Fatalf("swappers %d and %d both swapped from the same value", winner, i)
			}
			winner = i
		}
	}
	if winner < 0 {
		t.Fatal("no concurrent swap won")
	}
	if got := mustSingleton(t, s, "pepper"); !bytes.Equal(got, offered[winner]) {
		t.Fatalf("stored value is not the winner's (swapper %d)", winner)
	}
}

// --- Signing keys ---------------------------------------------------------

func newSigningKey(t testing.TB, kid string, created time.Time) store.SigningKey {
	return store.SigningKey{KID: kid, Alg: "ES256", PrivateKeySealed: randomBytes(t, 64), CreatedAt: created}
}

func signingDiff(want, got store.SigningKeys) []string {
	var d []string
	one := func(what string, w, g store.SigningKey) {
		if w.KID != g.KID || w.Alg != g.Alg {
			d = append(d, fmt.Sprintf("%s: got kid %q alg %q, want kid %q alg %q", what, g.KID, g.Alg, w.KID, w.Alg))
		}
		if !bytes.Equal(w.PrivateKeySealed, g.PrivateKeySealed) {
			d = append(d, what+": PrivateKeySealed differs")
		}
		if s := timeDiff(w.CreatedAt, g.CreatedAt); s != "" {
			d = append(d, what+": CreatedAt: "+s)
		}
		if s := timeDiff(w.SignsFrom, g.SignsFrom); s != "" {
			d = append(d, what+": SignsFrom: "+s)
		}
	}
	if want.MasterKeyID != got.MasterKeyID {
		d = append(d, fmt.Sprintf("MasterKeyID: got %q, want %q", got.MasterKeyID, want.MasterKeyID))
	}
	switch {
	case (want.Active == nil) != (got.Active == nil):
		d = append(d, fmt.Sprintf("Active: got %v, want %v", got.Active != nil, want.Active != nil))
	case want.Active != nil:
		one("Active", *want.Active, *got.Active)
	}
	switch {
	case (want.Next == nil) != (got.Next == nil):
		d = append(d, fmt.Sprintf("Next: got %v, want %v", got.Next != nil, want.Next != nil))
	case want.Next != nil:
		one("Next", *want.Next, *got.Next)
	}
	if len(want.Retired) != len(got.Retired) {
		return append(d, fmt.Sprintf("Retired: got %d keys, want %d", len(got.Retired), len(want.Retired)))
	}
	for i := range want.Retired {
		what := fmt.Sprintf("Retired[%d]", i)
		one(what, want.Retired[i].SigningKey, got.Retired[i].SigningKey)
		if s := timeDiff(want.Retired[i].PublishUntil, got.Retired[i].PublishUntil); s != "" {
			d = append(d, what+": PublishUntil: "+s)
		}
		if s := timeDiff(want.Retired[i].RetiredAt, got.Retired[i].RetiredAt); s != "" {
			d = append(d, what+": RetiredAt: "+s)
		}
	}
	return d
}

func assertSigning(t testing.TB, what string, want, got store.SigningKeys) {
	t.Helper()
	if d := signingDiff(want, got); len(d) > 0 {
		t.Fatalf("%s: signing keys differ:\n  %s", what, joinLines(d))
	}
}

// testSigningStatesRoundTrip: a next key and the transition times (signs
// from, retired at) survive the store, and a later update that promotes the
// next key replaces them whole.
func testSigningStatesRoundTrip(t *testing.T, s store.Store) {
	ctx := context.Background()
	active := newSigningKey(t, "kid-cur", at(100))
	active.SignsFrom = at(150)
	next := newSigningKey(t, "kid-next", at(200))
	next.SignsFrom = at(3800)
	retired := store.RetiredSigningKey{SigningKey: newSigningKey(t, "kid-old", at(10)), PublishUntil: at(1200), RetiredAt: at(150)}
	retired.SignsFrom = at(20)
	want := store.SigningKeys{Active: &active, Next: &next, Retired: []store.RetiredSigningKey{retired}}
	got, err := s.UpdateSigningKeys(ctx, func(store.SigningKeys) (store.SigningKeys, error) { return want, nil })
	if err != nil {
		t.Fatalf("UpdateSigningKeys: %v", err)
	}
	assertSigning(t, "UpdateSigningKeys result with a next key", want, got)
	got, err = s.SigningKeys(ctx)
	if err != nil {
		t.Fatalf("SigningKeys: %v", err)
	}
	assertSigning(t, "SigningKeys with a next key", want, got)

	promoted := store.SigningKeys{Active: &next, Retired: []store.RetiredSigningKey{{SigningKey: active, PublishUntil: at(5000), RetiredAt: at(3800)}, retired}}
	if _, err := s.UpdateSigningKeys(ctx, func(cur store.SigningKeys) (store.SigningKeys, error) {
		assertSigning(t, "update func's argument", want, cur)
		return promoted, nil
	}); err != nil {
		t.Fatalf("UpdateSigningKeys (promote): %v", err)
	}
	got, _ = s.SigningKeys(ctx)
	assertSigning(t, "SigningKeys after promoting the next key", promoted, got)
}

func testSigningEmpty(t *testing.T, s store.Store) {
	got, err := s.SigningKeys(context.Background())
	if err != nil {
		t.Fatalf("SigningKeys on empty store: %v", err)
	}
	if got.Active != nil || len(got.Retired) != 0 {
		t.Fatalf("SigningKeys on empty store: got %+v, want the zero value", got)
	}
}

func testSigningRoundTrip(t *testing.T, s store.Store) {
	ctx := context.Background()
	active := newSigningKey(t, "kid-3", at(300))
	want := store.SigningKeys{
		Active: &active,
		Retired: []store.RetiredSigningKey{
			{SigningKey: newSigningKey(t, "kid-2", at(200)), PublishUntil: at(1200)},
			{SigningKey: newSigningKey(t, "kid-1", at(100)), PublishUntil: at(1100)},
		},
		MasterKeyID: "0123456789abcdef",
	}
	var seen store.SigningKeys
	got, err := s.UpdateSigningKeys(ctx, func(cur store.SigningKeys) (store.SigningKeys, error) {
		seen = cur
		return want, nil
	})
	if err != nil {
		t.Fatalf("UpdateSigningKeys: %v", err)
	}
	assertSigning(t, "update func's argument on empty store", store.SigningKeys{}, seen)
	assertSigning(t, "UpdateSigningKeys result", want, got)
	got, err = s.SigningKeys(ctx)
	if err != nil {
		t.Fatalf("SigningKeys: %v", err)
	}
	assertSigning(t, "SigningKeys after update", want, got)

	// Rotate: the update sees exactly what is stored.
	next := newSigningKey(t, "kid-4", at(400))
	got, err = s.UpdateSigningKeys(ctx, func(cur store.SigningKeys) (store.SigningKeys, error) {
		seen = cur
		if cur.Active == nil || len(cur.Retired) == 0 {
			return cur, errBoom // reported by the seen check below
		}
		cur.Retired = append([]store.RetiredSigningKey{{SigningKey: *cur.Active, PublishUntil: at(1300)}}, cur.Retired[:1]...)
		cur.Active = &next
		return cur, nil
	})
	assertSigning(t, "update func's argument", want, seen)
	if err != nil {
		t.Fatalf("UpdateSigningKeys (rotate): %v", err)
	}
	want = store.SigningKeys{Active: &next, Retired: []store.RetiredSigningKey{
		{SigningKey: active, PublishUntil: at(1300)}, want.Retired[0],
	}, MasterKeyID: want.MasterKeyID}
	assertSigning(t, "UpdateSigningKeys result after rotation", want, got)
	got, _ = s.SigningKeys(ctx)
	assertSigning(t, "SigningKeys after rotation", want, got)
}

func testSigningFuncError(t *testing.T, s store.Store) {
	ctx := context.Background()
	active := newSigningKey(t, "kid-1", at(0))
	want := store.SigningKeys{Active: &active}
	if _, err := s.UpdateSigningKeys(ctx, func(store.SigningKeys) (store.SigningKeys, error) { return want, nil }); err != nil {
		t.Fatalf("UpdateSigningKeys: %v", err)
	}
	other := newSigningKey(t, "kid-2", at(1))
	_, err := s.UpdateSigningKeys(ctx, func(cur store.SigningKeys) (store.SigningKeys, error) {
		if cur.Active != nil {
			cur.Active.KID = "mutated"
			if len(cur.Active.PrivateKeySealed) > 0 {
				cur.Active.PrivateKeySealed[0] ^= 0xff
			}
		}
		cur.Active = &other
		return cur, errBoom
	})
	wantErr(t, "UpdateSigningKeys with failing func", err, errBoom)
	got, err := s.SigningKeys(ctx)
	if err != nil {
		t.Fatalf("SigningKeys: %v", err)
	}
	assertSigning(t, "SigningKeys after failed update", want, got)
}

// testSigningConcurrentFirstStart is several instances starting at once,
// each generating a key and installing it only if there is none yet.
func testSigningConcurrent(t *testing.T, s store.Store) {
	const n = 10
	results := make([]store.SigningKeys, n)
	errs := make([]error, n)
	kids := make([]string, n)
	concurrently(n, func(i int) {
		kids[i] = fmt.Sprintf("kid-starter-%d", i)
		candidate := store.SigningKey{KID: kids[i], Alg: "ES256", PrivateKeySealed: []byte(kids[i]), CreatedAt: at(i)}
		results[i], errs[i] = s.UpdateSigningKeys(context.Background(), func(old store.SigningKeys) (store.SigningKeys, error) {
			if old.Active != nil {
				return old, nil
			}
			old.Active = &candidate
			return old, nil
		})
	})
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("starter %d: UpdateSigningKeys: %v", i, errs[i])
		}
		if results[i].Active == nil {
			t.Fatalf("starter %d: no active key afterwards", i)
		}
		if results[i].Active.KID != results[0].Active.KID {
			t.Fatalf("starters 0 and %d disagree on the active key: %s vs %s", i, results[0].Active.KID, results[i].Active.KID)
		}
	}
	if !slices.Contains(kids, results[0].Active.KID) {
		t.Fatalf("active key %q is none of the candidates", results[0].Active.KID)
	}
	got, err := s.SigningKeys(context.Background())
	if err != nil {
		t.Fatalf("SigningKeys: %v", err)
	}
	if got.Active == nil || got.Active.KID != results[0].Active.KID || len(got.Retired) != 0 {
		t.Fatalf("stored signing keys: got %+v, want exactly the active key %s and nothing retired", got, results[0].Active.KID)
	}
	if !bytes.Equal(got.Active.PrivateKeySealed, []byte(got.Active.KID)) {
		t.Fatal("stored active key's private key is not the one its KID belongs to (half-written?)")
	}
}

func testSigningConcurrentUpdates(t *testing.T, s store.Store) {
	const n = 10
	errs := make([]error, n)
	concurrently(n, func(i int) {
		_, errs[i] = s.UpdateSigningKeys(context.Background(), func(cur store.SigningKeys) (store.SigningKeys, error) {
			cur.Retired = append(cur.Retired, store.RetiredSigningKey{
				SigningKey:   store.SigningKey{KID: fmt.Sprintf("kid-%02d", i), Alg: "ES256", PrivateKeySealed: []byte{byte(i)}, CreatedAt: at(i)},
				PublishUntil: at(100 + i),
			})
			return cur, nil
		})
	})
	for i, err := range errs {
		if err != nil {
			t.Fatalf("concurrent UpdateSigningKeys %d: %v", i, err)
		}
	}
	got, err := s.SigningKeys(context.Background())
	if err != nil {
		t.Fatalf("SigningKeys: %v", err)
	}
	kids := make([]string, 0, len(got.Retired))
	for _, r := range got.Retired {
		kids = append(kids, r.KID)
	}
	slices.Sort(kids)
	if len(slices.Compact(slices.Clone(kids))) != n || len(kids) != n {
		t.Fatalf("after %d concurrent UpdateSigningKeys adding one retired key each: got %q (lost updates)", n, kids)
	}
}

// --- Copies, context, ping ------------------------------------------------

func testReturnedCopies(t *testing.T, s store.Store) {
	ctx := context.Background()
	k := newKey(t, "kg_copy", "team-a", at(0))
	mustCreate(t, s, k, 0)

	scribble := func(k *store.Key) {
		k.Name = "scribbled"
		k.Permissions[0] = "mutated"
		k.SecretHash[0] ^= 0xff
		k.PreviousSecretHash[0] ^= 0xff
	}
	got := mustGet(t, s, k.ClientID)
	scribble(&got)
	assertKey(t, "GetKey after mutating an earlier GetKey result", k, mustGet(t, s, k.ClientID))

	ks := mustList(t, s, "team-a")
	scribble(&ks[0])
	assertKey(t, "GetKey after mutating a ListKeys result", k, mustGet(t, s, k.ClientID))

	if err := s.ForEachKey(ctx, func(k store.Key) error { scribble(&k); return nil }); err != nil {
		t.Fatalf("ForEachKey: %v", err)
	}
	assertKey(t, "GetKey after mutating ForEachKey's argument", k, mustGet(t, s, k.ClientID))

	upd, err := s.UpdateKey(ctx, k.ClientID, func(cur store.Key) (store.Key, error) { return cur, nil })
	if err != nil {
		t.Fatalf("UpdateKey: %v", err)
	}
	scribble(&upd)
	assertKey(t, "GetKey after mutating an UpdateKey result", k, mustGet(t, s, k.ClientID))

	// A caller keeping the slices it returned from an update func must not
	// be able to change the store afterwards either.
	var kept store.Key
	if _, err := s.UpdateKey(ctx, k.ClientID, func(cur store.Key) (store.Key, error) { kept = cur; return cur, nil }); err != nil {
		t.Fatalf("UpdateKey: %v", err)
	}
	scribble(&kept)
	assertKey(t, "GetKey after mutating what an update func returned", k, mustGet(t, s, k.ClientID))

	active := newSigningKey(t, "kid-1", at(0))
	want := store.SigningKeys{Active: &active, Retired: []store.RetiredSigningKey{{SigningKey: newSigningKey(t, "kid-0", at(-1)), PublishUntil: at(10)}}}
	input := store.SigningKeys{Active: &store.SigningKey{}, Retired: slices.Clone(want.Retired)}
	*input.Active = active
	input.Active.PrivateKeySealed = bytes.Clone(active.PrivateKeySealed)
	input.Retired[0].PrivateKeySealed = bytes.Clone(want.Retired[0].PrivateKeySealed)
	sk, err := s.UpdateSigningKeys(ctx, func(store.SigningKeys) (store.SigningKeys, error) { return input, nil })
	if err != nil {
		t.Fatalf("UpdateSigningKeys: %v", err)
	}
	input.Active.PrivateKeySealed[0] ^= 0xff
	input.Retired[0].PrivateKeySealed[0] ^= 0xff
	sk.Active.PrivateKeySealed[1] ^= 0xff
	sk.Active.KID = "mutated"
	sk.Retired[0].PublishUntil = at(99)
	got2, err := s.SigningKeys(ctx)
	if err != nil {
		t.Fatalf("SigningKeys: %v", err)
	}
	assertSigning(t, "SigningKeys after mutating the update's input and result", want, got2)
	got2.Active.PrivateKeySealed[0] ^= 0xff
	got3, _ := s.SigningKeys(ctx)
	assertSigning(t, "SigningKeys after mutating an earlier SigningKeys result", want, got3)
}

// testCancelledContext only demands an error, promptly: whether a backend
// notices before or during the operation is its own business.
func testCancelledContext(t *testing.T, s store.Store) {
	mustCreate(t, s, newKey(t, "kg_ctx", "team-a", at(0)), 0)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()

	ops := []struct {
		name string
		fn   func() error
	}{
		{"CreateKey", func() error { return s.CreateKey(ctx, newKey(t, "kg_ctx2", "team-a", at(1)), 0) }},
		{"GetKey", func() error { _, err := s.GetKey(ctx, "kg_ctx"); return err }},
		{"ListKeys", func() error { _, err := s.ListKeys(ctx, "team-a"); return err }},
		{"ForEachKey", func() error { return s.ForEachKey(ctx, func(store.Key) error { return nil }) }},
		{"Teams", func() error { _, err := s.Teams(ctx, store.TeamQuery{}); return err }},
		{"Teams (a page)", func() error {
			_, err := s.Teams(ctx, store.TeamQuery{Prefix: "team", After: "team-", Limit: 1})
			return err
		}},
		{"UpdateKey", func() error {
			_, err := s.UpdateKey(ctx, "kg_ctx", func(k store.Key) (store.Key, error) { return k, nil })
			return err
		}},
		{"DeleteKey", func() error { return s.DeleteKey(ctx, "team-a", "kg_ctx") }},
		{"TouchKeys", func() error { return s.TouchKeys(ctx, map[string]time.Time{"kg_ctx": at(5)}) }},
		{"CreateSingleton", func() error { _, err := s.CreateSingleton(ctx, "pepper", []byte("x")); return err }},
		{"CompareAndSwapSingleton", func() error {
			_, err := s.CompareAndSwapSingleton(ctx, "pepper", []byte("x"), []byte("y"))
			return err
		}},
		{"SigningKeys", func() error { _, err := s.SigningKeys(ctx); return err }},
		{"UpdateSigningKeys", func() error {
			_, err := s.UpdateSigningKeys(ctx, func(k store.SigningKeys) (store.SigningKeys, error) { return k, nil })
			return err
		}},
		{"Ping", func() error { return s.Ping(ctx) }},
	}
	for _, op := range ops {
		done := make(chan error, 1)
		go func() { done <- op.fn() }()
		select {
		case err := <-done:
			if err == nil {
				t.Errorf("%s with a cancelled context: got nil error", op.name)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("%s with a cancelled context did not return within 5s", op.name)
		}
	}
}

func testPing(t *testing.T, s store.Store) {
	if err := s.Ping(context.Background()); err != nil {
		t.Fatalf("Ping on a healthy store: %v", err)
	}
}

// testStatusIndexConcurrent: 50 concurrent callers get 50 distinct indices,
// all ≥ 1, and Allocated covers every one of them.
func testStatusIndexConcurrent(t *testing.T, s store.Store) {
	ctx := context.Background()
	const n = 50
	got := make([]int64, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			got[i], errs[i] = s.NextStatusIndex(ctx)
		}(i)
	}
	wg.Wait()
	seen := map[int64]bool{}
	var highest int64
	for i := range got {
		if errs[i] != nil {
			t.Fatalf("NextStatusIndex: %v", errs[i])
		}
		if got[i] < 1 {
			t.Fatalf("NextStatusIndex returned %d, want ≥ 1", got[i])
		}
		if seen[got[i]] {
			t.Fatalf("NextStatusIndex returned %d twice", got[i])
		}
		seen[got[i]] = true
		highest = max(highest, got[i])
	}
	l, err := s.StatusList(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if l.Allocated < highest {
		t.Fatalf("StatusList.Allocated = %d, want ≥ %d", l.Allocated, highest)
	}
	next, err := s.NextStatusIndex(ctx)
	if err != nil || next <= highest {
		t.Fatalf("NextStatusIndex after %d: got %d, %v; want a larger, unused index", highest, next, err)
	}
}

// testStatusRevoke: revoking sets exactly that entry to INVALID, whole
// (both bits), in the draft's 2-bit layout, idempotently, far indices
// included.
func testStatusRevoke(t *testing.T, s store.Store) {
	ctx := context.Background()
	l, err := s.StatusList(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range l.Statuses {
		if b != 0 {
			t.Fatalf("fresh store: statuses %x, want all zero", l.Statuses)
		}
	}
	revoked := []int64{0, 3, 9, 1_000_003}
	for _, idx := range append(revoked, 3) { // 3 twice: idempotent
		if err := s.RevokeStatus(ctx, idx); err != nil {
			t.Fatalf("RevokeStatus(%d): %v", idx, err)
		}
	}
	l, err = s.StatusList(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := map[int64]store.Status{}
	for _, idx := range revoked {
		want[idx] = store.StatusInvalid
	}
	for _, idx := range []int64{0, 1, 2, 3, 4, 7, 8, 9, 10, 1_000_002, 1_000_003, 1_000_004} {
		if got := l.Entry(idx); got != want[idx] {
			t.Errorf("index %d: status %d, want %d", idx, got, want[idx])
		}
	}
	// The draft's layout: index 0 is bits 0–1 of byte 0, index 3 bits 6–7
	// of byte 0, index 9 bits 2–3 of byte 2.
	if len(l.Statuses) < 3 || l.Statuses[0] != 0b0100_0001 || l.Statuses[1] != 0 || l.Statuses[2] != 0b0000_0100 {
		t.Errorf("first bytes % 08b, want 01000001 00000000 00000100", l.Statuses[:min(3, len(l.Statuses))])
	}
	ones := 0
	for _, b := range l.Statuses {
		for ; b != 0; b &= b - 1 {
			ones++
		}
	}
	if ones != len(revoked) {
		t.Errorf("%d bits set, want %d (one per revoked entry)", ones, len(revoked))
	}
	if err := s.RevokeStatus(ctx, -1); err == nil {
		t.Error("RevokeStatus(-1): no error")
	}
}

// testStatusSuspendResume: SetStatus writes SUSPENDED and VALID whole,
// touching no other entry.
func testStatusSuspendResume(t *testing.T, s store.Store) {
	ctx := context.Background()
	for _, idx := range []int64{1, 2, 5, 1_000_001} {
		if err := s.SetStatus(ctx, idx, store.StatusSuspended); err != nil {
			t.Fatalf("SetStatus(%d, SUSPENDED): %v", idx, err)
		}
	}
	if err := s.SetStatus(ctx, 2, store.StatusValid); err != nil {
		t.Fatal(err)
	}
	if err := s.SetStatus(ctx, 5, store.StatusSuspended); err != nil { // again: idempotent
		t.Fatal(err)
	}
	l := mustStatusList(t, s)
	want := map[int64]store.Status{1: store.StatusSuspended, 5: store.StatusSuspended, 1_000_001: store.StatusSuspended}
	for _, idx := range []int64{0, 1, 2, 3, 4, 5, 6, 1_000_000, 1_000_001, 1_000_002} {
		if got := l.Entry(idx); got != want[idx] {
			t.Errorf("index %d: status %d, want %d", idx, got, want[idx])
		}
	}
	// Entry 1 is bits 2–3 of byte 0, entry 5 bits 2–3 of byte 1: 0b10 each.
	if l.Statuses[0] != 0b0000_1000 || l.Statuses[1] != 0b0000_1000 {
		t.Errorf("first bytes %08b %08b, want 00001000 00001000", l.Statuses[0], l.Statuses[1])
	}
}

// testStatusInvalidFinal: INVALID is terminal — neither a suspension nor a
// resume changes it — and a revocation overwrites SUSPENDED whole.
func testStatusInvalidFinal(t *testing.T, s store.Store) {
	ctx := context.Background()
	if err := s.SetStatus(ctx, 7, store.StatusSuspended); err != nil {
		t.Fatal(err)
	}
	if err := s.RevokeStatus(ctx, 7); err != nil {
		t.Fatal(err)
	}
	if err := s.RevokeStatus(ctx, 9); err != nil {
		t.Fatal(err)
	}
	for _, st := range []store.Status{store.StatusSuspended, store.StatusValid} {
		for _, idx := range []int64{7, 9} {
			if err := s.SetStatus(ctx, idx, st); err != nil {
				t.Fatalf("SetStatus(%d, %d) of an INVALID entry: %v, want nil (left as it is)", idx, st, err)
			}
		}
	}
	l := mustStatusList(t, s)
	for _, idx := range []int64{7, 9} {
		if got := l.Entry(idx); got != store.StatusInvalid {
			t.Errorf("index %d: status %d, want INVALID for good", idx, got)
		}
	}
	if l.Entry(8) != store.StatusValid {
		t.Errorf("index 8 between them: %d", l.Entry(8))
	}
}

// testStatusSetRefused: any other status (3 included) and indices outside
// 1..MaxStatusIndex are ErrInvalid, and nothing changes.
func testStatusSetRefused(t *testing.T, s store.Store) {
	ctx := context.Background()
	if err := s.SetStatus(ctx, 4, store.StatusSuspended); err != nil {
		t.Fatal(err)
	}
	before := mustStatusList(t, s)
	for _, c := range []struct {
		idx int64
		st  store.Status
	}{{4, 3}, {4, store.StatusInvalid}, {4, 4}, {4, 255}, {0, store.StatusSuspended}, {-1, store.StatusValid}, {store.MaxStatusIndex + 1, store.StatusSuspended}} {
		if err := s.SetStatus(ctx, c.idx, c.st); !errors.Is(err, store.ErrInvalid) {
			t.Errorf("SetStatus(%d, %d): %v, want ErrInvalid", c.idx, c.st, err)
		}
	}
	after := mustStatusList(t, s)
	if !bytes.Equal(bytes.TrimRight(before.Statuses, "\x00"), bytes.TrimRight(after.Statuses, "\x00")) || after.Entry(4) != store.StatusSuspended {
		t.Errorf("refused calls changed the list: %x → %x", before.Statuses, after.Statuses)
	}
}

// testStatusConcurrent: suspensions, resumes and a revocation racing on
// one index always end INVALID (the revocation is final whenever it lands).
func testStatusConcurrent(t *testing.T, s store.Store) {
	ctx := context.Background()
	for round := range 5 {
		idx := int64(100 + round)
		var wg sync.WaitGroup
		for i := range 16 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				var err error
				switch {
				case i == 8:
					err = s.RevokeStatus(ctx, idx)
				case i%2 == 0:
					err = s.SetStatus(ctx, idx, store.StatusSuspended)
				default:
					err = s.SetStatus(ctx, idx, store.StatusValid)
				}
				if err != nil {
					t.Error(err)
				}
			}()
		}
		wg.Wait()
		if got := mustStatusList(t, s).Entry(idx); got != store.StatusInvalid {
			t.Fatalf("round %d: index %d ends %d, want INVALID", round, idx, got)
		}
	}
}

func mustStatusList(t *testing.T, s store.Store) store.StatusList {
	t.Helper()
	l, err := s.StatusList(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// StatusLayout is the draft's example of a 2-bit list
// (draft-ietf-oauth-status-list, "Status List" section, bits 2): the
// statuses 1, 2, 0, 3, 0, 1, 0, 1, 1, 2, 3, 3 at indices 0 to 11 are the
// bytes 0xC9 0x44 0xF9. keygate never writes 3, so poke writes each entry
// straight into the backend's own storage; StatusList must read them back
// as those bytes. Each backend's test calls it with its own poke.
func StatusLayout(t *testing.T, s store.Store, poke func(idx int64, v uint8) error) {
	t.Helper()
	for i, v := range []uint8{1, 2, 0, 3, 0, 1, 0, 1, 1, 2, 3, 3} {
		if err := poke(int64(i), v); err != nil {
			t.Fatalf("poke(%d, %d): %v", i, v, err)
		}
	}
	l := mustStatusList(t, s)
	if got := bytes.TrimRight(l.Statuses, "\x00"); !bytes.Equal(got, []byte{0xC9, 0x44, 0xF9}) {
		t.Fatalf("statuses % X, want C9 44 F9 (the draft's example)", l.Statuses)
	}
	for i, want := range []store.Status{1, 2, 0, 3, 0, 1, 0, 1, 1, 2, 3, 3} {
		if got := l.Entry(int64(i)); got != want {
			t.Errorf("Entry(%d) = %d, want %d", i, got, want)
		}
	}
}

// StatusBitmapKept holds a backend to its promise to the release before
// 2-bit entries: RevokeStatus still sets the 1-bit bitmap that release
// reads, and an index revoked only there (written by that release) reads
// INVALID and stays so. bit reads the bitmap's bit idx and setBit sets it,
// each straight in the backend's storage.
func StatusBitmapKept(t *testing.T, s store.Store, bit func(idx int64) (bool, error), setBit func(idx int64) error) {
	t.Helper()
	ctx := context.Background()
	if err := s.RevokeStatus(ctx, 10); err != nil {
		t.Fatal(err)
	}
	if set, err := bit(10); err != nil || !set {
		t.Fatalf("bitmap bit 10 after RevokeStatus(10): %v, %v", set, err)
	}
	if err := setBit(21); err != nil { // the old way only
		t.Fatal(err)
	}
	if err := s.SetStatus(ctx, 21, store.StatusSuspended); err != nil {
		t.Fatal(err)
	}
	l := mustStatusList(t, s)
	for idx, want := range map[int64]store.Status{10: store.StatusInvalid, 21: store.StatusInvalid, 20: store.StatusValid, 22: store.StatusValid} {
		if got := l.Entry(idx); got != want {
			t.Errorf("index %d: %d, want %d", idx, got, want)
		}
	}
}

// testStatusIndexOnKey: a key's status index is stored, returned, kept by
// updates, and listed.
func testStatusIndexOnKey(t *testing.T, s store.Store) {
	ctx := context.Background()
	k := newKey(t, "kg_status", "team-a", at(0))
	k.StatusIndex = 424242
	mustCreate(t, s, k, 0)
	if got := mustGet(t, s, k.ClientID).StatusIndex; got != 424242 {
		t.Fatalf("StatusIndex after create: %d, want 424242", got)
	}
	_, err := s.UpdateKey(ctx, k.ClientID, func(c store.Key) (store.Key, error) {
		c.Name = "renamed"
		return c, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := mustGet(t, s, k.ClientID).StatusIndex; got != 424242 {
		t.Fatalf("StatusIndex after an update of another field: %d, want 424242", got)
	}
	_, err = s.UpdateKey(ctx, k.ClientID, func(c store.Key) (store.Key, error) {
		c.StatusIndex = 7
		return c, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := mustList(t, s, "team-a")[0].StatusIndex; got != 7 {
		t.Fatalf("StatusIndex in list after update: %d, want 7", got)
	}
}

// testDenyPrune: PruneDeniedTokens removes exactly the entries expired at
// its time, oldest first, and keeps a jti denied again with a later expiry.
func testDenyPrune(t *testing.T, s store.Store) {
	ctx := context.Background()
	now := time.Now().Truncate(time.Millisecond)
	for jti, d := range map[string]time.Duration{"p-1h": time.Hour, "p-2h": 2 * time.Hour, "p-3h": 3 * time.Hour, "p-again": time.Hour} {
		if err := s.DenyToken(ctx, jti, now.Add(d)); err != nil {
			t.Fatal(err)
		}
	}
	// Denied again, with a later expiry: the first expiry no longer applies.
	if err := s.DenyToken(ctx, "p-again", now.Add(4*time.Hour)); err != nil {
		t.Fatal(err)
	}
	check := func(when string, want map[string]bool) {
		t.Helper()
		for jti, w := range want {
			got, err := s.TokenDenied(ctx, jti)
			if err != nil {
				t.Fatal(err)
			}
			if got != w {
				t.Errorf("%s: TokenDenied(%s) = %v, want %v", when, jti, got, w)
			}
		}
	}
	// The backend's own expiry (Redis TTLs) may make pruning a no-op; what
	// counts is what is denied afterwards, and that nothing live goes.
	n, err := s.PruneDeniedTokens(ctx, now.Add(90*time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if n != 0 && n != 1 {
		t.Errorf("prune at +90m removed %d entries, want 1 (p-1h) or 0 for a backend that expires entries itself", n)
	}
	live := map[string]bool{"p-2h": true, "p-3h": true, "p-again": true}
	if n == 1 {
		live["p-1h"] = false
	}
	check("after the prune at +90m", live)
	if n, err := s.PruneDeniedTokens(ctx, now.Add(90*time.Minute)); err != nil || n != 0 {
		t.Errorf("a second prune at the same time removed %d (%v), want 0", n, err)
	}
	if _, err := s.PruneDeniedTokens(ctx, now.Add(150*time.Minute)); err != nil {
		t.Fatal(err)
	}
	check("after the prune at +150m", map[string]bool{"p-3h": true, "p-again": true})
}

// testPreviousStatusIndexOnKey: the previous secret generation's status
// index (a rotation's) survives create, updates of other fields, a change
// and a reset to 0, on every read path.
func testPreviousStatusIndexOnKey(t *testing.T, s store.Store) {
	ctx := context.Background()
	k := newKey(t, "kg_prevstatus", "team-a", at(0))
	k.StatusIndex, k.PreviousStatusIndex = 500, 499
	mustCreate(t, s, k, 0)
	if got := mustGet(t, s, k.ClientID); got.StatusIndex != 500 || got.PreviousStatusIndex != 499 {
		t.Fatalf("indices after create: %d/%d, want 500/499", got.StatusIndex, got.PreviousStatusIndex)
	}
	if _, err := s.UpdateKey(ctx, k.ClientID, func(c store.Key) (store.Key, error) {
		c.Name = "renamed"
		return c, nil
	}); err != nil {
		t.Fatal(err)
	}
	if got := mustGet(t, s, k.ClientID).PreviousStatusIndex; got != 499 {
		t.Fatalf("PreviousStatusIndex after an update of another field: %d, want 499", got)
	}
	got, err := s.UpdateKey(ctx, k.ClientID, func(c store.Key) (store.Key, error) {
		c.PreviousStatusIndex, c.StatusIndex = c.StatusIndex, 501
		return c, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if got.StatusIndex != 501 || got.PreviousStatusIndex != 500 {
		t.Fatalf("UpdateKey result: %d/%d, want 501/500", got.StatusIndex, got.PreviousStatusIndex)
	}
	if l := mustList(t, s, "team-a"); len(l) != 1 || l[0].PreviousStatusIndex != 500 {
		t.Fatalf("ListKeys after update: %+v, want one key with previous index 500", l)
	}
	seen := int64(-1)
	if err := s.ForEachKey(ctx, func(c store.Key) error {
		if c.ClientID == k.ClientID {
			seen = c.PreviousStatusIndex
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if seen != 500 {
		t.Fatalf("ForEachKey saw previous index %d, want 500", seen)
	}
	if _, err := s.UpdateKey(ctx, k.ClientID, func(c store.Key) (store.Key, error) {
		c.PreviousStatusIndex = 0
		return c, nil
	}); err != nil {
		t.Fatal(err)
	}
	if got := mustGet(t, s, k.ClientID); got.PreviousStatusIndex != 0 || got.StatusIndex != 501 {
		t.Fatalf("indices after clearing the previous one: %d/%d, want 501/0", got.StatusIndex, got.PreviousStatusIndex)
	}
}

// testTokenQuotaOnKey: a key's own issuance quota survives create, updates
// of other fields, a change and a clearing back to none (the zero value),
// on every read path; a key created without one reads back without one.
func testTokenQuotaOnKey(t *testing.T, s store.Store) {
	ctx := context.Background()
	none := newKey(t, "kg_noquota", "team-a", at(0))
	none.TokenQuota = store.TokenQuota{}
	mustCreate(t, s, none, 0)
	if got := mustGet(t, s, none.ClientID).TokenQuota; !got.IsZero() {
		t.Fatalf("a key created without a quota reads back with %+v", got)
	}
	k := newKey(t, "kg_quota", "team-a", at(1))
	k.TokenQuota = store.TokenQuota{Limit: 1000, Per: "hour", Mode: "enforce"}
	mustCreate(t, s, k, 0)
	if got := mustGet(t, s, k.ClientID).TokenQuota; got != k.TokenQuota {
		t.Fatalf("quota after create: %+v, want %+v", got, k.TokenQuota)
	}
	if _, err := s.UpdateKey(ctx, k.ClientID, func(c store.Key) (store.Key, error) {
		c.Name = "renamed"
		return c, nil
	}); err != nil {
		t.Fatal(err)
	}
	if got := mustGet(t, s, k.ClientID).TokenQuota; got != k.TokenQuota {
		t.Fatalf("quota after an update of another field: %+v, want %+v", got, k.TokenQuota)
	}
	changed := store.TokenQuota{Limit: 5, Per: "day", Mode: "log"}
	got, err := s.UpdateKey(ctx, k.ClientID, func(c store.Key) (store.Key, error) {
		c.TokenQuota = changed
		return c, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if got.TokenQuota != changed {
		t.Fatalf("UpdateKey result: %+v, want %+v", got.TokenQuota, changed)
	}
	var listed store.TokenQuota
	for _, c := range mustList(t, s, "team-a") {
		if c.ClientID == k.ClientID {
			listed = c.TokenQuota
		}
	}
	if listed != changed {
		t.Fatalf("ListKeys after update: %+v, want %+v", listed, changed)
	}
	var walked store.TokenQuota
	if err := s.ForEachKey(ctx, func(c store.Key) error {
		if c.ClientID == k.ClientID {
			walked = c.TokenQuota
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if walked != changed {
		t.Fatalf("ForEachKey: %+v, want %+v", walked, changed)
	}
	if _, err := s.UpdateKey(ctx, k.ClientID, func(c store.Key) (store.Key, error) {
		c.TokenQuota = store.TokenQuota{}
		return c, nil
	}); err != nil {
		t.Fatal(err)
	}
	if got := mustGet(t, s, k.ClientID).TokenQuota; !got.IsZero() {
		t.Fatalf("quota after clearing: %+v, want none", got)
	}
}

// testDenyList: a denied jti is reported until its expiry, then not; other
// jtis never are.
func testDenyList(t *testing.T, s store.Store) {
	ctx := context.Background()
	now := time.Now()
	if err := s.DenyToken(ctx, "jti-live", now.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if err := s.DenyToken(ctx, "jti-short", now.Add(1500*time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	if err := s.DenyToken(ctx, "jti-past", now.Add(-time.Minute)); err != nil {
		t.Fatal(err)
	}
	check := func(jti string, want bool) {
		t.Helper()
		got, err := s.TokenDenied(ctx, jti)
		if err != nil {
			t.Fatalf("TokenDenied(%s): %v", jti, err)
		}
		if got != want {
			t.Fatalf("TokenDenied(%s) = %v, want %v", jti, got, want)
		}
	}
	check("jti-live", true)
	check("jti-short", true)
	check("jti-past", false)
	check("jti-other", false)
	time.Sleep(time.Until(now.Add(2100 * time.Millisecond)))
	check("jti-short", false)
	check("jti-live", true)
	if err := s.DenyToken(ctx, "", now.Add(time.Hour)); err == nil {
		t.Error("DenyToken with an empty jti: no error")
	}
}
