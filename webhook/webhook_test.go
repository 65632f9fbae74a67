package webhook_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"github.com/keygate/keygate/config"
	"github.com/keygate/keygate/metrics"
	"github.com/keygate/keygate/store/bolt"
	"github.com/keygate/keygate/store/storetest"
	"github.com/keygate/keygate/webhook"
)

// package metrics records the backlog this package reports.
var _ webhook.Observer = (*metrics.Metrics)(nil)

// ---- test doubles: a stream, a clock, a receiver ---------------------------

// stream is an in-memory event stream. Its cursors step by 10, so a
// dispatcher that assumed consecutive cursors would be caught.
type stream struct {
	mu     sync.Mutex
	events []webhook.Event
	limits []int // the limit of every EventsAfter call
}

func (s *stream) add(typ, data string) webhook.Event {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := len(s.events) + 1
	ev := webhook.Event{
		ID:   fmt.Sprintf("evt_%04d", n),
		Seq:  uint64(n * 10),
		Type: typ,
		Time: time.Date(2026, 1, 2, 3, 4, 5, 6_000_000, time.UTC).Add(time.Duration(n) * time.Second),
		Data: json.RawMessage(data),
	}
	s.events = append(s.events, ev)
	return ev
}

func (s *stream) EventsAfter(ctx context.Context, after uint64, limit int) ([]webhook.Event, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.limits = append(s.limits, limit)
	var out []webhook.Event
	for _, ev := range s.events {
		if ev.Seq > after && len(out) < limit {
			out = append(out, ev)
		}
	}
	return out, nil
}

func (s *stream) Head(ctx context.Context) (uint64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.events) == 0 {
		return 0, nil
	}
	return s.events[len(s.events)-1].Seq, nil
}

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = t
}

type request struct {
	header http.Header
	body   []byte
}

// receiver is a real HTTP server on loopback that records what it gets and
// answers status (200 unless set). With hang set it answers nothing until
// the request is abandoned.
type receiver struct {
	*httptest.Server
	mu      sync.Mutex
	reqs    []request
	status  int
	body    string // answered with every status
	hang    bool
	entered chan struct{} // one value per request, as it arrives
}

func newReceiver(t *testing.T) *receiver {
	r := &receiver{status: http.StatusOK, entered: make(chan struct{}, 100)}
	r.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		r.mu.Lock()
		r.reqs = append(r.reqs, request{req.Header.Clone(), body})
		status, answer, hang := r.status, r.body, r.hang
		r.mu.Unlock()
		select {
		case r.entered <- struct{}{}:
		default: // only the tests of hung requests read it
		}
		if hang {
			<-req.Context().Done()
			return
		}
		w.WriteHeader(status)
		io.WriteString(w, answer)
	}))
	t.Cleanup(r.Close)
	return r
}

func (r *receiver) set(status int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.status = status
}

func (r *receiver) requests() []request {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.reqs)
}

// ids are the webhook-id headers received, in order.
func (r *receiver) ids() []string {
	var out []string
	for _, q := range r.requests() {
		out = append(out, q.header.Get("webhook-id"))
	}
	return out
}

// ---- the harness ------------------------------------------------------------

type disabledCall struct {
	ep    webhook.Endpoint
	state webhook.State
}

type harness struct {
	t        *testing.T
	clock    *clock
	src      *stream
	states   webhook.StateStore
	ticks    map[int]chan time.Time
	rounds   map[int]chan uint64 // backlog reported at the end of each round
	disabled chan disabledCall
	logs     *syncBuffer
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

var t0 = time.Now().UTC().Truncate(time.Second) // near the real time: the library's Verify checks the timestamp

func newHarness(t *testing.T, states webhook.StateStore) *harness {
	return &harness{
		t: t, clock: &clock{t: t0}, src: &stream{}, states: states,
		ticks: map[int]chan time.Time{}, rounds: map[int]chan uint64{},
		disabled: make(chan disabledCall, 10), logs: &syncBuffer{},
	}
}

func (h *harness) WebhookBacklog(endpoint int, events uint64) { h.rounds[endpoint] <- events }

// options are the harness's: its clock, driven ticks, no jitter (so the
// schedule is exact), its observer, callback and log.
func (h *harness) options() webhook.Options {
	return webhook.Options{
		Now:        h.clock.Now,
		Ticks:      func(ep webhook.Endpoint) <-chan time.Time { return h.ticks[ep.Index] },
		Jitter:     func(d time.Duration) time.Duration { return d },
		Observer:   h,
		OnDisabled: func(ep webhook.Endpoint, s webhook.State) { h.disabled <- disabledCall{ep, s} },
		Logger:     slog.New(slog.NewTextHandler(h.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
}

// secret returns a Standard Webhooks secret and its key.
func secret(seed byte) (string, []byte) {
	key := make([]byte, 32)
	for i := range key {
		key[i] = seed + byte(i)*7
	}
	return "whsec_" + base64.StdEncoding.EncodeToString(key), key
}

func (h *harness) endpoint(index int, url string) webhook.Endpoint {
	_, key := secret(byte(index))
	return webhook.Endpoint{Index: index, ID: webhook.EndpointID(url), URL: url, Secret: key}
}

func (h *harness) start(ep webhook.Endpoint, opts webhook.Options) *webhook.Dispatcher {
	h.t.Helper()
	if h.ticks[ep.Index] == nil {
		h.ticks[ep.Index] = make(chan time.Time)
		h.rounds[ep.Index] = make(chan uint64, 100)
	}
	d, err := webhook.New(ep, h.src, h.states, opts)
	if err != nil {
		h.t.Fatal(err)
	}
	h.t.Cleanup(d.Close)
	return d
}

// tick starts one round of endpoint i without waiting for it.
func (h *harness) tick(i int) { h.ticks[i] <- h.clock.Now() }

// wait waits for the end of a round of endpoint i and returns the backlog
// it reported.
func (h *harness) wait(i int) uint64 {
	h.t.Helper()
	select {
	case n := <-h.rounds[i]:
		return n
	case <-time.After(10 * time.Second):
		h.t.Fatalf("endpoint %d: round did not end within 10s", i)
		return 0
	}
}

// round runs one whole round of endpoint i at the clock's time.
func (h *harness) round(i int) uint64 {
	h.t.Helper()
	h.tick(i)
	return h.wait(i)
}

func (h *harness) state(ep webhook.Endpoint) webhook.State {
	h.t.Helper()
	s, err := h.states.WebhookState(context.Background(), ep.ID)
	if err != nil {
		h.t.Fatal(err)
	}
	return s
}

// verify checks one received request with the Standard Webhooks library.
func verify(t *testing.T, whsec string, q request) {
	t.Helper()
	wh, err := standardwebhooks.NewWebhook(whsec)
	if err != nil {
		t.Fatal(err)
	}
	if err := wh.Verify(q.body, q.header); err != nil {
		t.Errorf("Standard Webhooks verification of %s: %v", q.header.Get("webhook-id"), err)
	}
}

// ---- the tests --------------------------------------------------------------

func TestSignedPerStandardWebhooks(t *testing.T) {
	h := newHarness(t, storetest.NewMemStore())
	rcv := newReceiver(t)
	ep := h.endpoint(0, rcv.URL+"/hooks?tenant=a")
	h.start(ep, h.options())
	ev := h.src.add("key.created", `{"team_id":"acme","target":{"client_id":"kgc_x"}}`)

	if backlog := h.round(0); backlog != 0 {
		t.Errorf("backlog after delivering the only event: %d", backlog)
	}
	reqs := rcv.requests()
	if len(reqs) != 1 {
		t.Fatalf("receiver got %d requests, want 1", len(reqs))
	}
	q := reqs[0]
	whsec, _ := secret(0)
	verify(t, whsec, q)

	// Verification is not vacuous: another secret, or a changed body, fails.
	other, _ := secret(99)
	wh, _ := standardwebhooks.NewWebhook(other)
	if err := wh.Verify(q.body, q.header); !errors.Is(err, standardwebhooks.ErrNoMatchingSignature) {
		t.Errorf("verification with another secret: %v, want no matching signature", err)
	}
	wh, _ = standardwebhooks.NewWebhook(whsec)
	if err := wh.Verify(bytes.Replace(q.body, []byte("acme"), []byte("acmf"), 1), q.header); err == nil {
		t.Error("verification of a changed body succeeded")
	}

	if got := q.header.Get("webhook-id"); got != ev.ID {
		t.Errorf("webhook-id %q, want the event ID %q", got, ev.ID)
	}
	if got := q.header.Get("webhook-timestamp"); got != strconv.FormatInt(t0.Unix(), 10) {
		t.Errorf("webhook-timestamp %q, want the clock's %d", got, t0.Unix())
	}
	if sig := q.header.Get("webhook-signature"); !strings.HasPrefix(sig, "v1,") {
		t.Errorf("webhook-signature %q, want v1,<base64>", sig)
	}
	if ct := q.header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type %q", ct)
	}
	var body struct {
		Type      string          `json:"type"`
		Timestamp time.Time       `json:"timestamp"`
		Data      json.RawMessage `json:"data"`
	}
	dec := json.NewDecoder(bytes.NewReader(q.body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&body); err != nil {
		t.Fatalf("body %s: %v", q.body, err)
	}
	if body.Type != "key.created" || !body.Timestamp.Equal(ev.Time) || string(body.Data) != string(ev.Data) {
		t.Errorf("body %s: want type key.created, timestamp %s, data %s", q.body, ev.Time.Format(time.RFC3339Nano), ev.Data)
	}
	if s := h.state(ep); s.Delivered != ev.Seq || s.Attempts != 0 {
		t.Errorf("state after delivery %+v, want delivered %d", s, ev.Seq)
	}
}

// A receiver that answers 500 gets the event again, under the same
// webhook-id and with a fresh timestamp, exactly at the first round after
// it recovers; keygate restarting in between loses nothing and sends
// nothing twice that was acknowledged.
func TestRetryUntilRecoveryAcrossRestart(t *testing.T) {
	path := filepath.Join(t.TempDir(), "keygate.db")
	db, err := bolt.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	h := newHarness(t, db)
	rcv := newReceiver(t)
	rcv.set(http.StatusInternalServerError)
	ep := h.endpoint(0, rcv.URL)
	d := h.start(ep, h.options())
	e1 := h.src.add("key.created", `{"n":1}`)
	e2 := h.src.add("key.deleted", `{"n":2}`)

	if backlog := h.round(0); backlog != 20 {
		t.Errorf("backlog after a failed attempt: %d, want 20 (two events, cursors step by 10)", backlog)
	}
	if got := rcv.ids(); !slices.Equal(got, []string{e1.ID}) {
		t.Fatalf("after the first round the receiver got %v, want [%s] (nothing after a failed event)", got, e1.ID)
	}
	s := h.state(ep)
	if s.Delivered != 0 || s.Attempts != 1 || !s.FailingSince.Equal(t0) || !s.NextAttempt.Equal(t0.Add(webhook.FirstRetry)) {
		t.Errorf("state after one failure %+v, want attempts 1, failing since %v, next attempt %v", s, t0, t0.Add(webhook.FirstRetry))
	}
	h.clock.Set(t0.Add(4 * time.Second))
	h.round(0)
	if n := len(rcv.requests()); n != 1 {
		t.Errorf("a round before the back-off ended sent a request (%d in all)", n)
	}

	// Restart: a new dispatcher on the reopened file.
	d.Close()
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if db, err = bolt.Open(path); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	h.states = db
	d = h.start(ep, h.options())
	h.clock.Set(t0.Add(webhook.FirstRetry - time.Millisecond))
	h.round(0)
	if n := len(rcv.requests()); n != 1 {
		t.Errorf("after the restart, a round inside the back-off sent a request (%d in all): the schedule was lost", n)
	}

	rcv.set(http.StatusOK)
	h.clock.Set(t0.Add(webhook.FirstRetry))
	if backlog := h.round(0); backlog != 0 {
		t.Errorf("backlog after recovery: %d", backlog)
	}
	reqs := rcv.requests()
	if got := rcv.ids(); !slices.Equal(got, []string{e1.ID, e1.ID, e2.ID}) {
		t.Fatalf("receiver got %v, want [%s %s %s]: the failed event again, then the next", got, e1.ID, e1.ID, e2.ID)
	}
	ts1, ts2 := reqs[0].header.Get("webhook-timestamp"), reqs[1].header.Get("webhook-timestamp")
	if ts1 != strconv.FormatInt(t0.Unix(), 10) || ts2 != strconv.FormatInt(t0.Add(webhook.FirstRetry).Unix(), 10) {
		t.Errorf("attempts at %s and %s, want fresh timestamps %d and %d", ts1, ts2, t0.Unix(), t0.Add(webhook.FirstRetry).Unix())
	}
	if reqs[0].header.Get("webhook-signature") == reqs[1].header.Get("webhook-signature") {
		t.Error("the retry carries the first attempt's signature: it must be signed again with its own timestamp")
	}
	whsec, _ := secret(0)
	for _, q := range reqs {
		verify(t, whsec, q)
	}
	if !bytes.Equal(reqs[0].body, reqs[1].body) {
		t.Error("the retry's body differs from the first attempt's")
	}
	if s := h.state(ep); s != (webhook.State{Delivered: e2.Seq}) {
		t.Errorf("state after recovery %+v, want only delivered %d", s, e2.Seq)
	}

	// Restart again: what was acknowledged is not sent again; what comes
	// next is.
	d.Close()
	d = h.start(ep, h.options())
	h.clock.Set(t0.Add(time.Minute))
	h.round(0)
	if n := len(rcv.requests()); n != 3 {
		t.Errorf("after a restart the receiver got %d requests in all, want still 3", n)
	}
	e3 := h.src.add("key.rotated", `{"n":3}`)
	h.round(0)
	if got := rcv.ids(); !slices.Equal(got[3:], []string{e3.ID}) {
		t.Errorf("after the restart the receiver got %v, want only [%s]", got[3:], e3.ID)
	}
}

// A receiver that hangs costs its dispatcher one request timeout and holds
// up nothing else: another endpoint delivers meanwhile, and Close does not
// wait for the hung request.
func TestHangingReceiver(t *testing.T) {
	h := newHarness(t, storetest.NewMemStore())
	hung, ok := newReceiver(t), newReceiver(t)
	hung.mu.Lock()
	hung.hang = true
	hung.mu.Unlock()
	epHung, epOK := h.endpoint(0, hung.URL), h.endpoint(1, ok.URL)
	const timeout = 300 * time.Millisecond
	opts := h.options()
	opts.Timeout = timeout
	h.start(epHung, opts)
	h.start(epOK, h.options())
	ev := h.src.add("key.created", `{}`)

	start := time.Now()
	h.tick(0)
	<-hung.entered // the request is in flight and unanswered

	// Meanwhile the other endpoint delivers, and new events are appended.
	h.round(1)
	if got := ok.ids(); !slices.Equal(got, []string{ev.ID}) {
		t.Errorf("the healthy endpoint got %v while the other hung, want [%s]", got, ev.ID)
	}
	select {
	case <-h.rounds[0]:
		t.Fatal("the hung endpoint's round ended before its timeout")
	default:
	}
	ev2 := h.src.add("key.deleted", `{}`)
	h.round(1)
	if got := ok.ids(); !slices.Equal(got, []string{ev.ID, ev2.ID}) {
		t.Errorf("the healthy endpoint got %v, want both events", got)
	}

	h.wait(0)
	took := time.Since(start)
	if took < timeout || took > timeout+5*time.Second {
		t.Errorf("the hung attempt took %v, want the request timeout %v", took, timeout)
	}
	if s := h.state(epHung); s.Attempts != 1 || s.Delivered != 0 {
		t.Errorf("hung endpoint's state %+v, want one failed attempt", s)
	}
	if logs := h.logs.String(); !strings.Contains(logs, "timed out") || strings.Contains(logs, hung.URL) {
		t.Errorf("logs should say the attempt timed out and never name the URL:\n%s", logs)
	}

	// Close aborts a hung request at once, without counting it as failed.
	h2 := newHarness(t, storetest.NewMemStore())
	h2.src = h.src
	opts = h2.options()
	opts.Timeout = time.Hour
	ep := h2.endpoint(0, hung.URL+"/other")
	d := h2.start(ep, opts)
	h2.tick(0)
	<-hung.entered
	closed := make(chan struct{})
	go func() { d.Close(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(5 * time.Second):
		t.Fatal("Close waited for a hung request")
	}
	if s := h2.state(ep); s != (webhook.State{}) {
		t.Errorf("state after a Close during a request %+v, want unchanged (the event is sent again later)", s)
	}
}

func TestRedirectIsAFailureNotFollowed(t *testing.T) {
	for _, code := range []int{301, 302, 303, 307, 308} {
		t.Run(strconv.Itoa(code), func(t *testing.T) {
			h := newHarness(t, storetest.NewMemStore())
			target := newReceiver(t)
			redirect := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				http.Redirect(w, r, target.URL+"/elsewhere", code)
			}))
			t.Cleanup(redirect.Close)
			ep := h.endpoint(0, redirect.URL)
			h.start(ep, h.options())
			h.src.add("key.created", `{}`)
			h.round(0)
			if n := len(target.requests()); n != 0 {
				t.Errorf("the redirect was followed: its target got %d requests", n)
			}
			if s := h.state(ep); s.Attempts != 1 || s.Delivered != 0 {
				t.Errorf("state after a %d answer %+v, want one failed attempt", code, s)
			}
			if !strings.Contains(h.logs.String(), fmt.Sprintf("answered %d, a redirect (not followed)", code)) {
				t.Errorf("logs do not say the redirect was not followed:\n%s", h.logs)
			}
		})
	}
}

// An endpoint that fails every attempt for GiveUp is disabled, once, with
// the callback; a success in between restarts the count ("continuously");
// Enable resumes delivery where it stopped.
func TestGiveUpDisablesEndpoint(t *testing.T) {
	h := newHarness(t, storetest.NewMemStore())
	rcv := newReceiver(t)
	rcv.set(http.StatusServiceUnavailable)
	const private = "receiver-private-answer-do-not-log"
	rcv.mu.Lock()
	rcv.body = private
	rcv.mu.Unlock()
	ep := h.endpoint(0, rcv.URL)
	const giveUp = time.Hour
	opts := h.options()
	opts.GiveUp = giveUp
	d := h.start(ep, opts)
	e1 := h.src.add("key.created", `{}`)

	// Fail for 50 minutes, then succeed: not disabled.
	for h.clock.Now().Before(t0.Add(50 * time.Minute)) {
		h.round(0)
		h.clock.Set(h.state(ep).NextAttempt)
	}
	rcv.set(http.StatusOK)
	h.round(0)
	if s := h.state(ep); s.Disabled || s.Delivered != e1.Seq || !s.FailingSince.IsZero() {
		t.Fatalf("state after a success %+v, want e1 delivered and no failure recorded", s)
	}

	// Fail again: the give-up clock starts anew at this failure.
	rcv.set(http.StatusInternalServerError)
	e2 := h.src.add("key.deleted", `{}`)
	second := h.clock.Now()
	var last time.Time // the last attempt before the endpoint was disabled
	for i := 0; !h.state(ep).Disabled; i++ {
		if i > 100 {
			t.Fatal("not disabled after 100 failed attempts")
		}
		last = h.clock.Now()
		h.round(0)
		if s := h.state(ep); !s.Disabled {
			if got := s.NextAttempt.Sub(last); got != webhook.Backoff(s.Attempts) {
				t.Fatalf("attempt %d: next attempt after %v, want Backoff(%d) = %v", s.Attempts, got, s.Attempts, webhook.Backoff(s.Attempts))
			}
			h.clock.Set(s.NextAttempt)
		}
	}
	s := h.state(ep)
	if last.Sub(second) < giveUp || !s.DisabledAt.Equal(last) || !s.FailingSince.Equal(second) {
		t.Errorf("disabled at %v after failing since %v (state %+v); want the first failure at least %v after the first", last, second, s, giveUp)
	}
	if !strings.Contains(s.DisabledReason, "answered 500") || strings.Contains(s.DisabledReason, private) {
		t.Errorf("disabled reason %q: want the last failure, never the receiver's answer", s.DisabledReason)
	}
	select {
	case c := <-h.disabled:
		if c.ep.ID != ep.ID || !c.state.Disabled || c.state.DisabledReason != s.DisabledReason {
			t.Errorf("OnDisabled(%+v, %+v), want the endpoint and its disabled state", c.ep, c.state)
		}
	default:
		t.Fatal("OnDisabled was not called")
	}

	// Disabled: no more attempts, however late, and no second callback.
	n := len(rcv.requests())
	h.clock.Set(t0.Add(30 * 24 * time.Hour))
	h.round(0)
	if got := len(rcv.requests()); got != n {
		t.Errorf("a disabled endpoint got %d more requests", got-n)
	}
	select {
	case c := <-h.disabled:
		t.Errorf("OnDisabled called again: %+v", c)
	default:
	}
	if logs := h.logs.String(); strings.Contains(logs, private) {
		t.Errorf("a receiver's answer reached the log:\n%s", logs)
	}

	// Still disabled after a restart; Enable resumes with e2.
	d.Close()
	d = h.start(ep, opts)
	h.round(0)
	if got := len(rcv.requests()); got != n {
		t.Errorf("a restarted dispatcher sent %d requests to a disabled endpoint", got-n)
	}
	rcv.set(http.StatusOK)
	if err := d.Enable(context.Background()); err != nil {
		t.Fatal(err)
	}
	h.round(0)
	if got := rcv.ids(); got[len(got)-1] != e2.ID || len(got) != n+1 {
		t.Errorf("after Enable the receiver got %v more, want [%s]", got[n:], e2.ID)
	}
	if s := h.state(ep); s != (webhook.State{Delivered: e2.Seq}) {
		t.Errorf("state after Enable and a delivery %+v", s)
	}
}

func TestEventsFilter(t *testing.T) {
	h := newHarness(t, storetest.NewMemStore())
	rcv := newReceiver(t)
	ep := h.endpoint(0, rcv.URL)
	ep.Events = []string{"key.created", "token.*"}
	h.start(ep, h.options())
	k1 := h.src.add("key.created", `{}`)
	h.src.add("key.deleted", `{}`)
	t1 := h.src.add("token.revoked", `{}`)
	h.src.add("tokens.other", `{}`) // token.* is the family "token.", not a prefix of words
	last := h.src.add("admin.created", `{}`)
	if backlog := h.round(0); backlog != 0 {
		t.Errorf("backlog %d after passing the unsubscribed events, want 0", backlog)
	}
	var got []string
	for _, q := range rcv.requests() {
		var body struct{ Type string }
		json.Unmarshal(q.body, &body)
		got = append(got, q.header.Get("webhook-id")+" "+body.Type)
	}
	if !slices.Equal(got, []string{k1.ID + " key.created", t1.ID + " token.revoked"}) {
		t.Errorf("receiver got %v, want only key.created and token.revoked", got)
	}
	if s := h.state(ep); s.Delivered != last.Seq {
		t.Errorf("delivered cursor %d, want %d: unsubscribed events are passed for good", s.Delivered, last.Seq)
	}

	for _, c := range []struct {
		events []string
		typ    string
		want   bool
	}{
		{nil, "anything.at_all", true},
		{[]string{"key.created"}, "key.created", true},
		{[]string{"key.created"}, "key.deleted", false},
		{[]string{"key.*"}, "key.deleted", true},
		{[]string{"key.*"}, "keys.deleted", false},
		{[]string{"key.*"}, "key", false},
	} {
		if got := (webhook.Endpoint{Events: c.events}).Wants(c.typ); got != c.want {
			t.Errorf("Endpoint{Events: %q}.Wants(%q) = %v", c.events, c.typ, got)
		}
	}
}

// A round reads at most Batch events, so a long backlog is worked off a
// batch per round, in bounded memory, and reported.
func TestBacklogBounded(t *testing.T) {
	h := newHarness(t, storetest.NewMemStore())
	rcv := newReceiver(t)
	ep := h.endpoint(0, rcv.URL)
	opts := h.options()
	opts.Batch = 100
	h.start(ep, opts)
	for i := 0; i < 250; i++ {
		h.src.add("key.created", `{}`)
	}
	for i, want := range []struct {
		backlog   uint64
		delivered int
	}{{1500, 100}, {500, 200}, {0, 250}} {
		if got := h.round(0); got != want.backlog {
			t.Errorf("round %d: backlog %d, want %d", i+1, got, want.backlog)
		}
		if got := len(rcv.requests()); got != want.delivered {
			t.Errorf("round %d: %d delivered, want %d", i+1, got, want.delivered)
		}
	}
	for _, l := range h.src.limits {
		if l != 100 {
			t.Errorf("EventsAfter asked for %d events, want at most the batch of 100", l)
		}
	}
	ids := rcv.ids()
	if !slices.IsSorted(ids) || len(slices.Compact(slices.Clone(ids))) != 250 {
		t.Error("events not delivered once each, in stream order")
	}

	// With a failing receiver a round makes one attempt, not one per event.
	rcv.set(http.StatusInternalServerError)
	for i := 0; i < 50; i++ {
		h.src.add("key.created", `{}`)
	}
	h.round(0)
	if got := len(rcv.requests()); got != 251 {
		t.Errorf("a round against a failing receiver sent %d requests, want 1", got-250)
	}
}

func TestBackoff(t *testing.T) {
	want := []time.Duration{5 * time.Second, 10 * time.Second, 20 * time.Second, 40 * time.Second, 80 * time.Second}
	for i, w := range want {
		if got := webhook.Backoff(i + 1); got != w {
			t.Errorf("Backoff(%d) = %v, want %v", i+1, got, w)
		}
	}
	for _, n := range []int{11, 12, 100, 1 << 30} {
		if got := webhook.Backoff(n); got != webhook.MaxRetry {
			t.Errorf("Backoff(%d) = %v, want the cap %v", n, got, webhook.MaxRetry)
		}
	}
	if got := webhook.Backoff(10); got != 2560*time.Second {
		t.Errorf("Backoff(10) = %v, want 42m40s", got)
	}

	// The default jitter keeps each delay in [d/2, d] and spreads them.
	h := newHarness(t, storetest.NewMemStore())
	rcv := newReceiver(t)
	rcv.set(http.StatusInternalServerError)
	h.src.add("key.created", `{}`)
	seen := map[time.Duration]bool{}
	for i := 0; i < 20; i++ {
		ep := h.endpoint(i, fmt.Sprintf("%s/%d", rcv.URL, i))
		opts := h.options()
		opts.Jitter = nil
		d := h.start(ep, opts)
		h.round(i)
		d.Close()
		delay := h.state(ep).NextAttempt.Sub(t0)
		if delay < webhook.FirstRetry/2 || delay > webhook.FirstRetry {
			t.Errorf("first retry after %v, want within [%v, %v]", delay, webhook.FirstRetry/2, webhook.FirstRetry)
		}
		seen[delay] = true
	}
	if len(seen) < 2 {
		t.Errorf("20 endpoints all retry after the same delay: no jitter")
	}
}

// Start runs one dispatcher per configured endpoint; an endpoint's state is
// keyed by its URL, so reordering the configuration keeps it.
func TestStartFromConfig(t *testing.T) {
	h := newHarness(t, storetest.NewMemStore())
	a, b := newReceiver(t), newReceiver(t)
	_, ka := secret(1)
	_, kb := secret(2)
	cfg := config.Default()
	cfg.WebhookGiveUp = config.DefaultWebhookGiveUp
	cfg.Webhooks = []config.Webhook{
		{URL: a.URL, Secret: ka},
		{URL: b.URL, Secret: kb, Events: []string{"key.deleted"}},
	}
	for i := range cfg.Webhooks {
		h.ticks[i], h.rounds[i] = make(chan time.Time), make(chan uint64, 100)
	}
	opts := h.options()
	opts.GiveUp = cfg.WebhookGiveUp
	svc, err := webhook.Start(cfg.Webhooks, h.src, h.states, opts)
	if err != nil {
		t.Fatal(err)
	}
	eps := svc.Endpoints()
	if len(eps) != 2 || eps[0].ID != webhook.EndpointID(a.URL) || eps[1].ID != webhook.EndpointID(b.URL) || eps[0].ID == eps[1].ID {
		t.Fatalf("endpoints %+v", eps)
	}
	e1 := h.src.add("key.created", `{}`)
	h.round(0)
	h.round(1)
	if got := a.ids(); !slices.Equal(got, []string{e1.ID}) || len(b.requests()) != 0 {
		t.Errorf("a got %v, b got %d; want a the event, b (key.deleted only) nothing", got, len(b.requests()))
	}
	if low, ok, err := svc.Delivered(context.Background()); err != nil || !ok || low != e1.Seq {
		t.Errorf("Delivered() = %d, %v, %v; want %d", low, ok, err, e1.Seq)
	}
	e2 := h.src.add("key.deleted", `{}`)
	b.set(http.StatusInternalServerError)
	h.round(1)
	if low, _, _ := svc.Delivered(context.Background()); low != e1.Seq {
		t.Errorf("Delivered() = %d with b failing on e2, want b's cursor %d (retention must keep e2)", low, e1.Seq)
	}
	if err := svc.Enable(context.Background(), "wh_unknown"); err == nil {
		t.Error("Enable of an unknown endpoint succeeded")
	}
	svc.Close()

	// Reordered: the same URLs keep their states.
	b.set(http.StatusOK)
	cfg.Webhooks[0], cfg.Webhooks[1] = cfg.Webhooks[1], cfg.Webhooks[0]
	h.clock.Set(t0.Add(time.Hour))
	svc, err = webhook.Start(cfg.Webhooks, h.src, h.states, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(svc.Close)
	h.round(0) // b now
	h.round(1) // a now
	if got := b.ids(); !slices.Equal(got, []string{e2.ID, e2.ID}) {
		t.Errorf("b got %v, want e2 twice (failed, then delivered)", got)
	}
	if got := a.ids(); !slices.Equal(got, []string{e1.ID, e2.ID}) {
		t.Errorf("a got %v after the reorder, want e1 once and then e2", got)
	}
}

// An http:// URL to a host that is not loopback never reaches a dispatcher:
// configuration refuses it.
func TestPlainHTTPRefusedAtConfigLoad(t *testing.T) {
	dir := t.TempDir()
	whsec, _ := secret(1)
	cfgFile := filepath.Join(dir, "keygate.yaml")
	for _, c := range []struct {
		url string
		ok  bool
	}{
		{"http://hooks.example.com/keygate", false},
		{"http://192.0.2.10:8080/keygate", false},
		{"http://127.0.0.1:8080/keygate", true},
		{"https://hooks.example.com/keygate", true},
	} {
		writeConfig(t, cfgFile, "webhooks:\n  - url: "+c.url+"\n    secret_env: HOOK_SECRET\n")
		_, err := config.Load(nil, func(k string) string {
			return map[string]string{"KEYGATE_CONFIG": cfgFile, "HOOK_SECRET": whsec}[k]
		})
		if (err == nil) != c.ok {
			t.Errorf("url %s: error %v, want ok=%v", c.url, err, c.ok)
		}
		if err != nil && !strings.Contains(err.Error(), "webhooks[0].url") {
			t.Errorf("url %s: error %v does not name the setting", c.url, err)
		}
	}
}

func writeConfig(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

// Instances sharing a store (Redis) take turns on an endpoint through its
// lease: each event reaches the receiver once, an instance never sends
// while another holds the lease, a dead instance's lease expires, and a
// change made by one (disabling) is seen by the other at its next round.
func TestInstancesShareAnEndpoint(t *testing.T) {
	a := newHarness(t, storetest.NewMemStore())
	b := newHarness(t, a.states)
	b.src, b.clock = a.src, a.clock
	rcv := newReceiver(t)
	ep := a.endpoint(0, rcv.URL)
	optsA := a.options()
	optsA.Timeout = 300 * time.Millisecond
	a.start(ep, optsA)
	b.start(ep, b.options())
	for i := 0; i < 3; i++ {
		a.src.add("key.created", `{}`)
	}
	a.round(0)
	b.round(0)
	if got := rcv.ids(); !slices.Equal(got, []string{"evt_0001", "evt_0002", "evt_0003"}) {
		t.Fatalf("receiver got %v from two instances, want each event once", got)
	}

	// While A's attempt hangs, A holds the lease and B sends nothing.
	rcv.mu.Lock()
	rcv.hang = true
	rcv.mu.Unlock()
	for len(rcv.entered) > 0 {
		<-rcv.entered // the earlier requests'
	}
	e4 := a.src.add("key.deleted", `{}`)
	a.tick(0)
	<-rcv.entered
	if s := a.state(ep); s.Owner == "" || !s.LeaseUntil.After(a.clock.Now()) {
		t.Errorf("state during A's attempt %+v, want a lease held", s)
	}
	b.round(0)
	if n := len(rcv.requests()); n != 4 {
		t.Errorf("B sent while A held the lease: %d requests, want 4", n)
	}
	a.wait(0) // A's attempt timed out
	s := a.state(ep)
	if s.Attempts != 1 || s.Owner != "" {
		t.Fatalf("state after A's failed attempt %+v, want one failure and the lease released", s)
	}

	// B takes over when the event is due.
	rcv.mu.Lock()
	rcv.hang = false
	rcv.mu.Unlock()
	a.clock.Set(s.NextAttempt)
	b.round(0)
	if got := rcv.ids(); len(got) != 5 || got[4] != e4.ID {
		t.Fatalf("receiver got %v, want B to deliver %s", got, e4.ID)
	}

	// An instance that died holding the lease blocks the endpoint until the
	// lease expires, no longer.
	e5 := a.src.add("key.rotated", `{}`)
	dead := a.clock.Now().Add(webhook.MinLease)
	if _, err := a.states.UpdateWebhookState(context.Background(), ep.ID, func(s webhook.State) (webhook.State, error) {
		s.Owner, s.LeaseUntil = "dead-instance", dead
		return s, nil
	}); err != nil {
		t.Fatal(err)
	}
	b.round(0)
	a.round(0)
	if n := len(rcv.requests()); n != 5 {
		t.Errorf("sent %d requests while a dead instance's lease ran, want 5", n)
	}
	a.clock.Set(dead)
	b.round(0)
	if got := rcv.ids(); len(got) != 6 || got[5] != e5.ID {
		t.Errorf("receiver got %v, want %s once the lease expired", got, e5.ID)
	}

	// Disabled in the store (by any instance): both stop at their next round.
	if _, err := a.states.UpdateWebhookState(context.Background(), ep.ID, func(s webhook.State) (webhook.State, error) {
		s.Disabled = true
		return s, nil
	}); err != nil {
		t.Fatal(err)
	}
	a.src.add("key.created", `{}`)
	a.round(0)
	b.round(0)
	if n := len(rcv.requests()); n != 6 {
		t.Errorf("%d requests to an endpoint disabled by another instance, want still 6", n)
	}
}

// An instance that stalls past its lease (here: a hung attempt while the
// clock moves on) cannot overwrite what the instance that took over
// recorded.
func TestStalledInstanceCannotOverwrite(t *testing.T) {
	a := newHarness(t, storetest.NewMemStore())
	b := newHarness(t, a.states)
	b.src, b.clock = a.src, a.clock
	rcv := newReceiver(t)
	ep := a.endpoint(0, rcv.URL)
	optsA := a.options()
	optsA.Timeout = 300 * time.Millisecond
	a.start(ep, optsA)
	b.start(ep, b.options())
	e1 := a.src.add("key.created", `{}`)

	rcv.mu.Lock()
	rcv.hang = true
	rcv.mu.Unlock()
	a.tick(0)
	<-rcv.entered
	rcv.mu.Lock()
	rcv.hang = false
	rcv.mu.Unlock()
	a.clock.Set(t0.Add(webhook.MinLease)) // A's lease has run out
	b.round(0)
	a.wait(0) // A's attempt times out; its failure must not be recorded
	if s := a.state(ep); s != (webhook.State{Delivered: e1.Seq}) {
		t.Errorf("state %+v, want B's delivery of %d and nothing of A's stale failure", s, e1.Seq)
	}
	if got := rcv.ids(); !slices.Equal(got, []string{e1.ID, e1.ID}) {
		t.Errorf("receiver got %v, want A's hung attempt and B's delivery", got)
	}
}
