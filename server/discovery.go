package server

import (
	"net/http"
	"strings"

	"github.com/gin-gonic/gin"
)

// jwksMaxAge lets verifiers cache the key set for a while but pick up a new
// key well within a token lifetime.
const jwksMaxAge = "public, max-age=300, stale-while-revalidate=60"

// jwks serves the public keys (RFC 7517): the next key (published ahead of
// signing, so verifiers' caches hold it before its first token), the
// signing key, and retired keys whose tokens may still be live. The body
// and its ETag are computed once per key set; a verifier revalidating with
// If-None-Match gets a 304.
func (s *Server) jwks(c *gin.Context) {
	ks := s.keys.KeySet()
	h := c.Writer.Header()
	h["Cache-Control"] = hdrJWKSCache
	h["Etag"] = ks.JWKSETag()
	if inm := c.Request.Header.Get("If-None-Match"); inm != "" && etagMatch(inm, ks.JWKSETag()[0]) {
		c.Writer.WriteHeader(http.StatusNotModified)
		return
	}
	h["Content-Type"] = hdrJWKSType
	c.Writer.WriteHeader(http.StatusOK)
	_, _ = c.Writer.Write(ks.JWKS())
}

var (
	hdrJWKSCache = []string{jwksMaxAge}
	hdrJWKSType  = []string{"application/jwk-set+json"}
)

// etagMatch implements If-None-Match's weak comparison (RFC 9110 §13.1.2)
// for one strong ETag: "*" or any listed tag equal to it, W/ ignored.
func etagMatch(header, etag string) bool {
	for _, t := range strings.Split(header, ",") {
		t = strings.TrimSpace(t)
		if t == "*" || strings.TrimPrefix(t, "W/") == etag {
			return true
		}
	}
	return false
}

// authorizationServerMetadata is RFC 8414 §2.
type authorizationServerMetadata struct {
	Issuer                            string   `json:"issuer"`
	TokenEndpoint                     string   `json:"token_endpoint"`
	JWKSURI                           string   `json:"jwks_uri"`
	GrantTypesSupported               []string `json:"grant_types_supported"`
	ResponseTypesSupported            []string `json:"response_types_supported"`
	TokenEndpointAuthMethodsSupported []string `json:"token_endpoint_auth_methods_supported"`
	ScopesSupported                   []string `json:"scopes_supported"`
	// Every published key's algorithm, the signing key's first: during a
	// change of signing_alg tokens of both are live.
	AccessTokenSigningAlgValuesSupported []string `json:"access_token_signing_alg_values_supported,omitempty"`
	// RFC 7662 and RFC 7009: keys authenticate as at the token endpoint.
	IntrospectionEndpoint                     string   `json:"introspection_endpoint"`
	IntrospectionEndpointAuthMethodsSupported []string `json:"introspection_endpoint_auth_methods_supported"`
	RevocationEndpoint                        string   `json:"revocation_endpoint"`
	RevocationEndpointAuthMethodsSupported    []string `json:"revocation_endpoint_auth_methods_supported"`
	// draft-ietf-oauth-status-list §9.3.
	StatusListAggregationEndpoint string `json:"status_list_aggregation_endpoint"`
}

// authMethods: clients authenticate with their secret, by HTTP Basic or in
// the form body (RFC 6749 §2.3.1), at every endpoint.
var authMethods = []string{"client_secret_basic", "client_secret_post"}

func (s *Server) metadata(c *gin.Context) {
	iss := s.cfg.Issuer
	c.Header("Cache-Control", "public, max-age=3600")
	c.JSON(http.StatusOK, authorizationServerMetadata{
		Issuer:                                    iss,
		TokenEndpoint:                             iss + "/oauth/token",
		JWKSURI:                                   iss + "/.well-known/jwks.json",
		GrantTypesSupported:                       s.grantTypes(),
		ResponseTypesSupported:                    []string{}, // no authorization endpoint
		TokenEndpointAuthMethodsSupported:         []string{"client_secret_basic", "client_secret_post"},
		ScopesSupported:                           s.keys.Catalog().AllScopes(),
		AccessTokenSigningAlgValuesSupported:      s.keys.PublishedAlgs(),
		StatusListAggregationEndpoint:             iss + "/statuslists",
		IntrospectionEndpoint:                     iss + "/oauth/introspect",
		IntrospectionEndpointAuthMethodsSupported: authMethods,
		RevocationEndpoint:                        iss + "/oauth/revoke",
		RevocationEndpointAuthMethodsSupported:    authMethods,
	})
}
