package redis

import (
	"reflect"
	"testing"

	"github.com/keygate/keygate/credential"
	"github.com/keygate/keygate/store"
	"github.com/keygate/keygate/store/storetest"
)

// bucketOfKeys is a team's bucket as HGETALL returns it: every chunk of
// every record under its field.
func bucketOfKeys(t testing.TB, keys []store.Key) (tag string, all map[string]string) {
	t.Helper()
	tag = credential.TagOf(keys[0].ClientID)
	all = map[string]string{}
	for _, k := range keys {
		chunks, err := encodeCompact(k)
		if err != nil {
			t.Fatal(err)
		}
		for i, f := range chunkFields(fieldOf(tag, k.ClientID), len(chunks)) {
			all[f] = chunks[i]
		}
	}
	return tag, all
}

// TestAppendBucketKeys: a bucket decodes to exactly its keys, a record of
// several chunks included, appended after what out already held, and
// bucketRecords counts them, so a walk's one allocation fits.
func TestAppendBucketKeys(t *testing.T) {
	keys := storetest.BulkKeys(t, 1, 5, 0)
	keys = append(keys, richKey(t, keys[0].TeamID))
	tag, all := bucketOfKeys(t, keys)
	if chunks, _ := encodeCompact(keys[len(keys)-1]); len(chunks) < 3 {
		t.Fatalf("the rich key takes %d chunks: the test wants one of several", len(chunks))
	}
	if n := bucketRecords(all); n != len(keys) {
		t.Fatalf("bucketRecords = %d, want %d", n, len(keys))
	}
	before := store.Key{ClientID: "already-there"}
	got, err := appendBucketKeys(append(make([]store.Key, 0, 1+len(keys)), before), tag, all)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1+len(keys) || got[0].ClientID != before.ClientID {
		t.Fatalf("appended %d keys after %q, want %d after it", len(got)-1, got[0].ClientID, len(keys))
	}
	byID := map[string]store.Key{}
	for _, k := range got[1:] {
		byID[k.ClientID] = k
	}
	for _, want := range keys {
		if k, ok := byID[want.ClientID]; !ok || !reflect.DeepEqual(k, want) {
			t.Errorf("key %s decoded as\n%+v\nwant\n%+v", want.ClientID, k, want)
		}
	}
	// A later chunk lost: the record is refused, not read short.
	for f := range all {
		if f[0] == 0 && f[1] == 2 {
			delete(all, f)
		}
	}
	if _, err := appendBucketKeys(nil, tag, all); err == nil {
		t.Fatal("a record missing a chunk decoded")
	}
}

// BenchmarkWalkBuckets: what the walks beside the token path
// (RevokeEndedGenerations, the permission check) allocate per key on
// Redis: loadBuckets' decoding of a page of buckets of five seeded keys.
func BenchmarkWalkBuckets(b *testing.B) {
	const buckets = 50 // ForEachKey's page of buckets (batch/4)
	keys := storetest.BulkKeys(b, buckets, 5, 0)
	type bucket struct {
		tag string
		all map[string]string
	}
	var page []bucket
	for i := 0; i < len(keys); i += 5 {
		tag, all := bucketOfKeys(b, keys[i:i+5])
		page = append(page, bucket{tag, all})
	}
	b.ReportAllocs()
	for b.Loop() {
		n := 0
		for _, p := range page {
			n += bucketRecords(p.all)
		}
		out := make([]store.Key, 0, n)
		for _, p := range page {
			var err error
			if out, err = appendBucketKeys(out, p.tag, p.all); err != nil {
				b.Fatal(err)
			}
		}
		if len(out) != len(keys) {
			b.Fatalf("decoded %d keys, want %d", len(out), len(keys))
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(keys)), "ns/key")
}
