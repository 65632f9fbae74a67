// Package webhook delivers keygate's operator-wide event stream to the
// endpoints of the webhooks setting, signed per the Standard Webhooks
// specification (docs/webhooks.md).
//
// # How delivery works
//
// One Dispatcher per endpoint runs in a goroutine of its own. On each tick
// it reads, from a Source, the events after the endpoint's delivered
// cursor (at most Options.Batch of them), and POSTs them one by one, in
// stream order. A 2xx answer acknowledges an event: the cursor moves past it
// and the new state is saved in the StateStore before the next event is
// sent, so a restart neither loses an event nor sends again one that was
// acknowledged (at least once: an event whose answer was lost is sent
// again). Anything else — another status, a redirect (never followed), a
// timeout, a refused connection — is a failed attempt: the event is tried
// again after an exponential back-off with jitter (Backoff), and nothing
// after it is sent before it, so the order holds per endpoint. An endpoint
// whose attempts have all failed for Options.GiveUp is disabled (saved, so
// it stays disabled across restarts) and Options.OnDisabled is called.
//
// Several instances sharing a store (Redis) each run a dispatcher per
// endpoint; they take turns through a lease kept in the endpoint's state.
// A round reads the state afresh, and only a dispatcher that takes the
// lease (free, expired or its own) delivers; it renews it with each event
// recorded and gives it up at the end of the round. Every write is an
// atomic update that applies only while the writer holds the lease, so an
// instance that stalled past it cannot undo its successor's progress. An
// instance that dies holding the lease delays the endpoint by at most
// the lease (MinLease, or three request timeouts). Disabling and Enable
// are seen by every instance at its next round.
//
// Nothing else waits on a dispatcher: API handlers only append events to
// the stream, so a receiver that is down or hangs costs its own goroutine
// one request timeout per attempt and nothing more. Memory is bounded: the
// backlog is the stream itself, read Batch events at a time.
//
// A receiver's answer body is read (at most a few kilobytes, so the
// connection can be reused) and discarded: it is never logged nor stored.
// Logs name an endpoint by its index and ID, never by its URL (which may
// carry a token in its query).
package webhook

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"github.com/keygate/keygate/config"
	"github.com/keygate/keygate/store"
)

// Event is one event of the stream, as delivered.
type Event struct {
	// ID is the event's unique ID, sent as webhook-id (the same on every
	// attempt, so receivers can drop duplicates).
	ID string
	// Seq is the stream's cursor: strictly increasing, assigned at commit.
	Seq uint64
	// Type is the event type, e.g. key.created.
	Type string
	// Time is when the event happened.
	Time time.Time
	// Data is the event's JSON object, delivered as the payload's data.
	Data json.RawMessage
}

// Source reads the operator-wide event stream.
type Source interface {
	// EventsAfter returns at most limit events whose Seq is greater than
	// after, oldest first.
	EventsAfter(ctx context.Context, after uint64, limit int) ([]Event, error)
	// Head returns the Seq of the newest event (0 for an empty stream), for
	// the backlog an endpoint reports.
	Head(ctx context.Context) (uint64, error)
}

// State is one endpoint's delivery state, as the store keeps it.
type State = store.WebhookState

// StateStore keeps delivery states durably; store.Store is one (see
// store.WebhookStates for the contract).
type StateStore interface {
	// WebhookState returns the zero State for an endpoint never saved.
	WebhookState(ctx context.Context, endpoint string) (State, error)
	// UpdateWebhookState atomically replaces the state with update(current).
	UpdateWebhookState(ctx context.Context, endpoint string, update func(State) (State, error)) (State, error)
}

// Observer hears, after each tick of a dispatcher, how many events of the
// stream the endpoint has not acknowledged yet (stream head − delivered
// cursor; events the endpoint does not subscribe to count until the
// dispatcher passes them). endpoint is the endpoint's index in the
// configuration, a closed set fit for a metric label.
type Observer interface {
	WebhookBacklog(endpoint int, events uint64)
}

// Endpoint is one receiver.
type Endpoint struct {
	// Index is the endpoint's position in the webhooks setting.
	Index int
	// ID is EndpointID(URL), the key of its state in the store.
	ID     string
	URL    string
	Secret []byte
	// Events are exact event types or families (key.*); nil means all.
	Events []string
}

// EndpointID is the stable ID of an endpoint: a hash of its URL, so its
// state survives a restart and a reordering of the configuration, and no
// store key or log line carries the URL itself.
func EndpointID(rawURL string) string {
	sum := sha256.Sum256([]byte(rawURL))
	return "wh_" + hex.EncodeToString(sum[:12])
}

// Wants reports whether the endpoint subscribes to events of type t.
func (e Endpoint) Wants(t string) bool {
	if e.Events == nil {
		return true
	}
	for _, p := range e.Events {
		if p == t {
			return true
		}
		if fam, ok := strings.CutSuffix(p, "*"); ok && strings.HasPrefix(t, fam) {
			return true
		}
	}
	return false
}

// Defaults of Options.
const (
	// Tick is the period of the default tick source.
	Tick = time.Second
	// DefaultBatch is how many events one tick reads at most.
	DefaultBatch = 100
	// DefaultTimeout bounds one delivery request, from dialling to the end
	// of the answer's headers and the few bytes of body read.
	DefaultTimeout = 10 * time.Second
	// ConnectTimeout bounds dialling and the TLS handshake.
	ConnectTimeout = 5 * time.Second
	// FirstRetry and MaxRetry bound the back-off: the n-th failed attempt
	// waits FirstRetry·2^(n-1), at most MaxRetry, before jitter.
	FirstRetry = 5 * time.Second
	MaxRetry   = time.Hour
)

// storeTimeout bounds one state or stream read or write.
const storeTimeout = 5 * time.Second

// maxBodyRead is how much of an answer's body is read (and discarded),
// enough for the connection to be reused after a short answer.
const maxBodyRead = 4 << 10

// Options configures dispatchers. The zero value is production behaviour.
type Options struct {
	// Now is the clock: the webhook-timestamp of each attempt and the
	// back-off and give-up schedule. nil means time.Now.
	Now func() time.Time
	// Ticks returns the tick source of an endpoint's dispatcher: each value
	// received starts one round of delivery (the value itself is not used;
	// Now is the clock). nil means a time.Ticker of Tick per dispatcher.
	// The loop takes the next tick only after the previous round returned,
	// so with an unbuffered channel a sender knows that when a second send
	// returns, the round of the first has completed.
	Ticks func(Endpoint) <-chan time.Time
	// Timeout bounds one delivery request (DefaultTimeout when zero).
	Timeout time.Duration
	// GiveUp is how long an endpoint may fail every attempt before it is
	// disabled (config.DefaultWebhookGiveUp when zero).
	GiveUp time.Duration
	// Batch is how many events one round reads at most (DefaultBatch).
	Batch int
	// Jitter turns a back-off delay into the one used; nil means a random
	// delay in [d/2, d].
	Jitter func(d time.Duration) time.Duration
	// OnDisabled is called, from the dispatcher's goroutine, once the state
	// of an endpoint that gave up is saved (by the one instance that made
	// the attempt). nil calls nothing.
	OnDisabled func(Endpoint, State)
	// Observer hears of the backlog after each round; nil hears nothing.
	Observer Observer
	// Logger receives delivery failures (never an answer's body); nil
	// discards.
	Logger *slog.Logger
	// Transport sends the requests; nil means NewTransport(). Redirects are
	// never followed whatever the transport.
	Transport http.RoundTripper
}

// NewTransport is the HTTP transport of deliveries: dialling and TLS
// bounded by ConnectTimeout, proxies from the environment, one idle
// connection per endpoint.
func NewTransport() *http.Transport {
	return &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           (&net.Dialer{Timeout: ConnectTimeout, KeepAlive: 30 * time.Second}).DialContext,
		TLSHandshakeTimeout:   ConnectTimeout,
		ForceAttemptHTTP2:     true,
		MaxIdleConnsPerHost:   1,
		IdleConnTimeout:       90 * time.Second,
		ExpectContinueTimeout: time.Second,
	}
}

// Backoff is the delay after the n-th failed attempt (n ≥ 1) before
// jitter: FirstRetry, doubling, at most MaxRetry (5 s, 10 s, 20 s, … 40 min
// 40 s, then 1 h).
func Backoff(n int) time.Duration {
	d := FirstRetry
	for i := 1; i < n && d < MaxRetry; i++ {
		d *= 2
	}
	return min(d, MaxRetry)
}

// defaultJitter spreads retries of many endpoints (or instances) over
// [d/2, d], so they do not all retry at once.
func defaultJitter(d time.Duration) time.Duration {
	if d <= 1 {
		return d
	}
	return d/2 + mrand.N(d/2+1)
}

// Dispatcher delivers the stream to one endpoint. Create it with New (or
// Start, for every configured endpoint) and stop it with Close.
type Dispatcher struct {
	ep     Endpoint
	src    Source
	states StateStore
	signer *standardwebhooks.Webhook
	client *http.Client
	opts   Options
	log    *slog.Logger
	// id names this dispatcher as the owner of the endpoint's lease: random,
	// so that instances sharing a store, and a restarted process, differ.
	id    string
	lease time.Duration

	warnedDisabled bool // the loop's own: log a disabled endpoint once

	ctx    context.Context // cancelled by Close: aborts a request in flight
	cancel context.CancelFunc
	done   chan struct{}
	once   sync.Once
}

// MinLease is the shortest lease a dispatcher takes on its endpoint: long
// enough for an attempt (it is renewed after each delivered event), short
// enough that another instance takes over soon after one dies.
const MinLease = 30 * time.Second

// New starts a dispatcher for ep. Call Close to stop it.
func New(ep Endpoint, src Source, states StateStore, opts Options) (*Dispatcher, error) {
	signer, err := standardwebhooks.NewWebhookRaw(ep.Secret)
	if err != nil {
		return nil, fmt.Errorf("webhook endpoint %d: %w", ep.Index, err)
	}
	if ep.ID == "" {
		ep.ID = EndpointID(ep.URL)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Timeout <= 0 {
		opts.Timeout = DefaultTimeout
	}
	if opts.GiveUp <= 0 {
		opts.GiveUp = config.DefaultWebhookGiveUp
	}
	if opts.Batch <= 0 {
		opts.Batch = DefaultBatch
	}
	if opts.Jitter == nil {
		opts.Jitter = defaultJitter
	}
	tr := opts.Transport
	if tr == nil {
		tr = NewTransport()
	}
	d := &Dispatcher{
		ep: ep, src: src, states: states, signer: signer, opts: opts,
		client: &http.Client{
			Transport: tr,
			Timeout:   opts.Timeout,
			// A redirect is a failed attempt: following it would send signed
			// events to an address the operator never configured.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
		log:   opts.Logger,
		id:    rand.Text()[:16],
		lease: max(MinLease, 3*opts.Timeout),
		done:  make(chan struct{}),
	}
	if d.log == nil {
		d.log = slog.New(slog.DiscardHandler)
	}
	d.log = d.log.With("webhook", ep.Index, "endpoint_id", ep.ID)
	d.ctx, d.cancel = context.WithCancel(context.Background())
	var ticks <-chan time.Time
	if opts.Ticks != nil {
		ticks = opts.Ticks(ep)
	}
	go d.loop(ticks)
	return d, nil
}

// Endpoint returns the endpoint the dispatcher delivers to.
func (d *Dispatcher) Endpoint() Endpoint { return d.ep }

// Close stops the dispatcher, aborting a request in flight (its event is
// not counted as failed and is sent again) and giving up its lease, so a
// restarted keygate resumes at once. Idempotent.
func (d *Dispatcher) Close() {
	d.once.Do(func() {
		d.cancel()
		<-d.done
	})
}

func (d *Dispatcher) loop(ticks <-chan time.Time) {
	defer close(d.done)
	if ticks == nil {
		t := time.NewTicker(Tick)
		defer t.Stop()
		ticks = t.C
	}
	for {
		select {
		case <-d.ctx.Done():
			return
		case <-ticks:
			d.round()
		}
	}
}

// Refusals of the dispatcher's own update functions; nothing is written.
var (
	errNotDue    = errors.New("not due, disabled or leased to another instance")
	errLostLease = errors.New("the endpoint's lease passed to another instance")
)

// busy reports why a round must not deliver now, nil when it may.
func (d *Dispatcher) busy(s State, now time.Time) error {
	if s.Disabled || now.Before(s.NextAttempt) || s.Owner != "" && s.Owner != d.id && now.Before(s.LeaseUntil) {
		return errNotDue
	}
	return nil
}

// round delivers what is due, in order, until an attempt fails or the
// batch is done, then reports the backlog. The state is read from the
// store every round, so a change made elsewhere (another instance, Enable)
// is seen; every change is an atomic update fenced by the lease.
func (d *Dispatcher) round() {
	st, err := d.get()
	if err != nil {
		d.log.Warn("webhook: cannot read delivery state; will retry", "err", err)
		return
	}
	defer func() { d.report(st.Delivered) }()
	if st.Disabled && !d.warnedDisabled {
		d.log.Warn("webhook: endpoint is disabled; nothing is delivered to it", "disabled_at", st.DisabledAt, "reason", st.DisabledReason)
	}
	d.warnedDisabled = st.Disabled
	now := d.opts.Now()
	if d.busy(st, now) != nil {
		return
	}
	ctx, cancel := context.WithTimeout(d.ctx, storeTimeout)
	events, err := d.src.EventsAfter(ctx, st.Delivered, d.opts.Batch)
	cancel()
	if err != nil {
		d.log.Warn("webhook: cannot read the event stream; will retry", "err", err)
		return
	}
	if len(events) == 0 {
		return // idle: no write
	}
	claimed, err := d.update(func(s State) (State, error) {
		if err := d.busy(s, now); err != nil {
			return s, err
		}
		s.Owner, s.LeaseUntil = d.id, now.Add(d.lease)
		return s, nil
	})
	if err != nil {
		if !errors.Is(err, errNotDue) {
			d.log.Warn("webhook: cannot take the endpoint's lease; will retry", "err", err)
		}
		return
	}
	st = claimed
	defer d.release()

	var passed uint64 // the last unsubscribed event passed since the last write
	for _, ev := range events {
		if ev.Seq <= st.Delivered {
			continue // delivered meanwhile, or a Source that repeats itself
		}
		if !d.ep.Wants(ev.Type) {
			passed = ev.Seq
			continue
		}
		err := d.deliver(ev)
		if err != nil && d.ctx.Err() != nil {
			return // closing aborted it: not the receiver's failure
		}
		now := d.opts.Now()
		if err != nil {
			if next, ferr := d.failed(st, ev, err, now); ferr == nil {
				st = next
			}
			return
		}
		if st.Attempts > 0 {
			d.log.Info("webhook: delivered after failed attempts", "event_id", ev.ID, "attempts", st.Attempts+1)
		}
		next, err := d.update(d.fenced(func(State) State {
			return State{Delivered: ev.Seq, Owner: d.id, LeaseUntil: now.Add(d.lease)}
		}))
		if err != nil {
			// Sent at least once; the receiver may get it again.
			d.log.Warn("webhook: cannot record a delivery; stopping this round", "event_id", ev.ID, "err", err)
			return
		}
		st, passed = next, 0
	}
	if passed > st.Delivered {
		if next, err := d.update(d.fenced(func(s State) State { s.Delivered = passed; return s })); err == nil {
			st = next
		}
	}
}

// fenced turns a change into an update that applies only while this
// dispatcher holds the lease, so an instance that lost it (it stalled
// past its lease) cannot overwrite its successor's progress.
func (d *Dispatcher) fenced(change func(State) State) func(State) (State, error) {
	return func(s State) (State, error) {
		if s.Owner != d.id {
			return s, errLostLease
		}
		return change(s), nil
	}
}

func (d *Dispatcher) get() (State, error) {
	ctx, cancel := context.WithTimeout(d.ctx, storeTimeout)
	defer cancel()
	return d.states.WebhookState(ctx, d.ep.ID)
}

// update runs on a context of its own, so a round's last write (and the
// lease's release) still happens while Close is aborting the round.
func (d *Dispatcher) update(fn func(State) (State, error)) (State, error) {
	ctx, cancel := context.WithTimeout(context.Background(), storeTimeout)
	defer cancel()
	return d.states.UpdateWebhookState(ctx, d.ep.ID, fn)
}

// release gives up the lease at the end of a round that took it.
func (d *Dispatcher) release() {
	_, err := d.update(d.fenced(func(s State) State {
		s.Owner, s.LeaseUntil = "", time.Time{}
		return s
	}))
	if err != nil && !errors.Is(err, errLostLease) {
		d.log.Warn("webhook: cannot release the endpoint's lease; it expires by itself", "err", err)
	}
}

func (d *Dispatcher) report(delivered uint64) {
	if d.opts.Observer == nil {
		return
	}
	ctx, cancel := context.WithTimeout(d.ctx, storeTimeout)
	defer cancel()
	head, err := d.src.Head(ctx)
	if err != nil {
		return
	}
	var backlog uint64
	if head > delivered {
		backlog = head - delivered
	}
	d.opts.Observer.WebhookBacklog(d.ep.Index, backlog)
}

// failed records a failed attempt at ev: the next one is scheduled, or the
// endpoint disabled once it has failed for GiveUp.
func (d *Dispatcher) failed(st State, ev Event, cause error, now time.Time) (State, error) {
	delay := d.opts.Jitter(Backoff(st.Attempts + 1)) // drawn once, outside the update, which may run twice
	next, err := d.update(d.fenced(func(s State) State {
		s.Attempts++
		if s.FailingSince.IsZero() {
			s.FailingSince = now
		}
		if failing := now.Sub(s.FailingSince); failing >= d.opts.GiveUp {
			s.Disabled, s.DisabledAt, s.NextAttempt = true, now, time.Time{}
			s.DisabledReason = fmt.Sprintf("every delivery attempt failed for %s (%d attempts on event %s; last: %v)",
				failing.Round(time.Second), s.Attempts, ev.ID, cause)
			return s
		}
		s.NextAttempt = now.Add(delay)
		return s
	}))
	if err != nil {
		d.log.Warn("webhook: delivery failed and cannot be recorded", "event_id", ev.ID, "err", cause, "store_err", err)
		return st, err
	}
	if next.Disabled {
		d.log.Error("webhook: endpoint disabled: every attempt failed for webhook_give_up", "event_id", ev.ID,
			"attempts", next.Attempts, "failing_since", next.FailingSince, "err", cause)
		d.warnedDisabled = true
		if d.opts.OnDisabled != nil {
			d.opts.OnDisabled(d.ep, next)
		}
		return next, nil
	}
	d.log.Warn("webhook: delivery failed; will retry", "event_id", ev.ID, "attempt", next.Attempts,
		"next_attempt", next.NextAttempt, "err", cause)
	return next, nil
}

// payload is the body of a delivery, as the Standard Webhooks
// specification lays it out.
type payload struct {
	Type      string          `json:"type"`
	Timestamp time.Time       `json:"timestamp"`
	Data      json.RawMessage `json:"data"`
}

// deliver makes one attempt at ev: signed afresh with the current time,
// under the event's own ID.
func (d *Dispatcher) deliver(ev Event) error {
	data := ev.Data
	if len(data) == 0 {
		data = json.RawMessage(`{}`)
	}
	body, err := json.Marshal(payload{Type: ev.Type, Timestamp: ev.Time.UTC(), Data: data})
	if err != nil {
		return fmt.Errorf("encode event: %w", err)
	}
	now := d.opts.Now()
	sig, err := d.signer.Sign(ev.ID, now, body)
	if err != nil {
		return fmt.Errorf("sign event: %w", err)
	}
	req, err := http.NewRequestWithContext(d.ctx, http.MethodPost, d.ep.URL, bytes.NewReader(body))
	if err != nil {
		return errors.New("cannot build the request") // the URL is checked by config; never echo it
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "keygate-webhook/1")
	req.Header.Set(standardwebhooks.HeaderWebhookID, ev.ID)
	req.Header.Set(standardwebhooks.HeaderWebhookTimestamp, strconv.FormatInt(now.Unix(), 10))
	req.Header.Set(standardwebhooks.HeaderWebhookSignature, sig)
	resp, err := d.client.Do(req)
	if err != nil {
		return sendError(err)
	}
	// Read a little so the connection can be reused; never keep or log it.
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxBodyRead))
	resp.Body.Close()
	switch {
	case resp.StatusCode >= 200 && resp.StatusCode < 300:
		return nil
	case resp.StatusCode >= 300 && resp.StatusCode < 400:
		return fmt.Errorf("answered %d, a redirect (not followed)", resp.StatusCode)
	default:
		return fmt.Errorf("answered %d", resp.StatusCode)
	}
}

// sendError describes a failed request without its URL, which
// *url.Error would quote (and which may carry a token in its query).
func sendError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		if ue.Timeout() {
			return errors.New("timed out")
		}
		err = ue.Err
	}
	return fmt.Errorf("request failed: %w", err)
}

// Enable re-enables a disabled endpoint: its failures are forgotten and
// delivery resumes with the first event it has not acknowledged. A no-op
// for an endpoint that is not disabled. Every instance sees it at its next
// round.
func (d *Dispatcher) Enable(ctx context.Context) error {
	st, err := d.states.UpdateWebhookState(ctx, d.ep.ID, func(s State) (State, error) {
		if !s.Disabled {
			return s, nil
		}
		return State{Delivered: s.Delivered}, nil
	})
	if err != nil {
		return fmt.Errorf("enable webhook %d: %w", d.ep.Index, err)
	}
	d.log.Info("webhook: endpoint enabled", "delivered", st.Delivered)
	return nil
}
