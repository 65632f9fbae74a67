package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"
)

const (
	envClientID     = "KEYGATE_CLIENT_ID"
	envClientSecret = "KEYGATE_CLIENT_SECRET"
	tokenHTTPLimit  = 30 * time.Second
)

// tokenFlags are the key and server every token command uses.
type tokenFlags struct {
	url, clientID, clientSecret, clientSecretFile string
	json                                          bool
	getenv                                        func(string) string
	stdin                                         io.Reader
}

// keyCreds are a key's client credentials and the keygate to use them with.
type keyCreds struct {
	url, id, secret string
}

func tokenCommand(e env) *cobra.Command {
	f := tokenFlags{getenv: e.getenv, stdin: e.stdin}
	var scope string
	cmd := &cobra.Command{
		Use:   "token --client-id ID --client-secret-file F [--scope S]",
		Short: "Get an access token with an API key (client credentials), or introspect or revoke one",
		Long: `Get an access token with an API key through the OAuth 2.0 client
credentials grant, and print the access token alone (--json: keygate's whole
answer).

The key comes from --client-id with --client-secret-file (or --client-secret,
which other users can see in the process list), else from KEYGATE_CLIENT_ID
and KEYGATE_CLIENT_SECRET. --scope asks for some of the key's scopes
(space-separated); without it the token carries all of them.

  token=$(keygate token --client-id kgc_… --client-secret-file key.secret)
  keygate token introspect - <<<"$token"
  keygate token revoke - <<<"$token"`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			k, err := f.key(cmd)
			if err != nil {
				return err
			}
			cc := clientcredentials.Config{
				ClientID: k.id, ClientSecret: k.secret, TokenURL: k.url + "/oauth/token",
				AuthStyle: oauth2.AuthStyleInHeader,
			}
			if scope != "" {
				cc.Scopes = strings.Fields(scope)
			}
			ctx := context.WithValue(cmd.Context(), oauth2.HTTPClient, &http.Client{Timeout: tokenHTTPLimit})
			tok, err := cc.Token(ctx)
			if err != nil {
				var re *oauth2.RetrieveError
				if errors.As(err, &re) {
					return oauthRefusal("the token request", re.ErrorCode, re.ErrorDescription)
				}
				return cliError(err, k.url)
			}
			out := cmd.OutOrStdout()
			if f.json {
				// keygate's answer as it was: its four members.
				answer := map[string]any{}
				for _, name := range []string{"access_token", "token_type", "expires_in", "scope"} {
					if v := tok.Extra(name); v != nil {
						answer[name] = v
					}
				}
				return writeJSON(out, answer)
			}
			_, err = fmt.Fprintln(out, tok.AccessToken)
			return err
		},
	}
	pf := cmd.PersistentFlags()
	pf.StringVar(&f.url, "url", "", "keygate base URL (env "+envURL+", default "+defaultURL+")")
	pf.StringVar(&f.clientID, "client-id", "", "the key's client ID (env "+envClientID+")")
	pf.StringVar(&f.clientSecret, "client-secret", "", "the key's secret; visible in the process list, prefer --client-secret-file (env "+envClientSecret+")")
	pf.StringVar(&f.clientSecretFile, "client-secret-file", "", "file holding the key's secret (the secret alone)")
	pf.BoolVar(&f.json, "json", false, "print keygate's whole answer as JSON")
	cmd.Flags().StringVar(&scope, "scope", "", "scopes to ask for, space-separated (default: all of the key's)")
	cmd.AddCommand(tokenIntrospectCommand(&f), tokenRevokeCommand(&f))
	return cmd
}

// key finds the key's credentials; flags win over the environment.
func (f *tokenFlags) key(cmd *cobra.Command) (keyCreds, error) {
	u, err := normalizeURL(firstNonEmpty(f.url, f.getenv(envURL), defaultURL), map[bool]string{true: "--url", false: envURL}[f.url != ""])
	if err != nil {
		return keyCreds{}, err
	}
	id := firstNonEmpty(f.clientID, f.getenv(envClientID))
	secret := f.clientSecret
	if secret != "" {
		fmt.Fprintln(cmd.ErrOrStderr(), "warning: --client-secret is visible to other users in the process list; prefer --client-secret-file or "+envClientSecret)
	}
	if f.clientSecretFile != "" {
		if secret, err = readSecretFile(f.clientSecretFile, "--client-secret-file"); err != nil {
			return keyCreds{}, err
		}
	}
	if secret == "" {
		secret = f.getenv(envClientSecret)
	}
	if id == "" || secret == "" {
		return keyCreds{}, errors.New("client credentials missing: pass --client-id and --client-secret-file, or set " + envClientID + " and " + envClientSecret)
	}
	return keyCreds{url: u, id: id, secret: secret}, nil
}

// tokenArg is the TOKEN argument: "-" reads it from stdin; one given on
// the command line is visible in the process list, and is warned about as
// --client-secret is.
func (f *tokenFlags) tokenArg(cmd *cobra.Command, arg string) (string, error) {
	if arg != "-" {
		fmt.Fprintln(cmd.ErrOrStderr(), "warning: a TOKEN argument is visible to other users in the process list; prefer - to read it from stdin")
		return arg, nil
	}
	b, err := io.ReadAll(io.LimitReader(f.stdin, 64<<10))
	if err != nil {
		return "", fmt.Errorf("read the token from stdin: %w", err)
	}
	tok := strings.TrimSpace(string(b))
	if tok == "" {
		return "", errors.New("no token on stdin (TOKEN - reads it from there)")
	}
	return tok, nil
}

// postToken sends an RFC 7662/7009 request about token with the key's
// credentials (HTTP Basic, RFC 6749 §2.3.1) and decodes a 200 answer into
// out.
func postToken(ctx context.Context, k keyCreds, path, what, token string, out any) error {
	form := url.Values{"token": {token}}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, k.url+path, strings.NewReader(form.Encode()))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	req.SetBasicAuth(url.QueryEscape(k.id), url.QueryEscape(k.secret))
	resp, err := (&http.Client{Timeout: tokenHTTPLimit}).Do(req)
	if err != nil {
		return cliError(err, k.url)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return fmt.Errorf("keygate at %s: read the answer to %s: %w", k.url, what, err)
	}
	if resp.StatusCode != http.StatusOK {
		var oe struct {
			Error       string `json:"error"`
			Description string `json:"error_description"`
		}
		if json.Unmarshal(body, &oe) != nil || oe.Error == "" {
			return fmt.Errorf("keygate at %s answered %s with %d %s", k.url, what, resp.StatusCode, http.StatusText(resp.StatusCode))
		}
		return oauthRefusal(what, oe.Error, oe.Description)
	}
	if err := json.Unmarshal(body, out); err != nil {
		return fmt.Errorf("keygate at %s: unexpected answer to %s", k.url, what)
	}
	return nil
}

// oauthRefusal words an RFC 6749 §5.2 error answer.
func oauthRefusal(what, code, description string) error {
	msg := fmt.Sprintf("keygate refused %s: %s", what, code)
	if description != "" {
		msg += ": " + description
	}
	if code == "invalid_client" {
		msg += " (check --client-id and the secret)"
	}
	return errors.New(msg)
}

// postTokenArg sends the token that arg names (or stdin's, for "-") to path
// with the key's credentials and returns keygate's answer; what names the
// call in errors.
func (f *tokenFlags) postTokenArg(cmd *cobra.Command, arg, path, what string) (map[string]any, error) {
	k, err := f.key(cmd)
	if err != nil {
		return nil, err
	}
	tok, err := f.tokenArg(cmd, arg)
	if err != nil {
		return nil, err
	}
	var answer map[string]any
	if err := postToken(cmd.Context(), k, path, what, tok, &answer); err != nil {
		return nil, err
	}
	return answer, nil
}

func tokenIntrospectCommand(f *tokenFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "introspect TOKEN|-",
		Short: "Ask keygate whether an access token is active (RFC 7662), with a key",
		Long: `Ask keygate whether an access token is active (RFC 7662), authenticated
with a key (the same flags as keygate token). A key sees its own team's
tokens; admin keys and keys with the operator-only token_introspection
permission see every token. A token it may not see is shown as inactive.

TOKEN - reads the token from stdin, which keeps it out of the process list.
Prints a table, or keygate's answer with --json.`,
		Args: oneArg("TOKEN", "the access token, or - to read it from stdin"),
		RunE: func(cmd *cobra.Command, args []string) error {
			answer, err := f.postTokenArg(cmd, args[0], "/oauth/introspect", "the introspection")
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if f.json {
				return writeJSON(out, answer)
			}
			writeIntrospection(out, answer)
			return nil
		},
	}
}

// introspectionFields are the members of an introspection answer in the
// order the table shows them; times are Unix seconds.
var introspectionFields = []string{"active", "client_id", "team_id", "scope", "sub", "aud", "iss", "token_type", "jti", "iat", "nbf", "exp"}

func writeIntrospection(w io.Writer, answer map[string]any) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for _, name := range introspectionFields {
		v, ok := answer[name]
		if !ok {
			continue
		}
		s := fmt.Sprint(v)
		if n, isNum := v.(float64); isNum {
			s = strconv.FormatInt(int64(n), 10)
			if name == "iat" || name == "nbf" || name == "exp" {
				s = formatTime(time.Unix(int64(n), 0))
			}
		}
		fmt.Fprintf(tw, "%s\t%s\n", name, s)
	}
	tw.Flush()
}

func tokenRevokeCommand(f *tokenFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "revoke TOKEN|-",
		Short: "Revoke one of the key's own access tokens (RFC 7009)",
		Long: `Revoke an access token issued to the key given (the same flags as keygate
token): from then on introspection and keygate's status-aware verification
see it as inactive. Resource servers that only check the signature keep
accepting it until it expires.

As RFC 7009 says, a token that is already invalid or expired needs no
revocation and is answered the same way. TOKEN - reads the token from stdin.`,
		Args: oneArg("TOKEN", "the access token, or - to read it from stdin"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if _, err := f.postTokenArg(cmd, args[0], "/oauth/revoke", "the revocation"); err != nil {
				return err
			}
			if f.json {
				return writeJSON(cmd.OutOrStdout(), map[string]bool{"revoked": true})
			}
			_, err := fmt.Fprintln(cmd.OutOrStdout(), "revoked (keygate answers the same for a token that was already invalid or expired)")
			return err
		},
	}
}
