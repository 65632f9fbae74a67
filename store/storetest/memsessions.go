package storetest

import (
	"bytes"
	"cmp"
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/keygate/keygate/store"
)

var (
	_ store.Sessions     = (*MemStore)(nil)
	_ store.TeamEraser   = (*MemStore)(nil)
	_ store.SchemaRaiser = (*MemStore)(nil)
)

type memCode struct {
	session string
	expires time.Time
}

// fullAdmins counts full admin keys, under the lock the caller holds.
func (m *MemStore) fullAdmins() int {
	n := 0
	for _, k := range m.keys {
		if k.IsFullAdmin() {
			n++
		}
	}
	return n
}

func cloneSession(s store.ManagementSession) store.ManagementSession {
	s.CreatedAt, s.ExpiresAt = utc(s.CreatedAt), utc(s.ExpiresAt)
	return s
}

func (m *MemStore) CreateSession(ctx context.Context, sess store.ManagementSession, codeHash []byte, codeExpires time.Time, audit ...store.AuditEvent) error {
	ev, err := store.OneAuditEvent(audit)
	if err != nil {
		return err
	}
	if ev != nil {
		if err := store.CheckAuditEvent(*ev, &sess.TeamID, nil); err != nil {
			return err
		}
	}
	if sess.ID == "" || sess.TeamID == "" {
		return fmt.Errorf("create session: %w: id and team are required", store.ErrInvalid)
	}
	unlock, err := m.lock(ctx)
	if err != nil {
		return err
	}
	defer unlock()
	if m.sessions == nil {
		m.sessions, m.codes = map[string]store.ManagementSession{}, map[string]memCode{}
	}
	if _, ok := m.sessions[sess.ID]; ok {
		return fmt.Errorf("create session %s: %w", sess.ID, store.ErrAlreadyExists)
	}
	if len(codeHash) > 0 {
		if _, ok := m.codes[string(codeHash)]; ok {
			return fmt.Errorf("create session %s: code: %w", sess.ID, store.ErrAlreadyExists)
		}
		m.codes[string(bytes.Clone(codeHash))] = memCode{session: sess.ID, expires: utc(codeExpires)}
	}
	m.sessions[sess.ID] = cloneSession(sess)
	m.appendAudit(ev)
	return nil
}

func (m *MemStore) RedeemSessionCode(ctx context.Context, codeHash []byte, now time.Time) (store.ManagementSession, error) {
	unlock, err := m.lock(ctx)
	if err != nil {
		return store.ManagementSession{}, err
	}
	defer unlock()
	c, ok := m.codes[string(codeHash)]
	if !ok {
		return store.ManagementSession{}, fmt.Errorf("redeem session code: %w", store.ErrNotFound)
	}
	delete(m.codes, string(codeHash))
	sess, ok := m.sessions[c.session]
	if !ok || !now.Before(c.expires) {
		return store.ManagementSession{}, fmt.Errorf("redeem session code: %w", store.ErrNotFound)
	}
	return cloneSession(sess), nil
}

func (m *MemStore) GetSession(ctx context.Context, id string) (store.ManagementSession, error) {
	unlock, err := m.lock(ctx)
	if err != nil {
		return store.ManagementSession{}, err
	}
	defer unlock()
	sess, ok := m.sessions[id]
	if !ok {
		return store.ManagementSession{}, fmt.Errorf("get session %s: %w", id, store.ErrNotFound)
	}
	return cloneSession(sess), nil
}

func (m *MemStore) ListSessions(ctx context.Context, team string, now time.Time) ([]store.ManagementSession, error) {
	unlock, err := m.lock(ctx)
	if err != nil {
		return nil, err
	}
	defer unlock()
	out := []store.ManagementSession{}
	for _, s := range m.sessions {
		if s.TeamID == team && now.Before(s.ExpiresAt) {
			out = append(out, cloneSession(s))
		}
	}
	slices.SortFunc(out, func(a, b store.ManagementSession) int {
		if c := a.CreatedAt.Compare(b.CreatedAt); c != 0 {
			return c
		}
		return cmp.Compare(a.ID, b.ID)
	})
	return out, nil
}

func (m *MemStore) DeleteSession(ctx context.Context, team, id string, audit ...store.AuditEvent) error {
	ev, err := store.OneAuditEvent(audit)
	if err != nil {
		return err
	}
	if ev != nil {
		if err := store.CheckAuditEvent(*ev, &team, nil); err != nil {
			return err
		}
	}
	unlock, err := m.lock(ctx)
	if err != nil {
		return err
	}
	defer unlock()
	s, ok := m.sessions[id]
	if !ok || s.TeamID != team {
		return fmt.Errorf("delete session %s: %w", id, store.ErrNotFound)
	}
	m.dropSession(id)
	m.appendAudit(ev)
	return nil
}

// dropSession removes a session and its code, under the lock.
func (m *MemStore) dropSession(id string) {
	delete(m.sessions, id)
	for h, c := range m.codes {
		if c.session == id {
			delete(m.codes, h)
		}
	}
}

func (m *MemStore) DeleteTeamSessions(ctx context.Context, team string) (int, error) {
	unlock, err := m.lock(ctx)
	if err != nil {
		return 0, err
	}
	defer unlock()
	n := 0
	for id, s := range m.sessions {
		if s.TeamID == team {
			m.dropSession(id)
			n++
		}
	}
	return n, nil
}

func (m *MemStore) PruneSessions(ctx context.Context, now time.Time) (int, error) {
	unlock, err := m.lock(ctx)
	if err != nil {
		return 0, err
	}
	defer unlock()
	for h, c := range m.codes {
		if !now.Before(c.expires) {
			delete(m.codes, h)
		}
	}
	n := 0
	for id, s := range m.sessions {
		if !now.Before(s.ExpiresAt) {
			m.dropSession(id)
			n++
		}
	}
	return n, nil
}

func (m *MemStore) DeleteTeamUsage(ctx context.Context, team string) error {
	unlock, err := m.lock(ctx)
	if err != nil {
		return err
	}
	defer unlock()
	delete(m.usage, team)
	return nil
}

func (m *MemStore) EraseAuditPersonalData(ctx context.Context, team string) (int, error) {
	unlock, err := m.lock(ctx)
	if err != nil {
		return 0, err
	}
	defer unlock()
	n := 0
	for i := range m.audit {
		e := &m.audit[i]
		if e.TeamID != team || e.SourceAddr == "" && e.UserAgent == "" && e.Actor.OnBehalfOf == "" {
			continue
		}
		e.SourceAddr, e.UserAgent, e.Actor.OnBehalfOf = "", "", ""
		n++
	}
	return n, nil
}

func (m *MemStore) RaiseSchema(ctx context.Context, level int) error {
	unlock, err := m.lock(ctx)
	if err != nil {
		return err
	}
	defer unlock()
	m.schema = max(m.schema, level)
	return nil
}

// Schema is the level RaiseSchema recorded (0 before any), for tests.
func (m *MemStore) Schema() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.schema
}
