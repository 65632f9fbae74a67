package storetest

import (
	"runtime"
	"testing"
	"time"
)

// ReportRetained runs fill, which should leave n records in a cache the
// caller keeps alive, and reports what each record retains: heap bytes,
// heap objects, and the time a full collection spends on it (a collection
// after fill against one before; the collector's work grows with the
// objects it marks). For the caches' BenchmarkKeyCacheBytesPerRecord,
// which give the per-record figures of docs/scale.md.
func ReportRetained(b *testing.B, n int, fill func()) {
	b.Helper()
	var before, after runtime.MemStats
	timedGC := func() time.Duration {
		runtime.GC()
		t0 := time.Now()
		runtime.GC()
		return time.Since(t0)
	}
	gcBefore := timedGC()
	runtime.ReadMemStats(&before)
	fill()
	gcAfter := timedGC()
	runtime.ReadMemStats(&after)
	b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/float64(n), "bytes/record")
	b.ReportMetric(float64(after.HeapObjects-before.HeapObjects)/float64(n), "objects/record")
	b.ReportMetric(float64(gcAfter-gcBefore)/float64(n), "gc-ns/record")
}
