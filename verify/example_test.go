package verify_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/keygate/keygate/verify"
)

// A resource server (here, an accounting API) trusts keygate's tokens: it
// needs keygate's issuer URL and its own audience, nothing else.
func ExampleMiddleware() {
	keygate := startStandInKeygate() // in production: https://auth.example.com
	defer keygate.Close()

	ctx := context.Background()
	v, err := verify.New(ctx, verify.Options{
		Issuer:   keygate.URL,
		Audience: "https://api.example.com",
	})
	if err != nil {
		log.Fatal(err) // keygate unreachable or misconfigured: fail at start-up
	}

	listInvoices := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		claims, _ := verify.ClaimsFromContext(r.Context())
		fmt.Fprintf(w, "invoices for team %s", claims.TeamID)
	})
	mux := http.NewServeMux()
	mux.Handle("GET /accounting/invoices",
		verify.Middleware(v, verify.RequireScopes("accounting:read"))(listInvoices))

	api := httptest.NewServer(mux)
	defer api.Close()

	for _, token := range []string{
		"", // no token at all
		keygate.Token("visualizations:read", time.Hour),
		keygate.Token("accounting:read", time.Hour),
	} {
		req, _ := http.NewRequest(http.MethodGet, api.URL+"/accounting/invoices", nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			log.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			fmt.Println(resp.StatusCode, string(body))
		} else {
			fmt.Println(resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
		}
	}
	// Output:
	// 401 Bearer realm="keygate"
	// 403 Bearer realm="keygate", error="insufficient_scope", error_description="the token lacks a scope this resource needs", scope="accounting:read"
	// 200 invoices for team acme
}

// Verify without the middleware, for instance in a gRPC interceptor or a
// message consumer. Every failure wraps one of the Err* reasons.
func ExampleVerifier_Verify() {
	keygate := startStandInKeygate()
	defer keygate.Close()

	ctx := context.Background()
	v, err := verify.New(ctx, verify.Options{
		Issuer:   keygate.URL,
		Audience: "https://api.example.com",
	})
	if err != nil {
		log.Fatal(err)
	}

	for _, token := range []string{
		keygate.Token("accounting:read", time.Hour),
		keygate.Token("accounting:read", -time.Hour), // expired an hour ago
		"not-a-token",
	} {
		claims, err := v.Verify(ctx, token)
		switch {
		case errors.Is(err, verify.ErrExpired):
			fmt.Println("expired: the client should get a new token from keygate")
		case err != nil:
			fmt.Println("rejected:", verify.Reason(err)) // safe to show the client
		default:
			fmt.Printf("client %s of team %s may %v\n", claims.ClientID, claims.TeamID, claims.Scopes)
		}
	}
	// Output:
	// client invoice-bot of team acme may [accounting:read]
	// expired: the client should get a new token from keygate
	// rejected: malformed token
}

// Handlers behind Middleware find the verified token in the request's
// context: who is calling, for which team, with which scopes.
func ExampleClaimsFromContext() {
	keygate := startStandInKeygate()
	defer keygate.Close()

	v, err := verify.New(context.Background(), verify.Options{
		Issuer:   keygate.URL,
		Audience: "https://api.example.com",
	})
	if err != nil {
		log.Fatal(err)
	}

	whoami := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		claims, ok := verify.ClaimsFromContext(r.Context())
		if !ok { // only happens if the handler is mounted without Middleware
			http.Error(w, "unauthenticated", http.StatusInternalServerError)
			return
		}
		fmt.Fprintf(w, "client %s, team %s, scopes %v, token %s",
			claims.ClientID, claims.TeamID, claims.Scopes, claims.ID)
	})
	handler := verify.Middleware(v)(whoami)

	req := httptest.NewRequest(http.MethodGet, "/whoami", nil)
	req.Header.Set("Authorization", "Bearer "+keygate.Token("accounting:read accounting:write", time.Hour))
	rec := httptest.NewRecorder()
	handler.ServeHTTP(rec, req)
	fmt.Println(rec.Body.String())
	// Output:
	// client invoice-bot, team acme, scopes [accounting:read accounting:write], token tok-1
}

// standInKeygate stands in for keygate in these examples: it publishes RFC
// 8414 metadata and a JWKS for one ES256 key, and mints RFC 9068 access
// tokens for client "invoice-bot" of team "acme". A real resource server
// points verify at keygate's URL instead, and clients get their tokens from
// keygate's token endpoint.
type standInKeygate struct {
	*httptest.Server
	key *ecdsa.PrivateKey
}

func startStandInKeygate() *standInKeygate {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		log.Fatal(err)
	}
	k := &standInKeygate{key: key}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/oauth-authorization-server", func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(map[string]string{"issuer": k.URL, "jwks_uri": k.URL + "/.well-known/jwks.json"})
	})
	mux.HandleFunc("GET /.well-known/jwks.json", func(w http.ResponseWriter, r *http.Request) {
		x, y := make([]byte, 32), make([]byte, 32)
		key.X.FillBytes(x)
		key.Y.FillBytes(y)
		b64 := base64.RawURLEncoding.EncodeToString
		json.NewEncoder(w).Encode(map[string]any{"keys": []map[string]string{{
			"kty": "EC", "crv": "P-256", "x": b64(x), "y": b64(y), "kid": "key-1", "alg": "ES256", "use": "sig",
		}}})
	})
	k.Server = httptest.NewServer(mux)
	return k
}

// Token mints an access token with scope, expiring after expiresIn.
func (k *standInKeygate) Token(scope string, expiresIn time.Duration) string {
	now := time.Now()
	tok := jwt.NewWithClaims(jwt.SigningMethodES256, jwt.MapClaims{
		"iss":       k.URL,
		"aud":       "https://api.example.com",
		"sub":       "invoice-bot",
		"client_id": "invoice-bot",
		"team_id":   "acme",
		"scope":     scope,
		"iat":       now.Add(min(expiresIn, 0) - time.Minute).Unix(),
		"exp":       now.Add(expiresIn).Unix(),
		"jti":       "tok-1",
	})
	tok.Header["typ"] = "at+jwt"
	tok.Header["kid"] = "key-1"
	s, err := tok.SignedString(k.key)
	if err != nil {
		log.Fatal(err)
	}
	return s
}
