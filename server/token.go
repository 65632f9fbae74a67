package server

// The token endpoint: RFC 6749 §4.4 client credentials, on
// github.com/go-oauth2/oauth2/v4. Everything on the token path is in this
// file, in the order a request meets it:
//
//	parse (tokenRequest.parse) → authenticate (clientStore, apiKey.VerifyPassword)
//	→ decide scopes and sign (accessGenerator.Token) → answer (writeToken)
//
// go-oauth2 supplies the flow and its error vocabulary; keygate plugs in its
// own pieces where the library's defaults differ from the RFC or from what a
// hash-only store needs. The raw request is validated here before the
// library sees it, because the library reads r.Form (query string
// included), does not URL-decode Basic credentials, and checks other grant
// types before client authentication.

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
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
	"github.com/go-oauth2/oauth2/v4"
	oerrors "github.com/go-oauth2/oauth2/v4/errors"
	"github.com/go-oauth2/oauth2/v4/manage"
	oserver "github.com/go-oauth2/oauth2/v4/server"

	"github.com/keygate/keygate/credential"
	"github.com/keygate/keygate/scopes"
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

// A hash-only store must never reach go-oauth2's fallback `secret ==
// GetSecret()` compare, which would accept any secret against an empty
// GetSecret. This assertion keeps apiKey on the verifier path.
var _ oauth2.ClientPasswordVerifier = (*apiKey)(nil)

// tokenError is a §5.2 error decided by keygate before or around go-oauth2;
// the library's InternalErrorHandler turns it into its Response.
type tokenError struct {
	code        error // one of go-oauth2's errors, e.g. oerrors.ErrInvalidRequest
	description string
}

func (e *tokenError) Error() string { return e.code.Error() + ": " + e.description }

func invalidRequest(desc string) *tokenError {
	return &tokenError{code: oerrors.ErrInvalidRequest, description: desc}
}

// statusFor is RFC 6749 §5.2's status for each error code; go-oauth2's
// defaults differ (401 for unsupported_grant_type and unauthorized_client).
func statusFor(code error) int {
	switch code {
	case oerrors.ErrInvalidClient:
		return http.StatusUnauthorized
	case oerrors.ErrServerError:
		return http.StatusInternalServerError
	case oerrors.ErrTemporarilyUnavailable:
		return http.StatusServiceUnavailable
	default:
		return http.StatusBadRequest
	}
}

// descriptions replace go-oauth2's generic texts with ones an integrator can
// act on, without saying which part of the credentials was wrong.
var descriptions = map[error]string{
	oerrors.ErrInvalidClient:          "client authentication failed: unknown client, wrong secret, or deleted key",
	oerrors.ErrInvalidScope:           "the requested scope is malformed or not granted to this key",
	oerrors.ErrUnsupportedGrantType:   "only grant_type=client_credentials is supported",
	oerrors.ErrUnauthorizedClient:     "this client may not use this grant type",
	oerrors.ErrServerError:            "the server could not issue a token; try again",
	oerrors.ErrTemporarilyUnavailable: "the key store is temporarily unavailable; try again shortly",
}

// tokenEndpoint wires go-oauth2 to keygate's store, hasher and signer.
type tokenEndpoint struct {
	s     *Server
	oauth *oserver.Server
}

func newTokenEndpoint(s *Server) *tokenEndpoint {
	m := manage.NewManager()
	// go-oauth2's client-credentials lifetime defaults to 2 h.
	m.SetClientTokenCfg(&manage.Config{AccessTokenExp: s.cfg.TokenTTL})
	m.MapClientStorage(clientStore{s})
	m.MapAccessGenerate(accessGenerator{s})
	m.MapTokenStorage(noTokenStore{})

	cfg := oserver.NewConfig()
	cfg.AllowedGrantTypes = []oauth2.GrantType{oauth2.ClientCredentials}
	o := oserver.NewServer(cfg, m)
	o.InternalErrorHandler = func(err error) *oerrors.Response {
		var te *tokenError
		if errors.As(err, &te) {
			return &oerrors.Response{Error: te.code, Description: te.description}
		}
		// Never echo an unexpected error to the client; it may carry details.
		s.log.Error("token endpoint: unexpected error", "err", err)
		return nil
	}
	o.ResponseErrorHandler = func(re *oerrors.Response) {
		re.StatusCode = statusFor(re.Error)
		if d, ok := descriptions[re.Error]; ok && (re.Description == "" || re.Description == oerrors.Descriptions[re.Error]) {
			re.Description = d
		}
		if re.Error == oerrors.ErrInvalidClient {
			re.SetHeader("WWW-Authenticate", `Basic realm="keygate"`)
		}
	}
	return &tokenEndpoint{s: s, oauth: o}
}

type clientCredentials struct{ id, secret string }

// handle is the gin handler for /oauth/token (all methods). keygate parses
// and checks the raw request itself, then hands go-oauth2 a complete token
// request: GetAccessToken runs the library's flow (grant check, client
// lookup, password verification, token generation, token store) without
// its request parsing, which keygate has replaced.
func (t *tokenEndpoint) handle(c *gin.Context) {
	r := c.Request
	form, creds, err := parseTokenRequest(c.Writer, r)
	if err != nil {
		t.writeError(c.Writer, err)
		return
	}
	ti, err := t.oauth.GetAccessToken(r.Context(), oauth2.ClientCredentials, &oauth2.TokenGenerateRequest{
		ClientID:     creds.id,
		ClientSecret: creds.secret,
		Scope:        form.scope,
		Request:      r,
	})
	if err != nil {
		t.writeError(c.Writer, err)
		return
	}
	writeAccessToken(c.Writer, ti.GetAccess(), int64(ti.GetAccessExpiresIn()/time.Second), ti.GetScope())
}

// Header values shared by every answer; net/http only reads them.
var (
	hdrJSON    = []string{"application/json"}
	hdrNoStore = []string{"no-store"}
	hdrNoCache = []string{"no-cache"}
)

// writeAccessToken writes the RFC 6749 §5.1 answer. Every value is known to
// need no JSON escaping (a compact JWS, a number, validated scope tokens),
// so the body is appended, not reflected.
func writeAccessToken(w http.ResponseWriter, token string, expiresIn int64, scope string) {
	buf := make([]byte, 0, len(token)+len(scope)+96)
	buf = append(buf, `{"access_token":"`...)
	buf = append(buf, token...)
	buf = append(buf, `","expires_in":`...)
	buf = strconv.AppendInt(buf, expiresIn, 10)
	buf = append(buf, `,"scope":`...)
	buf = appendJSONString(buf, scope)
	buf = append(buf, `,"token_type":"Bearer"}`...)
	buf = append(buf, '\n')
	setJSONNoStore(w.Header())
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(buf)
}

// setJSONNoStore marks an answer as JSON that no cache may keep (RFC 6749
// §5.1), by assigning the shared header values (no allocation).
func setJSONNoStore(h http.Header) {
	h["Content-Type"] = hdrJSON
	h["Cache-Control"] = hdrNoStore
	h["Pragma"] = hdrNoCache
}

func (t *tokenEndpoint) writeError(w http.ResponseWriter, err error) {
	if errors.Is(err, errAnswered) {
		return
	}
	data, status, header := t.oauth.GetErrorData(err)
	_ = writeToken(w, data, header, status)
}

// httpStatusError answers outside RFC 6749 §5.2 (405, 413) with a §5.2-shaped
// body all the same, so clients that parse every error body keep working.
func httpStatusError(w http.ResponseWriter, status int, desc string) error {
	_ = writeToken(w, map[string]any{"error": "invalid_request", "error_description": desc}, nil, status)
	return errAnswered
}

// errAnswered: the request was refused and the answer is already written.
var errAnswered = errors.New("answered")

// parseTokenRequest applies keygate's checks to the raw request, first
// failure answers: method, size, content type, query string, repeated
// parameters, two authentication methods, grant type, credentials.
func parseTokenRequest(w http.ResponseWriter, r *http.Request) (clientForm, clientCredentials, error) {
	form, creds, err := parseClientForm(w, r)
	if err != nil {
		return clientForm{}, clientCredentials{}, err
	}
	switch gt := form.grantType; {
	case gt == "":
		return clientForm{}, clientCredentials{}, invalidRequest("grant_type is missing; use grant_type=client_credentials")
	case gt != string(oauth2.ClientCredentials):
		return clientForm{}, clientCredentials{}, &tokenError{code: oerrors.ErrUnsupportedGrantType, description: descriptions[oerrors.ErrUnsupportedGrantType]}
	}
	if creds.id == "" || creds.secret == "" {
		return clientForm{}, clientCredentials{}, oerrors.ErrInvalidClient
	}
	return form, creds, nil
}

// parseClientForm is the part of the checks every endpoint a client
// authenticates to shares (token, introspection, revocation): POST, a form
// body of at most 8 KiB, no query string, no repeated parameter, one
// authentication method.
func parseClientForm(w http.ResponseWriter, r *http.Request) (clientForm, clientCredentials, error) {
	fail := func(err error) (clientForm, clientCredentials, error) { return clientForm{}, clientCredentials{}, err }
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		return fail(httpStatusError(w, http.StatusMethodNotAllowed, "use POST"))
	}
	if r.ContentLength > maxTokenRequestBody {
		return fail(httpStatusError(w, http.StatusRequestEntityTooLarge, "request body over 8 KiB"))
	}
	bp := bodyBuffers.Get().(*[]byte)
	defer bodyBuffers.Put(bp)
	n, err := io.ReadFull(r.Body, *bp)
	if err != nil && err != io.ErrUnexpectedEOF && err != io.EOF {
		return fail(invalidRequest("could not read the request body"))
	}
	body := (*bp)[:n]
	if n > maxTokenRequestBody {
		return fail(httpStatusError(w, http.StatusRequestEntityTooLarge, "request body over 8 KiB"))
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
	case errors.Is(err, errRepeated):
		return fail(invalidRequest("parameter " + strconv.Quote(name) + " is repeated"))
	case err != nil:
		return fail(invalidRequest("the request body is not valid form encoding"))
	}

	creds, err := clientAuthentication(r, &form)
	if err != nil {
		return fail(err)
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
func clientAuthentication(r *http.Request, form *clientForm) (clientCredentials, error) {
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
	if secret, err = url.QueryUnescape(string(rawSecret)); err != nil {
		return "", "", false
	}
	return id, secret, id != ""
}

// apiKey is a stored key as go-oauth2 sees it. It never exposes a secret:
// GetSecret is empty and authentication goes through VerifyPassword.
type apiKey struct {
	key    store.Key
	known  bool // false: unknown client ID, verified against nothing
	hasher *credential.Hasher
	now    time.Time
}

func (k *apiKey) GetID() string     { return k.key.ClientID }
func (k *apiKey) GetSecret() string { return "" }
func (k *apiKey) GetDomain() string { return "" }
func (k *apiKey) IsPublic() bool    { return false }
func (k *apiKey) GetUserID() string { return "" }

// VerifyPassword checks the secret against the current hash and, during a
// rotation's grace period, the previous one. One HMAC, both compared in
// constant time, always — so the answer's timing does not say which
// matched, or whether the client exists at all.
func (k *apiKey) VerifyPassword(secret string) bool {
	var buf [sha256.Size]byte
	h := k.hasher.AppendHash(buf[:0], secret)
	cur := hmac.Equal(h, k.key.SecretHash)
	prev := hmac.Equal(h, k.key.PreviousSecretHash) && k.now.Before(k.key.PreviousSecretExpiresAt)
	return k.known && (cur || prev)
}

// clientStore is go-oauth2's ClientStore over keygate's store.
type clientStore struct{ s *Server }

func (cs clientStore) GetByID(ctx context.Context, id string) (oauth2.ClientInfo, error) {
	k, err := cs.s.store.GetKey(ctx, id)
	switch {
	case err == nil:
		return &apiKey{key: k, known: true, hasher: cs.s.hasher, now: cs.s.cfg.Now()}, nil
	case errors.Is(err, store.ErrNotFound):
		// Answer through VerifyPassword like a known key, so an unknown ID
		// costs the same as a wrong secret.
		return &apiKey{hasher: cs.s.hasher}, nil
	case errors.Is(err, context.Canceled):
		// The client hung up; nobody will read the answer.
		return nil, oerrors.ErrTemporarilyUnavailable
	case storeUnavailable(err):
		cs.s.log.Warn("token endpoint: store unavailable", "err", err)
		return nil, oerrors.ErrTemporarilyUnavailable
	default:
		cs.s.log.Error("token endpoint: load key", "err", err)
		return nil, oerrors.ErrServerError
	}
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
	// Status points at the key's entry in the status list, so resource
	// servers stop accepting the token once the key is deleted.
	Status *statusClaim `json:"status,omitempty"`
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
	if c.Status != nil {
		b = append(b, `,"status":{"status_list":{"idx":`...)
		b = strconv.AppendInt(b, c.Status.StatusList.Idx, 10)
		b = append(b, `,"uri":`...)
		b = appendJSONString(b, c.Status.StatusList.URI)
		b = append(b, `}}`...)
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

// accessGenerator decides the granted scope and signs the JWT. Scope is
// decided here, after the secret was verified, so an unauthenticated caller
// learns nothing about a key's scopes.
type accessGenerator struct{ s *Server }

func (g accessGenerator) Token(_ context.Context, data *oauth2.GenerateBasic, _ bool) (string, string, error) {
	k, ok := data.Client.(*apiKey)
	if !ok {
		return "", "", oerrors.ErrServerError
	}
	all, err := g.s.resolvedScopes(k.key)
	if err != nil {
		g.s.log.Error("token endpoint: resolve scopes", "client_id", k.key.ClientID, "err", err)
		return "", "", oerrors.ErrServerError
	}
	scope := all.joined
	if requested := data.TokenInfo.GetScope(); requested != "" {
		want, err := scopes.ParseScope(requested)
		if err != nil || !scopes.Subset(want, all.list) {
			return "", "", oerrors.ErrInvalidScope
		}
		scope = scopes.Join(want)
	}
	data.TokenInfo.SetScope(scope)

	// One clock reading per request: the one GetByID took, by which
	// VerifyPassword judged a rotated secret's grace period.
	iat := k.now
	jti, err := newJTI()
	if err != nil {
		return "", "", oerrors.ErrServerError
	}
	var status *statusClaim
	if k.key.StatusIndex > 0 {
		status = &statusClaim{StatusList: statusListRef{Idx: k.key.StatusIndex, URI: g.s.statusListURI}}
	}
	claims := accessClaims{
		Issuer:    g.s.cfg.Issuer,
		Subject:   k.key.ClientID,
		Audience:  g.s.cfg.Audience,
		ExpiresAt: iat.Add(data.TokenInfo.GetAccessExpiresIn()).Unix(),
		IssuedAt:  iat.Unix(),
		NotBefore: iat.Unix(),
		ID:        jti,
		ClientID:  k.key.ClientID,
		Scope:     scope,
		TeamID:    k.key.TeamID,
		Status:    status,
	}
	tok, err := g.s.keys.Load().Signer().SignPayload(claims.appendJSON(make([]byte, 0, 512)))
	if err != nil {
		g.s.log.Error("token endpoint: sign", "err", err)
		return "", "", oerrors.ErrServerError
	}
	g.s.lastUsed.record(k.key.ClientID, k.key.LastUsedAt, iat)
	return tok, "", nil
}

func newJTI() (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	return base64.RawURLEncoding.EncodeToString(b[:]), nil
}

// noTokenStore stores nothing: a JWT carries everything a verifier needs,
// and go-oauth2's memory store would grow without bound under load.
type noTokenStore struct{}

func (noTokenStore) Create(context.Context, oauth2.TokenInfo) error { return nil }
func (noTokenStore) RemoveByCode(context.Context, string) error     { return nil }
func (noTokenStore) RemoveByAccess(context.Context, string) error   { return nil }
func (noTokenStore) RemoveByRefresh(context.Context, string) error  { return nil }
func (noTokenStore) GetByCode(context.Context, string) (oauth2.TokenInfo, error) {
	return nil, oerrors.ErrInvalidAuthorizeCode
}
func (noTokenStore) GetByAccess(context.Context, string) (oauth2.TokenInfo, error) {
	return nil, oerrors.ErrInvalidAccessToken
}
func (noTokenStore) GetByRefresh(context.Context, string) (oauth2.TokenInfo, error) {
	return nil, oerrors.ErrInvalidRefreshToken
}

// writeToken is go-oauth2's ResponseTokenHandler: the token or §5.2 error as
// JSON, never cached (RFC 6749 §5.1).
func writeToken(w http.ResponseWriter, data map[string]any, header http.Header, status ...int) error {
	for k := range header {
		w.Header().Set(k, header.Get(k))
	}
	code := http.StatusOK
	if len(status) > 0 && status[0] > 0 {
		code = status[0]
	}
	return writeJSON(w, code, data)
}

// writeJSON answers with v as uncacheable JSON, the form of every answer
// the OAuth endpoints give.
func writeJSON(w http.ResponseWriter, status int, v any) error {
	setJSONNoStore(w.Header())
	w.WriteHeader(status)
	return json.NewEncoder(w).Encode(v)
}
