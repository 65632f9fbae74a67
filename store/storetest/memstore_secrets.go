package storetest

import (
	"context"
	"fmt"

	"github.com/keygate/keygate/store"
)

// indexSecrets moves the secret index from old's hashes to new's (the zero
// Key for none), under the lock the caller holds.
func (m *MemStore) indexSecrets(old, new store.Key) {
	add, remove := store.SecretIndexChanges(old, new)
	for _, h := range remove {
		if m.secrets[string(h)] == old.ClientID {
			delete(m.secrets, string(h))
		}
	}
	for _, h := range add {
		m.secrets[string(h)] = new.ClientID
	}
}

// KeyBySecretHash implements store.Store.
func (m *MemStore) KeyBySecretHash(ctx context.Context, hash []byte) (store.Key, error) {
	unlock, err := m.lock(ctx)
	if err != nil {
		return store.Key{}, err
	}
	defer unlock()
	if k, ok := m.keys[m.secrets[string(hash)]]; ok && store.HoldsSecretHash(k, hash) {
		return cloneKey(k), nil
	}
	return store.Key{}, fmt.Errorf("key by secret hash: %w", store.ErrNotFound)
}

// SecretIndexSize is how many entries the secret index holds, for tests
// that check it shrinks as keys and secrets go.
func (m *MemStore) SecretIndexSize() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.secrets)
}
