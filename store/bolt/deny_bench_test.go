package bolt

// The deny list's cost at any size (issue 14): a revocation and a key
// create with 0, 100 000 and 1 000 000 live deny entries. Seeded through
// bbolt directly in large transactions (the bulk path; a revocation per
// entry would take hours). Not run by CI:
//
//	go test -run '^$' -bench DenyList -benchtime 2000x ./store/bolt/

import (
	"context"
	"encoding/binary"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	bbolt "go.etcd.io/bbolt"

	"github.com/keygate/keygate/store"
	"github.com/keygate/keygate/store/storetest"
)

func BenchmarkDenyList(b *testing.B) {
	for _, n := range []int{0, 100_000, 1_000_000} {
		b.Run(fmt.Sprintf("entries=%d", n), func(b *testing.B) {
			st, err := Open(filepath.Join(b.TempDir(), "k.db"))
			if err != nil {
				b.Fatal(err)
			}
			defer st.Close()
			seedDenyList(b, st, n)
			ctx := context.Background()
			until := time.Now().Add(time.Hour)
			seq := 0 // across the runs of a benchmark: every jti and key is new
			b.Run("revoke", func(b *testing.B) {
				for range b.N {
					seq++
					if err := st.DenyToken(ctx, fmt.Sprintf("bench-%d", seq), until); err != nil {
						b.Fatal(err)
					}
				}
			})
			b.Run("create-key", func(b *testing.B) {
				for range b.N {
					seq++
					team := fmt.Sprintf("t%d", seq)
					k := store.Key{ClientID: storetest.ID(team, fmt.Sprintf("kg%d", seq)), TeamID: team, Name: "k",
						CreatedAt: time.Now(), SecretHash: []byte("hash")}
					if err := st.CreateKey(ctx, k, 5); err != nil {
						b.Fatal(err)
					}
				}
			})
		})
	}
}

// seedDenyList writes n live deny entries (and their expiry index) in
// transactions of 50 000.
func seedDenyList(b *testing.B, st *Store, n int) {
	b.Helper()
	exp := uint64(time.Now().Add(24 * time.Hour).UnixMilli())
	for done := 0; done < n; {
		err := st.db.Update(func(tx *bbolt.Tx) error {
			deny, index := tx.Bucket(bucketDeny), tx.Bucket(bucketDenyExpiry)
			for end := min(done+50_000, n); done < end; done++ {
				var v [8]byte
				binary.BigEndian.PutUint64(v[:], exp+uint64(done))
				jti := fmt.Sprintf("seed-%09d", done)
				if err := deny.Put([]byte(jti), v[:]); err != nil {
					return err
				}
				if err := index.Put(denyIndexKey(v[:], jti), nil); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
	}
}
