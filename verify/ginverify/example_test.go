package ginverify_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"log"
	"net/http"
	"net/http/httptest"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/golang-jwt/jwt/v5"

	"github.com/keygate/keygate/verify"
	"github.com/keygate/keygate/verify/ginverify"
)

// An accounting API on gin protects /accounting/… with accounting:read.
func ExampleMiddleware() {
	keygate := startStandInKeygate() // in production: https://auth.example.com
	defer keygate.Close()

	v, err := verify.New(context.Background(), verify.Options{
		Issuer:   keygate.URL,
		Audience: "https://api.example.com",
	})
	if err != nil {
		log.Fatal(err)
	}

	r := gin.New()
	accounting := r.Group("/accounting", ginverify.Middleware(v, verify.RequireScopes("accounting:read")))
	accounting.GET("/invoices", func(c *gin.Context) {
		claims, _ := ginverify.Claims(c)
		c.String(http.StatusOK, "invoices for team %s", claims.TeamID)
	})

	for _, token := range []string{
		"",
		keygate.Token("visualizations:read"),
		keygate.Token("accounting:read"),
	} {
		req := httptest.NewRequest(http.MethodGet, "/accounting/invoices", nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		rec := httptest.NewRecorder()
		r.ServeHTTP(rec, req)
		if rec.Code == http.StatusOK {
			fmt.Println(rec.Code, rec.Body.String())
		} else {
			fmt.Println(rec.Code, rec.Header().Get("WWW-Authenticate"))
		}
	}
	// Output:
	// 401 Bearer realm="keygate"
	// 403 Bearer realm="keygate", error="insufficient_scope", error_description="the token lacks a scope this resource needs", scope="accounting:read"
	// 200 invoices for team acme
}

// standInKeygate stands in for keygate in this example: it publishes RFC
// 8414 metadata and a JWKS for one ES256 key, and mints access tokens for
// client "invoice-bot" of team "acme".
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

// Token mints an hour-long access token with scope.
func (k *standInKeygate) Token(scope string) string {
	now := time.Now()
	tok := jwt.NewWithClaims(jwt.SigningMethodES256, jwt.MapClaims{
		"iss": k.URL, "aud": "https://api.example.com",
		"sub": "invoice-bot", "client_id": "invoice-bot", "team_id": "acme", "scope": scope,
		"iat": now.Unix(), "exp": now.Add(time.Hour).Unix(), "jti": "tok-1",
	})
	tok.Header["typ"] = "at+jwt"
	tok.Header["kid"] = "key-1"
	s, err := tok.SignedString(k.key)
	if err != nil {
		log.Fatal(err)
	}
	return s
}
