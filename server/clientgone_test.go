package server_test

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/server"
	"github.com/keygate/keygate/server/servertest"
	"github.com/keygate/keygate/store"
	"github.com/keygate/keygate/store/bolt"
)

// hangUpStore plays a client that hangs up while the store works: the
// armed method cancels the request's context and fails as a store does
// when its context ends.
type hangUpStore struct {
	store.Store
	cancel context.CancelFunc // set by the test for the request it sends
	method string
}

func (h *hangUpStore) hangUp(ctx context.Context, method string) error {
	if h.method != method || h.cancel == nil {
		return nil
	}
	h.cancel()
	return ctx.Err()
}

func (h *hangUpStore) CreateKey(ctx context.Context, k store.Key, max int, audit ...store.AuditEvent) error {
	if err := h.hangUp(ctx, "CreateKey"); err != nil {
		return err
	}
	return h.Store.CreateKey(ctx, k, max, audit...)
}

func (h *hangUpStore) DenyToken(ctx context.Context, jti string, until time.Time) error {
	if err := h.hangUp(ctx, "DenyToken"); err != nil {
		return err
	}
	return h.Store.DenyToken(ctx, jti, until)
}

// TestClientHangUpIsNotAnError: a client that disconnects mid-request
// (its context canceled while the store works) is logged at debug, not as
// an internal error any client could produce at will (found by the soak).
// The store is unchanged.
func TestClientHangUpIsNotAnError(t *testing.T) {
	bs, err := bolt.Open(filepath.Join(t.TempDir(), "k.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { bs.Close() })
	st := &hangUpStore{Store: bs}
	logs := &syncBuffer{}
	logger := slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelInfo}))
	env := servertest.StartWith(t, servertest.Config{Backend: servertest.Existing(st),
		Options: server.Options{Logger: logger}})
	admin := env.AdminToken(t)
	key := env.CreateKey(t, "acme", "a", "accounting_api")
	tok := env.Token(t, key.ClientID, key.ClientSecret, "").AccessToken

	send := func(method, path, ctype, body string, prepare func(*http.Request)) int {
		t.Helper()
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		st.cancel = cancel
		defer func() { st.cancel = nil }()
		req := httptest.NewRequestWithContext(ctx, method, path, strings.NewReader(body))
		req.Header.Set("Content-Type", ctype)
		prepare(req)
		rec := httptest.NewRecorder()
		env.Server.ServeHTTP(rec, req)
		return rec.Code
	}
	st.method = "CreateKey"
	if code := send(http.MethodPost, "/v1/teams/acme/keys", "application/json", `{"name":"b","permissions":["accounting_api"]}`,
		func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+admin) }); code != http.StatusServiceUnavailable {
		t.Errorf("create abandoned by its client: status %d, want 503", code)
	}
	st.method = "DenyToken"
	if code := send(http.MethodPost, "/oauth/revoke", "application/x-www-form-urlencoded", url.Values{"token": {tok}}.Encode(),
		func(r *http.Request) {
			r.Header.Set("Authorization", servertest.BasicAuth(key.ClientID, key.ClientSecret))
		}); code != http.StatusServiceUnavailable {
		t.Errorf("revoke abandoned by its client: status %d, want 503", code)
	}
	st.method = ""
	for _, line := range strings.Split(logs.String(), "\n") {
		if strings.Contains(line, `"level":"ERROR"`) {
			t.Errorf("a client hanging up logged an error: %s", line)
		}
	}
	if keys := env.ListKeys(t, admin, "acme"); len(keys.Keys) != 1 {
		t.Errorf("the abandoned create left %d keys, want the 1 from before", len(keys.Keys))
	}
	if denied, err := bs.TokenDenied(context.Background(), jtiOf(t, tok)); err != nil || denied {
		t.Errorf("the abandoned revocation denied the token (%v, %v)", denied, err)
	}
}
