package storetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/keygate/keygate/store"
)

// MemStore is a minimal in-memory store.Store. It is the reference backend
// the suite checks itself against (TestReference), and a fast store for
// tests of the code above the store (servertest.Memory). It holds Go values,
// not encoded bytes, so it copies on every way in and out; one lock
// serialises every call. Nothing persists.
type MemStore struct {
	mu         sync.Mutex
	keys       map[string]store.Key
	singletons map[string][]byte
	signing    store.SigningKeys
	nextIndex  int64
	statuses   []byte // 2 bits per status index, store.StatusList's layout
	deny       map[string]time.Time
	usage      map[string]map[memBucket]memCounts // team → bucket → counts

	audit    []store.AuditEvent // oldest first; Seq is the index + 1 + pruned
	auditSeq int64
	webhooks map[string]store.WebhookState // made on first save (memstore_webhook.go)
	// secrets is the index KeyBySecretHash reads: string(hash) → client
	// ID, for every key's SecretHash and PreviousSecretHash
	// (memstore_secrets.go).
	secrets map[string]string

	// Management sessions and their one-time codes (memsessions.go), made
	// on first use; schema is what RaiseSchema recorded.
	sessions map[string]store.ManagementSession
	codes    map[string]memCode // string(code hash) →
	schema   int

	checks map[memCheck]struct{} // the status schedule (memschedule.go)
}

var _ store.Store = (*MemStore)(nil)

// NewMemStore returns an empty store.
func NewMemStore() *MemStore {
	return &MemStore{keys: map[string]store.Key{}, singletons: map[string][]byte{}, deny: map[string]time.Time{}, secrets: map[string]string{}}
}

func utc(t time.Time) time.Time {
	if t.IsZero() {
		return time.Time{}
	}
	return t.UTC()
}

func cloneKey(k store.Key) store.Key {
	k.Permissions = slices.Clone(k.Permissions)
	k.SecretHash = bytes.Clone(k.SecretHash)
	k.PreviousSecretHash = bytes.Clone(k.PreviousSecretHash)
	k.CreatedAt, k.LastUsedAt = utc(k.CreatedAt), utc(k.LastUsedAt)
	k.PreviousSecretExpiresAt, k.SecretRotatedAt = utc(k.PreviousSecretExpiresAt), utc(k.SecretRotatedAt)
	k.SecretSuspendedAt = utc(k.SecretSuspendedAt)
	k.ExpiresAt, k.DisabledAt = utc(k.ExpiresAt), utc(k.DisabledAt)
	k.Audiences = slices.Clone(k.Audiences)
	k.AllowedCIDRs = slices.Clone(k.AllowedCIDRs)
	k.Metadata = bytes.Clone(k.Metadata)
	return k
}

func cloneSigningKey(k store.SigningKey) store.SigningKey {
	k.PrivateKeySealed = bytes.Clone(k.PrivateKeySealed)
	k.CreatedAt = utc(k.CreatedAt)
	k.SignsFrom = utc(k.SignsFrom)
	return k
}

func cloneSigning(s store.SigningKeys) store.SigningKeys {
	out := store.SigningKeys{MasterKeyID: s.MasterKeyID}
	if s.Active != nil {
		a := cloneSigningKey(*s.Active)
		out.Active = &a
	}
	for _, r := range s.Retired {
		out.Retired = append(out.Retired, store.RetiredSigningKey{SigningKey: cloneSigningKey(r.SigningKey), PublishUntil: utc(r.PublishUntil), RetiredAt: utc(r.RetiredAt)})
	}
	if s.Next != nil {
		n := cloneSigningKey(*s.Next)
		out.Next = &n
	}
	return out
}

func (m *MemStore) lock(ctx context.Context) (func(), error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	m.mu.Lock()
	return m.mu.Unlock, nil
}

func (m *MemStore) CreateKey(ctx context.Context, k store.Key, max int, audit ...store.AuditEvent) error {
	if err := store.CheckClientID(k); err != nil {
		return err
	}
	ev, err := store.OneAuditEvent(audit)
	if err != nil {
		return err
	}
	if ev != nil {
		if err := store.CheckAuditEvent(*ev, &k.TeamID, &k.ClientID); err != nil {
			return err
		}
	}
	unlock, err := m.lock(ctx)
	if err != nil {
		return err
	}
	defer unlock()
	if _, ok := m.keys[k.ClientID]; ok {
		return store.ErrAlreadyExists
	}
	n := 0
	for _, o := range m.keys {
		if o.TeamID == k.TeamID {
			n++
		}
	}
	if max > 0 && n >= max {
		return store.ErrTeamLimit
	}
	m.keys[k.ClientID] = cloneKey(k)
	m.indexSecrets(store.Key{}, k)
	m.appendAudit(ev)
	return nil
}

func (m *MemStore) GetKey(ctx context.Context, id string) (store.Key, error) {
	unlock, err := m.lock(ctx)
	if err != nil {
		return store.Key{}, err
	}
	defer unlock()
	k, ok := m.keys[id]
	if !ok {
		// A missing key costs what a present one does (store.Store's
		// GetKey): the same copy, of the decoy.
		_ = cloneDecoy(store.DecoyAdmin(id))
		return store.Key{}, store.ErrNotFound
	}
	return cloneKey(k), nil
}

// decoyKeys are what GetKey copies for a missing ID: a team key's and an
// admin key's (store.DecoyKey).
var decoyKeys = [2]store.Key{store.DecoyKey(false), store.DecoyKey(true)}

// cloneDecoy is not inlined, so the compiler cannot drop the copy whose
// result nobody reads.
//
//go:noinline
func cloneDecoy(admin bool) store.Key {
	if admin {
		return cloneKey(decoyKeys[1])
	}
	return cloneKey(decoyKeys[0])
}

func (m *MemStore) ListKeys(ctx context.Context, team string) ([]store.Key, error) {
	unlock, err := m.lock(ctx)
	if err != nil {
		return nil, err
	}
	defer unlock()
	var out []store.Key
	for _, k := range m.keys {
		if k.TeamID == team {
			out = append(out, cloneKey(k))
		}
	}
	slices.SortFunc(out, func(a, b store.Key) int {
		if c := a.CreatedAt.Compare(b.CreatedAt); c != 0 {
			return c
		}
		return strings.Compare(a.ClientID, b.ClientID)
	})
	return out, nil
}

func (m *MemStore) Teams(ctx context.Context, q store.TeamQuery) ([]store.TeamCount, error) {
	unlock, err := m.lock(ctx)
	if err != nil {
		return nil, err
	}
	defer unlock()
	counts := map[string]int{}
	for _, k := range m.keys {
		if k.TeamID != "" && strings.HasPrefix(k.TeamID, q.Prefix) && k.TeamID > q.After {
			counts[k.TeamID]++
		}
	}
	out := make([]store.TeamCount, 0, len(counts))
	for team, n := range counts {
		out = append(out, store.TeamCount{TeamID: team, Keys: n})
	}
	slices.SortFunc(out, func(a, b store.TeamCount) int { return strings.Compare(a.TeamID, b.TeamID) })
	if q.Limit > 0 && len(out) > q.Limit {
		out = out[:q.Limit]
	}
	return out, nil
}

func (m *MemStore) ForEachKey(ctx context.Context, fn func(store.Key) error) error {
	unlock, err := m.lock(ctx)
	if err != nil {
		return err
	}
	all := make([]store.Key, 0, len(m.keys))
	for _, k := range m.keys {
		all = append(all, cloneKey(k))
	}
	unlock()
	for _, k := range all {
		if err := fn(k); err != nil {
			return err
		}
	}
	return nil
}

func (m *MemStore) UpdateKey(ctx context.Context, id string, update func(store.Key) (store.Key, error), audit ...store.AuditEvent) (store.Key, error) {
	ev, err := store.OneAuditEvent(audit)
	if err != nil {
		return store.Key{}, err
	}
	unlock, err := m.lock(ctx)
	if err != nil {
		return store.Key{}, err
	}
	defer unlock()
	cur, ok := m.keys[id]
	if !ok {
		return store.Key{}, store.ErrNotFound
	}
	next, err := update(cloneKey(cur))
	if err != nil {
		return store.Key{}, err
	}
	if next.ClientID != cur.ClientID || next.TeamID != cur.TeamID {
		return store.Key{}, errors.New("identity cannot change")
	}
	if ev != nil {
		if err := store.CheckAuditEvent(*ev, &cur.TeamID, &id); err != nil {
			return store.Key{}, err
		}
		ev.Fields = store.ChangedFields(cur, next)
	}
	m.keys[id] = cloneKey(next)
	m.indexSecrets(cur, next)
	m.appendAudit(ev)
	return cloneKey(next), nil
}

func (m *MemStore) DeleteKey(ctx context.Context, team, id string, audit ...store.AuditEvent) error {
	ev, err := store.OneAuditEvent(audit)
	if err != nil {
		return err
	}
	if ev != nil {
		if err := store.CheckAuditEvent(*ev, &team, &id); err != nil {
			return err
		}
	}
	unlock, err := m.lock(ctx)
	if err != nil {
		return err
	}
	defer unlock()
	k, ok := m.keys[id]
	if !ok || k.TeamID != team {
		return fmt.Errorf("delete %s: %w", id, store.ErrNotFound)
	}
	if k.IsFullAdmin() && m.fullAdmins() == 1 {
		return fmt.Errorf("delete %s: %w", id, store.ErrLastAdmin)
	}
	delete(m.keys, id)
	m.indexSecrets(k, store.Key{})
	if ev != nil {
		ev.StatusIndex = k.StatusIndex
	}
	m.appendAudit(ev)
	return nil
}

// appendAudit appends ev (nil: nothing) under the lock the caller holds.
func (m *MemStore) appendAudit(ev *store.AuditEvent) {
	if ev == nil {
		return
	}
	m.auditSeq++
	e := cloneEvent(*ev)
	e.Seq = m.auditSeq
	m.audit = append(m.audit, e)
}

func cloneEvent(ev store.AuditEvent) store.AuditEvent {
	ev.Fields = slices.Clone(ev.Fields)
	ev.Time = utc(ev.Time)
	return ev
}

func (m *MemStore) AppendAudit(ctx context.Context, ev store.AuditEvent) error {
	if err := store.CheckAuditEvent(ev, nil, nil); err != nil {
		return err
	}
	unlock, err := m.lock(ctx)
	if err != nil {
		return err
	}
	defer unlock()
	m.appendAudit(&ev)
	return nil
}

// AuditEvents and AllAuditEvents read the one list: the operator-wide
// stream of this store never lags, and both views share its cursors.
func (m *MemStore) AuditEvents(ctx context.Context, team string, q store.AuditQuery) (store.AuditPage, error) {
	q.TeamID, q.HasTeam = team, true
	return m.readAudit(ctx, q, func(ev store.AuditEvent) bool { return ev.TeamID == team })
}

func (m *MemStore) AllAuditEvents(ctx context.Context, q store.AuditQuery) (store.AuditPage, error) {
	return m.readAudit(ctx, q, func(store.AuditEvent) bool { return true })
}

// readAudit pages through the events in (a team's trail: the events of
// other teams are not part of it, and do not count as examined).
func (m *MemStore) readAudit(ctx context.Context, q store.AuditQuery, in func(store.AuditEvent) bool) (store.AuditPage, error) {
	p, err := store.NewAuditPager(q)
	if err != nil {
		return store.AuditPage{}, err
	}
	unlock, err := m.lock(ctx)
	if err != nil {
		return store.AuditPage{}, err
	}
	defer unlock()
	for i := len(m.audit) - 1; i >= 0; i-- {
		if in(m.audit[i]) && !p.Offer(cloneEvent(m.audit[i])) {
			break
		}
	}
	return p.Page(), nil
}

func (m *MemStore) MoveAudit(ctx context.Context) (int, error) { return 0, ctx.Err() }

func (m *MemStore) PruneAudit(ctx context.Context, before time.Time) (int, error) {
	unlock, err := m.lock(ctx)
	if err != nil {
		return 0, err
	}
	defer unlock()
	n, stop := 0, before.Add(store.AuditPruneSlack)
	m.audit = slices.DeleteFunc(m.audit, func(ev store.AuditEvent) bool {
		if !ev.Time.Before(stop) {
			stop = time.Time{} // the walk ends here: keep the rest
		}
		if !stop.IsZero() && ev.Time.Before(before) {
			n++
			return true
		}
		return false
	})
	return n, nil
}

func (m *MemStore) TouchKeys(ctx context.Context, used map[string]time.Time) error {
	unlock, err := m.lock(ctx)
	if err != nil {
		return err
	}
	defer unlock()
	for id, at := range used {
		if k, ok := m.keys[id]; ok && at.After(k.LastUsedAt) {
			k.LastUsedAt = utc(at)
			m.keys[id] = k
		}
	}
	return nil
}

func (m *MemStore) CreateSingleton(ctx context.Context, name string, v []byte) ([]byte, error) {
	unlock, err := m.lock(ctx)
	if err != nil {
		return nil, err
	}
	defer unlock()
	if cur, ok := m.singletons[name]; ok {
		return bytes.Clone(cur), nil
	}
	m.singletons[name] = bytes.Clone(v)
	return bytes.Clone(v), nil
}

func (m *MemStore) CompareAndSwapSingleton(ctx context.Context, name string, old, v []byte) (bool, error) {
	if len(v) == 0 {
		return false, fmt.Errorf("swap singleton %s: %w: empty value", name, store.ErrInvalid)
	}
	unlock, err := m.lock(ctx)
	if err != nil {
		return false, err
	}
	defer unlock()
	cur, ok := m.singletons[name]
	if !ok {
		return false, fmt.Errorf("swap singleton %s: %w", name, store.ErrNotFound)
	}
	if !bytes.Equal(cur, old) {
		return false, nil
	}
	m.singletons[name] = bytes.Clone(v)
	return true, nil
}

func (m *MemStore) SigningKeys(ctx context.Context) (store.SigningKeys, error) {
	unlock, err := m.lock(ctx)
	if err != nil {
		return store.SigningKeys{}, err
	}
	defer unlock()
	return cloneSigning(m.signing), nil
}

func (m *MemStore) UpdateSigningKeys(ctx context.Context, update func(store.SigningKeys) (store.SigningKeys, error)) (store.SigningKeys, error) {
	unlock, err := m.lock(ctx)
	if err != nil {
		return store.SigningKeys{}, err
	}
	defer unlock()
	next, err := update(cloneSigning(m.signing))
	if err != nil {
		return store.SigningKeys{}, err
	}
	m.signing = cloneSigning(next)
	return cloneSigning(m.signing), nil
}

func (m *MemStore) Ping(ctx context.Context) error { return ctx.Err() }
func (m *MemStore) Close() error                   { return nil }

func (m *MemStore) NextStatusIndex(ctx context.Context) (int64, error) {
	unlock, err := m.lock(ctx)
	if err != nil {
		return 0, err
	}
	defer unlock()
	m.nextIndex++
	return m.nextIndex, nil
}

func (m *MemStore) RevokeStatus(ctx context.Context, idx int64) error {
	if idx < 0 || idx > store.MaxStatusIndex {
		return store.ErrInvalid
	}
	unlock, err := m.lock(ctx)
	if err != nil {
		return err
	}
	defer unlock()
	m.writeStatus(idx, store.StatusInvalid)
	return nil
}

func (m *MemStore) SetStatus(ctx context.Context, idx int64, st store.Status) error {
	if idx < 1 || idx > store.MaxStatusIndex || (st != store.StatusValid && st != store.StatusSuspended) {
		return store.ErrInvalid
	}
	unlock, err := m.lock(ctx)
	if err != nil {
		return err
	}
	defer unlock()
	if (store.StatusList{Statuses: m.statuses}).Entry(idx) == store.StatusInvalid {
		return nil // terminal
	}
	m.writeStatus(idx, st)
	return nil
}

// writeStatus sets entry idx whole (both of its bits), growing the array.
func (m *MemStore) writeStatus(idx int64, st store.Status) {
	for int64(len(m.statuses)) <= idx/4 {
		m.statuses = append(m.statuses, 0)
	}
	shift := uint(idx%4) * 2
	m.statuses[idx/4] = m.statuses[idx/4]&^(3<<shift) | byte(st)<<shift
}

// PokeStatus sets entry idx to any 2-bit value, 3 included, bypassing the
// contract's rules: for the layout test (storetest.StatusLayout), which
// needs a value keygate never writes.
func (m *MemStore) PokeStatus(idx int64, v uint8) {
	unlock, _ := m.lock(context.Background())
	defer unlock()
	m.writeStatus(idx, store.Status(v&3))
}

func (m *MemStore) StatusList(ctx context.Context) (store.StatusList, error) {
	unlock, err := m.lock(ctx)
	if err != nil {
		return store.StatusList{}, err
	}
	defer unlock()
	return store.StatusList{Statuses: bytes.Clone(m.statuses), Allocated: m.nextIndex}, nil
}

func (m *MemStore) DenyToken(ctx context.Context, jti string, until time.Time) error {
	if jti == "" {
		return store.ErrInvalid
	}
	unlock, err := m.lock(ctx)
	if err != nil {
		return err
	}
	defer unlock()
	m.deny[jti] = until
	return nil
}

func (m *MemStore) PruneDeniedTokens(ctx context.Context, now time.Time) (int, error) {
	unlock, err := m.lock(ctx)
	if err != nil {
		return 0, err
	}
	defer unlock()
	n := 0
	for jti, until := range m.deny {
		if n == store.MaxDenyPrune {
			break
		}
		if !until.After(now) {
			delete(m.deny, jti)
			n++
		}
	}
	return n, nil
}

func (m *MemStore) TokenDenied(ctx context.Context, jti string) (bool, error) {
	unlock, err := m.lock(ctx)
	if err != nil {
		return false, err
	}
	defer unlock()
	until, ok := m.deny[jti]
	return ok && until.After(time.Now()), nil
}
