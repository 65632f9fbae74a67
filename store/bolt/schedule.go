package bolt

import (
	"context"
	"encoding/binary"
	"fmt"
	"time"

	"go.etcd.io/bbolt"

	"github.com/keygate/keygate/store"
)

// bucketStatusChecks holds the store.StatusSchedule: at (unix ns, 8 bytes
// big-endian) ‖ client ID → "". Ordered by time, so what is due is the
// start of the bucket, read without touching the rest. It is made by the
// first entry (a file without it has nothing scheduled), so an older
// binary's file needs no migration.
var bucketStatusChecks = []byte("status_checks")

// statusCheckKey is c's key in bucketStatusChecks. Times before 1970 sort
// as 1970: a due entry either way.
func statusCheckKey(clientID string, at time.Time) []byte {
	b := make([]byte, 8, 8+len(clientID))
	binary.BigEndian.PutUint64(b, uint64(max(at.UnixNano(), 0)))
	return append(b, clientID...)
}

// ScheduleStatusCheck implements store.StatusSchedule.
func (s *Store) ScheduleStatusCheck(ctx context.Context, clientID string, at time.Time) error {
	if clientID == "" {
		return fmt.Errorf("schedule status check: %w: empty client id", store.ErrInvalid)
	}
	err := s.update(ctx, func(tx *bbolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(bucketStatusChecks)
		if err != nil {
			return err
		}
		return b.Put(statusCheckKey(clientID, at), nil)
	})
	if err != nil {
		return fmt.Errorf("schedule status check of key %s: %w", clientID, err)
	}
	return nil
}

// DueStatusChecks implements store.StatusSchedule.
func (s *Store) DueStatusChecks(ctx context.Context, now time.Time, limit int) ([]store.StatusCheck, error) {
	cut := uint64(max(now.UnixNano(), 0))
	var due []store.StatusCheck
	err := s.view(ctx, func(tx *bbolt.Tx) error {
		due = due[:0]
		b := tx.Bucket(bucketStatusChecks)
		if b == nil {
			return nil
		}
		c := b.Cursor()
		for k, _ := c.First(); k != nil && len(due) < limit; k, _ = c.Next() {
			if len(k) <= 8 {
				continue // not an entry this package writes
			}
			at := binary.BigEndian.Uint64(k[:8])
			if at > cut {
				break
			}
			due = append(due, store.StatusCheck{ClientID: string(k[8:]), At: time.Unix(0, int64(at)).UTC()})
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read due status checks: %w", err)
	}
	return due, nil
}

// DropStatusCheck implements store.StatusSchedule.
func (s *Store) DropStatusCheck(ctx context.Context, c store.StatusCheck) error {
	err := s.update(ctx, func(tx *bbolt.Tx) error {
		b := tx.Bucket(bucketStatusChecks)
		if b == nil {
			return nil
		}
		return b.Delete(statusCheckKey(c.ClientID, c.At))
	})
	if err != nil {
		return fmt.Errorf("drop status check of key %s: %w", c.ClientID, err)
	}
	return nil
}
