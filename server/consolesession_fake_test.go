package server_test

// A stand-in store.Sessions over MemStore for the console-session tests
// while no backend implements the contract yet (the store work lands
// separately; newSessEnv prefers the real MemStore's as soon as it has
// one). It follows the contract's words: codes by hash, one redemption,
// expiry judged on the caller's now, the event appended with the change.

import (
	"context"
	"slices"
	"sync"
	"time"

	"github.com/keygate/keygate/store"
	"github.com/keygate/keygate/store/storetest"
)

type fakeSessions struct {
	*storetest.MemStore
	mu       sync.Mutex
	sessions map[string]store.ManagementSession
	codes    map[string]fakeCode
}

type fakeCode struct {
	id      string
	expires time.Time
}

func newFakeSessions() *fakeSessions {
	return &fakeSessions{MemStore: storetest.NewMemStore(), sessions: map[string]store.ManagementSession{}, codes: map[string]fakeCode{}}
}

func (f *fakeSessions) CreateSession(ctx context.Context, sess store.ManagementSession, codeHash []byte, codeExpires time.Time, audit ...store.AuditEvent) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.sessions[sess.ID]; ok {
		return store.ErrAlreadyExists
	}
	for _, ev := range audit {
		if err := f.MemStore.AppendAudit(ctx, ev); err != nil {
			return err
		}
	}
	f.sessions[sess.ID] = sess
	if len(codeHash) > 0 {
		f.codes[string(codeHash)] = fakeCode{sess.ID, codeExpires}
	}
	return nil
}

func (f *fakeSessions) RedeemSessionCode(_ context.Context, codeHash []byte, now time.Time) (store.ManagementSession, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	c, ok := f.codes[string(codeHash)]
	if !ok {
		return store.ManagementSession{}, store.ErrNotFound
	}
	delete(f.codes, string(codeHash))
	sess, ok := f.sessions[c.id]
	if !ok || !now.Before(c.expires) {
		return store.ManagementSession{}, store.ErrNotFound
	}
	return sess, nil
}

func (f *fakeSessions) GetSession(_ context.Context, id string) (store.ManagementSession, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	sess, ok := f.sessions[id]
	if !ok {
		return store.ManagementSession{}, store.ErrNotFound
	}
	return sess, nil
}

func (f *fakeSessions) ListSessions(_ context.Context, teamID string, now time.Time) ([]store.ManagementSession, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := []store.ManagementSession{}
	for _, s := range f.sessions {
		if s.TeamID == teamID && now.Before(s.ExpiresAt) {
			out = append(out, s)
		}
	}
	slices.SortFunc(out, func(a, b store.ManagementSession) int {
		if c := a.CreatedAt.Compare(b.CreatedAt); c != 0 {
			return c
		}
		return a.ExpiresAt.Compare(b.ExpiresAt)
	})
	return out, nil
}

func (f *fakeSessions) DeleteSession(ctx context.Context, teamID, id string, audit ...store.AuditEvent) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	s, ok := f.sessions[id]
	if !ok || s.TeamID != teamID {
		return store.ErrNotFound
	}
	for _, ev := range audit {
		if err := f.MemStore.AppendAudit(ctx, ev); err != nil {
			return err
		}
	}
	delete(f.sessions, id)
	for h, c := range f.codes {
		if c.id == id {
			delete(f.codes, h)
		}
	}
	return nil
}

func (f *fakeSessions) DeleteTeamSessions(_ context.Context, teamID string) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for id, s := range f.sessions {
		if s.TeamID == teamID {
			delete(f.sessions, id)
			n++
		}
	}
	return n, nil
}

func (f *fakeSessions) PruneSessions(_ context.Context, now time.Time) (int, error) {
	return 0, nil
}

var _ store.Sessions = (*fakeSessions)(nil)
