// Command recipe is the Go recipe of docs/recipes.md: a client that gets a
// keygate access token with golang.org/x/oauth2/clientcredentials, and a
// resource server that checks it with keygate's verify package. It is run
// against a real keygate by scripts/ci/recipes.sh.
//
//	recipe client   get a token, verify it; a wrong audience, a tampered
//	                signature and a JWT that is not an access token are refused
//	recipe api      serve GET /invoices (scope accounting:read) on --listen,
//	                and GET /other-api/invoices for another audience
//
// Settings come from the environment: KEYGATE_ISSUER (keygate's issuer
// URL), KEYGATE_AUDIENCE (keygate's audience setting, which is the issuer
// unless set), and for the client KEYGATE_CLIENT_ID and KEYGATE_CLIENT_SECRET
// (never a command-line argument: those show in ps).
//
// verify enforces keygate's token status list: a deleted key's tokens are
// refused within the list's ttl. Verifiers that do not read the list (jose,
// PyJWT, gateways) accept them until they expire.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net/http"
	"os"
	"strings"
	"time"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"

	"github.com/keygate/keygate/verify"
)

func main() {
	log.SetFlags(0)
	log.SetPrefix("recipe (go): ")
	if len(os.Args) < 2 {
		log.Fatal("usage: recipe client | recipe api --listen 127.0.0.1:PORT")
	}
	issuer, audience := mustEnv("KEYGATE_ISSUER"), mustEnv("KEYGATE_AUDIENCE")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	switch os.Args[1] {
	case "client":
		if err := client(ctx, issuer, audience); err != nil {
			log.Fatal(err)
		}
	case "api":
		fs := flag.NewFlagSet("api", flag.ExitOnError)
		listen := fs.String("listen", "127.0.0.1:8081", "host:port of the resource server")
		fs.Parse(os.Args[2:])
		// verify.New fetches the JWKS now: a wrong issuer fails at start-up.
		v, err := verify.New(ctx, verify.Options{Issuer: issuer, Audience: audience})
		if err != nil {
			log.Fatal(err)
		}
		// Another API behind the same keygate, with an audience of its own:
		// keygate's tokens are not meant for it.
		other, err := verify.New(ctx, verify.Options{Issuer: issuer, Audience: "https://other-api.example.test"})
		if err != nil {
			log.Fatal(err)
		}
		log.Fatal(api(v, other, *listen))
	default:
		log.Fatalf("unknown command %q: client or api", os.Args[1])
	}
}

// client gets a token as an integration would, then verifies it as a
// resource server would, and shows what verify refuses.
func client(ctx context.Context, issuer, audience string) error {
	cc := clientcredentials.Config{
		ClientID:     mustEnv("KEYGATE_CLIENT_ID"),
		ClientSecret: mustEnv("KEYGATE_CLIENT_SECRET"),
		TokenURL:     issuer + "/oauth/token",
		Scopes:       []string{"accounting:read"}, // optional: narrows the key's scopes
		AuthStyle:    oauth2.AuthStyleInHeader,    // HTTP Basic, keygate's first method
	}
	// cc.Client(ctx) would give an *http.Client that sends the token and
	// fetches a new one before it expires; here we want the token itself.
	tok, err := cc.Token(ctx)
	if err != nil {
		return fmt.Errorf("client credentials: %w", err)
	}
	fmt.Printf("token: type %s, expires %s\n", tok.TokenType, tok.Expiry.UTC().Format(time.RFC3339))

	// verify pins the issuer and audience given here, the algorithm to the
	// one each JWKS key is for (ES256, RS256 or EdDSA; never none or HMAC)
	// and typ to at+jwt; it also enforces the token status list.
	v, err := verify.New(ctx, verify.Options{Issuer: issuer, Audience: audience})
	if err != nil {
		return fmt.Errorf("verifier: %w", err)
	}
	claims, err := v.Verify(ctx, tok.AccessToken)
	if err != nil {
		return fmt.Errorf("keygate's own token refused: %w", err)
	}
	fmt.Printf("verified: client %s of team %s, scopes %v\n", claims.ClientID, claims.TeamID, claims.Scopes)
	if !claims.HasScope("accounting:read") {
		return errors.New("the token lacks the scope it was asked for")
	}

	// What must be refused.
	wrongAud, err := verify.New(ctx, verify.Options{Issuer: issuer, Audience: "https://other-api.example.test"})
	if err != nil {
		return fmt.Errorf("verifier: %w", err)
	}
	statusList, err := fetchStatusList(ctx, issuer)
	if err != nil {
		return err
	}
	for _, c := range []struct {
		what  string
		v     *verify.Verifier
		token string
		want  error
	}{
		{"another API's audience", wrongAud, tok.AccessToken, verify.ErrWrongAudience},
		{"a tampered signature", v, tamperSignature(tok.AccessToken), verify.ErrSignature},
		{"a keygate JWT that is no access token (the status list, typ statuslist+jwt)", v, statusList, verify.ErrWrongType},
	} {
		_, err := c.v.Verify(ctx, c.token)
		if !errors.Is(err, c.want) {
			return fmt.Errorf("%s: want %q, got %v", c.what, c.want, err)
		}
		fmt.Printf("refused as it should be: %s (%s)\n", c.what, verify.Reason(err))
	}
	return nil
}

// api is a resource server: GET /invoices needs a valid keygate token with
// scope accounting:read. verify.Middleware answers failures per RFC 6750
// (401 invalid_token, 403 insufficient_scope).
func api(v, other *verify.Verifier, listen string) error {
	invoices := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		claims, _ := verify.ClaimsFromContext(r.Context())
		fmt.Fprintf(w, "invoices of team %s\n", claims.TeamID)
	})
	mux := http.NewServeMux()
	mux.Handle("GET /invoices", verify.Middleware(v, verify.RequireScopes("accounting:read"))(invoices))
	mux.Handle("GET /other-api/invoices", verify.Middleware(other, verify.RequireScopes("accounting:read"))(invoices))
	srv := &http.Server{Addr: listen, Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	log.Printf("serving GET /invoices on http://%s", listen)
	return srv.ListenAndServe()
}

// tamperSignature changes the first character of the signature, which
// changes the decoded signature bytes (the last character might only carry
// padding bits).
func tamperSignature(token string) string {
	i := strings.LastIndexByte(token, '.') + 1
	c := byte('A')
	if token[i] == 'A' {
		c = 'B'
	}
	return token[:i] + string(c) + token[i+1:]
}

// fetchStatusList gets keygate's status list, a JWT signed with the same
// keys as access tokens but of another type: a verifier that did not check
// typ would take it for a token.
func fetchStatusList(ctx context.Context, issuer string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, issuer+"/statuslists/1", nil)
	if err != nil {
		return "", err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", fmt.Errorf("fetch the status list: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("fetch the status list: %s", resp.Status)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return "", fmt.Errorf("read the status list: %w", err)
	}
	return strings.TrimSpace(string(body)), nil
}

func mustEnv(name string) string {
	v := os.Getenv(name)
	if v == "" {
		log.Fatalf("%s is not set", name)
	}
	return v
}
