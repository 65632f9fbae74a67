package lastused

import "reflect"

// Len is how many keys have an entry, for tests of what may grow the
// tracker.
func (t *Tracker) Len() int {
	return t.sumShards(func(s *shard) int { return s.index.len() + len(s.other) })
}

// sumShards adds up f over the shards, each under its read lock.
func (t *Tracker) sumShards(f func(*shard) int) int {
	n := 0
	for i := range t.entries.shards {
		s := &t.entries.shards[i]
		s.mu.RLock()
		n += f(s)
		s.mu.RUnlock()
	}
	return n
}

// Visits is how many entries the flushes so far have looked at.
func (t *Tracker) Visits() int64 { return t.visits.Load() }

// ReleaseChecks is how many dropped slots the flushes so far have looked
// at to free them.
func (t *Tracker) ReleaseChecks() int64 { return t.releaseChecks.Load() }

// SweepEvery is how often a flush ranges over every entry.
const SweepEvery = sweepEvery

// EntryIDs is the one string clientID's entry keeps of the key's client
// and team IDs (not copied: read it before the tracker changes), and
// whether the entry keeps it in itself.
func (t *Tracker) EntryIDs(clientID string) (ids string, inline, ok bool) {
	h, sh := t.entries.hash(clientID)
	s := &t.entries.shards[sh]
	s.mu.RLock()
	defer s.mu.RUnlock()
	i, e, ok := s.find(clientID, h)
	if !ok {
		return "", false, false
	}
	return s.ids(e, i), e.idsLen <= inlineIDs, true
}

// Slots is how many slots the table has handed out, free ones included.
func (t *Tracker) Slots() int { return t.sumShards(func(s *shard) int { return int(s.used) }) }

// EntryPointers lists the fields of an entry the garbage collector would
// have to follow (none, by design: table.go).
func EntryPointers() []string { return pointerFields(reflect.TypeOf(entry{}), "entry") }

func pointerFields(t reflect.Type, path string) []string {
	switch t.Kind() {
	case reflect.Pointer, reflect.String, reflect.Slice, reflect.Map, reflect.Chan,
		reflect.Func, reflect.Interface, reflect.UnsafePointer:
		return []string{path}
	case reflect.Array:
		return pointerFields(t.Elem(), path+"[]")
	case reflect.Struct:
		var out []string
		for i := range t.NumField() {
			out = append(out, pointerFields(t.Field(i).Type, path+"."+t.Field(i).Name)...)
		}
		return out
	}
	return nil
}

// FreeSlots is how many slots are free for another key.
func (t *Tracker) FreeSlots() int { return t.sumShards(func(s *shard) int { return len(s.free) }) }
