package server_test

// Token endpoint benchmarks through the full HTTP handler (gin, request
// checks, go-oauth2, store read, HMAC, signing, JSON answer). They run only
// with -bench:
//
//	go test -run '^$' -bench . -benchtime 2000x ./server/

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/metrics"
	"github.com/keygate/keygate/quota"
	"github.com/keygate/keygate/server"
	"github.com/keygate/keygate/server/servertest"
	"github.com/keygate/keygate/store/storemetrics"
	"github.com/keygate/keygate/store/storetest"
)

const benchTokenBody = "grant_type=client_credentials"

// benchTokenSetup returns the handler and a key's Basic header.
func benchTokenSetup(b *testing.B, alg string) (http.Handler, string) {
	b.Helper()
	e := newTestEnv(b, server.Options{SigningAlg: alg})
	k := e.CreateKey(b, "bench", "bench", permAccounting)
	return e.Server, servertest.BasicAuth(k.ClientID, k.ClientSecret)
}

// tokenOnce sends one token request straight to the handler and reports
// the status.
func tokenOnce(h http.Handler, auth string) (int, string) {
	req := httptest.NewRequest(http.MethodPost, "/oauth/token", strings.NewReader(benchTokenBody))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Authorization", auth)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != http.StatusOK {
		return rec.Code, rec.Body.String()
	}
	return rec.Code, ""
}

func BenchmarkTokenEndpoint(b *testing.B) {
	h, auth := benchTokenSetup(b, "ES256")
	b.Run("serial", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if code, body := tokenOnce(h, auth); code != http.StatusOK {
				b.Fatalf("status %d: %s", code, body)
			}
		}
	})
	b.Run("parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if code, body := tokenOnce(h, auth); code != http.StatusOK {
					b.Errorf("status %d: %s", code, body) // Fatal is not allowed off the benchmark goroutine
					return
				}
			}
		})
	})
}

func BenchmarkTokenEndpointAlg(b *testing.B) {
	for _, alg := range []string{"ES256", "RS256", "EdDSA"} {
		b.Run(alg, func(b *testing.B) {
			h, auth := benchTokenSetup(b, alg)
			b.ReportAllocs()
			for b.Loop() {
				if code, body := tokenOnce(h, auth); code != http.StatusOK {
					b.Fatalf("status %d: %s", code, body)
				}
			}
		})
	}
}

// BenchmarkTokenEndpointMetrics is the cost of metrics on the token path,
// off and on (metrics in the server, the store measured, as `keygate serve`
// runs with metrics_listen). EdDSA signs fastest, so the difference shows
// most there.
func BenchmarkTokenEndpointMetrics(b *testing.B) {
	for _, alg := range []string{"EdDSA", "ES256"} {
		for _, on := range []bool{false, true} {
			name := alg + "/metrics_off"
			if on {
				name = alg + "/metrics_on"
			}
			b.Run(name, func(b *testing.B) {
				cfg := servertest.Config{Options: server.Options{SigningAlg: alg}, Backend: servertest.Memory()}
				if on {
					met := metrics.New(metrics.BuildInfo{})
					cfg.Options.Metrics = met
					cfg.Backend = servertest.Existing(storemetrics.Wrap(storetest.NewMemStore(), "memory", met))
				}
				e := startEnv(b, cfg)
				k := e.CreateKey(b, "bench", "bench", permAccounting)
				auth := servertest.BasicAuth(k.ClientID, k.ClientSecret)
				b.ReportAllocs()
				for b.Loop() {
					if code, body := tokenOnce(e.Server, auth); code != http.StatusOK {
						b.Fatalf("status %d: %s", code, body)
					}
				}
			})
		}
	}
}

// BenchmarkTokenEndpointQuota is the cost of issuance quotas on the token
// path: none, the key's own quota (read with the key), and a default key
// quota plus a team quota (two counts, both RateLimit items). The limits
// are never reached. EdDSA signs fastest, so the difference shows most
// there.
func BenchmarkTokenEndpointQuota(b *testing.B) {
	big := quota.Policy{Limit: quota.MaxLimit, Per: quota.Day, Mode: quota.Enforce}
	for _, alg := range []string{"EdDSA", "ES256"} {
		for _, mode := range []string{"none", "key_own", "key_and_team"} {
			b.Run(alg+"/"+mode, func(b *testing.B) {
				opts := server.Options{SigningAlg: alg}
				if mode == "key_and_team" {
					opts.TokenQuotaPerKey, opts.TokenQuotaPerTeam = big, big
				}
				e := newTestEnv(b, opts)
				body := map[string]any{"name": "bench", "permissions": []string{permAccounting}}
				if mode == "key_own" {
					body["token_quota"] = map[string]any{"limit": big.Limit, "per": "day"}
				}
				r := e.API(b, e.AdminToken(b), http.MethodPost, "/v1/teams/bench/keys", body)
				var k keyJSON
				if err := json.Unmarshal(r.Body, &k); err != nil || r.Status != http.StatusCreated {
					b.Fatalf("create: %s", r)
				}
				auth := servertest.BasicAuth(k.ClientID, k.ClientSecret)
				b.ReportAllocs()
				for b.Loop() {
					if code, body := tokenOnce(e.Server, auth); code != http.StatusOK {
						b.Fatalf("status %d: %s", code, body)
					}
				}
			})
		}
	}
}

// BenchmarkTokenEndpointQuotaAB measures the cost of quotas as a ratio on
// a shared, noisy machine: it alternates batches of token requests between
// a keygate without quotas and one with a key and a team quota (the most
// work: two counts, both RateLimit items) in one loop, so both see the
// same load, and reports the median batch of each and their ratio.
func BenchmarkTokenEndpointQuotaAB(b *testing.B) {
	for _, alg := range []string{"EdDSA", "ES256"} {
		b.Run(alg, func(b *testing.B) {
			big := quota.Policy{Limit: quota.MaxLimit, Per: quota.Day, Mode: quota.Enforce}
			hOff, authOff := benchTokenSetup(b, alg)
			on := newTestEnv(b, server.Options{SigningAlg: alg, TokenQuotaPerKey: big, TokenQuotaPerTeam: big})
			k := on.CreateKey(b, "bench", "bench", permAccounting)
			hOn, authOn := http.Handler(on.Server), servertest.BasicAuth(k.ClientID, k.ClientSecret)
			const batch = 50
			var off, with []float64
			run := func(h http.Handler, auth string) float64 {
				start := time.Now()
				for range batch {
					if code, body := tokenOnce(h, auth); code != http.StatusOK {
						b.Fatalf("status %d: %s", code, body)
					}
				}
				return float64(time.Since(start).Nanoseconds()) / batch
			}
			for i := 0; b.Loop(); i++ {
				if i%2 == 0 {
					off = append(off, run(hOff, authOff))
					with = append(with, run(hOn, authOn))
				} else {
					with = append(with, run(hOn, authOn))
					off = append(off, run(hOff, authOff))
				}
			}
			slices.Sort(off)
			slices.Sort(with)
			mOff, mWith := off[len(off)/2], with[len(with)/2]
			b.ReportMetric(mOff, "ns/token_no_quota")
			b.ReportMetric(mWith, "ns/token_quota")
			b.ReportMetric(mWith/mOff, "ratio")
		})
	}
}

// BenchmarkTokenEndpointPolicy is the cost of a key policy on the token
// path: the same key without one and with every field set (expiry, token
// lifetime, two audiences, four CIDRs, metadata copied into tokens by
// metadata_claims), on bbolt. The README's policy figures come from
// scripts/bench.sh; this isolates the handler.
func BenchmarkTokenEndpointPolicy(b *testing.B) {
	for _, alg := range []string{"EdDSA", "ES256"} {
		for _, policy := range []bool{false, true} {
			name := alg + "/plain"
			if policy {
				name = alg + "/policy"
			}
			b.Run(name, func(b *testing.B) {
				e := startEnv(b, servertest.Config{Options: server.Options{SigningAlg: alg,
					AudiencesAllowed: []string{"https://api.example.com/accounting", "https://api.example.com/banking"},
					MetadataClaims:   []string{"tenant", "plan"}}})
				k := e.CreateKey(b, "bench", "bench", permAccounting)
				if policy {
					patchPolicy(b, e, k)
				}
				auth := servertest.BasicAuth(k.ClientID, k.ClientSecret)
				b.ReportAllocs()
				for b.Loop() {
					if code, body := tokenOnce(e.Server, auth); code != http.StatusOK {
						b.Fatalf("status %d: %s", code, body)
					}
				}
			})
		}
	}
}
