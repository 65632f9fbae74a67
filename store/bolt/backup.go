package bolt

// Online backup: a consistent copy of the store file taken while keygate
// runs (server/backup.go serves it at GET /v1/store/backup). Restoring is
// copying the file into a data directory as keygate.db and starting keygate
// with the master key that sealed it (README, "Backup and restore").

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"

	bbolt "go.etcd.io/bbolt"
)

// Backup returns a consistent copy of the store as of one moment: every
// write committed before that moment and none after, across all buckets
// (keys, the status list, the pepper, signing keys...). The copy is a
// complete bbolt file that Open accepts as it is.
//
// The copy is spooled to a temporary file in the store's own directory
// (same file system, same protection as the store) and the read
// transaction ends as soon as it is written: a bbolt read transaction that
// stays open holds the lock the store needs to grow its file, so streaming
// straight to a slow reader would stall every write that needs a bigger
// file for as long as the reader takes. The temporary file is unlinked at
// once where the system allows it, so nothing is left behind by a crash;
// Close removes it otherwise. The caller reads size bytes from r and must
// Close it.
func (s *Store) Backup(ctx context.Context) (r io.ReadCloser, size int64, err error) {
	f, err := os.CreateTemp(filepath.Dir(s.path), ".keygate.db.backup-*")
	if err != nil {
		return nil, 0, fmt.Errorf("backup store %s: %w", s.path, err)
	}
	sp := &spool{File: f}
	if os.Remove(f.Name()) != nil {
		sp.removeOnClose = true // Windows: an open file cannot be removed
	}
	defer func() {
		if err != nil {
			sp.Close()
		}
	}()
	err = s.view(ctx, func(tx *bbolt.Tx) error {
		n, err := tx.WriteTo(f)
		size = n
		return err
	})
	if err == nil {
		// The copy is read back at once, but a copy that cannot be written
		// to disk should fail here rather than as a short read later.
		err = f.Sync()
	}
	if err == nil {
		_, err = f.Seek(0, io.SeekStart)
	}
	if err != nil {
		return nil, 0, fmt.Errorf("backup store %s: %w", s.path, err)
	}
	return sp, size, nil
}

// BackupSize is the size in bytes of a Backup taken now (with no write in
// between), without taking it.
func (s *Store) BackupSize(ctx context.Context) (size int64, err error) {
	err = s.view(ctx, func(tx *bbolt.Tx) error {
		size = tx.Size()
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("backup size of store %s: %w", s.path, err)
	}
	return size, nil
}

// spool is Backup's temporary copy.
type spool struct {
	*os.File
	removeOnClose bool
}

func (s *spool) Close() error {
	err := s.File.Close()
	if s.removeOnClose {
		if rerr := os.Remove(s.Name()); err == nil {
			err = rerr
		}
	}
	return err
}
