package bolt

// What `keygate store export` needs of the embedded store: opening a file
// without writing to it, and store.Exporter.

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"time"

	bbolt "go.etcd.io/bbolt"

	"github.com/keygate/keygate/store"
)

var _ store.Exporter = (*Store)(nil)

// OpenReadOnly opens the existing store file at path for reading only: it
// creates nothing, writes nothing (not even the schema record or the
// indexes Open adds to an older file) and shares the file lock with other
// readers, so it fails with ErrLocked while a serve has the file open. A
// missing or empty file is an error naming path (wrapping fs.ErrNotExist),
// a damaged one wraps ErrDamaged, one of another schema is refused. Every
// write on the returned store fails.
func OpenReadOnly(path string, opts ...Options) (*Store, error) {
	var o Options
	if len(opts) > 1 {
		return nil, fmt.Errorf("open store %s: got %d Options, want at most one", path, len(opts))
	}
	if len(opts) == 1 {
		o = opts[0]
	}
	timeout := o.LockTimeout
	if timeout <= 0 {
		timeout = DefaultLockTimeout
	}
	switch c, _, err := fileContents(path); {
	case err != nil:
		return nil, err
	case c == Missing:
		return nil, fmt.Errorf("store file %s: %w", path, fs.ErrNotExist)
	case c == Empty:
		return nil, fmt.Errorf("store file %s is empty: %w", path, fs.ErrNotExist)
	}
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{ReadOnly: true, Timeout: timeout})
	if errors.Is(err, bbolt.ErrTimeout) {
		return nil, fmt.Errorf("open store %s: %w (gave up waiting for the file lock after %v)", path, ErrLocked, timeout)
	}
	if err != nil {
		return nil, damaged(path, err)
	}
	err = db.View(func(tx *bbolt.Tx) error {
		if tx.Bucket(bucketMeta) == nil {
			return errors.New("no meta bucket: not a keygate store")
		}
		// A newer or unreadable file is refused (schema.go); an older
		// one is read as it is, unmigrated: what export reads has not
		// changed since version 1.
		if st, err := readSchema(tx); err != nil {
			return err
		} else if st.version == 0 {
			return errors.New("no schema version: not a keygate store")
		}
		// The buckets Open creates: a file that lacks one was never
		// opened by a keygate that reads it, and reading would panic.
		for _, name := range [][]byte{bucketKeys, bucketTeams, bucketSingletons, bucketSigning, bucketStatus, bucketDeny, bucketAudit, bucketAuditTeams} {
			if tx.Bucket(name) == nil {
				return fmt.Errorf("bucket %s missing", name)
			}
		}
		return nil
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	return &Store{db: db, path: path, forEachBatch: defaultForEachBatch, cache: newKeyCache(-1)}, nil
}

// Singletons implements store.Exporter.
func (s *Store) Singletons(ctx context.Context) (map[string][]byte, error) {
	out := map[string][]byte{}
	err := s.view(ctx, func(tx *bbolt.Tx) error {
		return tx.Bucket(bucketSingletons).ForEach(func(k, v []byte) error {
			out[string(k)] = bytes.Clone(v)
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("read singletons: %w", err)
	}
	return out, nil
}

// ForEachDenied implements store.Exporter: the entries are read in one
// read transaction (the list holds only live tokens, so it is short), fn
// runs after it.
func (s *Store) ForEachDenied(ctx context.Context, now time.Time, fn func(jti string, until time.Time) error) error {
	type entry struct {
		jti   string
		until time.Time
	}
	var entries []entry
	err := s.view(ctx, func(tx *bbolt.Tx) error {
		return tx.Bucket(bucketDeny).ForEach(func(k, v []byte) error {
			if len(v) != 8 {
				return nil
			}
			until := time.UnixMilli(int64(binary.BigEndian.Uint64(v))).UTC()
			if until.After(now) {
				entries = append(entries, entry{string(k), until})
			}
			return nil
		})
	})
	if err != nil {
		return fmt.Errorf("read deny list: %w", err)
	}
	for _, e := range entries {
		if err := fn(e.jti, e.until); err != nil {
			return err
		}
	}
	return nil
}

// ForEachAuditEvent implements store.Exporter: the event bucket in
// sequence order (every team's trail in its order), read in batches so fn
// runs outside any transaction.
func (s *Store) ForEachAuditEvent(ctx context.Context, fn func(store.AuditEvent) error) error {
	var after []byte
	for {
		var batch []store.AuditEvent
		err := s.view(ctx, func(tx *bbolt.Tx) error {
			c := tx.Bucket(bucketAudit).Cursor()
			k, v := c.First()
			if after != nil {
				k, v = c.Seek(after)
				if bytes.Equal(k, after) {
					k, v = c.Next()
				}
			}
			for ; k != nil && len(batch) < s.forEachBatch; k, v = c.Next() {
				ev, err := store.DecodeAuditEvent(v, int64(binary.BigEndian.Uint64(k)))
				if err != nil {
					return err
				}
				batch = append(batch, ev)
				after = bytes.Clone(k)
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("read audit events: %w", err)
		}
		for _, ev := range batch {
			if err := fn(ev); err != nil {
				return err
			}
		}
		if len(batch) < s.forEachBatch {
			return nil
		}
	}
}

// ForEachWebhookState implements store.Exporter. The bucket exists only
// once a state was saved.
func (s *Store) ForEachWebhookState(ctx context.Context, fn func(string, store.WebhookState) error) error {
	states := map[string]store.WebhookState{}
	err := s.view(ctx, func(tx *bbolt.Tx) error {
		b := tx.Bucket(bucketWebhooks)
		if b == nil {
			return nil
		}
		return b.ForEach(func(k, v []byte) error {
			st, err := decodeWebhookState(v)
			if err != nil {
				return fmt.Errorf("webhook state %s: %w", k, err)
			}
			states[string(k)] = st
			return nil
		})
	})
	if err != nil {
		return fmt.Errorf("read webhook states: %w", err)
	}
	for ep, st := range states {
		if err := fn(ep, st); err != nil {
			return err
		}
	}
	return nil
}
