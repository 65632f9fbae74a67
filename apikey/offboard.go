package apikey

// Team offboarding (DELETE /v1/teams/{team_id}): everything keygate keeps
// about a team goes, except its audit events, which stay as the record of
// what happened; with erase, their personal data (source addresses, user
// agents, user names) is blanked.

import (
	"context"
	"errors"
	"fmt"

	"github.com/keygate/keygate/store"
)

// TeamDeletion counts what DeleteTeam removed.
type TeamDeletion struct {
	KeysDeleted   int
	SessionsEnded int
	// EventsErased is how many audit events had personal data blanked
	// (0 without erase).
	EventsErased int
}

// DeleteTeam offboards a team. Keys go first, each as Delete removes one
// (status bits set, then the record, with its key.deleted event), so the
// team's tokens stop working before anything else changes; then its
// console and exchange sessions, its usage, and with erase the personal
// data of its audit events; last a team.deleted event, written after the
// erasure so that it keeps who offboarded the team (the operator, not the
// team). A failure stops the sequence and is returned with what was done
// so far: the request can be repeated, every step is idempotent.
//
// A key created in the team while this runs may survive it; repeating
// the request removes it.
func (s *Service) DeleteTeam(ctx context.Context, by Request, team string, erase bool) (TeamDeletion, error) {
	var done TeamDeletion
	if !ValidTeamID(team) {
		return done, invalid("team id %q is not valid: %s", team, TeamIDRule)
	}
	// Checked before anything changes: without them offboarding would stop
	// halfway.
	eraser, ok := store.Feature[store.TeamEraser](s.store)
	if !ok {
		return done, errors.New("delete team: the store cannot delete a team's usage (store.TeamEraser)")
	}
	sessions, ok := store.Feature[store.Sessions](s.store)
	if !ok {
		return done, errors.New("delete team: the store keeps no management sessions (store.Sessions)")
	}
	keys, err := s.List(ctx, team)
	if err != nil {
		return done, err
	}
	for _, k := range keys {
		switch err := s.Delete(ctx, by, team, k.ClientID); {
		case errors.Is(err, ErrNotFound):
			// Deleted meanwhile by another request: gone all the same.
		case err != nil:
			return done, fmt.Errorf("delete team %s: %w", team, err)
		default:
			done.KeysDeleted++
		}
	}
	if done.SessionsEnded, err = sessions.DeleteTeamSessions(ctx, team); err != nil {
		return done, fmt.Errorf("delete team %s: end its sessions: %w", team, err)
	}
	if err := eraser.DeleteTeamUsage(ctx, team); err != nil {
		return done, fmt.Errorf("delete team %s: delete its usage: %w", team, err)
	}
	if erase {
		if done.EventsErased, err = eraser.EraseAuditPersonalData(ctx, team); err != nil {
			return done, fmt.Errorf("delete team %s: erase personal data of its audit events: %w", team, err)
		}
	}
	ev := s.newEvent(by, store.AuditTeamDeleted, team, "")
	ev.Reason = fmt.Sprintf("keys_deleted=%d sessions_ended=%d events_erased=%d", done.KeysDeleted, done.SessionsEnded, done.EventsErased)
	if err := s.store.AppendAudit(ctx, ev); err != nil {
		return done, fmt.Errorf("delete team %s: record team.deleted: %w", team, err)
	}
	s.logAudit(ctx, ev)
	return done, nil
}
