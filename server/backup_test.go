package server_test

// GET /v1/store/backup (server/backup.go): a backup taken while tokens are
// issued and keys created, restored into a new data directory and opened by
// a fresh keygate with the same master key, holds everything committed
// before it began; the endpoint is for admin keys only, answers 404 on a
// store without a backup, and outlasts the server's write timeout.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keygate/keygate/masterkey"
	"github.com/keygate/keygate/server"
	"github.com/keygate/keygate/server/servertest"
	"github.com/keygate/keygate/store"
	"github.com/keygate/keygate/store/bolt"
	"github.com/keygate/keygate/store/storetest"
	"github.com/keygate/keygate/verify"
)

// toServer sends every request to target whatever its URL says: a resource
// server configured for the original keygate's issuer then fetches
// metadata, keys and status lists from the restored one.
type toServer struct{ target *url.URL }

func (t toServer) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.URL.Scheme, r.URL.Host, r.Host = t.target.Scheme, t.target.Host, ""
	return http.DefaultTransport.RoundTrip(r)
}

// getBackup downloads a backup with tok and checks the answer's headers.
func getBackup(t *testing.T, e *servertest.Env, tok string) []byte {
	t.Helper()
	r := e.API(t, tok, http.MethodGet, "/v1/store/backup", nil)
	if r.Status != http.StatusOK {
		t.Fatalf("backup: %s", r)
	}
	for h, want := range map[string]string{
		"Content-Type":   "application/octet-stream",
		"Cache-Control":  "no-store",
		"Content-Length": fmt.Sprint(len(r.Body)),
	} {
		if got := r.Header.Get(h); got != want {
			t.Errorf("backup answer's %s: %q, want %q", h, got, want)
		}
	}
	if cd := r.Header.Get("Content-Disposition"); cd != `attachment; filename="keygate-backup.db"` {
		t.Errorf("backup answer's Content-Disposition: %q", cd)
	}
	return r.Body
}

// restore writes a backup into a new data directory as keygate.db and opens
// it, as an operator restoring it does; the store closes when the test ends.
func restore(t *testing.T, backup []byte) *bolt.Store {
	t.Helper()
	path := filepath.Join(t.TempDir(), "keygate.db")
	if err := os.WriteFile(path, backup, 0o600); err != nil {
		t.Fatal(err)
	}
	st, err := bolt.Open(path)
	if err != nil {
		t.Fatalf("open the restored backup: %v", err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

func allKeys(t *testing.T, st store.Store) map[string]store.Key {
	t.Helper()
	keys := map[string]store.Key{}
	if err := st.ForEachKey(context.Background(), func(k store.Key) error {
		keys[k.ClientID] = k
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return keys
}

func bit(l store.StatusList, i int64) bool {
	return l.Entry(int64(i)) == store.StatusInvalid
}

// tokenStatus asks e for a token for id and secret without failing the
// test (it runs in load goroutines).
func tokenStatus(client *http.Client, base, id, secret string) (int, error) {
	req, err := http.NewRequest(http.MethodPost, base+"/oauth/token", strings.NewReader("grant_type=client_credentials"))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Authorization", servertest.BasicAuth(id, secret))
	resp, err := client.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	_, err = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, err
}

// TestStoreBackupUnderLoadRestores is the proof of issue 15's backup item.
func TestStoreBackupUnderLoadRestores(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	opts := server.Options{MaxKeysPerTeam: 1000}
	e := servertest.StartWith(t, servertest.Config{Options: opts})
	admin := e.AdminToken(t)
	// A store of some size, so the copy takes a while under the load.
	bulk := storetest.BulkKeys(t, 200, 100, 0)
	bl := e.Store.(store.BulkLoader)
	first, err := bl.NextStatusIndices(ctx, len(bulk))
	if err != nil {
		t.Fatal(err)
	}
	for i := range bulk {
		bulk[i].Permissions, bulk[i].StatusIndex = []string{permAccounting}, first+int64(i)
	}
	if err := bl.CreateKeys(ctx, bulk); err != nil {
		t.Fatal(err)
	}

	// Before the backup: keys in three teams, a token of each, three keys
	// deleted (their status bits set), and an admin token revoked (the
	// deny list) beside one that is not.
	type issued struct {
		key   servertest.Key
		token string
	}
	var live, deleted []issued
	for i := range 12 {
		k := e.CreateKeyWith(t, admin, fmt.Sprintf("team-%d", i%3), fmt.Sprintf("k%d", i), permAccounting)
		it := issued{k, e.Token(t, k.ClientID, k.ClientSecret, "").AccessToken}
		if i%4 == 3 {
			if r := e.API(t, admin, http.MethodDelete, "/v1/teams/"+k.TeamID+"/keys/"+k.ClientID, nil); r.Status != http.StatusNoContent {
				t.Fatalf("delete: %s", r)
			}
			deleted = append(deleted, it)
		} else {
			live = append(live, it)
		}
	}
	revokedAdmin := e.AdminToken(t)
	rq := e.NewRequest(t, http.MethodPost, "/oauth/revoke", strings.NewReader(url.Values{"token": {revokedAdmin}}.Encode()))
	rq.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	rq.Header.Set("Authorization", servertest.BasicAuth(e.AdminID, e.AdminSecret))
	if r := e.Do(t, rq); r.Status != http.StatusOK {
		t.Fatalf("revoke: %s", r)
	}
	if r := e.API(t, revokedAdmin, http.MethodGet, "/v1/teams", nil); r.Status != http.StatusUnauthorized {
		t.Fatalf("the revoked admin token still opens the API: %s", r)
	}

	beforeKeys := allKeys(t, e.Store)
	var beforeStatus store.StatusList
	beforeStatus, err = e.Store.StatusList(ctx)
	if err != nil {
		t.Fatal(err)
	}
	beforeSigning, err := e.Store.SigningKeys(ctx)
	if err != nil {
		t.Fatal(err)
	}
	jwks := e.Do(t, e.NewRequest(t, http.MethodGet, "/.well-known/jwks.json", nil))

	// The load: token requests for the live keys and key creations, from
	// before the backup begins until its last byte is read.
	var (
		stop                   = make(chan struct{})
		wg                     sync.WaitGroup
		started                atomic.Bool // the backup request is about to be sent
		tokensOK, tokensDuring atomic.Int64
		loadErrs               = make(chan error, 100)
		mu                     sync.Mutex
		created                []servertest.Key
		ackedBefore            = map[string]bool{} // created, acknowledged before the backup began
	)
	fail := func(err error) {
		select {
		case loadErrs <- err:
		default:
		}
	}
	for w := range 4 {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(w), 1))
			for {
				select {
				case <-stop:
					return
				default:
				}
				k := live[rng.IntN(len(live))].key
				during := started.Load()
				switch status, err := tokenStatus(e.Client, e.URL, k.ClientID, k.ClientSecret); {
				case err != nil:
					fail(err)
					return
				case status != http.StatusOK:
					fail(fmt.Errorf("a token request under load answered %d", status))
					return
				}
				tokensOK.Add(1)
				if during {
					tokensDuring.Add(1)
				}
			}
		})
	}
	createdFirst := make(chan struct{})
	for w := range 2 {
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				body, _ := json.Marshal(map[string]any{"name": fmt.Sprintf("load %d", i), "permissions": []string{permAccounting}})
				req, _ := http.NewRequest(http.MethodPost, e.URL+fmt.Sprintf("/v1/teams/load-%d/keys", w), bytes.NewReader(body))
				req.Header.Set("Content-Type", "application/json")
				req.Header.Set("Authorization", "Bearer "+admin)
				resp, err := e.Client.Do(req)
				if err != nil {
					fail(err)
					return
				}
				var k servertest.Key
				err = json.NewDecoder(resp.Body).Decode(&k)
				resp.Body.Close()
				if resp.StatusCode != http.StatusCreated || err != nil {
					fail(fmt.Errorf("a key creation under load answered %d (%v)", resp.StatusCode, err))
					return
				}
				before := !started.Load()
				mu.Lock()
				created = append(created, k)
				ackedBefore[k.ClientID] = before
				mu.Unlock()
				if w == 0 && i == 0 {
					close(createdFirst)
				}
			}
		})
	}
	select {
	case <-createdFirst:
	case err := <-loadErrs:
		t.Fatal(err)
	}

	started.Store(true)
	backup := getBackup(t, e, admin)
	close(stop)
	wg.Wait()
	select {
	case err := <-loadErrs:
		t.Fatalf("under load: %v", err)
	default:
	}
	mu.Lock()
	defer mu.Unlock()
	if tokensDuring.Load() == 0 || len(created) == 0 {
		t.Fatalf("the load did nothing: %d tokens after the backup began, %d keys created", tokensDuring.Load(), len(created))
	}
	t.Logf("backup of %d bytes; %d tokens issued (%d after the backup began), %d keys created under load", len(backup), tokensOK.Load(), tokensDuring.Load(), len(created))

	// Restore: a new data directory, a fresh keygate with the same master
	// key and issuer (so tokens issued before the backup are its own).
	st := restore(t, backup)
	r := servertest.StartWith(t, servertest.Config{
		Backend:   servertest.Existing(st),
		MasterKey: e.MasterKey,
		Options:   server.Options{MaxKeysPerTeam: 1000, Issuer: e.URL, AdminClientID: e.AdminID, AdminClientSecret: e.AdminSecret},
	})

	// Every key committed before the backup began, unchanged.
	after := allKeys(t, st)
	for id, want := range beforeKeys {
		if got, ok := after[id]; !ok || !reflect.DeepEqual(got, want) {
			t.Errorf("key %s after the restore:\n got  %+v (present: %v)\n want %+v", id, got, ok, want)
		}
	}
	for _, it := range deleted {
		if _, ok := after[it.key.ClientID]; ok {
			t.Errorf("key %s, deleted before the backup, is back", it.key.ClientID)
		}
	}
	// Keys created under load: all those acknowledged before the backup
	// began, and any other the backup holds, authenticate with their secret.
	restoredLoad := 0
	for _, k := range created {
		_, ok := after[k.ClientID]
		if !ok {
			if ackedBefore[k.ClientID] {
				t.Errorf("key %s, created before the backup began, is missing from it", k.ClientID)
			}
			continue
		}
		restoredLoad++
		if s, err := tokenStatus(r.Client, r.URL, k.ClientID, k.ClientSecret); err != nil || s != http.StatusOK {
			t.Errorf("key %s created under load: its secret at the restored keygate: %d %v", k.ClientID, s, err)
		}
	}
	t.Logf("%d of %d keys created under load are in the backup", restoredLoad, len(created))

	// The signing keys and the JWKS, identical.
	if got, err := st.SigningKeys(ctx); err != nil || !reflect.DeepEqual(got, beforeSigning) {
		t.Errorf("signing keys after the restore: %+v (%v), want %+v", got, err, beforeSigning)
	}
	if got := r.Do(t, r.NewRequest(t, http.MethodGet, "/.well-known/jwks.json", nil)); !bytes.Equal(got.Body, jwks.Body) {
		t.Errorf("the restored keygate's JWKS:\n%s\nwant\n%s", got.Body, jwks.Body)
	}
	// The status list: every bit committed before the backup began.
	afterStatus, err := st.StatusList(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if afterStatus.Allocated < beforeStatus.Allocated {
		t.Errorf("status indices allocated after the restore: %d, before the backup %d", afterStatus.Allocated, beforeStatus.Allocated)
	}
	revoked := 0
	for i := int64(0); i <= beforeStatus.Allocated; i++ {
		if bit(afterStatus, i) != bit(beforeStatus, i) {
			t.Errorf("status bit %d: %v after the restore, %v before the backup", i, bit(afterStatus, i), bit(beforeStatus, i))
		}
		if bit(beforeStatus, i) {
			revoked++
		}
	}
	if revoked < len(deleted) {
		t.Fatalf("only %d status bits set before the backup, %d keys deleted", revoked, len(deleted))
	}

	// Tokens issued before the backup, checked by a resource server that
	// reads the restored keygate's metadata, JWKS and status list: live
	// keys' tokens verify, deleted keys' tokens are revoked.
	v, err := verify.New(ctx, verify.Options{Issuer: e.URL, Audience: e.URL,
		HTTPClient: &http.Client{Transport: toServer{must(url.Parse(r.URL))}, Timeout: 10 * time.Second}})
	if err != nil {
		t.Fatal(err)
	}
	for _, it := range live {
		if _, err := v.Verify(ctx, it.token); err != nil {
			t.Errorf("a token of %s issued before the backup, at the restored keygate: %v", it.key.ClientID, err)
		}
		if s, err := tokenStatus(r.Client, r.URL, it.key.ClientID, it.key.ClientSecret); err != nil || s != http.StatusOK {
			t.Errorf("key %s's secret at the restored keygate: %d %v", it.key.ClientID, s, err)
		}
	}
	for _, it := range deleted {
		if _, err := v.Verify(ctx, it.token); !errors.Is(err, verify.ErrRevoked) {
			t.Errorf("a token of the deleted key %s at the restored keygate: %v, want ErrRevoked", it.key.ClientID, err)
		}
	}
	// keygate's own checks of its tokens: the admin token issued before
	// the backup opens the restored API, the revoked one does not.
	if got := r.API(t, admin, http.MethodGet, "/v1/teams", nil); got.Status != http.StatusOK {
		t.Errorf("an admin token issued before the backup, at the restored keygate: %s", got)
	}
	if got := r.API(t, revokedAdmin, http.MethodGet, "/v1/teams", nil); got.Status != http.StatusUnauthorized {
		t.Errorf("an admin token revoked before the backup, at the restored keygate: %s", got)
	}

	// The backup recorded itself: the audit event is written before the
	// copy is taken, so the copy holds it.
	page, err := st.AuditEvents(ctx, "", store.AuditQuery{Actions: []store.AuditAction{store.AuditStoreBackedUp}})
	if err != nil || len(page.Events) != 1 || page.Events[0].Actor != (store.AuditActor{Type: store.ActorAdminKey, ID: e.AdminID}) {
		t.Errorf("store.backed_up events in the backup: %+v (%v), want one by the admin key", page.Events, err)
	}

	// The same master key is what makes the copy usable: another one is
	// refused at start.
	enc, err := masterkey.Generate()
	if err != nil {
		t.Fatal(err)
	}
	other, err := masterkey.Parse(enc)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.TrySecond(t, server.Options{MasterKey: other, Issuer: e.URL}); err == nil {
		t.Error("the restored copy started with another master key")
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// TestStoreBackupRefused: without a token 401, with a team key's token 403,
// on a store without a backup (the in-memory store, Redis) 404 — each
// problem+json, and none records a backup; nor does HEAD, which takes no
// copy.
func TestStoreBackupRefused(t *testing.T) {
	e := newTestEnv(t, server.Options{})
	admin := e.AdminToken(t)
	k := e.CreateKeyWith(t, admin, "acme", "k", permAccounting)
	team := e.Token(t, k.ClientID, k.ClientSecret, "").AccessToken
	for _, c := range []struct {
		name, tok string
		status    int
	}{{"no token", "", http.StatusUnauthorized}, {"team key", team, http.StatusUnauthorized}, {"garbage", "x.y.z", http.StatusUnauthorized}} {
		r := e.API(t, c.tok, http.MethodGet, "/v1/store/backup", nil)
		if r.Status != c.status || r.Header.Get("Content-Type") != "application/problem+json" {
			t.Errorf("%s: %s, want %d problem+json", c.name, r, c.status)
		}
	}
	// HEAD says what GET would send, without a copy: nothing is recorded.
	if r := e.API(t, admin, http.MethodHead, "/v1/store/backup", nil); r.Status != http.StatusOK || r.Header.Get("Content-Length") == "" ||
		r.Header.Get("Content-Type") != "application/octet-stream" || len(r.Body) != 0 {
		t.Errorf("HEAD with an admin token: %s %v", r, r.Header)
	}
	noBackupRecorded(t, e.Env)

	for _, b := range []servertest.Backend{servertest.Memory(), servertest.Redis()} {
		t.Run(b.Name(), func(t *testing.T) {
			e := startEnv(t, servertest.Config{Backend: b})
			r := e.API(t, e.AdminToken(t), http.MethodGet, "/v1/store/backup", nil)
			var p server.Problem
			if r.Status != http.StatusNotFound || r.Header.Get("Content-Type") != "application/problem+json" ||
				json.Unmarshal(r.Body, &p) != nil || !strings.Contains(p.Detail, "no online backup") {
				t.Fatalf("backup on %s: %s, want 404 problem+json", b.Name(), r)
			}
			noBackupRecorded(t, e.Env)
		})
	}
}

func noBackupRecorded(t *testing.T, e *servertest.Env) {
	t.Helper()
	page, err := e.Store.AuditEvents(context.Background(), "", store.AuditQuery{Actions: []store.AuditAction{store.AuditStoreBackedUp}})
	if err != nil || len(page.Events) != 0 {
		t.Errorf("store.backed_up events after refused backups: %+v (%v)", page.Events, err)
	}
}

// TestStoreBackupOutlastsWriteTimeout: behind an HTTP server whose write
// timeout has passed before any handler writes, an ordinary answer is cut
// off while the backup, which moves its deadline at each write, arrives
// whole.
func TestStoreBackupOutlastsWriteTimeout(t *testing.T) {
	e := newTestEnv(t, server.Options{})
	admin := e.AdminToken(t)
	for i := range 20 {
		e.CreateKeyWith(t, admin, fmt.Sprintf("t%d", i), "k", permAccounting)
	}
	want := getBackup(t, e.Env, admin)

	ts := httptest.NewUnstartedServer(e.Server)
	ts.Config.WriteTimeout = time.Nanosecond
	ts.Start()
	defer ts.Close()
	get := func(path string) (*http.Response, []byte, error) {
		req, _ := http.NewRequest(http.MethodGet, ts.URL+path, nil)
		req.Header.Set("Authorization", "Bearer "+admin)
		client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
		resp, err := client.Do(req)
		if err != nil {
			return nil, nil, err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return resp, b, err
	}
	if _, _, err := get("/v1/teams"); err == nil {
		t.Fatal("an ordinary answer arrived past the write timeout: the test proves nothing")
	}
	resp, got, err := get("/v1/store/backup")
	if err != nil {
		t.Fatalf("the backup past the server's write timeout: %v", err)
	}
	if resp.StatusCode != http.StatusOK || int64(len(got)) != resp.ContentLength {
		t.Fatalf("the backup past the server's write timeout: %d, %d bytes of %d", resp.StatusCode, len(got), resp.ContentLength)
	}
	// Same store, nothing written since but the second backup's own audit
	// event: the files differ, and both open.
	if len(got) < len(want)/2 {
		t.Fatalf("the backup past the write timeout has %d bytes, the first %d", len(got), len(want))
	}
	st := restore(t, got)
	if n := len(allKeys(t, st)); n != 21 {
		t.Fatalf("the backup past the write timeout holds %d keys, want 21", n)
	}
}
