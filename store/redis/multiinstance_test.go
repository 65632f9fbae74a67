package redis_test

// Several keygate instances on one Redis (issue 4): fully separate
// in-process servers — each with its own go-redis client, its own
// store/redis.Store, its own server.New and its own loopback HTTP server,
// all started by servertest — sharing only the Redis key prefix, the master
// key and the issuer, as instances behind one load balancer would. Each
// test runs on the test Redis (KEYGATE_TEST_REDIS_URL, default
// redis://127.0.0.1:6379/15; without it the tests skip loudly, except under
// CI=true, where they fail) and on a 3-master Redis Cluster. Every test uses
// a random key prefix and deletes its keys afterwards.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
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
	"github.com/keygate/keygate/server/servertest"
	"github.com/keygate/keygate/store/redis"
)

// miIssuer is the one issuer every instance shares. Nothing fetches it:
// each instance verifies admin tokens against its own copy of the shared
// key set.
const miIssuer = "https://auth.test"

// accountingScopes is what accounting_api grants, in catalog order.
var accountingScopes = []string{
	"common:read", "common:write",
	"accounting:read", "accounting:write",
	"banking:read", "banking:write",
	"commerce:read", "commerce:write",
	"analytics:read", "analytics:write",
}

// miRedis is where the instances of one test keep their data.
type miRedis struct {
	rdb     goredis.UniversalClient // for reading the Redis keys themselves
	prefix  string                  // deleted when the test ends
	backend servertest.Backend      // a client of its own for each instance
}

// miSingle is the test Redis (skips loudly without one, fails under CI).
func miSingle(t testing.TB) miRedis {
	t.Helper()
	c := redistest.Require(t)
	prefix := redistest.Prefix(t, c, "mi")
	return miRedis{rdb: c, prefix: prefix, backend: servertest.RedisOn(func(t testing.TB) goredis.UniversalClient {
		return redistest.NewClient(t)
	}, prefix)}
}

// miCluster is the cluster cl, each instance with a Cluster client of its
// own.
func miCluster(t testing.TB, cl *testCluster) miRedis {
	t.Helper()
	cc := cl.newClusterClient(t)
	prefix := redistest.Prefix(t, cc, "mi")
	return miRedis{rdb: cc, prefix: prefix, backend: servertest.RedisOn(func(t testing.TB) goredis.UniversalClient {
		return cl.newClusterClient(t)
	}, prefix)}
}

// store opens another store on the prefix, for reading what the instances
// wrote independently of them.
func (m miRedis) store(t testing.TB) *redis.Store {
	t.Helper()
	st, err := redis.New(m.rdb, m.prefix, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// keys lists the Redis keys under the prefix (on every master of a
// cluster), sorted.
func (m miRedis) keys(t testing.TB) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var (
		mu  sync.Mutex // ForEachMaster scans the masters concurrently
		out []string
	)
	scan := func(ctx context.Context, c goredis.Cmdable) error {
		iter := c.Scan(ctx, 0, m.prefix+"*", 1000).Iterator()
		for iter.Next(ctx) {
			mu.Lock()
			out = append(out, iter.Val())
			mu.Unlock()
		}
		return iter.Err()
	}
	var err error
	if cc, ok := m.rdb.(*goredis.ClusterClient); ok {
		err = cc.ForEachMaster(ctx, func(ctx context.Context, node *goredis.Client) error { return scan(ctx, node) })
	} else {
		err = scan(ctx, m.rdb)
	}
	if err != nil {
		t.Fatalf("scan %s*: %v", m.prefix, err)
	}
	sort.Strings(out)
	return out
}

func miJWKS(t testing.TB, e *servertest.Env) []byte {
	t.Helper()
	r := e.Do(t, e.NewRequest(t, http.MethodGet, "/.well-known/jwks.json", nil))
	if r.Status != http.StatusOK {
		t.Fatalf("JWKS of %s: %s", e.URL, r)
	}
	return r.Body
}

// miVerify checks tok with go-jose (independent of keygate's signer)
// against the JWKS served by e, and returns its claims.
func miVerify(t testing.TB, e *servertest.Env, tok string) map[string]any {
	t.Helper()
	jws, err := jose.ParseSigned(tok, []jose.SignatureAlgorithm{jose.ES256, jose.RS256, jose.EdDSA})
	if err != nil {
		t.Fatalf("parse token: %v", err)
	}
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(miJWKS(t, e), &set); err != nil {
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

func miFindKey(l servertest.KeyList, id string) (servertest.Key, bool) {
	for _, k := range l.Keys {
		if k.ClientID == id {
			return k, true
		}
	}
	return servertest.Key{}, false
}

func TestMultiInstanceRedis(t *testing.T) { testMultiInstance(t, miSingle(t)) }

func TestMultiInstanceRedisConcurrentFirstStart(t *testing.T) {
	testMultiInstanceConcurrentFirstStart(t, miSingle(t))
}

func TestMultiInstanceRedisWrongMasterKey(t *testing.T) {
	testMultiInstanceWrongMasterKey(t, miSingle(t))
}

// TestClusterMultiInstance runs the multi-instance tests on a 3-master
// cluster, each test under a prefix of its own.
func TestClusterMultiInstance(t *testing.T) {
	cl := startCluster(t)
	t.Run("Instances", func(t *testing.T) { testMultiInstance(t, miCluster(t, cl)) })
	t.Run("ConcurrentFirstStart", func(t *testing.T) { testMultiInstanceConcurrentFirstStart(t, miCluster(t, cl)) })
	t.Run("WrongMasterKey", func(t *testing.T) { testMultiInstanceWrongMasterKey(t, miCluster(t, cl)) })
}

func testMultiInstance(t *testing.T, m miRedis) {
	adminSecret, err := credential.NewSecret()
	if err != nil {
		t.Fatal(err)
	}

	// A seeds the admin key; B is started with no admin options at all.
	a := servertest.StartWith(t, servertest.Config{
		Options: server.Options{Issuer: miIssuer, AdminClientID: "ops-admin", AdminClientSecret: adminSecret},
		Backend: m.backend,
	})
	if _, ok := a.Server.GeneratedAdmin(); ok {
		t.Fatal("A generated an admin key although one was configured")
	}
	b := a.Second(t, server.Options{})
	if admin, ok := b.Server.GeneratedAdmin(); ok {
		t.Fatalf("B generated a second admin key %s although A had created one", admin.ClientID)
	}
	admins, err := m.store(t).ListKeys(context.Background(), "")
	if err != nil {
		t.Fatal(err)
	}
	if len(admins) != 1 || admins[0].ClientID != "ops-admin" {
		t.Fatalf("admin keys in Redis: %+v, want exactly ops-admin", admins)
	}

	t.Run("admin key seeded through A works on B", func(t *testing.T) {
		tok := b.AdminToken(t)
		if l := b.ListKeys(t, tok, "acme"); len(l.Keys) != 0 {
			t.Fatalf("fresh team has keys: %+v", l.Keys)
		}
	})

	t.Run("admin token from A is accepted by B and vice versa", func(t *testing.T) {
		b.ListKeys(t, a.AdminToken(t), "acme")
		a.ListKeys(t, b.AdminToken(t), "acme")
	})

	key := a.CreateKey(t, "acme", "Production sync", "accounting_api")

	t.Run("key created through A gets a token at B", func(t *testing.T) {
		tr := b.Token(t, key.ClientID, key.ClientSecret, "")
		if tr.Scope != strings.Join(accountingScopes, " ") {
			t.Fatalf("scope %q at B", tr.Scope)
		}
		// And B's management API lists it.
		if _, ok := miFindKey(b.ListKeys(t, b.AdminToken(t), "acme"), key.ClientID); !ok {
			t.Fatal("B's list lacks the key created through A")
		}
	})

	t.Run("JWKS of A and B are identical", func(t *testing.T) {
		ja, jb := miJWKS(t, a), miJWKS(t, b)
		if !bytes.Equal(ja, jb) {
			t.Fatalf("JWKS differ:\nA: %s\nB: %s", ja, jb)
		}
		var set jose.JSONWebKeySet
		if err := json.Unmarshal(ja, &set); err != nil || len(set.Keys) != 1 {
			t.Fatalf("JWKS %s: %v, want exactly one key", ja, err)
		}
	})

	t.Run("a token from A verifies with B's JWKS", func(t *testing.T) {
		tok := a.Token(t, key.ClientID, key.ClientSecret, "").AccessToken
		c := miVerify(t, b, tok)
		if c["iss"] != miIssuer || c["sub"] != key.ClientID || c["client_id"] != key.ClientID || c["team_id"] != "acme" {
			t.Fatalf("claims of A's token: %v", c)
		}
		// And the other way round.
		c = miVerify(t, a, b.Token(t, key.ClientID, key.ClientSecret, "").AccessToken)
		if c["iss"] != miIssuer || c["sub"] != key.ClientID {
			t.Fatalf("claims of B's token: %v", c)
		}
	})

	t.Run("last_used_at recorded by B shows in A's list", func(t *testing.T) {
		k := a.CreateKey(t, "acme", "Last use", "visualization_sdk")
		tok := a.AdminToken(t)
		if got, _ := miFindKey(a.ListKeys(t, tok, "acme"), k.ClientID); got.LastUsedAt != nil {
			t.Fatalf("unused key has last_used_at %v", got.LastUsedAt)
		}
		before := b.Clock.Now().Add(-time.Second)
		b.Token(t, k.ClientID, k.ClientSecret, "")
		b.FlushLastUsed(t)
		got, found := miFindKey(a.ListKeys(t, tok, "acme"), k.ClientID)
		if !found || got.LastUsedAt == nil {
			t.Fatal("last_used_at of a key used at B not in A's list after B's next last-used flush")
		}
		if lu := *got.LastUsedAt; lu.Before(before.Truncate(time.Second)) || lu.After(b.Clock.Now().Add(time.Second)) {
			t.Fatalf("last_used_at %v, want about %v", lu, before.Add(time.Second))
		}
	})

	t.Run("deleting through A makes B refuse the key within 1 s", func(t *testing.T) {
		// B has just served this key (a cache, if any, is warm).
		b.Token(t, key.ClientID, key.ClientSecret, "")
		r := a.API(t, a.AdminToken(t), http.MethodDelete, "/v1/teams/acme/keys/"+key.ClientID, nil)
		if r.Status != http.StatusNoContent {
			t.Fatalf("delete through A: %s", r)
		}
		deleted := time.Now()
		form := url.Values{"grant_type": {"client_credentials"}}
		var last servertest.Response
		for {
			// Real time: a cache would hear of the delete over Redis.
			last = b.TokenRequest(t, key.ClientID, key.ClientSecret, form)
			if last.Status != http.StatusOK || time.Since(deleted) > 3*time.Second {
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
		took := time.Since(deleted)
		servertest.CheckOAuthError(t, last, http.StatusUnauthorized, "invalid_client")
		if took >= time.Second {
			t.Fatalf("B still accepted the deleted key %v after the delete through A (limit 1 s)", took)
		}
		t.Logf("B refused the deleted key %v after the delete through A", took.Round(time.Millisecond))
		if _, ok := miFindKey(b.ListKeys(t, b.AdminToken(t), "acme"), key.ClientID); ok {
			t.Fatal("B still lists the deleted key")
		}
	})
}

func testMultiInstanceConcurrentFirstStart(t *testing.T, m miRedis) {
	const n = 10
	// n concurrent first starts, each on its own client and store; any
	// failed start fails the test.
	envs := servertest.StartMany(t, servertest.Config{
		Options:        server.Options{Issuer: miIssuer},
		Backend:        m.backend,
		GeneratedAdmin: true,
	}, n)

	// Exactly one instance generated the admin key.
	var admin server.AdminCredentials
	generated := 0
	for _, e := range envs {
		if a, ok := e.Server.GeneratedAdmin(); ok {
			generated++
			admin = a
		}
	}
	if generated != 1 {
		t.Fatalf("%d of %d concurrent first starts generated an admin key, want exactly 1", generated, n)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st := m.store(t)
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
	keys := m.keys(t)
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
	want := miJWKS(t, envs[0])
	if !strings.Contains(string(want), `"kid":"`+ks.Active.KID+`"`) {
		t.Fatalf("JWKS %s lacks the active kid %s", want, ks.Active.KID)
	}
	for i, e := range envs[1:] {
		if got := miJWKS(t, e); !bytes.Equal(got, want) {
			t.Fatalf("instance %d serves another JWKS:\n%s\nwant\n%s", i+1, got, want)
		}
	}

	// The admin secret was hashed by one instance with the pepper it loaded:
	// every instance verifies it (one pepper), and a key created through
	// each instance authenticates at every other one.
	for i, e := range envs {
		tok := e.AdminToken(t)
		miVerify(t, envs[(i+1)%n], tok)
	}
	creator := envs[n-1]
	k := creator.CreateKey(t, "acme", "Everywhere", "visualization_sdk")
	for i, e := range envs {
		if r := e.TokenRequest(t, k.ClientID, k.ClientSecret, url.Values{"grant_type": {"client_credentials"}}); r.Status != http.StatusOK {
			t.Errorf("instance %d refused a key created through instance %d: %s", i, n-1, r)
		}
	}
}

func testMultiInstanceWrongMasterKey(t *testing.T, m miRedis) {
	a := servertest.StartWith(t, servertest.Config{
		Options:        server.Options{Issuer: miIssuer},
		Backend:        m.backend,
		GeneratedAdmin: true,
	})
	if _, ok := a.Server.GeneratedAdmin(); !ok {
		t.Fatal("first start on a fresh prefix generated no admin key")
	}
	st := m.store(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	before, err := st.SigningKeys(ctx)
	if err != nil {
		t.Fatal(err)
	}

	enc, err := masterkey.Generate()
	if err != nil {
		t.Fatal(err)
	}
	other, err := masterkey.Parse(enc)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.TrySecond(t, server.Options{MasterKey: other}); err == nil {
		t.Fatal("server.New started with a different master key on the same Redis prefix")
	} else {
		if errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("server.New only failed because the context ran out: %v", err)
		}
		msg := err.Error()
		if !strings.Contains(msg, "pepper") || !strings.Contains(msg, "master key") {
			t.Errorf("error %q should say the pepper cannot be read with this master key", msg)
		}
		t.Logf("different master key: %v", err)
	}

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
	a.ListKeys(t, a.AdminToken(t), "acme")
}
