package bolt

// Management sessions (store.Sessions), team erasure (store.TeamEraser)
// and schema levels (store.SchemaRaiser), issue 16. The buckets are made by
// the first write that needs them, so opening a file adds nothing:
//
//	sessions       session ID → JSON session record (with its code's hash)
//	session_codes  SHA-256 of a one-time code → JSON {session, expires}
//	session_teams  "t"+team ID → nested bucket: session ID → ""
//
// Sessions are few (people signing in), so pruning walks them all, in
// bounded batches.

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"time"

	bbolt "go.etcd.io/bbolt"

	"github.com/keygate/keygate/store"
)

var (
	bucketSessions     = []byte("sessions")
	bucketSessionCodes = []byte("session_codes")
	bucketSessionTeams = []byte("session_teams")
)

var (
	_ store.Sessions     = (*Store)(nil)
	_ store.TeamEraser   = (*Store)(nil)
	_ store.SchemaRaiser = (*Store)(nil)
)

type sessionRecord struct {
	ID        string    `json:"id"`
	TeamID    string    `json:"team_id"`
	User      string    `json:"user"`
	Kind      string    `json:"kind"`
	MintedBy  string    `json:"minted_by"`
	CreatedAt time.Time `json:"created_at"`
	ExpiresAt time.Time `json:"expires_at"`
	// CodeHash is the session's unredeemed code, so that ending the
	// session ends its code too.
	CodeHash []byte `json:"code_hash,omitempty"`
}

type codeRecord struct {
	Session string    `json:"session"`
	Expires time.Time `json:"expires"`
}

func (r sessionRecord) session() store.ManagementSession {
	return store.ManagementSession{ID: r.ID, TeamID: r.TeamID, User: r.User, Kind: r.Kind, MintedBy: r.MintedBy,
		CreatedAt: utc(r.CreatedAt), ExpiresAt: utc(r.ExpiresAt)}
}

func getSession(tx *bbolt.Tx, id string) (sessionRecord, error) {
	var r sessionRecord
	b := tx.Bucket(bucketSessions)
	if b == nil {
		return r, store.ErrNotFound
	}
	v := b.Get([]byte(id))
	if v == nil {
		return r, store.ErrNotFound
	}
	if err := json.Unmarshal(v, &r); err != nil {
		return r, fmt.Errorf("decode session %s: %w", id, err)
	}
	return r, nil
}

// CreateSession implements store.Sessions.
func (s *Store) CreateSession(ctx context.Context, sess store.ManagementSession, codeHash []byte, codeExpires time.Time, audit ...store.AuditEvent) error {
	ev, err := store.OneAuditEvent(audit)
	if err == nil && ev != nil {
		err = store.CheckAuditEvent(*ev, &sess.TeamID, nil)
	}
	if err == nil && (sess.ID == "" || sess.TeamID == "") {
		err = fmt.Errorf("%w: a session needs an ID and a team", store.ErrInvalid)
	}
	if err != nil {
		return fmt.Errorf("create session %s: %w", sess.ID, err)
	}
	rec := sessionRecord{ID: sess.ID, TeamID: sess.TeamID, User: sess.User, Kind: sess.Kind, MintedBy: sess.MintedBy,
		CreatedAt: utc(sess.CreatedAt), ExpiresAt: utc(sess.ExpiresAt), CodeHash: bytes.Clone(codeHash)}
	val, err := json.Marshal(rec)
	if err != nil {
		return fmt.Errorf("create session %s: %w", sess.ID, err)
	}
	err = s.update(ctx, func(tx *bbolt.Tx) error {
		sessions, err := tx.CreateBucketIfNotExists(bucketSessions)
		if err != nil {
			return err
		}
		if sessions.Get([]byte(sess.ID)) != nil {
			return store.ErrAlreadyExists
		}
		if len(codeHash) > 0 {
			codes, err := tx.CreateBucketIfNotExists(bucketSessionCodes)
			if err != nil {
				return err
			}
			if codes.Get(codeHash) != nil {
				return fmt.Errorf("code: %w", store.ErrAlreadyExists)
			}
			c, err := json.Marshal(codeRecord{Session: sess.ID, Expires: utc(codeExpires)})
			if err != nil {
				return err
			}
			if err := codes.Put(bytes.Clone(codeHash), c); err != nil {
				return err
			}
		}
		if err := sessions.Put([]byte(sess.ID), val); err != nil {
			return err
		}
		teams, err := tx.CreateBucketIfNotExists(bucketSessionTeams)
		if err != nil {
			return err
		}
		team, err := teams.CreateBucketIfNotExists(teamBucket(sess.TeamID))
		if err != nil {
			return err
		}
		if err := team.Put([]byte(sess.ID), []byte{}); err != nil {
			return err
		}
		return appendAudit(tx, ev)
	})
	if err != nil {
		return fmt.Errorf("create session %s: %w", sess.ID, err)
	}
	return nil
}

// RedeemSessionCode implements store.Sessions: the read and the removal of
// the code are one write transaction, so exactly one redemption wins.
func (s *Store) RedeemSessionCode(ctx context.Context, codeHash []byte, now time.Time) (store.ManagementSession, error) {
	var out store.ManagementSession
	expired := false
	err := s.update(ctx, func(tx *bbolt.Tx) error {
		expired = false
		codes := tx.Bucket(bucketSessionCodes)
		if codes == nil {
			return store.ErrNotFound
		}
		v := codes.Get(codeHash)
		if v == nil {
			return store.ErrNotFound
		}
		var c codeRecord
		if err := json.Unmarshal(v, &c); err != nil {
			return fmt.Errorf("decode session code: %w", err)
		}
		if err := codes.Delete(codeHash); err != nil {
			return err
		}
		if !now.Before(c.Expires) {
			expired = true // committed: the expired code goes too
			return nil
		}
		r, err := getSession(tx, c.Session)
		if err != nil {
			return err
		}
		r.CodeHash = nil
		val, err := json.Marshal(r)
		if err != nil {
			return err
		}
		out = r.session()
		return tx.Bucket(bucketSessions).Put([]byte(r.ID), val)
	})
	if err == nil && expired {
		err = store.ErrNotFound
	}
	if err != nil {
		// Nothing of the code goes into the message.
		return store.ManagementSession{}, fmt.Errorf("redeem session code: %w", err)
	}
	return out, nil
}

// GetSession implements store.Sessions.
func (s *Store) GetSession(ctx context.Context, id string) (store.ManagementSession, error) {
	var out store.ManagementSession
	err := s.view(ctx, func(tx *bbolt.Tx) error {
		r, err := getSession(tx, id)
		out = r.session()
		return err
	})
	if err != nil {
		return store.ManagementSession{}, fmt.Errorf("get session %s: %w", id, err)
	}
	return out, nil
}

// ListSessions implements store.Sessions: the team's index, so the cost is
// the team's sessions.
func (s *Store) ListSessions(ctx context.Context, teamID string, now time.Time) ([]store.ManagementSession, error) {
	out := []store.ManagementSession{}
	err := s.view(ctx, func(tx *bbolt.Tx) error {
		teams := tx.Bucket(bucketSessionTeams)
		if teams == nil {
			return nil
		}
		team := teams.Bucket(teamBucket(teamID))
		if team == nil {
			return nil
		}
		return team.ForEach(func(id, _ []byte) error {
			r, err := getSession(tx, string(id))
			if err != nil {
				return err
			}
			if now.Before(r.ExpiresAt) {
				out = append(out, r.session())
			}
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("list sessions of team %q: %w", teamID, err)
	}
	slices.SortFunc(out, func(a, b store.ManagementSession) int {
		return cmp.Or(a.CreatedAt.Compare(b.CreatedAt), cmp.Compare(a.ID, b.ID))
	})
	return out, nil
}

// dropSession removes r, its team index entry and its code inside tx; an
// emptied team index goes too.
func dropSession(tx *bbolt.Tx, r sessionRecord) error {
	if err := tx.Bucket(bucketSessions).Delete([]byte(r.ID)); err != nil {
		return err
	}
	if codes := tx.Bucket(bucketSessionCodes); codes != nil && len(r.CodeHash) > 0 {
		if err := codes.Delete(r.CodeHash); err != nil {
			return err
		}
	}
	teams := tx.Bucket(bucketSessionTeams)
	if teams == nil {
		return nil
	}
	name := teamBucket(r.TeamID)
	team := teams.Bucket(name)
	if team == nil {
		return nil
	}
	if err := team.Delete([]byte(r.ID)); err != nil {
		return err
	}
	if first, _ := team.Cursor().First(); first == nil {
		return teams.DeleteBucket(name)
	}
	return nil
}

// DeleteSession implements store.Sessions.
func (s *Store) DeleteSession(ctx context.Context, teamID, id string, audit ...store.AuditEvent) error {
	ev, err := store.OneAuditEvent(audit)
	if err == nil && ev != nil {
		err = store.CheckAuditEvent(*ev, &teamID, nil)
	}
	if err != nil {
		return fmt.Errorf("delete session %s: %w", id, err)
	}
	err = s.update(ctx, func(tx *bbolt.Tx) error {
		r, err := getSession(tx, id)
		if err != nil {
			return err
		}
		if r.TeamID != teamID {
			return store.ErrNotFound
		}
		if err := dropSession(tx, r); err != nil {
			return err
		}
		return appendAudit(tx, ev)
	})
	if err != nil {
		return fmt.Errorf("delete session %s of team %q: %w", id, teamID, err)
	}
	return nil
}

// DeleteTeamSessions implements store.Sessions.
func (s *Store) DeleteTeamSessions(ctx context.Context, teamID string) (int, error) {
	n := 0
	err := s.update(ctx, func(tx *bbolt.Tx) error {
		n = 0
		teams := tx.Bucket(bucketSessionTeams)
		if teams == nil || teams.Bucket(teamBucket(teamID)) == nil {
			return nil
		}
		var ids []string
		if err := teams.Bucket(teamBucket(teamID)).ForEach(func(id, _ []byte) error {
			ids = append(ids, string(id))
			return nil
		}); err != nil {
			return err
		}
		for _, id := range ids {
			r, err := getSession(tx, id)
			if err != nil {
				return err
			}
			if err := dropSession(tx, r); err != nil {
				return err
			}
			n++
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("delete sessions of team %q: %w", teamID, err)
	}
	return n, nil
}

// sessionPruneBatch bounds one pruning transaction's removals.
const sessionPruneBatch = 1000

// PruneSessions implements store.Sessions: expired codes and sessions, in
// transactions of at most sessionPruneBatch removals each.
func (s *Store) PruneSessions(ctx context.Context, now time.Time) (int, error) {
	total := 0
	for {
		n, more, err := s.pruneSessionsOnce(ctx, now)
		total += n
		if err != nil {
			return total, fmt.Errorf("prune sessions: %w", err)
		}
		if !more {
			return total, nil
		}
	}
}

func (s *Store) pruneSessionsOnce(ctx context.Context, now time.Time) (sessions int, more bool, err error) {
	err = s.update(ctx, func(tx *bbolt.Tx) error {
		sessions, more = 0, false
		budget := sessionPruneBatch
		if codes := tx.Bucket(bucketSessionCodes); codes != nil {
			var drop [][]byte
			if err := codes.ForEach(func(k, v []byte) error {
				var c codeRecord
				if json.Unmarshal(v, &c) == nil && now.Before(c.Expires) {
					return nil
				}
				if len(drop) < budget {
					drop = append(drop, bytes.Clone(k))
				} else {
					more = true
				}
				return nil
			}); err != nil {
				return err
			}
			for _, k := range drop {
				if err := codes.Delete(k); err != nil {
					return err
				}
			}
			budget -= len(drop)
		}
		b := tx.Bucket(bucketSessions)
		if b == nil {
			return nil
		}
		var drop []sessionRecord
		if err := b.ForEach(func(_, v []byte) error {
			var r sessionRecord
			if err := json.Unmarshal(v, &r); err != nil {
				return err
			}
			if now.Before(r.ExpiresAt) {
				return nil
			}
			if len(drop) < budget {
				drop = append(drop, r)
			} else {
				more = true
			}
			return nil
		}); err != nil {
			return err
		}
		for _, r := range drop {
			if err := dropSession(tx, r); err != nil {
				return err
			}
		}
		sessions = len(drop)
		return nil
	})
	return sessions, more, err
}

// DeleteTeamUsage implements store.TeamEraser: the team's usage bucket.
func (s *Store) DeleteTeamUsage(ctx context.Context, teamID string) error {
	err := s.update(ctx, func(tx *bbolt.Tx) error {
		root := tx.Bucket(bucketUsage)
		if root == nil || root.Bucket(teamBucket(teamID)) == nil {
			return nil
		}
		return root.DeleteBucket(teamBucket(teamID))
	})
	if err != nil {
		return fmt.Errorf("delete usage of team %q: %w", teamID, err)
	}
	return nil
}

// EraseAuditPersonalData implements store.TeamEraser: every event of the
// team's index rewritten in place (one copy of each event is kept here;
// the operator-wide view reads the same records).
func (s *Store) EraseAuditPersonalData(ctx context.Context, teamID string) (int, error) {
	n := 0
	err := s.update(ctx, func(tx *bbolt.Tx) error {
		n = 0
		idx := tx.Bucket(bucketAuditTeams).Bucket(teamBucket(teamID))
		if idx == nil {
			return nil
		}
		events := tx.Bucket(bucketAudit)
		return idx.ForEach(func(seq, _ []byte) error {
			v := events.Get(seq)
			if v == nil {
				return nil // pruned
			}
			ev, err := store.DecodeAuditEvent(v, 0)
			if err != nil {
				return err
			}
			if ev.SourceAddr == "" && ev.UserAgent == "" && ev.Actor.OnBehalfOf == "" {
				return nil
			}
			ev.SourceAddr, ev.UserAgent, ev.Actor.OnBehalfOf = "", "", ""
			val, err := store.EncodeAuditEvent(ev)
			if err != nil {
				return err
			}
			n++
			return events.Put(seq, val)
		})
	})
	if err != nil {
		return 0, fmt.Errorf("erase audit personal data of team %q: %w", teamID, err)
	}
	return n, nil
}

// RaiseSchema implements store.SchemaRaiser: level L is version
// schemaVersion + L (the file's layout version plus the records added
// within it), recorded in one write transaction, never lowered.
func (s *Store) RaiseSchema(ctx context.Context, level int) error {
	want := schemaVersion + level
	if want > maxKnownVersion {
		return fmt.Errorf("raise schema to level %d: this keygate knows versions up to %d", level, maxKnownVersion)
	}
	err := s.update(ctx, func(tx *bbolt.Tx) error {
		meta := tx.Bucket(bucketMeta)
		cur, err := strconv.Atoi(string(meta.Get(metaSchema)))
		if err != nil {
			return fmt.Errorf("schema version %q: %w", meta.Get(metaSchema), err)
		}
		if cur >= want {
			return nil
		}
		return meta.Put(metaSchema, []byte(strconv.Itoa(want)))
	})
	if err != nil {
		return fmt.Errorf("raise schema to level %d: %w", level, err)
	}
	return nil
}

// fullAdmins counts the full admin keys inside tx, stopping at limit.
func fullAdmins(tx *bbolt.Tx, limit int) (int, error) {
	admins := tx.Bucket(bucketTeams).Bucket(teamBucket(""))
	if admins == nil {
		return 0, nil
	}
	n := 0
	c := admins.Cursor()
	for id, _ := c.First(); id != nil && n < limit; id, _ = c.Next() {
		k, err := getKey(tx, string(id))
		if err != nil {
			return 0, err
		}
		if k.IsFullAdmin() {
			n++
		}
	}
	return n, nil
}
