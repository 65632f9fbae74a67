package bolt

// Looking at a store file before opening it for writing: a damaged file is
// refused with a reason instead of being mapped (a truncated file would
// fault with SIGBUS when bbolt reads a page past its end), and the caller
// learns whether the file holds anything before anything is written to it.

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"io/fs"
	"os"
	"time"

	bbolt "go.etcd.io/bbolt"
)

// ErrDamaged is returned (wrapped, with the reason) by Inspect and Open when
// the file is not a complete bbolt database.
var ErrDamaged = errors.New("damaged")

// Contents is what Inspect found at a store path.
type Contents int

const (
	// Missing: there is no file.
	Missing Contents = iota
	// Empty: the file has no bytes (Open would initialise it).
	Empty
	// Fresh: a valid database holding no key and no singleton (no pepper):
	// nothing is sealed with a master key yet, as after a first start that
	// was interrupted before it stored anything.
	Fresh
	// HoldsData: keys or singletons are stored; its secrets are sealed with
	// the master key it was created with.
	HoldsData
)

// The layout of bbolt's meta pages (go.etcd.io/bbolt internal/common: Page
// and Meta), which the file check reads without mapping the file. bbolt
// writes them in the machine's byte order.
const (
	pageHeaderSize = 16 // id u64, flags u16, count u16, overflow u32
	metaMagic      = 0xED0CDAED
	metaVersion    = 2
	metaSumLen     = 56 // the bytes of Meta before its checksum
	metaLen        = metaSumLen + 8
	minPages       = 4 // two meta pages, a freelist and a root leaf
)

type metaPage struct {
	pageSize uint32
	freelist uint64 // the free-page list's page, or noFreelist
	pgid     uint64 // high-water mark: pages the file must hold
	txid     uint64
}

// noFreelist is bbolt's freelist page number in a meta page whose commit
// did not write the free-page list (Options.NoFreelistSync): whoever opens
// that file finds the free pages by walking every page (bolt.go, Open).
const noFreelist = ^uint64(0)

// readMeta decodes the meta of the page at off; ok is false unless magic,
// version and checksum hold.
func readMeta(f io.ReaderAt, off int64) (m metaPage, ok bool) {
	b := make([]byte, pageHeaderSize+metaLen)
	if _, err := f.ReadAt(b, off); err != nil {
		return m, false
	}
	b = b[pageHeaderSize:]
	ne := binary.NativeEndian
	if ne.Uint32(b[0:]) != metaMagic || ne.Uint32(b[4:]) != metaVersion {
		return m, false
	}
	h := fnv.New64a()
	h.Write(b[:metaSumLen])
	if h.Sum64() != ne.Uint64(b[metaSumLen:]) {
		return m, false
	}
	m = metaPage{pageSize: ne.Uint32(b[8:]), freelist: ne.Uint64(b[32:]), pgid: ne.Uint64(b[40:]), txid: ne.Uint64(b[48:])}
	return m, m.pageSize >= 512 && m.pageSize&(m.pageSize-1) == 0
}

// damaged is the error for a store file that cannot be read, why in reason.
func damaged(path string, reason error) error {
	return fmt.Errorf("store file %s is %w (%v)", path, ErrDamaged, reason)
}

// checkFile refuses a file bbolt could not map safely: shorter than four
// pages, with no valid meta page, or shorter than its newest valid meta page
// says, and returns the newest valid meta page. One damaged meta page is
// accepted, as bbolt does: it is what a crash during a commit's last write
// leaves, and the other one is intact.
func checkFile(f *os.File, size int64) (metaPage, error) {
	pageSize := int64(os.Getpagesize()) // bbolt's guess when meta 0 is bad
	m0, ok0 := readMeta(f, 0)
	if ok0 {
		pageSize = int64(m0.pageSize)
	}
	if size < minPages*pageSize {
		return metaPage{}, fmt.Errorf("%d bytes, shorter than the %d pages of %d bytes of an empty store", size, minPages, pageSize)
	}
	m1, ok1 := readMeta(f, pageSize)
	var m metaPage
	switch {
	case ok0 && ok1:
		m = m0
		if m1.txid > m0.txid {
			m = m1
		}
	case ok0:
		m = m0
	case ok1:
		m = m1
	default:
		return metaPage{}, errors.New("no valid meta page")
	}
	if need := int64(m.pgid) * pageSize; size < need {
		return metaPage{}, fmt.Errorf("truncated to %d bytes, its meta page says %d", size, need)
	}
	return m, nil
}

// fileContents is Missing or Empty, or Fresh for a file whose meta pages
// check out, with the newest of them (what it holds is left to the caller
// to read).
func fileContents(path string) (Contents, metaPage, error) {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return Missing, metaPage{}, nil
	}
	if err != nil {
		return 0, metaPage{}, fmt.Errorf("open store %s: %w", path, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return 0, metaPage{}, fmt.Errorf("open store %s: %w", path, err)
	}
	if fi.Size() == 0 {
		return Empty, metaPage{}, nil
	}
	m, err := checkFile(f, fi.Size())
	if err != nil {
		return 0, metaPage{}, damaged(path, err)
	}
	return Fresh, m, nil
}

// Inspect reports what the store file at path holds without writing to it:
// the file is checked before bbolt maps it, then opened read-only (waiting
// at most lockTimeout for another process's lock; zero or negative means
// DefaultLockTimeout). Errors wrap ErrDamaged or ErrLocked and name path.
func Inspect(path string, lockTimeout time.Duration) (Contents, error) {
	if lockTimeout <= 0 {
		lockTimeout = DefaultLockTimeout
	}
	if c, _, err := fileContents(path); err != nil || c != Fresh {
		return c, err
	}
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{ReadOnly: true, Timeout: lockTimeout})
	if errors.Is(err, bbolt.ErrTimeout) {
		return 0, fmt.Errorf("store file %s is %w (gave up waiting for its lock after %v)", path, ErrLocked, lockTimeout)
	}
	if err != nil {
		return 0, damaged(path, err)
	}
	defer db.Close()
	contents := Fresh
	err = db.View(func(tx *bbolt.Tx) (err error) {
		// bbolt panics on a page that is not what the tree says it is;
		// beyond the meta pages that is damage too, not a crash of serve.
		defer func() {
			if r := recover(); r != nil {
				err = fmt.Errorf("%v", r)
			}
		}()
		for _, name := range [][]byte{bucketKeys, bucketSingletons} {
			if b := tx.Bucket(name); b != nil {
				if k, _ := b.Cursor().First(); k != nil {
					contents = HoldsData
				}
			}
		}
		return nil
	})
	if err != nil {
		return 0, damaged(path, err)
	}
	return contents, nil
}

// Check is the full consistency check of the store file at path (every
// page reachable, none both used and free, keys in order): the file check of
// Inspect first, then bbolt's own check in a read-only transaction. It
// reads every page, so it belongs to `keygate store check`, not to every
// start. problems is empty when the file is sound; err is for a file that
// could not be checked at all (missing, damaged, locked).
func Check(path string, lockTimeout time.Duration) (problems []error, err error) {
	switch c, _, err := fileContents(path); {
	case err != nil:
		return nil, err
	case c == Missing || c == Empty:
		return nil, fmt.Errorf("store file %s is %s", path, map[Contents]string{Missing: "missing", Empty: "empty"}[c])
	}
	if lockTimeout <= 0 {
		lockTimeout = DefaultLockTimeout
	}
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{ReadOnly: true, Timeout: lockTimeout})
	if errors.Is(err, bbolt.ErrTimeout) {
		return nil, fmt.Errorf("store file %s is %w (gave up waiting for its lock after %v)", path, ErrLocked, lockTimeout)
	}
	if err != nil {
		return nil, damaged(path, err)
	}
	defer db.Close()
	err = db.View(func(tx *bbolt.Tx) error {
		problems = pageProblems(tx)
		return nil
	})
	return problems, err
}

// pageProblems is what bbolt's own check finds wrong in tx's view of the
// file.
func pageProblems(tx *bbolt.Tx) []error {
	var problems []error
	for e := range tx.Check() {
		problems = append(problems, e)
	}
	return problems
}
