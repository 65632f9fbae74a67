package server

// The token endpoint: RFC 6749 §4.4 client credentials. Everything on the
// token path is in this file, in the order a request meets it:
//
//	parse         parseTokenRequest: method, size, content type, no query
//	              string, no repeated parameter, one authentication method,
//	              grant type, credentials present
//	authenticate  apikey.Service.Authenticate (the same for introspection
//	              and revocation)
//	decide scopes apikey.Service.GrantScope
//	count         tokenEndpoint.overQuota (server/quota.go): issuance quotas
//	sign          tokenEndpoint.appendToken: RFC 9068 claims, appended
//	              without reflection, signed with the key set parsed at
//	              start, into a reused tokenScratch
//	answer        appendAnswer and writeAccessToken, or writeOAuthError for
//	              any refusal
//
// Nothing here parses PEM, writes to disk or takes a process-wide lock: the
// key set is an atomic load and the last-used time and usage counts are
// recorded in memory (package lastused) and written in the background.

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/gin-gonic/gin"

	"github.com/keygate/keygate/apikey"
	"github.com/keygate/keygate/config"
	"github.com/keygate/keygate/store"
)

// maxTokenRequestBody bounds the form body; a legitimate request is a few
// hundred bytes.
const maxTokenRequestBody = 8 << 10

// bodyBuffers recycles the read buffers of request bodies (one byte over
// the limit, to detect an oversized body).
var bodyBuffers = sync.Pool{New: func() any {
	b := make([]byte, maxTokenRequestBody+1)
	return &b
}}

// tokenEndpoint serves the endpoints a key calls with its credentials.
type tokenEndpoint struct{ s *Server }

type clientCredentials struct{ id, secret string }

// handle is the gin handler for /oauth/token (all methods).
func (t *tokenEndpoint) handle(c *gin.Context) {
	w, r := c.Writer, c.Request
	form, creds, oerr := parseTokenRequest(w, r)
	if oerr != nil {
		t.fail(c, creds.id, t.s.grantError(oerr))
		return
	}
	if form.grantType == grantTokenExchange {
		t.exchange(c, form, creds) // RFC 8693: server/exchange.go
		return
	}
	// Throttled: refused before the secret is evaluated (server/throttle.go).
	pair := t.s.authPair(c, creds.id)
	if t.s.oauthThrottled(c, pair, "token", creds.id) {
		t.s.cfg.Metrics.TokenOutcome("invalid_request") // nil-safe
		return
	}
	key, auth, err := t.s.keys.Authenticate(r.Context(), creds.id, creds.secret)
	if err != nil {
		t.s.recordAuthFailure(creds.id, key)
		t.s.throttleFailure(c, pair, key, err)
		t.fail(c, creds.id, t.s.authError(c, err))
		return
	}
	t.s.authThrottle.Succeeded(pair)
	// Key policy, only now that the secret verified (no policy oracle):
	// expiry and suspension on the clock the secret was judged by, then
	// the source address (a prefix check, no allocation).
	if err := apikey.KeyUsable(key, auth.Now, t.s.sourceAddr(c)); err != nil {
		t.fail(c, key.ClientID, policyError(err))
		return
	}
	if form.scope == "" && form.sent(pScope) {
		t.fail(c, key.ClientID, errEmptyScope)
		return
	}
	scope, err := t.s.keys.GrantScope(key, form.scope)
	switch {
	case errors.Is(err, apikey.ErrInvalidScope):
		t.fail(c, key.ClientID, errInvalidScope)
		return
	case errors.Is(err, apikey.ErrPermissionNotInCatalog):
		// Logged once per key by apikey, not once per request.
		t.fail(c, key.ClientID, errOutsideCatalog)
		return
	case err != nil:
		t.s.reqLog(c).Error("token endpoint: resolve scopes", "client_id", key.ClientID, "err", err)
		t.fail(c, key.ClientID, errServer)
		return
	}
	aud, ok := t.s.audienceFor(key, scope, form.resource)
	if !ok {
		t.fail(c, key.ClientID, errResourceRefused)
		return
	}
	if t.overQuota(c, key, auth.Now) {
		return
	}
	sc := tokenScratches.Get().(*tokenScratch)
	defer sc.release()
	answer, err := t.appendAnswer(sc, key, scope, aud, t.s.keys.TokenTTL(key), auth)
	if err != nil {
		t.s.reqLog(c).Error("token endpoint: sign", "err", err)
		t.fail(c, key.ClientID, errServer)
		return
	}
	if t.s.access.oauth == config.AccessLogAll {
		// Its access line names the key; by default there is no line, and
		// no context map to fill.
		c.Set(callerIDKey, key.ClientID)
	}
	t.s.lastUsed.Record(key.ClientID, key.TeamID, key.LastUsedAt, auth.Now)
	t.s.cfg.Metrics.TokenOutcome(outcomeIssued) // nil-safe
	writeAccessToken(w, answer)
}

// tokenScratch is the memory a token request writes its claims and its
// answer into, reused through tokenScratches: a token's few kilobytes were
// the largest garbage of keygate's own on the token path, and with a
// million keys in use every byte of garbage costs the collector a share of
// a walk over them all (docs/scale.md).
type tokenScratch struct{ claims, answer []byte }

var tokenScratches = sync.Pool{New: func() any { return new(tokenScratch) }}

// maxTokenScratch: a buffer a large answer grew past this (a key with
// large metadata claims) is not kept for the next request.
const maxTokenScratch = 16 << 10

// release returns sc for reuse once its answer is written.
func (sc *tokenScratch) release() {
	if cap(sc.claims) > maxTokenScratch || cap(sc.answer) > maxTokenScratch {
		return
	}
	sc.claims, sc.answer = sc.claims[:0], sc.answer[:0]
	tokenScratches.Put(sc)
}

// appendAnswer builds the RFC 6749 §5.1 answer in sc.answer, appended, not
// reflected: its values are a compact JWS, a number and validated scope
// tokens (escaped all the same). expires_in follows exp: the key's token
// lifetime ttl, shortened for a secret in its grace period or a key about
// to expire (apikey.Auth.TokenExpiry).
func (t *tokenEndpoint) appendAnswer(sc *tokenScratch, key store.Key, scope, aud string, ttl time.Duration, auth apikey.Auth) ([]byte, error) {
	exp := auth.TokenExpiry(ttl)
	b := append(sc.answer[:0], `{"access_token":"`...)
	b, err := t.appendToken(sc, b, key, scope, aud, exp, auth)
	if err != nil {
		return nil, err
	}
	b = append(b, `","expires_in":`...)
	b = strconv.AppendInt(b, int64(exp.Sub(auth.Now)/time.Second), 10)
	b = append(b, `,"scope":`...)
	b = appendJSONString(b, scope)
	b = append(b, `,"token_type":"Bearer"}`...)
	b = append(b, '\n')
	sc.answer = b
	return b, nil
}

// outcomeIssued is keygate_token_requests_total's outcome of a token
// answered (the others are the error codes).
const outcomeIssued = "issued"

// fail answers the token request with e and counts its error code (a
// constant string of go-oauth2's, so the count allocates nothing).
// clientID is the one the request sent, if known, for the access log.
func (t *tokenEndpoint) fail(c *gin.Context, clientID string, e *oauthError) {
	t.s.cfg.Metrics.TokenOutcome(e.code.Error())
	oauthFail(c, clientID, e)
}

// appendToken builds the RFC 9068 claims of a token for key with scope and
// audience aud, issued at auth.Now (the clock reading Authenticate judged
// the secret by) and expiring at exp (auth.TokenExpiry: no later than the
// secret it was minted with, nor than its key), in sc.claims, and appends
// to dst the token they make, signed with the current signing key. The
// status claim names the secret generation that authenticated
// (auth.StatusIndex).
func (t *tokenEndpoint) appendToken(sc *tokenScratch, dst []byte, key store.Key, scope, aud string, exp time.Time, auth apikey.Auth) ([]byte, error) {
	jti, err := newJTI()
	if err != nil {
		return dst, err
	}
	now := auth.Now
	var status *statusClaim
	if auth.StatusIndex > 0 {
		status = &statusClaim{StatusList: t.s.statusRef(auth.StatusIndex)}
	}
	claims := accessClaims{
		Issuer:    t.s.cfg.Issuer,
		Subject:   key.ClientID,
		Audience:  aud,
		ExpiresAt: exp.Unix(),
		IssuedAt:  now.Unix(),
		NotBefore: now.Unix(),
		ID:        jti,
		ClientID:  key.ClientID,
		Scope:     scope,
		TeamID:    key.TeamID,
		Status:    status,
		Metadata:  t.s.metadataClaim(key),
	}
	sc.claims = claims.appendJSON(sc.claims[:0])
	return t.s.keys.KeySetAt(now).Signer().AppendJWS(dst, sc.claims)
}

// parseTokenRequest applies keygate's checks to the raw request, first
// failure answers: method, size, content type, query string, repeated
// parameters, two authentication methods, grant type, credentials.
func parseTokenRequest(w http.ResponseWriter, r *http.Request) (clientForm, clientCredentials, *oauthError) {
	form, creds, err := parseClientForm(w, r)
	if err != nil {
		return clientForm{}, clientCredentials{}, err
	}
	// Refusals past this point carry the client ID (not the secret), for
	// the access log line.
	switch gt := form.grantType; {
	case gt == "":
		return clientForm{}, clientCredentials{id: creds.id}, invalidRequest("grant_type is missing; use grant_type=client_credentials")
	case gt != grantClientCredentials && gt != grantTokenExchange:
		return clientForm{}, clientCredentials{id: creds.id}, errUnsupportedGrant
	}
	if creds.id == "" || creds.secret == "" {
		return clientForm{}, clientCredentials{id: creds.id}, errInvalidClient
	}
	if form.sent(pResource) && !config.ValidResource(form.resource) {
		return clientForm{}, clientCredentials{id: creds.id}, errResourceForm
	}
	return form, creds, nil
}

// parseClientForm is the part of the checks every endpoint a client
// authenticates to shares (token, introspection, revocation): POST, a form
// body of at most 8 KiB, no query string, no repeated parameter, one
// authentication method.
func parseClientForm(w http.ResponseWriter, r *http.Request) (clientForm, clientCredentials, *oauthError) {
	fail := func(err *oauthError) (clientForm, clientCredentials, *oauthError) {
		return clientForm{}, clientCredentials{}, err
	}
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		return fail(httpStatusError(http.StatusMethodNotAllowed, "use POST"))
	}
	if r.ContentLength > maxTokenRequestBody {
		return fail(httpStatusError(http.StatusRequestEntityTooLarge, "request body over 8 KiB"))
	}
	bp := bodyBuffers.Get().(*[]byte)
	defer bodyBuffers.Put(bp)
	n, err := io.ReadFull(r.Body, *bp)
	if err != nil && err != io.ErrUnexpectedEOF && err != io.EOF {
		return fail(invalidRequest("could not read the request body"))
	}
	body := (*bp)[:n]
	if n > maxTokenRequestBody {
		return fail(httpStatusError(http.StatusRequestEntityTooLarge, "request body over 8 KiB"))
	}
	if ct := r.Header.Get("Content-Type"); !isFormContentType(ct) {
		return fail(invalidRequest("Content-Type must be application/x-www-form-urlencoded"))
	}
	if r.URL.RawQuery != "" {
		// RFC 6749 §2.3.1/§3.2: credentials and parameters belong in the body.
		return fail(invalidRequest("parameters must be sent in the request body, not the query string"))
	}
	form, name, err := parseForm(string(body))
	switch {
	case errors.Is(err, errRepeated) && name == "resource":
		return fail(errResourceRepeated)
	case errors.Is(err, errRepeated):
		return fail(invalidRequest("parameter " + strconv.Quote(name) + " is repeated"))
	case err != nil:
		return fail(invalidRequest("the request body is not valid form encoding"))
	}

	creds, aerr := clientAuthentication(r, &form)
	if aerr != nil {
		return fail(aerr)
	}
	return form, creds, nil
}

func isFormContentType(ct string) bool {
	if ct == "application/x-www-form-urlencoded" {
		return true // the common case, without mime parsing
	}
	mt, _, err := mime.ParseMediaType(ct)
	return err == nil && mt == "application/x-www-form-urlencoded"
}

// clientAuthentication finds the credentials: HTTP Basic (RFC 6749 §2.3.1:
// form-urlencoded before Base64) or form fields, never both. A form client_id
// equal to the Basic one is allowed, since some clients always send it. A
// malformed Basic header is an authentication failure (401), reported only
// after the request itself was found well-formed.
func clientAuthentication(r *http.Request, form *clientForm) (clientCredentials, *oauthError) {
	formID, formSecret := form.clientID, form.clientSecret
	auth := r.Header.Get("Authorization")
	if auth == "" {
		return clientCredentials{id: formID, secret: formSecret}, nil
	}
	if form.sent(pClientSecret) {
		return clientCredentials{}, invalidRequest("use one client authentication method: HTTP Basic or client_secret in the body, not both")
	}
	id, secret, ok := parseBasic(auth)
	if !ok {
		return clientCredentials{}, nil // malformed: 401 once the request is otherwise valid
	}
	if form.sent(pClientID) && formID != id {
		return clientCredentials{}, invalidRequest("client_id in the body differs from the one in the Authorization header")
	}
	return clientCredentials{id: id, secret: secret}, nil
}

func parseBasic(h string) (id, secret string, ok bool) {
	const prefix = "basic "
	if len(h) <= len(prefix) || !strings.EqualFold(h[:len(prefix)], prefix) {
		return "", "", false
	}
	raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(h[len(prefix):]))
	if err != nil {
		return "", "", false
	}
	rawID, rawSecret, found := bytes.Cut(raw, []byte{':'})
	if !found {
		return "", "", false
	}
	if id, err = url.QueryUnescape(string(rawID)); err != nil {
		return "", "", false
	}
	if id == "" {
		return "", "", false // a refusal returns no secret, so none can leak
	}
	if secret, err = url.QueryUnescape(string(rawSecret)); err != nil {
		return "", "", false
	}
	return id, secret, true
}

// Header values shared by every answer; net/http only reads them.
var (
	hdrJSON    = []string{"application/json"}
	hdrNoStore = []string{"no-store"}
	hdrNoCache = []string{"no-cache"}
)

// writeAccessToken writes the answer appendAnswer built. Write copies it
// (into the connection's buffer, or to the connection), so the scratch it
// lives in can be reused once this returns.
func writeAccessToken(w http.ResponseWriter, answer []byte) {
	setJSONNoStore(w.Header())
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(answer)
}

// setJSONNoStore marks an answer as JSON that no cache may keep (RFC 6749
// §5.1), by assigning the shared header values (no allocation).
func setJSONNoStore(h http.Header) {
	h["Content-Type"] = hdrJSON
	h["Cache-Control"] = hdrNoStore
	h["Pragma"] = hdrNoCache
}

// accessClaims is the RFC 9068 claim set.
type accessClaims struct {
	Issuer    string `json:"iss"`
	Subject   string `json:"sub"`
	Audience  string `json:"aud"`
	ExpiresAt int64  `json:"exp"`
	IssuedAt  int64  `json:"iat"`
	NotBefore int64  `json:"nbf"`
	ID        string `json:"jti"`
	ClientID  string `json:"client_id"`
	Scope     string `json:"scope"`
	TeamID    string `json:"team_id,omitempty"`
	// Actor and SessionID are set on session tokens only
	// (server/mgmttoken.go): act.sub (RFC 8693 §4.1) and sid.
	Actor     string `json:"-"`
	SessionID string `json:"sid,omitempty"`
	// Status points at the key's entry in the status list, so resource
	// servers stop accepting the token once the key is deleted.
	Status *statusClaim `json:"status,omitempty"`
	// Metadata is the compact JSON object of the key's metadata members
	// the operator lists in metadata_claims (keypolicy.go), or nil.
	Metadata []byte `json:"-"`
}

// appendJSON encodes the claims as encoding/json would (same member names
// and order), without reflection: this runs for every token.
func (c *accessClaims) appendJSON(b []byte) []byte {
	b = append(b, `{"iss":`...)
	b = appendJSONString(b, c.Issuer)
	b = append(b, `,"sub":`...)
	b = appendJSONString(b, c.Subject)
	b = append(b, `,"aud":`...)
	b = appendJSONString(b, c.Audience)
	b = append(b, `,"exp":`...)
	b = strconv.AppendInt(b, c.ExpiresAt, 10)
	b = append(b, `,"iat":`...)
	b = strconv.AppendInt(b, c.IssuedAt, 10)
	b = append(b, `,"nbf":`...)
	b = strconv.AppendInt(b, c.NotBefore, 10)
	b = append(b, `,"jti":`...)
	b = appendJSONString(b, c.ID)
	b = append(b, `,"client_id":`...)
	b = appendJSONString(b, c.ClientID)
	b = append(b, `,"scope":`...)
	b = appendJSONString(b, c.Scope)
	if c.TeamID != "" {
		b = append(b, `,"team_id":`...)
		b = appendJSONString(b, c.TeamID)
	}
	if c.Actor != "" {
		b = append(b, `,"act":{"sub":`...)
		b = appendJSONString(b, c.Actor)
		b = append(b, '}')
	}
	if c.SessionID != "" {
		b = append(b, `,"sid":`...)
		b = appendJSONString(b, c.SessionID)
	}
	if c.Status != nil {
		b = append(b, `,"status":{"status_list":{"idx":`...)
		b = strconv.AppendInt(b, c.Status.StatusList.Idx, 10)
		b = append(b, `,"uri":`...)
		b = appendJSONString(b, c.Status.StatusList.URI)
		b = append(b, `}}`...)
	}
	if c.Metadata != nil {
		b = append(b, `,"metadata":`...)
		b = append(b, c.Metadata...)
	}
	return append(b, '}')
}

// appendJSONString appends s as a JSON string. Values here are printable
// ASCII in practice; anything else is escaped all the same, so a strange
// issuer or team ID can never break the token's JSON.
func appendJSONString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' && c < 0x7f {
			continue
		}
		if c >= 0x80 {
			// Multi-byte UTF-8: keep valid sequences, replace invalid bytes
			// the way encoding/json does.
			r, size := utf8.DecodeRuneInString(s[i:])
			if r == utf8.RuneError && size == 1 {
				b = append(b, s[start:i]...)
				b = append(b, `\ufffd`...)
				start = i + 1
			}
			i += size - 1
			continue
		}
		b = append(b, s[start:i]...)
		switch c {
		case '"', '\\':
			b = append(b, '\\', c)
		default:
			b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
		}
		start = i + 1
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

func newJTI() (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	return base64.RawURLEncoding.EncodeToString(b[:]), nil
}

// recordAuthFailure counts a refused client authentication against the key
// when clientID was a known one (Authenticate then returns its identity,
// k); unknown IDs are not counted, so guessing cannot grow anything — but
// they cost the same work (lastused.Tracker.RecordUnknownFailure), so the
// time of a refusal does not say which (docs/ARCHITECTURE.md, "Equal cost
// for unknown client IDs").
func (s *Server) recordAuthFailure(clientID string, k store.Key) {
	if clientID == "" {
		return // no ID, nothing to tell
	}
	now := s.cfg.Now()
	switch {
	case k.ClientID != "":
		s.lastUsed.RecordFailure(k.ClientID, k.TeamID, k.LastUsedAt, now)
	case !store.DecoyAdmin(clientID):
		// (A known admin key's failure is not counted and costs nothing.)
		s.lastUsed.RecordUnknownFailure(clientID, now)
	}
}
