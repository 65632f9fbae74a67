package lastused

import (
	"math/rand/v2"
	"testing"
)

// TestHashIndexAgainstMap runs random inserts and deletes against the
// index and a Go map side by side, and after every step checks that each
// hash the map holds is found with its slot and that a deleted one is
// gone. The hashes come from a few home positions, so probe runs are long,
// cross the table's end and are cut by deletions in their middle, the
// cases backward-shift deletion must get right.
func TestHashIndexAgainstMap(t *testing.T) {
	for _, homes := range []uint64{3, 64, 1 << 32} {
		rng := rand.New(rand.NewPCG(homes, 7))
		var x hashIndex
		want := map[uint64]uint32{}
		var live []uint64
		hash := func() uint64 {
			// The home comes from the high half (hashIndex.home); the low
			// half tells hashes of one home apart.
			return (rng.Uint64N(homes)+(1<<32-2))<<32 | uint64(rng.Uint32())
		}
		for step := range 20000 {
			if len(live) > 0 && rng.IntN(5) < 2 {
				j := rng.IntN(len(live))
				h := live[j]
				live[j] = live[len(live)-1]
				live = live[:len(live)-1]
				delete(want, h)
				x.delete(h)
				if _, ok := x.find(h); ok {
					t.Fatalf("homes %d step %d: %#x found after its delete", homes, step, h)
				}
			} else {
				h := hash()
				if _, dup := want[h]; dup {
					continue
				}
				slot := uint32(step)
				want[h] = slot
				live = append(live, h)
				x.insert(h, slot)
			}
			if x.len() != len(want) {
				t.Fatalf("homes %d step %d: len %d, want %d", homes, step, x.len(), len(want))
			}
			// Every live hash now and then, a few at random each step.
			check := func(h uint64) {
				if got, ok := x.find(h); !ok || got != want[h] {
					t.Fatalf("homes %d step %d: find(%#x) = %d, %v; want %d", homes, step, h, got, ok, want[h])
				}
			}
			if step%97 == 0 {
				for h := range want {
					check(h)
				}
			} else {
				for range min(len(live), 8) {
					check(live[rng.IntN(len(live))])
				}
			}
		}
		if got := len(x.appendSlots(nil)); got != len(want) {
			t.Fatalf("homes %d: appendSlots lists %d slots, want %d", homes, got, len(want))
		}
		// Deleting what is absent changes nothing.
		n := x.len()
		x.delete(hash() | 1<<31)
		if x.len() != n {
			t.Fatalf("homes %d: deleting an absent hash changed len %d → %d", homes, n, x.len())
		}
	}
}

// TestHashIndexStaysSparse: the table grows before it is three quarters
// full, so a lookup of an absent hash always meets an empty cell.
func TestHashIndexStaysSparse(t *testing.T) {
	var x hashIndex
	if _, ok := x.find(42); ok {
		t.Fatal("the empty index found a hash")
	}
	for i := range uint32(10000) {
		x.insert(uint64(i)*0x9e3779b97f4a7c15, i)
		if x.len()*4 > len(x.cells)*3 {
			t.Fatalf("%d cells in use of %d", x.len(), len(x.cells))
		}
	}
}

// BenchmarkShardFind is the token path's lookup in a shard of a tracker
// with a million keys in use (4 096 keys a shard), against the Go map it
// replaced. Most of what it saves in serve is cache and TLB misses that a
// benchmark this small only partly shows (docs/scale.md has serve's).
func BenchmarkShardFind(b *testing.B) {
	const n = 1 << 12
	hashes := make([]uint64, n)
	rng := rand.New(rand.NewPCG(1, 2))
	var x hashIndex
	m := map[uint64]uint32{}
	for i := range hashes {
		hashes[i] = rng.Uint64()
		x.insert(hashes[i], uint32(i))
		m[hashes[i]] = uint32(i)
	}
	b.Run("hashIndex", func(b *testing.B) {
		for i := 0; b.Loop(); i++ {
			if _, ok := x.find(hashes[i%n]); !ok {
				b.Fatal("missing")
			}
		}
	})
	b.Run("map", func(b *testing.B) {
		for i := 0; b.Loop(); i++ {
			if _, ok := m[hashes[i%n]]; !ok {
				b.Fatal("missing")
			}
		}
	})
}
