package server

// The Token Status List (IETF draft-ietf-oauth-status-list): how a deleted
// or suspended key's outstanding tokens stop working at resource servers
// that verify offline. Every secret generation of a key has one index,
// shared by all the tokens minted with that secret (keygate revokes keys
// and secrets, not single tokens, at resource servers: an entry per secret
// keeps the lists small — a million keys fit in 256 KiB before
// compression — and a token's status follows its secret:
// apikey.Service.Rotate, Delete and Update set the entries). Access tokens
// name the index; the lists, signed JWTs, say each index's status.
//
// Two kinds of list are served (docs/ARCHITECTURE.md, "Status lists"):
//
//   - 2-bit lists, the ones tokens name: VALID 0, INVALID 1 (a deleted key,
//     an ended or leaked secret) and SUSPENDED 2 (a suspended key; resuming
//     makes it 0 again). Index g lives in shard g / statusShardSize at
//     g mod statusShardSize, served at /statuslists/2bit/{shard}; a shard
//     is at most 2 MiB of entries, so even incompressible it stays under
//     verify's caps (16 MiB inflated, 4 MiB as a token).
//   - /statuslists/1, the 1-bit list tokens issued before the 2-bit lists
//     name (and those of an older instance during a rolling upgrade): an
//     entry there is 1 whenever its status is not VALID, so a suspended
//     key's old tokens are refused too. It covers the first legacyListMax
//     indices.

import (
	"bytes"
	"compress/zlib"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/keygate/keygate/apikey"
	"github.com/keygate/keygate/store"
)

const (
	// legacyListPath is the 1-bit list of tokens issued before the 2-bit
	// lists.
	legacyListPath = "/statuslists/1"
	// shardPathPrefix + the shard's number is a 2-bit list.
	shardPathPrefix = "/statuslists/2bit/"
	// statusShardSize is how many indices one 2-bit list holds: 2^23
	// entries are 2 MiB.
	statusShardSize = 1 << 23
	// legacyListMax bounds /statuslists/1: 2^24 one-bit entries, 2 MiB.
	legacyListMax = 1 << 24
	// statusListBlock: a list grows in blocks of this many indices, so a
	// resource server's cached list rarely lacks a new key's index.
	statusListBlock = 1 << 20
	// statusListMaxAge bounds server-side caching: a change shows in the
	// served lists within this time, on every instance.
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

// encodeStatusList compresses a list's raw bytes with zlib (DEFLATE in
// the ZLIB format) and encodes them base64url without padding (draft
// §4.1).
func encodeStatusList(raw []byte) (string, error) {
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

// listSize rounds n indices up to whole blocks, at least one block, at
// most limit.
func listSize(n, limit int64) int64 {
	return min(max((n+statusListBlock-1)/statusListBlock, 1)*statusListBlock, limit)
}

// highest is the highest index l knows of: allocated, or holding a status.
func highest(l store.StatusList) int64 {
	return max(l.Allocated, int64(len(l.Statuses))*4-1)
}

// shardEntries lays out shard n of l: 2 bits per index, the shard's first
// index at entry 0, sized in blocks to cover every index l knows of.
func shardEntries(l store.StatusList, n int64) []byte {
	first := n * statusShardSize
	size := listSize(highest(l)+1-first, statusShardSize)
	raw := make([]byte, size/4)
	if start := first / 4; start < int64(len(l.Statuses)) {
		copy(raw, l.Statuses[start:]) // a shard starts on a byte: 2^23 is a multiple of 4
	}
	return raw
}

// legacyEntries lays out /statuslists/1: 1 bit per index, set when the
// index's status is not VALID.
func legacyEntries(l store.StatusList) []byte {
	size := listSize(highest(l)+1, legacyListMax)
	raw := make([]byte, size/8)
	for i, b := range l.Statuses {
		for j := range int64(4) {
			idx := int64(i)*4 + j
			if b>>(2*j)&3 != 0 && idx < size {
				raw[idx/8] |= 1 << (idx % 8)
			}
		}
	}
	return raw
}

// statusRef is the status claim's reference of global index g: its shard's
// URI and its index there. The URIs are built once per shard: an atomic
// load on the token path (a new shard, every 2^23 indices, builds them
// again).
func (s *Server) statusRef(g int64) statusListRef {
	n := g / statusShardSize
	uris := s.shardURIs.Load()
	if uris == nil || n >= int64(len(*uris)) {
		uris = s.growShardURIs(n)
	}
	return statusListRef{Idx: g % statusShardSize, URI: (*uris)[n]}
}

// generationOf is the status index (the secret generation, counted over
// every shard) of the entry idx of the list uri, as a token of this server
// names it: statusRef's inverse. The legacy 1-bit list counts from 0 over
// all indices. A uri of no list of this server's leaves idx as it is (such
// a token matches no key's generation).
func (s *Server) generationOf(uri string, idx int64) int64 {
	rest, ok := strings.CutPrefix(uri, s.cfg.Issuer+shardPathPrefix)
	if !ok {
		return idx
	}
	n, err := strconv.ParseInt(rest, 10, 64)
	if err != nil || n < 0 || n > math.MaxInt64/statusShardSize-1 {
		return idx
	}
	return n*statusShardSize + idx
}

func (s *Server) growShardURIs(n int64) *[]string {
	for {
		old := s.shardURIs.Load()
		var cur []string
		if old != nil {
			if n < int64(len(*old)) {
				return old
			}
			cur = *old
		}
		next := slices.Clone(cur)
		for i := int64(len(next)); i <= n; i++ {
			next = append(next, s.cfg.Issuer+shardPathPrefix+strconv.FormatInt(i, 10))
		}
		if s.shardURIs.CompareAndSwap(old, &next) {
			return &next
		}
	}
}

// statusLists caches each signed list for at most statusListMaxAge. They
// are built on demand by the status list endpoints only; the token path
// never touches them.
type statusLists struct {
	mu    sync.Mutex
	built map[string]builtList // by path
}

type builtList struct {
	token []byte
	at    time.Time
}

// invalidate makes the next request rebuild the lists (after a change of
// statuses on this instance; other instances see it within
// statusListMaxAge).
func (c *statusLists) invalidate() {
	c.mu.Lock()
	clear(c.built)
	c.mu.Unlock()
}

// statusList serves /statuslists/1 (draft §8.1).
func (s *Server) statusList(c *gin.Context) { s.serveStatusList(c, legacyListPath, -1) }

// statusShard serves /statuslists/2bit/{shard}; a shard past every index
// the store knows is 404.
func (s *Server) statusShard(c *gin.Context) {
	raw := c.Param("shard")
	n, err := strconv.ParseInt(raw, 10, 64)
	if err != nil || n < 0 || strconv.FormatInt(n, 10) != raw || n > store.MaxStatusIndex/statusShardSize {
		c.Data(http.StatusNotFound, "text/plain; charset=utf-8", []byte("no such status list\n"))
		return
	}
	s.serveStatusList(c, shardPathPrefix+raw, n)
}

func (s *Server) serveStatusList(c *gin.Context, path string, shard int64) {
	tok, err := s.currentStatusList(c.Request.Context(), path, shard)
	switch {
	case errors.Is(err, errNoSuchShard):
		c.Data(http.StatusNotFound, "text/plain; charset=utf-8", []byte("no such status list\n"))
		return
	case err != nil && apikey.Unavailable(err):
		c.Header("Retry-After", "1")
		c.Data(http.StatusServiceUnavailable, "text/plain; charset=utf-8", []byte("status list temporarily unavailable\n"))
		return
	case err != nil:
		s.reqLog(c).Error("status list", "err", err)
		c.Data(http.StatusInternalServerError, "text/plain; charset=utf-8", []byte("status list unavailable\n"))
		return
	}
	// Resource servers cache per the token's ttl; HTTP caches must not add
	// to that.
	c.Header("Cache-Control", "no-cache")
	c.Data(http.StatusOK, "application/statuslist+jwt", tok)
}

// errNoSuchShard: a 2-bit list past every index the store knows.
var errNoSuchShard = errors.New("no such status list shard")

// currentStatusList is the signed list at path: the legacy 1-bit list
// (shard < 0) or a 2-bit shard, from the cache while fresh.
func (s *Server) currentStatusList(ctx context.Context, path string, shard int64) ([]byte, error) {
	c := &s.statusLists
	c.mu.Lock()
	defer c.mu.Unlock()
	now := s.cfg.Now()
	if b, ok := c.built[path]; ok && now.Sub(b.at) < statusListMaxAge && !now.Before(b.at) {
		return b.token, nil
	}
	l, err := s.store.StatusList(ctx)
	if err != nil {
		return nil, fmt.Errorf("load status list: %w", err)
	}
	bits, raw := 1, []byte(nil)
	if shard < 0 {
		raw = legacyEntries(l)
	} else {
		if shard*statusShardSize > highest(l) {
			return nil, errNoSuchShard
		}
		bits, raw = 2, shardEntries(l, shard)
	}
	lst, err := encodeStatusList(raw)
	if err != nil {
		return nil, fmt.Errorf("encode status list: %w", err)
	}
	tok, err := s.keys.KeySet().StatusListSigner().Sign(statusListClaims{
		Subject:    s.cfg.Issuer + path,
		IssuedAt:   now.Unix(),
		ExpiresAt:  now.Add(max(statusListLifetime, 2*s.cfg.StatusListTTL)).Unix(),
		TTL:        int64(s.cfg.StatusListTTL / time.Second),
		StatusList: encodedBitList{Bits: bits, Lst: lst},
	})
	if err != nil {
		return nil, err
	}
	if c.built == nil {
		c.built = map[string]builtList{}
	}
	c.built[path] = builtList{token: []byte(tok), at: now}
	s.cfg.Metrics.StatusListBuilt(int64(len(raw)*8/bits), now) // nil-safe
	return c.built[path].token, nil
}

// statusListAggregation is the draft's aggregation document (§9.3): the
// legacy list and every 2-bit shard up to the highest index the store
// knows.
func (s *Server) statusListAggregation(c *gin.Context) {
	l, err := s.store.StatusList(c.Request.Context())
	if err != nil {
		if apikey.Unavailable(err) {
			c.Header("Retry-After", "1")
			c.Data(http.StatusServiceUnavailable, "text/plain; charset=utf-8", []byte("status lists temporarily unavailable\n"))
			return
		}
		s.reqLog(c).Error("status list aggregation", "err", err)
		c.Data(http.StatusInternalServerError, "text/plain; charset=utf-8", []byte("status lists unavailable\n"))
		return
	}
	lists := []string{s.cfg.Issuer + legacyListPath}
	for n := int64(0); n*statusShardSize <= highest(l); n++ {
		lists = append(lists, s.statusRef(n*statusShardSize).URI)
	}
	// New shards appear as keys are made, every 2^23 indices: an hour's
	// caching holds nothing back for long.
	c.Header("Cache-Control", "public, max-age=3600")
	c.JSON(http.StatusOK, gin.H{"status_lists": lists})
}
