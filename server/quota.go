package server

// Issuance quotas at the token endpoint (package quota): after the client
// authenticated and its scope was decided, one token is counted against
// the key's quota (its own token_quota, else token_quota_per_key) and its
// team's (token_quota_per_team). An enforced quota over its limit is a 429
// with Retry-After, shaped as introspection's 429; the answers to an
// authenticated client carry the draft-ietf-httpapi-ratelimit-headers-10
// fields of the enforced quotas:
//
//	RateLimit-Policy: "hour";q=1000;w=3600, "team-day";q=50000;w=86400
//	RateLimit: "hour";r=997;t=1200, "team-day";r=41000;t=51000
//
// The key's policy is named after its period ("hour", "day"), the team's
// "team-" and its period. A quota in log mode refuses nothing and sends no
// header; the first token over it in a window writes one warning. Admin
// keys are never counted: a quota must not lock the operator out.

import (
	"strconv"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/gin-gonic/gin"
	oerrors "github.com/go-oauth2/oauth2/v4/errors"

	"github.com/keygate/keygate/apikey"
	"github.com/keygate/keygate/quota"
	"github.com/keygate/keygate/store"
)

// quotas is the server's issuance quota state.
type quotas struct {
	limiter         *quota.Limiter
	perKey, perTeam quota.Policy // the defaults (config), zero when off
	// policyHeaders caches RateLimit-Policy values by the pair of
	// policies they describe, so the token path builds none (direct
	// mapped: a collision only costs a rebuild).
	policyHeaders [64]atomic.Pointer[policyHeader]
}

type policyHeader struct {
	key, team quota.Policy
	value     []string
}

// newQuotas makes the quota state; st, when it is a quota.Shared (Redis),
// shares the counts across instances.
func newQuotas(s *Server, st store.Store) *quotas {
	opts := quota.Options{OnSharedError: func(err error) {
		s.log.Warn("token quota: the shared counter did not answer; issuing uncounted tokens for a second", "err", err)
	}}
	if sh, ok := store.Feature[quota.Shared](st); ok {
		opts.Shared = sh
	}
	return &quotas{limiter: quota.New(opts), perKey: s.cfg.TokenQuotaPerKey, perTeam: s.cfg.TokenQuotaPerTeam}
}

// overQuota counts the token key is about to get against its quotas at
// now. Over an enforced one it answers 429 and returns true; otherwise it
// sets the RateLimit fields of the enforced quotas on the answer to come.
// Without any quota it returns at once, allocating nothing.
func (t *tokenEndpoint) overQuota(c *gin.Context, key store.Key, now time.Time) bool {
	q := t.s.quotas
	if key.TeamID == "" {
		return false
	}
	kp := apikey.TokenQuotaOf(key)
	if kp.IsZero() {
		kp = q.perKey
	}
	tp := q.perTeam
	if kp.IsZero() && tp.IsZero() {
		return false
	}
	ctx := c.Request.Context()
	kd := q.limiter.Take(ctx, quota.PerKey, key.ClientID, kp, now)
	td := quota.Decision{Allowed: true}
	if kd.Allowed {
		td = q.limiter.Take(ctx, quota.PerTeam, key.TeamID, tp, now)
		if !td.Allowed {
			q.limiter.Return(quota.PerKey, key.ClientID, kp, now) // not issued after all
		}
	}
	if kd.FirstOver {
		t.s.reqLog(c).Warn("token quota of a key exceeded; issuing anyway (mode log)",
			"client_id", key.ClientID, "team_id", key.TeamID, "quota", kp.String(), "window_ends", now.Add(kd.Reset).UTC())
	}
	if td.FirstOver {
		t.s.reqLog(c).Warn("token quota of a team exceeded; issuing anyway (mode log)",
			"team_id", key.TeamID, "client_id", key.ClientID, "quota", tp.String(), "window_ends", now.Add(td.Reset).UTC())
	}
	if kp.Mode != quota.Enforce {
		kp = quota.Policy{}
	}
	if tp.Mode != quota.Enforce {
		tp = quota.Policy{}
	}
	if kp.IsZero() && tp.IsZero() {
		return false
	}
	h := c.Writer.Header()
	h["Ratelimit-Policy"] = q.policyHeader(kp, tp)
	switch {
	case !kd.Allowed:
		setRateLimit(h, kp, kd, quota.Policy{}, quota.Decision{})
		t.refuseQuota(c, key, kd, "this key's token quota ("+perText(kp)+") is used up")
		return true
	case !td.Allowed:
		setRateLimit(h, quota.Policy{}, quota.Decision{}, tp, td)
		t.refuseQuota(c, key, td, "the team's token quota ("+perText(tp)+") is used up")
		return true
	}
	setRateLimit(h, kp, kd, tp, td)
	return false
}

// refuseQuota answers 429 for an exhausted quota whose window ends after
// d.Reset, in the shape of introspection's and revocation's 429.
func (t *tokenEndpoint) refuseQuota(c *gin.Context, key store.Key, d quota.Decision, what string) {
	c.Writer.Header().Set("Retry-After", strconv.FormatInt(seconds(d.Reset), 10))
	t.fail(c, key.ClientID, &oauthError{code: oerrors.ErrInvalidRequest, status: 429,
		description: what + "; retry after " + strconv.FormatInt(seconds(d.Reset), 10) + " seconds, when its window resets"})
}

func perText(p quota.Policy) string {
	return strconv.FormatInt(p.Limit, 10) + " tokens per " + string(p.Per)
}

// seconds rounds d up to whole seconds, at least 1: a client that waits
// that long finds the new window.
func seconds(d time.Duration) int64 {
	return max(1, int64((d+time.Second-1)/time.Second))
}

// policyHeader is the RateLimit-Policy value for the pair of enforced
// policies (either may be zero), from the cache when it has it.
func (q *quotas) policyHeader(kp, tp quota.Policy) []string {
	slot := &q.policyHeaders[uint64(kp.Limit*31+tp.Limit+int64(len(kp.Per))*7+int64(len(tp.Per)))%uint64(len(q.policyHeaders))]
	if ph := slot.Load(); ph != nil && ph.key == kp && ph.team == tp {
		return ph.value
	}
	var b []byte
	for i, p := range [2]quota.Policy{kp, tp} {
		if p.IsZero() {
			continue
		}
		if len(b) > 0 {
			b = append(b, ", "...)
		}
		b = appendPolicyName(b, i == 1, p)
		b = append(b, ";q="...)
		b = strconv.AppendInt(b, p.Limit, 10)
		b = append(b, ";w="...)
		b = strconv.AppendInt(b, int64(p.Per.Duration()/time.Second), 10)
	}
	ph := &policyHeader{key: kp, team: tp, value: []string{string(b)}}
	slot.Store(ph)
	return ph.value
}

func appendPolicyName(b []byte, team bool, p quota.Policy) []byte {
	b = append(b, '"')
	if team {
		b = append(b, "team-"...)
	}
	b = append(b, p.Per...)
	return append(b, '"')
}

// rateLimitValue holds a RateLimit header value and its bytes in one
// allocation.
type rateLimitValue struct {
	v   [1]string
	buf [112]byte
}

// setRateLimit sets RateLimit for the counted, enforced policies among kp
// and tp (a zero policy, or an uncounted decision, is left out), in one
// allocation.
func setRateLimit(h map[string][]string, kp quota.Policy, kd quota.Decision, tp quota.Policy, td quota.Decision) {
	rv := new(rateLimitValue)
	b := rv.buf[:0]
	for i, item := range [2]struct {
		p quota.Policy
		d quota.Decision
	}{{kp, kd}, {tp, td}} {
		if item.p.IsZero() || (!item.d.Counted && item.d.Allowed) {
			continue
		}
		if len(b) > 0 {
			b = append(b, ", "...)
		}
		b = appendPolicyName(b, i == 1, item.p)
		b = append(b, ";r="...)
		b = strconv.AppendInt(b, item.d.Remaining, 10)
		b = append(b, ";t="...)
		b = strconv.AppendInt(b, seconds(item.d.Reset), 10)
	}
	if len(b) == 0 {
		return
	}
	if cap(b) != len(rv.buf) {
		rv.v[0] = string(b) // outgrew the buffer (cannot happen with these lengths)
	} else {
		// The string shares rv's bytes, which nothing writes again: one
		// allocation for the value, its bytes and the header's slice.
		rv.v[0] = unsafe.String(&rv.buf[0], len(b))
	}
	h["Ratelimit"] = rv.v[:]
}
