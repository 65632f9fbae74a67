package server

import (
	"log/slog"
	"net/http"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/keygate/keygate/metrics"
)

// httpMetrics records every request's count and duration under its route
// pattern (gin's FullPath), never its path: a path can carry a team or
// client ID, and random paths from a scanner would each make a series.
// Requests that matched no route, or a route only by another method (a
// 405), count under unmatched. The routes' metrics are resolved before the
// first request (routes), so this costs a map read and a few atomic adds.
func httpMetrics(routes map[string]*metrics.Route, unmatched *metrics.Route) gin.HandlerFunc {
	return func(c *gin.Context) {
		start := time.Now()
		c.Next()
		rm := routes[c.FullPath()]
		if rm == nil {
			rm = unmatched
		}
		rm.Observe(c.Request.Method, c.Writer.Status(), time.Since(start))
	}
}

// accessLog logs each request at debug level: method, path, status and
// duration. Never the query string, headers or body — they may hold
// credentials or tokens. Debug level keeps the token path free of a
// per-request info line.
func accessLog(log *slog.Logger) gin.HandlerFunc {
	return func(c *gin.Context) {
		if !log.Enabled(c.Request.Context(), slog.LevelDebug) {
			c.Next()
			return
		}
		start := time.Now()
		c.Next()
		log.Debug("request",
			"method", c.Request.Method,
			"path", c.Request.URL.Path,
			"status", c.Writer.Status(),
			"duration", time.Since(start),
			"remote", c.ClientIP(),
		)
	}
}

// recovery turns a panic into a 500 and logs it without the request's
// headers (gin's own recovery can dump them).
func recovery(log *slog.Logger) gin.HandlerFunc {
	return func(c *gin.Context) {
		defer func() {
			if p := recover(); p != nil {
				if p == http.ErrAbortHandler {
					panic(p)
				}
				log.Error("panic serving request", "method", c.Request.Method, "path", c.Request.URL.Path, "panic", p)
				c.AbortWithStatus(http.StatusInternalServerError)
			}
		}()
		c.Next()
	}
}
