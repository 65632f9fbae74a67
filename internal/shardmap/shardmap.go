// Package shardmap is a concurrent map from strings to values for tables
// that may hold many entries: the Redis key cache's absences
// (store/redis/cache.go). (The last-use tracker used it until its entries
// moved to a table without pointers, lastused/table.go.)
//
// A sync.Map adds two small node objects of pointers per entry, and at a
// million entries those were a large part of what every collection marked
// (docs/scale.md). Here the entries sit in Go maps, which keep their slots in
// large arrays, split into shards each under its own read-write lock: a
// lookup takes one shard's read lock, never a process-wide lock, and a
// writer holds one shard for a map operation only.
//
// The zero Map is not usable; call New. V is usually a pointer (or an
// interface holding one), so that CompareAndDelete can tell an entry from
// its successor under the same key.
package shardmap

import (
	"hash/maphash"
	"sync"
)

// shards is a power of two well above the cores a token path runs on, so
// two requests rarely meet on one lock.
const shards = 256

// Map is a sharded map from strings to V, safe for concurrent use.
type Map[V comparable] struct {
	seed   maphash.Seed
	shards [shards]shard[V]
}

type shard[V comparable] struct {
	mu sync.RWMutex
	m  map[string]V
	_  [64 - 24 - 8]byte // a cache line each: no false sharing between shards' locks
}

// New returns an empty Map.
func New[V comparable]() *Map[V] {
	m := &Map[V]{seed: maphash.MakeSeed()}
	for i := range m.shards {
		m.shards[i].m = map[string]V{}
	}
	return m
}

func (m *Map[V]) shard(k string) *shard[V] {
	return &m.shards[maphash.String(m.seed, k)%shards]
}

// Load returns k's value, and whether there is one.
func (m *Map[V]) Load(k string) (V, bool) {
	s := m.shard(k)
	s.mu.RLock()
	v, ok := s.m[k]
	s.mu.RUnlock()
	return v, ok
}

// LoadOrStore returns k's value if it has one (loaded true); otherwise it
// stores v as k's value and returns it.
func (m *Map[V]) LoadOrStore(k string, v V) (actual V, loaded bool) {
	s := m.shard(k)
	s.mu.Lock()
	defer s.mu.Unlock()
	if old, ok := s.m[k]; ok {
		return old, true
	}
	s.m[k] = v
	return v, false
}

// Swap stores v as k's value and returns the value it replaced, if any.
func (m *Map[V]) Swap(k string, v V) (previous V, loaded bool) {
	s := m.shard(k)
	s.mu.Lock()
	defer s.mu.Unlock()
	previous, loaded = s.m[k]
	s.m[k] = v
	return previous, loaded
}

// CompareAndDelete removes k if its value is old, and reports whether it
// did.
func (m *Map[V]) CompareAndDelete(k string, old V) bool {
	s := m.shard(k)
	s.mu.Lock()
	defer s.mu.Unlock()
	if v, ok := s.m[k]; !ok || v != old {
		return false
	}
	delete(s.m, k)
	return true
}

// LoadAndDelete removes k and returns the value it had, if any.
func (m *Map[V]) LoadAndDelete(k string) (V, bool) {
	s := m.shard(k)
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.m[k]
	if ok {
		delete(s.m, k)
	}
	return v, ok
}

// Range calls fn for every entry, a shard at a time, until fn returns
// false. It copies a shard's entries and releases its lock before calling
// fn, so fn may use the Map (and delete); an entry stored or deleted while
// Range runs may be seen or not.
func (m *Map[V]) Range(fn func(k string, v V) bool) {
	type kv struct {
		k string
		v V
	}
	var batch []kv
	for i := range m.shards {
		s := &m.shards[i]
		s.mu.RLock()
		batch = batch[:0]
		for k, v := range s.m {
			batch = append(batch, kv{k, v})
		}
		s.mu.RUnlock()
		for _, e := range batch {
			if !fn(e.k, e.v) {
				return
			}
		}
	}
}
