package storeio_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/apikey"
	"github.com/keygate/keygate/internal/redistest"
	"github.com/keygate/keygate/server"
	"github.com/keygate/keygate/server/servertest"
	"github.com/keygate/keygate/store"
	"github.com/keygate/keygate/store/bolt"
	"github.com/keygate/keygate/store/redis"
	"github.com/keygate/keygate/storeio"
)

const issuer = "https://keygate.test"

// emptyBolt and emptyRedis are import targets nobody started.
func emptyBolt(t *testing.T) store.Store {
	st, err := bolt.Open(filepath.Join(t.TempDir(), "keygate.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

func emptyRedis(t *testing.T) store.Store {
	c := redistest.Require(t)
	st, err := redis.New(c, redistest.Prefix(t, c, ""), 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func introspect(t *testing.T, e *servertest.Env, tok string) bool {
	t.Helper()
	req := e.NewRequest(t, http.MethodPost, "/oauth/introspect", strings.NewReader(url.Values{"token": {tok}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(e.AdminID, e.AdminSecret)
	r := e.Do(t, req)
	if r.Status != http.StatusOK {
		t.Fatalf("introspect: %s", r)
	}
	return bytes.Contains(r.Body, []byte(`"active":true`))
}

func get(t *testing.T, e *servertest.Env, path string) []byte {
	t.Helper()
	r := e.Do(t, e.NewRequest(t, http.MethodGet, path, nil))
	if r.Status != http.StatusOK {
		t.Fatalf("GET %s: %s", path, r)
	}
	return r.Body
}

// TestMoveBetweenBackends moves a used store from bbolt to Redis and from
// Redis to bbolt, through Export and Import on the real stores, and starts
// keygate on the target with the same master key and issuer: every secret
// still authenticates, tokens issued before the move verify (same JWKS),
// a revoked token stays revoked, the status list is the same (a deleted
// key's bit still set) and the team limit still holds.
func TestMoveBetweenBackends(t *testing.T) {
	for _, tc := range []struct {
		name   string
		from   servertest.Backend
		source string
		to     func(*testing.T) store.Store
	}{
		{"bolt-to-redis", servertest.Bolt(), "bolt", emptyRedis},
		{"redis-to-bolt", servertest.Redis(), "redis", emptyBolt},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			opts := server.Options{Issuer: issuer, MaxKeysPerTeam: 5}
			src := servertest.StartWith(t, servertest.Config{Backend: tc.from, Options: opts})
			admin := src.AdminToken(t)
			var keys []servertest.Key
			for i := 0; i < 5; i++ {
				keys = append(keys, src.CreateKeyWith(t, admin, "acme", "k"+string(rune('a'+i)), "accounting_api"))
			}
			gone := src.CreateKeyWith(t, admin, "other", "gone", "accounting_api")
			goneKey, err := src.Store.GetKey(ctx, gone.ClientID)
			if err != nil {
				t.Fatal(err)
			}
			if r := src.API(t, admin, http.MethodDelete, "/v1/teams/other/keys/"+gone.ClientID, nil); r.Status != http.StatusNoContent {
				t.Fatalf("delete key: %s", r)
			}
			// A suspended key with a policy: its record and its SUSPENDED
			// entry must both move.
			r := src.API(t, admin, http.MethodPost, "/v1/teams/pol/keys", map[string]any{"name": "paused", "permissions": []string{"accounting_api"},
				"disabled": true, "expires_at": time.Now().Add(48 * time.Hour).UTC().Format(time.RFC3339), "token_ttl": 300,
				"allowed_cidrs": []string{"127.0.0.0/8", "::1/128"}, "metadata": map[string]any{"tenant": "acme"}})
			var paused servertest.Key
			if r.Status != http.StatusCreated || json.Unmarshal(r.Body, &paused) != nil {
				t.Fatalf("create a suspended key: %s", r)
			}
			pausedKey, err := src.Store.GetKey(ctx, paused.ClientID)
			if err != nil || !pausedKey.HasPolicy() {
				t.Fatalf("stored suspended key %+v, %v", pausedKey, err)
			}
			// A rotated key: both secret generations must survive.
			r = src.API(t, admin, http.MethodPost, "/v1/teams/acme/keys/"+keys[4].ClientID+"/rotate", map[string]string{"grace_period": "1h"})
			if r.Status != http.StatusOK {
				t.Fatalf("rotate: %s", r)
			}
			var rotated servertest.Key
			if err := json.Unmarshal(r.Body, &rotated); err != nil || rotated.ClientSecret == "" {
				t.Fatalf("rotate answer %s: %v", r.Body, err)
			}
			oldSecret := keys[4].ClientSecret
			keys[4].ClientSecret = rotated.ClientSecret
			live := src.Token(t, keys[0].ClientID, keys[0].ClientSecret, "").AccessToken
			revoked := src.Token(t, keys[1].ClientID, keys[1].ClientSecret, "").AccessToken
			req := src.NewRequest(t, http.MethodPost, "/oauth/revoke", strings.NewReader(url.Values{"token": {revoked}}.Encode()))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			req.SetBasicAuth(keys[1].ClientID, keys[1].ClientSecret)
			if r := src.Do(t, req); r.Status != http.StatusOK {
				t.Fatalf("revoke: %s", r)
			}
			if !introspect(t, src, live) || introspect(t, src, revoked) {
				t.Fatal("source: the live token must be active, the revoked one not")
			}
			// Webhook positions: one endpoint has delivered the whole
			// stream, one stopped half-way, one is disabled.
			src.AuditTick(t) // feed the operator-wide stream (Redis)
			srcStream := allEvents(t, src.Store)
			if len(srcStream) < 4 {
				t.Fatalf("the source stream holds %d events", len(srcStream))
			}
			half := srcStream[len(srcStream)/2].Seq
			disabledAt := time.Now().UTC().Truncate(time.Millisecond)
			hooks := map[string]store.WebhookState{
				"ep-caught-up": {Delivered: uint64(srcStream[len(srcStream)-1].Seq), Attempts: 2, Owner: "old-instance", LeaseUntil: disabledAt},
				"ep-half":      {Delivered: uint64(half)},
				"ep-disabled":  {Delivered: uint64(half), Disabled: true, DisabledAt: disabledAt, DisabledReason: "gave up"},
			}
			for ep, ws := range hooks {
				if _, err := src.Store.UpdateWebhookState(ctx, ep, func(store.WebhookState) (store.WebhookState, error) { return ws, nil }); err != nil {
					t.Fatal(err)
				}
			}
			srcJWKS := get(t, src, "/.well-known/jwks.json")
			srcStatus, err := src.Store.StatusList(ctx)
			if err != nil {
				t.Fatal(err)
			}

			// The start's check of stored keys records its catalog once it
			// has walked them (apikey's keycheck.go): wait for it, so the
			// stream holds that singleton as well as the pepper.
			if _, err := src.Server.KeyCheck(); err != nil {
				t.Fatal(err)
			}
			var stream bytes.Buffer
			sum, err := storeio.Export(ctx, &stream, src.Store, storeio.ExportOptions{Source: tc.source})
			if err != nil {
				t.Fatal(err)
			}
			if sum.Keys != 7 || sum.Denied != 1 || sum.Singletons != 2 || sum.AuditEvents == 0 || sum.Webhooks != 3 || sum.SuspendedBits != 1 {
				t.Errorf("export summary %+v: want 7 keys (5, the suspended one and the admin), 1 deny entry, the pepper and the key check's marker, some audit events, 1 suspended entry", sum)
			}
			// The status schedule is not exported, so neither is the
			// marker saying it is complete: the target's first start walks
			// and completes its own (apikey/statusschedule.go).
			if all, err := src.Store.(store.Exporter).Singletons(ctx); err != nil || all[store.StatusScheduleComplete] == nil {
				t.Fatalf("the source's audit round did not complete its status schedule (%v): the test shows nothing", err)
			}
			if bytes.Contains(stream.Bytes(), []byte(store.StatusScheduleComplete)) {
				t.Error("the stream carries the status schedule's marker")
			}
			for _, secret := range [][]byte{[]byte(keys[0].ClientSecret), []byte(src.AdminSecret), []byte(live)} {
				if bytes.Contains(stream.Bytes(), secret) {
					t.Fatal("the stream holds a secret or a token")
				}
			}

			target := tc.to(t)
			check := func(singletons map[string][]byte, sk store.SigningKeys) error {
				return apikey.CheckSealed(src.MasterKey, singletons, sk, time.Now())
			}
			isum, err := storeio.Import(ctx, bytes.NewReader(stream.Bytes()), target, storeio.ImportOptions{CheckSecrets: check})
			if err != nil {
				t.Fatal(err)
			}
			if isum.Keys != 7 || isum.Denied != 1 || isum.AuditEvents != sum.AuditEvents || isum.RevokedBits != sum.RevokedBits || isum.Webhooks != 3 || isum.SuspendedBits != 1 {
				t.Errorf("import summary %+v, export %+v", isum, sum)
			}

			dstStatus, err := target.StatusList(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if dstStatus.Allocated != srcStatus.Allocated || !bytes.Equal(trim(dstStatus.Statuses), trim(srcStatus.Statuses)) {
				t.Fatalf("status list: target %d %x, source %d %x", dstStatus.Allocated, dstStatus.Statuses, srcStatus.Allocated, srcStatus.Statuses)
			}
			if i := goneKey.StatusIndex; dstStatus.Entry(i) != store.StatusInvalid {
				t.Errorf("the deleted key's bit %d is not set on the target", i)
			}
			if i := pausedKey.StatusIndex; dstStatus.Entry(i) != store.StatusSuspended {
				t.Errorf("the suspended key's entry %d is %d on the target, want SUSPENDED", i, dstStatus.Entry(i))
			}
			if got, err := target.GetKey(ctx, paused.ClientID); err != nil || !got.ExpiresAt.Equal(pausedKey.ExpiresAt) || !got.DisabledAt.Equal(pausedKey.DisabledAt) ||
				got.TokenTTL != pausedKey.TokenTTL || !slices.Equal(got.AllowedCIDRs, pausedKey.AllowedCIDRs) || !bytes.Equal(got.Metadata, pausedKey.Metadata) {
				t.Errorf("the suspended key's policy on the target %+v (%v), source %+v", got, err, pausedKey)
			}

			// Each endpoint's position in the target's stream: nothing the
			// source had not delivered comes at or before it; the caught-up
			// one is at the end.
			srcSeq := map[string]int64{}
			for _, ev := range srcStream {
				srcSeq[ev.ID] = ev.Seq
			}
			dstStream := allEvents(t, target)
			if len(dstStream) != len(srcStream) {
				t.Fatalf("the target stream holds %d events, the source's %d", len(dstStream), len(srcStream))
			}
			for ep, want := range hooks {
				got, err := target.WebhookState(ctx, ep)
				if err != nil {
					t.Fatal(err)
				}
				for _, ev := range dstStream {
					if ev.Seq <= int64(got.Delivered) && srcSeq[ev.ID] > int64(want.Delivered) {
						t.Errorf("%s: event %s (source cursor %d, not delivered) is at or before the target position %d", ep, ev.ID, srcSeq[ev.ID], got.Delivered)
					}
				}
				if got.Disabled != want.Disabled || got.DisabledReason != want.DisabledReason || !got.DisabledAt.Equal(want.DisabledAt) || got.Owner != "" || got.Attempts != 0 {
					t.Errorf("%s: target state %+v, source %+v (disabled kept, lease and retries dropped)", ep, got, want)
				}
			}
			if got, err := target.WebhookState(ctx, "ep-caught-up"); err != nil || got.Delivered != uint64(dstStream[len(dstStream)-1].Seq) {
				t.Errorf("the caught-up endpoint is at %d (%v), want the end of the target stream %d", got.Delivered, err, dstStream[len(dstStream)-1].Seq)
			}
			if got, err := target.WebhookState(ctx, "ep-half"); err != nil || got.Delivered == 0 {
				t.Errorf("the half-way endpoint starts again from the beginning (%v)", err)
			}

			dst := servertest.StartWith(t, servertest.Config{Backend: servertest.Existing(target), MasterKey: src.MasterKey,
				Options: server.Options{Issuer: issuer, MaxKeysPerTeam: 5, AdminClientID: src.AdminID, AdminClientSecret: src.AdminSecret}})
			if got := get(t, dst, "/.well-known/jwks.json"); !bytes.Equal(got, srcJWKS) {
				t.Errorf("JWKS differs:\n%s\n%s", got, srcJWKS)
			}
			for _, k := range keys {
				if tok := dst.Token(t, k.ClientID, k.ClientSecret, "").AccessToken; !introspect(t, dst, tok) {
					t.Errorf("key %s: a token from the target is not active", k.ClientID)
				}
			}
			if tok := dst.Token(t, keys[4].ClientID, oldSecret, "").AccessToken; !introspect(t, dst, tok) {
				t.Error("the previous secret of a key rotated before the move does not work during its grace period")
			}
			if !introspect(t, dst, live) {
				t.Error("a token issued before the move does not verify on the target")
			}
			if introspect(t, dst, revoked) {
				t.Error("a token revoked before the move is active on the target")
			}
			r = dst.API(t, dst.AdminToken(t), http.MethodPost, "/v1/teams/acme/keys", map[string]any{"name": "sixth", "permissions": []string{"accounting_api"}})
			if r.Status != http.StatusConflict || !bytes.Contains(r.Body, []byte("limit")) {
				t.Errorf("a 6th key in a team limited to 5 on the target: %s, want 409 naming the limit", r)
			}
			if n := len(dst.ListKeys(t, dst.AdminToken(t), "acme").Keys); n != 5 {
				t.Errorf("team acme has %d keys on the target, want 5", n)
			}
		})
	}
}

func trim(b []byte) []byte { return bytes.TrimRight(b, "\x00") }

// allEvents is st's operator-wide stream, oldest first.
func allEvents(t *testing.T, st store.Store) []store.AuditEvent {
	t.Helper()
	var out []store.AuditEvent
	q := store.AuditQuery{Limit: store.MaxAuditLimit}
	for {
		page, err := st.AllAuditEvents(context.Background(), q)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, page.Events...)
		if page.Next == 0 {
			break
		}
		q.After = page.Next
	}
	slices.Reverse(out)
	return out
}
