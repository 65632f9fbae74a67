package server

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/keygate/keygate/apikey"
	"github.com/keygate/keygate/signing"
)

// SigningKeyTick is how often an instance applies due signing-key
// transitions and reads the stored set: one small read a second, so every
// instance serves another instance's change (a rotation, a revocation)
// within a couple of seconds.
const SigningKeyTick = time.Second

// startSigningKeys runs the signing keys' background loop until the
// returned stop is called (it waits for a round in progress).
func (s *Server) startSigningKeys(ticks <-chan time.Time) (stop func()) {
	var ticker *time.Ticker
	if ticks == nil {
		ticker = time.NewTicker(SigningKeyTick)
		ticks = ticker.C
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-ctx.Done():
				return
			case <-ticks:
				tctx, tcancel := context.WithTimeout(ctx, 10*time.Second)
				if err := s.keys.SigningKeysTick(tctx); err != nil && ctx.Err() == nil {
					s.log.Warn("signing keys", "err", err)
				}
				tcancel()
			}
		}
	}()
	return func() {
		cancel()
		<-done
		if ticker != nil {
			ticker.Stop()
		}
	}
}

// signingKey is one key as GET /v1/signing-keys lists it: public facts
// only, never key material.
type signingKey struct {
	KID            string     `json:"kid"`
	Alg            string     `json:"alg"`
	State          string     `json:"state"`
	CreatedAt      time.Time  `json:"created_at"`
	SignsFrom      time.Time  `json:"signs_from"`
	RetiresAt      *time.Time `json:"retires_at"`
	PublishedUntil *time.Time `json:"published_until"`
}

type signingKeysAnswer struct {
	Keys []signingKey `json:"keys"`
	// The schedule in force on the instance that answered.
	RotationSeconds   int64 `json:"rotation_seconds"`
	PrepublishSeconds int64 `json:"prepublish_seconds"`
}

func optTime(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	u := t.UTC()
	return &u
}

func (s *Server) signingKeysAnswer(keys []signing.KeyInfo) signingKeysAnswer {
	sched := s.keys.SigningSchedule()
	out := signingKeysAnswer{Keys: make([]signingKey, 0, len(keys)),
		RotationSeconds: int64(sched.Rotation / time.Second), PrepublishSeconds: int64(sched.Prepublish / time.Second)}
	for _, k := range keys {
		out.Keys = append(out.Keys, signingKey{KID: k.KID, Alg: k.Alg, State: k.State, CreatedAt: k.CreatedAt.UTC(),
			SignsFrom: k.SignsFrom.UTC(), RetiresAt: optTime(k.RetiresAt), PublishedUntil: optTime(k.PublishedUntil)})
	}
	return out
}

// listSigningKeys is GET /v1/signing-keys.
func (s *Server) listSigningKeys(c *gin.Context) {
	keys, err := s.keys.SigningKeys(c.Request.Context())
	if err != nil {
		s.storeProblem(c, err)
		return
	}
	c.Header("Cache-Control", "no-store")
	c.JSON(http.StatusOK, s.signingKeysAnswer(keys))
}

// rotateSigningKeysRequest is the body of POST /v1/signing-keys/rotate:
// {} is a safe rotation; now and revoke exclude each other.
type rotateSigningKeysRequest struct {
	Now    bool   `json:"now"`
	Revoke string `json:"revoke"`
}

var rotateSigningKeysFields = structFields(&rotateSigningKeysRequest{})

// rotateSigningKeys is POST /v1/signing-keys/rotate. An empty body is a
// safe rotation, as {} is.
func (s *Server) rotateSigningKeys(c *gin.Context) {
	var req rotateSigningKeysRequest
	body, err := io.ReadAll(io.LimitReader(c.Request.Body, maxManagementBody+1))
	if err != nil {
		problem(c, http.StatusBadRequest, problemInvalid, "could not read the request body")
		return
	}
	if len(body) > 0 {
		c.Request.Body = io.NopCloser(bytes.NewReader(body))
		if !decodeJSON(c, &req, rotateSigningKeysFields) {
			return
		}
	}
	switch {
	case req.Now && req.Revoke != "":
		problem(c, http.StatusBadRequest, problemInvalid, "now and revoke exclude each other: revoking the current key already makes the next one sign at once")
		return
	case req.Revoke != "" && !plausibleKID(req.Revoke):
		problem(c, http.StatusBadRequest, problemInvalid, "revoke must be the kid of a published key (see GET /v1/signing-keys)")
		return
	}
	keys, err := s.keys.RotateSigningKeys(c.Request.Context(), apikey.Rotation{Now: req.Now, Revoke: req.Revoke})
	switch {
	case errors.Is(err, signing.ErrNextScheduled):
		problem(c, http.StatusConflict, problemNextKeyScheduled, err.Error())
		return
	case errors.Is(err, signing.ErrUnknownKID):
		problem(c, http.StatusNotFound, problemNotFound, "no published signing key has kid "+req.Revoke+" (see GET /v1/signing-keys)")
		return
	case err != nil:
		s.storeProblem(c, err)
		return
	}
	c.Header("Cache-Control", "no-store")
	c.JSON(http.StatusOK, s.signingKeysAnswer(keys))
}

// problemNextKeyScheduled: a safe rotation while a next key already waits.
const problemNextKeyScheduled = "urn:keygate:problem:next-key-scheduled"

// plausibleKID: keygate's kids are RFC 7638 thumbprints, 43 base64url
// characters; anything much unlike that is refused before the store is
// touched (and never echoed at length).
func plausibleKID(kid string) bool {
	if kid == "" || len(kid) > 128 {
		return false
	}
	for _, r := range kid {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
			return false
		}
	}
	return true
}
