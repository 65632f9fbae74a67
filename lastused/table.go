package lastused

import (
	"hash/maphash"
	"strings"
	"sync"
	"sync/atomic"
	"unsafe"
)

// The tracker's entries live in a table the garbage collector has nothing
// to follow in: each shard keeps its entries in slabs (arrays of entries
// that hold no pointer) and finds them through an index from a hash of the
// client ID to a slot number (no pointer either: hashindex.go). At a
// million keys in use the entries were a million objects of their own,
// with a pointer or two each and a string key apiece in a map: 40 % of
// serve's live objects, and a collector following them that took a fifth
// of serve's CPU and slowed everything else it shared the caches with
// (docs/scale.md).
//
// A slot is reused once its key is dropped. What makes that safe:
//   - Record and RecordFailure find an entry and count into it under its
//     shard's read lock, and a drop removes it under the write lock, so no
//     use lands in an entry after its key left the table;
//   - a dropped slot is freed only by a later flush, once the dirty list
//     (which a use just before the drop may have put it on) has been taken
//     past it and no usage waiting to be written names it.

const (
	tableShards = 256 // enough that two requests rarely meet on one lock
	slabSize    = 64  // entries per slab: about 11 KiB, so a tracker of ten keys stays small
)

// ref names a slot: its shard in the high half, its number plus one in the
// low half, so the zero ref names none.
type ref uint64

func makeRef(shard int, slot uint32) ref { return ref(uint64(shard)<<32 | uint64(slot+1)) }
func (r ref) shard() int                 { return int(r >> 32) }
func (r ref) slot() uint32               { return uint32(r) - 1 }

// inlineIDs is the longest client and team ID an entry keeps in itself: a
// generated client ID (32 bytes) and the longest team ID (64). Longer ones
// (an operator-named admin client ID) are kept in their shard's long map.
const inlineIDs = 96

// entry is one key's last use and uncollected usage. It holds no pointer
// (see above). Usage is counted only for team keys (admin keys have no
// team to report it to).
type entry struct {
	// What a use reads and writes comes first, the client ID's start
	// (which find compares) included: 77 bytes, so two cache lines at
	// most. At a million keys in use each line is likely a miss; spread
	// over the entry as they were, the same fields took three or four.

	// The client ID is ids[:idLen] and the team ID ids[idLen:idsLen], ids
	// being buf when idsLen ≤ inlineIDs.
	idLen, idsLen uint32
	used          atomic.Int64 // unix nanos of the latest use seen here
	// tokens and failures are counts not yet collected by a flush.
	tokens, failures atomic.Int64
	failedAt         atomic.Int64 // unix nanos of the latest failure seen here
	// queued: the entry is on the tracker's dirty list (or is the decoy,
	// which is never put there). Set by whoever pushes it (markDirty), with
	// next; cleared by the flush that takes it off, after reading next.
	queued atomic.Bool
	// collided: the client ID is in its shard's other map, not its index
	// (another key's ID has the same hash).
	collided bool
	buf      [inlineIDs]byte

	written atomic.Int64 // unix nanos of the latest use known to be stored
	// wroteAt is when that value was stored (by anyone, as far as we know),
	// the start of the coalescing window.
	wroteAt atomic.Int64

	serial uint64 // names the entry's key in pending usage (usageKey); new for every key a slot holds
	hash   uint64 // the client ID's hash in its shard's index
	next   ref    // the next entry on the dirty list (see queued)

	// Owned by the flush. waiting: in the heap of entries whose coalescing
	// window has yet to end. gone: dropped from the index, the slot not yet
	// free. batched: in this flush's last-use batch. pendingUses: entries of
	// the pending usage that name this slot (it is not freed before they are
	// written). parked: gone, with usage still pending, and on no list of
	// slots to free: the write that takes pendingUses to 0 lists it again
	// (Tracker.release).
	waiting, gone, batched, parked bool
	pendingUses                    int32
	// pendingAt is the place in the tracker's order of the latest usage
	// collected for this key (Tracker.flush's collect checks that it is
	// still this key's, of this hour, and unwritten before using it).
	pendingAt int
}

type slab [slabSize]entry

// shard is one part of the table, under its own lock.
type shard struct {
	mu sync.RWMutex
	// index maps a client ID's hash to its slot; other maps the client IDs
	// whose hash another key's holds (a 64-bit hash under a per-process
	// seed: in practice never); long keeps the IDs of slots too long for
	// their entry. All three under mu.
	index hashIndex
	other map[string]uint32
	long  map[uint32]string
	// slabs grows under mu and is replaced, never changed in place, so a
	// flush may read it without the lock.
	slabs atomic.Pointer[[]*slab]
	used  uint32   // slots handed out so far (under mu)
	free  []uint32 // freed slots to hand out again (under mu)
	_     [64]byte // no false sharing between shards' locks
}

// table is the tracker's entries by client ID.
type table struct {
	seed   maphash.Seed
	shards [tableShards]shard
}

func newTable() *table {
	return &table{seed: maphash.MakeSeed()}
}

// hash returns clientID's hash and shard.
func (t *table) hash(clientID string) (uint64, int) {
	h := maphash.String(t.seed, clientID)
	return h, int(h % tableShards)
}

// at is the entry r names. Safe without the shard's lock for a slot the
// caller knows to be in use: slabs are never freed or moved.
func (t *table) at(r ref) *entry { return t.shards[r.shard()].entry(r.slot()) }

// ids is e's client ID and team ID joined; s's lock (either) or the flush
// ownership of a slot in use makes it stable. The string is over the
// table's memory: copy it to keep it.
func (s *shard) ids(e *entry, slot uint32) string {
	if e.idsLen <= inlineIDs {
		return unsafe.String(&e.buf[0], int(e.idsLen))
	}
	return s.long[slot]
}

// find returns the slot of clientID (hashed h) in s, under s's lock.
func (s *shard) find(clientID string, h uint64) (uint32, *entry, bool) {
	if i, ok := s.index.find(h); ok {
		e := s.entry(i)
		if s.ids(e, i)[:e.idLen] == clientID {
			return i, e, true
		}
	}
	if len(s.other) > 0 {
		if i, ok := s.other[clientID]; ok {
			return i, s.entry(i), true
		}
	}
	return 0, nil, false
}

func (s *shard) entry(i uint32) *entry { return &(*s.slabs.Load())[i/slabSize][i%slabSize] }

// add takes a slot for clientID and teamID (hashed h), under s's write lock;
// the caller has found none. The entry's IDs are written before the slot
// is indexed, and never again while it is.
func (s *shard) add(clientID, teamID string, h uint64, serial uint64) (uint32, *entry) {
	var i uint32
	if n := len(s.free); n > 0 {
		i = s.free[n-1]
		s.free = s.free[:n-1]
	} else {
		i = s.used
		s.used++
		if i%slabSize == 0 {
			old := s.slabs.Load()
			var grown []*slab
			if old != nil {
				grown = append(make([]*slab, 0, len(*old)+1), *old...)
			}
			grown = append(grown, new(slab))
			s.slabs.Store(&grown)
		}
	}
	e := s.entry(i)
	e.serial, e.hash = serial, h
	e.idLen, e.idsLen = uint32(len(clientID)), uint32(len(clientID)+len(teamID))
	if n := len(clientID) + len(teamID); n <= inlineIDs {
		copy(e.buf[copy(e.buf[:], clientID):], teamID)
	} else {
		if s.long == nil {
			s.long = map[uint32]string{}
		}
		if teamID == "" {
			s.long[i] = strings.Clone(clientID) // + would hand back clientID itself
		} else {
			s.long[i] = clientID + teamID
		}
	}
	if _, taken := s.index.find(h); taken {
		if s.other == nil {
			s.other = map[string]uint32{}
		}
		s.other[strings.Clone(clientID)] = i
		e.collided = true
	} else {
		s.index.insert(h, i)
	}
	return i, e
}

// remove takes slot i's key out of s's index, under s's write lock; the
// slot stays as it is (gone) until release.
func (s *shard) remove(i uint32, e *entry) {
	if e.collided {
		delete(s.other, s.ids(e, i)[:e.idLen])
	} else {
		s.index.delete(e.hash)
	}
}

// release frees slot i for another key, under s's write lock.
func (s *shard) release(i uint32, e *entry) {
	delete(s.long, i)
	e.used.Store(0)
	e.written.Store(0)
	e.wroteAt.Store(0)
	e.tokens.Store(0)
	e.failures.Store(0)
	e.failedAt.Store(0)
	e.serial, e.hash, e.next = 0, 0, 0
	e.waiting, e.gone, e.batched, e.parked, e.collided = false, false, false, false, false
	e.pendingUses, e.pendingAt, e.idLen, e.idsLen = 0, 0, 0, 0
	s.free = append(s.free, i)
}
