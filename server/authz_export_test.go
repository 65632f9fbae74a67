package server

import (
	"github.com/keygate/keygate/apikey"
	"github.com/keygate/keygate/store"
)

// SignSessionToken signs sess's team-bound management token now, as a
// console-session redemption or a token exchange does.
func SignSessionToken(s *Server, sess store.ManagementSession) (string, error) {
	return s.signSessionToken(sess, s.cfg.Now())
}

// SignKeyToken signs a token for k with scope now, as /oauth/token does
// after authenticating k with its current secret: for keys a test writes
// to the store directly (a read-only admin key before the admin-keys API).
func SignKeyToken(s *Server, k store.Key, scope string) (string, error) {
	t := &tokenEndpoint{s: s}
	aud, _ := s.audienceFor(k, scope, "")
	auth := apikey.Auth{Now: s.cfg.Now(), StatusIndex: k.StatusIndex, NotAfter: k.ExpiresAt}
	tok, err := t.appendToken(new(tokenScratch), nil, k, scope, aud, auth.TokenExpiry(s.keys.TokenTTL(k)), auth)
	return string(tok), err
}

// RouteRules are the method+path keys of the route table (server/authz.go).
func RouteRules() []string {
	out := make([]string, 0, len(routeAccess))
	for k := range routeAccess {
		out = append(out, k)
	}
	return out
}
