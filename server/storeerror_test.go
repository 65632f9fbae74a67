package server_test

// A store failure never reaches a client: every answer's description is a
// constant chosen where the error is mapped, so a store error carrying a
// marker string (as a real one may carry a host name, a key name or a
// value) leaves the marker in no response body or header.

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keygate/keygate/server/servertest"
	"github.com/keygate/keygate/store"
	"github.com/keygate/keygate/store/bolt"
)

const storeErrorMarker = "MARKER-7f3a-disk-on-fire"

// markedStore fails the armed methods with an error carrying the marker.
type markedStore struct {
	store.Store
	mu    sync.Mutex
	armed map[string]error
}

func (m *markedStore) arm(method string, err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.armed = map[string]error{method: err}
}

func (m *markedStore) disarm() { m.arm("", nil) }

func (m *markedStore) fail(method string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.armed[method]
}

func (m *markedStore) GetKey(ctx context.Context, id string) (store.Key, error) {
	if err := m.fail("GetKey"); err != nil {
		return store.Key{}, err
	}
	return m.Store.GetKey(ctx, id)
}

func (m *markedStore) CreateKey(ctx context.Context, k store.Key, max int, audit ...store.AuditEvent) error {
	if err := m.fail("CreateKey"); err != nil {
		return err
	}
	return m.Store.CreateKey(ctx, k, max, audit...)
}

func (m *markedStore) ListKeys(ctx context.Context, team string) ([]store.Key, error) {
	if err := m.fail("ListKeys"); err != nil {
		return nil, err
	}
	return m.Store.ListKeys(ctx, team)
}

func (m *markedStore) Teams(ctx context.Context, q store.TeamQuery) ([]store.TeamCount, error) {
	if err := m.fail("Teams"); err != nil {
		return nil, err
	}
	return m.Store.Teams(ctx, q)
}

func (m *markedStore) UpdateKey(ctx context.Context, id string, f func(store.Key) (store.Key, error), audit ...store.AuditEvent) (store.Key, error) {
	if err := m.fail("UpdateKey"); err != nil {
		return store.Key{}, err
	}
	return m.Store.UpdateKey(ctx, id, f, audit...)
}

func (m *markedStore) DeleteKey(ctx context.Context, team, id string, audit ...store.AuditEvent) error {
	if err := m.fail("DeleteKey"); err != nil {
		return err
	}
	return m.Store.DeleteKey(ctx, team, id, audit...)
}

func (m *markedStore) NextStatusIndex(ctx context.Context) (int64, error) {
	if err := m.fail("NextStatusIndex"); err != nil {
		return 0, err
	}
	return m.Store.NextStatusIndex(ctx)
}

func (m *markedStore) RevokeStatus(ctx context.Context, idx int64) error {
	if err := m.fail("RevokeStatus"); err != nil {
		return err
	}
	return m.Store.RevokeStatus(ctx, idx)
}

func (m *markedStore) StatusList(ctx context.Context) (store.StatusList, error) {
	if err := m.fail("StatusList"); err != nil {
		return store.StatusList{}, err
	}
	return m.Store.StatusList(ctx)
}

func (m *markedStore) DenyToken(ctx context.Context, jti string, until time.Time) error {
	if err := m.fail("DenyToken"); err != nil {
		return err
	}
	return m.Store.DenyToken(ctx, jti, until)
}

func (m *markedStore) TokenDenied(ctx context.Context, jti string) (bool, error) {
	if err := m.fail("TokenDenied"); err != nil {
		return false, err
	}
	return m.Store.TokenDenied(ctx, jti)
}

func (m *markedStore) Ping(ctx context.Context) error {
	if err := m.fail("Ping"); err != nil {
		return err
	}
	return m.Store.Ping(ctx)
}

func TestStoreErrorsNeverReachClients(t *testing.T) {
	bs, err := bolt.Open(filepath.Join(t.TempDir(), "k.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { bs.Close() })
	st := &markedStore{Store: bs}
	env := servertest.StartWith(t, servertest.Config{Backend: servertest.Existing(st)})
	admin := env.AdminToken(t)
	key := env.CreateKey(t, "acme", "a", "accounting_api")
	tok := env.Token(t, key.ClientID, key.ClientSecret, "").AccessToken

	type request struct {
		name, method, path string
		basic              bool // the key's credentials, else the admin token
		form               url.Values
		json               string
	}
	keyPath := "/v1/teams/acme/keys/" + key.ClientID
	cases := []struct {
		fail string
		req  request
	}{
		{"GetKey", request{"token", http.MethodPost, "/oauth/token", true, url.Values{"grant_type": {"client_credentials"}}, ""}},
		{"GetKey", request{"introspect: authenticate", http.MethodPost, "/oauth/introspect", true, url.Values{"token": {tok}}, ""}},
		{"TokenDenied", request{"introspect: deny list", http.MethodPost, "/oauth/introspect", true, url.Values{"token": {tok}}, ""}},
		{"DenyToken", request{"revoke", http.MethodPost, "/oauth/revoke", true, url.Values{"token": {tok}}, ""}},
		{"GetKey", request{"management: admin check", http.MethodGet, "/v1/teams/acme/keys", false, nil, ""}},
		{"TokenDenied", request{"management: revoked-token check", http.MethodGet, "/v1/teams/acme/keys", false, nil, ""}},
		{"ListKeys", request{"list keys", http.MethodGet, "/v1/teams/acme/keys", false, nil, ""}},
		{"Teams", request{"list teams", http.MethodGet, "/v1/teams", false, nil, ""}},
		{"NextStatusIndex", request{"create: status index", http.MethodPost, "/v1/teams/acme/keys", false, nil, `{"name":"b","permissions":["accounting_api"]}`}},
		{"CreateKey", request{"create", http.MethodPost, "/v1/teams/acme/keys", false, nil, `{"name":"b","permissions":["accounting_api"]}`}},
		{"UpdateKey", request{"rotate", http.MethodPost, keyPath + "/rotate", false, nil, ""}},
		{"RevokeStatus", request{"delete: status bit", http.MethodDelete, keyPath, false, nil, ""}},
		{"DeleteKey", request{"delete", http.MethodDelete, keyPath, false, nil, ""}},
		{"StatusList", request{"status list", http.MethodGet, "/statuslists/1", false, nil, ""}},
		{"Ping", request{"readiness", http.MethodGet, "/readyz", false, nil, ""}},
	}
	for _, kind := range []struct {
		name   string
		err    error
		status int
	}{
		{"failure", fmt.Errorf("bolt: %s", storeErrorMarker), http.StatusInternalServerError},
		{"unavailable", fmt.Errorf("redis %s: %w", storeErrorMarker, store.ErrUnavailable), http.StatusServiceUnavailable},
	} {
		for _, tc := range cases {
			t.Run(kind.name+"/"+tc.req.name, func(t *testing.T) {
				var body *strings.Reader
				switch {
				case tc.req.form != nil:
					body = strings.NewReader(tc.req.form.Encode())
				default:
					body = strings.NewReader(tc.req.json)
				}
				req := env.NewRequest(t, tc.req.method, tc.req.path, body)
				switch {
				case tc.req.form != nil:
					req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
				case tc.req.json != "":
					req.Header.Set("Content-Type", "application/json")
				}
				if tc.req.basic {
					req.Header.Set("Authorization", servertest.BasicAuth(key.ClientID, key.ClientSecret))
				} else {
					req.Header.Set("Authorization", "Bearer "+admin)
				}
				st.arm(tc.fail, kind.err)
				r := env.Do(t, req)
				st.disarm()
				want := kind.status
				if tc.fail == "Ping" {
					want = http.StatusServiceUnavailable // not ready, whatever the cause
				}
				if r.Status != want {
					t.Errorf("%s failing: status %d, want %d (%s)", tc.fail, r.Status, want, r.Body)
				}
				if strings.Contains(string(r.Body), "MARKER") {
					t.Errorf("the store's error reached the client: %s", r.Body)
				}
				for name, values := range r.Header {
					if strings.Contains(strings.Join(values, " "), "MARKER") {
						t.Errorf("the store's error is in header %s", name)
					}
				}
			})
		}
	}
}
