package shardmap

import (
	"fmt"
	"sync"
	"testing"
)

func TestOperations(t *testing.T) {
	m := New[*int]()
	a, b := new(int), new(int)
	if _, ok := m.Load("x"); ok {
		t.Fatal("Load of an empty map found x")
	}
	if v, loaded := m.LoadOrStore("x", a); loaded || v != a {
		t.Fatalf("LoadOrStore(x, a) on empty: %p %v, want a stored", v, loaded)
	}
	if v, loaded := m.LoadOrStore("x", b); !loaded || v != a {
		t.Fatalf("LoadOrStore(x, b): %p %v, want a loaded", v, loaded)
	}
	if m.CompareAndDelete("x", b) {
		t.Fatal("CompareAndDelete(x, b) deleted a")
	}
	if v, ok := m.Load("x"); !ok || v != a {
		t.Fatalf("Load(x) after a refused CompareAndDelete: %p %v, want a", v, ok)
	}
	if prev, loaded := m.Swap("x", b); !loaded || prev != a {
		t.Fatalf("Swap(x, b): %p %v, want a replaced", prev, loaded)
	}
	if prev, loaded := m.Swap("y", a); loaded || prev != nil {
		t.Fatalf("Swap(y, a) on absent y: %p %v, want nothing replaced", prev, loaded)
	}
	if !m.CompareAndDelete("x", b) {
		t.Fatal("CompareAndDelete(x, b) did not delete b")
	}
	if m.CompareAndDelete("x", b) {
		t.Fatal("CompareAndDelete of an absent key reported a deletion")
	}
	if v, ok := m.LoadAndDelete("y"); !ok || v != a {
		t.Fatalf("LoadAndDelete(y): %p %v, want a", v, ok)
	}
	if _, ok := m.LoadAndDelete("y"); ok {
		t.Fatal("LoadAndDelete(y) twice found it")
	}
	n := 0
	m.Range(func(string, *int) bool { n++; return true })
	if n != 0 {
		t.Fatalf("Range over an emptied map saw %d entries", n)
	}
}

// TestRange: every entry once across the shards, deleting from fn works,
// and returning false stops.
func TestRange(t *testing.T) {
	m := New[int]()
	const n = 5000
	for i := range n {
		m.Swap(fmt.Sprint(i), i)
	}
	seen := map[string]int{}
	m.Range(func(k string, v int) bool {
		seen[k]++
		if k != fmt.Sprint(v) {
			t.Errorf("Range gave %s with %d", k, v)
		}
		m.CompareAndDelete(k, v)
		return true
	})
	if len(seen) != n {
		t.Fatalf("Range saw %d keys, want %d", len(seen), n)
	}
	for k, c := range seen {
		if c != 1 {
			t.Fatalf("Range saw %s %d times", k, c)
		}
	}
	if _, ok := m.Load("42"); ok {
		t.Fatal("an entry deleted from fn is still there")
	}
	for i := range 10 {
		m.Swap(fmt.Sprint(i), i)
	}
	calls := 0
	m.Range(func(string, int) bool { calls++; return false })
	if calls != 1 {
		t.Fatalf("Range went on after fn returned false: %d calls", calls)
	}
}

// TestConcurrentLoadOrStore: of many goroutines storing under one key,
// exactly one stores and every other loads its value (run with -race).
func TestConcurrentLoadOrStore(t *testing.T) {
	m := New[*int]()
	const g = 32
	got := make([]*int, g)
	stored := make([]bool, g)
	var wg sync.WaitGroup
	for i := range g {
		wg.Go(func() {
			v, loaded := m.LoadOrStore("k", new(int))
			got[i], stored[i] = v, !loaded
		})
	}
	wg.Wait()
	winners := 0
	for i := range g {
		if stored[i] {
			winners++
		}
		if got[i] != got[0] {
			t.Fatalf("goroutine %d got %p, goroutine 0 %p: two values for one key", i, got[i], got[0])
		}
	}
	if winners != 1 {
		t.Fatalf("%d goroutines stored, want 1", winners)
	}
}
