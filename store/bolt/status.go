package bolt

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"math/bits"
	"time"

	bbolt "go.etcd.io/bbolt"

	"github.com/keygate/keygate/store"
)

// The status bucket holds two arrays: "bits", the 1-bit bitmap of revoked
// indices (LSB first) every keygate since status lists writes, and
// "statuses", the 2-bit entries of store.StatusList (the draft's layout),
// which SUSPENDED needs. A revocation writes both in its transaction, so a
// keygate of the release before (which reads only the bitmap) still sees
// every INVALID index; suspension writes only the 2-bit array; StatusList
// reads an index whose bit is set as INVALID whatever its entry. No file
// needs migrating.
var (
	statusBitsKey = []byte("bits")
	statusesKey   = []byte("statuses")
)

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

// RevokeStatus implements store.Store: bit idx of the bitmap and entry idx
// of the 2-bit array, in one transaction.
func (s *Store) RevokeStatus(ctx context.Context, idx int64) error {
	if idx < 0 || idx > store.MaxStatusIndex {
		return fmt.Errorf("revoke status %d: %w: index out of range", idx, store.ErrInvalid)
	}
	err := s.update(ctx, func(tx *bbolt.Tx) error {
		b := tx.Bucket(bucketStatus)
		bits := grown(b.Get(statusBitsKey), int(idx/8)+1)
		bits[idx/8] |= 1 << (idx % 8)
		if err := b.Put(statusBitsKey, bits); err != nil {
			return err
		}
		return b.Put(statusesKey, withEntry(b.Get(statusesKey), idx, store.StatusInvalid))
	})
	if err != nil {
		return fmt.Errorf("revoke status %d: %w", idx, err)
	}
	return nil
}

// SetStatus implements store.Store: one read-modify-write of the 2-bit
// array inside the transaction, leaving an INVALID entry (or a set bit of
// the bitmap) as it is.
func (s *Store) SetStatus(ctx context.Context, idx int64, st store.Status) error {
	if idx < 1 || idx > store.MaxStatusIndex || (st != store.StatusValid && st != store.StatusSuspended) {
		return fmt.Errorf("set status %d to %d: %w", idx, st, store.ErrInvalid)
	}
	err := s.update(ctx, func(tx *bbolt.Tx) error {
		b := tx.Bucket(bucketStatus)
		l := store.StatusList{Statuses: b.Get(statusesKey)}
		if bits := b.Get(statusBitsKey); int(idx/8) < len(bits) && bits[idx/8]>>(idx%8)&1 == 1 || l.Entry(idx) == store.StatusInvalid {
			return nil // INVALID is final
		}
		if l.Entry(idx) == st {
			return nil
		}
		return b.Put(statusesKey, withEntry(l.Statuses, idx, st))
	})
	if err != nil {
		return fmt.Errorf("set status %d: %w", idx, err)
	}
	return nil
}

// grown is a copy of cur at least n bytes long (bbolt's values are read-only
// and live only as long as the transaction).
func grown(cur []byte, n int) []byte {
	out := make([]byte, max(len(cur), n))
	copy(out, cur)
	return out
}

// withEntry is a copy of the 2-bit array cur with entry idx set whole to st.
func withEntry(cur []byte, idx int64, st store.Status) []byte {
	out := grown(cur, int(idx/4)+1)
	shift := uint(idx%4) * 2
	out[idx/4] = out[idx/4]&^(3<<shift) | byte(st)<<shift
	return out
}

// pokeStatus writes entry idx as v (any 2-bit value, 3 included) with none
// of SetStatus's rules: for the layout test of storetest.StatusLayout.
func (s *Store) pokeStatus(idx int64, v uint8) error {
	return s.update(context.Background(), func(tx *bbolt.Tx) error {
		b := tx.Bucket(bucketStatus)
		return b.Put(statusesKey, withEntry(b.Get(statusesKey), idx, store.Status(v&3)))
	})
}

// StatusList implements store.Store: the 2-bit array with every index the
// bitmap revokes read as INVALID.
func (s *Store) StatusList(ctx context.Context) (store.StatusList, error) {
	var out store.StatusList
	err := s.view(ctx, func(tx *bbolt.Tx) error {
		b := tx.Bucket(bucketStatus)
		out.Statuses = mergeRevoked(b.Get(statusesKey), b.Get(statusBitsKey))
		out.Allocated = int64(b.Sequence())
		return nil
	})
	if err != nil {
		return store.StatusList{}, fmt.Errorf("status list: %w", err)
	}
	return out, nil
}

// mergeRevoked is a copy of the 2-bit array statuses with every index set
// in the 1-bit bitmap revoked made INVALID.
func mergeRevoked(statuses, revoked []byte) []byte {
	out := grown(statuses, len(revoked)*2)
	for i, b := range revoked {
		for ; b != 0; b &= b - 1 {
			idx := int64(i)*8 + int64(bits.TrailingZeros8(b))
			shift := uint(idx%4) * 2
			out[idx/4] = out[idx/4]&^(3<<shift) | byte(store.StatusInvalid)<<shift
		}
	}
	return out
}

// DenyToken implements store.Store: two puts (the entry and its expiry
// index), O(log n) in the list's size; expired entries are left to
// PruneDeniedTokens, outside the request path.
func (s *Store) DenyToken(ctx context.Context, jti string, until time.Time) error {
	if jti == "" {
		return fmt.Errorf("deny token: %w: empty jti", store.ErrInvalid)
	}
	if until.UnixMilli() <= time.Now().UnixMilli() {
		return nil // already expired: nothing to deny
	}
	err := s.update(ctx, func(tx *bbolt.Tx) error {
		deny, index := tx.Bucket(bucketDeny), tx.Bucket(bucketDenyExpiry)
		if old := deny.Get([]byte(jti)); len(old) == 8 {
			// Denied before with another expiry: its index entry goes.
			if err := index.Delete(denyIndexKey(old, jti)); err != nil {
				return err
			}
		}
		var v [8]byte
		binary.BigEndian.PutUint64(v[:], uint64(until.UnixMilli()))
		if err := deny.Put([]byte(jti), v[:]); err != nil {
			return err
		}
		return index.Put(denyIndexKey(v[:], jti), nil)
	})
	if err != nil {
		return fmt.Errorf("deny token: %w", err)
	}
	return nil
}

// denyIndexKey is an entry's key in bucketDenyExpiry: its expiry as
// stored, then the jti.
func denyIndexKey(expiry []byte, jti string) []byte {
	return append(append(make([]byte, 0, 8+len(jti)), expiry...), jti...)
}

// PruneDeniedTokens implements store.Store: expired entries are the first
// ones of the expiry index, so a call reads only what it removes. Freed
// pages are reused by later writes, so the file stops growing once the
// list's size is steady.
func (s *Store) PruneDeniedTokens(ctx context.Context, now time.Time) (int, error) {
	cut := now.UnixMilli()
	n := 0
	err := s.update(ctx, func(tx *bbolt.Tx) error {
		n = 0
		deny, c := tx.Bucket(bucketDeny), tx.Bucket(bucketDenyExpiry).Cursor()
		for k, _ := c.First(); k != nil && n < store.MaxDenyPrune; k, _ = c.Next() {
			if len(k) < 8 || int64(binary.BigEndian.Uint64(k[:8])) > cut {
				break
			}
			jti := k[8:]
			// The entry goes only if it is the one indexed here (a jti
			// denied again later has a newer expiry and its own index key).
			if v := deny.Get(jti); bytes.Equal(v, k[:8]) {
				if err := deny.Delete(jti); err != nil {
					return err
				}
			}
			if err := c.Delete(); err != nil {
				return err
			}
			n++
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("prune deny list: %w", err)
	}
	return n, nil
}

// indexDenyList creates the expiry index, and fills it for a file written
// before the index existed (the migration to schema 2, schema.go) (its deny entries live at most a token
// lifetime, so the walk is short).
func indexDenyList(tx *bbolt.Tx) error {
	if tx.Bucket(bucketDenyExpiry) != nil {
		return nil
	}
	index, err := tx.CreateBucket(bucketDenyExpiry)
	if err != nil {
		return err
	}
	return tx.Bucket(bucketDeny).ForEach(func(k, v []byte) error {
		if len(v) != 8 {
			return nil
		}
		return index.Put(denyIndexKey(v, string(k)), nil)
	})
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
