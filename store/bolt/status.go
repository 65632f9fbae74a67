package bolt

import (
	"context"
	"encoding/binary"
	"fmt"
	"time"

	bbolt "go.etcd.io/bbolt"

	"github.com/keygate/keygate/store"
)

var statusBitsKey = []byte("bits")

// NextStatusIndex implements store.Store with the status bucket's sequence,
// which bbolt increments inside the write transaction: unique and never
// reused, even across restarts.
func (s *Store) NextStatusIndex(ctx context.Context) (int64, error) {
	var idx uint64
	err := s.update(ctx, func(tx *bbolt.Tx) error {
		var err error
		idx, err = tx.Bucket(bucketStatus).NextSequence()
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("next status index: %w", err)
	}
	return int64(idx), nil
}

// RevokeStatus implements store.Store: it sets bit idx (LSB first) of the
// stored bitmap, growing it as needed.
func (s *Store) RevokeStatus(ctx context.Context, idx int64) error {
	if idx < 0 {
		return fmt.Errorf("revoke status %d: %w: negative index", idx, store.ErrInvalid)
	}
	err := s.update(ctx, func(tx *bbolt.Tx) error {
		b := tx.Bucket(bucketStatus)
		cur := b.Get(statusBitsKey)
		byteIdx := int(idx / 8)
		bits := make([]byte, max(len(cur), byteIdx+1))
		copy(bits, cur)
		bits[byteIdx] |= 1 << (idx % 8)
		return b.Put(statusBitsKey, bits)
	})
	if err != nil {
		return fmt.Errorf("revoke status %d: %w", idx, err)
	}
	return nil
}

// StatusList implements store.Store.
func (s *Store) StatusList(ctx context.Context) (store.StatusList, error) {
	var out store.StatusList
	err := s.view(ctx, func(tx *bbolt.Tx) error {
		b := tx.Bucket(bucketStatus)
		out.Revoked = append([]byte{}, b.Get(statusBitsKey)...)
		out.Allocated = int64(b.Sequence())
		return nil
	})
	if err != nil {
		return store.StatusList{}, fmt.Errorf("status list: %w", err)
	}
	return out, nil
}

// DenyToken implements store.Store. Expired entries are pruned in the same
// transaction, so the bucket holds only tokens that could still be used.
func (s *Store) DenyToken(ctx context.Context, jti string, until time.Time) error {
	if jti == "" {
		return fmt.Errorf("deny token: %w: empty jti", store.ErrInvalid)
	}
	now := time.Now().UnixMilli()
	err := s.update(ctx, func(tx *bbolt.Tx) error {
		b := tx.Bucket(bucketDeny)
		var expired [][]byte
		err := b.ForEach(func(k, v []byte) error {
			if len(v) == 8 && int64(binary.BigEndian.Uint64(v)) <= now {
				expired = append(expired, append([]byte{}, k...))
			}
			return nil
		})
		if err != nil {
			return err
		}
		for _, k := range expired {
			if err := b.Delete(k); err != nil {
				return err
			}
		}
		if until.UnixMilli() <= now {
			return nil // already expired: nothing to deny
		}
		var v [8]byte
		binary.BigEndian.PutUint64(v[:], uint64(until.UnixMilli()))
		return b.Put([]byte(jti), v[:])
	})
	if err != nil {
		return fmt.Errorf("deny token: %w", err)
	}
	return nil
}

// TokenDenied implements store.Store.
func (s *Store) TokenDenied(ctx context.Context, jti string) (bool, error) {
	var denied bool
	err := s.view(ctx, func(tx *bbolt.Tx) error {
		v := tx.Bucket(bucketDeny).Get([]byte(jti))
		denied = len(v) == 8 && int64(binary.BigEndian.Uint64(v)) > time.Now().UnixMilli()
		return nil
	})
	if err != nil {
		return false, fmt.Errorf("check deny list: %w", err)
	}
	return denied, nil
}
