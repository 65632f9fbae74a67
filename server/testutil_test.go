package server_test

// Shared setup for the server package's tests: each test starts a real
// keygate with package servertest (server.New on a store of its own, behind
// an httptest server on loopback) and talks to it over HTTP. testEnv adds
// this package's helpers to servertest.Env.

import (
	"bytes"
	"sort"
	"sync"
	"testing"

	"github.com/gin-gonic/gin"

	"github.com/keygate/keygate/server"
	"github.com/keygate/keygate/server/servertest"
)

func init() {
	// gin's debug mode prints every route to stdout; keep test output clean.
	gin.SetMode(gin.TestMode)
}

const (
	permAccounting    = "accounting_api"
	permVisualization = "visualization_sdk"
)

// accountingScopes is what accounting_api grants, in catalog order.
var accountingScopes = []string{
	"common:read", "common:write",
	"accounting:read", "accounting:write",
	"banking:read", "banking:write",
	"commerce:read", "commerce:write",
	"analytics:read", "analytics:write",
}

type (
	response      = servertest.Response
	tokenResponse = servertest.TokenResponse
	keyJSON       = servertest.Key
	keyListJSON   = servertest.KeyList
)

// testEnv is one keygate instance.
type testEnv struct{ *servertest.Env }

// newTestEnv starts keygate with opts on a fresh bbolt store. Unless opts
// name an admin key, e.AdminID is the one its first start generates.
func newTestEnv(tb testing.TB, opts server.Options) *testEnv {
	tb.Helper()
	return startEnv(tb, servertest.Config{Options: opts})
}

// startEnv starts the keygate cfg describes; unless cfg.Options name an
// admin key, e.AdminID is the one its first start generates.
func startEnv(tb testing.TB, cfg servertest.Config) *testEnv {
	tb.Helper()
	cfg.GeneratedAdmin = cfg.Options.AdminClientID == ""
	return &testEnv{servertest.StartWith(tb, cfg)}
}

// second starts another instance on e's store (see servertest.Env.Second).
func (e *testEnv) second(tb testing.TB, opts server.Options) *testEnv {
	tb.Helper()
	return &testEnv{e.Second(tb, opts)}
}

// backends are the stores the server's tests run on where the store
// matters: bbolt (the default) and the in-memory reference store.
var backends = []servertest.Backend{servertest.Bolt(), servertest.Memory()}

// forEachBackend runs f as a subtest on each of backends.
func forEachBackend(t *testing.T, f func(t *testing.T, b servertest.Backend)) {
	for _, b := range backends {
		t.Run(b.Name(), func(t *testing.T) { f(t, b) })
	}
}

func keysOf(m map[string]any) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// syncBuffer is a bytes.Buffer safe for the server's concurrent loggers.
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
