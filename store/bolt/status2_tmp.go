package bolt

// TEMPORARY (issue 17, being replaced by the 2-bit status array): the
// legacy bitmap read as 2-bit entries, and SetStatus refused. Removed by
// the commit that stores 2-bit entries.

import (
	"context"
	"errors"

	"github.com/keygate/keygate/store"
)

func legacyToStatuses(bitmap []byte) []byte {
	out := make([]byte, len(bitmap)*2)
	for i, b := range bitmap {
		for j := 0; j < 8; j++ {
			if b>>j&1 == 1 {
				idx := i*8 + j
				out[idx/4] |= 1 << (uint(idx%4) * 2)
			}
		}
	}
	return out
}

// SetStatus implements store.Store (not yet: see above).
func (s *Store) SetStatus(ctx context.Context, idx int64, st store.Status) error {
	return errors.New("set status: not implemented yet")
}
