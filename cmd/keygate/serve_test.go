package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/spf13/pflag"
	"golang.org/x/oauth2/clientcredentials"

	"github.com/keygate/keygate/client"
	"github.com/keygate/keygate/config"
	"github.com/keygate/keygate/credential"
	"github.com/keygate/keygate/metrics/metricstest"
)

// syncBuffer is a log sink the server goroutines write while the test reads.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// loadConfig is serve's configuration from the flags args, in an empty
// environment.
func loadConfig(t *testing.T, args ...string) (config.Config, error) {
	t.Helper()
	return loadConfigWith(t, nil, args...)
}

// loadConfigWith is loadConfig with the environment variables vars.
func loadConfigWith(t *testing.T, vars map[string]string, args ...string) (config.Config, error) {
	t.Helper()
	fs := pflag.NewFlagSet("serve", pflag.ContinueOnError)
	fs.SetOutput(io.Discard)
	config.BindFlagsFor(fs, storeBackends.names())
	if err := fs.Parse(args); err != nil {
		t.Fatal(err)
	}
	return config.LoadFor(fs, testEnv(vars).getenv, storeBackends.names())
}

type running struct {
	base   string
	log    *syncBuffer
	cancel context.CancelFunc
	errc   chan error
}

// httpc has a transport of its own: every httptest.Server.Close in the
// package empties http.DefaultTransport's idle connections, and a POST or
// DELETE on a connection closed that way fails instead of being retried.
var httpc = &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{}}

// startServeWith runs serve on cfg with the environment variables vars in a
// goroutine and waits until /healthz answers.
func startServeWith(t *testing.T, cfg config.Config, vars map[string]string) *running {
	t.Helper()
	return startServeOn(t, cfg, testEnv(vars), storeBackends)
}

// startServeOn is startServeWith with the environment e (its stderr is
// replaced by the log it returns) and the stores in stores.
func startServeOn(t *testing.T, cfg config.Config, e env, stores backends) *running {
	t.Helper()
	return startRunning(t, "http://"+cfg.Listen, func(ctx context.Context, log io.Writer) error {
		e.stderr = log
		return serve(ctx, cfg, e, stores)
	})
}

// startRunning runs a server (serve, or the serve command) in a goroutine
// until the test ends and waits until base+"/healthz" answers.
func startRunning(t *testing.T, base string, run func(ctx context.Context, log io.Writer) error) *running {
	t.Helper()
	return startRunningClient(t, httpc, base, run)
}

// startRunningClient is startRunning asking for /healthz with client.
func startRunningClient(t *testing.T, client *http.Client, base string, run func(ctx context.Context, log io.Writer) error) *running {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{base: base, log: &syncBuffer{}, cancel: cancel, errc: make(chan error, 1)}
	go func() { r.errc <- run(ctx, r.log) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-r.errc:
		case <-time.After(15 * time.Second):
		}
	})
	deadline := time.Now().Add(15 * time.Second)
	for {
		select {
		case err := <-r.errc:
			r.errc <- err
			t.Fatalf("serve returned before it was healthy: %v\nlog:\n%s", err, r.log)
		default:
		}
		resp, err := client.Get(r.base + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return r
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("serve not healthy after 15s (last error %v)\nlog:\n%s", err, r.log)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// stop cancels serve (as SIGINT/SIGTERM would) and returns its result.
func (r *running) stop(t *testing.T) error {
	t.Helper()
	r.cancel()
	select {
	case err := <-r.errc:
		r.errc <- err // for the cleanup
		httpc.CloseIdleConnections()
		return err
	case <-time.After(15 * time.Second):
		t.Fatal("serve did not return within 15s of cancellation")
		return nil
	}
}

func ctxFor(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func teamToken(t *testing.T, base, id, secret string) string {
	t.Helper()
	cc := clientcredentials.Config{ClientID: id, ClientSecret: secret, TokenURL: base + "/oauth/token"}
	tok, err := cc.Token(ctxFor(t))
	if err != nil {
		t.Fatalf("token for %s: %v", id, err)
	}
	return tok.AccessToken
}

func fetchJWKS(t *testing.T, base string) jose.JSONWebKeySet {
	t.Helper()
	resp, err := httpc.Get(base + "/.well-known/jwks.json")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var set jose.JSONWebKeySet
	if err := json.NewDecoder(resp.Body).Decode(&set); err != nil {
		t.Fatal(err)
	}
	return set
}

type tokenClaims struct {
	Iss      string `json:"iss"`
	Sub      string `json:"sub"`
	ClientID string `json:"client_id"`
	TeamID   string `json:"team_id"`
	Scope    string `json:"scope"`
	Exp      int64  `json:"exp"`
}

// verifyWithJWKS checks tok against the served JWKS with go-jose, a JOSE
// implementation independent of keygate's signer; it returns the kid.
func verifyWithJWKS(t *testing.T, base, tok string) (string, tokenClaims) {
	t.Helper()
	jws, err := jose.ParseSigned(tok, []jose.SignatureAlgorithm{jose.ES256, jose.RS256, jose.EdDSA})
	if err != nil {
		t.Fatalf("parse token: %v", err)
	}
	kid := jws.Signatures[0].Protected.KeyID
	set := fetchJWKS(t, base)
	keys := set.Key(kid)
	if len(keys) != 1 {
		t.Fatalf("kid %q is not in the served JWKS", kid)
	}
	payload, err := jws.Verify(keys[0])
	if err != nil {
		t.Fatalf("token does not verify against the served JWKS: %v", err)
	}
	var c tokenClaims
	if err := json.Unmarshal(payload, &c); err != nil {
		t.Fatal(err)
	}
	return kid, c
}

func getStatus(t *testing.T, url string) int {
	t.Helper()
	resp, err := httpc.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func readAdminFile(t *testing.T, dir string) (creds struct {
	ClientID     string `json:"client_id"`
	ClientSecret string `json:"client_secret"`
	TokenURL     string `json:"token_url"`
}, raw []byte) {
	t.Helper()
	path := filepath.Join(dir, adminCredentialsFile)
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatalf("admin credentials file: %v", err)
	}
	if mode := fi.Mode().Perm(); mode != 0o600 {
		t.Fatalf("admin credentials file mode %o, want 600", mode)
	}
	raw, err = os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(raw, &creds); err != nil {
		t.Fatalf("admin credentials file is not JSON: %v", err)
	}
	return creds, raw
}

const firstAdminLog = "created the first admin key"

func TestServeRestartKeepsEverything(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	addr := freeAddr(t)
	issuer := "http://" + addr
	args := []string{"--data-dir", dir, "--listen", addr, "--issuer", issuer, "--log-level", "debug"}
	cfg, err := loadConfig(t, args...)
	if err != nil {
		t.Fatal(err)
	}

	// First start: admin key generated into a 0600 file (stderr is no TTY).
	s1 := startServeWith(t, cfg, nil)
	admin, adminRaw := readAdminFile(t, dir)
	if !strings.HasPrefix(admin.ClientID, credential.ClientIDPrefix) {
		t.Fatalf("admin client id %q", admin.ClientID)
	}
	if err := credential.CheckSecretFormat(admin.ClientSecret); err != nil {
		t.Fatalf("admin secret in the file: %v", err)
	}
	if admin.TokenURL != issuer+"/oauth/token" {
		t.Fatalf("token_url %q", admin.TokenURL)
	}
	if st := getStatus(t, s1.base+"/readyz"); st != http.StatusOK {
		t.Fatalf("/readyz = %d", st)
	}

	adminClient := func(base string) *client.Client {
		return client.New(client.Config{URL: base, ClientID: admin.ClientID, ClientSecret: admin.ClientSecret})
	}
	created, err := adminClient(s1.base).CreateKey(ctxFor(t), "acme", "Production sync", []string{"accounting_api"})
	if err != nil {
		t.Fatal(err)
	}
	usedAt := time.Now().Truncate(time.Second)
	tokBefore := teamToken(t, s1.base, created.ClientID, created.ClientSecret)
	kidBefore, claims := verifyWithJWKS(t, s1.base, tokBefore)
	if claims.Iss != issuer || claims.Sub != created.ClientID || claims.ClientID != created.ClientID || claims.TeamID != "acme" {
		t.Fatalf("claims %+v", claims)
	}

	// Stop right after the first use: last_used_at must be flushed on shutdown.
	if err := s1.stop(t); err != nil {
		t.Fatalf("graceful stop returned %v, want nil", err)
	}
	log1 := s1.log.String()
	for what, secret := range map[string]string{"admin secret": admin.ClientSecret, "key secret": created.ClientSecret, "access token": tokBefore} {
		if strings.Contains(log1, secret) {
			t.Errorf("the %s appears in the log", what)
		}
	}
	if !strings.Contains(log1, firstAdminLog) || !strings.Contains(log1, filepath.Join(dir, adminCredentialsFile)) {
		t.Errorf("first start did not log the admin credentials file path:\n%s", log1)
	}
	// The port is free again after a graceful stop.
	if ln, err := net.Listen("tcp", addr); err != nil {
		t.Fatalf("port still bound after stop: %v", err)
	} else {
		ln.Close()
	}

	// Second start on the same data dir and issuer.
	cfg2, err := loadConfig(t, args...)
	if err != nil {
		t.Fatal(err)
	}
	s2 := startServeWith(t, cfg2, nil)
	if log2 := s2.log.String(); strings.Contains(log2, firstAdminLog) {
		t.Errorf("second start generated another admin key:\n%s", log2)
	}
	if _, raw := readAdminFile(t, dir); !bytes.Equal(raw, adminRaw) {
		t.Error("second start rewrote the admin credentials file")
	}
	if st := getStatus(t, s2.base+"/readyz"); st != http.StatusOK {
		t.Fatalf("/readyz after restart = %d", st)
	}

	// The admin key and the team key survived, with last_used_at.
	l, err := adminClient(s2.base).ListKeys(ctxFor(t), "acme")
	if err != nil {
		t.Fatalf("admin key after restart: %v", err)
	}
	if len(l.Keys) != 1 || l.Keys[0].ClientID != created.ClientID {
		t.Fatalf("keys after restart: %+v", l.Keys)
	}
	if l.Keys[0].LastUsedAt == nil {
		t.Fatal("last_used_at written before shutdown is missing after restart (not flushed on shutdown)")
	}
	if lu := *l.Keys[0].LastUsedAt; lu.Before(usedAt.Add(-time.Second)) || lu.After(time.Now().Add(time.Second)) {
		t.Fatalf("last_used_at %v, want about %v", lu, usedAt)
	}

	// The token from before the restart still verifies, with the same kid.
	kidAfterCheck, _ := verifyWithJWKS(t, s2.base, tokBefore)
	if kidAfterCheck != kidBefore {
		t.Fatalf("kid changed")
	}
	tokAfter := teamToken(t, s2.base, created.ClientID, created.ClientSecret)
	kidAfter, _ := verifyWithJWKS(t, s2.base, tokAfter)
	if kidAfter != kidBefore {
		t.Fatalf("signing key changed across the restart: %s → %s", kidBefore, kidAfter)
	}
	if err := s2.stop(t); err != nil {
		t.Fatalf("second graceful stop: %v", err)
	}
}

// TestServeCatalogWithoutStoredPermission: a catalog that lost a stored
// key's permission no longer stops a start (that check walked every key
// before /readyz); the key gets no token, saying why, and the log names
// the key and the permission once however often it asks.
func TestServeCatalogWithoutStoredPermission(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	addr := freeAddr(t)
	args := []string{"--data-dir", dir, "--listen", addr, "--issuer", "http://" + addr}
	cfg, err := loadConfig(t, args...)
	if err != nil {
		t.Fatal(err)
	}
	s := startServeWith(t, cfg, nil)
	admin, _ := readAdminFile(t, dir)
	c := client.New(client.Config{URL: s.base, ClientID: admin.ClientID, ClientSecret: admin.ClientSecret})
	k, err := c.CreateKey(ctxFor(t), "acme", "Charts", []string{"visualization_sdk"})
	if err != nil {
		t.Fatal(err)
	}
	kept, err := c.CreateKey(ctxFor(t), "acme", "Books", []string{"accounting_api"})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.stop(t); err != nil {
		t.Fatal(err)
	}

	file := filepath.Join(t.TempDir(), "keygate.yaml")
	yaml := "permissions:\n  - id: accounting_api\n    name: Accounting\n    scopes: [accounting:read]\n"
	if err := os.WriteFile(file, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg2, err := loadConfig(t, append(args, "--config", file)...)
	if err != nil {
		t.Fatal(err)
	}
	s2 := startServeWith(t, cfg2, nil)
	for range 3 {
		status, body := keyTokenAnswer(t, s2.base, k.ClientID, k.ClientSecret)
		if status != http.StatusUnauthorized || body["error"] != "invalid_client" ||
			!strings.Contains(fmt.Sprint(body["error_description"]), "permission catalog no longer has") {
			t.Fatalf("token for a key whose permission left the catalog: %d %v", status, body)
		}
	}
	// The key whose permissions are all in the catalog is served.
	if status, body := keyTokenAnswer(t, s2.base, kept.ClientID, kept.ClientSecret); status != http.StatusOK {
		t.Fatalf("token for a key with catalog permissions: %d %v", status, body)
	}
	// The background walk reports it; one line names the permission.
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(s2.log.String(), "stored keys checked") && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	log := s2.log.String()
	if !strings.Contains(log, "outside_catalog=1") || !strings.Contains(log, k.ClientID) {
		t.Errorf("the walk's report does not count and name the key:\n%s", log)
	}
	if n := strings.Count(log, "permission=visualization_sdk"); n != 1 {
		t.Errorf("the key's permission is named in %d log lines, want 1:\n%s", n, log)
	}
}

// keyTokenAnswer asks base's token endpoint for a client credentials token
// and returns the status and the decoded JSON answer.
func keyTokenAnswer(t *testing.T, base, id, secret string) (int, map[string]any) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, base+"/oauth/token", strings.NewReader("grant_type=client_credentials"))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(id, secret)
	resp, err := httpc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		t.Fatalf("token answer %d is not JSON: %v", resp.StatusCode, err)
	}
	return resp.StatusCode, body
}

func TestServeSeedsAdminFromEnv(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	addr := freeAddr(t)
	secret, err := credential.NewSecret()
	if err != nil {
		t.Fatal(err)
	}
	vars := map[string]string{envAdminClientID: "ops-admin", envAdminClientSecret: secret}
	cfg, err := loadConfigWith(t, vars, "--data-dir", dir, "--listen", addr)
	if err != nil {
		t.Fatal(err)
	}
	s := startServeWith(t, cfg, vars)
	tok := teamToken(t, s.base, "ops-admin", secret)
	if _, claims := verifyWithJWKS(t, s.base, tok); claims.Scope != "keys:admin" || claims.ClientID != "ops-admin" {
		t.Fatalf("admin token claims %+v", claims)
	}
	c := client.New(client.Config{URL: s.base, ClientID: "ops-admin", ClientSecret: secret})
	if _, err := c.ListKeys(ctxFor(t), "acme"); err != nil {
		t.Fatalf("seeded admin cannot use the management API: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, adminCredentialsFile)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("admin-credentials.json written although the admin came from the environment (stat: %v)", err)
	}
	if strings.Contains(s.log.String(), firstAdminLog) || strings.Contains(s.log.String(), secret) {
		t.Fatalf("log:\n%s", s.log)
	}
	if err := s.stop(t); err != nil {
		t.Fatal(err)
	}
}

func TestServeRejectsBadAdminEnv(t *testing.T) {
	t.Parallel()
	good, err := credential.NewSecret()
	if err != nil {
		t.Fatal(err)
	}
	// Break the checksum: change one body character.
	b := []byte(good)
	if b[10] == 'A' {
		b[10] = 'B'
	} else {
		b[10] = 'A'
	}
	badChecksum := string(b)
	for _, tc := range []struct {
		name, id, secret string
		want             []string
	}{
		{"bad checksum", "ops-admin", badChecksum, []string{envAdminClientSecret, "keygate secret generate"}},
		{"not a keygate secret", "ops-admin", "hunter2-is-my-password", []string{envAdminClientSecret, "keygate secret generate"}},
		{"secret without id", "", good, []string{envAdminClientID}},
		{"bad id", "a b", good, []string{envAdminClientID}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			vars := map[string]string{envAdminClientID: tc.id, envAdminClientSecret: tc.secret}
			dir := t.TempDir()
			cfg, err := loadConfigWith(t, vars, "--data-dir", dir, "--listen", freeAddr(t))
			if err != nil {
				t.Fatal(err)
			}
			err, log := serveRefusedWith(t, cfg, vars) // fails the test if serve accepted them
			for _, want := range tc.want {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not mention %q", err, want)
				}
			}
			if strings.Contains(err.Error(), tc.secret) || strings.Contains(log, tc.secret) {
				t.Errorf("the secret appears in the error or log: %q", err)
			}
			if _, err := os.Stat(filepath.Join(dir, adminCredentialsFile)); err == nil {
				t.Error("an admin key was generated instead")
			}
		})
	}
}

func TestServeRejectsInvalidSetting(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "data")
	_, _, err := run(t, "serve", "--signing-alg", "HS256", "--data-dir", dir, "--listen", freeAddr(t))
	if err == nil {
		t.Fatal("serve accepted --signing-alg HS256")
	}
	for _, want := range []string{"signing_alg", "HS256", "ES256", "RS256", "EdDSA", "--signing-alg"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
	if strings.Contains(err.Error(), "\n") {
		t.Errorf("error is not one line: %q", err)
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Error("a rejected configuration still created the data dir")
	}

	// Same through config.Load directly, and from the environment.
	_, err = loadConfigWith(t, map[string]string{"KEYGATE_SIGNING_ALG": "none"}, "--data-dir", dir)
	if err == nil || !strings.Contains(err.Error(), "signing_alg") || !strings.Contains(err.Error(), `"none"`) || !strings.Contains(err.Error(), "KEYGATE_SIGNING_ALG") {
		t.Fatalf("env KEYGATE_SIGNING_ALG=none: %v", err)
	}
}

// startFirstServe starts serve on a fresh data dir dir, with stderr taken
// for a terminal or not, and returns it with the admin credentials file.
func startFirstServe(t *testing.T, dir string, terminal bool) (*running, string) {
	t.Helper()
	addr := freeAddr(t)
	cfg, err := loadConfig(t, "--data-dir", dir, "--listen", addr, "--issuer", "http://"+addr)
	if err != nil {
		t.Fatal(err)
	}
	e := testEnv(nil)
	e.isTerminal = func(io.Writer) bool { return terminal }
	return startServeOn(t, cfg, e, storeBackends), "http://" + addr
}

// exportedPath runs line in sh, as a person pasting it would, and returns
// what it set KEYGATE_ADMIN_CREDENTIALS_FILE to.
func exportedPath(t *testing.T, line string) string {
	t.Helper()
	out, err := exec.Command("sh", "-c", line+"\nprintf %s \"$KEYGATE_ADMIN_CREDENTIALS_FILE\"").Output()
	if err != nil {
		t.Fatalf("sh -c %q: %v", line, err)
	}
	return string(out)
}

// logRecords are the slog lines of a serve log (the terminal block is not).
func logRecords(log string) []string {
	var recs []string
	for _, l := range strings.Split(log, "\n") {
		if strings.HasPrefix(l, "time=") {
			recs = append(recs, l)
		}
	}
	return recs
}

func TestServeAdminCredentialsOnTerminal(t *testing.T) {
	t.Parallel()
	// A data dir a shell would split or misread: the export line must quote it.
	dir := filepath.Join(t.TempDir(), "it's a dir")
	s, base := startFirstServe(t, dir, true)
	admin, _ := readAdminFile(t, dir) // 0600, JSON
	if !strings.HasPrefix(admin.ClientID, credential.ClientIDPrefix) {
		t.Fatalf("client_id %q", admin.ClientID)
	}
	if err := credential.CheckSecretFormat(admin.ClientSecret); err != nil {
		t.Fatalf("client_secret in the file: %v", err)
	}
	if admin.TokenURL != base+"/oauth/token" {
		t.Fatalf("token_url %q, want %s/oauth/token", admin.TokenURL, base)
	}
	// The credentials in the file are the ones that work.
	teamToken(t, base, admin.ClientID, admin.ClientSecret)

	out := s.log.String()
	for _, want := range []string{
		"\n  KEYGATE_ADMIN_CLIENT_ID=" + admin.ClientID + "\n",
		"\n  KEYGATE_ADMIN_CLIENT_SECRET=" + admin.ClientSecret + "\n",
		"shown only now",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("terminal output lacks %q:\n%s", want, out)
		}
	}
	var exports []string
	for _, l := range strings.Split(out, "\n") {
		if strings.Contains(l, "export ") {
			exports = append(exports, strings.TrimSpace(l))
		}
	}
	if len(exports) != 1 {
		t.Fatalf("want one export line, got %q in:\n%s", exports, out)
	}
	if strings.Contains(exports[0], admin.ClientSecret) {
		t.Fatal("the export line carries the secret")
	}
	if got, want := exportedPath(t, exports[0]), filepath.Join(dir, adminCredentialsFile); got != want {
		t.Fatalf("pasting %q exports %q, want %q", exports[0], got, want)
	}
	for _, rec := range logRecords(out) {
		if strings.Contains(rec, admin.ClientSecret) {
			t.Errorf("log line carries the secret: %s", rec)
		}
	}
	if err := s.stop(t); err != nil {
		t.Fatal(err)
	}
}

func TestServeAdminCredentialsWithoutTerminal(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s, base := startFirstServe(t, dir, false)
	admin, _ := readAdminFile(t, dir)
	if admin.TokenURL != base+"/oauth/token" {
		t.Fatalf("token_url %q, want %s/oauth/token", admin.TokenURL, base)
	}
	teamToken(t, base, admin.ClientID, admin.ClientSecret)
	if err := s.stop(t); err != nil {
		t.Fatal(err)
	}
	log := s.log.String()
	if strings.Contains(log, admin.ClientSecret) {
		t.Fatalf("the admin secret appears in the log:\n%s", log)
	}
	if strings.Contains(log, "KEYGATE_ADMIN_CLIENT_ID=") {
		t.Errorf("the terminal block was written to a non-terminal:\n%s", log)
	}
	path := filepath.Join(dir, adminCredentialsFile)
	var found bool
	for _, rec := range logRecords(log) {
		if strings.Contains(rec, firstAdminLog) {
			found = true
			for _, want := range []string{"file=" + path, `cli="export KEYGATE_ADMIN_CREDENTIALS_FILE=` + path + `"`} {
				if !strings.Contains(rec, want) {
					t.Errorf("log line lacks %s:\n%s", want, rec)
				}
			}
		}
	}
	if !found {
		t.Fatalf("no %q log line:\n%s", firstAdminLog, log)
	}
	if got := exportedPath(t, "export KEYGATE_ADMIN_CREDENTIALS_FILE="+path); got != path {
		t.Fatalf("exported %q", got)
	}
}

func TestShellQuote(t *testing.T) {
	t.Parallel()
	for _, s := range []string{"/tmp/plain/admin-credentials.json", "/tmp/with space", "it's", "$HOME", "`id`", "a\"b", "a\\b", "x;y", "*", "~", "", "new\nline"} {
		q := shellQuote(s)
		out, err := exec.Command("sh", "-c", "printf %s "+q).Output()
		if err != nil {
			t.Fatalf("sh -c printf %%s %s: %v", q, err)
		}
		if string(out) != s {
			t.Errorf("shellQuote(%q) = %s, which the shell reads as %q", s, q, out)
		}
	}
	if q := shellQuote("/tmp/plain/admin-credentials.json"); q != "/tmp/plain/admin-credentials.json" {
		t.Errorf("a plain path was quoted: %s", q)
	}
}

// A metrics listener that cannot bind fails the start before the main
// listener serves anything: the side listeners come up first, so once
// /healthz answers, /metrics does too.
func TestServeMetricsListenerBoundFirst(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	addr := freeAddr(t)
	cfg, err := loadConfig(t, "--data-dir", t.TempDir(), "--listen", addr, "--metrics-listen", taken.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	err, log := serveRefusedWith(t, cfg, nil)
	if !strings.Contains(err.Error(), "listen for metrics on "+taken.Addr().String()) {
		t.Fatalf("serve with its metrics address taken: %v, want the metrics listen error", err)
	}
	if strings.Contains(log, "keygate serving") {
		t.Errorf("the main listener served before the metrics listener was bound:\n%s", log)
	}
}

// With metrics_listen, serve answers /metrics there (and only there: the
// main listener keeps its 404), counts requests, and closes the metrics
// listener when it stops.
func TestServeMetricsListener(t *testing.T) {
	addr, maddr := freeAddr(t), freeAddr(t)
	cfg, err := loadConfig(t, "--data-dir", t.TempDir(), "--listen", addr, "--metrics-listen", maddr)
	if err != nil {
		t.Fatal(err)
	}
	r := startServeWith(t, cfg, nil)
	scrapeURL := "http://" + maddr + "/metrics"
	before := metricstest.Get(t, scrapeURL)
	if v := before.Value("keygate_build_info", map[string]string{"version": versionString(), "revision": revisionString()}); v != 1 {
		t.Errorf("keygate_build_info = %v, want 1 labelled with this build", v)
	}
	resp, err := httpc.Get(r.base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("/metrics on the main listener: %d, want 404", resp.StatusCode)
	}
	resp, err = httpc.Get(r.base + "/readyz") // one store ping
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	after := metricstest.Get(t, scrapeURL)
	ping := map[string]string{"operation": "ping", "backend": "bolt"}
	if d := after.Value("keygate_store_operation_duration_seconds", ping) - before.Value("keygate_store_operation_duration_seconds", ping); d != 1 {
		t.Errorf("store pings observed: %v, want 1 for one /readyz", d)
	}
	healthz := map[string]string{"route": "/healthz", "method": "GET", "code": "200"}
	if d := after.Value("keygate_http_requests_total", healthz) - before.Value("keygate_http_requests_total", healthz); d != 0 {
		t.Errorf("healthz count moved by %v between scrapes without a health check", d)
	}
	if after.Value("keygate_http_requests_total", healthz) < 1 {
		t.Error("the start-up health check is not counted")
	}
	if d := after.Value("keygate_http_requests_total", map[string]string{"route": "unmatched", "code": "404"}) -
		before.Value("keygate_http_requests_total", map[string]string{"route": "unmatched", "code": "404"}); d != 1 {
		t.Errorf("GET /metrics on the main listener counted %v times as unmatched 404, want 1", d)
	}

	if err := r.stop(t); err != nil {
		t.Fatal(err)
	}
	if c, err := net.DialTimeout("tcp", maddr, time.Second); err == nil {
		c.Close()
		t.Error("the metrics listener still accepts connections after serve returned")
	}
}

// serve hands trusted_proxies and the access log modes to the server: from
// a trusted proxy (loopback here) the X-Request-Id is kept and the source
// is the client in X-Forwarded-For; access_log_oauth all logs an issued
// token, access_log off leaves the management API unlogged.
func TestServeAccessLogSettings(t *testing.T) {
	t.Parallel()
	addr := freeAddr(t)
	vars := map[string]string{"KEYGATE_TRUSTED_PROXIES": "127.0.0.1, ::1", "KEYGATE_ACCESS_LOG_OAUTH": "all"}
	cfg, err := loadConfigWith(t, vars, "--data-dir", t.TempDir(), "--listen", addr, "--access-log", "off")
	if err != nil {
		t.Fatal(err)
	}
	s := startServeWith(t, cfg, vars)
	req, err := http.NewRequest(http.MethodPost, s.base+"/oauth/token", strings.NewReader("grant_type=client_credentials"))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth("nobody", "wrong")
	req.Header.Set("X-Request-Id", "edge-42")
	req.Header.Set("X-Forwarded-For", "203.0.113.9")
	resp, err := httpc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized || resp.Header.Get("X-Request-Id") != "edge-42" {
		t.Fatalf("token request: %d, X-Request-Id %q", resp.StatusCode, resp.Header.Get("X-Request-Id"))
	}
	resp, err = httpc.Get(s.base + "/v1/permissions")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if err := s.stop(t); err != nil {
		t.Fatal(err)
	}
	var token, management int
	for _, l := range logRecords(s.log.String()) {
		if strings.Contains(l, "msg=request") && strings.Contains(l, "route=/oauth/token") {
			token++
			for _, want := range []string{"request_id=edge-42", "source=203.0.113.9", "status=401", "error=invalid_client", "client_id=nobody"} {
				if !strings.Contains(l, want) {
					t.Errorf("token line %q lacks %s", l, want)
				}
			}
		}
		if strings.Contains(l, "msg=request") && strings.Contains(l, "route=/v1/") {
			management++
		}
	}
	if token != 1 || management != 0 {
		t.Errorf("%d token lines and %d management lines, want 1 and 0 (access_log off):\n%s", token, management, s.log)
	}
}
