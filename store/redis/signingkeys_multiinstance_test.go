package redis_test

import (
	"context"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/keygate/keygate/config"
	"github.com/keygate/keygate/server"
	"github.com/keygate/keygate/server/servertest"
	"github.com/keygate/keygate/verify"
)

func TestMultiInstanceRedisSigningKeyRace(t *testing.T) {
	testSigningKeyRace(t, miSingle(t))
}

func TestClusterSigningKeyRace(t *testing.T) {
	cl := startCluster(t)
	testSigningKeyRace(t, miCluster(t, cl))
}

// testSigningKeyRace: two instances on one Redis race to rotate — by hand
// (both POST a safe rotation at once) and on schedule (both ticks at the
// due moment). Each race stores exactly one new key; both instances sign
// with it from its signs_from on, by their clocks; both serve the same
// JWKS bytes; and every token either issued verifies with verify against
// either instance's JWKS.
func testSigningKeyRace(t *testing.T, m miRedis) {
	t0 := time.Date(2031, 5, 6, 7, 0, 0, 0, time.UTC)
	clock := servertest.NewClock(t0)
	opts := server.Options{Issuer: miIssuer, SigningKeyRotation: 24 * time.Hour}
	a := servertest.StartWith(t, servertest.Config{Options: opts, Backend: m.backend, Clock: clock})
	b := a.Second(t, opts)
	st := m.store(t)
	ctx := context.Background()
	key := a.CreateKey(t, "acme", "race", "accounting_api")

	verifiers := map[string]*verify.Verifier{}
	for name, e := range map[string]*servertest.Env{"a": a, "b": b} {
		v, err := verify.New(ctx, verify.Options{Issuer: miIssuer, Audience: miIssuer, JWKSURL: e.URL + "/.well-known/jwks.json", Now: clock.Now, IgnoreStatus: true})
		if err != nil {
			t.Fatal(err)
		}
		verifiers[name] = v
	}
	// issueAll gets a token from each instance and checks every verifier
	// accepts it; it returns the kids that signed them.
	issueAll := func(when string) (kidA, kidB string) {
		t.Helper()
		kids := map[string]string{}
		for name, e := range map[string]*servertest.Env{"a": a, "b": b} {
			tok := e.Token(t, key.ClientID, key.ClientSecret, "").AccessToken
			for vname, v := range verifiers {
				if _, err := v.Verify(ctx, tok); err != nil {
					t.Errorf("%s: a token from %s fails verification against %s's JWKS: %v", when, name, vname, err)
				}
			}
			kids[name] = servertest.KID(t, tok)
		}
		return kids["a"], kids["b"]
	}
	sameJWKS := func(when string) {
		t.Helper()
		ja := a.Do(t, a.NewRequest(t, http.MethodGet, "/.well-known/jwks.json", nil))
		jb := b.Do(t, b.NewRequest(t, http.MethodGet, "/.well-known/jwks.json", nil))
		if string(ja.Body) != string(jb.Body) {
			t.Errorf("%s: the instances serve different JWKS:\n%s\n%s", when, ja.Body, jb.Body)
		}
	}
	tickBoth := func() {
		var wg sync.WaitGroup
		wg.Go(func() { a.SigningKeysTick(t) })
		wg.Go(func() { b.SigningKeysTick(t) })
		wg.Wait()
	}

	first, _ := issueAll("at start")
	before, err := st.SigningKeys(ctx)
	if err != nil || before.Active == nil || before.Next != nil {
		t.Fatalf("stored keys at start: %+v, %v", before, err)
	}

	// Manual race: one rotation wins, the other finds its key waiting.
	clock.Advance(time.Hour)
	ta, tb := a.AdminToken(t), b.AdminToken(t)
	statuses := make([]int, 2)
	var wg sync.WaitGroup
	wg.Go(func() {
		statuses[0] = a.API(t, ta, http.MethodPost, "/v1/signing-keys/rotate", map[string]any{}).Status
	})
	wg.Go(func() {
		statuses[1] = b.API(t, tb, http.MethodPost, "/v1/signing-keys/rotate", map[string]any{}).Status
	})
	wg.Wait()
	if !(statuses[0] == 200 && statuses[1] == 409 || statuses[0] == 409 && statuses[1] == 200) {
		t.Fatalf("racing safe rotations answered %v, want one 200 and one 409", statuses)
	}
	stored, err := st.SigningKeys(ctx)
	if err != nil || stored.Next == nil || stored.Active.KID != first || len(stored.Retired) != 0 {
		t.Fatalf("after the race: %+v, %v", stored, err)
	}
	next := *stored.Next
	if want := clock.Now().Add(config.DefaultSigningKeyPrepublish); !next.SignsFrom.Equal(want) {
		t.Fatalf("next key signs from %v, want %v", next.SignsFrom, want)
	}
	tickBoth()
	sameJWKS("after the manual race")
	if ka, kb := issueAll("before the switch"); ka != first || kb != first {
		t.Fatalf("before the switch tokens name %s and %s, want %s", ka, kb, first)
	}
	clock.Set(next.SignsFrom.Add(-time.Second))
	issueAll("a second before the switch")
	clock.Set(next.SignsFrom)
	// No tick: both switch by their clocks.
	if ka, kb := issueAll("at the switch"); ka != next.KID || kb != next.KID {
		t.Fatalf("at the switch tokens name %s and %s, want %s", ka, kb, next.KID)
	}
	tickBoth()
	sameJWKS("after the switch")

	// Scheduled race: both ticks at the due moment store one next key.
	clock.Set(next.SignsFrom.Add(24*time.Hour - config.DefaultSigningKeyPrepublish))
	tickBoth()
	stored, err = st.SigningKeys(ctx)
	if err != nil || stored.Next == nil || stored.Active.KID != next.KID {
		t.Fatalf("after the scheduled race: %+v, %v", stored, err)
	}
	third := *stored.Next
	tickBoth()
	again, _ := st.SigningKeys(ctx)
	if again.Next == nil || again.Next.KID != third.KID {
		t.Fatalf("another round replaced the next key: %+v", again.Next)
	}
	sameJWKS("after the scheduled race")
	clock.Set(third.SignsFrom)
	if ka, kb := issueAll("at the scheduled switch"); ka != third.KID || kb != third.KID {
		t.Fatalf("at the scheduled switch tokens name %s and %s, want %s", ka, kb, third.KID)
	}
}
