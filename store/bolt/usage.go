package bolt

import (
	"bytes"
	"cmp"
	"context"
	"encoding/binary"
	"fmt"
	"slices"
	"time"

	bbolt "go.etcd.io/bbolt"

	"github.com/keygate/keygate/store"
)

// bucketUsage holds usage per key, outside the key records (see the
// package doc's layout): "t"+team ID → nested bucket of counters.
var bucketUsage = []byte("usage")

// usageKey is a counter's name in its team's bucket: the granularity's
// letter ('h' or 'd'), the bucket's start in unix seconds (8 bytes big
// endian, so a team's buckets sort by granularity, then time), then the
// client ID. Its value is two 8-byte big-endian counters: tokens, failures.
func usageKey(g store.Granularity, start time.Time, clientID string) []byte {
	k := make([]byte, 0, 9+len(clientID))
	k = append(k, usageLetter(g))
	k = binary.BigEndian.AppendUint64(k, uint64(start.Unix()))
	return append(k, clientID...)
}

func usageLetter(g store.Granularity) byte {
	if g == store.Day {
		return 'd'
	}
	return 'h'
}

func usagePrefix(g store.Granularity, start time.Time) []byte {
	return binary.BigEndian.AppendUint64([]byte{usageLetter(g)}, uint64(start.Unix()))
}

// AddUsage implements store.Store: one transaction per defaultWriteChunk
// deltas (a flush under load is one).
func (s *Store) AddUsage(ctx context.Context, now time.Time, deltas []store.UsageDelta) error {
	if err := store.CheckUsage(deltas); err != nil {
		return fmt.Errorf("add usage: %w", err)
	}
	if len(deltas) == 0 {
		return ctx.Err()
	}
	// In chunks, as TouchKeys (defaultWriteChunk): the flush on Close may
	// carry a million keys' counts. The contract allows a failed call to
	// have added part of the batch.
	for chunk := range slices.Chunk(deltas, s.writeChunk) {
		if err := s.addUsage(ctx, now, chunk); err != nil {
			return err
		}
	}
	return nil
}

// addUsage is AddUsage for deltas, in one transaction.
func (s *Store) addUsage(ctx context.Context, now time.Time, deltas []store.UsageDelta) error {
	err := s.update(ctx, func(tx *bbolt.Tx) error {
		root, err := tx.CreateBucketIfNotExists(bucketUsage)
		if err != nil {
			return err
		}
		for _, d := range deltas {
			if d.Tokens == 0 && d.Failures == 0 {
				continue
			}
			for _, g := range []store.Granularity{store.Hour, store.Day} {
				start := g.Truncate(d.Hour)
				if !store.UsageKept(g, start, now) {
					continue
				}
				team, err := root.CreateBucketIfNotExists(teamBucket(d.TeamID))
				if err != nil {
					return err
				}
				k := usageKey(g, start, d.ClientID)
				var v [16]byte
				if old := team.Get(k); len(old) == 16 {
					copy(v[:], old)
				}
				binary.BigEndian.PutUint64(v[:8], binary.BigEndian.Uint64(v[:8])+uint64(d.Tokens))
				binary.BigEndian.PutUint64(v[8:], binary.BigEndian.Uint64(v[8:])+uint64(d.Failures))
				if err := team.Put(k, v[:]); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("add usage: %w", err)
	}
	return nil
}

// Usage implements store.Store: one cursor walk over the granularity's
// range of the team's bucket.
func (s *Store) Usage(ctx context.Context, q store.UsageQuery) ([]store.UsageBucket, error) {
	if !q.Granularity.Valid() {
		return nil, fmt.Errorf("usage: %w: granularity %v", store.ErrInvalid, q.Granularity)
	}
	out := []store.UsageBucket{}
	err := s.view(ctx, func(tx *bbolt.Tx) error {
		root := tx.Bucket(bucketUsage)
		if root == nil {
			return nil
		}
		team := root.Bucket(teamBucket(q.TeamID))
		if team == nil {
			return nil
		}
		letter := usageLetter(q.Granularity)
		from := q.From.UTC()
		if from.Unix() < 0 {
			from = time.Unix(0, 0)
		}
		c := team.Cursor()
		for k, v := c.Seek(usagePrefix(q.Granularity, from.Truncate(time.Second))); k != nil && k[0] == letter; k, v = c.Next() {
			if len(k) < 9 || len(v) != 16 {
				return fmt.Errorf("team %q: malformed usage record", q.TeamID)
			}
			start := time.Unix(int64(binary.BigEndian.Uint64(k[1:9])), 0).UTC()
			if !start.Before(q.To) {
				break
			}
			if start.Before(q.From) || !store.UsageKept(q.Granularity, start, q.Now) {
				continue
			}
			out = append(out, store.UsageBucket{
				ClientID: string(k[9:]),
				Start:    start,
				Tokens:   int64(binary.BigEndian.Uint64(v[:8])),
				Failures: int64(binary.BigEndian.Uint64(v[8:])),
			})
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("usage of team %q: %w", q.TeamID, err)
	}
	// The cursor yields start order, then client ID bytes: already the
	// contract's order; sorting again only guards the contract.
	slices.SortStableFunc(out, func(a, b store.UsageBucket) int {
		return cmp.Or(a.Start.Compare(b.Start), cmp.Compare(a.ClientID, b.ClientID))
	})
	return out, nil
}

// PruneUsage implements store.Store: one transaction walks every team's
// buckets from the oldest until the first one still kept, per
// granularity, and drops a team's bucket once it is empty.
func (s *Store) PruneUsage(ctx context.Context, now time.Time) error {
	err := s.update(ctx, func(tx *bbolt.Tx) error {
		root := tx.Bucket(bucketUsage)
		if root == nil {
			return nil
		}
		var emptied [][]byte
		err := root.ForEachBucket(func(name []byte) error {
			team := root.Bucket(name)
			var drop [][]byte
			c := team.Cursor()
			for _, g := range []store.Granularity{store.Day, store.Hour} {
				letter := usageLetter(g)
				for k, _ := c.Seek([]byte{letter}); k != nil && k[0] == letter; k, _ = c.Next() {
					if len(k) < 9 {
						continue
					}
					start := time.Unix(int64(binary.BigEndian.Uint64(k[1:9])), 0)
					if store.UsageKept(g, start, now) || start.After(now) {
						break // later keys start later still
					}
					drop = append(drop, bytes.Clone(k))
				}
			}
			// Deleting through the cursor while walking skips keys; the
			// keys are collected first.
			for _, k := range drop {
				if err := team.Delete(k); err != nil {
					return err
				}
			}
			if k, _ := team.Cursor().First(); k == nil {
				emptied = append(emptied, bytes.Clone(name))
			}
			return nil
		})
		if err != nil {
			return err
		}
		for _, name := range emptied {
			if err := root.DeleteBucket(name); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("prune usage: %w", err)
	}
	return nil
}
