package loadgen

import (
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/keygate/keygate/masterkey"
	"github.com/keygate/keygate/scopes"
	"github.com/keygate/keygate/signing"
	"github.com/keygate/keygate/store"
)

// Floor token contents: a token lifetime and claims like keygate's defaults.
const (
	floorTTL = 900 * time.Second
	// FloorTeamID is the team_id of every floor token.
	FloorTeamID = "bench"
	// floorStatusIdx is the status list index of every floor token.
	floorStatusIdx = 1
	// floorClientID is sub and client_id when a request names no client.
	floorClientID = "kgc_floor"
	// jwksCacheControl is what keygate sends with its JWKS.
	jwksCacheControl = "public, max-age=300, stale-while-revalidate=60"
)

// floorClaims is keygate's access token claim set (server.accessClaims):
// same names, same order, so the same payload size.
type floorClaims struct {
	Issuer    string       `json:"iss"`
	Subject   string       `json:"sub"`
	Audience  string       `json:"aud"`
	ExpiresAt int64        `json:"exp"`
	IssuedAt  int64        `json:"iat"`
	NotBefore int64        `json:"nbf"`
	ID        string       `json:"jti"`
	ClientID  string       `json:"client_id"`
	Scope     string       `json:"scope"`
	TeamID    string       `json:"team_id,omitempty"`
	Status    *floorStatus `json:"status,omitempty"`
}

type floorStatus struct {
	StatusList floorStatusRef `json:"status_list"`
}

type floorStatusRef struct {
	Idx int64  `json:"idx"`
	URI string `json:"uri"`
}

// floor is the handler NewFloorHandler returns.
type floor struct {
	signer *signing.Signer
	jwks   []byte
	scope  string
}

// NewFloorHandler returns the floor: the cheapest server that does what a
// token endpoint must, to measure keygate against.
//
// POST /oauth/token parses the form, checks grant_type=client_credentials,
// and answers keygate's response shape — {"access_token", "expires_in":
// 900, "scope", "token_type": "Bearer"} with Cache-Control: no-store — with
// a JWT of keygate's claim set (iss, sub, aud, exp, iat, nbf, a random jti,
// client_id, the accounting_api scopes, team_id, status) signed by
// keygate's own signing.Signer, header {alg, kid, typ: at+jwt}. It does not
// authenticate: sub and client_id are the Basic user name, unchecked. iss
// and aud are http:// plus the request's Host.
//
// GET /.well-known/jwks.json answers the bytes keygate would publish for the
// key, from a plain net/http handler.
//
// The key of alg (ES256, EdDSA or RS256) is generated here and lives only in
// memory.
func NewFloorHandler(alg string) (http.Handler, error) {
	// Go through the store format and signing.Load so the signer and the
	// JWKS bytes are exactly keygate's.
	encoded, err := masterkey.Generate()
	if err != nil {
		return nil, err
	}
	mk, err := masterkey.Parse(encoded)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	sk, err := signing.NewStoredKey(mk, alg, now)
	if err != nil {
		return nil, err
	}
	ks, err := signing.Load(store.SigningKeys{Active: &sk}, mk, now, 0) // one key: nothing to retire
	if err != nil {
		return nil, err
	}
	perm, ok := scopes.Default().Lookup("accounting_api")
	if !ok {
		return nil, fmt.Errorf("loadgen: the default catalog has no accounting_api permission")
	}
	return &floor{signer: ks.Signer(), jwks: ks.JWKS(), scope: scopes.Join(perm.Scopes)}, nil
}

func (f *floor) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case TokenPath:
		f.token(w, r)
	case JWKSPath:
		f.serveJWKS(w, r)
	default:
		http.NotFound(w, r)
	}
}

func (f *floor) token(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		floorError(w, http.StatusMethodNotAllowed, "invalid_request")
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, 8<<10)
	if err := r.ParseForm(); err != nil {
		floorError(w, http.StatusBadRequest, "invalid_request")
		return
	}
	switch r.PostForm.Get("grant_type") {
	case "client_credentials":
	case "":
		floorError(w, http.StatusBadRequest, "invalid_request")
		return
	default:
		floorError(w, http.StatusBadRequest, "unsupported_grant_type")
		return
	}
	clientID, _, _ := r.BasicAuth()
	if clientID == "" {
		clientID = floorClientID
	}
	var jti [16]byte
	if _, err := rand.Read(jti[:]); err != nil {
		floorError(w, http.StatusInternalServerError, "server_error")
		return
	}
	iss := "http://" + r.Host
	now := time.Now()
	tok, err := f.signer.Sign(floorClaims{
		Issuer:    iss,
		Subject:   clientID,
		Audience:  iss,
		ExpiresAt: now.Add(floorTTL).Unix(),
		IssuedAt:  now.Unix(),
		NotBefore: now.Unix(),
		ID:        base64.RawURLEncoding.EncodeToString(jti[:]),
		ClientID:  clientID,
		Scope:     f.scope,
		TeamID:    FloorTeamID,
		Status:    &floorStatus{StatusList: floorStatusRef{Idx: floorStatusIdx, URI: iss + "/statuslists/2bit/0"}},
	})
	if err != nil {
		floorError(w, http.StatusInternalServerError, "server_error")
		return
	}
	// keygate's answer, byte for byte: encoding/json of a map sorts the
	// members and ends with a newline. Token and scope need no escaping.
	body := make([]byte, 0, len(tok)+len(f.scope)+96)
	body = append(body, `{"access_token":"`...)
	body = append(body, tok...)
	body = append(body, `","expires_in":`...)
	body = strconv.AppendInt(body, int64(floorTTL/time.Second), 10)
	body = append(body, `,"scope":"`...)
	body = append(body, f.scope...)
	body = append(body, `","token_type":"Bearer"}`+"\n"...)
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("Pragma", "no-cache")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(body)
}

func (f *floor) serveJWKS(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "application/jwk-set+json")
	h.Set("Cache-Control", jwksCacheControl)
	_, _ = w.Write(f.jwks)
}

func floorError(w http.ResponseWriter, status int, code string) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write([]byte(`{"error":"` + code + `"}` + "\n"))
}
