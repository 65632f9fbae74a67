package server

import (
	"net/http"

	"github.com/gin-gonic/gin"
)

// Problem is an RFC 9457 problem details object. Type is a URN a client can
// branch on; Detail tells a person what to do.
type Problem struct {
	Type   string `json:"type"`
	Title  string `json:"title"`
	Status int    `json:"status"`
	Detail string `json:"detail"`
	// RequestID is the request's ID (its X-Request-Id), an RFC 9457 §3.2
	// extension member: what a person quotes to find the log lines.
	RequestID string `json:"request_id,omitempty"`
}

// problem answers with application/problem+json and stops the chain.
func problem(c *gin.Context, status int, typ, detail string) {
	c.Header("Cache-Control", "no-store")
	c.Header("Content-Type", "application/problem+json")
	c.Abort()
	refused(c, typ, "")
	// PureJSON: details quote things like "<token>"; HTML-escaping them
	// would make the text harder to read and buys nothing in an API.
	c.PureJSON(status, Problem{Type: typ, Title: http.StatusText(status), Status: status, Detail: detail, RequestID: requestID(c)})
}
