package server

// Throttling of failed client authentication (RFC 6749 §2.3.1) at
// /oauth/token, /oauth/introspect, /oauth/revoke and the management API.
// Package throttle holds the buckets and says why they are shaped as they
// are; this file asks it before a credential is evaluated, tells it the
// outcome after, and answers 429.
//
// On every endpoint a request is a pair (source address by the
// trusted_proxies rule, client ID): the client ID sent with the secret, or
// at the management API the client_id a bearer token claims (read before
// the token is verified, so a throttled pair costs no signature check).
// While the pair or its source is throttled the request is refused with
// 429 and Retry-After before apikey.Service.Authenticate or the verifier
// runs: a correct secret is refused too, and says nothing.

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/keygate/keygate/apikey"
	"github.com/keygate/keygate/config"
	"github.com/keygate/keygate/store"
	"github.com/keygate/keygate/throttle"
	"github.com/keygate/keygate/verify"
)

// throttledDescription is the one text of every throttled answer: it does
// not say whether the pair or the source is throttled, nor whether the
// client ID exists.
const throttledDescription = "too many failed client authentications from this address; retry later"

// startAuthThrottle builds the throttle from the options and, on a store
// that instances share (Redis), counts failures there and starts listening
// to the other instances' notices.
func (s *Server) startAuthThrottle() {
	o := s.cfg
	setting := func(v, def int) int {
		switch {
		case v < 0:
			return 0 // off
		case v == 0:
			return def
		}
		return v
	}
	pair := throttle.Bucket{Burst: setting(o.AuthFailureBurst, config.DefaultAuthFailureBurst),
		Every: time.Second / time.Duration(setting(o.AuthFailureRate, config.DefaultAuthFailureRate))}
	source := throttle.Bucket{Burst: setting(o.AuthFailureSourceBurst, config.DefaultAuthFailureSourceBurst),
		Every: time.Second / time.Duration(setting(o.AuthFailureSourceRate, config.DefaultAuthFailureSourceRate))}
	if pair.Burst == 0 {
		source = throttle.Bucket{} // auth_failure_burst 0: throttling off altogether
	}
	cfg := throttle.Config{Pair: pair, Source: source, Now: o.Now, Logger: o.Logger}
	if st, ok := store.Feature[store.SharedThrottle](o.Store); ok {
		cfg.Shared = sharedThrottle{st}
	}
	s.authThrottle = throttle.New(cfg)
	s.stopThrottle = func() {}
	if s.authThrottle == nil || cfg.Shared == nil {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.authThrottle.Listen(ctx)
	}()
	s.stopThrottle = func() { cancel(); <-done }
}

// sharedThrottle is throttle.Shared on a store.SharedThrottle: the same
// buckets under package store's names, so that store knows nothing of the
// throttle. Only the failure path comes here.
type sharedThrottle struct{ st store.SharedThrottle }

func (sh sharedThrottle) AddFailures(ctx context.Context, now time.Time, source string, adds []throttle.SharedAdd) ([]throttle.SharedState, error) {
	fs := make([]store.ThrottleFailure, len(adds))
	for i, a := range adds {
		fs[i] = store.ThrottleFailure{Bucket: a.Key, Every: a.Every, Threshold: a.Threshold, Span: a.Span}
	}
	bs, err := sh.st.AddThrottleFailures(ctx, now, source, fs)
	if err != nil {
		return nil, err
	}
	out := make([]throttle.SharedState, len(bs))
	for i, b := range bs {
		out[i] = throttle.SharedState{TAT: b.TAT, Started: b.Started}
	}
	return out, nil
}

func (sh sharedThrottle) Announce(ctx context.Context, n throttle.Notice) error {
	return sh.st.AnnounceThrottle(ctx, n.Key, n.Until)
}

func (sh sharedThrottle) Listen(ctx context.Context, f func(throttle.Notice)) {
	sh.st.ListenThrottles(ctx, func(bucket string, until time.Time) { f(throttle.Notice{Key: bucket, Until: until}) })
}

// authPair is the request's pair for the throttle.
func (s *Server) authPair(c *gin.Context, clientID string) throttle.Pair {
	return throttle.PairOf(s.sourceAddr(c), clientID)
}

// oauthThrottled answers 429 when the pair may not authenticate now, and
// counts it under endpoint (metrics.ThrottledEndpoints).
func (s *Server) oauthThrottled(c *gin.Context, p throttle.Pair, endpoint, clientID string) bool {
	wait := s.authThrottle.Check(p)
	if wait <= 0 {
		return false
	}
	s.cfg.Metrics.Throttled(endpoint) // nil-safe
	writeThrottled(c, wait, clientID, throttledDescription)
	return true
}

// writeThrottled is the 429 of the OAuth endpoints: Retry-After in whole
// seconds (at least 1), the body as RFC 6749 §5.2 errors are.
func writeThrottled(c *gin.Context, wait time.Duration, clientID, description string) {
	c.Header("Retry-After", retryAfter(wait))
	refused(c, "invalid_request", clientID)
	_ = writeJSON(c.Writer, http.StatusTooManyRequests, oauthErrorBody{Error: "invalid_request", Description: description})
}

func retryAfter(wait time.Duration) string {
	return strconv.Itoa(max(1, int((wait+time.Second-1)/time.Second)))
}

// throttleFailure tells the throttle that the pair failed to authenticate
// (only ErrInvalidClient counts: a store failure is no guess) and writes
// an auth.throttled audit event when that starts a throttle. key is what
// Authenticate returned: the key's identity when the client ID exists,
// else the zero Key; the throttle does the same work either way.
func (s *Server) throttleFailure(c *gin.Context, p throttle.Pair, key store.Key, err error) {
	if !errors.Is(err, apikey.ErrInvalidClient) || s.authThrottle == nil {
		return
	}
	st := s.authThrottle.Failed(c.Request.Context(), p)
	if st.Pair {
		s.auditThrottle(c, key, apikey.ThrottledClient)
	}
	if st.Source {
		s.auditThrottle(c, key, apikey.ThrottledSource)
	}
}

func (s *Server) auditThrottle(c *gin.Context, key store.Key, reason string) {
	if err := s.keys.AuthThrottled(c.Request.Context(), s.requestMeta(c), key, reason); err != nil {
		s.reqLog(c).Warn("throttle: audit event not stored", "reason", reason, "err", err)
	}
}

// bearerClaimedID is the client_id a bearer token claims, read without
// verifying it (throttling must be decided before any verification): ""
// when the token is not a JWS with a JSON payload naming one. The value
// only picks a throttle bucket; nothing trusts it.
func bearerClaimedID(token string) string {
	first := strings.IndexByte(token, '.')
	if first < 0 || len(token) > verify.MaxTokenSize {
		return ""
	}
	rest := token[first+1:]
	second := strings.IndexByte(rest, '.')
	if second < 0 {
		return ""
	}
	payload, err := base64.RawURLEncoding.DecodeString(rest[:second])
	if err != nil {
		return ""
	}
	var claims struct {
		ClientID string `json:"client_id"`
	}
	if json.Unmarshal(payload, &claims) != nil {
		return ""
	}
	return claims.ClientID
}

// bearerFailureCounts says which refusals of a bearer token are failed
// authentication: forged, garbage or of an unknown signing key. A token
// keygate signed that expired, is not valid yet (clock skew) or was
// revoked is no guess, and neither is keygate's own trouble reading its
// keys.
func bearerFailureCounts(err error) bool {
	for _, benign := range []error{verify.ErrExpired, verify.ErrNotYetValid, verify.ErrIssuedInFuture, verify.ErrKeysUnavailable} {
		if errors.Is(err, benign) {
			return false
		}
	}
	return true
}
