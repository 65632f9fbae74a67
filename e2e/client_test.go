package e2e_test

// The management client (package client) against a real keygate. Its tests
// that need no keygate stay in the client module.

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keygate/keygate/client"
	"github.com/keygate/keygate/credential"
	"github.com/keygate/keygate/scopes"
	"github.com/keygate/keygate/server"
	"github.com/keygate/keygate/server/servertest"
	"github.com/keygate/keygate/store"
	"github.com/keygate/keygate/store/storetest"
)

const adminID = "test-admin"

type env struct {
	url    string
	secret string
	calls  *atomic.Int64 // token endpoint calls
}

// startServer runs a real keygate, counting token endpoint calls.
func startServer(t *testing.T) env {
	t.Helper()
	calls := &atomic.Int64{}
	e := servertest.Start(t, server.Options{AdminClientID: adminID, AdminClientSecret: newSecret(t)}, func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/oauth/token" {
				calls.Add(1)
			}
			h.ServeHTTP(w, r)
		})
	})
	return env{url: e.URL, secret: e.AdminSecret, calls: calls}
}

func newSecret(t *testing.T) string {
	t.Helper()
	s, err := credential.NewSecret()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func asError(t *testing.T, err error) *client.Error {
	t.Helper()
	if err == nil {
		t.Fatal("no error")
	}
	var ce *client.Error
	if !errors.As(err, &ce) {
		t.Fatalf("error %v (%T) is not a *client.Error", err, err)
	}
	return ce
}

func TestKeyLifecycle(t *testing.T) {
	e := startServer(t)
	ctx := ctxT(t)
	c := client.New(client.Config{URL: e.url + "/", ClientID: adminID, ClientSecret: e.secret})

	l, err := c.ListKeys(ctx, "acme")
	if err != nil {
		t.Fatal(err)
	}
	if len(l.Keys) != 0 || l.MaxKeys != 5 {
		t.Fatalf("empty team lists %+v", l)
	}

	created, err := c.CreateKey(ctx, "acme", "Production sync", []string{"accounting_api"})
	if err != nil {
		t.Fatal(err)
	}
	if err := credential.CheckSecretFormat(created.ClientSecret); err != nil {
		t.Fatalf("created secret: %v", err)
	}
	if !strings.HasPrefix(created.ClientID, credential.ClientIDPrefix) || created.TeamID != "acme" ||
		created.Name != "Production sync" || len(created.Permissions) != 1 || created.Permissions[0] != "accounting_api" {
		t.Fatalf("created %+v", created.Key)
	}
	if len(created.Scopes) != 10 || created.Scopes[0] != "common:read" {
		t.Fatalf("scopes %v", created.Scopes)
	}
	if created.CreatedAt.IsZero() || time.Since(created.CreatedAt) > time.Minute || created.LastUsedAt != nil {
		t.Fatalf("created_at %v last_used_at %v", created.CreatedAt, created.LastUsedAt)
	}

	got, err := c.GetKey(ctx, "acme", created.ClientID)
	if err != nil {
		t.Fatal(err)
	}
	if got.ClientID != created.ClientID || got.Name != created.Name || !got.CreatedAt.Equal(created.CreatedAt) {
		t.Fatalf("GetKey %+v, created %+v", got, created.Key)
	}

	l, err = c.ListKeys(ctx, "acme")
	if err != nil {
		t.Fatal(err)
	}
	if len(l.Keys) != 1 || l.Keys[0].ClientID != created.ClientID {
		t.Fatalf("list %+v", l)
	}
	// The key belongs to acme only.
	if _, err := c.GetKey(ctx, "globex", created.ClientID); asError(t, err).Status != http.StatusNotFound {
		t.Fatalf("key visible under another team: %v", err)
	}

	if err := c.DeleteKey(ctx, "acme", created.ClientID); err != nil {
		t.Fatal(err)
	}
	ce := asError(t, func() error { _, err := c.GetKey(ctx, "acme", created.ClientID); return err }())
	if ce.Status != http.StatusNotFound {
		t.Fatalf("GetKey after delete: status %d", ce.Status)
	}
	if !strings.Contains(ce.Detail, "team acme has no key") || ce.Error() != ce.Detail {
		t.Fatalf("detail %q / Error() %q", ce.Detail, ce.Error())
	}
	if ce.Type == "" || ce.Title == "" {
		t.Fatalf("problem type/title missing: %+v", ce)
	}
	if err := c.DeleteKey(ctx, "acme", created.ClientID); asError(t, err).Status != http.StatusNotFound {
		t.Fatalf("second delete: %v", err)
	}

	// The admin token is fetched once and reused (oauth2 caching).
	if n := e.calls.Load(); n != 1 {
		t.Fatalf("token endpoint called %d times for one client, want 1", n)
	}
}

func TestTeamLimitConflict(t *testing.T) {
	e := startServer(t)
	ctx := ctxT(t)
	c := client.New(client.Config{URL: e.url, ClientID: adminID, ClientSecret: e.secret})
	for i := 0; i < 5; i++ {
		if _, err := c.CreateKey(ctx, "acme", "key", []string{"visualization_sdk"}); err != nil {
			t.Fatalf("key %d: %v", i+1, err)
		}
	}
	_, err := c.CreateKey(ctx, "acme", "sixth", []string{"visualization_sdk"})
	ce := asError(t, err)
	if ce.Status != http.StatusConflict {
		t.Fatalf("6th key: status %d, want 409", ce.Status)
	}
	if !strings.Contains(ce.Detail, "already has 5 API keys") || !strings.Contains(ce.Detail, "delete one") {
		t.Fatalf("6th key detail %q", ce.Detail)
	}
	if l, err := c.ListKeys(ctx, "acme"); err != nil || len(l.Keys) != 5 {
		t.Fatalf("after the refused 6th: %v keys, %v", len(l.Keys), err)
	}
}

func TestBadRequestDetail(t *testing.T) {
	e := startServer(t)
	ctx := ctxT(t)
	c := client.New(client.Config{URL: e.url, ClientID: adminID, ClientSecret: e.secret})
	ce := asError(t, func() error { _, err := c.CreateKey(ctx, "acme", "k", []string{"no_such_permission"}); return err }())
	if ce.Status != http.StatusBadRequest || !strings.Contains(ce.Detail, "accounting_api") {
		t.Fatalf("unknown permission: %+v", ce)
	}
	ce = asError(t, func() error { _, err := c.ListKeys(ctx, "-bad team"); return err }())
	if ce.Status != http.StatusBadRequest || !strings.Contains(ce.Detail, "team id") {
		t.Fatalf("bad team: %+v", ce)
	}
}

func TestWrongAdminSecret(t *testing.T) {
	e := startServer(t)
	ctx := ctxT(t)
	wrong, err := credential.NewSecret()
	if err != nil {
		t.Fatal(err)
	}
	for name, cfg := range map[string]client.Config{
		"wrong secret":     {URL: e.url, ClientID: adminID, ClientSecret: wrong},
		"garbage secret":   {URL: e.url, ClientID: adminID, ClientSecret: "nope"},
		"unknown admin id": {URL: e.url, ClientID: "someone-else", ClientSecret: e.secret},
	} {
		t.Run(name, func(t *testing.T) {
			c := client.New(cfg)
			_, err := c.ListKeys(ctx, "acme")
			ce := asError(t, err)
			if ce.Status != http.StatusUnauthorized {
				t.Fatalf("status %d, want 401", ce.Status)
			}
			if !strings.Contains(ce.Detail, "admin token") || !strings.Contains(ce.Detail, "invalid_client") {
				t.Fatalf("detail %q does not say the admin token could not be obtained", ce.Detail)
			}
			if strings.Contains(ce.Detail, cfg.ClientSecret) || strings.Contains(ce.Error(), cfg.ClientSecret) {
				t.Fatal("error repeats the secret")
			}
		})
	}
}

// tokenStatus asks the token endpoint for a token with a key's credentials.
func tokenStatus(t *testing.T, base, id, secret string) int {
	t.Helper()
	req, err := http.NewRequestWithContext(ctxT(t), http.MethodPost, base+"/oauth/token", strings.NewReader("grant_type=client_credentials"))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(url.QueryEscape(id), url.QueryEscape(secret))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func TestRotateKey(t *testing.T) {
	e := startServer(t)
	ctx := ctxT(t)
	c := client.New(client.Config{URL: e.url, ClientID: adminID, ClientSecret: e.secret})
	created, err := c.CreateKey(ctx, "acme", "Production sync", []string{"accounting_api"})
	if err != nil {
		t.Fatal(err)
	}
	if created.SecretRotatedAt != nil || created.PreviousSecretExpiresAt != nil {
		t.Fatalf("a new key shows a rotation: %+v", created.Key)
	}

	// nil: the server's default grace period of 24 h.
	before := time.Now()
	rotated, err := c.RotateKey(ctx, "acme", created.ClientID, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := credential.CheckSecretFormat(rotated.ClientSecret); err != nil || rotated.ClientSecret == created.ClientSecret {
		t.Fatalf("rotated secret: %v", err)
	}
	if rotated.ClientID != created.ClientID || rotated.Name != created.Name || rotated.SecretRotatedAt == nil {
		t.Fatalf("rotated %+v", rotated.Key)
	}
	if exp := rotated.PreviousSecretExpiresAt; exp == nil ||
		exp.Before(before.Add(24*time.Hour).Add(-2*time.Second)) || exp.After(time.Now().Add(24*time.Hour)) {
		t.Fatalf("previous_secret_expires_at %v, want about 24 h from now", exp)
	}
	if tokenStatus(t, e.url, created.ClientID, created.ClientSecret) != http.StatusOK ||
		tokenStatus(t, e.url, created.ClientID, rotated.ClientSecret) != http.StatusOK {
		t.Fatal("inside the grace period both secrets must work")
	}
	got, err := c.GetKey(ctx, "acme", created.ClientID)
	if err != nil || got.SecretRotatedAt == nil || got.PreviousSecretExpiresAt == nil ||
		!got.PreviousSecretExpiresAt.Equal(*rotated.PreviousSecretExpiresAt) {
		t.Fatalf("GetKey after a rotation: %+v, %v", got, err)
	}

	// An explicit 0: the earlier secrets stop at once.
	zero := time.Duration(0)
	again, err := c.RotateKey(ctx, "acme", created.ClientID, &zero)
	if err != nil {
		t.Fatal(err)
	}
	if again.PreviousSecretExpiresAt != nil {
		t.Fatalf("grace 0 left a previous secret until %v", again.PreviousSecretExpiresAt)
	}
	for _, s := range []string{created.ClientSecret, rotated.ClientSecret} {
		if got := tokenStatus(t, e.url, created.ClientID, s); got != http.StatusUnauthorized {
			t.Fatalf("earlier secret after grace 0: status %d", got)
		}
	}
	if got := tokenStatus(t, e.url, created.ClientID, again.ClientSecret); got != http.StatusOK {
		t.Fatalf("newest secret: status %d", got)
	}

	// Out of range: the server's 400 detail says the allowed range.
	bad := -time.Second
	ce := asError(t, func() error { _, err := c.RotateKey(ctx, "acme", created.ClientID, &bad); return err }())
	if ce.Status != http.StatusBadRequest || !strings.Contains(ce.Detail, "0s to 7d") {
		t.Fatalf("grace -1s: %+v", ce)
	}
	// Another team's path: 404.
	if _, err := c.RotateKey(ctx, "globex", created.ClientID, nil); asError(t, err).Status != http.StatusNotFound {
		t.Fatalf("rotate under another team: %v", err)
	}
}

func TestTeams(t *testing.T) {
	e := startServer(t)
	ctx := ctxT(t)
	c := client.New(client.Config{URL: e.url, ClientID: adminID, ClientSecret: e.secret})

	l, err := c.Teams(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	if l.Teams == nil || len(l.Teams) != 0 || l.MaxKeys != 5 {
		t.Fatalf("empty server lists %+v", l)
	}

	// Created out of order: the list is sorted by team ID.
	for _, team := range []string{"globex", "acme", "globex"} {
		if _, err := c.CreateKey(ctx, team, "key", []string{"visualization_sdk"}); err != nil {
			t.Fatalf("create in %s: %v", team, err)
		}
	}
	l, err = c.Teams(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	want := &client.TeamList{Teams: []client.Team{{TeamID: "acme", KeyCount: 1}, {TeamID: "globex", KeyCount: 2}}, MaxKeys: 5}
	if !reflect.DeepEqual(l, want) {
		t.Fatalf("Teams = %+v, want %+v", l, want)
	}

	// A team whose last key is deleted is gone.
	keys, err := c.ListKeys(ctx, "acme")
	if err != nil || len(keys.Keys) != 1 {
		t.Fatalf("acme keys %+v, %v", keys, err)
	}
	if err := c.DeleteKey(ctx, "acme", keys.Keys[0].ClientID); err != nil {
		t.Fatal(err)
	}
	l, err = c.Teams(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	want = &client.TeamList{Teams: []client.Team{{TeamID: "globex", KeyCount: 2}}, MaxKeys: 5}
	if !reflect.DeepEqual(l, want) {
		t.Fatalf("Teams after deleting acme's key = %+v, want %+v", l, want)
	}
}

func TestPermissions(t *testing.T) {
	e := startServer(t)
	c := client.New(client.Config{URL: e.url, ClientID: adminID, ClientSecret: e.secret})
	l, err := c.Permissions(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	offered := scopes.Default().Offered()
	want := make([]client.Permission, 0, len(offered))
	for _, p := range offered {
		want = append(want, client.Permission{ID: p.ID, Name: p.Name, Description: p.Description, Scopes: p.Scopes})
	}
	if !reflect.DeepEqual(l.Permissions, want) {
		t.Fatalf("Permissions = %+v\nwant the offered catalog %+v", l.Permissions, want)
	}
	if l.MaxNameLength != 64 {
		t.Fatalf("max_name_length %d, want 64", l.MaxNameLength)
	}
	for _, p := range l.Permissions {
		if p.ID == "token_introspection" {
			t.Fatal("the operator-only token_introspection permission is listed")
		}
	}
}

func TestTeamsAndPermissionsWrongAdminSecret(t *testing.T) {
	e := startServer(t)
	ctx := ctxT(t)
	c := client.New(client.Config{URL: e.url, ClientID: adminID, ClientSecret: newSecret(t)})
	for name, call := range map[string]func() error{
		"Teams":       func() error { _, err := c.Teams(ctx, ""); return err },
		"Permissions": func() error { _, err := c.Permissions(ctx); return err },
	} {
		t.Run(name, func(t *testing.T) {
			ce := asError(t, call())
			if ce.Status != http.StatusUnauthorized {
				t.Fatalf("status %d, want 401", ce.Status)
			}
			if !strings.Contains(ce.Detail, "admin token") || !strings.Contains(ce.Detail, "invalid_client") {
				t.Fatalf("detail %q does not say the admin token could not be obtained", ce.Detail)
			}
		})
	}
}

func TestTeamsAndPermissionsTeamKey(t *testing.T) {
	// A team key gets a token, but not a management token (its aud is the
	// resource servers'): the server's 401 problem details come back.
	e := startServer(t)
	ctx := ctxT(t)
	admin := client.New(client.Config{URL: e.url, ClientID: adminID, ClientSecret: e.secret})
	k, err := admin.CreateKey(ctx, "acme", "team key", []string{"accounting_api"})
	if err != nil {
		t.Fatal(err)
	}
	c := client.New(client.Config{URL: e.url, ClientID: k.ClientID, ClientSecret: k.ClientSecret})
	for name, call := range map[string]func() error{
		"Teams":       func() error { _, err := c.Teams(ctx, ""); return err },
		"Permissions": func() error { _, err := c.Permissions(ctx); return err },
	} {
		t.Run(name, func(t *testing.T) {
			ce := asError(t, call())
			if ce.Status != http.StatusUnauthorized || !strings.Contains(ce.Detail, "wrong audience") || ce.Type == "" || ce.Title == "" {
				t.Fatalf("team key: %+v", ce)
			}
		})
	}
}

// TestTeamsFollowsPages: the server answers at most 1000 teams a page;
// Teams follows next to the end, and passes the prefix on.
func TestTeamsFollowsPages(t *testing.T) {
	pages := &atomic.Int64{}
	e := servertest.Start(t, server.Options{AdminClientID: adminID, AdminClientSecret: newSecret(t)}, func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/v1/teams" {
				pages.Add(1)
			}
			h.ServeHTTP(w, r)
		})
	})
	ctx := ctxT(t)
	// 1 001 teams straight into the store (the bulk path; far quicker than
	// 1 001 creates over HTTP). The bulk path is an optional interface,
	// found by a type assertion whatever static type Env.Store has.
	bulk, ok := any(e.Store).(store.BulkLoader)
	if !ok {
		t.Fatalf("servertest's store %T has no bulk path", e.Store)
	}
	if err := bulk.CreateKeys(ctx, storetest.BulkKeys(t, 1001, 1, 0)); err != nil {
		t.Fatal(err)
	}
	c := client.New(client.Config{URL: e.URL, ClientID: adminID, ClientSecret: e.AdminSecret})
	l, err := c.Teams(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	if len(l.Teams) != 1001 || l.Teams[0].TeamID != storetest.BulkTeam(1) || l.Teams[1000].TeamID != storetest.BulkTeam(1001) || pages.Load() != 2 {
		t.Fatalf("Teams: %d teams (%v … %v) in %d pages, want 1001 in 2", len(l.Teams), l.Teams[0], l.Teams[len(l.Teams)-1], pages.Load())
	}
	l, err = c.Teams(ctx, "bulk-00100")
	if err != nil {
		t.Fatal(err)
	}
	want := []client.Team{{TeamID: "bulk-001000", KeyCount: 1}, {TeamID: "bulk-001001", KeyCount: 1}}
	if !reflect.DeepEqual(l.Teams, want) {
		t.Fatalf("Teams with prefix bulk-00100: %+v, want %+v", l.Teams, want)
	}
	if _, err := c.Teams(ctx, "-bad"); asError(t, err).Status != http.StatusBadRequest {
		t.Fatalf("a prefix no team ID can start with: %v", err)
	}
}

// Key finds a team key by its client ID alone; an admin key or an unknown
// ID is the server's 404.
func TestKeyByID(t *testing.T) {
	e := startServer(t)
	ctx := ctxT(t)
	c := client.New(client.Config{URL: e.url, ClientID: adminID, ClientSecret: e.secret})
	created, err := c.CreateKey(ctx, "globex", "by id", []string{"accounting_api"})
	if err != nil {
		t.Fatal(err)
	}
	got, err := c.Key(ctx, created.ClientID)
	if err != nil {
		t.Fatal(err)
	}
	want, err := c.GetKey(ctx, "globex", created.ClientID)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) || got.TeamID != "globex" {
		t.Fatalf("Key = %+v, GetKey = %+v", got, want)
	}
	for _, id := range []string{adminID, "kgc_unknown", "a b"} {
		_, err := c.Key(ctx, id)
		if ce := asError(t, err); ce.Status != http.StatusNotFound || !strings.Contains(ce.Detail, "no team has a key") {
			t.Errorf("Key(%q): %+v", id, ce)
		}
	}
	// A slash makes another path, which no route serves: 404 all the same.
	if _, err := c.Key(ctx, "a/b"); asError(t, err).Status != http.StatusNotFound {
		t.Errorf("Key(a/b): %v", err)
	}
}

func TestUpdateKey(t *testing.T) {
	e := startServer(t)
	ctx := ctxT(t)
	c := client.New(client.Config{URL: e.url, ClientID: adminID, ClientSecret: e.secret})
	created, err := c.CreateKey(ctx, "acme", "Sync", []string{"visualization_sdk"})
	if err != nil {
		t.Fatal(err)
	}
	name := "Nightly sync"
	got, err := c.UpdateKey(ctx, "acme", created.ClientID, client.KeyUpdate{Name: &name, Permissions: []string{"accounting_api"}})
	if err != nil {
		t.Fatal(err)
	}
	if got.Name != name || !reflect.DeepEqual(got.Permissions, []string{"accounting_api"}) || !reflect.DeepEqual(got.Scopes, scopesOf(t, "accounting_api")) {
		t.Fatalf("updated key %+v", got)
	}
	// A zero update changes nothing and answers the key.
	same, err := c.UpdateKey(ctx, "acme", created.ClientID, client.KeyUpdate{})
	if err != nil || same.Name != name {
		t.Fatalf("zero update: %+v, %v", same, err)
	}
	// Operator-only: refused without consent, granted with it.
	ce := asError(t, func() error {
		_, err := c.UpdateKey(ctx, "acme", created.ClientID, client.KeyUpdate{Permissions: []string{"token_introspection"}})
		return err
	}())
	if ce.Status != http.StatusBadRequest || !strings.Contains(ce.Detail, "grant_operator_permissions") {
		t.Fatalf("operator-only without consent: %+v", ce)
	}
	if got, err := c.UpdateKey(ctx, "acme", created.ClientID, client.KeyUpdate{Permissions: []string{"token_introspection"}, GrantOperatorPermissions: true}); err != nil ||
		!reflect.DeepEqual(got.Permissions, []string{"token_introspection"}) {
		t.Fatalf("operator-only with consent: %+v, %v", got, err)
	}
	if _, err := c.UpdateKey(ctx, "globex", created.ClientID, client.KeyUpdate{Name: &name}); asError(t, err).Status != http.StatusNotFound {
		t.Fatalf("update under another team: %v", err)
	}
}

// scopesOf is what the default catalog grants for one permission.
func scopesOf(t *testing.T, perm string) []string {
	t.Helper()
	p, ok := scopes.Default().Lookup(perm)
	if !ok {
		t.Fatalf("no permission %s", perm)
	}
	return p.Scopes
}

// TestUsage: the client reads the usage the server counted, and a refused
// query comes back as the server's problem.
func TestUsage(t *testing.T) {
	// A stopped clock, so "today" cannot turn while the test runs.
	clock := servertest.NewClock(time.Now())
	e := servertest.StartWith(t, servertest.Config{Options: server.Options{AdminClientID: adminID, AdminClientSecret: newSecret(t)}, Clock: clock})
	ctx := ctxT(t)
	c := client.New(client.Config{URL: e.URL, ClientID: adminID, ClientSecret: e.AdminSecret})
	k, err := c.CreateKey(ctx, "globex", "metered", []string{"accounting_api"})
	if err != nil {
		t.Fatal(err)
	}
	e.Token(t, k.ClientID, k.ClientSecret, "")
	e.Token(t, k.ClientID, k.ClientSecret, "")
	e.FlushLastUsed(t)
	u, err := c.Usage(ctx, "globex", client.UsageOptions{Granularity: "hour"})
	if err != nil {
		t.Fatal(err)
	}
	if u.Granularity != "hour" || u.Total.Tokens != 2 || len(u.Keys) != 1 || u.Keys[0].ClientID != k.ClientID ||
		u.Keys[0].Name == nil || *u.Keys[0].Name != "metered" || len(u.Keys[0].Buckets) != 1 || u.Keys[0].Buckets[0].Tokens != 2 {
		t.Fatalf("usage %+v", u)
	}
	day := clock.Now().UTC().Format(time.DateOnly)
	if u, err := c.Usage(ctx, "globex", client.UsageOptions{From: day, To: day}); err != nil || u.Total.Tokens != 2 || u.Granularity != "day" {
		t.Fatalf("usage of today by day: %+v, %v", u, err)
	}
	_, err = c.Usage(ctx, "globex", client.UsageOptions{Granularity: "week"})
	if ce := asError(t, err); ce.Status != http.StatusBadRequest || !strings.Contains(ce.Detail, "must be hour or day") {
		t.Fatalf("bad granularity: %+v", ce)
	}
}
