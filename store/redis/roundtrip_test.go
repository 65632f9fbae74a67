package redis_test

// The token endpoint's hot path on Redis: exactly one round trip (HMGET)
// per token request, on a single node and on the cluster. A request that
// fails to authenticate adds exactly one more, the shared throttle's
// script (throttle.go) — the same for a wrong secret and an unknown
// client ID, so the count says nothing of which IDs exist.
//
// Two independent counts:
//   - go-redis hooks attribute every command to the HTTP request whose
//     context it carries (the background last-used flush runs on
//     context.Background, so it is told apart rather than guessed);
//   - a Dialer wrapper counts writes on the wire, so a retry or a hidden
//     extra command inside go-redis would show up too.

import (
	"context"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/keygate/keygate/credential"
	"github.com/keygate/keygate/internal/redistest"
)

type traceKey struct{}

// reqTrace is what one HTTP request made Redis do.
type reqTrace struct {
	mu         sync.Mutex
	roundTrips int      // commands or pipelines sent (at the hook's level)
	cmds       []string // their names; a pipeline as "pipeline[a b c]"
}

func (r *reqTrace) add(name string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.roundTrips++
	r.cmds = append(r.cmds, name)
}

func (r *reqTrace) snapshot() (int, []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.roundTrips, slices.Clone(r.cmds)
}

// traceHook records each command into the request trace in its context, or
// into background when there is none.
type traceHook struct{ background *reqTrace }

func traceOf(ctx context.Context) *reqTrace {
	tr, _ := ctx.Value(traceKey{}).(*reqTrace)
	return tr
}

func (h traceHook) pick(ctx context.Context) *reqTrace {
	if tr := traceOf(ctx); tr != nil {
		return tr
	}
	return h.background
}

func (h traceHook) DialHook(next goredis.DialHook) goredis.DialHook {
	return next // a new connection's handshake shows up as commands
}

func (h traceHook) ProcessHook(next goredis.ProcessHook) goredis.ProcessHook {
	return func(ctx context.Context, cmd goredis.Cmder) error {
		h.pick(ctx).add(strings.ToLower(cmd.Name()))
		return next(ctx, cmd)
	}
}

func (h traceHook) ProcessPipelineHook(next goredis.ProcessPipelineHook) goredis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []goredis.Cmder) error {
		names := make([]string, len(cmds))
		for i, c := range cmds {
			names[i] = strings.ToLower(c.Name())
		}
		h.pick(ctx).add("pipeline[" + strings.Join(names, " ") + "]")
		return next(ctx, cmds)
	}
}

// isHandshake: what go-redis sends on a new connection before the command.
func isHandshake(cmd string) bool {
	names := strings.Fields(strings.TrimSuffix(strings.TrimPrefix(cmd, "pipeline["), "]"))
	for _, n := range names {
		switch n {
		case "hello", "client", "auth", "select", "ping", "readonly":
		default:
			return false
		}
	}
	return len(names) > 0
}

// wireCounter counts writes on every connection it dialled.
type wireCounter struct{ writes atomic.Int64 }

type countingConn struct {
	net.Conn
	w *wireCounter
}

func (c countingConn) Write(b []byte) (int, error) {
	c.w.writes.Add(1)
	return c.Conn.Write(b)
}

func (w *wireCounter) dialer(ctx context.Context, network, addr string) (net.Conn, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	return countingConn{Conn: c, w: w}, nil
}

// TestTokenEndpointOneRoundTrip runs keygate on a throwaway single Redis.
// (The cluster variant runs inside TestClusterConformance.)
func TestTokenEndpointOneRoundTrip(t *testing.T) {
	p := startRedis(t)
	wire := &wireCounter{}
	c := goredis.NewClient(&goredis.Options{Addr: p.Addr(), Dialer: wire.dialer,
		DialTimeout: time.Second, ReadTimeout: time.Second, WriteTimeout: time.Second})
	t.Cleanup(func() { c.Close() })
	testTokenOneRoundTripWith(t, c, wire)
}

// testTokenOneRoundTrip is the cluster variant: a Cluster client on the
// same nodes as cc, with its own wire counter.
func testTokenOneRoundTrip(t *testing.T, cc *goredis.ClusterClient) {
	wire := &wireCounter{}
	opt := *cc.Options()
	opt.Dialer = wire.dialer
	c := goredis.NewClusterClient(&opt)
	t.Cleanup(func() { c.Close() })
	testTokenOneRoundTripWith(t, c, wire)
}

func testTokenOneRoundTripWith(t *testing.T, c goredis.UniversalClient, wire *wireCounter) {
	// Hooks where round trips really happen: on the client itself, and for
	// a cluster on each node client (the cluster-level hook sees one
	// command however many redirects or state reloads it costs).
	background := &reqTrace{}
	hook := traceHook{background: background}
	levelName := "client"
	if cc, ok := c.(*goredis.ClusterClient); ok {
		cc.OnNewNode(func(n *goredis.Client) { n.AddHook(hook) })
		levelName = "node"
	} else {
		c.AddHook(hook)
	}

	// A store migrated to the compact layout: its token path is one HMGET
	// (before the migration is done, one pipeline of two, still one round
	// trip: TestConformanceCompact covers that state's behaviour).
	st := compactStore(t, c, redistest.Prefix(t, c, ""), true)
	var tracing atomic.Bool
	var mu sync.Mutex
	var traces []*reqTrace
	kg := startKeygate(t, st, func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if tracing.Load() {
				tr := &reqTrace{}
				mu.Lock()
				traces = append(traces, tr)
				mu.Unlock()
				r = r.WithContext(context.WithValue(r.Context(), traceKey{}, tr))
			}
			h.ServeHTTP(w, r)
		})
	})
	adminTok := kg.adminToken()
	a := kg.createKey(adminTok, "team-rt", "round trips")
	if a.Status != http.StatusCreated {
		t.Fatalf("create: %d %s", a.Status, a.Raw)
	}
	id, secret := a.str("client_id"), a.str("client_secret")
	// First use: its last-used time is written at the next flush tick;
	// later uses coalesce for a minute. Let that happen first so the window
	// below is quiet — anything that still runs in the background is
	// attributed to the background, not guessed at.
	if a := kg.token(id, secret); a.Status != http.StatusOK {
		t.Fatalf("warm-up token: %d %s", a.Status, a.Raw)
	}
	kg.FlushLastUsed(t)

	// One failure outside the windows: the throttle script's first run
	// loads it (EVALSHA, NOSCRIPT, EVAL) on the node of this source's slot.
	if a := kg.token(id, secret+"x"); a.Status != http.StatusUnauthorized {
		t.Fatalf("warm-up failure: %d %s", a.Status, a.Raw)
	}

	window := func(name string, n int, req func() answer, wantStatus int, want ...string) {
		t.Helper()
		mu.Lock()
		traces = nil
		mu.Unlock()
		bgBefore, _ := background.snapshot()
		wireBefore := wire.writes.Load()
		tracing.Store(true)
		for i := range n {
			if a := req(); a.Status != wantStatus {
				t.Fatalf("%s %d: %d %s, want %d", name, i, a.Status, a.Raw, wantStatus)
			}
		}
		tracing.Store(false)
		wireWrites := wire.writes.Load() - wireBefore
		bgAfter, bgCmds := background.snapshot()
		bg := bgAfter - bgBefore

		mu.Lock()
		defer mu.Unlock()
		if len(traces) != n {
			t.Fatalf("%s: traced %d requests, want %d", name, len(traces), n)
		}
		attributed := 0
		// A new connection's HELLO is written before the hooks see the
		// connection: one write on the wire for each handshake whose
		// HELLO the hooks did not show (CI saw one in the background).
		unseenHellos := 0
		countHandshakes := func(cmds []string) {
			for _, c := range cmds {
				switch {
				case c == "hello":
					unseenHellos--
				case isHandshake(c):
					unseenHellos++
				}
			}
		}
		for i, tr := range traces {
			rt, cmds := tr.snapshot()
			attributed += rt
			countHandshakes(cmds)
			if slices.ContainsFunc(cmds, isHandshake) {
				// Not expected with a warm pool (requests are sequential and
				// the background is quiet), but a fresh connection's
				// handshake is go-redis's, not the store's: judge the rest.
				t.Logf("%s %d: a new connection was set up: %v", name, i, cmds)
				cmds = slices.DeleteFunc(cmds, isHandshake)
				rt = len(cmds)
			}
			if rt != len(want) || !slices.Equal(cmds, want) {
				t.Errorf("%s %d: %d %s-level round trips %v, want exactly %d: %v", name, i, rt, levelName, cmds, len(want), want)
			}
		}
		for _, cmd := range bgCmds[len(bgCmds)-bg:] {
			// Only the last-used flush (and, on a cluster, go-redis's own
			// slot-map reloads) may run beside the token requests — and the
			// handshake of a connection the pool opens for them, which is
			// go-redis's, not the store's (CI saw one on the cluster).
			if !strings.Contains(cmd, "evalsha") && !strings.HasPrefix(cmd, "script") && !strings.HasPrefix(cmd, "cluster") && !isHandshake(cmd) {
				t.Errorf("%s: unexpected background command %q during the token requests", name, cmd)
			}
		}
		countHandshakes(bgCmds[len(bgCmds)-bg:])
		if wireWrites != int64(attributed+bg+max(unseenHellos, 0)) {
			t.Errorf("%s: %d writes on the wire for %d %s-level round trips (%d for the requests, %d in the background) and %d unseen HELLO: something bypasses the hooks or retries", name, wireWrites, attributed+bg, levelName, attributed, bg, max(unseenHellos, 0))
		}
		t.Logf("%s: %d requests → %d Redis round trips (%d on the wire; %d background: %v)", name, n, attributed, wireWrites, bg, bgCmds[len(bgCmds)-bg:])
	}

	window("valid key", 20, func() answer { return kg.token(id, secret) }, http.StatusOK, "hmget")
	window("wrong secret", 3, func() answer { return kg.token(id, secret+"x") }, http.StatusUnauthorized, "hmget", "evalsha")
	unknown, err := credential.NewClientID("team-rt") // same slot, never created
	if err != nil {
		t.Fatal(err)
	}
	window("unknown client", 3, func() answer { return kg.token(unknown, secret) }, http.StatusUnauthorized, "hmget", "evalsha")
}
