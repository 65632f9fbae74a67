package loadgen

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	hdrhistogram "github.com/HdrHistogram/hdrhistogram-go"
)

// Endpoints Run can load.
const (
	EndpointToken      = "token"      // POST /oauth/token, client credentials
	EndpointJWKS       = "jwks"       // GET /.well-known/jwks.json
	EndpointIntrospect = "introspect" // POST /oauth/introspect
)

// Paths of the endpoints below Config.URL.
const (
	TokenPath      = "/oauth/token"
	JWKSPath       = "/.well-known/jwks.json"
	IntrospectPath = "/oauth/introspect"
)

// Histogram range: 1 µs to 60 s at 3 significant digits, so every
// percentile is within 0.1 % of the true value.
const (
	histMinMicros = 1
	histMaxMicros = 60_000_000
	histDigits    = 3
)

// maxBody bounds how much of an answer is read; a token answer is about a
// kilobyte, a JWKS with RSA keys a few.
const maxBody = 1 << 20

// Credential is a key's client ID and secret.
type Credential struct {
	ID     string
	Secret string
}

// Config describes one run.
type Config struct {
	// URL is the server's base URL, e.g. http://127.0.0.1:8080.
	URL string
	// MoreURLs are further base URLs of instances of the same service
	// (sharing a store): requests go to URL and these in turn, so one load
	// generator loads them all — three load generators would cost the
	// shared cores more than one.
	MoreURLs []string
	// Endpoint is EndpointToken (default), EndpointJWKS or
	// EndpointIntrospect.
	Endpoint string
	// Credentials authenticate token and introspection requests with HTTP
	// Basic, used round-robin so load can be spread over many keys: the
	// n-th request of the run uses the (n mod len)-th, whichever connection
	// sends it, so every credential is used once per pass. Not used for the
	// JWKS.
	Credentials []Credential
	// Duration is how long requests are sent. Required.
	Duration time.Duration
	// Connections is the number of concurrent connections. Default 1.
	Connections int
	// Rate, when > 0, runs an open loop at this many requests/s in total,
	// latency measured from when each request was due; 0 runs a closed
	// loop. See the package documentation.
	Rate float64
	// Resource, when set, is sent as the token requests' RFC 8707
	// resource parameter (EndpointToken only).
	Resource string
	// IntrospectToken is the token EndpointIntrospect asks about; the
	// Credentials must be allowed to see it (a key of the same team).
	IntrospectToken string
	// Progress, when set, receives a line every second while the run goes.
	Progress io.Writer
	// Timeout bounds connecting and the wait for each answer's headers;
	// 0 means no bound but the end of the run.
	Timeout time.Duration
}

// targets are the distinct requests of a run: one per credential and base
// URL, request n being target n mod count. Kept as one prepared request
// per base URL and one Authorization header per credential, combined per
// request, rather than a prepared *http.Request per target: a run over a
// million keys held a million of those (a header map, a URL and a dozen
// more objects each), over a gigabyte the load generator's collector
// marked on the cores it shares with the server under test, and only in
// the runs over many keys (BenchmarkTargetsMemory). The headers are one
// block of bytes and their ends, not a string each: a million strings were
// still a million objects for that collector to mark at every cycle.
type targets struct {
	bases    []*http.Request // one per base URL, without Authorization
	auths    []byte          // every credential's Authorization header, one after another
	authEnds []int           // where each ends in auths; one 0 for none (JWKS)
	body     []byte          // the form, nil for GET
}

// count is the number of distinct requests: every credential to every base.
func (ts *targets) count() int64 { return int64(len(ts.bases)) * int64(len(ts.authEnds)) }

// auth is credential i's Authorization header, "" for none. It shares the
// block's memory, which nothing changes once prepared.
func (ts *targets) auth(i int64) string {
	start := 0
	if i > 0 {
		start = ts.authEnds[i-1]
	}
	if ts.authEnds[i] == start {
		return ""
	}
	return unsafe.String(&ts.auths[start], ts.authEnds[i]-start)
}

// request is target n mod count, for ctx: credential by credential, each
// to every base URL in turn, so request n goes to base n mod len(bases).
func (ts *targets) request(ctx context.Context, n int64) *http.Request {
	i := n % ts.count()
	base := ts.bases[i%int64(len(ts.bases))]
	req := base.WithContext(ctx)
	if auth := ts.auth(i / int64(len(ts.bases))); auth != "" {
		h := make(http.Header, len(base.Header)+1)
		maps.Copy(h, base.Header)
		h["Authorization"] = []string{auth}
		req.Header = h
	}
	if ts.body != nil {
		req.Body = io.NopCloser(bytes.NewReader(ts.body))
	}
	return req
}

// runner is the state every connection shares; all of it read-only while
// the run goes, but for the open loop's slot counter.
type runner struct {
	transport *http.Transport
	targets   *targets
	check     checkFunc
	start     time.Time
	end       time.Time
	// interval is the open loop's time between two requests, in
	// nanoseconds; 0 for a closed loop.
	interval float64
	// slot is the next open-loop request to send (request n is due at
	// start + n×interval).
	slot atomic.Int64
	// next is the next closed-loop request: request n goes to target
	// n mod targets.count(), whichever connection sends it, so N requests
	// visit min(N, targets.count()) targets, each once per pass.
	next atomic.Int64
}

// worker is one connection's loop and everything it records. Only the
// live counters are read by another goroutine (progress), atomically; they
// live on their own cache lines so the workers do not slow each other.
type worker struct {
	_        [64]byte
	ok, errs atomic.Int64
	_        [48]byte

	// abandoned is the open-loop slot this connection took but did not
	// send because the run was over by then; -1 if none.
	abandoned int64
	hist      *hdrhistogram.Histogram
	errors    map[string]int64
	buf       bytes.Buffer
}

// Run sends requests as cfg says until cfg.Duration has passed or ctx is
// cancelled, and returns what it measured. Failed requests are results, not
// errors: the error is for a config that cannot run.
func Run(ctx context.Context, cfg Config) (*Result, error) {
	cfg, err := normalize(cfg)
	if err != nil {
		return nil, err
	}
	targets, check, err := prepare(cfg)
	if err != nil {
		return nil, err
	}
	// The targets hold what the requests need; cfg lives on to the end of
	// the run, and its credentials (two strings each) need not.
	cfg.Credentials = nil
	dialTimeout := 30 * time.Second
	if cfg.Timeout > 0 {
		dialTimeout = cfg.Timeout
	}
	tr := &http.Transport{
		// No Proxy: a benchmark on loopback must not detour through one
		// configured in the environment.
		DialContext: (&net.Dialer{Timeout: dialTimeout, KeepAlive: 30 * time.Second}).DialContext,
		// Every worker may keep a connection to every base URL.
		MaxIdleConns:        cfg.Connections * (1 + len(cfg.MoreURLs)),
		MaxIdleConnsPerHost: cfg.Connections,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
		TLSHandshakeTimeout: dialTimeout,
		// The per-request timeout, kept in the transport so a request
		// costs no context and timer of its own.
		ResponseHeaderTimeout: cfg.Timeout,
	}
	defer tr.CloseIdleConnections()

	r := &runner{transport: tr, targets: targets, check: check}
	if cfg.Rate > 0 {
		r.interval = float64(time.Second) / cfg.Rate
	}
	workers := make([]*worker, cfg.Connections)
	for i := range workers {
		workers[i] = &worker{
			abandoned: -1,
			hist:      hdrhistogram.New(histMinMicros, histMaxMicros, histDigits),
			errors:    map[string]int64{},
		}
	}

	r.start = time.Now()
	r.end = r.start.Add(cfg.Duration)
	runCtx, cancel := context.WithDeadline(ctx, r.end)
	defer cancel()

	var wg sync.WaitGroup
	for _, w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			w.run(runCtx, r)
		}()
	}
	progressDone := make(chan struct{})
	stopProgress := make(chan struct{})
	go func() {
		defer close(progressDone)
		if cfg.Progress != nil {
			progress(cfg.Progress, r.start, workers, stopProgress)
		}
	}()
	wg.Wait()
	stop := time.Now()
	close(stopProgress)
	<-progressDone
	if stop.After(r.end) {
		stop = r.end
	}
	return collect(cfg, r, workers, stop.Sub(r.start)), nil
}

func normalize(cfg Config) (Config, error) {
	if cfg.Endpoint == "" {
		cfg.Endpoint = EndpointToken
	}
	if cfg.Connections == 0 {
		cfg.Connections = 1
	}
	switch {
	case cfg.URL == "":
		return cfg, errors.New("loadgen: URL is required")
	case cfg.Duration <= 0:
		return cfg, errors.New("loadgen: Duration must be positive")
	case cfg.Connections < 0:
		return cfg, errors.New("loadgen: Connections must be positive")
	case cfg.Rate < 0 || math.IsNaN(cfg.Rate) || math.IsInf(cfg.Rate, 0):
		return cfg, errors.New("loadgen: Rate must be 0 (closed loop) or a positive number of requests/s")
	case cfg.Timeout < 0:
		return cfg, errors.New("loadgen: Timeout must not be negative")
	}
	u, err := url.Parse(cfg.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return cfg, fmt.Errorf("loadgen: URL %q is not an http(s) base URL", cfg.URL)
	}
	cfg.URL = strings.TrimRight(cfg.URL, "/")
	for i, m := range cfg.MoreURLs {
		u, err := url.Parse(m)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return cfg, fmt.Errorf("loadgen: URL %q is not an http(s) base URL", m)
		}
		cfg.MoreURLs[i] = strings.TrimRight(m, "/")
	}
	switch cfg.Endpoint {
	case EndpointJWKS:
	case EndpointToken, EndpointIntrospect:
		if len(cfg.Credentials) == 0 {
			return cfg, fmt.Errorf("loadgen: the %s endpoint needs Credentials", cfg.Endpoint)
		}
		for _, c := range cfg.Credentials {
			if c.ID == "" || c.Secret == "" {
				return cfg, errors.New("loadgen: a credential has an empty client ID or secret")
			}
		}
		if cfg.Endpoint == EndpointIntrospect && cfg.IntrospectToken == "" {
			return cfg, errors.New("loadgen: the introspect endpoint needs IntrospectToken")
		}
	default:
		return cfg, fmt.Errorf("loadgen: unknown endpoint %q (token, jwks or introspect)", cfg.Endpoint)
	}
	return cfg, nil
}

// BasicAuth is the Authorization header for c: RFC 6749 §2.3.1 form-encodes
// ID and secret before Base64.
func BasicAuth(c Credential) string { return string(appendBasicAuth(nil, c)) }

func appendBasicAuth(dst []byte, c Credential) []byte {
	raw := url.QueryEscape(c.ID) + ":" + url.QueryEscape(c.Secret)
	return base64.StdEncoding.AppendEncode(append(dst, "Basic "...), []byte(raw))
}

// basicAuthLen is len(BasicAuth(c)).
func basicAuthLen(c Credential) int {
	return len("Basic ") + base64.StdEncoding.EncodedLen(len(url.QueryEscape(c.ID))+1+len(url.QueryEscape(c.Secret)))
}

// prepare builds what every request is made from: a request per base URL
// and an Authorization header per credential.
func prepare(cfg Config) (*targets, checkFunc, error) {
	var method, path string
	var form []byte
	var check checkFunc
	switch cfg.Endpoint {
	case EndpointToken:
		method, path, form, check = http.MethodPost, TokenPath, []byte("grant_type=client_credentials"), hasTokenField
		if cfg.Resource != "" {
			form = append(form, "&resource="+url.QueryEscape(cfg.Resource)...)
		}
	case EndpointJWKS:
		method, path, check = http.MethodGet, JWKSPath, hasKeys
	case EndpointIntrospect:
		method, path, check = http.MethodPost, IntrospectPath, isActive
		form = []byte(url.Values{"token": {cfg.IntrospectToken}}.Encode())
	}
	ts := &targets{body: form}
	for _, base := range append([]string{cfg.URL}, cfg.MoreURLs...) {
		var body io.Reader = http.NoBody
		if form != nil {
			body = bytes.NewReader(form)
		}
		req, err := http.NewRequest(method, base+path, body)
		if err != nil {
			return nil, nil, fmt.Errorf("loadgen: %w", err)
		}
		req.Header.Set("Accept", "application/json")
		req.Header.Set("User-Agent", "keygate-bench")
		if form != nil {
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		}
		ts.bases = append(ts.bases, req)
	}
	if cfg.Endpoint == EndpointJWKS || len(cfg.Credentials) == 0 {
		ts.authEnds = []int{0}
		return ts, check, nil
	}
	size := 0
	for _, c := range cfg.Credentials {
		size += basicAuthLen(c)
	}
	ts.auths = make([]byte, 0, size)
	ts.authEnds = make([]int, len(cfg.Credentials))
	for i, c := range cfg.Credentials {
		ts.auths = appendBasicAuth(ts.auths, c)
		ts.authEnds[i] = len(ts.auths)
	}
	return ts, check, nil
}

// run is one connection: the closed or open loop until the end.
func (w *worker) run(ctx context.Context, r *runner) {
	var timer *time.Timer
	for {
		var due time.Time
		slot := int64(-1)
		var n int64 // the request's number: its target is n mod targets.count()
		if r.interval > 0 {
			slot = r.slot.Add(1) - 1
			n = slot
			due = r.start.Add(time.Duration(float64(slot) * r.interval))
			if !due.Before(r.end) {
				return
			}
			if d := time.Until(due); d > 0 {
				if timer == nil {
					timer = time.NewTimer(d)
				} else {
					timer.Reset(d)
				}
				select {
				case <-timer.C:
				case <-ctx.Done():
					w.abandoned = slot
					return
				}
			}
		} else {
			n = r.next.Add(1) - 1
		}
		now := time.Now()
		if !now.Before(r.end) || ctx.Err() != nil {
			w.abandoned = slot
			return
		}
		if r.interval == 0 {
			due = now
		}
		cause, aborted := w.do(ctx, r, r.targets.request(ctx, n))
		switch {
		case aborted:
			return
		case cause != "":
			w.errors[cause]++
			w.errs.Add(1)
		default:
			us := time.Since(due).Microseconds()
			_ = w.hist.RecordValue(min(max(us, histMinMicros), histMaxMicros))
			w.ok.Add(1)
		}
	}
}

// do sends one request and checks its answer. cause is "" for a success;
// aborted means the run ended while the request was in flight.
func (w *worker) do(ctx context.Context, r *runner, req *http.Request) (cause string, aborted bool) {
	resp, err := r.transport.RoundTrip(req)
	if err != nil {
		return failure(ctx, err)
	}
	w.buf.Reset()
	_, err = w.buf.ReadFrom(io.LimitReader(resp.Body, maxBody+1))
	resp.Body.Close()
	if err != nil {
		return failure(ctx, err)
	}
	if resp.StatusCode != http.StatusOK {
		return statusCause(resp.StatusCode), false
	}
	if w.buf.Len() > maxBody || !r.check(w.buf.Bytes()) {
		return ErrBadBody, false
	}
	return "", false
}

// failure classifies a request that got no complete answer.
func failure(runCtx context.Context, err error) (cause string, aborted bool) {
	var ne net.Error
	switch {
	case runCtx.Err() != nil:
		return "", true
	case errors.As(err, &ne) && ne.Timeout():
		return ErrTimeout, false
	default:
		return ErrTransport, false
	}
}

var statusCauses = map[int]string{}

func init() {
	for code := 100; code < 600; code++ {
		statusCauses[code] = strconv.Itoa(code)
	}
}

func statusCause(code int) string {
	if s, ok := statusCauses[code]; ok {
		return s
	}
	return strconv.Itoa(code)
}

// progress prints a line a second until stop is closed.
func progress(out io.Writer, start time.Time, workers []*worker, stop <-chan struct{}) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	var lastOK int64
	last := start
	for {
		select {
		case <-stop:
			return
		case now := <-t.C:
			var ok, errs int64
			for _, w := range workers {
				ok += w.ok.Load()
				errs += w.errs.Load()
			}
			fmt.Fprintf(out, "%6.1fs  %9.0f req/s  %10d ok  %8d errors\n",
				now.Sub(start).Seconds(), float64(ok-lastOK)/now.Sub(last).Seconds(), ok, errs)
			lastOK, last = ok, now
		}
	}
}

// unsentGrace: requests due this close to the end are treated like those in
// flight at the end — their answers could not have arrived in time — and are
// not reported as unsent when a timer woke a little late.
const unsentGrace = 5 * time.Millisecond

// unsent counts open-loop requests due before the end (less unsentGrace)
// that no connection sent: those no connection took in time, and those a
// connection took but found the run over when it got to them.
func unsent(r *runner, workers []*worker, elapsed time.Duration) int64 {
	cutoff := elapsed - unsentGrace
	if cutoff <= 0 {
		return 0
	}
	due := int64(math.Ceil(float64(cutoff) / r.interval)) // slots n with n×interval < cutoff
	n := max(0, due-r.slot.Load())
	for _, w := range workers {
		if w.abandoned >= 0 && w.abandoned < due {
			n++
		}
	}
	return n
}

// collect merges the workers' counts and histograms.
func collect(cfg Config, r *runner, workers []*worker, elapsed time.Duration) *Result {
	res := &Result{
		URL: cfg.URL, Endpoint: cfg.Endpoint, Connections: cfg.Connections, Rate: cfg.Rate,
		Duration: elapsed, Errors: map[string]int64{},
	}
	hist := hdrhistogram.New(histMinMicros, histMaxMicros, histDigits)
	for _, w := range workers {
		hist.Merge(w.hist)
		for k, v := range w.errors {
			res.Errors[k] += v
			res.Requests += v
		}
		res.Successes += w.ok.Load()
	}
	res.Requests += res.Successes
	if r.interval > 0 {
		res.Unsent = unsent(r, workers, elapsed)
	}
	if elapsed > 0 {
		res.RPS = float64(res.Successes) / elapsed.Seconds()
	}
	us := func(v int64) time.Duration { return time.Duration(v) * time.Microsecond }
	res.Mean = time.Duration(hist.Mean() * float64(time.Microsecond))
	res.P50 = us(hist.ValueAtQuantile(50))
	res.P90 = us(hist.ValueAtQuantile(90))
	res.P99 = us(hist.ValueAtQuantile(99))
	res.P999 = us(hist.ValueAtQuantile(99.9))
	if hist.TotalCount() > 0 {
		res.Max = us(hist.Max())
	}
	return res
}

// FetchToken gets one access token for c from the token endpoint below
// baseURL: the token an introspection run asks about.
func FetchToken(ctx context.Context, baseURL string, c Credential) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimRight(baseURL, "/")+TokenPath,
		strings.NewReader("grant_type=client_credentials"))
	if err != nil {
		return "", err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Authorization", BasicAuth(c))
	hc := &http.Client{Timeout: 30 * time.Second}
	resp, err := hc.Do(req)
	if err != nil {
		return "", fmt.Errorf("get a token: %w", err)
	}
	defer resp.Body.Close()
	var body struct {
		AccessToken      string `json:"access_token"`
		Error            string `json:"error"`
		ErrorDescription string `json:"error_description"`
	}
	err = json.NewDecoder(io.LimitReader(resp.Body, maxBody)).Decode(&body)
	switch {
	case resp.StatusCode != http.StatusOK:
		return "", fmt.Errorf("get a token: %s answered %d %s %s", TokenPath, resp.StatusCode, body.Error, body.ErrorDescription)
	case err != nil || body.AccessToken == "":
		return "", fmt.Errorf("get a token: %s answered 200 without an access_token", TokenPath)
	}
	return body.AccessToken, nil
}
