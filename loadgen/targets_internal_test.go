package loadgen

import (
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"runtime"
	"testing"
)

// TestTargetsRequest: request n is credential n/len(bases) mod the
// credentials, to base n mod len(bases), with that credential's
// Authorization header and the form as its body; the prepared base
// requests are never changed by it.
func TestTargetsRequest(t *testing.T) {
	creds := []Credential{{ID: "a", Secret: "1"}, {ID: "b", Secret: "2"}, {ID: "c d", Secret: "3:/+"}}
	// RFC 6749 §2.3.1: each form-encoded, then joined and Base64-encoded.
	if got, want := BasicAuth(creds[2]), "Basic "+base64.StdEncoding.EncodeToString([]byte("c+d:3%3A%2F%2B")); got != want {
		t.Fatalf("BasicAuth(%+v) = %q, want %q", creds[2], got, want)
	}
	cfg, err := normalize(Config{URL: "http://127.0.0.1:1", MoreURLs: []string{"http://127.0.0.1:2"}, Credentials: creds, Duration: 1})
	if err != nil {
		t.Fatal(err)
	}
	ts, _, err := prepare(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if ts.count() != 6 {
		t.Fatalf("%d targets for 3 credentials and 2 base URLs, want 6", ts.count())
	}
	ctx := context.Background()
	for n := range int64(14) {
		req := ts.request(ctx, n)
		wantHost := fmt.Sprintf("127.0.0.1:%d", n%2+1)
		wantAuth := BasicAuth(creds[(n/2)%3])
		if req.URL.Host != wantHost || req.Header.Get("Authorization") != wantAuth {
			t.Errorf("request %d: %s with %q, want %s with %q", n, req.URL.Host, req.Header.Get("Authorization"), wantHost, wantAuth)
		}
		if req.Header.Get("Content-Type") != "application/x-www-form-urlencoded" || req.Method != "POST" || req.URL.Path != TokenPath {
			t.Errorf("request %d: %s %s with Content-Type %q", n, req.Method, req.URL.Path, req.Header.Get("Content-Type"))
		}
		body, err := io.ReadAll(req.Body)
		if err != nil || string(body) != "grant_type=client_credentials" {
			t.Errorf("request %d: body %q (%v)", n, body, err)
		}
	}
	for i, b := range ts.bases {
		if a := b.Header.Get("Authorization"); a != "" {
			t.Errorf("base request %d carries Authorization %q after use", i, a)
		}
	}

	jwks, err := normalize(Config{URL: "http://127.0.0.1:1", Endpoint: EndpointJWKS, Duration: 1})
	if err != nil {
		t.Fatal(err)
	}
	if ts, _, err = prepare(jwks); err != nil {
		t.Fatal(err)
	}
	if req := ts.request(ctx, 3); req.Method != "GET" || req.URL.Path != JWKSPath || req.Header.Get("Authorization") != "" || req.Body != nil && req.Body != http.NoBody {
		t.Errorf("JWKS request: %s %s, Authorization %q", req.Method, req.URL.Path, req.Header.Get("Authorization"))
	}
}

// manyKeys is a normalized Config over n generated credentials.
func manyKeys(tb testing.TB, n int) Config {
	tb.Helper()
	creds := make([]Credential, n)
	for i := range creds {
		creds[i] = Credential{ID: fmt.Sprintf("kgc_%028d", i), Secret: fmt.Sprintf("s%042d", i)}
	}
	cfg, err := normalize(Config{URL: "http://127.0.0.1:1", Credentials: creds, Duration: 1})
	if err != nil {
		tb.Fatal(err)
	}
	return cfg
}

// prepareMeasured prepares cfg's targets and reports what they added to
// the heap after a collection: bytes and objects.
func prepareMeasured(tb testing.TB, cfg Config) (ts *targets, bytes, objects int64) {
	tb.Helper()
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	ts, _, err := prepare(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	return ts, int64(after.HeapAlloc) - int64(before.HeapAlloc), int64(after.HeapObjects) - int64(before.HeapObjects)
}

// TestTargetsHoldNoObjectPerCredential: a run over many keys keeps their
// Authorization headers in one block, so its collector has no object per
// key to mark at every cycle of the run.
func TestTargetsHoldNoObjectPerCredential(t *testing.T) {
	const keys = 20_000
	cfg := manyKeys(t, keys)
	ts, _, grown := prepareMeasured(t, cfg)
	if grown > keys/100 {
		t.Errorf("targets for %d keys added %d objects to the heap, want under %d", keys, grown, keys/100)
	}
	if got, want := ts.request(context.Background(), keys-1).Header.Get("Authorization"), BasicAuth(cfg.Credentials[keys-1]); got != want {
		t.Errorf("the last key's header %q, want %q", got, want)
	}
}

// BenchmarkTargetsMemory reports what a run's prepared targets keep in the
// load generator's heap per credential (bytes and objects, after a
// collection), for a run over 100 000 keys: what its collector marks at
// every cycle of the run, on the cores the server under test uses too.
func BenchmarkTargetsMemory(b *testing.B) {
	const keys = 100_000
	cfg := manyKeys(b, keys)
	var bytes, objects int64
	for b.Loop() {
		var ts *targets
		ts, bytes, objects = prepareMeasured(b, cfg)
		runtime.KeepAlive(ts)
	}
	b.ReportMetric(float64(bytes)/keys, "B/key")
	b.ReportMetric(float64(objects)/keys, "objects/key")
}
