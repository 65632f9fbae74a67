package apikey

import (
	"context"
	"errors"
	"fmt"

	"github.com/keygate/keygate/store"
)

// GetByID returns a team key by its client ID alone: the ID carries its
// team's tag (credential.NewClientID), so the one store read finds it
// whatever the team. An admin key is ErrNotFound, as an unknown ID is: admin
// keys are outside the management API's teams.
func (s *Service) GetByID(ctx context.Context, clientID string) (store.Key, error) {
	k, err := s.store.GetKey(ctx, clientID)
	if errors.Is(err, store.ErrNotFound) || (err == nil && k.IsAdmin()) {
		return store.Key{}, ErrNotFound
	}
	if err != nil {
		return store.Key{}, fmt.Errorf("load key %s: %w", clientID, err)
	}
	return k, nil
}
