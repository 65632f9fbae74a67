package server

import (
	"context"
	"log/slog"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/keygate/keygate/apikey"
	"github.com/keygate/keygate/config"
	"github.com/keygate/keygate/metrics"
	"github.com/keygate/keygate/verify"
)

// httpMetrics records every request's count and duration under its route
// pattern (gin's FullPath), never its path: a path can carry a team or
// client ID, and random paths from a scanner would each make a series.
// Requests that matched no route, or a route only by another method (a
// 405), count under unmatched. The routes' metrics are resolved before the
// first request (routes), so this costs a map read and a few atomic adds.
func httpMetrics(routes map[string]*metrics.Route, unmatched *metrics.Route) gin.HandlerFunc {
	return func(c *gin.Context) {
		start := time.Now()
		c.Next()
		rm := routes[c.FullPath()]
		if rm == nil {
			rm = unmatched
		}
		rm.Observe(c.Request.Method, c.Writer.Status(), time.Since(start))
	}
}

// Where handlers leave what the access log line of a refused request
// says: the error code (an RFC 6749 error or a problem type) and the
// client ID the caller sent. Set only on refusals, so a token answered
// costs no context map.
const (
	errorCodeKey   = "keygate.error"
	callerIDKey    = "keygate.client_id"
	unmatchedRoute = "unmatched"
)

// refused records why a request is refused and, when known, the client ID
// it authenticated with or claimed, for its access log line. The ID is
// logged only if it has the form of a client ID (apikey.LoggableClientID).
func refused(c *gin.Context, code, clientID string) {
	c.Set(errorCodeKey, code)
	if clientID != "" {
		c.Set(callerIDKey, clientID)
	}
}

// accessClass is which setting decides whether a request is logged.
type accessClass uint8

const (
	classOther accessClass = iota // health, discovery, status lists, console files: debug only
	classAPI                      // /v1/…: access_log
	classOAuth                    // /oauth/…: access_log_oauth
)

func classify(c *gin.Context) accessClass {
	p := c.FullPath()
	if p == "" { // no route matched (404, 405): its path says which API it aimed at
		p = c.Request.URL.Path
	}
	switch {
	case strings.HasPrefix(p, "/oauth/"):
		return classOAuth
	case strings.HasPrefix(p, "/v1/") || p == "/v1":
		return classAPI
	}
	return classOther
}

// accessLog writes one line per request the settings ask for, at info:
// every management API request (access_log, default all) and every
// refused /oauth/* request (access_log_oauth, default errors); other
// requests at debug. A line names the route pattern, never the path or
// the query string (they can carry IDs a caller pasted or credentials),
// and never a header or the body. Lines of refused requests are
// rate-limited per source address (lineLimiter), so a guessing attack
// cannot flood the log.
//
// It also gives each request its ID before any handler runs. An issued
// token under the default settings costs this the ID, a clock reading and
// a few comparisons.
type accessLog struct {
	s          *Server
	api, oauth string // the modes: config.AccessLogAll, …Errors, …Off
	limits     *lineLimiter
}

func newAccessLog(s *Server) *accessLog {
	return &accessLog{s: s, api: s.cfg.AccessLog, oauth: s.cfg.AccessLogOAuth,
		limits: newLineLimiter(s.cfg.Now, accessLogBurst, accessLogEvery, accessLogSources)}
}

func (a *accessLog) handle(c *gin.Context) {
	start := time.Now()
	a.s.assignRequestID(c)
	c.Next()

	status := c.Writer.Status()
	var mode string
	level := slog.LevelInfo
	switch classify(c) {
	case classOAuth:
		mode = a.oauth
	case classAPI:
		mode = a.api
	default:
		mode, level = config.AccessLogAll, slog.LevelDebug
	}
	switch {
	case mode == config.AccessLogOff:
		return
	case mode == config.AccessLogErrors && status < http.StatusBadRequest:
		return
	}
	ctx := c.Request.Context()
	if !a.s.log.Enabled(ctx, level) {
		return
	}
	a.write(ctx, c, level, status, time.Since(start))
}

func (a *accessLog) write(ctx context.Context, c *gin.Context, level slog.Level, status int, d time.Duration) {
	src := a.s.sourceAddr(c)
	dropped := 0
	if status >= http.StatusBadRequest {
		ok, n, forgotten := a.limits.allow(src)
		a.sayDropped(forgotten)
		if !ok {
			return
		}
		dropped = n
	}
	route := c.FullPath()
	if route == "" {
		route = unmatchedRoute
	}
	attrs := make([]slog.Attr, 0, 11)
	attrs = append(attrs,
		slog.String("route", route),
		slog.String("method", logMethod(c.Request.Method)),
		slog.Int("status", status),
		slog.Duration("duration", d),
		slog.String("request_id", requestID(c)),
		slog.String("source", addrString(src)),
	)
	if id := clientRequestID(c); id != "" {
		attrs = append(attrs, slog.String("client_request_id", id))
	}
	if code := c.GetString(errorCodeKey); code != "" {
		attrs = append(attrs, slog.String("error", code))
	}
	if id := loggedClientID(c); id != "" {
		attrs = append(attrs, slog.String("client_id", id))
	}
	if dropped > 0 {
		attrs = append(attrs, slog.Int("dropped", dropped))
	}
	a.s.log.LogAttrs(ctx, level, "request", attrs...)
}

// loggedClientID is the client ID a log line may name: the one an admin
// token was issued to (verified), or the one a refused request sent, and
// only when it has the form of a client ID and not of a secret.
func loggedClientID(c *gin.Context) string {
	id := c.GetString(callerIDKey)
	if id == "" {
		if v, ok := c.Get(claimsKey); ok {
			if cl, _ := v.(*verify.Claims); cl != nil {
				id = cl.ClientID
			}
		}
	}
	if id == "" || !apikey.LoggableClientID(id) {
		return ""
	}
	return id
}

// flush logs what the limiter suppressed and has not said yet; Close
// calls it so no count is lost at shutdown.
func (a *accessLog) flush() { a.sayDropped(a.limits.drain()) }

func (a *accessLog) sayDropped(ds []droppedLines) {
	for _, d := range ds {
		a.s.log.Info("access log lines suppressed", "source", d.source, "dropped", d.dropped)
	}
}

// logMethod is the method as a log line names it: one of the standard
// methods, else "other" (a method is the caller's text).
func logMethod(m string) string {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
		http.MethodDelete, http.MethodOptions, http.MethodConnect, http.MethodTrace:
		return m
	}
	return "other"
}

func addrString(a netip.Addr) string {
	if !a.IsValid() {
		return "unknown"
	}
	return a.String()
}

// The access log's rate limit for refused requests, per source: a burst,
// then one line per interval; at most accessLogSources sources are
// tracked (past that, new sources share one bucket).
const (
	accessLogBurst   = 10
	accessLogEvery   = time.Second
	accessLogSources = 4096
)

// lineLimiter is a token bucket per source of refused requests, bounded
// in size, read on the server's clock (tests move it). A source is an IPv4
// address or an IPv6 /64: one holder of a /64 has all of its addresses.
// Suppressed lines are counted, and the source's next line says how many
// (or, if the source is forgotten or the server stops first, a line of
// their own). Its lock is taken only for lines of refused requests.
type lineLimiter struct {
	now   func() time.Time
	burst float64
	every time.Duration
	max   int

	mu       sync.Mutex
	buckets  map[netip.Prefix]*lineBucket
	overflow lineBucket // shared by new sources while the map is full
}

type lineBucket struct {
	tokens  float64
	last    time.Time
	dropped int
}

type droppedLines struct {
	source  string
	dropped int
}

func newLineLimiter(now func() time.Time, burst int, every time.Duration, max int) *lineLimiter {
	return &lineLimiter{now: now, burst: float64(burst), every: every, max: max,
		buckets: make(map[netip.Prefix]*lineBucket), overflow: lineBucket{tokens: float64(burst)}}
}

// sourceKey is the bucket a source address falls in.
func sourceKey(a netip.Addr) netip.Prefix {
	switch {
	case a.Is4():
		return netip.PrefixFrom(a, 32)
	case a.Is6():
		p, _ := a.Prefix(64)
		return p
	}
	return netip.Prefix{} // unknown source: one bucket for all of them
}

// allow takes a token for a line from src's bucket: ok when the line may be
// written, and then how many lines of src were suppressed before it.
// forgotten are the suppressed counts of sources it forgot to make room.
func (l *lineLimiter) allow(src netip.Addr) (ok bool, dropped int, forgotten []droppedLines) {
	now := l.now()
	key := sourceKey(src)
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.buckets[key]
	if b == nil {
		if len(l.buckets) >= l.max {
			forgotten = l.sweep(now)
		}
		if len(l.buckets) >= l.max {
			b = &l.overflow
		} else {
			b = &lineBucket{tokens: l.burst, last: now}
			l.buckets[key] = b
		}
	}
	if elapsed := now.Sub(b.last); elapsed > 0 {
		b.tokens = min(l.burst, b.tokens+float64(elapsed)/float64(l.every))
		b.last = now
	}
	if b.tokens < 1 {
		b.dropped++
		return false, 0, forgotten
	}
	b.tokens--
	dropped, b.dropped = b.dropped, 0
	return true, dropped, forgotten
}

// sweep forgets the sources whose bucket is full again (quiet for
// burst × every) and returns their suppressed counts, to be said. Called
// with l.mu held.
func (l *lineLimiter) sweep(now time.Time) (forgotten []droppedLines) {
	for k, b := range l.buckets {
		if b.tokens+float64(now.Sub(b.last))/float64(l.every) >= l.burst {
			if b.dropped > 0 {
				forgotten = append(forgotten, droppedLines{source: keyString(k), dropped: b.dropped})
			}
			delete(l.buckets, k)
		}
	}
	return forgotten
}

func keyString(k netip.Prefix) string {
	if !k.IsValid() {
		return "unknown"
	}
	if k.IsSingleIP() {
		return k.Addr().String()
	}
	return k.String()
}

// drain returns every suppressed count not yet said and forgets it.
func (l *lineLimiter) drain() []droppedLines {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []droppedLines
	for k, b := range l.buckets {
		if b.dropped > 0 {
			out = append(out, droppedLines{source: keyString(k), dropped: b.dropped})
			b.dropped = 0
		}
	}
	if l.overflow.dropped > 0 {
		out = append(out, droppedLines{source: "other", dropped: l.overflow.dropped})
		l.overflow.dropped = 0
	}
	return out
}

// reqLog is the server's logger for lines about one request: each carries
// the request's ID, so a line of a failure can be found from the answer
// the caller got (its X-Request-Id, the problem's request_id).
func (s *Server) reqLog(c *gin.Context) *slog.Logger {
	return s.log.With("request_id", requestID(c))
}

// recovery turns a panic into a 500 and logs it without the request's
// headers (gin's own recovery can dump them).
func (s *Server) recovery(c *gin.Context) {
	defer func() {
		if p := recover(); p != nil {
			if p == http.ErrAbortHandler {
				panic(p)
			}
			s.reqLog(c).Error("panic serving request", "method", logMethod(c.Request.Method), "route", c.FullPath(), "panic", p)
			c.AbortWithStatus(http.StatusInternalServerError)
		}
	}()
	c.Next()
}
