package redis_test

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/keygate/keygate/credential"
	"github.com/keygate/keygate/internal/redistest"
	"github.com/keygate/keygate/store"
	"github.com/keygate/keygate/store/redis"
)

func registryKey(t *testing.T, team string, n int) store.Key {
	t.Helper()
	id, err := credential.NewClientID(team)
	if err != nil {
		t.Fatal(err)
	}
	return store.Key{ClientID: id, TeamID: team, Name: fmt.Sprint("k", n), Permissions: []string{"accounting_api"},
		CreatedAt: time.Now().UTC(), SecretHash: []byte(fmt.Sprintf("hash-%s-%d-%s", team, n, id))}
}

// registryStore is a store under a fresh prefix of c.
func registryStore(t *testing.T, c goredis.UniversalClient) (*redis.Store, string) {
	t.Helper()
	prefix := redistest.Prefix(t, c, "")
	s, err := redis.New(c, prefix, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	return s, prefix
}

var registryQueries = []store.TeamQuery{
	{}, {Limit: 3}, {Limit: 3, After: "beta-02"}, {Prefix: "beta-"}, {Prefix: "beta-", Limit: 2},
	{Prefix: "beta-", After: "beta-03", Limit: 2}, {Prefix: "gamma"}, {After: "zzz"}, {Prefix: "alpha-0", After: "alpha-"},
}

// TestTeamRegistryMatchesScan: the registry gives every query the answer
// the keyspace walk gives, and create, delete and the bulk path keep it in
// step.
func TestTeamRegistryMatchesScan(t *testing.T) {
	c := redistest.Require(t)
	testTeamRegistryMatchesScan(t, c)
}

func testTeamRegistryMatchesScan(t *testing.T, c goredis.UniversalClient) {
	ctx := context.Background()
	s, prefix := registryStore(t, c)
	var emptied []store.Key
	for i := range 5 {
		for _, family := range []string{"alpha", "beta"} {
			team := fmt.Sprintf("%s-%02d", family, i)
			for j := range 2 {
				k := registryKey(t, team, j)
				if err := s.CreateKey(ctx, k, 5); err != nil {
					t.Fatal(err)
				}
				if i == 3 {
					emptied = append(emptied, k)
				}
			}
		}
	}
	var bulk []store.Key
	for i := range 4 {
		bulk = append(bulk, registryKey(t, fmt.Sprintf("gamma-%02d", i), 0))
	}
	if err := s.CreateKeys(ctx, bulk); err != nil {
		t.Fatal(err)
	}
	for _, k := range emptied { // alpha-03 and beta-03 lose every key
		if err := s.DeleteKey(ctx, k.TeamID, k.ClientID); err != nil {
			t.Fatal(err)
		}
	}
	// The keyspace walk's answers (no walk has built the registry yet).
	scanned := make([][]store.TeamCount, len(registryQueries))
	for i, q := range registryQueries {
		got, err := s.Teams(ctx, q)
		if err != nil {
			t.Fatal(err)
		}
		scanned[i] = got
	}
	if len(scanned[0]) != 12 {
		t.Fatalf("walk lists %d teams, want 12: %v", len(scanned[0]), scanned[0])
	}
	// Create and delete kept the registry in step already: the walk adds
	// and removes nothing.
	r, err := s.RepairTeams(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !r.Walked || !r.RegistryComplete || r.Teams != 12 || r.Added != 0 || r.Removed != 0 {
		t.Fatalf("first repair walk: %+v, want 12 teams, nothing to add or remove", r)
	}
	listed, err := c.ZRange(ctx, prefix+"{kg}:teams", 0, -1).Result()
	if err != nil || len(listed) != 12 {
		t.Fatalf("registry holds %v (%v), want the 12 teams with keys", listed, err)
	}
	for i, q := range registryQueries {
		got, err := s.Teams(ctx, q)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, scanned[i]) {
			t.Errorf("Teams(%+v) from the registry = %v, the walk said %v", q, got, scanned[i])
		}
	}
}

// TestTeamRegistryRepair: a registry that drifted (a team with keys
// missing, as a crash between the key's write and the registry's leaves
// it; a team without keys listed) lists what it holds — skipping the empty
// team — until a repair walk makes it right; the walk is one instance's at
// a time.
func TestTeamRegistryRepair(t *testing.T) {
	c := redistest.Require(t)
	testTeamRegistryRepair(t, c)
}

func testTeamRegistryRepair(t *testing.T, c goredis.UniversalClient) {
	ctx := context.Background()
	s, prefix := registryStore(t, c)
	for _, team := range []string{"acme", "globex", "initech"} {
		if err := s.CreateKey(ctx, registryKey(t, team, 0), 5); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.RepairTeams(ctx); err != nil {
		t.Fatal(err)
	}
	// Drift, by hand.
	if err := c.ZRem(ctx, prefix+"{kg}:teams", "globex").Err(); err != nil {
		t.Fatal(err)
	}
	if err := c.ZAdd(ctx, prefix+"{kg}:teams", goredis.Z{Member: "ghost"}).Err(); err != nil {
		t.Fatal(err)
	}
	teamsOf := func() []string {
		t.Helper()
		got, err := s.Teams(ctx, store.TeamQuery{})
		if err != nil {
			t.Fatal(err)
		}
		var ids []string
		for _, tc := range got {
			ids = append(ids, tc.TeamID)
		}
		return ids
	}
	if got := teamsOf(); !reflect.DeepEqual(got, []string{"acme", "initech"}) {
		t.Fatalf("drifted registry lists %v, want acme and initech (globex missing, the empty ghost skipped)", got)
	}
	// Another instance's walk holds the lease: this one does nothing.
	if err := c.Set(ctx, prefix+"{kg}:teams:lease", "1", time.Minute).Err(); err != nil {
		t.Fatal(err)
	}
	if r, err := s.RepairTeams(ctx); err != nil || r.Walked {
		t.Fatalf("repair while another walk holds the lease: %+v, %v; want not walked", r, err)
	}
	if err := c.Del(ctx, prefix+"{kg}:teams:lease").Err(); err != nil {
		t.Fatal(err)
	}
	r, err := s.RepairTeams(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !r.Walked || r.Added != 1 || r.Removed != 1 || r.Teams != 3 {
		t.Fatalf("repair walk: %+v, want globex added and ghost removed", r)
	}
	if got := teamsOf(); !reflect.DeepEqual(got, []string{"acme", "globex", "initech"}) {
		t.Fatalf("after the repair: %v", got)
	}
	if n, err := c.ZScore(ctx, prefix+"{kg}:teams", "ghost").Result(); err != goredis.Nil {
		t.Fatalf("ghost still listed (%v, %v)", n, err)
	}
	if n, err := c.Exists(ctx, prefix+"{kg}:teams:lease").Result(); err != nil || n != 0 {
		t.Fatalf("the walk left its lease behind (%d, %v)", n, err)
	}
}

// TestTeamRegisteredBeforeKey: a create writes the team into the registry
// before the key into its index, so a key is never stored while its team is
// missing from the registry. Shown with a registry that cannot be written
// (a string where the sorted set goes): CreateKey and CreateKeys fail and
// write no key; with the registry back, both succeed and Teams lists the
// teams once the registry is complete.
func TestTeamRegisteredBeforeKey(t *testing.T) {
	c := redistest.Require(t)
	ctx := context.Background()
	s, prefix := registryStore(t, c)
	if err := c.Set(ctx, prefix+"{kg}:teams", "not a sorted set", 0).Err(); err != nil {
		t.Fatal(err)
	}
	one, bulk := registryKey(t, "acme", 0), []store.Key{registryKey(t, "globex", 0), registryKey(t, "initech", 0)}
	if err := s.CreateKey(ctx, one, 5); err == nil {
		t.Fatal("CreateKey with the registry unwritable succeeded")
	}
	if err := s.CreateKeys(ctx, bulk); err == nil {
		t.Fatal("CreateKeys with the registry unwritable succeeded")
	}
	for _, k := range append([]store.Key{one}, bulk...) {
		if _, err := s.GetKey(ctx, k.ClientID); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("key %s after a refused create: %v, want not found", k.ClientID, err)
		}
	}
	if err := c.Del(ctx, prefix+"{kg}:teams").Err(); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateKey(ctx, one, 5); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateKeys(ctx, bulk); err != nil {
		t.Fatal(err)
	}
	listed, err := c.ZRange(ctx, prefix+"{kg}:teams", 0, -1).Result()
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"acme", "globex", "initech"}; !reflect.DeepEqual(listed, want) {
		t.Fatalf("registry %v, want %v", listed, want)
	}
}
