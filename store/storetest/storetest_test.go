package storetest

import (
	"testing"

	"github.com/keygate/keygate/store"
)

// TestReference runs the suite against MemStore, a minimal in-memory
// backend. It checks the suite itself: that a correct backend other than
// bolt passes it, and (because MemStore holds Go values rather than encoded
// bytes) that the copy checks are meaningful, which an encoding backend
// passes for free.
func TestReference(t *testing.T) {
	Run(t, func(t *testing.T) store.Store { return NewMemStore() })
}

func TestReferenceExport(t *testing.T) {
	RunExport(t, func(t *testing.T) ExportStore { return NewMemStore() })
}

func TestReferenceStatusLayout(t *testing.T) {
	m := NewMemStore()
	StatusLayout(t, m, func(idx int64, v uint8) error { m.PokeStatus(idx, v); return nil })
}
