package apikey

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/keygate/keygate/store"
)

// ErrNoSessions: the store keeps no management sessions (store.Sessions),
// so no session token can be issued.
var ErrNoSessions = errors.New("the store keeps no management sessions")

// ViaTokenExchange is the Via of the audit actor of an exchanged token's
// session.
const ViaTokenExchange = "token_exchange"

// ExchangeSession records the management session behind a token exchanged
// by client (RFC 8693, server/exchange.go) for user of teamID, from now
// until expires, with its session.created event in the team's trail naming
// the client and the user, in one atomic step of the store.
func (s *Service) ExchangeSession(ctx context.Context, by Request, client store.Key, teamID, user string, now, expires time.Time) (store.ManagementSession, error) {
	st, ok := store.Feature[store.Sessions](s.store)
	if !ok {
		return store.ManagementSession{}, ErrNoSessions
	}
	if !ValidTeamID(teamID) || !expires.After(now) {
		return store.ManagementSession{}, invalid("an exchanged session needs a valid team and a future expiry")
	}
	if err := s.requireSchemaLevel(ctx, store.SchemaLevelAdminRoles, "create exchange session"); err != nil {
		return store.ManagementSession{}, err
	}
	id, err := newSessionID()
	if err != nil {
		return store.ManagementSession{}, err
	}
	sess := store.ManagementSession{
		ID: id, TeamID: teamID, User: user, Kind: store.SessionExchange,
		MintedBy: client.ClientID, CreatedAt: now.UTC(), ExpiresAt: expires.UTC(),
	}
	by.Actor = store.AuditActor{Type: store.ActorTeamKey, ID: client.ClientID, OnBehalfOf: user, Via: ViaTokenExchange}
	ev := s.newEvent(by, store.AuditSessionCreated, teamID, "")
	if err := st.CreateSession(ctx, sess, nil, time.Time{}, ev); err != nil {
		return store.ManagementSession{}, fmt.Errorf("create exchange session: %w", err)
	}
	s.logAudit(ctx, ev)
	return sess, nil
}
