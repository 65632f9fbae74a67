package server

import (
	"net/http"

	"github.com/gin-gonic/gin"
)

// jwksMaxAge lets verifiers cache the key set for a while but pick up a new
// key well within a token lifetime.
const jwksMaxAge = "public, max-age=300, stale-while-revalidate=60"

// jwks serves the public keys (RFC 7517): the signing key and retired keys
// whose tokens may still be live. The body is encoded once per key set.
func (s *Server) jwks(c *gin.Context) {
	ks := s.refreshKeySet(c.Request.Context())
	c.Header("Cache-Control", jwksMaxAge)
	c.Data(http.StatusOK, "application/jwk-set+json", ks.JWKS())
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
	// RFC 9068 tokens are signed with this one algorithm at a time.
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
		GrantTypesSupported:                       []string{"client_credentials"},
		ResponseTypesSupported:                    []string{}, // no authorization endpoint
		TokenEndpointAuthMethodsSupported:         []string{"client_secret_basic", "client_secret_post"},
		ScopesSupported:                           s.cfg.Catalog.AllScopes(),
		AccessTokenSigningAlgValuesSupported:      []string{s.keys.Load().Signer().Alg()},
		StatusListAggregationEndpoint:             iss + "/statuslists",
		IntrospectionEndpoint:                     iss + "/oauth/introspect",
		IntrospectionEndpointAuthMethodsSupported: authMethods,
		RevocationEndpoint:                        iss + "/oauth/revoke",
		RevocationEndpointAuthMethodsSupported:    authMethods,
	})
}
