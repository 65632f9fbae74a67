//go:build soak

package main

// The soak (#14 item 10): the built keygate binary, serving on loopback
// with the embedded store, takes a minute of valid and hostile traffic at
// the highest rate this machine allows; afterwards, once idle and
// collected, its goroutines, open file descriptors and heap are back near
// where they were after warm-up, and no secret or token of the run is in
// any line it logged, nor a secret in any answer but the one that returned
// it. Not run in CI (it takes about two minutes); run it with
//
//	go test -tags soak -run TestSoak -v -timeout 15m ./cmd/keygate/
//
// KEYGATE_SOAK_DURATION and KEYGATE_SOAK_IDLE (Go durations) shorten the
// traffic (default 60s) and the idle wait after it (default 30s) while
// working on the test itself.

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"hash/maphash"
	"io"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/keygate/keygate/config"
	"github.com/keygate/keygate/credential"
)

const (
	soakWarmup   = 5 * time.Second
	soakSettle   = 12 * time.Second // longer than the server's read timeout, so warm-up's slow connections are gone
	soakValidKey = 6                // keys whose token requests must all succeed
	soakVictims  = 4                // keys that only ever see wrong secrets
	soakTeam     = "soak"
	soakMaxBody  = 1 << 20
)

// Allowed answers per kind of traffic. Hostile kinds may also meet the
// failed-authentication throttle (429); nothing may answer 5xx.
var soakExpect = map[string][]int{
	"token":            {200},
	"introspect-own":   {200},
	"revoke-own":       {200, 429},
	"introspect-after": {200},
	"introspect-junk":  {200, 429},
	"wrong-secret":     {401, 429},
	"unknown-id":       {401, 429},
	"malformed-form":   {400, 401, 405, 415, 429},
	"oversized":        {400, 413, 431, 429},
	"garbage-bearer":   {401, 403, 429},
	"bad-json":         {400, 404, 409, 415, 429},
	"churn-create":     {201},
	"churn-rotate":     {200},
	"churn-token-new":  {200},
	"churn-token-old":  {401, 429},
	"churn-delete":     {204},
	"churn-token-gone": {401, 429},
}

// soakRun is what the traffic recorded: answers by kind and status, what
// went wrong, and every secret and token the run saw.
type soakRun struct {
	mu         sync.Mutex
	counts     map[string]map[string]int // kind → status (or "transport") → n
	unexpected []string                  // the first few unexpected answers
	nUnexpect  int
	bodyLeaks  []string
	secrets    map[string]bool     // every kgs_ string sent or received
	tokenParts map[uint64]struct{} // hashes of every issued token's jti, payload and signature
	seed       maphash.Seed
	tokens     atomic.Int64
}

func newSoakRun() *soakRun {
	return &soakRun{
		counts: map[string]map[string]int{}, secrets: map[string]bool{},
		tokenParts: map[uint64]struct{}{}, seed: maphash.MakeSeed(),
	}
}

func (r *soakRun) addSecret(s string) {
	r.mu.Lock()
	r.secrets[s] = true
	r.mu.Unlock()
}

// addToken records an issued token's parts; the log scan looks each word of
// the log up in them.
func (r *soakRun) addToken(tok string) {
	parts := strings.Split(tok, ".")
	var claims struct {
		JTI string `json:"jti"`
	}
	if len(parts) == 3 {
		if b, err := base64.RawURLEncoding.DecodeString(parts[1]); err == nil {
			json.Unmarshal(b, &claims)
		}
	}
	r.mu.Lock()
	for _, p := range []string{tok, parts[len(parts)-1], parts[min(1, len(parts)-1)], claims.JTI} {
		if p != "" {
			r.tokenParts[maphash.String(r.seed, p)] = struct{}{}
		}
	}
	r.mu.Unlock()
	r.tokens.Add(1)
}

// record counts one answer and checks its body: no secret in it unless it
// is the create or rotate answer that returns one (secretOK), and then only
// that one.
func (r *soakRun) record(kind string, status int, err error, body []byte, secretOK bool) {
	outcome := strconv.Itoa(status)
	if err != nil {
		outcome = "transport"
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	m := r.counts[kind]
	if m == nil {
		m = map[string]int{}
		r.counts[kind] = m
	}
	m[outcome]++
	if err != nil || !slices.Contains(soakExpect[kind], status) {
		r.nUnexpect++
		if len(r.unexpected) < 20 {
			detail := string(body)
			if err != nil {
				detail = err.Error()
			}
			r.unexpected = append(r.unexpected, fmt.Sprintf("%s: %s: %.300s", kind, outcome, detail))
		}
	}
	if n := bytes.Count(body, []byte(credential.SecretPrefix)); n > 0 && (!secretOK || n > 1) {
		if len(r.bodyLeaks) < 20 {
			r.bodyLeaks = append(r.bodyLeaks, fmt.Sprintf("%s (%d): %.300s", kind, status, body))
		}
	}
}

// soakKey is a key's client ID and secret.
type soakKey struct{ ID, Secret string }

// soakServer is a running keygate serve process.
type soakServer struct {
	url, metrics, pprof string
	logPath             string
	cmd                 *exec.Cmd
	exited              chan error
}

func TestSoak(t *testing.T) {
	duration := soakEnvDuration(t, "KEYGATE_SOAK_DURATION", 60*time.Second)
	idle := soakEnvDuration(t, "KEYGATE_SOAK_IDLE", 30*time.Second)

	dir := t.TempDir()
	bin := filepath.Join(dir, "keygate")
	build := exec.Command("go", "build", "-o", bin, ".")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	adminID, adminSecret := "soak-admin", soakSecret(t)
	srv := startSoakServer(t, bin, dir, adminID, adminSecret)
	run := newSoakRun()
	run.addSecret(adminSecret)

	hc := soakClient(64)
	admin := &soakAdmin{url: srv.url, id: adminID, secret: adminSecret, hc: hc, run: run}
	admin.refresh(t)

	valid := make([]soakKey, soakValidKey)
	for i := range valid {
		valid[i] = admin.create(t, fmt.Sprintf("%s-%d", soakTeam, i%3), "valid "+strconv.Itoa(i))
	}
	victims := make([]soakKey, soakVictims)
	for i := range victims {
		victims[i] = admin.create(t, soakTeam+"-victims", "victim "+strconv.Itoa(i))
	}
	tr := &soakTraffic{url: srv.url, hc: hc, run: run, admin: admin, valid: valid, victims: victims}

	// Warm-up: every kind of traffic for a few seconds, so whatever the
	// server makes once (pools, caches, the status list) exists; then every
	// connection closed and a wait longer than the server's read timeout.
	tr.drive(t, soakWarmup)
	hc.CloseIdleConnections()
	time.Sleep(soakSettle)
	base := srv.sample(t)
	t.Logf("baseline after warm-up: %s", base)

	warmCounts := run.total()
	start := time.Now()
	tr.drive(t, duration)
	elapsed := time.Since(start)
	hc.CloseIdleConnections()
	busy := srv.sample(t) // not collected: how far it went under load
	t.Logf("right after the traffic: %s", busy)

	time.Sleep(idle)
	after := srv.sample(t)
	t.Logf("after %s idle and a GC: %s", idle, after)

	total := run.total() - warmCounts
	t.Logf("traffic: %d requests in %s (%.0f/s), %d tokens issued in the whole run; answers by kind, warm-up included:",
		total, elapsed.Round(time.Millisecond), float64(total)/elapsed.Seconds(), run.tokens.Load())
	kinds := slices.Sorted(func(yield func(string) bool) {
		for k := range run.counts {
			if !yield(k) {
				return
			}
		}
	})
	for _, k := range kinds {
		t.Logf("  %-17s %v", k, run.counts[k])
	}
	t.Logf("slow connections opened: %d", tr.slowConns.Load())

	if run.nUnexpect > 0 {
		t.Errorf("%d unexpected answers; the first:\n%s", run.nUnexpect, strings.Join(run.unexpected, "\n"))
	}
	if len(run.bodyLeaks) > 0 {
		t.Errorf("a secret in an answer other than the create or rotate that returned it:\n%s", strings.Join(run.bodyLeaks, "\n"))
	}
	if n := run.counts["token"]["200"]; n == 0 {
		t.Error("no valid token request succeeded")
	}
	// Malformed management bodies changed nothing: the team they were all
	// sent for still has no key.
	if n := admin.keyCount(t, soakTeam+"-badjson"); n != 0 {
		t.Errorf("bad JSON left %d keys in its team", n)
	}

	if after.goroutines > base.goroutines+5 {
		t.Errorf("goroutines: %d after, %d at baseline (allowed: baseline + 5)", after.goroutines, base.goroutines)
	}
	if after.fds > base.fds+5 {
		t.Errorf("open fds: %d after, %d at baseline (allowed: baseline + 5)", after.fds, base.fds)
	}
	if float64(after.heapInuse) > 1.2*float64(base.heapInuse) {
		t.Errorf("heap in use: %d after, %d at baseline (allowed: 1.2 × baseline)", after.heapInuse, base.heapInuse)
	}

	srv.stop(t)
	tr.closeSlow()
	soakScanLog(t, srv.logPath, run)
}

// soakSample is what the metrics listener says, after a forced GC.
type soakSample struct {
	goroutines, fds     int
	heapInuse, rss      int64
	heapObjects, allocs int64
}

func (s soakSample) String() string {
	return fmt.Sprintf("goroutines %d, open fds %d, heap in use %.2f MiB (%d objects), RSS %.2f MiB",
		s.goroutines, s.fds, float64(s.heapInuse)/(1<<20), s.heapObjects, float64(s.rss)/(1<<20))
}

func (s *soakServer) sample(t *testing.T) soakSample {
	t.Helper()
	c := &http.Client{Timeout: 30 * time.Second}
	// pprof's heap profile with gc=1 runs a collection first
	// (net/http/pprof); twice, so finalizers queued by the first have run.
	for range 2 {
		resp, err := c.Get(s.pprof + "/debug/pprof/heap?gc=1")
		if err != nil {
			t.Fatalf("force a GC: %v", err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	resp, err := c.Get(s.metrics + "/metrics")
	if err != nil {
		t.Fatalf("metrics: %v", err)
	}
	defer resp.Body.Close()
	val := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		name, v, ok := strings.Cut(sc.Text(), " ")
		if !ok || strings.HasPrefix(name, "#") {
			continue
		}
		f, err := strconv.ParseFloat(v, 64)
		if err == nil {
			val[name] = f
		}
	}
	for _, name := range []string{"go_goroutines", "process_open_fds", "go_memstats_heap_inuse_bytes", "process_resident_memory_bytes"} {
		if _, ok := val[name]; !ok {
			t.Fatalf("metrics have no %s", name)
		}
	}
	c.CloseIdleConnections()
	return soakSample{
		goroutines: int(val["go_goroutines"]), fds: int(val["process_open_fds"]),
		heapInuse: int64(val["go_memstats_heap_inuse_bytes"]), rss: int64(val["process_resident_memory_bytes"]),
		heapObjects: int64(val["go_memstats_heap_objects"]),
	}
}

func startSoakServer(t *testing.T, bin, dir, adminID, adminSecret string) *soakServer {
	t.Helper()
	addr, maddr, paddr := freeAddr(t), freeAddr(t), freeAddr(t)
	mk := make([]byte, 32)
	rand.Read(mk)
	s := &soakServer{url: "http://" + addr, metrics: "http://" + maddr, pprof: "http://" + paddr,
		logPath: filepath.Join(dir, "serve.log"), exited: make(chan error, 1)}
	logf, err := os.Create(s.logPath)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { logf.Close() })
	// Everything logged that can be: debug level, an access line for every
	// request, so a secret or token that reached a log line is found.
	s.cmd = exec.Command(bin, "serve", "--listen", addr, "--issuer", s.url, "--data-dir", filepath.Join(dir, "data"),
		"--metrics-listen", maddr, "--pprof-listen", paddr, "--max-keys-per-team", "50",
		"--log-level", "debug", "--access-log", "all", "--access-log-oauth", "all")
	s.cmd.Env = slices.DeleteFunc(os.Environ(), func(kv string) bool { return strings.HasPrefix(kv, config.EnvPrefix) })
	s.cmd.Env = append(s.cmd.Env, envMasterKey+"="+base64.StdEncoding.EncodeToString(mk),
		envAdminClientID+"="+adminID, envAdminClientSecret+"="+adminSecret)
	s.cmd.Stdout, s.cmd.Stderr = logf, logf
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { s.exited <- s.cmd.Wait() }()
	t.Cleanup(func() {
		if s.cmd.ProcessState == nil {
			s.cmd.Process.Kill()
			<-s.exited
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(s.url + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return s
			}
		}
		select {
		case err := <-s.exited:
			b, _ := os.ReadFile(s.logPath)
			t.Fatalf("keygate serve exited before it was ready: %v\n%s", err, b)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("keygate serve not ready after 30s")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// stop ends serve as an operator would (SIGTERM) and expects exit 0.
func (s *soakServer) stop(t *testing.T) {
	t.Helper()
	s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-s.exited:
		if err != nil {
			t.Errorf("serve after SIGTERM: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Error("serve did not stop within 30s of SIGTERM")
		s.cmd.Process.Kill()
		<-s.exited
	}
}

// soakScanLog reads every line serve wrote and fails on any secret of the
// run, any issued token or a part of one, or anything shaped like a JWT
// (soakLogLeaks).
func soakScanLog(t *testing.T, path string, run *soakRun) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	scan, err := soakLogLeaks(f, run)
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range scan.errorLines {
		t.Logf("error line: %.400s", l)
	}
	t.Logf("log: %d lines by level %v, checked against %d secrets and %d token parts", scan.lines, scan.levels, len(run.secrets), len(run.tokenParts))
	if len(scan.leaks) > 0 {
		t.Errorf("%d log lines hold a secret or a token; the first:\n%s", len(scan.leaks), strings.Join(scan.leaks[:min(5, len(scan.leaks))], "\n"))
	}
	if scan.lines < 1000 {
		t.Errorf("only %d log lines: the access log did not record the traffic, so the scan proves little", scan.lines)
	}
}

type soakLogScan struct {
	lines      int
	levels     map[string]int
	errorLines []string // the first few
	leaks      []string
}

// soakLogLeaks finds in each line a secret of the run (a kgs_ string sent
// or received), an issued token or its jti, payload or signature (each word
// of the line looked up in the run's hashes), or a word shaped like a JWT.
func soakLogLeaks(r io.Reader, run *soakRun) (soakLogScan, error) {
	scan := soakLogScan{levels: map[string]int{}}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		scan.lines++
		if lv := soakLevel(line); lv != "" {
			scan.levels[lv]++
			if lv == "ERROR" && len(scan.errorLines) < 10 {
				scan.errorLines = append(scan.errorLines, line)
			}
		}
		var found []string
		for rest := line; ; {
			i := strings.Index(rest, credential.SecretPrefix)
			if i < 0 {
				break
			}
			if run.secrets[rest[i:min(len(rest), i+credential.SecretLen)]] {
				found = append(found, "a secret of the run")
			}
			rest = rest[i+len(credential.SecretPrefix):]
		}
		for _, w := range strings.FieldsFunc(line, func(r rune) bool {
			return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.')
		}) {
			for _, p := range append(strings.Split(w, "."), w) {
				if len(p) < 16 {
					continue
				}
				if _, ok := run.tokenParts[maphash.String(run.seed, p)]; ok {
					found = append(found, "an issued token or its jti, payload or signature")
				}
				if strings.HasPrefix(p, "eyJ") && len(p) >= 30 {
					found = append(found, "something shaped like a JWT")
				}
			}
		}
		if len(found) > 0 {
			scan.leaks = append(scan.leaks, fmt.Sprintf("line %d holds %s: %.400s", scan.lines, strings.Join(found, ", "), line))
		}
	}
	return scan, sc.Err()
}

// TestSoakLogScan: the log scan finds what it looks for — a secret, a
// token, its jti alone, its signature alone, a JWT it never saw — and
// passes lines that only name client IDs and request IDs.
func TestSoakLogScan(t *testing.T) {
	run := newSoakRun()
	secret := soakSecret(t)
	run.addSecret(secret)
	payload := base64.RawURLEncoding.EncodeToString([]byte(`{"jti":"Zm9vYmFyYmF6cXV4cXV1eA","sub":"kgc_x"}`))
	sig := strings.Repeat("S1g", 30)
	tok := "eyJhbGciOiJFUzI1NiJ9." + payload + "." + sig
	run.addToken(tok)
	clean := `time=2026-12-04T17:40:30Z level=INFO msg=access route=/oauth/token status=401 client_id=kgc_QDTBgd0dK4DEIcCZMtuaY67TrdGg request_id=cqxhdptkmdzmwpnd1mkrv5wrg4`
	for _, leak := range []string{
		`level=INFO msg=x err="bad secret ` + secret + `"`,
		`level=INFO msg=x secret=` + secret + `xyz`,
		`level=INFO msg=x token=` + tok,
		`level=INFO msg=x jti=Zm9vYmFyYmF6cXV4cXV1eA`,
		`level=INFO msg=x sig="` + sig + `"`,
		`level=INFO msg=x auth="Bearer eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0."`,
	} {
		scan, err := soakLogLeaks(strings.NewReader(clean+"\n"+leak+"\n"+clean+"\n"), run)
		if err != nil {
			t.Fatal(err)
		}
		if len(scan.leaks) != 1 || !strings.HasPrefix(scan.leaks[0], "line 2 ") || scan.lines != 3 {
			t.Errorf("scan of %q: %d lines, leaks %q", leak, scan.lines, scan.leaks)
		}
	}
}

func soakLevel(line string) string {
	_, after, ok := strings.Cut(line, "level=")
	if !ok {
		return ""
	}
	lv, _, _ := strings.Cut(after, " ")
	return lv
}

func (r *soakRun) total() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, m := range r.counts {
		for _, c := range m {
			n += c
		}
	}
	return n
}

func soakEnvDuration(t *testing.T, name string, def time.Duration) time.Duration {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return d
}

func soakSecret(t *testing.T) string {
	t.Helper()
	s, err := credential.NewSecret()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func soakClient(conns int) *http.Client {
	return &http.Client{
		Timeout: 30 * time.Second,
		Transport: &http.Transport{
			MaxIdleConns: conns, MaxIdleConnsPerHost: conns, DisableCompression: true,
			Proxy: nil, IdleConnTimeout: time.Minute,
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// soakDo sends req and returns the status and up to soakMaxBody of the
// answer, read to the end so the connection can be reused.
func soakDo(hc *http.Client, req *http.Request) (int, []byte, error) {
	resp, err := hc.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, soakMaxBody))
	io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, b, err
}

func soakForm(ctx context.Context, u, user, pass string, form string) *http.Request {
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, u, strings.NewReader(form))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if user != "" || pass != "" {
		req.SetBasicAuth(url.QueryEscape(user), url.QueryEscape(pass))
	}
	return req
}

// soakAdmin is the admin key's side: its token, key creation, rotation and
// deletion.
type soakAdmin struct {
	url, id, secret string
	hc              *http.Client
	run             *soakRun
	mu              sync.Mutex
	token           string
}

func (a *soakAdmin) refresh(t *testing.T) {
	t.Helper()
	st, body, err := soakDo(a.hc, soakForm(context.Background(), a.url+"/oauth/token", a.id, a.secret, "grant_type=client_credentials"))
	if err != nil || st != 200 {
		t.Fatalf("admin token: %d %v %s", st, err, body)
	}
	var tok struct {
		AccessToken string `json:"access_token"`
	}
	json.Unmarshal(body, &tok)
	a.run.addToken(tok.AccessToken)
	a.mu.Lock()
	a.token = tok.AccessToken
	a.mu.Unlock()
}

func (a *soakAdmin) bearer() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return "Bearer " + a.token
}

func (a *soakAdmin) req(ctx context.Context, method, path, body string) *http.Request {
	req, _ := http.NewRequestWithContext(ctx, method, a.url+path, strings.NewReader(body))
	req.Header.Set("Authorization", a.bearer())
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	return req
}

// create makes a key in team and returns its credentials, recording the
// answer as churn-create (the one answer that may hold its secret).
func (a *soakAdmin) create(t *testing.T, team, name string) soakKey {
	t.Helper()
	p, err := a.tryCreate(context.Background(), team, name)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func (a *soakAdmin) tryCreate(ctx context.Context, team, name string) (soakKey, error) {
	body := fmt.Sprintf(`{"name":%q,"permissions":["accounting_api"]}`, name)
	st, b, err := soakDo(a.hc, a.req(ctx, http.MethodPost, "/v1/teams/"+team+"/keys", body))
	if ctx.Err() != nil {
		return soakKey{}, ctx.Err()
	}
	a.run.record("churn-create", st, err, b, true)
	var k struct {
		ClientID     string `json:"client_id"`
		ClientSecret string `json:"client_secret"`
	}
	if err != nil || st != http.StatusCreated || json.Unmarshal(b, &k) != nil || k.ClientSecret == "" {
		return soakKey{}, fmt.Errorf("create in %s: %d %v %.200s", team, st, err, b)
	}
	a.run.addSecret(k.ClientSecret)
	return soakKey{ID: k.ClientID, Secret: k.ClientSecret}, nil
}

func (a *soakAdmin) keyCount(t *testing.T, team string) int {
	t.Helper()
	st, b, err := soakDo(a.hc, a.req(context.Background(), http.MethodGet, "/v1/teams/"+team+"/keys", ""))
	if err != nil || st != 200 {
		t.Fatalf("list %s: %d %v %s", team, st, err, b)
	}
	var l struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(b, &l); err != nil {
		t.Fatal(err)
	}
	return len(l.Keys)
}

// soakTraffic drives every kind of traffic.
type soakTraffic struct {
	url       string
	hc        *http.Client
	run       *soakRun
	admin     *soakAdmin
	valid     []soakKey
	victims   []soakKey
	slowConns atomic.Int64
	slowMu    sync.Mutex
	slow      []net.Conn // connections left open by the client when the run ended
}

// drive runs every worker for d and waits for them.
func (tr *soakTraffic) drive(t *testing.T, d time.Duration) {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	// The admin token lasts the server's token_ttl (15m): one refresh per
	// phase is plenty.
	tr.admin.refresh(t)
	var wg sync.WaitGroup
	loop := func(n int, f func(ctx context.Context, rng *mrand.Rand, w int)) {
		for w := range n {
			wg.Go(func() {
				rng := mrand.New(mrand.NewPCG(uint64(w), uint64(time.Now().UnixNano())))
				for ctx.Err() == nil {
					f(ctx, rng, w)
				}
			})
		}
	}
	loop(6, tr.validToken)
	loop(2, tr.introspectRevoke)
	loop(2, tr.wrongSecret)
	loop(1, tr.unknownID)
	loop(1, tr.malformedForm)
	loop(1, tr.oversized)
	loop(1, tr.garbageBearer)
	loop(1, tr.badJSON)
	loop(2, tr.churn)
	wg.Go(func() { tr.slowLoris(ctx) })
	wg.Wait()
}

// record ignores answers cut off by the end of the phase.
func (tr *soakTraffic) record(ctx context.Context, kind string, st int, err error, body []byte) {
	if ctx.Err() != nil && err != nil {
		return
	}
	tr.run.record(kind, st, err, body, false)
}

func (tr *soakTraffic) token(ctx context.Context, kind string, p soakKey) string {
	st, b, err := soakDo(tr.hc, soakForm(ctx, tr.url+"/oauth/token", p.ID, p.Secret, "grant_type=client_credentials"))
	tr.record(ctx, kind, st, err, b)
	if st != 200 {
		return ""
	}
	var tok struct {
		AccessToken string `json:"access_token"`
	}
	if json.Unmarshal(b, &tok) != nil || tok.AccessToken == "" {
		tr.run.record(kind+"-body", 0, errors.New("no access_token"), b, false)
		return ""
	}
	tr.run.addToken(tok.AccessToken)
	return tok.AccessToken
}

func (tr *soakTraffic) validToken(ctx context.Context, rng *mrand.Rand, _ int) {
	tr.token(ctx, "token", tr.valid[rng.IntN(len(tr.valid))])
}

// introspectRevoke: a key asks about its own token, revokes it, and asks
// again (inactive once revoked); and asks about junk.
func (tr *soakTraffic) introspectRevoke(ctx context.Context, rng *mrand.Rand, _ int) {
	p := tr.valid[rng.IntN(len(tr.valid))]
	tok := tr.token(ctx, "token", p)
	if tok == "" {
		return
	}
	ask := func(kind, tok string, wantActive bool) {
		st, b, err := soakDo(tr.hc, soakForm(ctx, tr.url+"/oauth/introspect", p.ID, p.Secret, "token="+url.QueryEscape(tok)))
		tr.record(ctx, kind, st, err, b)
		if st == 200 && !bytes.Contains(b, []byte(`"active":`+strconv.FormatBool(wantActive))) {
			tr.run.record(kind+"-active", 0, fmt.Errorf("want active %v", wantActive), b, false)
		}
	}
	ask("introspect-own", tok, true)
	st, b, err := soakDo(tr.hc, soakForm(ctx, tr.url+"/oauth/revoke", p.ID, p.Secret, "token="+url.QueryEscape(tok)))
	tr.record(ctx, "revoke-own", st, err, b)
	if st == 200 {
		ask("introspect-after", tok, false)
	}
	junk := []string{"", "x", "eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.", tok[:len(tok)-4] + "AAAA", strings.Repeat("a.", 500)}
	j := junk[rng.IntN(len(junk))]
	st, b, err = soakDo(tr.hc, soakForm(ctx, tr.url+"/oauth/introspect", p.ID, p.Secret, "token="+url.QueryEscape(j)))
	if j == "" {
		// A missing token is invalid_request, not an inactive answer.
		if st == 400 {
			st = 200
		}
	} else if st == 200 && !bytes.Equal(bytes.TrimSpace(b), []byte(`{"active":false}`)) {
		tr.run.record("introspect-junk-active", 0, errors.New("junk introspected active"), b, false)
	}
	tr.record(ctx, "introspect-junk", st, err, b)
}

func (tr *soakTraffic) wrongSecret(ctx context.Context, rng *mrand.Rand, _ int) {
	v := tr.victims[rng.IntN(len(tr.victims))]
	wrong, _ := credential.NewSecret()
	tr.run.addSecret(wrong)
	req := soakForm(ctx, tr.url+"/oauth/token", v.ID, wrong, "grant_type=client_credentials")
	if rng.IntN(2) == 0 {
		// As form fields instead of Basic.
		req = soakForm(ctx, tr.url+"/oauth/token", "", "", url.Values{
			"grant_type": {"client_credentials"}, "client_id": {v.ID}, "client_secret": {wrong}}.Encode())
	}
	st, b, err := soakDo(tr.hc, req)
	tr.record(ctx, "wrong-secret", st, err, b)
}

func (tr *soakTraffic) unknownID(ctx context.Context, rng *mrand.Rand, _ int) {
	id, _ := credential.NewClientID("nobody")
	if rng.IntN(3) == 0 {
		id = fmt.Sprintf("operator-%d", rng.Uint32())
	}
	secret, _ := credential.NewSecret()
	tr.run.addSecret(secret)
	st, b, err := soakDo(tr.hc, soakForm(ctx, tr.url+"/oauth/token", id, secret, "grant_type=client_credentials"))
	tr.record(ctx, "unknown-id", st, err, b)
}

func (tr *soakTraffic) malformedForm(ctx context.Context, rng *mrand.Rand, _ int) {
	v := tr.victims[rng.IntN(len(tr.victims))]
	p := tr.valid[rng.IntN(len(tr.valid))]
	secret, _ := credential.NewSecret()
	tr.run.addSecret(secret)
	u := tr.url + "/oauth/token"
	var req *http.Request
	switch rng.IntN(10) {
	case 0:
		req = soakForm(ctx, u, v.ID, secret, "grant_type=client_credentials&scope=%zz")
	case 1:
		req = soakForm(ctx, u, v.ID, secret, "")
	case 2:
		req = soakForm(ctx, u, p.ID, p.Secret, "grant_type=password&username=a&password="+secret)
	case 3:
		req = soakForm(ctx, u, p.ID, p.Secret, "grant_type=client_credentials&grant_type=client_credentials")
	case 4:
		req = soakForm(ctx, u, p.ID, p.Secret, "grant_type=client_credentials&scope=")
	case 5:
		req = soakForm(ctx, u, p.ID, p.Secret, "grant_type=client_credentials&client_id="+p.ID+"&client_secret="+secret)
	case 6:
		req = soakForm(ctx, u+"?client_secret="+secret, p.ID, "", "grant_type=client_credentials&client_id="+p.ID)
	case 7:
		req = soakForm(ctx, u, "", "", `{"grant_type":"client_credentials","client_secret":"`+secret+`"}`)
		req.Header.Set("Content-Type", "application/json")
	case 8:
		req = soakForm(ctx, u, "", "", "grant_type=client_credentials")
		req.Header.Set("Authorization", "Basic "+secret+"!!")
	case 9:
		req, _ = http.NewRequestWithContext(ctx, http.MethodGet, u+"?grant_type=client_credentials&client_secret="+secret, nil)
	}
	st, b, err := soakDo(tr.hc, req)
	tr.record(ctx, "malformed-form", st, err, b)
}

func (tr *soakTraffic) oversized(ctx context.Context, rng *mrand.Rand, _ int) {
	v := tr.victims[rng.IntN(len(tr.victims))]
	var req *http.Request
	switch rng.IntN(3) {
	case 0: // a token request far over its body limit
		req = soakForm(ctx, tr.url+"/oauth/token", v.ID, "x", "grant_type=client_credentials&scope="+strings.Repeat("a", 200<<10))
	case 1: // a management body over its limit
		req = tr.admin.req(ctx, http.MethodPost, "/v1/teams/"+soakTeam+"-badjson/keys",
			`{"name":"`+strings.Repeat("n", 256<<10)+`","permissions":["accounting_api"]}`)
	case 2: // headers over the server's limit
		req = soakForm(ctx, tr.url+"/oauth/token", v.ID, "x", "grant_type=client_credentials")
		req.Header.Set("X-Filler", strings.Repeat("h", 2<<20))
	}
	st, b, err := soakDo(tr.hc, req)
	if err != nil && ctx.Err() == nil {
		// The server may answer and close before reading all we send;
		// the write then fails on our side. Count it by what it is.
		tr.run.record("oversized-closed", 0, nil, nil, false)
		return
	}
	tr.record(ctx, "oversized", st, err, b)
}

func (tr *soakTraffic) garbageBearer(ctx context.Context, rng *mrand.Rand, _ int) {
	p := tr.valid[rng.IntN(len(tr.valid))]
	var auth string
	switch rng.IntN(6) {
	case 0:
		b := make([]byte, 32)
		rand.Read(b)
		auth = "Bearer " + base64.RawURLEncoding.EncodeToString(b)
	case 1:
		auth = "Bearer eyJhbGciOiJub25lIiwidHlwIjoiYXQrand0In0.eyJzY29wZSI6ImtleXM6YWRtaW4ifQ."
	case 2: // a team key's real token: not an admin
		auth = "Bearer " + tr.token(ctx, "token", p)
	case 3:
		auth = "Basic " + base64.StdEncoding.EncodeToString([]byte(tr.admin.id+":"+tr.admin.secret))
	case 4: // an admin token with its signature spoiled
		tok := strings.TrimPrefix(tr.admin.bearer(), "Bearer ")
		auth = "Bearer " + tok[:len(tok)-6] + "AAAAAA"
	case 5:
		auth = "Bearer " + strings.Repeat("x", 4000)
	}
	paths := []string{"/v1/teams", "/v1/teams/" + soakTeam + "-0/keys", "/v1/keys/" + p.ID, "/v1/events"}
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, tr.url+paths[rng.IntN(len(paths))], nil)
	req.Header.Set("Authorization", auth)
	st, b, err := soakDo(tr.hc, req)
	tr.record(ctx, "garbage-bearer", st, err, b)
}

func (tr *soakTraffic) badJSON(ctx context.Context, rng *mrand.Rand, _ int) {
	bodies := []string{
		`{"name":"x","permissions":["accounting_api"]}}`,
		`{"name":"x","permissions":["accounting_api"]}]]]xyz`,
		`{"name":`,
		`{"name":"a","name":"b","permissions":["accounting_api"]}`,
		`{"NAME":"x","permissions":["accounting_api"]}`,
		`{"name":"\ud800","permissions":["accounting_api"]}`,
		`{"name":7,"permissions":"accounting_api"}`,
		`null`,
		`[]`,
		`{"name":"x","permissions":["accounting_api"],"grant_operator_permissions":"yes"}`,
		"\xff\xfe",
	}
	body := bodies[rng.IntN(len(bodies))]
	team := soakTeam + "-badjson"
	var req *http.Request
	switch rng.IntN(4) {
	case 0, 1:
		req = tr.admin.req(ctx, http.MethodPost, "/v1/teams/"+team+"/keys", body)
	case 2: // a rotation of a key that is not there, with a bad body
		req = tr.admin.req(ctx, http.MethodPost, "/v1/teams/"+team+"/keys/kgc_nothere/rotate", `{"grace_period":"1h"}}`)
	case 3: // the wrong media type
		req = tr.admin.req(ctx, http.MethodPost, "/v1/teams/"+team+"/keys", `{"name":"x","permissions":["accounting_api"]}`)
		req.Header.Set("Content-Type", "text/plain")
	}
	st, b, err := soakDo(tr.hc, req)
	tr.record(ctx, "bad-json", st, err, b)
}

// churn: the admin creates a key, gets a token with it, rotates it (with
// and without grace), checks old and new secrets, deletes it.
func (tr *soakTraffic) churn(ctx context.Context, rng *mrand.Rand, w int) {
	team := fmt.Sprintf("%s-churn-%d", soakTeam, w)
	p, err := tr.admin.tryCreate(ctx, team, "churn")
	if err != nil {
		return
	}
	tr.token(ctx, "churn-token-new", p)
	grace := `{"grace_period":"0s"}`
	if rng.IntN(2) == 0 {
		grace = `{"grace_period":"1h"}`
	}
	st, b, err := soakDo(tr.hc, tr.admin.req(ctx, http.MethodPost, "/v1/teams/"+team+"/keys/"+p.ID+"/rotate", grace))
	if ctx.Err() != nil {
		return
	}
	tr.run.record("churn-rotate", st, err, b, true)
	var k struct {
		ClientSecret string `json:"client_secret"`
	}
	if st == 200 && json.Unmarshal(b, &k) == nil && k.ClientSecret != "" {
		tr.run.addSecret(k.ClientSecret)
		old := p
		p.Secret = k.ClientSecret
		tr.token(ctx, "churn-token-new", p)
		if grace == `{"grace_period":"0s"}` {
			tr.token(ctx, "churn-token-old", old)
		}
	}
	st, b, err = soakDo(tr.hc, tr.admin.req(ctx, http.MethodDelete, "/v1/teams/"+team+"/keys/"+p.ID, ""))
	tr.record(ctx, "churn-delete", st, err, b)
	tr.token(ctx, "churn-token-gone", p)
}

// slowLoris keeps up to 40 connections that misbehave: headers sent a byte
// at a time and never finished, a body promised and never sent, a request
// cut off by a half-close, raw garbage, connect-and-leave. Those still open
// when the phase ends stay open on our side: the server must let them go by
// itself.
func (tr *soakTraffic) slowLoris(ctx context.Context) {
	addr := strings.TrimPrefix(tr.url, "http://")
	sem := make(chan struct{}, 40)
	var wg sync.WaitGroup
	defer wg.Wait()
	for i := 0; ctx.Err() == nil; i++ {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			return
		}
		wg.Go(func() {
			defer func() { <-sem }()
			c, err := net.DialTimeout("tcp", addr, 5*time.Second)
			if err != nil {
				return
			}
			tr.slowConns.Add(1)
			keep := false
			defer func() {
				if keep {
					tr.slowMu.Lock()
					tr.slow = append(tr.slow, c)
					tr.slowMu.Unlock()
					return
				}
				c.Close()
			}()
			switch i % 5 {
			case 0: // headers trickled, never finished
				for _, b := range []byte("POST /oauth/token HTTP/1.1\r\nHost: x\r\nX-A: ") {
					if ctx.Err() != nil {
						keep = true
						return
					}
					c.Write([]byte{b})
					time.Sleep(100 * time.Millisecond)
				}
				keep = true
			case 1: // a body promised, a little sent
				fmt.Fprintf(c, "POST /oauth/token HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 4000\r\n\r\ngrant_type=")
				select {
				case <-ctx.Done():
					keep = true
				case <-time.After(3 * time.Second):
				}
			case 2: // a request cut off by a half-close
				fmt.Fprintf(c, "POST /oauth/token HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\ngrant")
				c.(*net.TCPConn).CloseWrite()
				c.SetReadDeadline(time.Now().Add(15 * time.Second))
				io.Copy(io.Discard, c)
			case 3: // not HTTP at all
				b := make([]byte, 512)
				rand.Read(b)
				c.Write(b)
				c.SetReadDeadline(time.Now().Add(15 * time.Second))
				io.Copy(io.Discard, c)
			case 4: // connect and leave without a word
			}
		})
	}
}

func (tr *soakTraffic) closeSlow() {
	tr.slowMu.Lock()
	defer tr.slowMu.Unlock()
	for _, c := range tr.slow {
		c.Close()
	}
	tr.slow = nil
}
