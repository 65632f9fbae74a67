package throttle

import (
	"encoding/binary"
	"math/bits"
	"sync"
)

// successTable remembers when each (source, client ID) pair last
// authenticated, for MaxEntries pairs, forgetting the one that succeeded
// longest ago when a new one needs room. It is the one table every
// successful request may write to (the pair tables change only on
// failures), so at a million keys in use, more pairs than it holds, nearly
// every token replaced an entry: with an LRU of objects that was three
// allocations a token and several hundred thousand live objects with
// pointers for the collector to follow (docs/scale.md). Here a shard is
// one array of fixed-size slots, without pointers, in sets of successWays
// that a pair's hash picks: a lookup reads one set, a new pair takes the
// set's empty or oldest slot.
type successTable struct {
	shards [shards]successShard
	sets   uint64 // per shard
}

type successShard struct {
	mu    sync.RWMutex
	slots []successSlot // sets × successWays
	_     [64 - 24 - 24]byte
}

// successWays is the slots per set: enough that a set's oldest is close
// to the shard's oldest, few enough to scan in a cache line or five.
const successWays = 8

type successSlot struct {
	at   int64 // unix ns of the last success; 0: empty
	id   uint64
	addr [16]byte
	bits uint8 // 32 or 128: the address's family; 0 for the zero Source
}

func newSuccessTable(entries int) *successTable {
	t := &successTable{sets: uint64(max(1, entries/shards/successWays))}
	for i := range t.shards {
		t.shards[i].slots = make([]successSlot, t.sets*successWays)
	}
	return t
}

// hash is the pair's hash: its top bits pick the shard (Pair.shard), the
// rest the set.
func (p Pair) hash() uint64 {
	b := p.src.a.As16()
	h := binary.LittleEndian.Uint64(b[:8]) ^ bits.RotateLeft64(binary.LittleEndian.Uint64(b[8:]), 31) ^ p.id
	h ^= h >> 29
	return h * 0xbf58476d1ce4e5b9
}

func (p Pair) slot() successSlot {
	return successSlot{id: p.id, addr: p.src.a.As16(), bits: uint8(p.src.a.BitLen())}
}

// set returns p's set and the slot p would fill.
func (t *successTable) set(p Pair) (*successShard, []successSlot, successSlot) {
	h := p.hash()
	s := &t.shards[h>>58]
	i := (h % t.sets) * successWays
	return s, s.slots[i : i+successWays], p.slot()
}

func find(set []successSlot, k successSlot) int {
	for i := range set {
		if set[i].at != 0 && set[i].id == k.id && set[i].addr == k.addr && set[i].bits == k.bits {
			return i
		}
	}
	return -1
}

// last is when p last succeeded, if the table remembers it.
func (t *successTable) last(p Pair) (int64, bool) {
	s, set, k := t.set(p)
	s.mu.RLock()
	defer s.mu.RUnlock()
	if i := find(set, k); i >= 0 {
		return set[i].at, true
	}
	return 0, false
}

// record notes p's success at now, unless the table has one of p within
// refresh of now (a read lock only: the write happens at most once per
// refresh per pair).
func (t *successTable) record(p Pair, now, refresh int64) {
	s, set, k := t.set(p)
	s.mu.RLock()
	i := find(set, k)
	fresh := i >= 0 && now-set[i].at < refresh
	s.mu.RUnlock()
	if fresh {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if i = find(set, k); i < 0 {
		i = 0
		for j := range set {
			if set[j].at < set[i].at { // an empty slot (0) first, else the oldest
				i = j
			}
		}
		set[i] = k
	}
	set[i].at = max(set[i].at, now, 1) // 0 would read as empty
}

// len is how many pairs the table remembers.
func (t *successTable) len() int {
	n := 0
	for i := range t.shards {
		s := &t.shards[i]
		s.mu.RLock()
		for _, sl := range s.slots {
			if sl.at != 0 {
				n++
			}
		}
		s.mu.RUnlock()
	}
	return n
}
