package check

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	jwtv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/jwt_authn/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3" // registers the Router type for Any
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3" // registers UpstreamTlsContext for Any
	"google.golang.org/protobuf/encoding/protojson"
	"sigs.k8s.io/yaml"

	"github.com/keygate/keygate/server"
)

var envoyPath = deployPath("envoy", "envoy.yaml")

// envoyConfig is what the check needs of an Envoy bootstrap.
type envoyConfig struct {
	jwt      *jwtv3.JwtAuthentication
	clusters []*clusterv3.Cluster
}

// decodeEnvoy decodes an Envoy bootstrap YAML strictly into
// go-control-plane's v3 types: protojson with DiscardUnknown false (an
// unknown field, or a typed_config of a type no imported package
// registers, fails), then the generated validation rules (ValidateAll:
// required fields, ranges, formats), as Envoy itself would at start.
func decodeEnvoy(doc []byte) (envoyConfig, error) {
	j, err := yaml.YAMLToJSONStrict(doc)
	if err != nil {
		return envoyConfig{}, err
	}
	var b bootstrapv3.Bootstrap
	if err := (protojson.UnmarshalOptions{DiscardUnknown: false}).Unmarshal(j, &b); err != nil {
		return envoyConfig{}, fmt.Errorf("decode bootstrap: %w", err)
	}
	if err := b.ValidateAll(); err != nil {
		return envoyConfig{}, fmt.Errorf("validate bootstrap: %w", err)
	}
	c := envoyConfig{clusters: b.GetStaticResources().GetClusters()}
	for _, l := range b.GetStaticResources().GetListeners() {
		for _, fc := range l.GetFilterChains() {
			for _, f := range fc.GetFilters() {
				var hcm hcmv3.HttpConnectionManager
				if f.GetTypedConfig().MessageIs(&hcm) {
					if err := f.GetTypedConfig().UnmarshalTo(&hcm); err != nil {
						return c, err
					}
					for _, hf := range hcm.GetHttpFilters() {
						var ja jwtv3.JwtAuthentication
						if hf.GetTypedConfig().MessageIs(&ja) {
							if c.jwt != nil {
								return c, fmt.Errorf("more than one jwt_authn filter")
							}
							if err := hf.GetTypedConfig().UnmarshalTo(&ja); err != nil {
								return c, err
							}
							c.jwt = &ja
						}
					}
				}
			}
		}
	}
	if c.jwt == nil {
		return c, fmt.Errorf("no jwt_authn filter")
	}
	return c, nil
}

// keygateFacts is what a running keygate says about itself and its tokens.
type keygateFacts struct {
	issuer, jwksURI string
	jwksStatus      int
	aud             []string
}

// askKeygate starts keygate with issuer and returns its RFC 8414 metadata's
// issuer and jwks_uri, what its JWKS route answers, and the aud of a token
// it issues.
func askKeygate(t *testing.T, issuer string) keygateFacts {
	t.Helper()
	kg := startKeygate(t, server.Options{Issuer: issuer})
	status, body := get(t, kg, "/.well-known/oauth-authorization-server")
	if status != http.StatusOK {
		t.Fatalf("metadata: %d %s", status, body)
	}
	var meta struct {
		Issuer  string `json:"issuer"`
		JWKSURI string `json:"jwks_uri"`
	}
	if err := json.Unmarshal(body, &meta); err != nil {
		t.Fatal(err)
	}
	f := keygateFacts{issuer: meta.Issuer, jwksURI: meta.JWKSURI}
	if u, err := url.Parse(meta.JWKSURI); err == nil {
		f.jwksStatus, _ = get(t, kg, u.Path)
	}
	// A team key's token, what Envoy fronts resource servers for (an
	// admin token's aud is <issuer>/v1: the management API's alone).
	k := kg.CreateKey(t, "envoy-check", "resource server check", "accounting_api")
	tok := kg.Token(t, k.ClientID, k.ClientSecret, "").AccessToken
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		t.Fatalf("keygate's token is not a JWS: %d parts", len(parts))
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var claims struct {
		Aud json.RawMessage `json:"aud"`
	}
	if err := json.Unmarshal(payload, &claims); err != nil {
		t.Fatal(err)
	}
	// aud is a string or an array of strings (RFC 7519 §4.1.3).
	var one string
	if json.Unmarshal(claims.Aud, &one) == nil {
		f.aud = []string{one}
	} else if err := json.Unmarshal(claims.Aud, &f.aud); err != nil {
		t.Fatalf("aud %s: %v", claims.Aud, err)
	}
	return f
}

// envoyProblems checks the jwt_authn provider against what keygate says.
func envoyProblems(c envoyConfig, kg keygateFacts) []string {
	var problems []string
	bad := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }
	p, ok := c.jwt.GetProviders()["keygate"]
	if !ok {
		return []string{"no jwt_authn provider named keygate"}
	}
	if p.GetIssuer() != kg.issuer {
		bad("issuer %q, but keygate's tokens and metadata say %q", p.GetIssuer(), kg.issuer)
	}
	for _, aud := range kg.aud {
		if !slices.Contains(p.GetAudiences(), aud) {
			bad("audiences %v do not accept keygate's aud %q", p.GetAudiences(), aud)
		}
	}
	if len(p.GetAudiences()) == 0 {
		bad("no audiences: Envoy would accept a token minted for any audience")
	}
	uri := p.GetRemoteJwks().GetHttpUri()
	if uri.GetUri() != kg.jwksURI {
		bad("remote_jwks uri %q, but keygate's metadata says jwks_uri %q", uri.GetUri(), kg.jwksURI)
	}
	if kg.jwksStatus != http.StatusOK {
		bad("keygate answers its jwks_uri's path with %d", kg.jwksStatus)
	}
	// The JWKS cluster must reach the JWKS URL's host, over TLS for https.
	u, err := url.Parse(uri.GetUri())
	if err != nil {
		bad("remote_jwks uri: %v", err)
		return problems
	}
	port := u.Port()
	if port == "" {
		port = map[string]string{"https": "443", "http": "80"}[u.Scheme]
	}
	idx := slices.IndexFunc(c.clusters, func(cl *clusterv3.Cluster) bool { return cl.GetName() == uri.GetCluster() })
	if idx < 0 {
		bad("remote_jwks cluster %q is not defined", uri.GetCluster())
		return problems
	}
	cl := c.clusters[idx]
	reaches := false
	for _, e := range cl.GetLoadAssignment().GetEndpoints() {
		for _, lb := range e.GetLbEndpoints() {
			sa := lb.GetEndpoint().GetAddress().GetSocketAddress()
			if sa.GetAddress() == u.Hostname() && fmt.Sprint(sa.GetPortValue()) == port {
				reaches = true
			}
		}
	}
	if !reaches {
		bad("cluster %s does not point at %s", cl.GetName(), net.JoinHostPort(u.Hostname(), port))
	}
	if u.Scheme == "https" && cl.GetTransportSocket() == nil {
		bad("cluster %s has no TLS transport socket for an https JWKS URL", cl.GetName())
	}
	// Every rule must require the keygate provider.
	if len(c.jwt.GetRules()) == 0 {
		bad("no rules: the filter verifies nothing")
	}
	for _, r := range c.jwt.GetRules() {
		if r.GetRequires().GetProviderName() != "keygate" {
			bad("rule %v does not require the keygate provider", r.GetMatch())
		}
	}
	return problems
}

func TestEnvoy(t *testing.T) {
	c, err := decodeEnvoy(readFile(t, envoyPath))
	if err != nil {
		t.Fatalf("%s: %v", envoyPath, err)
	}
	kg := askKeygate(t, c.jwt.GetProviders()["keygate"].GetIssuer())
	for _, p := range envoyProblems(c, kg) {
		t.Error(p)
	}
}

// TestEnvoyCheckCatchesMistakes makes one deliberate mistake at a time in
// envoy.yaml and expects the decoder or the check to name it.
func TestEnvoyCheckCatchesMistakes(t *testing.T) {
	good := string(readFile(t, envoyPath))
	kg := askKeygate(t, "https://keygate.example.com")
	tests := []struct{ old, new, want string }{
		{"issuer: https://keygate.example.com", "isuer: https://keygate.example.com", `unknown field "isuer"`},
		{"issuer: https://keygate.example.com", "issuer: https://auth.example.com", `issuer "https://auth.example.com", but keygate`},
		{"uri: https://keygate.example.com/.well-known/jwks.json", "uri: https://keygate.example.com/jwks.json", "but keygate's metadata says jwks_uri"},
		{"- https://keygate.example.com\n", "- https://api.example.com\n", `do not accept keygate's aud "https://keygate.example.com"`},
		{"cluster: keygate\n", "cluster: keygate-jwks\n", `remote_jwks cluster "keygate-jwks" is not defined`},
		{"timeout: 5s", "timeout: 5 seconds", `invalid google.protobuf.Duration value "5 seconds"`},
		{"jwt_authn.v3.JwtAuthentication", "jwt_authn.v3.JwtAuthenticaton", "JwtAuthenticaton"},
		{"requires: { provider_name: keygate }", "requires: { provider_name: other }", "does not require the keygate provider"},
	}
	for _, tt := range tests {
		t.Run(tt.new, func(t *testing.T) {
			if !strings.Contains(good, tt.old) {
				t.Fatalf("%q is not in %s: the mistake was not made", tt.old, envoyPath)
			}
			c, err := decodeEnvoy([]byte(strings.Replace(good, tt.old, tt.new, 1)))
			var got []string
			if err != nil {
				got = []string{err.Error()}
			} else {
				got = envoyProblems(c, kg)
			}
			if !slices.ContainsFunc(got, func(p string) bool { return strings.Contains(p, tt.want) }) {
				t.Errorf("the check says %q, want a line containing %q", got, tt.want)
			}
		})
	}
}
