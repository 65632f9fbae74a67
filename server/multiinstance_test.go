package server_test

// Several keygate instances on one Redis (issue 4): fully separate
// in-process servers — each with its own go-redis client, its own
// store/redis.Store, its own server.New and its own loopback HTTP server —
// sharing only the Redis key prefix, the master key and the issuer, as
// instances behind one load balancer would.
//
// The Redis comes from KEYGATE_TEST_REDIS_URL (default
// redis://127.0.0.1:6379/15). Every test uses a random key prefix and
// deletes its keys afterwards. Without a Redis the tests skip loudly, except
// under CI=true, where they fail.

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	goredis "github.com/redis/go-redis/v9"

	"github.com/keygate/keygate/credential"
	"github.com/keygate/keygate/internal/redistest"
	"github.com/keygate/keygate/masterkey"
	"github.com/keygate/keygate/server"
	"github.com/keygate/keygate/store/redis"
)

// miIssuer is the one issuer every instance shares. Nothing fetches it:
// each instance verifies admin tokens against its own copy of the shared
// key set.
const miIssuer = "https://auth.test"

// miRequireRedis skips loudly when there is no Redis (fails under CI) and
// returns a random prefix whose keys are deleted when the test ends, after
// every instance registered later has been closed.
func miRequireRedis(t testing.TB) (admin *goredis.Client, prefix string) {
	t.Helper()
	c := redistest.Require(t)
	return c, redistest.Prefix(t, c, "mi")
}

// miKeys lists the Redis keys under prefix, sorted.
func miKeys(t testing.TB, c *goredis.Client, prefix string) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var out []string
	iter := c.Scan(ctx, 0, prefix+"*", 1000).Iterator()
	for iter.Next(ctx) {
		out = append(out, iter.Val())
	}
	if err := iter.Err(); err != nil {
		t.Fatalf("scan %s*: %v", prefix, err)
	}
	sort.Strings(out)
	return out
}

func miMasterKey(t testing.TB) *masterkey.Key {
	t.Helper()
	enc, err := masterkey.Generate()
	if err != nil {
		t.Fatal(err)
	}
	mk, err := masterkey.Parse(enc)
	if err != nil {
		t.Fatal(err)
	}
	return mk
}

// miStore opens a store on prefix through a client of its own.
func miStore(t testing.TB, prefix string) *redis.Store {
	t.Helper()
	st, err := redis.New(redistest.NewClient(t), prefix, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// miNew runs server.New for one instance on its own client and store.
func miNew(ctx context.Context, t testing.TB, prefix string, mk *masterkey.Key, opts server.Options) (*server.Server, error) {
	opts.Store = miStore(t, prefix)
	opts.MasterKey = mk
	opts.Issuer = miIssuer
	return server.New(ctx, opts)
}

// miServe puts srv behind its own loopback HTTP server and returns it as a
// testEnv (only the HTTP helpers are used: Store stays nil). Cleanup stops
// the HTTP server, then closes srv (flushing last-used times).
func miServe(t testing.TB, srv *server.Server, adminID, adminSecret string) *testEnv {
	t.Helper()
	var once sync.Once
	t.Cleanup(func() { once.Do(srv.Close) })
	ts := httptest.NewServer(srv)
	t.Cleanup(ts.Close)
	return &testEnv{
		tb:          t,
		URL:         ts.URL,
		ts:          ts,
		Srv:         srv,
		AdminID:     adminID,
		AdminSecret: adminSecret,
		Client:      &http.Client{Timeout: 10 * time.Second},
	}
}

// miStart starts one complete instance.
func miStart(t testing.TB, prefix string, mk *masterkey.Key, opts server.Options) *testEnv {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	srv, err := miNew(ctx, t, prefix, mk, opts)
	if err != nil {
		t.Fatalf("server.New: %v", err)
	}
	return miServe(t, srv, opts.AdminClientID, opts.AdminClientSecret)
}

func (e *testEnv) miJWKS(t testing.TB) []byte {
	t.Helper()
	r := e.do(t, e.newRequest(t, http.MethodGet, "/.well-known/jwks.json", nil))
	if r.Status != http.StatusOK {
		t.Fatalf("JWKS of %s: %s", e.URL, r)
	}
	return r.Body
}

// miVerify checks tok with go-jose (independent of keygate's signer)
// against the JWKS served by e, and returns its claims.
func miVerify(t testing.TB, e *testEnv, tok string) map[string]any {
	t.Helper()
	jws, err := jose.ParseSigned(tok, []jose.SignatureAlgorithm{jose.ES256, jose.RS256, jose.EdDSA})
	if err != nil {
		t.Fatalf("parse token: %v", err)
	}
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(e.miJWKS(t), &set); err != nil {
		t.Fatalf("JWKS of %s: %v", e.URL, err)
	}
	kid := jws.Signatures[0].Protected.KeyID
	keys := set.Key(kid)
	if len(keys) != 1 {
		t.Fatalf("kid %q is not in the JWKS of %s", kid, e.URL)
	}
	payload, err := jws.Verify(keys[0])
	if err != nil {
		t.Fatalf("token does not verify with the JWKS of %s: %v", e.URL, err)
	}
	var claims map[string]any
	if err := json.Unmarshal(payload, &claims); err != nil {
		t.Fatal(err)
	}
	return claims
}

func miFindKey(l keyListJSON, id string) (keyJSON, bool) {
	for _, k := range l.Keys {
		if k.ClientID == id {
			return k, true
		}
	}
	return keyJSON{}, false
}

func TestMultiInstanceRedis(t *testing.T) {
	_, prefix := miRequireRedis(t)
	mk := miMasterKey(t)
	adminSecret, err := credential.NewSecret()
	if err != nil {
		t.Fatal(err)
	}

	// A seeds the admin key; B is started with no admin options at all.
	a := miStart(t, prefix, mk, server.Options{AdminClientID: "ops-admin", AdminClientSecret: adminSecret})
	if _, ok := a.Srv.GeneratedAdmin(); ok {
		t.Fatal("A generated an admin key although one was configured")
	}
	b := miStart(t, prefix, mk, server.Options{})
	if admin, ok := b.Srv.GeneratedAdmin(); ok {
		t.Fatalf("B generated a second admin key %s although A had created one", admin.ClientID)
	}
	b.AdminID, b.AdminSecret = a.AdminID, a.AdminSecret
	admins, err := miStore(t, prefix).ListKeys(context.Background(), "")
	if err != nil {
		t.Fatal(err)
	}
	if len(admins) != 1 || admins[0].ClientID != "ops-admin" {
		t.Fatalf("admin keys in Redis: %+v, want exactly ops-admin", admins)
	}

	t.Run("admin key seeded through A works on B", func(t *testing.T) {
		tok := b.adminToken(t)
		if l := b.listKeys(t, tok, "acme"); len(l.Keys) != 0 {
			t.Fatalf("fresh team has keys: %+v", l.Keys)
		}
	})

	t.Run("admin token from A is accepted by B and vice versa", func(t *testing.T) {
		b.listKeys(t, a.adminToken(t), "acme")
		a.listKeys(t, b.adminToken(t), "acme")
	})

	key := a.createKey(t, "acme", "Production sync", permAccounting)

	t.Run("key created through A gets a token at B", func(t *testing.T) {
		tr := b.token(t, key.ClientID, key.ClientSecret, "")
		if tr.Scope != strings.Join(accountingScopes, " ") {
			t.Fatalf("scope %q at B", tr.Scope)
		}
		// And B's management API lists it.
		if _, ok := miFindKey(b.listKeys(t, b.adminToken(t), "acme"), key.ClientID); !ok {
			t.Fatal("B's list lacks the key created through A")
		}
	})

	t.Run("JWKS of A and B are identical", func(t *testing.T) {
		ja, jb := a.miJWKS(t), b.miJWKS(t)
		if !bytes.Equal(ja, jb) {
			t.Fatalf("JWKS differ:\nA: %s\nB: %s", ja, jb)
		}
		var set jose.JSONWebKeySet
		if err := json.Unmarshal(ja, &set); err != nil || len(set.Keys) != 1 {
			t.Fatalf("JWKS %s: %v, want exactly one key", ja, err)
		}
	})

	t.Run("a token from A verifies with B's JWKS", func(t *testing.T) {
		tok := a.token(t, key.ClientID, key.ClientSecret, "").AccessToken
		c := miVerify(t, b, tok)
		if c["iss"] != miIssuer || c["sub"] != key.ClientID || c["client_id"] != key.ClientID || c["team_id"] != "acme" {
			t.Fatalf("claims of A's token: %v", c)
		}
		// And the other way round.
		c = miVerify(t, a, b.token(t, key.ClientID, key.ClientSecret, "").AccessToken)
		if c["iss"] != miIssuer || c["sub"] != key.ClientID {
			t.Fatalf("claims of B's token: %v", c)
		}
	})

	t.Run("last_used_at recorded by B shows in A's list", func(t *testing.T) {
		k := a.createKey(t, "acme", "Last use", permVisualization)
		tok := a.adminToken(t)
		if got, _ := miFindKey(a.listKeys(t, tok, "acme"), k.ClientID); got.LastUsedAt != nil {
			t.Fatalf("unused key has last_used_at %v", got.LastUsedAt)
		}
		before := time.Now().Add(-time.Second)
		b.token(t, k.ClientID, k.ClientSecret, "")
		start := time.Now()
		var lu *time.Time
		ok := waitFor(2*time.Second, func() bool {
			got, found := miFindKey(a.listKeys(t, tok, "acme"), k.ClientID)
			lu = got.LastUsedAt
			return found && lu != nil
		})
		if !ok {
			t.Fatal("last_used_at of a key used at B not in A's list after 2 s")
		}
		t.Logf("last_used_at from B visible at A after %v", time.Since(start).Round(time.Millisecond))
		if lu.Before(before.Truncate(time.Second)) || lu.After(time.Now().Add(time.Second)) {
			t.Fatalf("last_used_at %v, want about %v", lu, start)
		}
	})

	t.Run("deleting through A makes B refuse the key within 1 s", func(t *testing.T) {
		// B has just served this key (a cache, if any, is warm).
		b.token(t, key.ClientID, key.ClientSecret, "")
		r := a.api(t, a.adminToken(t), http.MethodDelete, "/v1/teams/acme/keys/"+key.ClientID, nil)
		if r.Status != http.StatusNoContent {
			t.Fatalf("delete through A: %s", r)
		}
		deleted := time.Now()
		form := url.Values{"grant_type": {"client_credentials"}}
		var last response
		for {
			last = b.tokenRequest(t, key.ClientID, key.ClientSecret, form)
			if last.Status != http.StatusOK || time.Since(deleted) > 3*time.Second {
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
		took := time.Since(deleted)
		checkOAuthError(t, last, http.StatusUnauthorized, "invalid_client")
		if took >= time.Second {
			t.Fatalf("B still accepted the deleted key %v after the delete through A (limit 1 s)", took)
		}
		t.Logf("B refused the deleted key %v after the delete through A", took.Round(time.Millisecond))
		if _, ok := miFindKey(b.listKeys(t, b.adminToken(t), "acme"), key.ClientID); ok {
			t.Fatal("B still lists the deleted key")
		}
	})
}

func TestMultiInstanceRedisConcurrentFirstStart(t *testing.T) {
	rdb, prefix := miRequireRedis(t)
	mk := miMasterKey(t)
	const n = 10

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	srvs := make([]*server.Server, n)
	errs := make([]error, n)
	stores := make([]*redis.Store, n)
	for i := range stores {
		stores[i] = miStore(t, prefix) // its own client; made here, t is not goroutine-safe for Fatal
	}
	var wg sync.WaitGroup
	startGate := make(chan struct{})
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			<-startGate
			srvs[i], errs[i] = server.New(ctx, server.Options{Store: stores[i], MasterKey: mk, Issuer: miIssuer})
		}(i)
	}
	close(startGate)
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("instance %d: server.New: %v", i, err)
		}
	}
	if t.Failed() {
		for _, s := range srvs {
			if s != nil {
				s.Close()
			}
		}
		t.FailNow()
	}

	// Exactly one instance generated the admin key.
	var admin server.AdminCredentials
	generated := 0
	for _, s := range srvs {
		if a, ok := s.GeneratedAdmin(); ok {
			generated++
			admin = a
		}
	}
	envs := make([]*testEnv, n)
	for i, s := range srvs {
		envs[i] = miServe(t, s, admin.ClientID, admin.ClientSecret)
	}
	if generated != 1 {
		t.Fatalf("%d of %d concurrent first starts generated an admin key, want exactly 1", generated, n)
	}

	st := miStore(t, prefix)
	admins, err := st.ListKeys(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	if len(admins) != 1 || admins[0].ClientID != admin.ClientID {
		t.Fatalf("admin keys in Redis: %+v, want exactly the generated %s", admins, admin.ClientID)
	}
	ks, err := st.SigningKeys(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if ks.Active == nil || len(ks.Retired) != 0 {
		t.Fatalf("signing keys after %d concurrent first starts: active %v, %d retired; want one active, none retired", n, ks.Active != nil, len(ks.Retired))
	}
	// One pepper and one signing key set: exactly one record of each.
	var peppers, signing int
	keys := miKeys(t, rdb, prefix)
	for _, k := range keys {
		switch {
		case strings.HasSuffix(k, ":single:pepper"):
			peppers++
		case strings.HasSuffix(k, "}:signing"):
			signing++
		}
	}
	if peppers != 1 || signing != 1 {
		t.Fatalf("Redis holds %d pepper and %d signing-key records, want 1 and 1; keys: %q", peppers, signing, keys)
	}

	// Every instance serves the same JWKS, with the one active key.
	want := envs[0].miJWKS(t)
	if !strings.Contains(string(want), `"kid":"`+ks.Active.KID+`"`) {
		t.Fatalf("JWKS %s lacks the active kid %s", want, ks.Active.KID)
	}
	for i, e := range envs[1:] {
		if got := e.miJWKS(t); !bytes.Equal(got, want) {
			t.Fatalf("instance %d serves another JWKS:\n%s\nwant\n%s", i+1, got, want)
		}
	}

	// The admin secret was hashed by one instance with the pepper it loaded:
	// every instance verifies it (one pepper), and a key created through
	// each instance authenticates at every other one.
	for i, e := range envs {
		tok := e.adminToken(t)
		miVerify(t, envs[(i+1)%n], tok)
	}
	creator := envs[n-1]
	k := creator.createKey(t, "acme", "Everywhere", permVisualization)
	for i, e := range envs {
		if r := e.tokenRequest(t, k.ClientID, k.ClientSecret, url.Values{"grant_type": {"client_credentials"}}); r.Status != http.StatusOK {
			t.Errorf("instance %d refused a key created through instance %d: %s", i, n-1, r)
		}
	}
}

func TestMultiInstanceRedisWrongMasterKey(t *testing.T) {
	_, prefix := miRequireRedis(t)
	a := miStart(t, prefix, miMasterKey(t), server.Options{})
	if _, ok := a.Srv.GeneratedAdmin(); !ok {
		t.Fatal("first start on a fresh prefix generated no admin key")
	}
	st := miStore(t, prefix)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	before, err := st.SigningKeys(ctx)
	if err != nil {
		t.Fatal(err)
	}

	srv, err := miNew(ctx, t, prefix, miMasterKey(t), server.Options{})
	if err == nil {
		srv.Close()
		t.Fatal("server.New started with a different master key on the same Redis prefix")
	}
	if ctx.Err() != nil {
		t.Fatalf("server.New only failed because the context ran out: %v", err)
	}
	msg := err.Error()
	if !strings.Contains(msg, "pepper") || !strings.Contains(msg, "master key") {
		t.Errorf("error %q should say the pepper cannot be read with this master key", msg)
	}
	t.Logf("different master key: %v", err)

	// The refused start changed nothing: same signing key, still one admin,
	// and A keeps working.
	after, err := st.SigningKeys(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if after.Active == nil || after.Active.KID != before.Active.KID || len(after.Retired) != len(before.Retired) {
		t.Fatalf("signing keys changed by the refused start: %+v → %+v", before, after)
	}
	admins, err := st.ListKeys(ctx, "")
	if err != nil || len(admins) != 1 {
		t.Fatalf("admin keys after the refused start: %v, %v", len(admins), err)
	}
	admin, _ := a.Srv.GeneratedAdmin()
	a.AdminID, a.AdminSecret = admin.ClientID, admin.ClientSecret
	a.listKeys(t, a.adminToken(t), "acme")
}
