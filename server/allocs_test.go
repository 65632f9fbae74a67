//go:build !race

package server_test

// The allocation budget of one token request through the full handler
// (gin, request checks, go-oauth2, store read, HMAC, signing, answer). The
// race detector makes sync.Pool drop items, so this runs without -race
// (.ci/run has a second `go test` for it).

import (
	"bytes"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/keygate/keygate/metrics"
	"github.com/keygate/keygate/quota"
	"github.com/keygate/keygate/server"
	"github.com/keygate/keygate/server/servertest"
	"github.com/keygate/keygate/store/bolt"
	"github.com/keygate/keygate/store/storemetrics"
)

// tokenAllocBudget is what one token request may allocate in the server.
// Measured after the optimisations recorded in docs/performance.md: ES256
// 89, EdDSA 26 (Go 1.26, bbolt); 79 and 16 once the token path wrote into
// reused memory. ES256 spends about 60 of them inside
// crypto/ecdsa (its DRBG and big-number work); the rest are the bbolt read
// and the copy of its decoded record (the store keeps records it decoded
// before: store/bolt/records.go, which took 10 allocations off the JSON
// decoding), go-oauth2's token info, signing buffers and the answer. Two
// are the request ID every answer carries (server/requestid.go: its
// buffers and header value in one allocation, and the string). The budget
// leaves about ten percent for toolchain drift; raise it only with a
// profile that says why.
var tokenAllocBudget = map[string]float64{
	"ES256": 98,
	"EdDSA": 34,
}

// tokenByteBudget is what one token request may allocate in bytes: with a
// million keys in use the garbage collector's cycles are a large part of a
// token's cost, and their number follows the bytes allocated
// (docs/scale.md). The claims and the answer are written into reused
// memory (server/token.go's tokenScratch); what is left is mostly
// crypto/ecdsa's, the request's and the store read's. Measured 8 538
// (ES256) and 2 160 (EdDSA), against 12 174 and 5 745 before the scratch;
// then 8 793 and 2 416 since the embedded store's key cache keeps records
// as bytes (store/bolt/keycache.go: a hit copies out a compact record and
// decodes it, 256 bytes that die with the request, where a cached key was
// five objects that every collection marked). Ten percent is left for
// drift.
var tokenByteBudget = map[string]float64{
	"ES256": 9700,
	"EdDSA": 2700,
}

// discardWriter is a ResponseWriter that keeps nothing, so the measurement
// counts the handler's allocations only.
type discardWriter struct {
	h      http.Header
	status int
}

func (w *discardWriter) Header() http.Header         { return w.h }
func (w *discardWriter) Write(b []byte) (int, error) { return len(b), nil }
func (w *discardWriter) WriteHeader(code int)        { w.status = code }

// TestTokenAllocationBudget runs with metrics off and on: the metrics of
// the token path (HTTP count and duration, token outcome) are resolved
// before the first request, so they must fit the same budget.
func TestTokenAllocationBudget(t *testing.T) {
	for _, withMetrics := range []bool{false, true} {
		name := "metrics off"
		if withMetrics {
			name = "metrics on"
		}
		t.Run(name, func(t *testing.T) { tokenAllocationBudget(t, withMetrics, false, false) })
	}
	// Issuance quotas (server/quota.go): a key quota and a team quota
	// cost the RateLimit header value, one allocation.
	t.Run("quotas on", func(t *testing.T) { tokenAllocationBudget(t, false, true, false) })
	// Every key policy field set (server/keypolicy.go): the checks
	// themselves allocate nothing; copying the record's lists does.
	t.Run("policy set", func(t *testing.T) { tokenAllocationBudget(t, false, false, true) })
}

// policyAllocs is what a key with every policy field set may add to a
// token request (measured: 3 on bbolt): the copies of its audience and
// CIDR lists and its metadata out of the store's decoded record. The
// checks, the audience choice and the expiry allocate nothing, and
// metadata_claims is off, as by default.
const policyAllocs = 4

// policyBytes is what those copies may add in bytes (measured: about 480;
// about 660 since a hit decodes the policy's fields from the cached record).
const policyBytes = 720

// quotaAllocs is what issuance quotas may add to a token request.
const quotaAllocs = 1

func tokenAllocationBudget(t *testing.T, withMetrics, withQuotas, withPolicy bool) {
	for alg, budget := range tokenAllocBudget {
		t.Run(alg, func(t *testing.T) {
			cfg := servertest.Config{Options: server.Options{SigningAlg: alg}}
			if withQuotas {
				big := quota.Policy{Limit: quota.MaxLimit, Per: quota.Day, Mode: quota.Enforce}
				cfg.Options.TokenQuotaPerKey, cfg.Options.TokenQuotaPerTeam = big, big
				budget += quotaAllocs
			}
			if withMetrics {
				// As `keygate serve` runs with metrics_listen: metrics in the
				// server and the store measured (cmd/keygate/serve.go).
				met := metrics.New(metrics.BuildInfo{})
				cfg.Options.Metrics = met
				b, err := bolt.Open(filepath.Join(t.TempDir(), "keygate.db"))
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { b.Close() })
				cfg.Backend = servertest.Existing(storemetrics.Wrap(b, "bolt", met))
			}
			if withPolicy {
				cfg.Options.AudiencesAllowed = []string{"https://api.example.com/accounting"}
				budget += policyAllocs
			}
			e := startEnv(t, cfg)
			k := e.CreateKey(t, "bench", "bench", permAccounting)
			if withPolicy {
				// httptest's requests come from 192.0.2.1.
				k = patchPolicy(t, e, k)
			}
			auth := servertest.BasicAuth(k.ClientID, k.ClientSecret)
			body := []byte(benchTokenBody)

			const runs = 200
			// AllocsPerRun takes runs+1, the bytes' measurement runs more:
			// three rounds, the least counted, since TotalAlloc counts
			// every goroutine's allocations and the process's background
			// work (another package's tests share the cores) may land in
			// one round, not in all three.
			const byteRounds = 3
			reqs := make([]*http.Request, (1+byteRounds)*runs+1)
			for i := range reqs {
				r := httptest.NewRequest(http.MethodPost, "/oauth/token", nil)
				r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
				r.Header.Set("Authorization", auth)
				r.Body = io.NopCloser(bytes.NewReader(body))
				r.ContentLength = int64(len(body))
				reqs[i] = r
			}
			w := &discardWriter{h: http.Header{}}
			i := 0
			allocs := testing.AllocsPerRun(runs, func() {
				clear(w.h)
				w.status = 0
				e.Server.ServeHTTP(w, reqs[i])
				i++
				if w.status != http.StatusOK {
					t.Fatalf("status %d", w.status)
				}
			})
			perToken := math.Inf(1)
			for range byteRounds {
				var before, after runtime.MemStats
				runtime.ReadMemStats(&before)
				for range runs {
					e.Server.ServeHTTP(w, reqs[i])
					i++
				}
				runtime.ReadMemStats(&after)
				perToken = min(perToken, float64(after.TotalAlloc-before.TotalAlloc)/runs)
			}
			byteBudget := tokenByteBudget[alg]
			if withPolicy {
				byteBudget += policyBytes
			}
			t.Logf("%s: %.0f bytes per token request (budget %.0f)", alg, perToken, byteBudget)
			if perToken > byteBudget {
				t.Errorf("%s token request allocates %.0f bytes, over the budget of %.0f: profile with "+
					"go test -run '^$' -bench TokenEndpointAlg -memprofile mem.out ./server/", alg, perToken, byteBudget)
			}
			t.Logf("%s: %.0f allocs per token request (budget %.0f)", alg, allocs, budget)
			if allocs > budget {
				t.Errorf("%s token request allocates %.0f times, over the budget of %.0f: profile with "+
					"go test -run '^$' -bench TokenEndpointAlg -memprofile mem.out ./server/", alg, allocs, budget)
			}
		})
	}
}
