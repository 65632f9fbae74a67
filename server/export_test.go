package server

// Hooks into the server's internals for the external tests (package
// server_test), which start keygate through the one harness, servertest.

import (
	"context"

	"github.com/gin-gonic/gin"
)

// LockStatusList holds the status list builder's lock, as a build that
// never ends would, until unlock is called.
func LockStatusList(s *Server) (unlock func()) {
	s.statusLists.mu.Lock()
	return s.statusLists.mu.Unlock
}

// CurrentStatusList is the signed 2-bit list of shard 0, as its endpoint
// serves it now.
func CurrentStatusList(ctx context.Context, s *Server) ([]byte, error) {
	return s.currentStatusList(ctx, shardPathPrefix+"0", 0)
}

// InvalidateStatusList drops the cached list, as a deletion does.
func InvalidateStatusList(s *Server) { s.statusLists.invalidate() }

// StatusListMaxAge is how long a built list is served.
const StatusListMaxAge = statusListMaxAge

// OAuthClient is the go-oauth2 view of a key.
func OAuthClient(ctx context.Context, s *Server, id string) interface {
	GetID() string
	GetSecret() string
	IsPublic() bool
	VerifyPassword(string) bool
} {
	return oauthClient{ctx: ctx, keys: s.keys, id: id}
}

// Routes are the method and path of every route the server's gin router
// mounts, for the test that holds the OpenAPI document to them.
func Routes(s *Server) gin.RoutesInfo { return s.handler.(*gin.Engine).Routes() }

// SetAccessLogBurst replaces the access log's limit of lines of refused
// requests per source (a burst, then one a second), for tests whose flow
// refuses more requests than the default burst and must see every line.
// Call it before the first request.
func SetAccessLogBurst(s *Server, burst int) {
	s.access.limits = newLineLimiter(s.cfg.Now, burst, accessLogEvery, accessLogSources)
}

// AccessLogBurst is the default burst of that limit.
const AccessLogBurst = accessLogBurst
