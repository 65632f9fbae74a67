package lastused

import (
	"hash/maphash"
	"sync"
)

// entryMap maps client IDs to entries: sharded maps, each under its own
// read-write lock, so the token path takes a shard's read lock (never a
// process-wide one) and the flush can range over every entry a shard at a
// time.
//
// It replaced a sync.Map. At a million keys in use the tracker's entries
// were most of the objects the collector had to mark in every cycle, and a
// sync.Map adds two small node objects of pointers per entry; a Go map
// keeps its slots in large arrays instead (docs/scale.md).
type entryMap struct {
	seed   maphash.Seed
	shards [entryShards]entryShard
}

const entryShards = 256

type entryShard struct {
	mu sync.RWMutex
	m  map[string]*entry
	_  [64 - 24 - 8]byte // a cache line each: no false sharing between shards' locks
}

func newEntryMap() *entryMap {
	m := &entryMap{seed: maphash.MakeSeed()}
	for i := range m.shards {
		m.shards[i].m = map[string]*entry{}
	}
	return m
}

func (m *entryMap) shard(id string) *entryShard {
	return &m.shards[maphash.String(m.seed, id)%entryShards]
}

func (m *entryMap) load(id string) (*entry, bool) {
	s := m.shard(id)
	s.mu.RLock()
	e, ok := s.m[id]
	s.mu.RUnlock()
	return e, ok
}

// loadOrStore returns id's entry, storing e as it when it has none.
func (m *entryMap) loadOrStore(id string, e *entry) *entry {
	s := m.shard(id)
	s.mu.Lock()
	defer s.mu.Unlock()
	if old, ok := s.m[id]; ok {
		return old
	}
	s.m[id] = e
	return e
}

// compareAndDelete removes id's entry if it is e.
func (m *entryMap) compareAndDelete(id string, e *entry) bool {
	s := m.shard(id)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.m[id] != e {
		return false
	}
	delete(s.m, id)
	return true
}

// each calls fn for every entry, a shard at a time, holding no lock while
// fn runs (fn may delete). An entry stored meanwhile may be missed.
func (m *entryMap) each(fn func(*entry)) {
	var batch []*entry
	for i := range m.shards {
		s := &m.shards[i]
		s.mu.RLock()
		batch = batch[:0]
		for _, e := range s.m {
			batch = append(batch, e)
		}
		s.mu.RUnlock()
		for _, e := range batch {
			fn(e)
		}
	}
}
