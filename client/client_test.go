package client_test

// The client's behaviour against servers that are not keygate (a proxy's
// plain-text error, nothing listening). Its tests against a real keygate
// are in the main module's e2e package: they need the server, which this
// module must not require.

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/client"
)

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func asError(t *testing.T, err error) *client.Error {
	t.Helper()
	if err == nil {
		t.Fatal("no error")
	}
	var ce *client.Error
	if !errors.As(err, &ce) {
		t.Fatalf("error %v (%T) is not a *client.Error", err, err)
	}
	return ce
}

func TestNonProblemError(t *testing.T) {
	// A proxy answering with plain text still yields a *client.Error with the status.
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/oauth/token" {
			w.Header().Set("Content-Type", "application/json")
			w.Write([]byte(`{"access_token":"x","token_type":"Bearer","expires_in":60}`))
			return
		}
		if got := r.Header.Get("Authorization"); got != "Bearer x" {
			http.Error(w, "no auth "+got, http.StatusUnauthorized)
			return
		}
		http.Error(w, "upstream broke", http.StatusBadGateway)
	}))
	defer ts.Close()
	c := client.New(client.Config{URL: ts.URL, ClientID: "a", ClientSecret: "b"})
	ce := asError(t, func() error { _, err := c.ListKeys(ctxT(t), "acme"); return err }())
	if ce.Status != http.StatusBadGateway || ce.Title != http.StatusText(http.StatusBadGateway) {
		t.Fatalf("%+v", ce)
	}
	if !strings.Contains(ce.Error(), "502") {
		t.Fatalf("Error() %q does not give the status", ce.Error())
	}
}

func TestUnreachable(t *testing.T) {
	ts := httptest.NewServer(http.NotFoundHandler())
	url := ts.URL
	ts.Close() // nothing listens there now
	c := client.New(client.Config{URL: url, ClientID: "a", ClientSecret: "b", HTTPClient: &http.Client{Timeout: 2 * time.Second}})
	_, err := c.ListKeys(ctxT(t), "acme")
	if err == nil {
		t.Fatal("no error from a closed server")
	}
	// The dial error stays in the chain, so a caller can say "not running".
	var op *net.OpError
	if !errors.As(err, &op) || op.Op != "dial" {
		t.Fatalf("error %v (%T) does not wrap the dial error", err, err)
	}
}
