package server

import (
	"log/slog"
	"net/http"
	"time"

	"github.com/gin-gonic/gin"
)

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
