package apikey

import (
	"context"
	"errors"
	"fmt"

	"github.com/keygate/keygate/store"
)

// requireSchemaLevel raises the store's schema to level (store.SchemaRaiser)
// before the first record an older keygate would misread — a read-only
// admin key (read as a full admin), a management session (its token
// checked by nobody) — so such a keygate refuses the store instead. Once
// raised, this process does not ask again: a level never goes down.
func (s *Service) requireSchemaLevel(ctx context.Context, level int, what string) error {
	if int(s.schemaLevel.Load()) >= level {
		return nil
	}
	raiser, ok := store.Feature[store.SchemaRaiser](s.store)
	if !ok {
		return errors.New(what + ": the store cannot record a schema version (store.SchemaRaiser), so an older keygate could misread it")
	}
	if err := raiser.RaiseSchema(ctx, level); err != nil {
		return fmt.Errorf("%s: raise the store's schema to level %d: %w", what, level, err)
	}
	s.schemaLevel.Store(int32(level))
	return nil
}
