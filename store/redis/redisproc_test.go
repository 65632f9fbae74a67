package redis_test

// Throwaway redis-server processes for tests that need a Redis of their own
// (a cluster, a Redis to kill): each on a free loopback port, in its own
// temp dir, killed (SIGKILL, then reaped) in t.Cleanup. Every wait is
// bounded.

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

const (
	redisReadyTimeout = 10 * time.Second // start → PING answers
	redisExitTimeout  = 10 * time.Second // SIGKILL → reaped
)

// requireBinary returns the path of a Redis binary, or skips loudly when it
// is missing — except under CI (CI=true), where a missing binary fails.
func requireBinary(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err == nil {
		return p
	}
	msg := fmt.Sprintf("%s not installed (%v); install Debian's redis-server package (apt-get install redis-server)", name, err)
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s — required under CI", msg)
	}
	t.Skipf("SKIPPING: %s", msg)
	return ""
}

// redisProc is one redis-server. Kill, Stop/Cont and Restart drive faults;
// the process is always killed in t.Cleanup.
type redisProc struct {
	t    testing.TB
	bin  string
	Port int
	Dir  string
	args []string // per-use flags, kept for Restart

	cmd  *exec.Cmd
	done chan struct{} // closed once cmd.Wait returned
}

// Addr is host:port on loopback.
func (p *redisProc) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(p.Port)) }

// startRedis starts redis-server on a free loopback port in a fresh temp dir
// with the given extra flags (e.g. "--appendonly", "yes") and waits until it
// answers PING.
func startRedis(t testing.TB, extra ...string) *redisProc {
	t.Helper()
	p := &redisProc{t: t, bin: requireBinary(t, "redis-server"), Dir: t.TempDir(), args: extra}
	t.Cleanup(func() {
		p.kill()
		if t.Failed() {
			p.logTail(30)
		}
	})
	var lastErr error
	for attempt := 0; attempt < 5; attempt++ {
		port, err := freePort()
		if err != nil {
			t.Fatalf("find a free port: %v", err)
		}
		p.Port = port
		if lastErr = p.start(); lastErr == nil {
			return p
		}
		// Most likely someone took the port between our probe and the bind.
		t.Logf("redis-server on port %d did not come up (attempt %d): %v", port, attempt+1, lastErr)
	}
	t.Fatalf("could not start redis-server: %v", lastErr)
	return nil
}

// Restart starts redis-server again on the same port and dir with the same
// flags (so it reloads the same AOF), after Kill. A just-freed port may take
// a moment to bind again; retries are bounded.
func (p *redisProc) Restart() {
	p.t.Helper()
	if p.running() {
		p.t.Fatalf("Restart: redis-server on %d is still running", p.Port)
	}
	deadline := time.Now().Add(redisReadyTimeout)
	for {
		err := p.start()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("restart redis-server on %d: %v", p.Port, err)
		}
		p.t.Logf("restart redis-server on %d: %v; retrying", p.Port, err)
		time.Sleep(200 * time.Millisecond)
	}
}

// start runs one redis-server on p.Port and waits for PING. On failure the
// process is gone when start returns.
func (p *redisProc) start() error {
	args := []string{
		"--port", strconv.Itoa(p.Port),
		"--bind", "127.0.0.1",
		"--save", "",
		"--daemonize", "no",
		"--dir", p.Dir,
		"--logfile", filepath.Join(p.Dir, "redis.log"),
	}
	args = append(args, p.args...)
	cmd := exec.Command(p.bin, args...)
	cmd.Dir = p.Dir
	setParentDeathSignal(cmd) // no orphans even if the test binary dies hard
	var out bytes.Buffer      // config errors go to stdout/stderr before the log opens
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", p.bin, err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	p.cmd, p.done = cmd, done

	deadline := time.Now().Add(redisReadyTimeout)
	for {
		select {
		case <-done:
			return fmt.Errorf("redis-server exited during start-up (%v): %s%s", cmd.ProcessState, out.String(), p.logTailString(10))
		default:
		}
		if err := pingRaw(p.Addr(), 200*time.Millisecond); err == nil {
			return nil
		} else if time.Now().After(deadline) {
			p.kill()
			return fmt.Errorf("redis-server on %d did not answer PING within %v: %v%s", p.Port, redisReadyTimeout, err, p.logTailString(10))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (p *redisProc) running() bool {
	if p.done == nil {
		return false
	}
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// Kill SIGKILLs redis-server (no shutdown, no final fsync: a crash) and
// waits until it is reaped.
func (p *redisProc) Kill() {
	p.t.Helper()
	if err := p.kill(); err != nil {
		p.t.Fatal(err)
	}
}

func (p *redisProc) kill() error {
	if !p.running() {
		return nil
	}
	_ = p.cmd.Process.Signal(syscall.SIGKILL) // also ends a SIGSTOPped process
	select {
	case <-p.done:
		return nil
	case <-time.After(redisExitTimeout):
		return fmt.Errorf("redis-server (pid %d) not reaped %v after SIGKILL", p.cmd.Process.Pid, redisExitTimeout)
	}
}

// Stop freezes redis-server (SIGSTOP): connections stay open, nothing
// answers — a hung Redis rather than a dead one. Cont resumes it.
func (p *redisProc) Stop() { p.signal(syscall.SIGSTOP) }
func (p *redisProc) Cont() { p.signal(syscall.SIGCONT) }

func (p *redisProc) signal(sig syscall.Signal) {
	p.t.Helper()
	if !p.running() {
		p.t.Fatalf("signal %v: redis-server on %d is not running", sig, p.Port)
	}
	if err := p.cmd.Process.Signal(sig); err != nil {
		p.t.Fatalf("signal %v: %v", sig, err)
	}
}

func (p *redisProc) logTail(n int) {
	if s := p.logTailString(n); s != "" {
		p.t.Logf("redis-server on port %d, %s:%s", p.Port, filepath.Join(p.Dir, "redis.log"), s)
	}
}

func (p *redisProc) logTailString(n int) string {
	b, err := os.ReadFile(filepath.Join(p.Dir, "redis.log"))
	if err != nil || len(b) == 0 {
		return ""
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return "\n\t" + strings.Join(lines, "\n\t")
}

// freePort asks the kernel for a free loopback port. The port is free again
// when freePort returns, so someone may take it before redis-server binds:
// startRedis retries.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// pingRaw sends PING over a fresh connection and wants +PONG: a Redis that
// is still loading its AOF answers -LOADING and is not ready.
func pingRaw(addr string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(timeout))
	if _, err := c.Write([]byte("*1\r\n$4\r\nPING\r\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if line = strings.TrimSpace(line); line != "+PONG" {
		return errors.New("PING answered " + line)
	}
	return nil
}
