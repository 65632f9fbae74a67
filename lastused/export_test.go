package lastused

// Len is how many keys have an entry, for tests of what may grow the
// tracker.
func (t *Tracker) Len() int {
	n := 0
	t.entries.Range(func(_, _ any) bool { n++; return true })
	return n
}
