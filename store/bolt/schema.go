package bolt

// Schema versions and migrations of the file (issue 15 item 5).
//
//	meta "schema"   the layout's version, a decimal number
//	meta "formats"  JSON array of the record formats (store.Format) the file
//	                may hold; from version 2
//
// Open reads both in a read transaction first: a file of a newer version, or
// one that may hold a format this build cannot read, is refused without a
// byte written, and a file that is up to date is not written at all. An
// older file is migrated by running the steps below in order, each from
// version N to N+1, all in Open's one write transaction with the new
// version: bbolt commits a transaction whole or not at all, so a crash or a
// failing step leaves the file at its old version, untouched, and the next
// Open starts over.
//
// A keygate of version 1 compares the version for equality, so it refuses a
// version-2 file: that is what makes the formats record safe, since a
// version-1 binary would not read it.

import (
	"encoding/json"
	"fmt"
	"slices"
	"strconv"

	bbolt "go.etcd.io/bbolt"

	"github.com/keygate/keygate/store"
)

// schemaVersion is the layout this build writes. Bump it with a migration
// below when the layout changes; a new record format within a layout is a
// store.Format instead (no bump needed: the formats record guards it).
const schemaVersion = 2

// maxKnownVersion is the newest version this build reads: schemaVersion
// plus the levels of store.SchemaRaiser it knows (version 3: read-only
// admin keys and management sessions, sessions.go). Open leaves a file of
// version 2 at 2; RaiseSchema raises it when such a record is first
// written, so a file that never holds one still opens in the release
// before.
// Version 4 (store.SchemaLevelKeyPolicy): key policies and SUSPENDED
// status entries, which a version-3 keygate would ignore (issuing tokens
// to a suspended, expired or restricted key).
const maxKnownVersion = schemaVersion + store.SchemaLevelKeyPolicy

var metaFormats = []byte("formats")

// migration moves a file from version from to from+1 inside tx.
type migration struct {
	from int
	what string
	run  func(tx *bbolt.Tx) error
}

// migrations are every step, in order. A new file starts as an empty
// version 1 and runs them all, so every step also runs on every new store.
var migrations = []migration{
	{1, "build the secret index and the deny list's expiry index", migrate1to2},
}

// migrateHook, when set (tests), runs after each step inside the
// transaction; an error aborts the migration like a failing step.
var migrateHook func(from int) error

// v1Buckets are the buckets of a version-1 file.
var v1Buckets = [][]byte{bucketKeys, bucketTeams, bucketSingletons, bucketSigning, bucketStatus, bucketDeny, bucketAudit, bucketAuditTeams}

// migrate1to2: version 1 built the secret index and the deny list's expiry
// index at every Open of a file that lacked them (files written before they
// existed). Version 2 is a file that has both, and a formats record: the
// indices are built here, once, and Open no longer looks for them.
func migrate1to2(tx *bbolt.Tx) error {
	if err := buildSecretIndex(tx); err != nil {
		return err
	}
	return indexDenyList(tx)
}

// currentBuckets are the buckets of a file of schemaVersion.
func currentBuckets() [][]byte {
	return append(slices.Clone(v1Buckets), bucketSecrets, bucketDenyExpiry)
}

// schemaState is what Open reads of a file before deciding to write.
type schemaState struct {
	version int // 0: a new file (no version recorded)
	formats []store.Format
}

// readSchema reads the version and formats and refuses what this build
// cannot open: a newer version, or formats it cannot read.
func readSchema(tx *bbolt.Tx) (schemaState, error) {
	var st schemaState
	meta := tx.Bucket(bucketMeta)
	if meta == nil {
		return st, nil
	}
	v := meta.Get(metaSchema)
	if v == nil {
		return st, nil
	}
	n, err := strconv.Atoi(string(v))
	if err != nil || n < 1 {
		return st, fmt.Errorf("schema version %q is not a version number (store file damaged?)", v)
	}
	if n > maxKnownVersion {
		return st, &store.SchemaError{Store: n, Known: maxKnownVersion}
	}
	st.version = n
	if f := meta.Get(metaFormats); f != nil {
		if err := json.Unmarshal(f, &st.formats); err != nil {
			return st, fmt.Errorf("formats record: %w (store file damaged?)", err)
		}
	}
	if missing := store.MissingFormats(st.formats, store.ReadableFormats); len(missing) > 0 {
		return st, &store.FormatError{Missing: missing}
	}
	return st, nil
}

// upToDate reports whether a file needs no write at Open: the current
// version, every bucket, and every format this build reads recorded (so
// that Writable can say yes without a write).
func upToDate(tx *bbolt.Tx, st schemaState) bool {
	if st.version < schemaVersion {
		return false
	}
	for _, name := range currentBuckets() {
		if tx.Bucket(name) == nil {
			return false
		}
	}
	return len(store.MissingFormats(store.ReadableFormats, st.formats)) == 0
}

// setUp creates or migrates the file to schemaVersion inside tx and records
// the formats it may hold from now on: those it held and those this build
// reads (every one of them may be written from here on: one process holds
// the file, and a keygate that cannot read one refuses the file).
func setUp(tx *bbolt.Tx) ([]store.Format, error) {
	st, err := readSchema(tx)
	if err != nil {
		return nil, err
	}
	meta, err := tx.CreateBucketIfNotExists(bucketMeta)
	if err != nil {
		return nil, err
	}
	if st.version == 0 {
		st.version = 1
	}
	for _, name := range v1Buckets {
		if _, err := tx.CreateBucketIfNotExists(name); err != nil {
			return nil, err
		}
	}
	for _, m := range migrations {
		if m.from < st.version {
			continue
		}
		if err := m.run(tx); err != nil {
			return nil, fmt.Errorf("migrate schema %d to %d (%s): %w", m.from, m.from+1, m.what, err)
		}
		if migrateHook != nil {
			if err := migrateHook(m.from); err != nil {
				return nil, fmt.Errorf("migrate schema %d to %d (%s): %w", m.from, m.from+1, m.what, err)
			}
		}
		st.version = m.from + 1
	}
	if st.version < schemaVersion {
		return nil, fmt.Errorf("no migration from schema %d to %d", st.version, schemaVersion)
	}
	for _, name := range currentBuckets() {
		if tx.Bucket(name) == nil {
			return nil, fmt.Errorf("schema %d file lacks bucket %s (store file damaged?)", schemaVersion, name)
		}
	}
	// A raised level (version above schemaVersion) stays as it is.
	if err := meta.Put(metaSchema, []byte(strconv.Itoa(st.version))); err != nil {
		return nil, err
	}
	formats := append([]store.Format{}, st.formats...)
	for _, f := range store.ReadableFormats {
		if !slices.Contains(formats, f) {
			formats = append(formats, f)
		}
	}
	slices.Sort(formats)
	b, err := json.Marshal(formats)
	if err != nil {
		return nil, err
	}
	if err := meta.Put(metaFormats, b); err != nil {
		return nil, err
	}
	return formats, nil
}

// Writable implements store.FormatGate: the formats the file records it may
// hold, which Open made every format this build reads.
func (s *Store) Writable(f store.Format) bool { return slices.Contains(s.formats, f) }

// SchemaVersion is the version Open migrates a file to (a file may be
// above it, up to MaxSchemaVersion, once RaiseSchema raised it).
func SchemaVersion() int { return schemaVersion }

// MaxSchemaVersion is the newest file version this build opens.
func MaxSchemaVersion() int { return maxKnownVersion }
