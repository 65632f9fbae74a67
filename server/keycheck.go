package server

// The walk over stored keys that used to hold up a start (apikey's
// keycheck.go says why it moved): it runs once, in the background, after
// New returns, so /readyz answers as soon as the store does whatever the
// number of keys. Nothing waits for it: the token path checks the key it
// serves itself.

import (
	"context"
	"time"

	"github.com/keygate/keygate/apikey"
)

// keyCheck is the background walk's state.
type keyCheck struct {
	cancel context.CancelFunc
	done   chan struct{}
	report apikey.KeyCheckReport
	err    error
}

func (s *Server) startKeyCheck() {
	ctx, cancel := context.WithCancel(context.Background())
	s.keyCheck = &keyCheck{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(s.keyCheck.done)
		start := time.Now()
		r, err := s.keys.CheckStoredKeys(ctx)
		s.keyCheck.report, s.keyCheck.err = r, err
		switch {
		case ctx.Err() != nil:
			// Closed before the walk ended: the next start walks again.
		case r.UpToDate:
			s.log.Info("stored keys already checked against this permission catalog; not walked")
		case err != nil:
			s.log.Error("stored keys not checked; keys are still checked when they ask for a token", "err", err, "keys_checked", r.Keys)
		case r.OutsideCatalogCount > 0:
			s.log.Warn("stored keys checked: some hold a permission the permission catalog no longer has and get no token; add the permissions back or delete the keys",
				"keys", r.Keys, "status_indices_assigned", r.Indexed, "outside_catalog", r.OutsideCatalogCount, "client_ids", r.OutsideCatalog, "took", time.Since(start).Round(time.Millisecond))
		default:
			s.log.Info("stored keys checked", "keys", r.Keys, "status_indices_assigned", r.Indexed, "took", time.Since(start).Round(time.Millisecond))
		}
	}()
}

// stopKeyCheck ends the walk and waits for it, so that the store can be
// closed after Close.
func (s *Server) stopKeyCheck() {
	s.keyCheck.cancel()
	<-s.keyCheck.done
}

// StoredKeysChecked is closed when the background walk over stored keys has
// ended; KeyCheck then returns its report.
func (s *Server) StoredKeysChecked() <-chan struct{} { return s.keyCheck.done }

// KeyCheck is the background walk's report, valid once StoredKeysChecked is
// closed.
func (s *Server) KeyCheck() (apikey.KeyCheckReport, error) {
	<-s.keyCheck.done
	return s.keyCheck.report, s.keyCheck.err
}
