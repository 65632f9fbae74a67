package apikey

// The checks of stored keys, off the start path. A start used to walk
// every key before answering (refusing to start on a key whose permission
// left the catalog, giving keys that predate status lists an index): at a
// million keys on Redis that walk kept /readyz at 503 for ten seconds, and
// it grows with the store. Both guarantees now hold per key, at the moment
// they matter — when a key asks for a token — and a background walk
// (CheckStoredKeys) reports what it finds and repairs what it can ahead of
// that moment.
//
//   - A key holding a permission the catalog no longer has never gets a
//     token: resolving its scopes fails with ErrPermissionNotInCatalog
//     (GrantScope), which the token endpoint answers invalid_client. The
//     operator hears of it once per key (warnOutsideCatalog), from the walk
//     or from the first refusal, whichever comes first.
//   - A key without a status index gets one synchronously on its first
//     successful authentication (Authenticate → ensureStatusIndex): a token
//     without a status claim could never be revoked offline.

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/keygate/keygate/store"
)

// ErrPermissionNotInCatalog: a key holds a permission the permission
// catalog no longer has (an operator removed it from the catalog without
// deleting the key). Such a key gets no token: its tokens would silently
// lose scopes.
var ErrPermissionNotInCatalog = errors.New("the key holds a permission the permission catalog no longer has")

// maxWarnedOutsideCatalog bounds the memory of keys already logged; past
// it the warnings start over (a store with that many broken keys has an
// operator reading the walk's report anyway).
const maxWarnedOutsideCatalog = 10_000

// outsideCatalogWarnings remembers which keys have been logged, so that a
// broken key asking for tokens in a loop logs one line, not one per request.
type outsideCatalogWarnings struct {
	mu     sync.Mutex
	logged map[string]struct{}
}

// warnOutsideCatalog logs, once per key, that k holds permission perm the
// catalog does not have.
func (s *Service) warnOutsideCatalog(k store.Key, perm string) {
	w := &s.catalogWarnings
	w.mu.Lock()
	if _, done := w.logged[k.ClientID]; done {
		w.mu.Unlock()
		return
	}
	if w.logged == nil || len(w.logged) >= maxWarnedOutsideCatalog {
		w.logged = map[string]struct{}{}
	}
	w.logged[k.ClientID] = struct{}{}
	w.mu.Unlock()
	s.log.Warn("key holds a permission the permission catalog no longer has; it gets no token until the permission is added back to the catalog or the key is deleted",
		"client_id", k.ClientID, "team_id", k.TeamID, "permission", perm)
}

// permissionOutsideCatalog is the first of k's permissions the catalog does
// not have, if any. Admin keys hold no catalog permissions.
func (s *Service) permissionOutsideCatalog(k store.Key) (string, bool) {
	if k.IsAdmin() {
		return "", false
	}
	for _, p := range k.Permissions {
		if _, ok := s.cfg.Catalog.Lookup(p); !ok {
			return p, true
		}
	}
	return "", false
}

// ensureStatusIndex gives k an index when the secret generation auth
// matched has none (keys created before status lists; the walk may not
// have reached them yet), and returns k and auth as stored. The index is
// taken from the store's counter and written only if the key still has
// none: two instances racing burn one index, and both tokens carry the
// stored one.
func (s *Service) ensureStatusIndex(ctx context.Context, k store.Key, auth Auth) (store.Key, Auth, error) {
	if auth.StatusIndex != 0 {
		return k, auth, nil
	}
	updated, err := s.assignStatusIndex(ctx, k.ClientID)
	if err != nil {
		return store.Key{}, Auth{}, err
	}
	// A key without an index predates generations: its one index stands
	// for both secrets (Authenticate's previous-secret case).
	auth.StatusIndex = updated.StatusIndex
	return updated, auth, nil
}

// assignStatusIndex gives the key clientID a status index unless it has
// one, and returns the key as stored.
func (s *Service) assignStatusIndex(ctx context.Context, clientID string) (store.Key, error) {
	idx, err := s.store.NextStatusIndex(ctx)
	if err != nil {
		return store.Key{}, fmt.Errorf("assign status index to %s: %w", clientID, err)
	}
	k, err := s.store.UpdateKey(ctx, clientID, func(k store.Key) (store.Key, error) {
		if k.StatusIndex == 0 {
			k.StatusIndex = idx
		}
		return k, nil
	})
	if err != nil {
		return store.Key{}, fmt.Errorf("assign status index to %s: %w", clientID, err)
	}
	return k, nil
}

// KeyCheckReport is what CheckStoredKeys found.
type KeyCheckReport struct {
	// Keys is how many keys the walk visited.
	Keys int
	// Indexed is how many of them it gave a status index.
	Indexed int
	// OutsideCatalog lists keys holding a permission the catalog no longer
	// has (at most maxReportedOutsideCatalog of them; OutsideCatalogCount
	// counts them all).
	OutsideCatalog      []string
	OutsideCatalogCount int
}

const maxReportedOutsideCatalog = 100

// CheckStoredKeys walks every stored key once: it gives keys without a
// status index one, and reports (and logs, once per key) keys holding a
// permission the catalog no longer has. It runs in the background after a
// start (server.New); nothing depends on its having finished, since the
// token path checks both for the key it serves. It stops at ctx's end or
// at the first store error, returning what it found so far.
func (s *Service) CheckStoredKeys(ctx context.Context) (KeyCheckReport, error) {
	var r KeyCheckReport
	var pace walkPacer // a tenth of a core at most (pace.go)
	err := s.store.ForEachKey(ctx, func(k store.Key) error {
		if err := pace.step(ctx); err != nil {
			return err
		}
		r.Keys++
		if k.StatusIndex == 0 {
			if _, err := s.assignStatusIndex(ctx, k.ClientID); err != nil && !errors.Is(err, store.ErrNotFound) {
				return err
			}
			r.Indexed++
		}
		if p, bad := s.permissionOutsideCatalog(k); bad {
			r.OutsideCatalogCount++
			if len(r.OutsideCatalog) < maxReportedOutsideCatalog {
				r.OutsideCatalog = append(r.OutsideCatalog, k.ClientID)
			}
			s.warnOutsideCatalog(k, p)
		}
		return nil
	})
	if err != nil {
		return r, fmt.Errorf("check stored keys: %w", err)
	}
	return r, nil
}
