package bolt

import (
	"testing"

	bbolt "go.etcd.io/bbolt"

	"github.com/keygate/keygate/store/storetest"
)

// TestStatusLayout: the draft's 2-bit example, written straight into the
// status bucket's 2-bit array, reads back as its bytes.
func TestStatusLayout(t *testing.T) {
	s, _ := openTemp(t)
	storetest.StatusLayout(t, s, s.pokeStatus)
}

// TestStatusBitmapKept: storetest.StatusBitmapKept on the status
// bucket's "bits".
func TestStatusBitmapKept(t *testing.T) {
	s, _ := openTemp(t)
	bits := func(tx *bbolt.Tx) []byte { return tx.Bucket(bucketStatus).Get(statusBitsKey) }
	storetest.StatusBitmapKept(t, s,
		func(idx int64) (set bool, err error) {
			err = s.db.View(func(tx *bbolt.Tx) error {
				b := bits(tx)
				set = int(idx/8) < len(b) && b[idx/8]>>(idx%8)&1 == 1
				return nil
			})
			return set, err
		},
		func(idx int64) error {
			return s.db.Update(func(tx *bbolt.Tx) error {
				b := grown(bits(tx), int(idx/8)+1)
				b[idx/8] |= 1 << (idx % 8)
				return tx.Bucket(bucketStatus).Put(statusBitsKey, b)
			})
		})
}
