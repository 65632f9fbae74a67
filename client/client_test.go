package client_test

// The client's behaviour against servers that are not keygate (a proxy's
// plain-text error, nothing listening). Its tests against a real keygate
// are in the main module's e2e package: they need the server, which this
// module must not require.

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
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

// Backup refuses what is not a whole store file: a body cut short of its
// Content-Length, an answer of another type, and a problem (a store
// without a backup) as *client.Error.
func TestBackupRefusesIncompleteCopies(t *testing.T) {
	var mode atomic.Value // string; the server's goroutines read it
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/oauth/token" {
			w.Header().Set("Content-Type", "application/json")
			w.Write([]byte(`{"access_token":"x","token_type":"Bearer","expires_in":60}`))
			return
		}
		switch mode.Load() {
		case "short":
			w.Header().Set("Content-Type", "application/octet-stream")
			w.Header().Set("Content-Length", "100")
			w.Write(make([]byte, 50))
			// The handler returns: the server closes the connection short.
		case "html":
			w.Header().Set("Content-Type", "text/html")
			w.Write([]byte("<html>a login page</html>"))
		case "redis":
			w.Header().Set("Content-Type", "application/problem+json")
			w.WriteHeader(http.StatusNotFound)
			w.Write([]byte(`{"type":"urn:keygate:problem:not-found","title":"Not Found","status":404,"detail":"this keygate's store has no online backup"}`))
		case "whole":
			w.Header().Set("Content-Type", "application/octet-stream")
			w.Write([]byte("0123456789"))
		}
	}))
	defer ts.Close()
	c := client.New(client.Config{URL: ts.URL, ClientID: "a", ClientSecret: "b"})
	var buf strings.Builder

	mode.Store("short")
	if _, err := c.Backup(ctxT(t), &buf); err == nil || !strings.Contains(err.Error(), "cut short after 50 of 100 bytes") {
		t.Fatalf("a body cut short: %v", err)
	}
	mode.Store("html")
	if _, err := c.Backup(ctxT(t), &buf); err == nil || !strings.Contains(err.Error(), `"text/html"`) {
		t.Fatalf("an HTML answer: %v", err)
	}
	mode.Store("redis")
	ce := asError(t, func() error { _, err := c.Backup(ctxT(t), &buf); return err }())
	if ce.Status != http.StatusNotFound || !strings.Contains(ce.Detail, "no online backup") {
		t.Fatalf("a 404 problem: %+v", ce)
	}
	mode.Store("whole")
	buf.Reset()
	if n, err := c.Backup(ctxT(t), &buf); err != nil || n != 10 || buf.String() != "0123456789" {
		t.Fatalf("a whole copy: %d %q %v", n, buf.String(), err)
	}
}

// policyServer is a fake management API that records the last request's
// method, path and body and answers with a key.
func policyServer(t *testing.T, got *[]string) *client.Client {
	t.Helper()
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		if r.URL.Path == "/oauth/token" {
			w.Write([]byte(`{"access_token":"x","token_type":"Bearer","expires_in":60}`))
			return
		}
		b, _ := io.ReadAll(r.Body)
		*got = append(*got, r.Method+" "+r.URL.Path+" "+string(b))
		if r.Method == http.MethodPost {
			w.WriteHeader(http.StatusCreated)
		}
		w.Write([]byte(`{"client_id":"kgc_x","status":"suspended","disabled":true,"expires_at":"2027-03-01T00:00:00Z","expiring_soon":true,"token_ttl":300,"audiences":["https://a.example"],"allowed_cidrs":["10.0.0.0/8"],"metadata":{"tenant":"acme"}}`))
	}))
	t.Cleanup(ts.Close)
	return client.New(client.Config{URL: ts.URL, ClientID: "a", ClientSecret: "b"})
}

func TestPolicyRequests(t *testing.T) {
	var got []string
	c := policyServer(t, &got)
	ctx := ctxT(t)
	exp := time.Date(2027, 3, 1, 0, 0, 0, 0, time.UTC)
	ttl := 5 * time.Minute
	k, err := c.CreateKeyWith(ctx, "acme", client.NewKey{Name: "n", Permissions: []string{"p"}, Policy: client.Policy{
		ExpiresAt: exp, TokenTTL: ttl, Audiences: []string{"https://a.example"}, AllowedCIDRs: []string{"10.0.0.0/8"}, Metadata: json.RawMessage(`{"tenant":"acme"}`),
	}})
	if err != nil {
		t.Fatal(err)
	}
	if k.Status != "suspended" || !k.Disabled || !k.ExpiringSoon || k.ExpiresAt == nil || !k.ExpiresAt.Equal(exp) ||
		k.TokenTTL == nil || *k.TokenTTL != 300 || len(k.Audiences) != 1 || len(k.AllowedCIDRs) != 1 || string(k.Metadata) != `{"tenant":"acme"}` {
		t.Fatalf("decoded key %+v", k)
	}
	if _, err := c.SuspendKey(ctx, "acme", "kgc_x"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.ResumeKey(ctx, "acme", "kgc_x"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.UpdateKey(ctx, "acme", "kgc_x", client.KeyUpdate{ClearExpiresAt: true, ClearTokenTTL: true, ClearAudiences: true, ClearAllowedCIDRs: true, ClearMetadata: true}); err != nil {
		t.Fatal(err)
	}
	odd := 1500 * time.Millisecond
	if _, err := c.UpdateKey(ctx, "acme", "kgc_x", client.KeyUpdate{TokenTTL: &odd}); err != nil {
		t.Fatal(err)
	}
	want := []string{
		`POST /v1/teams/acme/keys {"allowed_cidrs":["10.0.0.0/8"],"audiences":["https://a.example"],"expires_at":"2027-03-01T00:00:00Z","metadata":{"tenant":"acme"},"name":"n","permissions":["p"],"token_ttl":300}`,
		`PATCH /v1/teams/acme/keys/kgc_x {"disabled":true}`,
		`PATCH /v1/teams/acme/keys/kgc_x {"disabled":false}`,
		`PATCH /v1/teams/acme/keys/kgc_x {"allowed_cidrs":null,"audiences":null,"expires_at":null,"metadata":null,"token_ttl":null}`,
		`PATCH /v1/teams/acme/keys/kgc_x {"token_ttl":"1.5s"}`,
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("requests:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	// Set and cleared at once: refused before anything is sent.
	_, err = c.UpdateKey(ctx, "acme", "kgc_x", client.KeyUpdate{ExpiresAt: &exp, ClearExpiresAt: true})
	if err == nil || !strings.Contains(err.Error(), "expires_at") || len(got) != len(want) {
		t.Fatalf("err %v, %d requests", err, len(got))
	}
}
