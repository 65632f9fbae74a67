package server

// POST /v1/leaked-secrets: anyone who holds a keygate secret reports it and
// its secret generation is cut off (apikey.Service.ReportLeaked). It is
// the one /v1 route without an admin token, by design: possession of the
// secret is the authority, as in secret-scanning partner programmes
// (GitHub's sends what it finds in public repositories to the issuer's
// endpoint). Whoever has a secret could use it; letting them end it gives
// nothing away.
//
// The answer never says whether a string matched: the same status and
// body for every well-formed report, and the same work per string up to
// the match (one HMAC, one index read). A match then costs its writes;
// that is no oracle worth having, since a holder of a secret learns
// whether it works at /oauth/token anyway. A store failure is a 503 or
// 500 problem, matched or not.
//
// Two body shapes: {"secrets": ["kgs_…", …]}, and GitHub's secret-scanning
// payload, a JSON array of {"token", "type", "url", "source"} (only token
// is used). GitHub signs its payloads; keygate does not check that
// signature, because it trusts possession, not the sender.

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/netip"
	"strconv"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/gin-gonic/gin"
	"golang.org/x/time/rate"

	"github.com/keygate/keygate/apikey"
	"github.com/keygate/keygate/store"
)

const (
	leakedPath = "/v1/leaked-secrets"
	// maxLeakedBody bounds a report: 100 secrets of GitHub's shape with
	// long URLs fit.
	maxLeakedBody = 64 << 10
	// maxReportedLen bounds one reported string (a secret is
	// credential.SecretLen characters; scanners may send a little more).
	maxReportedLen = 256

	// Per source address (an IPv4 address or IPv6 /64): leakedBurst
	// reports, then one every leakedEvery. A scanner batches its findings
	// in one request; a guesser gains nothing from more.
	leakedBurst   = 10
	leakedEvery   = 6 * time.Second
	leakedSources = 4096 // tracked sources; past that they share a bucket

	problemRateLimited = "urn:keygate:problem:rate-limited"
)

// leakedReport is the object shape of the body.
type leakedReport struct {
	Secrets []string `json:"secrets"`
}

// githubLeak is one element of GitHub's secret-scanning partner payload.
type githubLeak struct {
	Token  *string `json:"token"`
	Type   string  `json:"type"`
	URL    string  `json:"url"`
	Source string  `json:"source"`
}

var (
	leakedFields = jsonFields(&leakedReport{})
	githubFields = jsonFields(&githubLeak{})
)

// leakedAnswer is the one answer to every accepted report.
type leakedAnswer struct {
	// Received is how many strings the report held, matched or not.
	Received int `json:"received"`
}

func (s *Server) mountLeaked(r gin.IRoutes) {
	s.leakedLimits = newSourceLimits(s.cfg.Now, leakedBurst, leakedEvery, leakedSources)
	r.POST(leakedPath, noStore, s.reportLeaked)
}

func (s *Server) reportLeaked(c *gin.Context) {
	// The limit comes first: a refused report costs no read and no HMAC.
	src := s.sourceAddr(c)
	if ok, wait := s.leakedLimits.allow(src); !ok {
		c.Header("Retry-After", strconv.Itoa(max(1, int((wait+time.Second-1)/time.Second))))
		problem(c, http.StatusTooManyRequests, problemRateLimited, "too many reports from this address; retry later")
		return
	}
	mt, _, err := mime.ParseMediaType(c.GetHeader("Content-Type"))
	if err != nil || mt != "application/json" {
		problem(c, http.StatusUnsupportedMediaType, problemMediaType, "send the body as JSON with Content-Type: application/json")
		return
	}
	secrets, detail, status := readLeakedBody(c.Request.Body)
	if detail != "" {
		typ := problemInvalid
		if status == http.StatusRequestEntityTooLarge {
			typ = problemBodyTooLarge
		}
		problem(c, status, typ, detail)
		return
	}
	by := s.requestMeta(c)
	by.Actor = store.AuditActor{Type: store.ActorAnonymous}
	n, err := s.keys.ReportLeaked(c.Request.Context(), by, secrets)
	if err != nil {
		s.storeProblem(c, err)
		return
	}
	if n > 0 {
		// The count goes to the log only (the audit events say which keys).
		s.reqLog(c).Info("leaked secrets reported", "received", len(secrets), "cut_off", n)
	}
	c.JSON(http.StatusOK, leakedAnswer{Received: len(secrets)})
}

// readLeakedBody reads and checks a report: the strings it holds, or the
// detail and status of the problem to answer.
func readLeakedBody(r io.Reader) (secrets []string, detail string, status int) {
	body, err := io.ReadAll(io.LimitReader(r, maxLeakedBody+1))
	switch {
	case err != nil:
		return nil, "could not read the request body", http.StatusBadRequest
	case len(body) > maxLeakedBody:
		return nil, "the request body is over 64 KiB", http.StatusRequestEntityTooLarge
	case !utf8.Valid(body):
		return nil, "the body is not valid UTF-8: send JSON encoded as UTF-8 (RFC 8259)", http.StatusBadRequest
	}
	var unknown *unknownFieldError
	switch err := checkStrictJSONList(body, leakedFields, githubFields); {
	case errors.As(err, &unknown):
		return nil, fmt.Sprintf("unknown field %q: send {\"secrets\": [\"kgs_…\", …]} or GitHub's secret-scanning array of {\"token\", \"type\", \"url\", \"source\"}", unknown.name), http.StatusBadRequest
	case err != nil:
		return nil, "the body is not a report of leaked secrets: " + err.Error(), http.StatusBadRequest
	}
	if bytes.TrimLeft(body, " \t\r\n")[0] == '[' {
		var leaks []githubLeak
		if err := json.Unmarshal(body, &leaks); err != nil {
			return nil, "each element of the array must be an object whose token, type, url and source are strings", http.StatusBadRequest
		}
		for i, l := range leaks {
			if l.Token == nil {
				return nil, fmt.Sprintf("element %d has no token", i+1), http.StatusBadRequest
			}
			secrets = append(secrets, *l.Token)
		}
	} else {
		var rep leakedReport
		dec := json.NewDecoder(bytes.NewReader(body))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&rep); err != nil {
			return nil, "the body is not a report of leaked secrets: " + jsonProblem(err, &rep), http.StatusBadRequest
		}
		secrets = rep.Secrets
	}
	switch {
	case len(secrets) == 0:
		return nil, "the report holds no secret: send at least one", http.StatusBadRequest
	case len(secrets) > apikey.MaxLeakedSecrets:
		return nil, fmt.Sprintf("at most %d secrets per report, got %d; send the rest in another", apikey.MaxLeakedSecrets, len(secrets)), http.StatusBadRequest
	}
	for i, sec := range secrets {
		if sec == "" || len(sec) > maxReportedLen {
			return nil, fmt.Sprintf("secret %d is empty or longer than %d bytes", i+1, maxReportedLen), http.StatusBadRequest
		}
	}
	return secrets, "", 0
}

// sourceLimits is a token bucket per source address (an IPv4 address or
// an IPv6 /64, as the access log counts sources), on the server's clock,
// bounded in size: when the table is full, sources whose bucket is full
// again are forgotten, and if none is, new sources share one bucket.
type sourceLimits struct {
	now   func() time.Time
	every rate.Limit
	burst int
	max   int

	mu       sync.Mutex
	buckets  map[netip.Prefix]*rate.Limiter
	overflow *rate.Limiter
}

func newSourceLimits(now func() time.Time, burst int, every time.Duration, max int) *sourceLimits {
	l := &sourceLimits{now: now, every: rate.Every(every), burst: burst, max: max, buckets: map[netip.Prefix]*rate.Limiter{}}
	l.overflow = rate.NewLimiter(l.every, burst)
	return l
}

// allow takes one request of src, or says how long until one is free.
func (l *sourceLimits) allow(src netip.Addr) (bool, time.Duration) {
	now := l.now()
	key := sourceKey(src)
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.buckets[key]
	if b == nil {
		if len(l.buckets) >= l.max {
			for k, o := range l.buckets {
				if o.TokensAt(now) >= float64(l.burst) {
					delete(l.buckets, k)
				}
			}
		}
		if len(l.buckets) >= l.max {
			b = l.overflow
		} else {
			b = rate.NewLimiter(l.every, l.burst)
			l.buckets[key] = b
		}
	}
	r := b.ReserveN(now, 1)
	if d := r.DelayFrom(now); d > 0 {
		r.CancelAt(now)
		return false, d
	}
	return true, 0
}
