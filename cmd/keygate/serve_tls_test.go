package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/keygate/keygate/certfile/certfiletest"
)

// tlsServe is a keygate serving TLS from certificate files the test
// rewrites, with the reload ticks and signals in the test's hands.
type tlsServe struct {
	*running
	ca                *certfiletest.CA
	certFile, keyFile string
	ticks             chan time.Time
	reloads           chan os.Signal
}

// startTLSServe runs serve with the flags args plus tls_cert and tls_key,
// whose files hold a certificate with serial 1 of a CA of the test's own.
func startTLSServe(t *testing.T, args ...string) *tlsServe {
	t.Helper()
	return startTLSServeWith(t, true, args...)
}

// startTLSServeWith is startTLSServe; with injectSignals false, serve
// catches the process's real SIGHUP.
func startTLSServeWith(t *testing.T, injectSignals bool, args ...string) *tlsServe {
	t.Helper()
	dir := t.TempDir()
	s := &tlsServe{ca: certfiletest.NewCA(t), certFile: filepath.Join(dir, "tls.crt"), keyFile: filepath.Join(dir, "tls.key"),
		ticks: make(chan time.Time), reloads: make(chan os.Signal)}
	s.ca.Issue(t, 1).Write(t, s.certFile, s.keyFile)
	addr := freeAddr(t)
	cfg, err := loadConfig(t, append([]string{"--data-dir", filepath.Join(dir, "data"), "--listen", addr,
		"--tls-cert", s.certFile, "--tls-key", s.keyFile}, args...)...)
	if err != nil {
		t.Fatal(err)
	}
	e := testEnv(nil)
	e.certTicks = s.ticks
	if injectSignals {
		e.certReloads = s.reloads
	}
	s.running = startRunningClient(t, s.client(t), "https://"+addr, func(ctx context.Context, log io.Writer) error {
		e.stderr = log
		return serve(ctx, cfg, e, storeBackends)
	})
	return s
}

// client is an HTTPS client of its own (so, its own connections) that
// trusts the test's CA.
func (s *tlsServe) client(t *testing.T) *http.Client {
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: s.ca.Pool}}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 5 * time.Second}
}

// tick makes serve look at the certificate files and returns once it has:
// the second send is taken only after the first tick's check returned.
func (s *tlsServe) tick(t *testing.T) {
	t.Helper()
	for range 2 {
		select {
		case s.ticks <- time.Now():
		case <-time.After(10 * time.Second):
			t.Fatal("serve takes no certificate ticks")
		}
	}
}

// get GETs path with c and returns the answer, the serial of the
// certificate its connection was shown and whether the connection was an
// earlier one, reused.
func get(t *testing.T, c *http.Client, url string) (resp *http.Response, serial int64, reused bool) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	req = req.WithContext(httptrace.WithClientTrace(req.Context(), &httptrace.ClientTrace{
		GotConn: func(info httptrace.GotConnInfo) { reused = info.Reused },
	}))
	resp, err = c.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.TLS == nil {
		t.Fatalf("GET %s: not over TLS", url)
	}
	return resp, resp.TLS.PeerCertificates[0].SerialNumber.Int64(), reused
}

// serve over TLS, end to end: TLS 1.1 refused (even when GODEBUG would let
// Go's default allow it), HSTS on every answer for an https issuer named by
// a host name, the certificate rotated on a tick without a restart while a
// keep-alive connection made before goes on working, a bad replacement
// kept out with one warning, and a reload on the signal.
func TestServeTLS(t *testing.T) {
	t.Setenv("GODEBUG", "tls10server=1") // not parallel: the environment is the process's
	s := startTLSServe(t, "--issuer", "https://auth.example.com")
	addr := strings.TrimPrefix(s.base, "https://")

	d := &net.Dialer{Timeout: 5 * time.Second}
	if c, err := tls.DialWithDialer(d, "tcp", addr, &tls.Config{RootCAs: s.ca.Pool, MinVersion: tls.VersionTLS10, MaxVersion: tls.VersionTLS11}); err == nil {
		c.Close()
		t.Fatal("a TLS 1.1 client completed a handshake")
	}
	c, err := tls.DialWithDialer(d, "tcp", addr, &tls.Config{RootCAs: s.ca.Pool, MaxVersion: tls.VersionTLS12})
	if err != nil {
		t.Fatalf("TLS 1.2 handshake: %v", err)
	}
	c.Close()

	early := s.client(t)
	for _, path := range []string{"/healthz", "/no/such/path", "/v1/teams"} {
		resp, serial, _ := get(t, early, s.base+path)
		if got := resp.Header.Get("Strict-Transport-Security"); got != "max-age=31536000" || serial != 1 {
			t.Errorf("GET %s: %d, Strict-Transport-Security %q, serial %d", path, resp.StatusCode, got, serial)
		}
	}

	s.ca.Issue(t, 2).Write(t, s.certFile, s.keyFile)
	s.tick(t)
	if _, serial, _ := get(t, s.client(t), s.base+"/healthz"); serial != 2 {
		t.Errorf("a new connection after the rotation was shown serial %d, want 2", serial)
	}
	resp, serial, reused := get(t, early, s.base+"/healthz")
	if resp.StatusCode != http.StatusOK || !reused || serial != 1 {
		t.Errorf("the connection made before the rotation: %d, reused %v, serial %d; want 200 on the same connection, serial 1", resp.StatusCode, reused, serial)
	}

	// A half-made rotation: the new certificate beside the old key.
	bad := s.ca.Issue(t, 3)
	certfiletest.WriteFile(t, s.certFile, bad.CertPEM)
	s.tick(t)
	s.tick(t)
	if _, serial, _ := get(t, s.client(t), s.base+"/healthz"); serial != 2 {
		t.Errorf("after a bad replacement: serial %d, want 2 (kept)", serial)
	}

	s.ca.Issue(t, 4).Write(t, s.certFile, s.keyFile)
	select {
	case s.reloads <- syscall.SIGHUP:
	case <-time.After(10 * time.Second):
		t.Fatal("serve takes no reload signal")
	}
	s.tick(t) // taken once the reload returned; the files are unchanged since
	if _, serial, _ := get(t, s.client(t), s.base+"/healthz"); serial != 4 {
		t.Errorf("after the reload signal: serial %d, want 4", serial)
	}

	if err := s.stop(t); err != nil {
		t.Fatal(err)
	}
	log := s.log.String()
	if n := strings.Count(log, "TLS certificate reloaded"); n != 2 {
		t.Errorf("%d reload lines, want 2 (a tick, a signal):\n%s", n, log)
	}
	if n := strings.Count(log, "TLS certificate not reloaded"); n != 1 || !strings.Contains(log, "private key does not match public key") {
		t.Errorf("%d warnings, want one for the bad replacement:\n%s", n, log)
	}
	if strings.Contains(log, "trusts no proxy") {
		t.Errorf("warned about plain HTTP while serving TLS:\n%s", log)
	}
}

// serve catches the real SIGHUP while it serves TLS, and reloads on it.
func TestServeTLSReloadsOnSIGHUP(t *testing.T) {
	// Not parallel: the signal goes to the whole test process, which only
	// this serve catches.
	s := startTLSServeWith(t, false)
	s.ca.Issue(t, 2).Write(t, s.certFile, s.keyFile) // no tick: only the signal loads it
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	// Signals arrive asynchronously: wait for the reload's line, a while at most.
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(s.log.String(), "TLS certificate reloaded") {
		if time.Now().After(deadline) {
			t.Fatalf("no reload within 5s of SIGHUP:\n%s", s.log)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if _, serial, _ := get(t, s.client(t), s.base+"/healthz"); serial != 2 {
		t.Errorf("after SIGHUP: serial %d, want 2", serial)
	}
	if err := s.stop(t); err != nil {
		t.Fatal(err)
	}
}

// No HSTS where it does not belong: over TLS for a localhost or IP issuer,
// and over plain HTTP (warned about when the issuer is https and no proxy is
// trusted).
func TestServeHSTSOnlyForHostNames(t *testing.T) {
	t.Parallel()
	for _, issuer := range []string{"https://localhost:8443", "https://192.0.2.7:8443", "https://[2001:db8::1]"} {
		s := startTLSServe(t, "--issuer", issuer)
		resp, _, _ := get(t, s.client(t), s.base+"/healthz")
		if v, ok := resp.Header["Strict-Transport-Security"]; ok {
			t.Errorf("TLS, issuer %s: Strict-Transport-Security %q", issuer, v)
		}
	}

	for _, tc := range []struct {
		args []string
		warn bool
	}{
		{[]string{"--issuer", "https://auth.example.com"}, true},
		{[]string{"--issuer", "https://auth.example.com", "--trusted-proxies", "127.0.0.1"}, false},
		{nil, false}, // http://127.0.0.1:port
	} {
		cfg, err := loadConfig(t, append([]string{"--data-dir", t.TempDir(), "--listen", freeAddr(t)}, tc.args...)...)
		if err != nil {
			t.Fatal(err)
		}
		s := startServeWith(t, cfg, nil)
		resp, err := httpc.Get(s.base + "/no/such/path")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if v, ok := resp.Header["Strict-Transport-Security"]; ok {
			t.Errorf("plain HTTP %q: Strict-Transport-Security %q", tc.args, v)
		}
		if err := s.stop(t); err != nil {
			t.Fatal(err)
		}
		warned := strings.Contains(s.log.String(), "the issuer is https but keygate serves plain HTTP and trusts no proxy")
		if warned != tc.warn {
			t.Errorf("plain HTTP %q: warned %v, want %v:\n%s", tc.args, warned, tc.warn, s.log)
		}
	}
}

// A bad certificate pair stops serve before anything is created, with one
// line naming the file.
func TestServeRefusesBadCertificate(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	p := certfiletest.NewCA(t).Issue(t, 1)
	certFile, keyFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	certfiletest.WriteFile(t, certFile, p.CertPEM)
	data := filepath.Join(dir, "data")
	_, stderr, err := run(t, "serve", "--data-dir", data, "--listen", freeAddr(t), "--tls-cert", certFile, "--tls-key", keyFile)
	if err == nil || !strings.Contains(err.Error(), "TLS key file "+keyFile+": no such file or directory") || strings.Contains(err.Error(), "\n") {
		t.Fatalf("serve with a missing key file: %v (stderr %s)", err, stderr)
	}
	if _, err := os.Stat(data); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the data dir was created (%v) although the certificate was refused", err)
	}
}

// rawGet sends a GET /healthz on c, keeping the connection open, and
// reads the answer's status line within d.
func rawGet(c net.Conn, d time.Duration) (string, error) {
	if _, err := io.WriteString(c, "GET /healthz HTTP/1.1\r\nHost: keygate\r\n\r\n"); err != nil {
		return "", err
	}
	_ = c.SetReadDeadline(time.Now().Add(d))
	br := bufio.NewReader(c)
	line, err := br.ReadString('\n')
	if err != nil {
		return "", err
	}
	resp, err := http.ReadResponse(bufio.NewReader(io.MultiReader(strings.NewReader(line), br)), nil)
	if err != nil {
		return "", err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	return line, nil
}

// max_connections: while N connections are open the next one is not
// served; it is once one of them closes.
func TestServeMaxConnections(t *testing.T) {
	t.Parallel()
	const limit = 2
	cfg, err := loadConfig(t, "--data-dir", t.TempDir(), "--listen", freeAddr(t), "--max-connections", "2")
	if err != nil {
		t.Fatal(err)
	}
	// The start-up probe closes its connection, so it holds no slot.
	probe := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 5 * time.Second}
	startRunningClient(t, probe, "http://"+cfg.Listen, func(ctx context.Context, log io.Writer) error {
		e := testEnv(nil)
		e.stderr = log
		return serve(ctx, cfg, e, storeBackends)
	})
	dial := func() net.Conn {
		c, err := net.DialTimeout("tcp", cfg.Listen, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	var open []net.Conn
	for range limit {
		c := dial()
		if line, err := rawGet(c, 5*time.Second); err != nil || !strings.Contains(line, "200") {
			t.Fatalf("connection %d of %d: %q, %v", len(open)+1, limit, line, err)
		}
		open = append(open, c)
	}
	extra := dial() // the kernel completes the handshake; keygate does not accept it
	if line, err := rawGet(extra, 300*time.Millisecond); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("connection %d with %d open: %q, %v; want no answer", limit+1, limit, line, err)
	}
	open[0].Close()
	// The request sent above is answered once a slot is free.
	_ = extra.SetReadDeadline(time.Now().Add(5 * time.Second))
	line, err := bufio.NewReader(extra).ReadString('\n')
	if err != nil || !strings.Contains(line, "200") {
		t.Fatalf("connection %d after one closed: %q, %v", limit+1, line, err)
	}
}

// idle_timeout closes a keep-alive connection that stays idle that long.
func TestServeIdleTimeout(t *testing.T) {
	t.Parallel()
	cfg, err := loadConfig(t, "--data-dir", t.TempDir(), "--listen", freeAddr(t), "--idle-timeout", "1s")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.IdleTimeout != time.Second {
		t.Fatalf("idle_timeout %s", cfg.IdleTimeout)
	}
	startServeWith(t, cfg, nil)
	c, err := net.DialTimeout("tcp", cfg.Listen, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if line, err := rawGet(c, 5*time.Second); err != nil || !strings.Contains(line, "200") {
		t.Fatalf("first request: %q, %v", line, err)
	}
	start := time.Now()
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	n, err := c.Read(make([]byte, 1))
	idle := time.Since(start)
	if !errors.Is(err, io.EOF) || n != 0 {
		t.Fatalf("idle connection after %s: %d bytes, %v; want closed by keygate (EOF)", idle, n, err)
	}
	if idle < 900*time.Millisecond || idle > 5*time.Second {
		t.Errorf("closed after %s idle, want about 1s", idle)
	}
}
