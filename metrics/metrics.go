// Package metrics defines every Prometheus metric keygate exports, on a
// registry of its own (never the prometheus default registry), so that two
// keygates in one test process, or a library importing keygate, never
// collide. docs/metrics.md lists each metric with its labels.
//
// Cardinality is closed by construction: no label takes a client ID, team
// ID, token or any other value a caller chooses. Routes are the router's
// patterns (or Unmatched), methods one of Methods (else "other"), status
// codes numbers HTTP bounds, token outcomes one of TokenOutcomes, store
// operations the store interface's method names.
//
// A nil *Metrics is valid everywhere and records nothing, so that code on
// the hot path needs no second branch; the server skips its middleware
// altogether when it has no Metrics. The children of labelled metrics that
// the hot path uses are resolved once and kept (Route, StoreOp,
// TokenOutcome), never per request: WithLabelValues hashes its labels and
// may allocate.
//
// The package imports no HTTP framework: the server, the store decorator
// (package storemetrics), lastused and the Redis key cache record through
// it or through small interfaces of their own.
package metrics

import (
	"net/http"
	"runtime"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

const namespace = "keygate"

// Unmatched is the route label of a request that matched no route, so
// that scanners probing random paths add one series, not one per path.
const Unmatched = "unmatched"

// OtherMethod is the method label of any method outside Methods.
const OtherMethod = "other"

// Methods are the HTTP methods that keep their own label value.
var Methods = []string{"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"}

// TokenOutcomes is the closed set of keygate_token_requests_total's
// outcome label: "issued" and the RFC 6749 §5.2 error codes the token
// endpoint answers (server/oauth2.go), plus OtherOutcome should a new code
// ever be added without being listed here (a test in package server keeps
// that from happening).
var TokenOutcomes = []string{
	"issued",
	"invalid_request",
	"invalid_client",
	"invalid_scope",
	"unsupported_grant_type",
	"server_error",
	"temporarily_unavailable",
	OtherOutcome,
}

// OtherOutcome is the outcome of a token request whose error code is not in
// TokenOutcomes.
const OtherOutcome = "other"

// commonCodes are the status codes whose counters each route resolves in
// keeps after their first use; any other code is looked up each time it
// happens (rare by definition).
var commonCodes = [...]int{200, 201, 204, 302, 304, 400, 401, 403, 404, 405, 409, 413, 415, 429, 500, 503}

// BuildInfo labels keygate_build_info.
type BuildInfo struct {
	Version, Revision string
}

// Metrics holds keygate's metrics and the registry they are on. Create it
// with New; a nil *Metrics records nothing.
type Metrics struct {
	reg *prometheus.Registry

	httpRequests  *prometheus.CounterVec
	httpDuration  *prometheus.HistogramVec
	tokenRequests *prometheus.CounterVec
	tokenByCode   map[string]prometheus.Counter

	storeDuration  *prometheus.HistogramVec
	keyCache       *prometheus.CounterVec
	keyCacheHit    prometheus.Counter
	keyCacheMiss   prometheus.Counter
	keyCacheBypass prometheus.Counter

	lastUsedPending prometheus.Gauge
	lastUsedFlush   prometheus.Histogram

	statusListSize      prometheus.Gauge
	statusListUpdatedAt prometheus.Gauge

	webhookBacklog *prometheus.GaugeVec // webhook.go

	throttled map[string]prometheus.Counter // by ThrottledEndpoints
}

// ThrottledEndpoints are the values of keygate_throttled_requests_total's
// endpoint label: where keygate refuses a caller over a rate limit
// (/oauth/introspect's introspection_rate, /oauth/revoke's
// revocation_rate) or throttles failed authentication (package throttle:
// /oauth/token, /oauth/introspect, /oauth/revoke and the management API,
// "management"). A closed set.
var ThrottledEndpoints = []string{"token", "introspect", "revoke", "management"}

// New creates the metrics on a fresh registry, with the Go runtime and
// process collectors and keygate_build_info.
func New(bi BuildInfo) *Metrics {
	reg := prometheus.NewRegistry()
	m := &Metrics{reg: reg}
	f := func(c prometheus.Collector) { reg.MustRegister(c) }

	f(collectors.NewGoCollector())
	f(collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	buildInfo := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: namespace, Name: "build_info",
		Help: "Always 1; the labels say which keygate is running.",
	}, []string{"version", "revision", "goversion"})
	f(buildInfo)
	buildInfo.WithLabelValues(orUnknown(bi.Version), orUnknown(bi.Revision), runtime.Version()).Set(1)

	m.httpRequests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Subsystem: "http", Name: "requests_total",
		Help: "HTTP requests answered, by route pattern, method and status code.",
	}, []string{"route", "method", "code"})
	m.httpDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: namespace, Subsystem: "http", Name: "request_duration_seconds",
		Help:    "Time to answer an HTTP request, by route pattern and method.",
		Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
	}, []string{"route", "method"})
	m.tokenRequests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Name: "token_requests_total",
		Help: "POST /oauth/token answers by outcome: issued, or the RFC 6749 error code.",
	}, []string{"outcome"})
	f(m.httpRequests)
	f(m.httpDuration)
	f(m.tokenRequests)
	m.tokenByCode = make(map[string]prometheus.Counter, len(TokenOutcomes))
	for _, o := range TokenOutcomes {
		m.tokenByCode[o] = m.tokenRequests.WithLabelValues(o) // every outcome shows from the start, at 0
	}

	throttled := prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Name: "throttled_requests_total",
		Help: "Requests refused with 429 over a rate limit, by endpoint.",
	}, []string{"endpoint"})
	f(throttled)
	m.throttled = make(map[string]prometheus.Counter, len(ThrottledEndpoints))
	for _, e := range ThrottledEndpoints {
		m.throttled[e] = throttled.WithLabelValues(e)
	}

	m.storeDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: namespace, Subsystem: "store", Name: "operation_duration_seconds",
		Help:    "Time of one key store call, by operation, backend and result (ok or error).",
		Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 5},
	}, []string{"operation", "backend", "result"})
	m.keyCache = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Subsystem: "redis", Name: "key_cache_requests_total",
		Help: "Key record reads of the Redis key cache: hit (from memory), miss (not cached: read from Redis), bypassed (cache not in use: read from Redis).",
	}, []string{"result"})
	f(m.storeDuration)
	f(m.keyCache)
	m.keyCacheHit = m.keyCache.WithLabelValues("hit")
	m.keyCacheMiss = m.keyCache.WithLabelValues("miss")
	m.keyCacheBypass = m.keyCache.WithLabelValues("bypassed")

	m.lastUsedPending = prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: namespace, Subsystem: "last_used", Name: "pending",
		Help: "Keys whose last use is recorded in memory but not yet written, after the latest flush.",
	})
	m.lastUsedFlush = prometheus.NewHistogram(prometheus.HistogramOpts{
		Namespace: namespace, Subsystem: "last_used", Name: "flush_duration_seconds",
		Help:    "Time of one last-used flush that wrote to the store.",
		Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 5},
	})
	m.statusListSize = prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: namespace, Subsystem: "status_list", Name: "indices",
		Help: "Size of the token status list last built, in indices (a whole number of blocks).",
	})
	m.statusListUpdatedAt = prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: namespace, Subsystem: "status_list", Name: "built_timestamp_seconds",
		Help: "Unix time the status list served was built; time() minus this is its age.",
	})
	f(m.lastUsedPending)
	f(m.lastUsedFlush)
	f(m.statusListSize)
	f(m.statusListUpdatedAt)
	m.webhookBacklog = newWebhookBacklog(f)
	return m
}

func orUnknown(s string) string {
	if s == "" {
		return "unknown"
	}
	return s
}

// Registry is the registry the metrics are on (for tests and for Handler).
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// Handler serves the registry in the Prometheus exposition formats.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
}

// Route is a route's HTTP metrics. Each series (method, code) is resolved
// the first time it is used and kept: afterwards observing a request is an
// atomic load and a few atomic adds, with no label hashing or allocation.
// Series appear only once used, so a scrape does not carry every
// route × method × code combination at 0.
type Route struct {
	m        *Metrics
	route    string
	duration [8]lazy[prometheus.Observer]                  // by MethodIndex
	requests [8][len(commonCodes)]lazy[prometheus.Counter] // by MethodIndex, then commonCodes index
}

// lazy is a child of a metric vector, resolved on first use. Two first
// uses at once both resolve it; WithLabelValues returns the same child.
type lazy[T any] struct{ p atomic.Pointer[T] }

func (l *lazy[T]) get(resolve func() T) T {
	if p := l.p.Load(); p != nil {
		return *p
	}
	v := resolve()
	l.p.Store(&v)
	return v
}

// Route returns the HTTP metrics of one route pattern (use Unmatched for
// requests that matched none). Call it when routes are registered.
func (m *Metrics) Route(pattern string) *Route {
	if m == nil {
		return nil
	}
	return &Route{m: m, route: pattern}
}

// Observe records one answered request.
func (r *Route) Observe(method string, code int, d time.Duration) {
	if r == nil {
		return
	}
	mi := MethodIndex(method)
	r.duration[mi].get(func() prometheus.Observer {
		return r.m.httpDuration.WithLabelValues(r.route, methodLabel(mi))
	}).Observe(d.Seconds())
	for j, c := range commonCodes {
		if c == code {
			r.requests[mi][j].get(func() prometheus.Counter {
				return r.m.httpRequests.WithLabelValues(r.route, methodLabel(mi), strconv.Itoa(code))
			}).Inc()
			return
		}
	}
	if code < 100 || code > 999 {
		code = 0 // not a status code; keeps the label a 3-digit number or "0"
	}
	r.m.httpRequests.WithLabelValues(r.route, methodLabel(mi), strconv.Itoa(code)).Inc()
}

// MethodIndex maps an HTTP method to its slot: Methods' index, or
// len(Methods) for OtherMethod.
func MethodIndex(method string) int {
	switch method {
	case "GET":
		return 0
	case "HEAD":
		return 1
	case "POST":
		return 2
	case "PUT":
		return 3
	case "PATCH":
		return 4
	case "DELETE":
		return 5
	case "OPTIONS":
		return 6
	}
	return 7
}

func methodLabel(i int) string {
	if i < len(Methods) {
		return Methods[i]
	}
	return OtherMethod
}

// TokenOutcome counts one token request by outcome: "issued" or an RFC
// 6749 error code; a code outside TokenOutcomes counts as OtherOutcome.
func (m *Metrics) TokenOutcome(outcome string) {
	if m == nil {
		return
	}
	c, ok := m.tokenByCode[outcome]
	if !ok {
		c = m.tokenByCode[OtherOutcome]
	}
	c.Inc()
}

// Throttled counts a request refused over a rate limit at endpoint (one
// of ThrottledEndpoints; any other value is not counted).
func (m *Metrics) Throttled(endpoint string) {
	if m == nil {
		return
	}
	if c, ok := m.throttled[endpoint]; ok {
		c.Inc()
	}
}

// StoreOp is the latency metric of one store operation on one backend
// (package storemetrics holds one per operation). Its two series, ok and
// error, are resolved on first use, so operations a backend never sees
// add nothing to the scrape.
type StoreOp struct {
	m                  *Metrics
	operation, backend string
	ok, failed         lazy[prometheus.Observer]
}

// StoreOp returns the latency metric of operation (a store method's name
// in snake case) on backend ("bolt", "redis").
func (m *Metrics) StoreOp(operation, backend string) *StoreOp {
	return &StoreOp{m: m, operation: operation, backend: backend}
}

// Since records one call that started at start and ended with err. A
// not-found answer is an answer, not a failure: callers pass it as nil.
func (o *StoreOp) Since(start time.Time, err error) {
	took := time.Since(start).Seconds()
	if err != nil {
		o.failed.get(func() prometheus.Observer {
			return o.m.storeDuration.WithLabelValues(o.operation, o.backend, "error")
		}).Observe(took)
		return
	}
	o.ok.get(func() prometheus.Observer {
		return o.m.storeDuration.WithLabelValues(o.operation, o.backend, "ok")
	}).Observe(took)
}

// KeyCacheHit, KeyCacheMiss and KeyCacheBypassed count one read of the
// Redis key cache (store/redis/cache.go's KeyCacheObserver): served from
// memory, read from Redis because the record was not cached (or had
// expired), or read from Redis because the cache was not in use (its
// invalidation subscription unconfirmed).
func (m *Metrics) KeyCacheHit() {
	if m != nil {
		m.keyCacheHit.Inc()
	}
}

// KeyCacheMiss: see KeyCacheHit.
func (m *Metrics) KeyCacheMiss() {
	if m != nil {
		m.keyCacheMiss.Inc()
	}
}

// KeyCacheBypassed: see KeyCacheHit.
func (m *Metrics) KeyCacheBypassed() {
	if m != nil {
		m.keyCacheBypass.Inc()
	}
}

// LastUsedFlushed records one last-used flush: how many keys are still
// pending after it and how long its store write took (0 when it wrote
// nothing, which is not observed).
func (m *Metrics) LastUsedFlushed(pending int, took time.Duration) {
	if m == nil {
		return
	}
	m.lastUsedPending.Set(float64(pending))
	if took > 0 {
		m.lastUsedFlush.Observe(took.Seconds())
	}
}

// StatusListBuilt records a freshly built status list: its highest index
// and when it was built.
func (m *Metrics) StatusListBuilt(indices int64, at time.Time) {
	if m == nil {
		return
	}
	m.statusListSize.Set(float64(indices))
	m.statusListUpdatedAt.Set(float64(at.UnixNano()) / 1e9)
}
