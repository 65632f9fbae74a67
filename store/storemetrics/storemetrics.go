// Package storemetrics measures the latency of every store call: a
// store.Store that forwards each call to another and records its duration
// in keygate_store_operation_duration_seconds{operation, backend, result}
// (docs/metrics.md). The metric of each operation is made in Wrap and its
// series resolved on first use, so a call costs two clock readings, an
// atomic load and an atomic add.
//
// The optional interfaces callers find by type assertion are forwarded
// exactly when the wrapped store has them: store.BulkLoader (apikey's seed
// path) and the Redis key cache's KeyCacheLive. Unwrap returns the store
// inside for anything else.
package storemetrics

import (
	"context"
	"errors"
	"time"

	"github.com/keygate/keygate/metrics"
	"github.com/keygate/keygate/store"
)

// The operation label's values: the store methods, in snake case.
const (
	OpCreateKey         = "create_key"
	OpGetKey            = "get_key"
	OpListKeys          = "list_keys"
	OpTeams             = "teams"
	OpForEachKey        = "for_each_key"
	OpUpdateKey         = "update_key"
	OpDeleteKey         = "delete_key"
	OpTouchKeys         = "touch_keys"
	OpCreateSingleton   = "create_singleton"
	OpSwapSingleton     = "compare_and_swap_singleton"
	OpSigningKeys       = "signing_keys"
	OpUpdateSigningKeys = "update_signing_keys"
	OpNextStatusIndex   = "next_status_index"
	OpRevokeStatus      = "revoke_status"
	OpSetStatus         = "set_status"
	OpStatusList        = "status_list"
	OpDenyToken         = "deny_token"
	OpTokenDenied       = "token_denied"
	OpPruneDenied       = "prune_denied_tokens"
	OpPing              = "ping"
	OpKeyBySecretHash   = "key_by_secret_hash"
	OpCreateKeys        = "create_keys"
	OpNextStatusIndices = "next_status_indices"

	OpAppendAudit    = "append_audit"
	OpAuditEvents    = "audit_events"
	OpAllAuditEvents = "all_audit_events"
	OpMoveAudit      = "move_audit"
	OpPruneAudit     = "prune_audit"
)

// keyCacheLiveness is the Redis store's report on its key cache
// (store/redis/cache.go).
type keyCacheLiveness interface{ KeyCacheLive() bool }

// Wrap returns st measured on m under the backend label backend ("bolt",
// "redis"). The result has the optional interfaces st has, and no others.
func Wrap(st store.Store, backend string, m *metrics.Metrics) store.Store {
	w := &Store{st: st}
	op := func(name string) *metrics.StoreOp { return m.StoreOp(name, backend) }
	w.ops = ops{
		createKey: op(OpCreateKey), getKey: op(OpGetKey), listKeys: op(OpListKeys), teams: op(OpTeams),
		forEachKey: op(OpForEachKey), updateKey: op(OpUpdateKey), deleteKey: op(OpDeleteKey),
		touchKeys: op(OpTouchKeys), createSingleton: op(OpCreateSingleton), swapSingleton: op(OpSwapSingleton), signingKeys: op(OpSigningKeys),
		updateSigningKeys: op(OpUpdateSigningKeys), nextStatusIndex: op(OpNextStatusIndex),
		revokeStatus: op(OpRevokeStatus), setStatus: op(OpSetStatus), statusList: op(OpStatusList), denyToken: op(OpDenyToken),
		tokenDenied: op(OpTokenDenied), pruneDenied: op(OpPruneDenied), ping: op(OpPing),
		appendAudit: op(OpAppendAudit), auditEvents: op(OpAuditEvents), allAuditEvents: op(OpAllAuditEvents),
		moveAudit: op(OpMoveAudit), pruneAudit: op(OpPruneAudit), keyBySecretHash: op(OpKeyBySecretHash),
	}
	w.usage = newUsageOps(op)
	w.webhook = newWebhookOps(op)
	bulk, isBulk := st.(store.BulkLoader)
	live, hasLive := st.(keyCacheLiveness)
	if isBulk {
		w.ops.createKeys, w.ops.nextStatusIndices = op(OpCreateKeys), op(OpNextStatusIndices)
	}
	switch {
	case isBulk && hasLive:
		return &bulkLiveStore{bulkStore{w, bulk}, live}
	case isBulk:
		return &bulkStore{w, bulk}
	case hasLive:
		return &liveStore{w, live}
	}
	return w
}

type ops struct {
	createKey, getKey, listKeys, teams, forEachKey, updateKey, deleteKey, touchKeys,
	createSingleton, swapSingleton, signingKeys, updateSigningKeys, nextStatusIndex, revokeStatus, setStatus,
	statusList, denyToken, tokenDenied, pruneDenied, ping, createKeys, nextStatusIndices,
	appendAudit, auditEvents, allAuditEvents, moveAudit, pruneAudit, keyBySecretHash *metrics.StoreOp
}

// Store is a measured store.Store.
type Store struct {
	st      store.Store
	ops     ops
	usage   usageOps
	webhook webhookOps // webhook.go
}

// Unwrap returns the store inside.
func (s *Store) Unwrap() store.Store { return s.st }

// failure is err as the result label sees it: "not found" is an answer
// (an unknown client ID at the token endpoint), not a failing store.
func failure(err error) error {
	if errors.Is(err, store.ErrNotFound) {
		return nil
	}
	return err
}

func (s *Store) CreateKey(ctx context.Context, k store.Key, maxPerTeam int, audit ...store.AuditEvent) error {
	start := time.Now()
	err := s.st.CreateKey(ctx, k, maxPerTeam, audit...)
	s.ops.createKey.Since(start, err)
	return err
}

func (s *Store) GetKey(ctx context.Context, clientID string) (store.Key, error) {
	start := time.Now()
	k, err := s.st.GetKey(ctx, clientID)
	s.ops.getKey.Since(start, failure(err))
	return k, err
}

func (s *Store) ListKeys(ctx context.Context, teamID string) ([]store.Key, error) {
	start := time.Now()
	ks, err := s.st.ListKeys(ctx, teamID)
	s.ops.listKeys.Since(start, err)
	return ks, err
}

func (s *Store) Teams(ctx context.Context, q store.TeamQuery) ([]store.TeamCount, error) {
	start := time.Now()
	ts, err := s.st.Teams(ctx, q)
	s.ops.teams.Since(start, err)
	return ts, err
}

// ForEachKey's duration includes fn's: the walk is one operation.
func (s *Store) ForEachKey(ctx context.Context, fn func(store.Key) error) error {
	start := time.Now()
	err := s.st.ForEachKey(ctx, fn)
	s.ops.forEachKey.Since(start, err)
	return err
}

func (s *Store) UpdateKey(ctx context.Context, clientID string, update func(store.Key) (store.Key, error), audit ...store.AuditEvent) (store.Key, error) {
	start := time.Now()
	k, err := s.st.UpdateKey(ctx, clientID, update, audit...)
	s.ops.updateKey.Since(start, failure(err))
	return k, err
}

func (s *Store) DeleteKey(ctx context.Context, teamID, clientID string, audit ...store.AuditEvent) error {
	start := time.Now()
	err := s.st.DeleteKey(ctx, teamID, clientID, audit...)
	s.ops.deleteKey.Since(start, failure(err))
	return err
}

func (s *Store) AppendAudit(ctx context.Context, ev store.AuditEvent) error {
	start := time.Now()
	err := s.st.AppendAudit(ctx, ev)
	s.ops.appendAudit.Since(start, err)
	return err
}

func (s *Store) AuditEvents(ctx context.Context, teamID string, q store.AuditQuery) (store.AuditPage, error) {
	start := time.Now()
	p, err := s.st.AuditEvents(ctx, teamID, q)
	s.ops.auditEvents.Since(start, err)
	return p, err
}

func (s *Store) AllAuditEvents(ctx context.Context, q store.AuditQuery) (store.AuditPage, error) {
	start := time.Now()
	p, err := s.st.AllAuditEvents(ctx, q)
	s.ops.allAuditEvents.Since(start, err)
	return p, err
}

func (s *Store) MoveAudit(ctx context.Context) (int, error) {
	start := time.Now()
	n, err := s.st.MoveAudit(ctx)
	s.ops.moveAudit.Since(start, err)
	return n, err
}

func (s *Store) PruneAudit(ctx context.Context, before time.Time) (int, error) {
	start := time.Now()
	n, err := s.st.PruneAudit(ctx, before)
	s.ops.pruneAudit.Since(start, err)
	return n, err
}

func (s *Store) TouchKeys(ctx context.Context, lastUsed map[string]time.Time) error {
	start := time.Now()
	err := s.st.TouchKeys(ctx, lastUsed)
	s.ops.touchKeys.Since(start, err)
	return err
}

func (s *Store) CreateSingleton(ctx context.Context, name string, value []byte) ([]byte, error) {
	start := time.Now()
	v, err := s.st.CreateSingleton(ctx, name, value)
	s.ops.createSingleton.Since(start, err)
	return v, err
}

func (s *Store) CompareAndSwapSingleton(ctx context.Context, name string, old, value []byte) (bool, error) {
	start := time.Now()
	ok, err := s.st.CompareAndSwapSingleton(ctx, name, old, value)
	s.ops.swapSingleton.Since(start, err)
	return ok, err
}

func (s *Store) SigningKeys(ctx context.Context) (store.SigningKeys, error) {
	start := time.Now()
	ks, err := s.st.SigningKeys(ctx)
	s.ops.signingKeys.Since(start, err)
	return ks, err
}

func (s *Store) UpdateSigningKeys(ctx context.Context, update func(store.SigningKeys) (store.SigningKeys, error)) (store.SigningKeys, error) {
	start := time.Now()
	ks, err := s.st.UpdateSigningKeys(ctx, update)
	s.ops.updateSigningKeys.Since(start, err)
	return ks, err
}

func (s *Store) NextStatusIndex(ctx context.Context) (int64, error) {
	start := time.Now()
	i, err := s.st.NextStatusIndex(ctx)
	s.ops.nextStatusIndex.Since(start, err)
	return i, err
}

func (s *Store) RevokeStatus(ctx context.Context, idx int64) error {
	start := time.Now()
	err := s.st.RevokeStatus(ctx, idx)
	s.ops.revokeStatus.Since(start, err)
	return err
}

func (s *Store) SetStatus(ctx context.Context, idx int64, st store.Status) error {
	start := time.Now()
	err := s.st.SetStatus(ctx, idx, st)
	s.ops.setStatus.Since(start, err)
	return err
}

func (s *Store) StatusList(ctx context.Context) (store.StatusList, error) {
	start := time.Now()
	l, err := s.st.StatusList(ctx)
	s.ops.statusList.Since(start, err)
	return l, err
}

func (s *Store) DenyToken(ctx context.Context, jti string, until time.Time) error {
	start := time.Now()
	err := s.st.DenyToken(ctx, jti, until)
	s.ops.denyToken.Since(start, err)
	return err
}

func (s *Store) PruneDeniedTokens(ctx context.Context, now time.Time) (int, error) {
	start := time.Now()
	n, err := s.st.PruneDeniedTokens(ctx, now)
	s.ops.pruneDenied.Since(start, err)
	return n, err
}

func (s *Store) TokenDenied(ctx context.Context, jti string) (bool, error) {
	start := time.Now()
	d, err := s.st.TokenDenied(ctx, jti)
	s.ops.tokenDenied.Since(start, err)
	return d, err
}

func (s *Store) KeyBySecretHash(ctx context.Context, hash []byte) (store.Key, error) {
	start := time.Now()
	k, err := s.st.KeyBySecretHash(ctx, hash)
	s.ops.keyBySecretHash.Since(start, err)
	return k, err
}

func (s *Store) Ping(ctx context.Context) error {
	start := time.Now()
	err := s.st.Ping(ctx)
	s.ops.ping.Since(start, err)
	return err
}

// Close closes the wrapped store (not measured: it happens once).
func (s *Store) Close() error { return s.st.Close() }

// bulkStore adds store.BulkLoader.
type bulkStore struct {
	*Store
	bulk store.BulkLoader
}

func (s *bulkStore) CreateKeys(ctx context.Context, keys []store.Key) error {
	start := time.Now()
	err := s.bulk.CreateKeys(ctx, keys)
	s.ops.createKeys.Since(start, err)
	return err
}

func (s *bulkStore) NextStatusIndices(ctx context.Context, n int) (int64, error) {
	start := time.Now()
	first, err := s.bulk.NextStatusIndices(ctx, n)
	s.ops.nextStatusIndices.Since(start, err)
	return first, err
}

// liveStore adds the key cache's liveness.
type liveStore struct {
	*Store
	live keyCacheLiveness
}

func (s *liveStore) KeyCacheLive() bool { return s.live.KeyCacheLive() }

type bulkLiveStore struct {
	bulkStore
	live keyCacheLiveness
}

func (s *bulkLiveStore) KeyCacheLive() bool { return s.live.KeyCacheLive() }

var (
	_ store.BulkLoader = (*bulkStore)(nil)
	_ store.BulkLoader = (*bulkLiveStore)(nil)
	_ keyCacheLiveness = (*liveStore)(nil)
	_ keyCacheLiveness = (*bulkLiveStore)(nil)
)
