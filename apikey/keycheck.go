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
//
// The walk itself is skipped when it would find nothing new: a walk that
// ends with every key inside the catalog records the catalog it checked
// against (keyCheckMarker, a fingerprint of the catalog's permission IDs),
// and a start with the same catalog does not walk again. Keys written since
// were checked against that catalog when they were written, and got a
// status index at creation. Without this every start of every instance
// walked the whole store: at 10 000 000 keys, ten minutes of a tenth of a
// core and its garbage after each deploy (docs/scale.md). A marker that is
// wrong (a store imported into one that had it, keys written by a binary
// with another catalog) costs only the early report: both guarantees above
// hold on the token path whatever the walk did. A seed into a store that
// was never started records the marker too (Seed): it wrote every key
// there is, each checked against the catalog and given an index.

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"slices"
	"sync"

	"github.com/keygate/keygate/scopes"
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
	// UpToDate: no walk was needed, a complete one having found every key
	// inside this catalog before (keyCheckMarker); Keys is then 0.
	UpToDate bool
}

// keyCheckMarker names the singleton holding the fingerprint of the catalog
// the last complete walk found every stored key inside (catalogFingerprint).
const keyCheckMarker = "keycheck"

// catalogFingerprint identifies c by what the walk checks keys against:
// the set of permission IDs it knows.
func catalogFingerprint(c *scopes.Catalog) []byte {
	var ids []string
	for _, p := range c.Permissions() {
		ids = append(ids, p.ID)
	}
	slices.Sort(ids)
	h := sha256.New()
	for _, id := range ids {
		h.Write([]byte(id))
		h.Write([]byte{0})
	}
	return fmt.Appendf(nil, "catalog-v1 %x", h.Sum(nil))
}

// checkedAgainst reports whether the marker holds fp. The store has no
// read of one singleton; a swap of a value for itself succeeds exactly when
// that value is stored (and writes nothing new).
func checkedAgainst(ctx context.Context, st store.Store, fp []byte) (bool, error) {
	same, err := st.CompareAndSwapSingleton(ctx, keyCheckMarker, fp, fp)
	if errors.Is(err, store.ErrNotFound) {
		return false, nil
	}
	return same, err
}

// markChecked records fp as the catalog every stored key is inside.
func markChecked(ctx context.Context, st store.Store, fp []byte) error {
	stored, err := st.CreateSingleton(ctx, keyCheckMarker, fp)
	if err != nil || bytes.Equal(stored, fp) {
		return err
	}
	// Another catalog's marker: replace it unless it changed meanwhile
	// (then whoever changed it walked too, and the next start walks again).
	_, err = st.CompareAndSwapSingleton(ctx, keyCheckMarker, stored, fp)
	return err
}

// singletonAbsent reports whether nothing is stored under name, by a swap
// that can never succeed (no singleton keygate keeps is empty).
func singletonAbsent(ctx context.Context, st store.Store, name string) (bool, error) {
	_, err := st.CompareAndSwapSingleton(ctx, name, nil, []byte{0})
	if errors.Is(err, store.ErrNotFound) {
		return true, nil
	}
	return false, err
}

const maxReportedOutsideCatalog = 100

// CheckStoredKeys walks every stored key once: it gives keys without a
// status index one, and reports (and logs, once per key) keys holding a
// permission the catalog no longer has. It runs in the background after a
// start (server.New); nothing depends on its having finished, since the
// token path checks both for the key it serves. It stops at ctx's end or
// at the first store error, returning what it found so far. When a
// complete walk found every key inside this same catalog before, it walks
// nothing and says so (UpToDate); a walk that finds every key inside
// records the catalog for the next start.
func (s *Service) CheckStoredKeys(ctx context.Context) (KeyCheckReport, error) {
	var r KeyCheckReport
	fp := catalogFingerprint(s.cfg.Catalog)
	done, err := checkedAgainst(ctx, s.store, fp)
	if err != nil {
		return r, fmt.Errorf("check stored keys: read the last check: %w", err)
	}
	if done {
		r.UpToDate = true
		return r, nil
	}
	var pace walkPacer // a tenth of a core at most (pace.go)
	err = s.store.ForEachKey(ctx, func(k store.Key) error {
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
	if r.OutsideCatalogCount == 0 {
		if err := markChecked(ctx, s.store, fp); err != nil {
			return r, fmt.Errorf("check stored keys: record the check: %w", err)
		}
	}
	return r, nil
}
