package redis_test

// Faults with a real keygate on a throwaway redis-server: a crash (SIGKILL)
// with AOF + appendfsync always, and a hang (SIGSTOP). keygate must answer
// 503 promptly while Redis is gone, never invalid_client for a valid key,
// and recover without a restart once Redis is back — with every
// acknowledged create still there and nothing unacknowledged half-written.

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/keygate/keygate/store/redis"
)

const (
	// storeTimeout is redis.Options.Timeout in these tests (the default).
	storeTimeout = time.Second
	// answerBound is how long a request may take while Redis is down:
	// the store timeout plus slack for scheduling under -race.
	answerBound = 1500 * time.Millisecond
	// recoverBound is how long keygate may take to notice Redis is back.
	recoverBound = 10 * time.Second
)

type createdKey struct{ team, id, secret string }

// openFaultStore opens the Redis store on p exactly as keygate would.
func openFaultStore(t *testing.T, p *redisProc) *redis.Store {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	st, err := redis.Open(ctx, redis.Options{URL: "redis://" + p.Addr() + "/0", Prefix: "kg:", Timeout: storeTimeout})
	if err != nil {
		t.Fatalf("redis.Open: %v", err)
	}
	t.Cleanup(func() { st.Close() }) // registered before keygate's: closed after it
	return st
}

// assertTokenUnavailable: a valid key's token request while Redis is gone
// is 503 temporarily_unavailable, promptly.
func assertTokenUnavailable(t *testing.T, kg *keygate, k createdKey, what string) {
	t.Helper()
	a := kg.token(k.id, k.secret)
	if a.Status == http.StatusUnauthorized || a.str("error") == "invalid_client" {
		t.Fatalf("%s: valid key %s got %d %s — a store outage must never look like bad credentials", what, k.id, a.Status, a.Raw)
	}
	if a.Status != http.StatusServiceUnavailable || a.str("error") != "temporarily_unavailable" {
		t.Fatalf("%s: token for valid key: got %d %s, want 503 {\"error\":\"temporarily_unavailable\"}", what, a.Status, a.Raw)
	}
	if ct := a.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("%s: token 503 Content-Type %q, want application/json", what, ct)
	}
	if a.Elapsed > answerBound {
		t.Fatalf("%s: token 503 took %v, want ≤ %v (store timeout %v)", what, a.Elapsed, answerBound, storeTimeout)
	}
	t.Logf("%s: token → 503 temporarily_unavailable in %v", what, a.Elapsed.Round(time.Millisecond))
}

func assertReadyzUnavailable(t *testing.T, kg *keygate, what string) {
	t.Helper()
	a := kg.readyz()
	if a.Status != http.StatusServiceUnavailable {
		t.Fatalf("%s: /readyz got %d %s, want 503", what, a.Status, a.Raw)
	}
	if a.Elapsed > answerBound {
		t.Fatalf("%s: /readyz 503 took %v, want ≤ %v", what, a.Elapsed, answerBound)
	}
	t.Logf("%s: /readyz → 503 in %v", what, a.Elapsed.Round(time.Millisecond))
}

func assertProblemUnavailable(t *testing.T, a answer, what string) {
	t.Helper()
	if a.Status != http.StatusServiceUnavailable || a.str("type") != "urn:keygate:problem:unavailable" {
		t.Fatalf("%s: got %d %s, want 503 urn:keygate:problem:unavailable", what, a.Status, a.Raw)
	}
	if ct := a.Header.Get("Content-Type"); ct != "application/problem+json" {
		t.Errorf("%s: Content-Type %q, want application/problem+json", what, ct)
	}
	if a.Elapsed > answerBound {
		t.Fatalf("%s: 503 took %v, want ≤ %v", what, a.Elapsed, answerBound)
	}
	t.Logf("%s → 503 problem in %v", what, a.Elapsed.Round(time.Millisecond))
}

// waitReady polls /readyz until 200, at most recoverBound.
func waitReady(t *testing.T, kg *keygate) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		a := kg.readyz()
		if a.Status == http.StatusOK {
			return time.Since(start)
		}
		if time.Since(start) > recoverBound {
			t.Fatalf("/readyz still %d %s %v after Redis came back: keygate did not recover without a restart", a.Status, a.Raw, recoverBound)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestRedisCrashAndRecovery(t *testing.T) {
	p := startRedis(t, "--appendonly", "yes", "--appendfsync", "always")
	st := openFaultStore(t, p)
	kg := startKeygate(t, st, nil)
	adminTok := kg.adminToken()

	// Acknowledged creates: every 201 must survive the crash.
	var acked []createdKey
	for i := range 6 {
		team := []string{"team-a", "team-b"}[i%2]
		a := kg.createKey(adminTok, team, fmt.Sprintf("key %d", i))
		if a.Status != http.StatusCreated {
			t.Fatalf("create key %d: %d %s", i, a.Status, a.Raw)
		}
		acked = append(acked, createdKey{team: team, id: a.str("client_id"), secret: a.str("client_secret")})
	}
	valid := acked[0]
	if a := kg.token(valid.id, valid.secret); a.Status != http.StatusOK {
		t.Fatalf("token before the crash: %d %s", a.Status, a.Raw)
	}

	// Crash: no shutdown, no final fsync.
	p.Kill()
	for i := range 3 {
		assertTokenUnavailable(t, kg, valid, fmt.Sprintf("Redis killed, request %d", i+1))
	}
	assertTokenUnavailable(t, kg, createdKey{id: kg.AdminID, secret: kg.AdminSecret}, "Redis killed, admin key")
	assertReadyzUnavailable(t, kg, "Redis killed")
	assertProblemUnavailable(t, kg.listKeys(adminTok, "team-a"), "Redis killed: GET /v1/teams/team-a/keys")
	// A create while Redis is down is refused — and must leave nothing.
	assertProblemUnavailable(t, kg.createKey(adminTok, "team-a", "never acknowledged"), "Redis killed: POST /v1/teams/team-a/keys")
	assertProblemUnavailable(t, kg.createKey(adminTok, "team-c", "never acknowledged"), "Redis killed: POST /v1/teams/team-c/keys")

	// Same dir, same port, same AOF; keygate keeps running.
	restarted := time.Now()
	p.Restart()
	took := waitReady(t, kg)
	t.Logf("Redis restarted on the same port and dir; /readyz 200 after %v (Redis up in %v)", took.Round(time.Millisecond), (time.Since(restarted) - took).Round(time.Millisecond))

	if a := kg.token(valid.id, valid.secret); a.Status != http.StatusOK || a.str("access_token") == "" {
		t.Fatalf("token after recovery: %d %s", a.Status, a.Raw)
	}
	// The admin token from before the crash still works (JWT, and the
	// admin key survived), so the management API is back too.
	for _, team := range []string{"team-a", "team-b", "team-c"} {
		var want []string
		for _, k := range acked {
			if k.team == team {
				want = append(want, k.id)
			}
		}
		got := listedIDs(t, kg.listKeys(adminTok, team))
		slices.Sort(got) // same-millisecond creates list by client ID
		slices.Sort(want)
		if !slices.Equal(got, want) && !(len(got) == 0 && len(want) == 0) {
			t.Errorf("team %s after the crash: listed %v, want exactly the acknowledged %v", team, got, want)
		}
	}
	// Every acknowledged key still authenticates: secret hashes survived.
	for _, k := range acked {
		if a := kg.token(k.id, k.secret); a.Status != http.StatusOK {
			t.Errorf("token for acknowledged key %s after recovery: %d %s", k.id, a.Status, a.Raw)
		}
	}

	// Nothing half-written in Redis itself: exactly the acknowledged keys
	// plus the admin key, in either layout (compact.go), and the old team
	// indexes list exactly the old-layout ones.
	rc := goredis.NewClient(&goredis.Options{Addr: p.Addr(), DialTimeout: time.Second, ReadTimeout: time.Second})
	defer rc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	names, err := scanAll(ctx, rc, "kg:{*}:key:*")
	if err != nil {
		t.Fatal(err)
	}
	buckets, err := scanAll(ctx, rc, "kg:{*}:k")
	if err != nil {
		t.Fatal(err)
	}
	records := 0
	for _, b := range buckets {
		for _, f := range rc.HKeys(ctx, b).Val() {
			if f[0] != 0 { // a record's first chunk, not a later one
				records++
			}
		}
	}
	if want := len(acked) + 1; len(names)+records != want {
		t.Errorf("Redis holds %d old key hashes and %d compact records after recovery, want %d in all (acknowledged + admin): %v", len(names), records, want, names)
	}
	indexes, err := scanAll(ctx, rc, "kg:{*}:team:*")
	if err != nil {
		t.Fatal(err)
	}
	total := int64(0)
	for _, ix := range indexes {
		total += rc.ZCard(ctx, ix).Val()
	}
	if total != int64(len(names)) {
		t.Errorf("old team indexes list %d keys in all (%v), want %d (the old key hashes)", total, indexes, len(names))
	}
}

// TestRedisHangTimesOut freezes Redis (SIGSTOP): connections stay open but
// nothing answers, so only the timeouts keep keygate from hanging.
func TestRedisHangTimesOut(t *testing.T) {
	p := startRedis(t)
	st := openFaultStore(t, p)
	kg := startKeygate(t, st, nil)
	adminTok := kg.adminToken()
	a := kg.createKey(adminTok, "team-a", "hang")
	if a.Status != http.StatusCreated {
		t.Fatalf("create: %d %s", a.Status, a.Raw)
	}
	valid := createdKey{team: "team-a", id: a.str("client_id"), secret: a.str("client_secret")}
	if a := kg.token(valid.id, valid.secret); a.Status != http.StatusOK {
		t.Fatalf("token before the hang: %d %s", a.Status, a.Raw)
	}

	p.Stop()
	resumed := false
	t.Cleanup(func() {
		if !resumed {
			p.Cont() // let keygate's final flush fail fast rather than time out
		}
	})
	for i := range 2 {
		assertTokenUnavailable(t, kg, valid, fmt.Sprintf("Redis frozen, request %d", i+1))
	}
	assertReadyzUnavailable(t, kg, "Redis frozen")
	assertProblemUnavailable(t, kg.listKeys(adminTok, "team-a"), "Redis frozen: GET /v1/teams/team-a/keys")

	p.Cont()
	resumed = true
	took := waitReady(t, kg)
	t.Logf("Redis resumed; /readyz 200 after %v", took.Round(time.Millisecond))
	if a := kg.token(valid.id, valid.secret); a.Status != http.StatusOK {
		t.Fatalf("token after the hang: %d %s", a.Status, a.Raw)
	}
	if got := listedIDs(t, kg.listKeys(adminTok, "team-a")); !slices.Equal(got, []string{valid.id}) {
		t.Fatalf("list after the hang: %v, want [%s]", got, valid.id)
	}
}

func scanAll(ctx context.Context, c goredis.Cmdable, pattern string) ([]string, error) {
	var out []string
	iter := c.Scan(ctx, 0, pattern, 1000).Iterator()
	for iter.Next(ctx) {
		out = append(out, iter.Val())
	}
	return out, iter.Err()
}

// TestRedisHangWithKeyCache is the hang with the key cache on. The cache
// can serve a key only while its subscription answers; a frozen Redis stops
// answering the cache's pings, so within two ping intervals the cache is
// dropped and token requests go to Redis, which times out: 503. Until then
// the cached key may still get tokens (it was valid a moment ago), but never
// invalid_client, and never for longer than the bound below.
func TestRedisHangWithKeyCache(t *testing.T) {
	p := startRedis(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	st, err := redis.Open(ctx, redis.Options{URL: "redis://" + p.Addr() + "/0", Prefix: "kg:", Timeout: storeTimeout, KeyCache: 10 * time.Second})
	if err != nil {
		t.Fatalf("redis.Open: %v", err)
	}
	t.Cleanup(func() { st.Close() })
	kg := startKeygate(t, st, nil)
	waitCacheLive := func(what string) {
		t.Helper()
		for deadline := time.Now().Add(recoverBound); !st.KeyCacheLive(); time.Sleep(20 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("%s: key cache not live after %v", what, recoverBound)
			}
		}
	}
	waitCacheLive("start")
	adminTok := kg.adminToken()
	a := kg.createKey(adminTok, "team-a", "hang")
	if a.Status != http.StatusCreated {
		t.Fatalf("create: %d %s", a.Status, a.Raw)
	}
	valid := createdKey{team: "team-a", id: a.str("client_id"), secret: a.str("client_secret")}
	for range 2 { // the first reads Redis and fills the cache
		if a := kg.token(valid.id, valid.secret); a.Status != http.StatusOK {
			t.Fatalf("token before the hang: %d %s", a.Status, a.Raw)
		}
	}

	p.Stop()
	frozen := time.Now()
	resumed := false
	t.Cleanup(func() {
		if !resumed {
			p.Cont()
		}
	})
	// Two unanswered pings (2 × 500 ms) drop the cache; then one store
	// timeout; plus a second of slack for -race on a busy machine.
	const bound = 2*time.Second + storeTimeout + time.Second
	served := 0
	for {
		a := kg.token(valid.id, valid.secret)
		if a.Status == http.StatusServiceUnavailable && a.str("error") == "temporarily_unavailable" {
			t.Logf("Redis frozen: %d token(s) served from the cache, then 503 at %v", served, time.Since(frozen).Round(time.Millisecond))
			break
		}
		if a.Status != http.StatusOK {
			t.Fatalf("Redis frozen: token for a valid, cached key: %d %s (want 200 from the cache or 503)", a.Status, a.Raw)
		}
		served++
		if time.Since(frozen) > bound {
			t.Fatalf("Redis frozen for %v and the cache still serves key %s: a hung Redis must stop the cache within %v", time.Since(frozen).Round(time.Millisecond), valid.id, bound)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if st.KeyCacheLive() {
		t.Fatal("Redis frozen: the key cache still reports itself live")
	}
	assertTokenUnavailable(t, kg, valid, "Redis frozen, cache dropped")

	p.Cont()
	resumed = true
	took := waitReady(t, kg)
	waitCacheLive("after the hang")
	t.Logf("Redis resumed; /readyz 200 after %v, cache live again", took.Round(time.Millisecond))
	if a := kg.token(valid.id, valid.secret); a.Status != http.StatusOK {
		t.Fatalf("token after the hang: %d %s", a.Status, a.Raw)
	}
}
