package server_test

// Webhooks through a real keygate (issue 13): the audit events of API calls
// reach a local receiver signed per Standard Webhooks, with the same data
// GET /v1/events shows; a receiver that fails gets the event again, with
// the same webhook-id, when it recovers, across a restart of keygate; an
// endpoint that fails for webhook_give_up is disabled with an audit event,
// and retention keeps what it has not acknowledged; a receiver that hangs
// does not slow the management API.

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"sort"
	"sync"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"github.com/keygate/keygate/config"
	"github.com/keygate/keygate/server"
	"github.com/keygate/keygate/server/servertest"
	"github.com/keygate/keygate/webhook"
)

// receiver is a local webhook endpoint that records every request and
// answers with the status it is set to.
type receiver struct {
	*httptest.Server
	mu       sync.Mutex
	status   int
	requests []delivery
}

type delivery struct {
	header http.Header
	body   []byte
	status int
}

func newReceiver(t *testing.T) *receiver {
	t.Helper()
	r := &receiver{status: http.StatusOK}
	r.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		r.mu.Lock()
		status := r.status
		r.requests = append(r.requests, delivery{header: req.Header.Clone(), body: body, status: status})
		r.mu.Unlock()
		w.WriteHeader(status)
	}))
	t.Cleanup(r.Close)
	return r
}

func (r *receiver) set(status int) {
	r.mu.Lock()
	r.status = status
	r.mu.Unlock()
}

func (r *receiver) got() []delivery {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]delivery(nil), r.requests...)
}

// webhookSecret is a fresh signing secret, as the configuration holds it
// (decoded) and as a receiver's library takes it (whsec_…).
func webhookSecret(t *testing.T) (config.WebhookSecret, string) {
	t.Helper()
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		t.Fatal(err)
	}
	return key, "whsec_" + base64.StdEncoding.EncodeToString(key)
}

// hookTicks drives the dispatchers: each endpoint's tick channel is
// unbuffered, so when round's second send returns, the first round has
// completed (webhook.Options.Ticks).
type hookTicks struct {
	mu sync.Mutex
	ch map[int]chan time.Time
}

func (h *hookTicks) ticks(ep webhook.Endpoint) <-chan time.Time {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.ch == nil {
		h.ch = map[int]chan time.Time{}
	}
	if h.ch[ep.Index] == nil {
		h.ch[ep.Index] = make(chan time.Time)
	}
	return h.ch[ep.Index]
}

// round runs one delivery round of endpoint i and waits for it to end.
func (h *hookTicks) round(t *testing.T, i int) {
	t.Helper()
	h.mu.Lock()
	ch := h.ch[i]
	h.mu.Unlock()
	for range 2 {
		select {
		case ch <- time.Time{}:
		case <-time.After(30 * time.Second):
			t.Fatalf("webhook %d: no dispatcher took the tick", i)
		}
	}
}

type payload struct {
	Type      string          `json:"type"`
	Timestamp time.Time       `json:"timestamp"`
	Data      json.RawMessage `json:"data"`
}

func decodePayload(t *testing.T, d delivery) payload {
	t.Helper()
	var p payload
	if err := json.Unmarshal(d.body, &p); err != nil {
		t.Fatalf("webhook body: %v: %s", err, d.body)
	}
	return p
}

func TestWebhookDelivery(t *testing.T) {
	for _, b := range []servertest.Backend{servertest.Bolt(), servertest.Redis()} {
		t.Run(b.Name(), func(t *testing.T) {
			recv := newReceiver(t)
			secret, whsec := webhookSecret(t)
			hooks := &hookTicks{}
			opts := server.Options{
				Webhooks: []config.Webhook{{URL: recv.URL, Secret: secret}},
				Webhook:  webhook.Options{Ticks: hooks.ticks, Jitter: func(d time.Duration) time.Duration { return d }},
			}
			clk := servertest.NewClock(time.Now().UTC().Truncate(time.Second))
			e := startEnv(t, servertest.Config{Clock: clk, Backend: b, Options: opts})
			// The admin key's creation at start is the stream's first event.
			e.AuditTick(t) // the operator-wide stream, on Redis
			hooks.round(t, 0)
			if got := recv.got(); len(got) != 1 || decodePayload(t, got[0]).Type != "key.created" {
				t.Fatalf("after the start: %d deliveries, want the admin key's key.created", len(got))
			}
			recv.mu.Lock()
			recv.requests = nil
			recv.mu.Unlock()

			admin := e.AdminToken(t)
			k := e.CreateKeyWith(t, admin, "acme", "Hooked", permAccounting)
			e.AuditTick(t)
			hooks.round(t, 0)

			got := recv.got()
			if len(got) != 1 {
				t.Fatalf("after a create: %d deliveries, want 1", len(got))
			}
			wh, err := standardwebhooks.NewWebhook(whsec)
			if err != nil {
				t.Fatal(err)
			}
			if err := wh.Verify(got[0].body, got[0].header); err != nil {
				t.Fatalf("the delivery's signature does not verify with the Standard Webhooks library: %v", err)
			}
			p := decodePayload(t, got[0])
			stream := getEvents(t, e.Env, admin, "/v1/events?action=key.created&team_id=acme")
			if p.Type != "key.created" || len(stream.Events) != 1 || got[0].header.Get("webhook-id") != stream.Events[0].ID {
				t.Fatalf("delivered %s %s, stream %+v", p.Type, got[0].header.Get("webhook-id"), stream.Events)
			}
			// The data is the event as the API shows it, field for field.
			raw := e.API(t, admin, http.MethodGet, "/v1/events?action=key.created&team_id=acme", nil)
			var page struct {
				Events []json.RawMessage `json:"events"`
			}
			if err := json.Unmarshal(raw.Body, &page); err != nil || len(page.Events) != 1 || !jsonEqual(t, page.Events[0], p.Data) {
				t.Fatalf("webhook data\n%s\nAPI event\n%s", p.Data, raw.Body)
			}
			if bytes.Contains(got[0].body, []byte(k.ClientSecret)) {
				t.Fatal("the webhook body holds the key's secret")
			}

			// The receiver fails: the rotation's event is tried, then
			// keygate restarts, and the receiver gets it once it recovers,
			// with the same webhook-id and a fresh signature.
			recv.set(http.StatusInternalServerError)
			if r := e.API(t, admin, http.MethodPost, rotatePath("acme", k.ClientID), nil); r.Status != http.StatusOK {
				t.Fatalf("rotate: %s", r)
			}
			e.AuditTick(t)
			hooks.round(t, 0)
			if got := recv.got(); len(got) != 2 || got[1].status != http.StatusInternalServerError || decodePayload(t, got[1]).Type != "key.rotated" {
				t.Fatalf("after the failing attempt: %d deliveries", len(got))
			}
			failedID := recv.got()[1].header.Get("webhook-id")

			e.Restart(t, opts)
			recv.set(http.StatusOK)
			hooks.round(t, 0) // inside the back-off: nothing is sent
			if n := len(recv.got()); n != 2 {
				t.Fatalf("%d deliveries inside the back-off, want none new", n)
			}
			clk.Set(clk.Now().Add(webhook.FirstRetry))
			hooks.round(t, 0)
			hooks.round(t, 0) // nothing is left to send
			got = recv.got()
			if len(got) != 3 || got[2].header.Get("webhook-id") != failedID || got[2].status != http.StatusOK {
				t.Fatalf("after recovery: %d deliveries (want 3, the last the retried %s)", len(got), failedID)
			}
			if got[2].header.Get("webhook-timestamp") == got[1].header.Get("webhook-timestamp") {
				t.Error("the retry kept the failed attempt's webhook-timestamp; each attempt is signed afresh")
			}
			if err := wh.Verify(got[2].body, got[2].header); err != nil {
				t.Fatalf("the retry's signature: %v", err)
			}

			// Failing for webhook_give_up disables the endpoint, with an
			// audit event; retention keeps the event it never took.
			recv.set(http.StatusInternalServerError)
			// An hour later, so that the delivered events are older than
			// the undelivered one by more than the prune's slack.
			clk.Set(clk.Now().Add(time.Hour))
			admin = e.AdminToken(t)
			if r := e.API(t, admin, http.MethodDelete, "/v1/teams/acme/keys/"+k.ClientID, nil); r.Status != http.StatusNoContent {
				t.Fatalf("delete: %s", r)
			}
			e.AuditTick(t)
			hooks.round(t, 0)
			for len(getEvents(t, e.Env, e.AdminToken(t), "/v1/events?action=webhook.disabled").Events) == 0 {
				clk.Set(clk.Now().Add(webhook.MaxRetry))
				hooks.round(t, 0)
				e.AuditTick(t)
				if clk.Now().After(time.Now().Add(2 * config.DefaultWebhookGiveUp)) {
					t.Fatal("the failing endpoint was never disabled")
				}
			}
			disabled := getEvents(t, e.Env, e.AdminToken(t), "/v1/events?action=webhook.disabled").Events
			if disabled[0].Actor.Type != "system" || disabled[0].Outcome != "denied" || disabled[0].TeamID != "" {
				t.Fatalf("webhook.disabled event %+v", disabled[0])
			}
			// Past the audit retention: the delivered events are pruned, the
			// undelivered deletion is kept.
			clk.Set(clk.Now().Add(config.DefaultAuditRetention + 2*time.Hour))
			e.AuditTick(t)
			kept := map[string]bool{}
			for _, ev := range getEvents(t, e.Env, e.AdminToken(t), "/v1/events?team_id=acme").Events {
				kept[ev.Action] = true
			}
			if !kept["key.deleted"] || kept["key.created"] || kept["key.rotated"] {
				t.Fatalf("after retention: acme's stream holds %v; want only the undelivered key.deleted", sortedKeys(kept))
			}
		})
	}
}

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func jsonEqual(t *testing.T, a, b []byte) bool {
	t.Helper()
	var x, y any
	if json.Unmarshal(a, &x) != nil || json.Unmarshal(b, &y) != nil {
		return false
	}
	ja, _ := json.Marshal(x)
	jb, _ := json.Marshal(y)
	return bytes.Equal(ja, jb)
}

// TestWebhookHangingReceiverDoesNotSlowTheAPI: while a delivery hangs on a
// receiver that never answers, key creation answers as fast as without
// webhooks: handlers write events to the store and never wait on delivery.
func TestWebhookHangingReceiverDoesNotSlowTheAPI(t *testing.T) {
	arrived := make(chan struct{}, 1)
	release := make(chan struct{})
	hang := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case arrived <- struct{}{}:
		default:
		}
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(hang.Close)
	t.Cleanup(func() { close(release) })
	secret, _ := webhookSecret(t)
	hooks := &hookTicks{}
	e := startEnv(t, servertest.Config{Options: server.Options{
		Webhooks: []config.Webhook{{URL: hang.URL, Secret: secret}},
		// The default request timeout (10 s): a create that waited on the
		// delivery would take at least that.
		Webhook: webhook.Options{Ticks: hooks.ticks},
	}})
	admin := e.AdminToken(t)
	e.CreateKeyWith(t, admin, "t0", "first", permAccounting)
	e.AuditTick(t)
	// One delivery round, left hanging on the receiver.
	roundDone := make(chan struct{})
	go func() {
		defer close(roundDone)
		hooks.ticks(webhook.Endpoint{Index: 0})
		hooks.mu.Lock()
		ch := hooks.ch[0]
		hooks.mu.Unlock()
		ch <- time.Time{}
	}()
	select {
	case <-arrived:
	case <-time.After(30 * time.Second):
		t.Fatal("the delivery never reached the receiver")
	}

	const creates = 20
	var slowest time.Duration
	durations := make([]time.Duration, 0, creates)
	for i := range creates {
		start := time.Now()
		e.CreateKeyWith(t, admin, "hang"+string(rune('a'+i%20)), "while hanging", permAccounting)
		d := time.Since(start)
		durations = append(durations, d)
		slowest = max(slowest, d)
	}
	sort.Slice(durations, func(i, j int) bool { return durations[i] < durations[j] })
	t.Logf("%d creates while a delivery hangs: median %v, slowest %v (a create waiting on delivery would take ≥ %v)",
		creates, durations[creates/2], slowest, webhook.DefaultTimeout)
	if slowest >= webhook.DefaultTimeout/2 {
		t.Fatalf("a create took %v while a webhook delivery hung: the API waits on delivery", slowest)
	}
	select {
	case <-roundDone:
	default:
	}
}
