package server

// The Token Status List (IETF draft-ietf-oauth-status-list): how a deleted
// key's outstanding tokens stop working at resource servers that verify
// offline. Every secret generation of a key has one index, shared by all
// the tokens minted with that secret (keygate revokes keys and secrets, not
// single tokens, at resource servers: a bit per secret keeps the list small
// — a million keys fit in 128 KiB before compression — and a token's status
// follows its secret: apikey.Service.Rotate and Delete set the bits). Access
// tokens name the index; the list, a signed JWT, says which indices are
// revoked.

import (
	"bytes"
	"compress/zlib"
	"context"
	"encoding/base64"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/keygate/keygate/apikey"
	"github.com/keygate/keygate/store"
)

const (
	// statusListPath is the one list keygate serves.
	statusListPath = "/statuslists/1"
	// statusListBlock: the list grows in blocks of this many indices, so a
	// resource server's cached list rarely lacks a new key's index.
	statusListBlock = 1 << 20
	// statusListMaxAge bounds server-side caching: a deletion shows in the
	// served list within this time, on every instance.
	statusListMaxAge = time.Second
	// statusListLifetime is the exp of a list token: how long a resource
	// server may at most rely on one list while keygate is unreachable.
	statusListLifetime = time.Hour
)

// statusClaim is what access tokens carry (draft §6.1).
type statusClaim struct {
	StatusList statusListRef `json:"status_list"`
}

type statusListRef struct {
	Idx int64  `json:"idx"`
	URI string `json:"uri"`
}

// statusListClaims are the claims of the status list token (draft §5.1).
type statusListClaims struct {
	Subject    string         `json:"sub"`
	IssuedAt   int64          `json:"iat"`
	ExpiresAt  int64          `json:"exp"`
	TTL        int64          `json:"ttl"`
	StatusList encodedBitList `json:"status_list"`
}

type encodedBitList struct {
	Bits int    `json:"bits"`
	Lst  string `json:"lst"`
}

// encodeStatusList lays out a 1-bit list of size indices (a multiple of 8)
// from the revoked bitmap, compresses it with zlib (DEFLATE in the ZLIB
// format) and encodes it base64url without padding (draft §4.1).
func encodeStatusList(revoked []byte, size int64) (string, error) {
	raw := make([]byte, size/8)
	copy(raw, revoked)
	var buf bytes.Buffer
	zw, err := zlib.NewWriterLevel(&buf, zlib.BestCompression)
	if err != nil {
		return "", err
	}
	if _, err := zw.Write(raw); err != nil {
		return "", err
	}
	if err := zw.Close(); err != nil {
		return "", err
	}
	return base64.RawURLEncoding.EncodeToString(buf.Bytes()), nil
}

// listSize rounds the list up to whole blocks covering every allocated
// index (and any revoked bit), at least one block.
func listSize(l store.StatusList) int64 {
	need := max(l.Allocated+1, int64(len(l.Statuses))*4, 1)
	return (need + statusListBlock - 1) / statusListBlock * statusListBlock
}

// statusLists caches the signed list for at most statusListMaxAge. It is
// built on demand by the status list endpoint only; the token path never
// touches it.
type statusLists struct {
	mu      sync.Mutex
	token   []byte
	builtAt time.Time
}

// invalidate makes the next request rebuild the list (after a deletion on
// this instance; other instances see it within statusListMaxAge).
func (c *statusLists) invalidate() {
	c.mu.Lock()
	c.token = nil
	c.mu.Unlock()
}

// statusList serves the signed list (draft §8.1).
func (s *Server) statusList(c *gin.Context) {
	tok, err := s.currentStatusList(c.Request.Context())
	if err != nil {
		if apikey.Unavailable(err) {
			c.Header("Retry-After", "1")
			c.Data(http.StatusServiceUnavailable, "text/plain; charset=utf-8", []byte("status list temporarily unavailable\n"))
			return
		}
		s.reqLog(c).Error("status list", "err", err)
		c.Data(http.StatusInternalServerError, "text/plain; charset=utf-8", []byte("status list unavailable\n"))
		return
	}
	// Resource servers cache per the token's ttl; HTTP caches must not add
	// to that.
	c.Header("Cache-Control", "no-cache")
	c.Data(http.StatusOK, "application/statuslist+jwt", tok)
}

func (s *Server) currentStatusList(ctx context.Context) ([]byte, error) {
	c := &s.statusLists
	c.mu.Lock()
	defer c.mu.Unlock()
	now := s.cfg.Now()
	if c.token != nil && now.Sub(c.builtAt) < statusListMaxAge && !now.Before(c.builtAt) {
		return c.token, nil
	}
	l, err := s.store.StatusList(ctx)
	if err != nil {
		return nil, fmt.Errorf("load status list: %w", err)
	}
	lst, err := encodeStatusList(oneBit(l), listSize(l))
	if err != nil {
		return nil, fmt.Errorf("encode status list: %w", err)
	}
	tok, err := s.keys.KeySet().StatusListSigner().Sign(statusListClaims{
		Subject:    s.statusListURI,
		IssuedAt:   now.Unix(),
		ExpiresAt:  now.Add(max(statusListLifetime, 2*s.cfg.StatusListTTL)).Unix(),
		TTL:        int64(s.cfg.StatusListTTL / time.Second),
		StatusList: encodedBitList{Bits: 1, Lst: lst},
	})
	if err != nil {
		return nil, err
	}
	c.token, c.builtAt = []byte(tok), now
	s.cfg.Metrics.StatusListBuilt(listSize(l), now) // nil-safe
	return c.token, nil
}

// statusListAggregation is the draft's aggregation document (§9.3).
func (s *Server) statusListAggregation(c *gin.Context) {
	c.Header("Cache-Control", "public, max-age=3600")
	c.JSON(http.StatusOK, gin.H{"status_lists": []string{s.statusListURI}})
}

// oneBit is the 1-bit view of l: an entry that is not VALID reads 1.
func oneBit(l store.StatusList) []byte {
	out := make([]byte, (int64(len(l.Statuses))*4+7)/8)
	for i := int64(0); i < int64(len(l.Statuses))*4; i++ {
		if l.Entry(i) != store.StatusValid {
			out[i/8] |= 1 << (i % 8)
		}
	}
	return out
}
