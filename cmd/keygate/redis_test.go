package main

// `keygate serve --store redis`: two real serve instances on one Redis, the
// CLI against them, and the start-up errors of Redis mode.
//
// The Redis comes from KEYGATE_TEST_REDIS_URL (default
// redis://127.0.0.1:6379/15); every test uses a random key prefix and
// deletes its keys afterwards. Without a Redis the tests that need one skip
// loudly, except under CI=true, where they fail.

import (
	"context"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/internal/redistest"
	"github.com/keygate/keygate/masterkey"
	"github.com/keygate/keygate/metrics/metricstest"
)

// redisVars is the environment of the instances of one Redis test: a fresh
// KEYGATE_MASTER_KEY they share.
func redisVars(t *testing.T) map[string]string {
	t.Helper()
	mk, err := masterkey.Generate()
	if err != nil {
		t.Fatal(err)
	}
	return map[string]string{envMasterKey: mk}
}

func redisArgs(dataDir, listen, issuer, redisURL, prefix string) []string {
	args := []string{"--store", "redis", "--redis-url", redisURL, "--redis-prefix", prefix,
		"--data-dir", dataDir, "--listen", listen}
	if issuer != "" {
		args = append(args, "--issuer", issuer)
	}
	return args
}

func redisGetBody(t *testing.T, url string) []byte {
	t.Helper()
	resp, err := httpc.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d %v", url, resp.StatusCode, err)
	}
	return b
}

// The tests that open a Redis store are not parallel: serve sets the Redis
// client's logger, which is global to the process.

func TestServeRedisTwoInstances(t *testing.T) {
	vars := redisVars(t)
	prefix := redistest.Prefix(t, redistest.Require(t), "cmd")
	addrA, addrB := freeAddr(t), freeAddr(t)
	issuer := "http://" + addrA // one issuer for both, as behind a load balancer
	dirA, dirB := t.TempDir(), t.TempDir()

	cfgA, err := loadConfig(t, redisArgs(dirA, addrA, issuer, redistest.URL(), prefix)...)
	if err != nil {
		t.Fatal(err)
	}
	cfgB, err := loadConfig(t, redisArgs(dirB, addrB, issuer, redistest.URL(), prefix)...)
	if err != nil {
		t.Fatal(err)
	}
	if cfgA.Store != "redis" || cfgB.Issuer != issuer {
		t.Fatalf("config: store %q, issuer %q", cfgA.Store, cfgB.Issuer)
	}
	a := startServeWith(t, cfgA, vars)
	b := startServeWith(t, cfgB, vars) // runs alongside A

	// A made the first admin key (into its data dir: stderr is no TTY); B,
	// on the same Redis, made none.
	admin, _ := readAdminFile(t, dirA)
	if _, err := os.Stat(filepath.Join(dirB, adminCredentialsFile)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("B wrote admin credentials too (stat: %v): a second admin key", err)
	}
	if strings.Contains(b.log.String(), firstAdminLog) {
		t.Fatalf("B logged a generated admin key:\n%s", b.log)
	}
	// The master key came from the environment: no key file anywhere.
	for _, d := range []string{dirA, dirB} {
		if _, err := os.Stat(filepath.Join(d, masterkey.FileName)); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("a master key file was written into %s in Redis mode (stat: %v)", d, err)
		}
	}
	for _, r := range []*running{a, b} {
		if st := getStatus(t, r.base+"/readyz"); st != http.StatusOK {
			t.Fatalf("%s/readyz = %d", r.base, st)
		}
	}

	secretFile := filepath.Join(t.TempDir(), "admin-secret")
	if err := os.WriteFile(secretFile, []byte(admin.ClientSecret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cli := func(base string, sub string, rest ...string) []string {
		return append([]string{"keys", sub, "--url", base, "--client-id", admin.ClientID, "--client-secret-file", secretFile}, rest...)
	}

	// Created with the CLI through A ...
	out, stderr, err := run(t, cli(a.base, "create", "--team", "acme", "--name", "Production sync", "--permission", "accounting_api")...)
	if err != nil {
		t.Fatalf("keys create via A: %v (stderr %q)", err, stderr)
	}
	id := clientIDRe.FindString(out)
	m := regexp.MustCompile(`client_secret: (kgs_\S+)`).FindStringSubmatch(out)
	if id == "" || m == nil {
		t.Fatalf("create output lacks the client ID or secret:\n%s", out)
	}
	secret := m[1]

	// ... gets a token at B, signed with the shared key: it verifies with
	// A's JWKS and B's, which are the same bytes.
	tok := teamToken(t, b.base, id, secret)
	_, claims := verifyWithJWKS(t, a.base, tok)
	if claims.Iss != issuer || claims.ClientID != id || claims.TeamID != "acme" {
		t.Fatalf("claims of B's token: %+v", claims)
	}
	verifyWithJWKS(t, b.base, teamToken(t, a.base, id, secret))
	if ja, jb := redisGetBody(t, a.base+"/.well-known/jwks.json"), redisGetBody(t, b.base+"/.well-known/jwks.json"); string(ja) != string(jb) {
		t.Fatalf("JWKS differ:\nA: %s\nB: %s", ja, jb)
	}

	// The CLI lists it through B (B accepts its own admin token for a key
	// that A generated).
	out, _, err = run(t, cli(b.base, "list", "--team", "acme")...)
	if err != nil {
		t.Fatalf("keys list via B: %v", err)
	}
	for _, want := range []string{id, "Production sync", "accounting_api", "1 of 5 keys used"} {
		if !strings.Contains(out, want) {
			t.Errorf("list via B lacks %q:\n%s", want, out)
		}
	}

	// Deleted through B, refused at A within 1 s (A may hold the key in its
	// cache until B's invalidation message arrives: milliseconds).
	if _, _, err := run(t, cli(b.base, "delete", "--team", "acme", id)...); err != nil {
		t.Fatalf("keys delete via B: %v", err)
	}
	deleted := time.Now()
	for {
		resp, err := httpc.PostForm(a.base+"/oauth/token", map[string][]string{
			"grant_type": {"client_credentials"}, "client_id": {id}, "client_secret": {secret}})
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode == http.StatusUnauthorized {
			t.Logf("A refused the deleted key %v after the delete", time.Since(deleted))
			break
		}
		if time.Since(deleted) > time.Second {
			t.Fatalf("A still answered %d %v after the key was deleted through B, want 401 within 1 s", resp.StatusCode, time.Since(deleted))
		}
		time.Sleep(10 * time.Millisecond)
	}

	for name, r := range map[string]*running{"A": a, "B": b} {
		if err := r.stop(t); err != nil {
			t.Errorf("instance %s: graceful stop returned %v, want nil\nlog:\n%s", name, err, r.log)
		}
		if strings.Contains(r.log.String(), admin.ClientSecret) || strings.Contains(r.log.String(), secret) {
			t.Errorf("instance %s logged a secret", name)
		}
	}
}

func TestServeRedisAdminFromEnvOnBothInstances(t *testing.T) {
	vars := redisVars(t)
	prefix := redistest.Prefix(t, redistest.Require(t), "cmd")
	out, _, err := run(t, "secret", "generate")
	if err != nil {
		t.Fatal(err)
	}
	adminSecret := strings.TrimSpace(out)
	vars[envAdminClientID] = "ops-admin"
	vars[envAdminClientSecret] = adminSecret

	addrA, addrB := freeAddr(t), freeAddr(t)
	issuer := "https://auth.example.test"
	var rs []*running
	for _, addr := range []string{addrA, addrB} {
		dir := t.TempDir()
		cfg, err := loadConfig(t, redisArgs(dir, addr, issuer, redistest.URL(), prefix)...)
		if err != nil {
			t.Fatal(err)
		}
		rs = append(rs, startServeWith(t, cfg, vars))
		if _, err := os.Stat(filepath.Join(dir, adminCredentialsFile)); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("admin credentials file written although the admin came from the environment (stat: %v)", err)
		}
	}
	a, b := rs[0], rs[1]
	// The CLI reads the admin credentials from the same environment.
	out, _, err = runWith(t, vars, "keys", "create", "--url", a.base, "--team", "acme", "--name", "Env admin", "--permission", "visualization_sdk")
	if err != nil {
		t.Fatalf("keys create via A: %v", err)
	}
	id := clientIDRe.FindString(out)
	m := regexp.MustCompile(`client_secret: (kgs_\S+)`).FindStringSubmatch(out)
	if id == "" || m == nil {
		t.Fatalf("create output:\n%s", out)
	}
	teamToken(t, b.base, id, m[1])
	if out, _, err = runWith(t, vars, "keys", "list", "--url", b.base, "--team", "acme"); err != nil || !strings.Contains(out, id) {
		t.Fatalf("keys list via B: %v\n%s", err, out)
	}
	for _, r := range rs {
		if err := r.stop(t); err != nil {
			t.Errorf("graceful stop: %v", err)
		}
	}
}

func TestServeRedisRequiresMasterKey(t *testing.T) {
	t.Parallel() // the check comes before the Redis client is made
	dir := t.TempDir()
	addr := freeAddr(t)
	// The Redis is never contacted: the check comes first.
	cfg, err := loadConfig(t, redisArgs(dir, addr, "http://"+addr, "redis://127.0.0.1:1/0", "keygate:")...)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	e := testEnv(nil)
	e.stderr = &syncBuffer{}
	err = serve(ctx, cfg, e, storeBackends)
	if err == nil || ctx.Err() != nil {
		t.Fatalf("serve --store redis without %s: %v", envMasterKey, err)
	}
	if !strings.Contains(err.Error(), envMasterKey) {
		t.Fatalf("error %q does not name %s", err, envMasterKey)
	}
	if _, err := os.Stat(filepath.Join(dir, masterkey.FileName)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a master key was generated into the data dir instead (stat: %v)", err)
	}

	// The same through the command line.
	_, _, err = run(t, append([]string{"serve"}, redisArgs(dir, addr, "http://"+addr, "redis://127.0.0.1:1/0", "keygate:")...)...)
	if err == nil || !strings.Contains(err.Error(), envMasterKey) {
		t.Fatalf("keygate serve --store redis without %s: %v", envMasterKey, err)
	}
}

func TestServeRedisRequiresIssuer(t *testing.T) {
	t.Parallel()
	addr := freeAddr(t)
	_, err := loadConfig(t, redisArgs(t.TempDir(), addr, "", "redis://127.0.0.1:6379/0", "keygate:")...)
	if err == nil || !strings.Contains(err.Error(), "issuer is required with store redis") {
		t.Fatalf("store redis without an issuer: %v", err)
	}
	// KEYGATE_STORE from the environment is held to the same rule.
	_, err = loadConfigWith(t, map[string]string{"KEYGATE_STORE": "redis", "KEYGATE_REDIS_URL": "redis://127.0.0.1:6379/0"}, "--listen", addr)
	if err == nil || !strings.Contains(err.Error(), "issuer is required with store redis") {
		t.Fatalf("KEYGATE_STORE=redis without an issuer: %v", err)
	}
}

func TestServeRedisUnreachable(t *testing.T) {
	vars := redisVars(t)
	closed := freeAddr(t) // nothing listens there any more
	redisURL := "redis://:hunter2@" + closed + "/0"
	addr := freeAddr(t)
	cfg, err := loadConfig(t, redisArgs(t.TempDir(), addr, "http://"+addr, redisURL, "keygate:")...)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	var log syncBuffer
	e := testEnv(vars)
	e.stderr = &log
	start := time.Now()
	err = serve(ctx, cfg, e, storeBackends)
	took := time.Since(start)
	if err == nil {
		t.Fatal("serve started without a reachable Redis")
	}
	if ctx.Err() != nil || took > 5*time.Second {
		t.Fatalf("serve took %v to give up on an unreachable Redis (want a few seconds): %v", took, err)
	}
	if strings.Contains(err.Error(), "hunter2") || strings.Contains(log.String(), "hunter2") {
		t.Fatalf("the Redis password appears in the error or log: %v\nlog:\n%s", err, log.String())
	}
	if !strings.Contains(err.Error(), closed) {
		t.Errorf("error %q does not say which Redis (%s) could not be reached", err, closed)
	}
	t.Logf("unreachable Redis after %v: %v", took.Round(time.Millisecond), err)
	// Nothing answers on the port.
	if _, err := httpc.Get("http://" + addr + "/healthz"); err == nil {
		t.Error("something serves on the port after the refused start")
	}
}

// On Redis with metrics_listen, every key read of the token path shows
// twice: as a store get_key on backend redis, and as one key-cache read
// (hit, miss, or bypassed while the cache's subscription is unconfirmed).
func TestServeRedisMetrics(t *testing.T) {
	vars := redisVars(t)
	prefix := redistest.Prefix(t, redistest.Require(t), "cmd")
	addr, maddr, dir := freeAddr(t), freeAddr(t), t.TempDir()
	cfg, err := loadConfig(t, append(redisArgs(dir, addr, "http://"+addr, redistest.URL(), prefix), "--metrics-listen", maddr)...)
	if err != nil {
		t.Fatal(err)
	}
	r := startServeWith(t, cfg, vars)
	admin, _ := readAdminFile(t, dir)
	scrapeURL := "http://" + maddr + "/metrics"
	getKey := map[string]string{"operation": "get_key", "backend": "redis"}
	reads := func(s metricstest.Scrape) float64 {
		return s.Value("keygate_redis_key_cache_requests_total", nil)
	}
	before := metricstest.Get(t, scrapeURL)
	const tokens = 3
	for range tokens {
		req, err := http.NewRequest(http.MethodPost, r.base+"/oauth/token", strings.NewReader("grant_type=client_credentials"))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.SetBasicAuth(admin.ClientID, admin.ClientSecret)
		resp, err := httpc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("admin token: %d", resp.StatusCode)
		}
	}
	after := metricstest.Get(t, scrapeURL)
	gets := after.Value("keygate_store_operation_duration_seconds", getKey) - before.Value("keygate_store_operation_duration_seconds", getKey)
	if gets < tokens {
		t.Errorf("get_key on redis observed %v times for %d tokens", gets, tokens)
	}
	if d := reads(after) - reads(before); d != gets {
		t.Errorf("key-cache reads moved by %v, store get_key by %v: every read goes through the cache", d, gets)
	}
	if d := after.Value("keygate_token_requests_total", map[string]string{"outcome": "issued"}) - before.Value("keygate_token_requests_total", map[string]string{"outcome": "issued"}); d != tokens {
		t.Errorf("issued tokens counted %v, want %d", d, tokens)
	}
}
