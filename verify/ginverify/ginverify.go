// Package ginverify is verify's middleware for gin: the same checks and RFC
// 6750 answers as verify.Middleware, as a gin.HandlerFunc. It lives in its
// own package so that net/http users of verify do not depend on gin.
//
//	r := gin.New()
//	r.GET("/accounting/invoices", ginverify.Middleware(v, verify.RequireScopes("accounting:read")), listInvoices)
//
// Handlers find the verified claims with Claims(c) (or
// verify.ClaimsFromContext(c.Request.Context())).
package ginverify

import (
	"github.com/gin-gonic/gin"

	"github.com/keygate/keygate/verify"
)

// ContextKey is where the claims are kept in the gin context.
const ContextKey = "keygate.claims"

// Middleware checks the bearer token and required scopes; a rejected
// request is answered and aborted.
func Middleware(v *verify.Verifier, opts ...verify.Option) gin.HandlerFunc {
	g := verify.NewGuard(v, opts...)
	return func(c *gin.Context) {
		claims, rej := g.Check(c.Request)
		if rej != nil {
			rej.Write(c.Writer)
			c.Abort()
			return
		}
		c.Set(ContextKey, claims)
		c.Request = c.Request.WithContext(verify.WithClaims(c.Request.Context(), claims))
		c.Next()
	}
}

// Claims returns the claims Middleware verified for this request.
func Claims(c *gin.Context) (*verify.Claims, bool) {
	v, ok := c.Get(ContextKey)
	if !ok {
		return nil, false
	}
	claims, ok := v.(*verify.Claims)
	return claims, ok && claims != nil
}
