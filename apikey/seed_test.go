package apikey_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/apikey"
	"github.com/keygate/keygate/credential"
	"github.com/keygate/keygate/masterkey"
	"github.com/keygate/keygate/scopes"
	"github.com/keygate/keygate/server/servertest"
	"github.com/keygate/keygate/store"
	"github.com/keygate/keygate/store/bolt"
)

// openService opens the rules of keys on a fresh bbolt store, as a server
// start does (pepper, signing key, admin key).
func openService(t *testing.T) (*apikey.Service, *bolt.Store, *masterkey.Key) {
	t.Helper()
	st, mk := apikey.FreshStore(t)
	svc, err := apikey.Open(context.Background(), apikey.Config{Store: st, MasterKey: mk})
	if err != nil {
		t.Fatal(err)
	}
	return svc, st, mk
}

// TestSeedIntoRunningStore seeds the store of a running service (pepper
// already there) and authenticates recorded credentials: the hashes were
// made with the service's pepper.
func TestSeedIntoRunningStore(t *testing.T) {
	svc, st, mk := openService(t)
	ctx := context.Background()
	before, err := st.StatusList(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var progress []int
	res, err := apikey.Seed(ctx, st, mk, apikey.SeedOptions{
		Keys: 2503, Record: 30, Batch: 1000,
		Catalog:  scopes.Default(),
		Progress: func(n int) { progress = append(progress, n) },
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.Keys != 2503 || res.Teams != 501 || len(res.Credentials) != 30 {
		t.Fatalf("result: %d keys, %d teams, %d credentials; want 2503, 501, 30", res.Keys, res.Teams, len(res.Credentials))
	}
	if fmt.Sprint(progress) != "[1000 2000 2503]" {
		t.Fatalf("progress %v", progress)
	}
	if res.FirstStatusIndex <= before.Allocated {
		t.Fatalf("first status index %d not beyond the %d allocated before", res.FirstStatusIndex, before.Allocated)
	}

	// Recorded keys are spread over the whole set: every 83rd key (2503/30),
	// so the last recorded one is key 2407, in team 482.
	seen := map[string]bool{}
	for i, c := range res.Credentials {
		if seen[c.ClientID] {
			t.Fatalf("credential %d repeats %s", i, c.ClientID)
		}
		seen[c.ClientID] = true
		if err := credential.CheckSecretFormat(c.ClientSecret); err != nil {
			t.Fatal(err)
		}
		k, err := st.GetKey(ctx, c.ClientID)
		if err != nil {
			t.Fatal(err)
		}
		wantTeam := fmt.Sprintf("bench-%06d", i*83/5+1)
		if k.TeamID != wantTeam || k.Name != fmt.Sprintf("seed %d", i*83+1) {
			t.Fatalf("credential %d: key %s is %q in team %s, want %q in %s", i, c.ClientID, k.Name, k.TeamID, fmt.Sprintf("seed %d", i*83+1), wantTeam)
		}
		if k.StatusIndex != res.FirstStatusIndex+int64(i*83) {
			t.Fatalf("credential %d: status index %d, want %d", i, k.StatusIndex, res.FirstStatusIndex+int64(i*83))
		}
		if strings.Join(k.Permissions, ",") != "accounting_api" || k.CreatedAt.IsZero() {
			t.Fatalf("credential %d: key %+v", i, k)
		}
	}
	for _, i := range []int{0, 15, 29} {
		c := res.Credentials[i]
		k, _, err := svc.Authenticate(ctx, c.ClientID, c.ClientSecret)
		if err != nil {
			t.Fatalf("seeded key %s does not authenticate: %v", c.ClientID, err)
		}
		if scope, err := svc.GrantScope(k, ""); err != nil || !strings.Contains(scope, "accounting:read") {
			t.Fatalf("token of seeded key %s has scope %q (%v)", c.ClientID, scope, err)
		}
	}
	if _, _, err := svc.Authenticate(ctx, res.Credentials[1].ClientID, res.Credentials[2].ClientSecret); !errors.Is(err, apikey.ErrInvalidClient) {
		t.Fatalf("wrong secret for a seeded key: %v", err)
	}

	for team, want := range map[string]int{"bench-000001": 5, "bench-000250": 5, "bench-000501": 3, "bench-000502": 0} {
		keys, err := st.ListKeys(ctx, team)
		if err != nil || len(keys) != want {
			t.Fatalf("team %s: %d keys (%v), want %d", team, len(keys), err, want)
		}
	}
	n := 0
	indices := map[int64]bool{}
	err = st.ForEachKey(ctx, func(k store.Key) error {
		if k.IsAdmin() {
			return nil
		}
		n++
		if k.StatusIndex < res.FirstStatusIndex || k.StatusIndex >= res.FirstStatusIndex+2503 || indices[k.StatusIndex] {
			return fmt.Errorf("key %s: status index %d out of range or repeated", k.ClientID, k.StatusIndex)
		}
		indices[k.StatusIndex] = true
		return nil
	})
	if err != nil || n != 2503 {
		t.Fatalf("%d team keys (%v), want 2503", n, err)
	}
}

// TestSeedFreshStore seeds a store no server has opened (Seed creates the
// pepper), then starts a server on it.
func TestSeedFreshStore(t *testing.T) {
	ctx := context.Background()
	st, mk := apikey.FreshStore(t)
	res, err := apikey.Seed(ctx, st, mk, apikey.SeedOptions{Keys: 40, Record: 40, KeysPerTeam: 4, TeamPrefix: "load-"})
	if err != nil {
		t.Fatal(err)
	}
	if res.Teams != 10 || len(res.Credentials) != 40 || res.Credentials[39].ClientID == "" {
		t.Fatalf("result %+v", res)
	}
	if keys, err := st.ListKeys(ctx, "load-000010"); err != nil || len(keys) != 4 {
		t.Fatalf("team load-000010: %d keys (%v)", len(keys), err)
	}

	// A keygate started on the seeded store issues tokens for seeded keys.
	env := servertest.StartWith(t, servertest.Config{Backend: servertest.Existing(st), MasterKey: mk})
	for _, c := range []apikey.SeedCredential{res.Credentials[0], res.Credentials[39]} {
		if tok := env.Token(t, c.ClientID, c.ClientSecret, ""); tok.AccessToken == "" {
			t.Fatalf("no token for seeded key %s", c.ClientID)
		}
	}

	// Another master key cannot open this store's pepper.
	enc2, _ := masterkey.Generate()
	mk2, _ := masterkey.Parse(enc2)
	if _, err := apikey.Seed(ctx, st, mk2, apikey.SeedOptions{Keys: 1}); err == nil || !strings.Contains(err.Error(), "master key") {
		t.Fatalf("seed with another master key: %v", err)
	}
}

// noBulk hides the store's bulk path.
type noBulk struct{ store.Store }

// failingBulk fails its second CreateKeys call.
type failingBulk struct {
	*bolt.Store
	calls int
}

var errDiskFull = errors.New("disk full")

func (f *failingBulk) CreateKeys(ctx context.Context, keys []store.Key) error {
	if f.calls++; f.calls == 2 {
		return errDiskFull
	}
	return f.Store.CreateKeys(ctx, keys)
}

func TestSeedRefusals(t *testing.T) {
	ctx := context.Background()
	st, mk := apikey.FreshStore(t)

	for name, tc := range map[string]struct {
		st   store.Store
		opts apikey.SeedOptions
		want string
	}{
		"no bulk path":       {noBulk{st}, apikey.SeedOptions{Keys: 10}, "no bulk path"},
		"no keys":            {st, apikey.SeedOptions{}, "at least 1"},
		"record too many":    {st, apikey.SeedOptions{Keys: 10, Record: 11}, "cannot record"},
		"unknown permission": {st, apikey.SeedOptions{Keys: 10, Permissions: []string{"nope"}, Catalog: scopes.Default()}, "nope"},
		"bad team prefix":    {st, apikey.SeedOptions{Keys: 10, TeamPrefix: "-x"}, "not valid team IDs"},
	} {
		if _, err := apikey.Seed(ctx, tc.st, mk, tc.opts); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err %v, want one mentioning %q", name, err, tc.want)
		}
	}
	if n := countKeys(t, st); n != 0 {
		t.Fatalf("refused seeds wrote %d keys", n)
	}

	// A store failure mid-way: whole batches before it stay, the error says
	// how far it got, no credentials are returned.
	fb := &failingBulk{Store: st}
	res, err := apikey.Seed(ctx, fb, mk, apikey.SeedOptions{Keys: 5000, Record: 10, Batch: 1000})
	if !errors.Is(err, errDiskFull) || !strings.Contains(err.Error(), "after 1000 of 5000") {
		t.Fatalf("failing store: err %v", err)
	}
	if res.Keys != 1000 || res.Credentials != nil {
		t.Fatalf("failing store: result %d keys, %d credentials", res.Keys, len(res.Credentials))
	}
	if n := countKeys(t, st); n != 1000 {
		t.Fatalf("%d keys written, want the first batch of 1000", n)
	}

	// A cancelled context.
	cctx, cancel := context.WithTimeout(ctx, time.Millisecond)
	defer cancel()
	<-cctx.Done()
	if _, err := apikey.Seed(cctx, st, mk, apikey.SeedOptions{Keys: 100}); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("expired context: %v", err)
	}
}

func countKeys(t *testing.T, st store.Store) int {
	t.Helper()
	n := 0
	if err := st.ForEachKey(context.Background(), func(store.Key) error { n++; return nil }); err != nil {
		t.Fatal(err)
	}
	return n
}

// TestSeedRecordsTheKeyCheck: a seed into a store that was never started
// wrote every key there is, each inside the catalog and indexed, so the
// first start's check walks nothing (keycheck.go); a seed into a store
// that held keys already does not vouch for them, and the check walks.
func TestSeedRecordsTheKeyCheck(t *testing.T) {
	ctx := context.Background()

	st, mk := apikey.FreshStore(t)
	if _, err := apikey.Seed(ctx, st, mk, apikey.SeedOptions{Keys: 20, Catalog: scopes.Default()}); err != nil {
		t.Fatal(err)
	}
	svc, err := apikey.Open(ctx, apikey.Config{Store: st, MasterKey: mk})
	if err != nil {
		t.Fatal(err)
	}
	if r, err := svc.CheckStoredKeys(ctx); err != nil || !r.UpToDate || r.Keys != 0 {
		t.Errorf("check after a seed into a fresh store: %+v, %v; want no walk", r, err)
	}

	// The same store checked under a catalog without the seeded
	// permission: walked, every seeded key reported.
	var perms []scopes.Permission
	for _, p := range scopes.Default().Offered() {
		if p.ID != apikey.DefaultSeedPermissions[0] {
			perms = append(perms, p)
		}
	}
	narrow, err := scopes.New(perms)
	if err != nil {
		t.Fatal(err)
	}
	svc2, err := apikey.Open(ctx, apikey.Config{Store: st, MasterKey: mk, Catalog: narrow})
	if err != nil {
		t.Fatal(err)
	}
	if r, err := svc2.CheckStoredKeys(ctx); err != nil || r.UpToDate || r.OutsideCatalogCount != 20 {
		t.Errorf("check under a catalog without the seeded permission: %+v, %v; want 20 keys reported", r, err)
	}

	// A seed into a running store (its keys written by others) vouches
	// for nothing: the first check walks them all.
	svc3, st3, mk3 := openService(t)
	if _, err := apikey.Seed(ctx, st3, mk3, apikey.SeedOptions{Keys: 20, Catalog: scopes.Default()}); err != nil {
		t.Fatal(err)
	}
	if r, err := svc3.CheckStoredKeys(ctx); err != nil || r.UpToDate || r.Keys < 21 {
		t.Errorf("check after a seed into a running store: %+v, %v; want every key walked", r, err)
	}
	if r, err := svc3.CheckStoredKeys(ctx); err != nil || !r.UpToDate {
		t.Errorf("the check after that walk: %+v, %v; want no walk", r, err)
	}
}

// TestSeedCompletesStatusSchedule: a seed into a store no keygate has
// opened writes every key there is, none rotated, so it records the status
// schedule as complete (the first start walks nothing for it); a seed into
// a running store, whose other keys it knows nothing of, does not.
func TestSeedCompletesStatusSchedule(t *testing.T) {
	ctx := context.Background()
	complete := func(st *bolt.Store) bool {
		t.Helper()
		all, err := st.Singletons(ctx)
		if err != nil {
			t.Fatal(err)
		}
		_, ok := all[store.StatusScheduleComplete]
		return ok
	}
	fresh, mk := apikey.FreshStore(t)
	if _, err := apikey.Seed(ctx, fresh, mk, apikey.SeedOptions{Keys: 20, Catalog: scopes.Default()}); err != nil {
		t.Fatal(err)
	}
	if !complete(fresh) {
		t.Error("a seed into a fresh store did not record the status schedule as complete")
	}
	_, running, mk2 := openService(t)
	if _, err := apikey.Seed(ctx, running, mk2, apikey.SeedOptions{Keys: 20, Catalog: scopes.Default()}); err != nil {
		t.Fatal(err)
	}
	if complete(running) {
		t.Error("a seed into a running store recorded the status schedule as complete")
	}
}
