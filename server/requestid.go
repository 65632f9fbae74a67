package server

// Request IDs and source addresses: what every log line, problem body and
// audit event (events.go, requestMeta) of a request carries to correlate
// them.
//
// An ID is AES-128 of a per-server counter under a key drawn from
// crypto/rand once, when the server is built, written as 26 characters of
// lowercase base32 (Crockford's alphabet). So:
//   - no crypto/rand call per request: one block encryption (tens of
//     nanoseconds with AES-NI) and an atomic add;
//   - unique within a process: AES is a permutation, the counter never
//     repeats;
//   - unique across restarts and instances in practice: each process has
//     its own key, so its IDs are 128-bit values unrelated to another's
//     (a collision is a birthday bound at 2^64 IDs);
//   - unguessable and revealing nothing: without the key the next ID
//     cannot be told from the last one, and IDs do not leak how many
//     requests an instance served, as a bare counter would.
//
// An incoming X-Request-Id is adopted only from a trusted proxy
// (trusted_proxies) and only when it is 1–64 characters of A-Z a-z 0-9
// . _ - and could not be a credential; from anyone else it is logged as
// client_request_id, when it has that form, and a new ID is made, so a
// caller cannot forge the correlation of audit events.

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base32"
	"encoding/binary"
	"fmt"
	"net/netip"
	"sync/atomic"

	"github.com/gin-gonic/gin"

	"github.com/keygate/keygate/apikey"
)

// headerRequestID is X-Request-Id in the canonical form http.Header keys
// take, so the map can be indexed directly.
const headerRequestID = "X-Request-Id"

// maxRequestIDLen bounds an adopted X-Request-Id.
const maxRequestIDLen = 64

// requestIDEncoding is Crockford's base32 in lower case: no padding, no
// letters that read like digits (i, l, o, u).
var requestIDEncoding = base32.NewEncoding("0123456789abcdefghjkmnpqrstvwxyz").WithPadding(base32.NoPadding)

// requestIDLen is the length of a generated ID: 128 bits in base32
// (requestIDEncoding.EncodedLen(aes.BlockSize); a test holds them equal).
const requestIDLen = 26

// requestIDs mints request IDs (see the file comment).
type requestIDs struct {
	block cipher.Block
	n     atomic.Uint64
}

// newRequestIDs draws the key: the only randomness request IDs take.
func newRequestIDs() (*requestIDs, error) {
	var key [16]byte
	if _, err := rand.Read(key[:]); err != nil {
		return nil, fmt.Errorf("request ids: %w", err)
	}
	return requestIDsWithKey(key)
}

func requestIDsWithKey(key [16]byte) (*requestIDs, error) {
	block, err := aes.NewCipher(key[:])
	if err != nil {
		return nil, fmt.Errorf("request ids: %w", err)
	}
	return &requestIDs{block: block}, nil
}

// requestIDValue holds what one ID needs, in one allocation: the blocks
// (a cipher.Block's arguments escape, so stack arrays would be two more
// allocations) and the header value the answer carries.
type requestIDValue struct {
	header   [1]string
	in, out  [aes.BlockSize]byte
	encoding [requestIDLen]byte
}

// next returns a new ID as a header value: a one-element slice, so the
// answer's header map takes it without another allocation.
func (g *requestIDs) next() []string {
	v := new(requestIDValue)
	binary.BigEndian.PutUint64(v.in[8:], g.n.Add(1))
	g.block.Encrypt(v.out[:], v.in[:])
	requestIDEncoding.Encode(v.encoding[:], v.out[:])
	v.header[0] = string(v.encoding[:])
	return v.header[:]
}

// validRequestID reports whether an incoming X-Request-Id may be adopted
// or logged: 1–64 characters of A-Z a-z 0-9 . _ -.
func validRequestID(s string) bool {
	if s == "" || len(s) > maxRequestIDLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		b := s[i]
		if !('a' <= b && b <= 'z' || 'A' <= b && b <= 'Z' || '0' <= b && b <= '9' || b == '.' || b == '_' || b == '-') {
			return false
		}
	}
	return true
}

// adoptRequestID is the adoption rule: the incoming X-Request-Id values
// (incoming, as the request's header map holds them) are taken as the
// request's ID only when there is exactly one, it is well-formed, and the
// peer that sent it is a trusted proxy. A proxy that does not set the
// header passes on the client's, and the ID goes into every log line, so
// a value that might be a credential is never adopted either.
func adoptRequestID(incoming []string, peerTrusted bool) bool {
	return peerTrusted && len(incoming) == 1 && validRequestID(incoming[0]) && !apikey.MayHoldSecret(incoming[0])
}

// assignRequestID gives the request its ID before any handler runs: the
// adopted one or a new one, set as the answer's X-Request-Id. The answer's
// header is where the ID lives for the rest of the request (requestID):
// that costs the token path no context map.
func (s *Server) assignRequestID(c *gin.Context) {
	r := c.Request
	incoming := r.Header[headerRequestID]
	if len(incoming) > 0 && s.proxies.Any() &&
		adoptRequestID(incoming, s.proxies.Trusted(peerAddr(r.RemoteAddr))) {
		c.Writer.Header()[headerRequestID] = incoming
		return
	}
	c.Writer.Header()[headerRequestID] = s.requestIDs.next()
}

// requestID is the request's ID, for log lines, problem bodies and audit
// events. Handlers call it; the middleware set it before they ran.
func requestID(c *gin.Context) string {
	if v := c.Writer.Header()[headerRequestID]; len(v) > 0 {
		return v[0]
	}
	return ""
}

// clientRequestID is an X-Request-Id the caller sent that was not adopted
// (it came from someone other than a trusted proxy): logged apart, never as
// the request's ID. "" when there is none, it is not of the ID form, or it
// might be a credential pasted there (it is the caller's text: nothing else
// of it is logged).
func clientRequestID(c *gin.Context) string {
	in := c.Request.Header[headerRequestID]
	if len(in) != 1 || !validRequestID(in[0]) || in[0] == requestID(c) || apikey.MayHoldSecret(in[0]) {
		return ""
	}
	return in[0]
}

// sourceAddr is the address the request came from by the trusted_proxies
// rule (package clientaddr): the one audit events, access log lines and
// throttling use. Never gin's c.ClientIP(), which keygate does not
// configure. Invalid only for a request without a readable RemoteAddr.
func (s *Server) sourceAddr(c *gin.Context) netip.Addr {
	return s.proxies.Resolve(c.Request.RemoteAddr, c.Request.Header).Addr
}

// peerAddr is the TCP peer's address, unmapped; invalid if unreadable.
func peerAddr(remoteAddr string) netip.Addr {
	ap, err := netip.ParseAddrPort(remoteAddr)
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr().Unmap()
}
