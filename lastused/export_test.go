package lastused

import "unsafe"

// Len is how many keys have an entry, for tests of what may grow the
// tracker.
func (t *Tracker) Len() int {
	n := 0
	t.entries.Range(func(string, *entry) bool { n++; return true })
	return n
}

// Visits is how many entries the flushes so far have looked at.
func (t *Tracker) Visits() int64 { return t.visits.Load() }

// SweepEvery is how often a flush ranges over every entry.
const SweepEvery = sweepEvery

// EntryIDs is the one string clientID's entry keeps of the key's client
// and team IDs.
func (t *Tracker) EntryIDs(clientID string) (string, bool) {
	e, ok := t.entries.Load(clientID)
	if !ok {
		return "", false
	}
	return e.ids, true
}

// EntryIDsInline reports whether clientID's entry keeps its IDs in itself.
func (t *Tracker) EntryIDsInline(clientID string) bool {
	e, ok := t.entries.Load(clientID)
	return ok && e.ids != "" && unsafe.StringData(e.ids) == &e.buf[0]
}
