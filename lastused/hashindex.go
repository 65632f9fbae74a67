package lastused

// hashIndex is a shard's index: a client ID's 64-bit hash to its slot.
//
// It was a Go map (map[uint64]uint32). At a million keys in use that map
// was the token path's dearest lookup after signing: 2.3 µs a request of
// serve's 84 at 10 000 000 keys (docs/scale.md), a directory, a table and
// a group of slots to find, each likely a cache and TLB miss on a machine
// whose caches the million entries have long left. Here a lookup reads one
// flat array with linear probing: the hash's home position and, in a table
// at most three quarters full, its neighbours, nearly always on the same
// cache line. Deletion shifts the probe run back (no tombstones), so a
// table that keys come and go through stays as fast as a fresh one. Like
// the map it holds no pointer.
//
// Every method runs under the shard's lock: find under either side, the
// rest under the write side.
type hashIndex struct {
	cells []indexCell // a power of two long, or nil
	n     int         // cells in use
}

// indexCell is one position: slot is the slot number plus one, 0 for an
// empty cell.
type indexCell struct {
	hash uint64
	slot uint32
}

// minIndexCells is the first table's size: a shard of a tracker with a
// handful of keys stays under a cache line or two.
const minIndexCells = 8

// home is h's first position. The shard took h's low bits (table.hash),
// so the position comes from the high ones.
func (x *hashIndex) home(h uint64) int { return int(h>>32) & (len(x.cells) - 1) }

// find returns the slot indexed under h.
func (x *hashIndex) find(h uint64) (uint32, bool) {
	if x.n == 0 {
		return 0, false
	}
	mask := len(x.cells) - 1
	for i := x.home(h); ; i = (i + 1) & mask {
		c := &x.cells[i]
		if c.slot == 0 {
			return 0, false
		}
		if c.hash == h {
			return c.slot - 1, true
		}
	}
}

// insert indexes slot under h, which the caller knows to be absent.
func (x *hashIndex) insert(h uint64, slot uint32) {
	if (x.n+1)*4 > len(x.cells)*3 {
		x.grow()
	}
	x.place(h, slot)
	x.n++
}

func (x *hashIndex) place(h uint64, slot uint32) {
	mask := len(x.cells) - 1
	i := x.home(h)
	for x.cells[i].slot != 0 {
		i = (i + 1) & mask
	}
	x.cells[i] = indexCell{hash: h, slot: slot + 1}
}

func (x *hashIndex) grow() {
	old := x.cells
	x.cells = make([]indexCell, max(minIndexCells, 2*len(old)))
	for _, c := range old {
		if c.slot != 0 {
			x.place(c.hash, c.slot-1)
		}
	}
}

// delete removes h's cell, if any, and moves later cells of its probe run
// back into the gap where their own home allows it, so that every cell
// stays reachable from its home without crossing an empty cell.
func (x *hashIndex) delete(h uint64) {
	if x.n == 0 {
		return
	}
	mask := len(x.cells) - 1
	i := x.home(h)
	for x.cells[i].slot != 0 && x.cells[i].hash != h {
		i = (i + 1) & mask
	}
	if x.cells[i].slot == 0 {
		return
	}
	for j := (i + 1) & mask; x.cells[j].slot != 0; j = (j + 1) & mask {
		// The cell at j may fill the gap at i unless its home lies
		// cyclically after i and at or before j: then it would sit before
		// its home.
		if k := x.home(x.cells[j].hash); (j-k)&mask >= (j-i)&mask {
			x.cells[i] = x.cells[j]
			i = j
		}
	}
	x.cells[i] = indexCell{}
	x.n--
}

// len is the number of cells in use.
func (x *hashIndex) len() int { return x.n }

// appendSlots appends every indexed slot to dst.
func (x *hashIndex) appendSlots(dst []uint32) []uint32 {
	for _, c := range x.cells {
		if c.slot != 0 {
			dst = append(dst, c.slot-1)
		}
	}
	return dst
}
