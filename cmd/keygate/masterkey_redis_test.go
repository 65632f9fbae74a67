package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/keygate/keygate/internal/redistest"
	"github.com/keygate/keygate/masterkey"
	"github.com/keygate/keygate/server"
	"github.com/keygate/keygate/server/servertest"
	"github.com/keygate/keygate/signing"
)

// TestMasterKeyRotateRedisUnderLoad is the online rotation on Redis: two
// instances holding the new and the old master key serve concurrent token
// requests while `keygate master-key rotate` re-seals the store; not one
// request fails. Afterwards an instance with the old key alone cannot add a
// signing key and cannot start (the rotation's one-line message), and one
// with the new key alone starts and authenticates every key.
func TestMasterKeyRotateRedisUnderLoad(t *testing.T) {
	prefix := redistest.Prefix(t, redistest.Require(t), "mkrot")
	oldEnc, oldKey := genKey(t)
	newEnc, newKey := genKey(t)
	backend := servertest.RedisOn(func(t testing.TB) goredis.UniversalClient { return redistest.NewClient(t) }, prefix)

	// The store as it is before: sealed under the old key.
	first := servertest.StartWith(t, servertest.Config{Backend: backend, MasterKey: oldKey})
	type cred struct{ id, secret string }
	var creds []cred
	for i := range 4 {
		k := first.CreateKey(t, fmt.Sprintf("team-%d", i), "load", "accounting_api")
		creds = append(creds, cred{k.ClientID, k.ClientSecret})
	}
	setBefore, err := first.Store.SigningKeys(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	kidBefore := setBefore.Active.KID

	// The rolling restart: every instance now holds both keys.
	rotating := newKey.WithPrevious(oldKey)
	a := first.Second(t, server.Options{MasterKey: rotating})
	b := first.Second(t, server.Options{MasterKey: rotating})
	instances := []*servertest.Env{a, b}

	// Load: token requests to both instances until told to stop.
	var ok, failed atomic.Int64
	var failures sync.Map
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				e := instances[(w+i)%2]
				c := creds[(w+i)%len(creds)]
				status, body, err := tokenRequest(e, c.id, c.secret)
				if err != nil || status != http.StatusOK {
					failed.Add(1)
					failures.Store(fmt.Sprintf("%s: %d %s %v", e.URL, status, body, err), true)
					continue
				}
				ok.Add(1)
			}
		})
	}
	waitFor := func(n int64) {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for ok.Load() < n && failed.Load() == 0 && time.Now().Before(deadline) {
			time.Sleep(5 * time.Millisecond)
		}
	}
	waitFor(50) // load is running
	before := ok.Load()
	stdout, _, rerr := runWith(t, map[string]string{envMasterKey: newEnc, envMasterKeyPrevious: oldEnc},
		"master-key", "rotate", "--store", "redis", "--redis-url", redistest.URL(), "--redis-prefix", prefix)
	during := ok.Load() - before
	waitFor(ok.Load() + 50) // and keeps running after
	close(stop)
	wg.Wait()
	if rerr != nil {
		t.Fatalf("rotate: %v", rerr)
	}
	if !strings.Contains(stdout, "under master key "+newKey.ID()+" (they were under master key "+oldKey.ID()+")") {
		t.Fatalf("rotate printed %q", stdout)
	}
	if n := failed.Load(); n > 0 {
		var some []string
		failures.Range(func(k, _ any) bool { some = append(some, k.(string)); return len(some) < 5 })
		t.Fatalf("%d of %d token requests failed during the rotation, e.g.:\n%s", n, n+ok.Load(), strings.Join(some, "\n"))
	}
	t.Logf("%d token requests, none failed; %d completed while rotate ran", ok.Load(), during)

	// Everything in the store is under the new key now.
	ctx := context.Background()
	set, err := a.Store.SigningKeys(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if set.MasterKeyID != newKey.ID() {
		t.Fatalf("signing key set records master key %s, want %s", set.MasterKeyID, newKey.ID())
	}
	if id, _ := masterkey.SealedBy(set.Active.PrivateKeySealed); id != newKey.ID() || set.Active.KID != kidBefore {
		t.Fatalf("active key %s sealed under %s; want the same key %s under %s", set.Active.KID, id, kidBefore, newKey.ID())
	}
	// The instance still running on the old key alone cannot add a
	// signing key any more (a changed signing_alg, say).
	if _, err := signing.Ensure(ctx, first.Store, oldKey, signing.RS256, signing.Schedule{Prepublish: time.Hour, Retain: time.Hour}, time.Now()); !errors.Is(err, signing.ErrMasterKeyChanged) {
		t.Fatalf("Ensure with the old key after the rotation: %v; want ErrMasterKeyChanged", err)
	}

	// A start with only the old key: refused with the rotation's message.
	if _, err := first.TrySecond(t, server.Options{MasterKey: oldKey}); err == nil {
		t.Fatal("an instance with only the old key started after the rotation")
	} else if u := new(masterkey.UnknownKeyError); !errors.As(err, &u) || u.SealedBy != newKey.ID() {
		t.Fatalf("start with the old key: %v; want an UnknownKeyError naming %s", err, newKey.ID())
	}
	addr := freeAddr(t)
	cfg, err := loadConfig(t, redisArgs(t.TempDir(), addr, "http://"+addr, redistest.URL(), prefix)...)
	if err != nil {
		t.Fatal(err)
	}
	err = serve(ctxFor(t), cfg, testEnv(map[string]string{envMasterKey: oldEnc}), storeBackends)
	if want := rotatedStartError(newKey.ID(), oldKey.ID()); err == nil || err.Error() != want {
		t.Fatalf("serve with the old key after the rotation: %v\nwant: %s", err, want)
	}

	// The new key alone: every key authenticates, signed by the same key.
	c := first.Second(t, server.Options{MasterKey: newKey})
	for _, cr := range creds {
		tok := c.Token(t, cr.id, cr.secret, "")
		if kid := servertest.KID(t, tok.AccessToken); kid != kidBefore {
			t.Fatalf("after the rotation %s signs, want the same key %s", kid, kidBefore)
		}
	}
}

// tokenRequest is a client-credentials request to e that fails no test
// (it runs in load goroutines).
func tokenRequest(e *servertest.Env, id, secret string) (int, string, error) {
	req, err := http.NewRequest(http.MethodPost, e.URL+"/oauth/token", strings.NewReader(url.Values{"grant_type": {"client_credentials"}}.Encode()))
	if err != nil {
		return 0, "", err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(id, secret)
	resp, err := e.Client.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body), nil
}
