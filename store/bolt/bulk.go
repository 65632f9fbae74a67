package bolt

import (
	"bytes"
	"context"
	"fmt"
	"math"
	"slices"

	bbolt "go.etcd.io/bbolt"

	"github.com/keygate/keygate/store"
)

var _ store.BulkLoader = (*Store)(nil)

// bulkCtxCheckEvery is how many puts CreateKeys makes between checks of its
// context: a cancelled seed then rolls back within milliseconds instead of
// committing a batch the caller has given up on.
const bulkCtxCheckEvery = 1024

// CreateKeys implements store.BulkLoader: the whole call is one write
// transaction (one fsync), so it is all-or-nothing — an invalid key, an ID
// that exists or one given twice, or a cancelled context leaves the file as
// it was. No team limit is checked.
//
// Records are encoded before the transaction (bbolt has one writer; the
// lock is held only for the B+tree work) and inserted in client ID order,
// and team index entries team by team, so that consecutive puts land on the
// same pages. The caller bounds the transaction's size: bbolt keeps every
// page it dirties in memory until the commit; 10 000–50 000 keys per call
// is a good range.
func (s *Store) CreateKeys(ctx context.Context, keys []store.Key) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("create keys: %w", err)
	}
	if len(keys) == 0 {
		return nil
	}
	if err := store.CheckBatch(keys); err != nil {
		return fmt.Errorf("create keys: %w", err)
	}
	type entry struct {
		id, team, val []byte
	}
	entries := make([]entry, len(keys))
	for i, k := range keys {
		val, err := encodeKey(k)
		if err != nil {
			return fmt.Errorf("create keys: key %s: %w", k.ClientID, err)
		}
		entries[i] = entry{id: []byte(k.ClientID), team: teamBucket(k.TeamID), val: val}
	}
	slices.SortFunc(entries, func(a, b entry) int { return bytes.Compare(a.id, b.id) })

	err := s.update(ctx, func(tx *bbolt.Tx) error {
		kb := tx.Bucket(bucketKeys)
		for i, e := range entries {
			if i%bulkCtxCheckEvery == 0 {
				if err := ctx.Err(); err != nil {
					return err
				}
			}
			if kb.Get(e.id) != nil {
				return fmt.Errorf("key %s: %w", e.id, store.ErrAlreadyExists)
			}
			if err := kb.Put(e.id, e.val); err != nil {
				return err
			}
		}
		for _, k := range keys {
			if err := indexSecrets(tx, store.Key{}, k); err != nil {
				return err
			}
		}
		// The team index, one team bucket at a time.
		slices.SortFunc(entries, func(a, b entry) int {
			if c := bytes.Compare(a.team, b.team); c != 0 {
				return c
			}
			return bytes.Compare(a.id, b.id)
		})
		teams := tx.Bucket(bucketTeams)
		var team *bbolt.Bucket
		var teamName []byte
		for i, e := range entries {
			if i%bulkCtxCheckEvery == 0 {
				if err := ctx.Err(); err != nil {
					return err
				}
			}
			if team == nil || !bytes.Equal(teamName, e.team) {
				var err error
				if team, err = teams.CreateBucketIfNotExists(e.team); err != nil {
					return fmt.Errorf("team index %q: %w", e.team[1:], err)
				}
				teamName = e.team
			}
			if err := team.Put(e.id, []byte{}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("create keys (%d, none written): %w", len(keys), err)
	}
	return nil
}

// NextStatusIndices implements store.BulkLoader: it advances the status
// bucket's sequence (the counter NextStatusIndex increments) by n in one
// transaction.
func (s *Store) NextStatusIndices(ctx context.Context, n int) (int64, error) {
	if n < 1 {
		return 0, fmt.Errorf("next status indices: %w: n = %d, want ≥ 1", store.ErrInvalid, n)
	}
	var first uint64
	err := s.update(ctx, func(tx *bbolt.Tx) error {
		b := tx.Bucket(bucketStatus)
		seq := b.Sequence()
		if seq > math.MaxInt64-uint64(n) {
			return fmt.Errorf("status index counter at %d cannot grow by %d", seq, n)
		}
		first = seq + 1
		return b.SetSequence(seq + uint64(n))
	})
	if err != nil {
		return 0, fmt.Errorf("next status indices: %w", err)
	}
	return int64(first), nil
}
