package bolt

import (
	"context"
	"encoding/binary"
	"fmt"
	"time"

	bbolt "go.etcd.io/bbolt"

	"github.com/keygate/keygate/store"
)

// The audit trail on bbolt: one bucket of every event keyed by its
// sequence number (the bucket's own bbolt sequence, taken in the write
// transaction that commits the event), and per team an index of its
// events' sequence numbers. The operator-wide stream is the event bucket
// itself, so it never lags and MoveAudit has nothing to do; a team's trail
// and the stream share cursors.

var (
	bucketAudit      = []byte("audit")      // seq (8 bytes big-endian) → store.EncodeAuditEvent
	bucketAuditTeams = []byte("auditteams") // "t"+team ID → nested bucket: seq → ""
)

// pruneBatch bounds the events one PruneAudit transaction removes, so a
// first prune of a large backlog does not hold the writer lock for long.
const pruneBatch = 5000

func seqKey(seq uint64) []byte { return binary.BigEndian.AppendUint64(nil, seq) }

// appendAudit writes ev inside tx. nil writes nothing.
func appendAudit(tx *bbolt.Tx, ev *store.AuditEvent) error {
	if ev == nil {
		return nil
	}
	events := tx.Bucket(bucketAudit)
	seq, err := events.NextSequence()
	if err != nil {
		return err
	}
	val, err := store.EncodeAuditEvent(*ev)
	if err != nil {
		return err
	}
	if err := events.Put(seqKey(seq), val); err != nil {
		return err
	}
	team, err := tx.Bucket(bucketAuditTeams).CreateBucketIfNotExists(teamBucket(ev.TeamID))
	if err != nil {
		return err
	}
	return team.Put(seqKey(seq), []byte{})
}

// AppendAudit implements store.Store.
func (s *Store) AppendAudit(ctx context.Context, ev store.AuditEvent) error {
	if err := store.CheckAuditEvent(ev, nil, nil); err != nil {
		return fmt.Errorf("append audit event: %w", err)
	}
	if err := s.update(ctx, func(tx *bbolt.Tx) error { return appendAudit(tx, &ev) }); err != nil {
		return fmt.Errorf("append audit event %s: %w", ev.ID, err)
	}
	return nil
}

// AuditEvents implements store.Store: the team's index walked backwards
// from the cursor.
func (s *Store) AuditEvents(ctx context.Context, teamID string, q store.AuditQuery) (store.AuditPage, error) {
	q.TeamID, q.HasTeam = teamID, true
	page, err := s.readAudit(ctx, q, func(tx *bbolt.Tx) *bbolt.Bucket {
		return tx.Bucket(bucketAuditTeams).Bucket(teamBucket(teamID))
	})
	if err != nil {
		return store.AuditPage{}, fmt.Errorf("audit events of team %q: %w", teamID, err)
	}
	return page, nil
}

// AllAuditEvents implements store.Store: the event bucket walked backwards.
func (s *Store) AllAuditEvents(ctx context.Context, q store.AuditQuery) (store.AuditPage, error) {
	page, err := s.readAudit(ctx, q, func(tx *bbolt.Tx) *bbolt.Bucket { return tx.Bucket(bucketAudit) })
	if err != nil {
		return store.AuditPage{}, fmt.Errorf("audit events: %w", err)
	}
	return page, nil
}

// readAudit pages through index (whose keys are sequence numbers) newest
// first, reading each event from the event bucket.
func (s *Store) readAudit(ctx context.Context, q store.AuditQuery, index func(*bbolt.Tx) *bbolt.Bucket) (store.AuditPage, error) {
	p, err := store.NewAuditPager(q)
	if err != nil {
		return store.AuditPage{}, err
	}
	err = s.view(ctx, func(tx *bbolt.Tx) error {
		idx := index(tx)
		if idx == nil {
			return nil
		}
		events := tx.Bucket(bucketAudit)
		c := idx.Cursor()
		var k []byte
		if q.After > 0 {
			// Seek lands on the cursor or the next newer one; both are
			// excluded, so step back.
			if k, _ = c.Seek(seqKey(uint64(q.After))); k == nil {
				k, _ = c.Last()
			} else {
				k, _ = c.Prev()
			}
		} else {
			k, _ = c.Last()
		}
		for ; k != nil; k, _ = c.Prev() {
			seq := int64(binary.BigEndian.Uint64(k))
			v := events.Get(k)
			if v == nil {
				return fmt.Errorf("audit index names event %d, which is missing (store file damaged?)", seq)
			}
			ev, err := store.DecodeAuditEvent(v, seq)
			if err != nil {
				return err
			}
			if !p.Offer(ev) {
				break
			}
		}
		return nil
	})
	if err != nil {
		return store.AuditPage{}, err
	}
	return p.Page(), nil
}

// MoveAudit implements store.Store: the stream is the event bucket, which
// never lags.
func (s *Store) MoveAudit(ctx context.Context) (int, error) { return 0, ctx.Err() }

// PruneAudit implements store.Store: the old events among the oldest, up
// to pruneBatch of them in one transaction, and their team index entries.
// The event bucket is in commit order, which every team's index follows,
// so one walk serves both.
func (s *Store) PruneAudit(ctx context.Context, before time.Time) (int, error) {
	n := 0
	stop := before.Add(store.AuditPruneSlack)
	err := s.update(ctx, func(tx *bbolt.Tx) error {
		events, teams := tx.Bucket(bucketAudit), tx.Bucket(bucketAuditTeams)
		// Collected first, deleted after: a bbolt cursor may skip an entry
		// when the one under it is deleted.
		var old []store.AuditEvent
		c := events.Cursor()
		for k, v := c.First(); k != nil && len(old) < pruneBatch; k, v = c.Next() {
			ev, err := store.DecodeAuditEvent(v, int64(binary.BigEndian.Uint64(k)))
			if err != nil {
				return err
			}
			if !ev.Time.Before(stop) {
				break
			}
			if ev.Time.Before(before) {
				old = append(old, ev)
			}
		}
		for _, ev := range old {
			k := seqKey(uint64(ev.Seq))
			if err := events.Delete(k); err != nil {
				return err
			}
			if team := teams.Bucket(teamBucket(ev.TeamID)); team != nil {
				if err := team.Delete(k); err != nil {
					return err
				}
			}
		}
		n = len(old)
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("prune audit events: %w", err)
	}
	return n, nil
}
