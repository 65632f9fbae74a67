package certfile_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keygate/keygate/certfile"
	"github.com/keygate/keygate/certfile/certfiletest"
)

// logBuffer is a log sink the reloader writes while the test reads.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) lines() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return strings.Split(strings.TrimSpace(b.buf.String()), "\n")
}

// count is how many log lines contain s.
func (b *logBuffer) count(s string) int {
	n := 0
	for _, l := range b.lines() {
		if strings.Contains(l, s) {
			n++
		}
	}
	return n
}

type fixture struct {
	ca                *certfiletest.CA
	certFile, keyFile string
	log               *logBuffer
	r                 *certfile.Reloader
}

// newFixture writes a certificate with serial 1 and loads it.
func newFixture(t *testing.T) *fixture {
	t.Helper()
	dir := t.TempDir()
	f := &fixture{ca: certfiletest.NewCA(t), certFile: filepath.Join(dir, "tls.crt"), keyFile: filepath.Join(dir, "tls.key"), log: &logBuffer{}}
	f.ca.Issue(t, 1).Write(t, f.certFile, f.keyFile)
	var err error
	f.r, err = certfile.Load(f.certFile, f.keyFile, slog.New(slog.NewTextHandler(f.log, nil)))
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// serveEcho serves TLS with cfg on loopback, echoing lines back, until the
// test ends, and returns the address.
func serveEcho(t *testing.T, cfg *tls.Config) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	tln := tls.NewListener(ln, cfg)
	go func() {
		for {
			c, err := tln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(10 * time.Second))
				_, _ = io.Copy(c, c)
			}()
		}
	}()
	return ln.Addr().String()
}

// dial does a TLS handshake with addr trusting f's CA, bounded in time.
func (f *fixture) dial(t *testing.T, addr string, cfg *tls.Config) (*tls.Conn, error) {
	t.Helper()
	if cfg == nil {
		cfg = &tls.Config{}
	}
	cfg.RootCAs, cfg.ServerName = f.ca.Pool, "localhost"
	d := &net.Dialer{Timeout: 5 * time.Second}
	c, err := tls.DialWithDialer(d, "tcp", addr, cfg)
	if err != nil {
		return nil, err
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	return c, nil
}

// serial is the serial number of the certificate c was shown.
func serial(c *tls.Conn) int64 { return c.ConnectionState().PeerCertificates[0].SerialNumber.Int64() }

// echo sends a line on c and wants it back.
func echo(t *testing.T, c *tls.Conn, line string) {
	t.Helper()
	if _, err := io.WriteString(c, line+"\n"); err != nil {
		t.Fatalf("write on an established connection: %v", err)
	}
	got, err := bufio.NewReader(c).ReadString('\n')
	if err != nil || got != line+"\n" {
		t.Fatalf("echo on an established connection: %q, %v", got, err)
	}
}

// The server configuration refuses TLS 1.1 even when GODEBUG re-enables
// TLS 1.0 and 1.1 for servers (the default minimum alone would then allow
// them), and serves TLS 1.2 and 1.3.
func TestTLSConfigRefusesTLS11(t *testing.T) {
	t.Setenv("GODEBUG", "tls10server=1")
	f := newFixture(t)
	addr := serveEcho(t, f.r.TLSConfig())
	_, err := f.dial(t, addr, &tls.Config{MinVersion: tls.VersionTLS10, MaxVersion: tls.VersionTLS11})
	if err == nil {
		t.Fatal("a TLS 1.1 client completed a handshake")
	}
	for _, v := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
		c, err := f.dial(t, addr, &tls.Config{MinVersion: v, MaxVersion: v})
		if err != nil {
			t.Fatalf("%s handshake: %v", tls.VersionName(v), err)
		}
		if serial(c) != 1 {
			t.Errorf("%s: serial %d, want 1", tls.VersionName(v), serial(c))
		}
	}
}

// A rotated pair is served to new handshakes after one Check, while a
// connection made before keeps working; a second Check does nothing.
func TestCheckPicksUpRotation(t *testing.T) {
	f := newFixture(t)
	addr := serveEcho(t, f.r.TLSConfig())
	before, err := f.dial(t, addr, nil)
	if err != nil {
		t.Fatal(err)
	}
	echo(t, before, "one")

	f.ca.Issue(t, 2).Write(t, f.certFile, f.keyFile)
	if err := f.r.Check(); err != nil {
		t.Fatalf("Check after rotation: %v", err)
	}
	after, err := f.dial(t, addr, nil)
	if err != nil {
		t.Fatal(err)
	}
	if serial(after) != 2 {
		t.Errorf("a new handshake after rotation shows serial %d, want 2", serial(after))
	}
	echo(t, before, "two") // the connection made before the rotation still works
	if serial(before) != 1 {
		t.Errorf("the earlier connection's certificate changed to serial %d", serial(before))
	}
	if err := f.r.Check(); !errors.Is(err, certfile.ErrUnchanged) {
		t.Errorf("Check of unchanged files: %v, want ErrUnchanged", err)
	}
	if n := f.log.count("TLS certificate reloaded"); n != 1 {
		t.Errorf("%d reload lines, want 1:\n%s", n, strings.Join(f.log.lines(), "\n"))
	}
	for _, l := range f.log.lines() {
		if strings.Contains(l, "TLS certificate reloaded") && !(strings.Contains(l, "serial=2") && strings.Contains(l, `subject="CN=localhost"`) && strings.Contains(l, "not_after=")) {
			t.Errorf("reload line lacks the new certificate's subject, serial or expiry: %s", l)
		}
	}
}

// Every bad replacement keeps the certificate in use and is warned about
// once however many ticks see it; the log never holds key material; the
// next good pair loads.
func TestBadReloadKeepsCertificate(t *testing.T) {
	other := certfiletest.NewCA(t).Issue(t, 9)
	cases := []struct {
		name      string
		write     func(f *fixture, good certfiletest.Pair)
		wantError string
	}{
		{"half-written certificate", func(f *fixture, good certfiletest.Pair) {
			certfiletest.WriteFile(t, f.certFile, good.CertPEM[:len(good.CertPEM)/2])
			certfiletest.WriteFile(t, f.keyFile, good.KeyPEM)
		}, "holds no complete PEM CERTIFICATE block"},
		{"half-written key", func(f *fixture, good certfiletest.Pair) {
			certfiletest.WriteFile(t, f.certFile, good.CertPEM)
			certfiletest.WriteFile(t, f.keyFile, good.KeyPEM[:len(good.KeyPEM)-30])
		}, "holds no complete PEM PRIVATE KEY block"},
		{"new certificate, old key", func(f *fixture, good certfiletest.Pair) {
			certfiletest.WriteFile(t, f.certFile, good.CertPEM)
		}, "private key does not match public key"},
		{"key of another certificate", func(f *fixture, good certfiletest.Pair) {
			certfiletest.WriteFile(t, f.certFile, good.CertPEM)
			certfiletest.WriteFile(t, f.keyFile, other.KeyPEM)
		}, "private key does not match public key"},
		{"key file removed", func(f *fixture, good certfiletest.Pair) {
			if err := os.Remove(f.keyFile); err != nil {
				t.Fatal(err)
			}
		}, "no such file"},
		{"empty certificate", func(f *fixture, good certfiletest.Pair) {
			certfiletest.WriteFile(t, f.certFile, nil)
		}, "holds no complete PEM CERTIFICATE block"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			addr := serveEcho(t, f.r.TLSConfig())
			good := f.ca.Issue(t, 2)
			tc.write(f, good)
			err := f.r.Check()
			if err == nil || errors.Is(err, certfile.ErrUnchanged) || !strings.Contains(err.Error(), tc.wantError) {
				t.Fatalf("Check: %v, want an error containing %q", err, tc.wantError)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error is more than one line: %q", err)
			}
			if err := f.r.Check(); !errors.Is(err, certfile.ErrUnchanged) {
				t.Errorf("second Check of the same bad files: %v, want ErrUnchanged", err)
			}
			if got := f.r.Certificate().Leaf.SerialNumber.Int64(); got != 1 {
				t.Errorf("serving serial %d after a bad reload, want 1", got)
			}
			c, err := f.dial(t, addr, nil)
			if err != nil || serial(c) != 1 {
				t.Fatalf("handshake after a bad reload: %v", err)
			}
			if n := f.log.count("level=WARN"); n != 1 || f.log.count("TLS certificate not reloaded") != 1 {
				t.Errorf("%d warnings, want one:\n%s", n, strings.Join(f.log.lines(), "\n"))
			}
			good.Write(t, f.certFile, f.keyFile)
			if err := f.r.Check(); err != nil {
				t.Fatalf("Check of a good pair after a bad one: %v", err)
			}
			if c, err := f.dial(t, addr, nil); err != nil || serial(c) != 2 {
				t.Fatalf("handshake after the good pair: %v", err)
			}
			logged := strings.Join(f.log.lines(), "\n")
			for _, key := range [][]byte{good.KeyPEM, other.KeyPEM} {
				body := strings.Split(string(key), "\n")[1] // first line of base64
				if strings.Contains(logged, body[:20]) {
					t.Errorf("the log holds key material:\n%s", logged)
				}
			}
		})
	}
}

// Load refuses a bad pair with one line naming the file at fault.
func TestLoadErrors(t *testing.T) {
	dir := t.TempDir()
	ca := certfiletest.NewCA(t)
	p, q := ca.Issue(t, 1), ca.Issue(t, 2)
	file := func(name string, b []byte) string {
		path := filepath.Join(dir, name)
		certfiletest.WriteFile(t, path, b)
		return path
	}
	cert, key, otherKey := file("c.pem", p.CertPEM), file("k.pem", p.KeyPEM), file("k2.pem", q.KeyPEM)
	missing := filepath.Join(dir, "missing.pem")
	big := file("big.pem", bytes.Repeat([]byte("x"), certfile.MaxFileBytes+1))
	cases := []struct {
		name, cert, key string
		want            []string
	}{
		{"missing certificate", missing, key, []string{"TLS certificate file " + missing + ": no such file or directory"}},
		{"missing key", cert, missing, []string{"TLS key file " + missing + ": no such file or directory"}},
		{"swapped", key, cert, []string{"TLS certificate file " + key + " holds a private key", "swapped"}},
		{"not a key", cert, file("nokey.pem", []byte("hello")), []string{"TLS key file " + filepath.Join(dir, "nokey.pem") + " holds no complete PEM PRIVATE KEY block"}},
		{"mismatched", cert, otherKey, []string{"TLS key file " + otherKey + " with certificate file " + cert, "does not match"}},
		{"too large", big, key, []string{"TLS certificate file " + big + ": larger than"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := certfile.Load(tc.cert, tc.key, nil)
			if err == nil {
				t.Fatal("Load accepted it")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
			if strings.Contains(err.Error(), "\n") || strings.Contains(err.Error(), "BEGIN") {
				t.Errorf("error %q is not one line without file content", err)
			}
		})
	}
}

// Run checks at each tick and reloads at each signal, until ctx ends.
func TestRunTicksAndSignals(t *testing.T) {
	f := newFixture(t)
	ticks, signals := make(chan time.Time), make(chan os.Signal)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { f.r.Run(ctx, ticks, signals); close(done) }()

	f.ca.Issue(t, 2).Write(t, f.certFile, f.keyFile)
	ticks <- time.Now()
	ticks <- time.Now() // taken only once the first tick's check returned
	if got := f.r.Certificate().Leaf.SerialNumber.Int64(); got != 2 {
		t.Errorf("after a tick: serial %d, want 2", got)
	}
	signals <- os.Interrupt // any signal: Run reloads even unchanged files
	ticks <- time.Now()
	if n := f.log.count("TLS certificate reloaded"); n != 2 {
		t.Errorf("%d reload lines after a tick and a signal, want 2:\n%s", n, strings.Join(f.log.lines(), "\n"))
	}
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after ctx ended")
	}
}

// BenchmarkCheckUnchanged is the cost of one tick when nothing changed:
// two small files read and hashed.
func BenchmarkCheckUnchanged(b *testing.B) {
	dir := b.TempDir()
	certFile, keyFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	certfiletest.NewCA(b).Issue(b, 1).Write(b, certFile, keyFile)
	r, err := certfile.Load(certFile, keyFile, nil)
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if err := r.Check(); !errors.Is(err, certfile.ErrUnchanged) {
			b.Fatal(err)
		}
	}
}

// BenchmarkGetCertificate is what a handshake pays to learn the
// certificate: an atomic load.
func BenchmarkGetCertificate(b *testing.B) {
	dir := b.TempDir()
	certFile, keyFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	certfiletest.NewCA(b).Issue(b, 1).Write(b, certFile, keyFile)
	r, err := certfile.Load(certFile, keyFile, nil)
	if err != nil {
		b.Fatal(err)
	}
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if c, _ := r.GetCertificate(nil); c == nil {
				b.Fatal("no certificate")
			}
		}
	})
}
