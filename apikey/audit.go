package apikey

// The audit trail's rules (#13): who did what, from where. Every change of a
// key carries its event into the store, which writes both in one atomic
// step; events that change no key (a revoked token, a refused management
// call) are appended alone. Each stored event is also one log line with
// audit=true, so a log shipper gets them without polling. Refused calls
// are folded: at most one stored event per source address and client ID
// per minute, with a count (AuditWorker flushes them).

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/oklog/ulid/v2"

	"github.com/keygate/keygate/config"
	"github.com/keygate/keygate/store"
)

// Request says who asks and from where, for the audit trail. Front ends
// fill it from their own request (server: requestMeta).
type Request struct {
	Actor      store.AuditActor
	RequestID  string
	SourceAddr string
	// UserAgent is truncated to MaxUserAgent bytes in the event.
	UserAgent string
}

// MaxUserAgent bounds the user agent kept in an event.
const MaxUserAgent = 200

// AdminRequest is a request by the admin key clientID.
func AdminRequest(clientID string) Request {
	return Request{Actor: store.AuditActor{Type: store.ActorAdminKey, ID: clientID}}
}

// SystemRequest is an action of keygate itself (a command run by the
// operator on the store, say).
func SystemRequest(via string) Request {
	return Request{Actor: store.AuditActor{Type: store.ActorSystem, Via: via}}
}

// newEvent fills in what every event carries: a ULID (sortable, made from
// the Service's clock), the time, who and from where.
func (s *Service) newEvent(by Request, action store.AuditAction, team, clientID string) store.AuditEvent {
	now := s.cfg.Now().UTC()
	return store.AuditEvent{
		ID:         ulid.MustNew(ulid.Timestamp(now), ulid.DefaultEntropy()).String(),
		Time:       now,
		Action:     action,
		Actor:      by.Actor,
		TeamID:     team,
		ClientID:   clientID,
		RequestID:  by.RequestID,
		SourceAddr: by.SourceAddr,
		UserAgent:  truncateUTF8(by.UserAgent, MaxUserAgent),
		Outcome:    store.OutcomeSuccess,
		Count:      1,
	}
}

// truncateUTF8 cuts s to at most n bytes on a rune boundary.
func truncateUTF8(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// logAudit writes the log line of a stored event: one line, audit=true,
// the event's fields and nothing else (an event holds no secret).
func (s *Service) logAudit(ctx context.Context, ev store.AuditEvent) {
	attrs := []slog.Attr{
		slog.Bool("audit", true),
		slog.String("event_id", ev.ID),
		slog.String("action", string(ev.Action)),
		slog.String("outcome", ev.Outcome),
		slog.String("actor_type", ev.Actor.Type),
		slog.String("actor_id", ev.Actor.ID),
		slog.String("team_id", ev.TeamID),
		slog.String("client_id", ev.ClientID),
		slog.String("request_id", ev.RequestID),
		slog.String("source", ev.SourceAddr),
		slog.String("user_agent", ev.UserAgent),
	}
	if ev.Actor.OnBehalfOf != "" || ev.Actor.Via != "" {
		attrs = append(attrs, slog.String("on_behalf_of", ev.Actor.OnBehalfOf), slog.String("via", ev.Actor.Via))
	}
	if len(ev.Fields) > 0 {
		attrs = append(attrs, slog.Any("fields", ev.Fields))
	}
	if ev.Reason != "" {
		attrs = append(attrs, slog.String("reason", ev.Reason))
	}
	if ev.Count > 1 {
		attrs = append(attrs, slog.Int("count", ev.Count))
	}
	if ev.StatusIndex > 0 {
		attrs = append(attrs, slog.Int64("status_index", ev.StatusIndex))
	}
	s.log.LogAttrs(ctx, slog.LevelInfo, "audit: "+string(ev.Action), attrs...)
}

// TeamEvents reads a page of a team's audit trail ("" for admin keys and
// refused calls that name no team).
func (s *Service) TeamEvents(ctx context.Context, team string, q store.AuditQuery) (store.AuditPage, error) {
	if team != "" && !ValidTeamID(team) {
		return store.AuditPage{}, invalid("team id %q is not valid: %s", team, TeamIDRule)
	}
	p, err := s.store.AuditEvents(ctx, team, q)
	if err != nil {
		return store.AuditPage{}, fmt.Errorf("audit events of team %s: %w", team, err)
	}
	return p, nil
}

// AllEvents reads a page of the operator-wide stream (which may lag the
// teams' trails by one AuditWorker tick).
func (s *Service) AllEvents(ctx context.Context, q store.AuditQuery) (store.AuditPage, error) {
	p, err := s.store.AllAuditEvents(ctx, q)
	if err != nil {
		return store.AuditPage{}, fmt.Errorf("audit events: %w", err)
	}
	return p, nil
}

// WebhookDisabled records that keygate stopped delivering to a webhook
// endpoint (package webhook gave up on it), as an event of the system with
// no team. reason names the endpoint by its index and ID, never its URL
// (which may carry a token) or a receiver's answer.
func (s *Service) WebhookDisabled(ctx context.Context, reason string) error {
	ev := s.newEvent(SystemRequest("webhook"), store.AuditWebhookDisabled, "", "")
	ev.Outcome, ev.Reason = store.OutcomeDenied, reason
	if err := s.store.AppendAudit(ctx, ev); err != nil {
		return fmt.Errorf("audit event %s: %w", ev.Action, err)
	}
	s.logAudit(ctx, ev)
	return nil
}

// StoreBackedUp records that by is being handed a copy of the whole store
// (GET /v1/store/backup), in the trail of no team. It is written before
// the copy is taken, so the copy holds its own record, and a backup whose
// record cannot be written is not handed out.
func (s *Service) StoreBackedUp(ctx context.Context, by Request) error {
	ev := s.newEvent(by, store.AuditStoreBackedUp, "", "")
	if err := s.store.AppendAudit(ctx, ev); err != nil {
		return fmt.Errorf("audit event %s: %w", ev.Action, err)
	}
	s.logAudit(ctx, ev)
	return nil
}

// Reasons of an auth.throttled event (store.AuditAuthThrottled).
const (
	ThrottledClient = "client" // one source's failures for one client ID
	ThrottledSource = "source" // one source's failures for any client IDs
)

// AuthThrottled records that failed client authentication from by's
// source started being throttled (package throttle; one event per
// episode): reason ThrottledClient for the client ID of key (its team's
// trail when the key exists, else no team and no client ID, so no
// caller's text is stored) or ThrottledSource (no team). The actor is
// anonymous: nobody proved an identity.
func (s *Service) AuthThrottled(ctx context.Context, by Request, key store.Key, reason string) error {
	by.Actor = store.AuditActor{Type: store.ActorAnonymous}
	team, id := "", ""
	if reason == ThrottledClient {
		team, id = key.TeamID, key.ClientID
	}
	ev := s.newEvent(by, store.AuditAuthThrottled, team, id)
	ev.Outcome, ev.Reason = store.OutcomeDenied, reason
	if err := s.store.AppendAudit(ctx, ev); err != nil {
		return fmt.Errorf("audit event %s: %w", ev.Action, err)
	}
	s.logAudit(ctx, ev)
	return nil
}

// Reasons a management call is refused (store.AuditEvent.Reason).
const (
	DeniedNoToken      = "no_token"
	DeniedBadToken     = "invalid_token"
	DeniedScope        = "insufficient_scope"
	DeniedKeyGone      = "key_gone"
	DeniedTokenRevoked = "token_revoked"
	DeniedKeySuspended = "key_suspended"
	DeniedKeyExpired   = "key_expired"
)

// FoldWindow is how long refused calls from one source address and client
// ID are folded into one stored event.
const FoldWindow = time.Minute

// maxFolds bounds the folding table; failures beyond it are folded into
// one event per window with no source address, so a flood of addresses
// cannot grow memory.
const maxFolds = 10000

type foldKey struct{ source, clientID string }

type fold struct {
	ev    store.AuditEvent
	first time.Time
}

// failures folds refused calls until AuditWorker flushes them.
type failures struct {
	mu    sync.Mutex
	folds map[foldKey]*fold
	// max is maxFolds, a field so tests can reach the bound cheaply.
	max int
}

// AuthFailed records a management call refused for lack of authority,
// filed under team "" (refused calls are the operator's concern, whatever
// team the path named).
// Nothing is written here: the call is folded with others from the same
// source address and client ID and stored, with its count, by the next
// AuditWorker tick a FoldWindow after the first (so a guessing attack
// costs one store write per minute per address, not one per guess).
func (s *Service) AuthFailed(by Request, reason string) {
	now := s.cfg.Now()
	k := foldKey{by.SourceAddr, by.Actor.ID}
	s.failures.mu.Lock()
	defer s.failures.mu.Unlock()
	if s.failures.folds == nil {
		s.failures.folds = map[foldKey]*fold{}
	}
	if f, ok := s.failures.folds[k]; ok {
		f.ev.Count++
		return
	}
	if s.failures.max == 0 {
		s.failures.max = maxFolds
	}
	if len(s.failures.folds) >= s.failures.max {
		k = foldKey{}
		by.SourceAddr, by.Actor.ID, by.UserAgent, by.RequestID = "", "", "", ""
		if f, ok := s.failures.folds[k]; ok {
			f.ev.Count++
			return
		}
	}
	ev := s.newEvent(by, store.AuditAuthFailed, "", "")
	ev.Outcome, ev.Reason = store.OutcomeDenied, reason
	s.failures.folds[k] = &fold{ev: ev, first: now}
}

// flushFailures stores the folds whose window has passed at now (all of
// them when all is set, at shutdown). A fold the store refused is kept
// for the next tick.
func (s *Service) flushFailures(ctx context.Context, now time.Time, all bool) error {
	s.failures.mu.Lock()
	var due []*fold
	for k, f := range s.failures.folds {
		if all || !now.Before(f.first.Add(FoldWindow)) {
			due = append(due, f)
			delete(s.failures.folds, k)
		}
	}
	s.failures.mu.Unlock()
	var firstErr error
	for i, f := range due {
		if err := s.store.AppendAudit(ctx, f.ev); err != nil {
			s.failures.mu.Lock()
			for _, g := range due[i:] {
				k := foldKey{g.ev.SourceAddr, g.ev.Actor.ID}
				if cur, ok := s.failures.folds[k]; ok {
					cur.ev.Count += g.ev.Count
					cur.first = g.first
				} else {
					s.failures.folds[k] = g
				}
			}
			s.failures.mu.Unlock()
			firstErr = fmt.Errorf("store refused-call audit events: %w", err)
			break
		}
		s.logAudit(ctx, f.ev)
	}
	return firstErr
}

// AuditOptions configures an AuditWorker. The zero value is production
// behaviour.
type AuditOptions struct {
	// Retention is how long events are kept. Default
	// config.DefaultAuditRetention.
	Retention time.Duration
	// Ticks drives the work: each value is one round at that time (fold
	// flush, stream move, and a prune when PruneEvery has passed since the
	// last). nil means a ticker of config.AuditTick. The next tick is taken
	// only after a round returned, so with an unbuffered channel a sender
	// knows that when its second send returns, the first round is done.
	Ticks <-chan time.Time
	// PruneEvery is the least time between two prunes. Default
	// config.AuditPruneEvery.
	PruneEvery time.Duration
	// Hold, when set, returns the time of the oldest event a reader of the
	// stream still needs (webhook delivery: the first event an endpoint has
	// not acknowledged); zero when none is needed. Pruning then keeps
	// everything from AuditPruneSlack before it, whatever the retention:
	// an undelivered event is never pruned. An error skips the prune.
	Hold func(ctx context.Context) (time.Time, error)
	// GenerationsEvery is the least time between two reads of the status
	// schedule (Service.RevokeDueStatusChecks), or between two walks of
	// every key (Service.RevokeEndedGenerations) on a store whose schedule
	// is not complete or that has none: how late, at most, the status bit
	// of a secret whose grace period ended is set, to within one tick.
	// Default DefaultGenerationsEvery.
	GenerationsEvery time.Duration
	// StatusRepairEvery is the least time between two walks of every key
	// once the store's status schedule is complete: the walk then only
	// repairs what the schedule cannot know of (a key changed by a release
	// without it). The first is StatusRepairEvery after the first round.
	// Default DefaultStatusRepairEvery.
	StatusRepairEvery time.Duration
	// TeamsRepairEvery is the least time between two repair walks of a
	// store's team registry (store.TeamRegistry; Redis), once a walk has
	// completed it (before, the walk runs at once): how long, at most, an
	// empty team left in the registry by a crash stays there (Teams skips
	// it), to within one tick. Default DefaultTeamsRepairEvery.
	TeamsRepairEvery time.Duration
}

// DefaultTeamsRepairEvery: see AuditOptions.TeamsRepairEvery. A team that
// gains its first key is listed before the key is written, and one that
// loses its last leaves Teams at once, so the walk only tidies (and mends
// what an older release left): store/redis/teamregistry.go.
const DefaultTeamsRepairEvery = 6 * time.Hour

// DefaultGenerationsEvery: see AuditOptions.GenerationsEvery. Tokens minted
// with a secret in its grace period expire with it whatever this is
// (Auth.TokenExpiry); the bit is for the tokens minted before the rotation.
const DefaultGenerationsEvery = time.Minute

// DefaultStatusRepairEvery: see AuditOptions.StatusRepairEvery.
const DefaultStatusRepairEvery = 6 * time.Hour

// AuditWorker is the background side of the audit trail: it stores folded
// refused calls, feeds the operator-wide stream (store.MoveAudit) and
// prunes events past retention; it also prunes the deny list's expired
// entries, and sets the status bits that fell due (the status schedule,
// statusschedule.go; and its repair walk, Service.RevokeEndedGenerations).
// Stop it with Close.
type AuditWorker struct {
	s         *Service
	opts      AuditOptions
	lastPrune time.Time
	lastGens  time.Time
	// lastWalk is the start of the last complete RevokeEndedGenerations
	// walk (or the first round's time, where the schedule made a walk at
	// start unnecessary); walkEvery is the least time to the next.
	lastWalk  time.Time
	walkEvery time.Duration
	// scheduled: the store's status schedule was seen complete (it stays
	// so; the check is a singleton swap, a bbolt commit, spared from then on).
	scheduled bool
	// since measures a walk's duration (time.Since; a test's clock).
	since     func(time.Time) time.Duration
	lastTeams time.Time
	// ctx ends with Close: it bounds the walks, which may take minutes.
	ctx    context.Context
	cancel context.CancelFunc
	stop   chan struct{}
	done   chan struct{}
	once   sync.Once
	ticker *time.Ticker
}

// roundTimeout bounds one round's store calls; walkTimeout a walk of every
// key (paced: pace.go), which at ten million keys takes minutes.
const (
	roundTimeout = 30 * time.Second
	walkTimeout  = 30 * time.Minute
)

// StartAudit starts the Service's AuditWorker.
func (s *Service) StartAudit(opts AuditOptions) *AuditWorker {
	if opts.Retention <= 0 {
		opts.Retention = config.DefaultAuditRetention
	}
	if opts.PruneEvery <= 0 {
		opts.PruneEvery = config.AuditPruneEvery
	}
	if opts.GenerationsEvery <= 0 {
		opts.GenerationsEvery = DefaultGenerationsEvery
	}
	if opts.TeamsRepairEvery <= 0 {
		opts.TeamsRepairEvery = DefaultTeamsRepairEvery
	}
	if opts.StatusRepairEvery <= 0 {
		opts.StatusRepairEvery = DefaultStatusRepairEvery
	}
	w := &AuditWorker{s: s, opts: opts, since: time.Since, stop: make(chan struct{}), done: make(chan struct{})}
	w.ctx, w.cancel = context.WithCancel(context.Background())
	if w.opts.Ticks == nil {
		w.ticker = time.NewTicker(config.AuditTick)
		w.opts.Ticks = w.ticker.C
	}
	go w.loop()
	return w
}

func (w *AuditWorker) loop() {
	defer close(w.done)
	for {
		select {
		case <-w.stop:
			return
		case now := <-w.opts.Ticks:
			w.round(now, false)
		}
	}
}

// round does one tick's work; failures are logged and retried next tick.
func (w *AuditWorker) round(now time.Time, final bool) {
	ctx, cancel := context.WithTimeout(context.Background(), roundTimeout)
	defer cancel()
	if err := w.s.flushFailures(ctx, now, final); err != nil {
		w.s.log.Warn("audit: storing refused calls failed; kept for the next round", "err", err)
	}
	if _, err := w.s.store.MoveAudit(ctx); err != nil {
		w.s.log.Warn("audit: feeding the operator-wide event stream failed; retried next round", "err", err)
	}
	// The deny list's expired entries go here, off the request path
	// (store.PruneDeniedTokens): a bounded batch per call until none is
	// left.
	for ctx.Err() == nil {
		n, err := w.s.store.PruneDeniedTokens(ctx, now)
		if err != nil {
			w.s.log.Warn("pruning expired revocations failed; retried next round", "err", err)
			break
		}
		if n < store.MaxDenyPrune {
			break
		}
	}
	// Ended management sessions and expired one-time codes: the store
	// bounds each transaction; their tokens were refused from ExpiresAt on
	// already (CheckSessionToken reads the clock), so this only frees space.
	if ss, ok := store.Feature[store.Sessions](w.s.store); ok && !final {
		if _, err := ss.PruneSessions(ctx, now); err != nil {
			w.s.log.Warn("pruning ended management sessions failed; retried next round", "err", err)
		}
	}
	// The team registry's repair first: the generations walk below may
	// take minutes at millions of keys (paced), and the registry of a store
	// upgraded to it is only used once a repair has completed it.
	if tr, ok := store.Feature[store.TeamRegistry](w.s.store); ok && !final {
		w.teamsRound(ctx, tr, now)
	}
	if !final && (w.lastGens.IsZero() || now.Sub(w.lastGens) >= w.opts.GenerationsEvery) {
		w.statusRound(now)
	}
	if final || now.Sub(w.lastPrune) < w.opts.PruneEvery {
		return
	}
	w.lastPrune = now
	before := now.Add(-w.opts.Retention)
	if w.opts.Hold != nil {
		held, err := w.opts.Hold(ctx)
		if err != nil {
			w.s.log.Warn("audit: could not tell which events are still undelivered; pruning later", "err", err)
			return
		}
		// Events reach the stream in about time order (store.PruneAudit):
		// one behind the held event is at most AuditPruneSlack older.
		if !held.IsZero() && held.Add(-store.AuditPruneSlack).Before(before) {
			before = held.Add(-store.AuditPruneSlack)
		}
	}
	for ctx.Err() == nil {
		n, err := w.s.store.PruneAudit(ctx, before)
		if err != nil {
			w.s.log.Warn("audit: pruning old events failed; retried later", "err", err)
			return
		}
		if n == 0 {
			return
		}
	}
}

// teamsRound repairs the team registry when due: at once on a registry no
// walk has completed, then every TeamsRepairEvery (a complete registry is
// not walked at start: its first repair is one period away).
func (w *AuditWorker) teamsRound(ctx context.Context, tr store.TeamRegistry, now time.Time) {
	if w.lastTeams.IsZero() {
		if complete, err := tr.TeamsComplete(ctx); err == nil && complete {
			w.lastTeams = now
		}
	}
	if !w.lastTeams.IsZero() && now.Sub(w.lastTeams) < w.opts.TeamsRepairEvery {
		return
	}
	wctx, cancel := context.WithTimeout(w.ctx, walkTimeout)
	r, err := tr.RepairTeams(wctx)
	cancel()
	if err != nil {
		w.s.log.Warn("team registry: repair walk failed; retried next round", "err", err)
		return
	}
	w.lastTeams = now
	if r.Added > 0 || r.Removed > 0 {
		w.s.log.Info("team registry repaired", "teams", r.Teams, "added", r.Added, "removed", r.Removed)
	}
}

// statusRound sets the status bits that are due: from the schedule when
// the store's is complete, by a walk of every key when it is not (every
// GenerationsEvery) or when a repair is due (every StatusRepairEvery).
func (w *AuditWorker) statusRound(now time.Time) {
	ctx, cancel := context.WithTimeout(w.ctx, roundTimeout)
	complete, err := w.scheduled, error(nil)
	if !complete {
		complete, err = scheduleComplete(ctx, w.s.store)
	}
	cancel()
	if err != nil {
		w.s.log.Warn("status list: could not tell whether the status schedule is complete; retried next round", "err", err)
		return
	}
	w.scheduled = complete
	if complete && w.lastWalk.IsZero() {
		w.lastWalk, w.walkEvery = now, w.opts.StatusRepairEvery
	}
	if w.lastWalk.IsZero() || now.Sub(w.lastWalk) >= w.walkEvery {
		// A walk of every key, paced (pace.go): its own deadline, as long
		// as a paced walk of millions of keys needs, and Close's.
		start := time.Now()
		wctx, cancel := context.WithTimeout(w.ctx, walkTimeout)
		_, err := w.s.RevokeEndedGenerations(wctx, now)
		cancel()
		if err != nil {
			w.s.log.Warn("status list: setting the bits of ended secrets failed; retried next round", "err", err)
			return
		}
		w.lastGens, w.lastWalk = now, now
		// A walk that took long is not repeated at once: the next starts
		// one period after this one started or as long after it ended as
		// it took, whichever is later, so a large store walks at most
		// half the time, each walk paced at a tenth of a core. (lastWalk
		// is the walk's start: one period from there was the next tick
		// after the walk, and a store of ten million keys walked without
		// a pause, 5 % of serve's CPU at two million keys in a profile;
		// docs/scale.md.)
		// A walk that returned no error completed the store's schedule,
		// if it has one (RevokeEndedGenerations).
		_, complete = store.Feature[store.StatusSchedule](w.s.store)
		w.scheduled = complete
		every := w.opts.GenerationsEvery
		if complete {
			every = w.opts.StatusRepairEvery
		}
		w.walkEvery = max(every, 2*w.since(start))
	}
	if !complete {
		return // the walk does what the schedule would, at its own pace
	}
	ctx, cancel = context.WithTimeout(w.ctx, walkTimeout)
	defer cancel()
	if _, err := w.s.RevokeDueStatusChecks(ctx, now); err != nil {
		w.s.log.Warn("status list: setting the bits the status schedule holds failed; retried next round", "err", err)
		return
	}
	w.lastGens = now
}

// Close stops the worker and stores every folded refused call.
func (w *AuditWorker) Close() {
	w.once.Do(func() {
		w.cancel() // a walk under way ends now; the next start walks again
		close(w.stop)
		<-w.done
		if w.ticker != nil {
			w.ticker.Stop()
		}
		w.round(w.s.cfg.Now(), true)
	})
}
