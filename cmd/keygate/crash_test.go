package main

// A keygate process killed with SIGKILL in the middle of a burst of key
// creations and deletions (#13): afterwards, on bbolt and on Redis, every
// acknowledged change has its audit event, no event lacks its change, and
// every status bit set by a delete belongs to a key that still exists or
// has its key.deleted event.

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/keygate/keygate/client"
	"github.com/keygate/keygate/config"
	"github.com/keygate/keygate/credential"
	"github.com/keygate/keygate/internal/redistest"
	"github.com/keygate/keygate/store"
	"github.com/keygate/keygate/store/bolt"
	"github.com/keygate/keygate/store/redis"
)

const crashTeams = 4

func TestCrashKeepsChangesAndEventsTogether(t *testing.T) {
	t.Run("bolt", func(t *testing.T) {
		dir := t.TempDir()
		crashBurst(t, []string{"--data-dir", dir}, func(t *testing.T) store.Store {
			st, err := bolt.Open(filepath.Join(dir, dbFileName))
			if err != nil {
				t.Fatalf("open the store the killed keygate left: %v", err)
			}
			t.Cleanup(func() { st.Close() })
			// The killed process never wrote the free-page list
			// (store/bolt/bolt.go): the open walked the file instead.
			if !st.RebuiltFreePages() {
				t.Error("the store a killed keygate left was opened as if closed cleanly")
			}
			return st
		})
	})
	t.Run("redis", func(t *testing.T) {
		c := redistest.Require(t)
		prefix := redistest.Prefix(t, c, "")
		crashBurst(t, []string{"--data-dir", t.TempDir(), "--store", "redis", "--redis-url", redistest.URL(), "--redis-prefix", prefix}, func(t *testing.T) store.Store {
			st, err := redis.New(redistest.NewClient(t), prefix, 5*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			return st
		})
	})
}

// crashBurst runs keygate serve with args as a process, drives creates and
// deletes at it from several clients, kills it with SIGKILL mid-burst and
// checks the store that open returns.
func crashBurst(t *testing.T, args []string, open func(*testing.T) store.Store) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	url := "http://" + addr
	mk := make([]byte, 32)
	rand.Read(mk)
	secret, err := credential.NewSecret()
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := json.Marshal(append([]string{"serve", "--listen", addr, "--issuer", url, "--max-keys-per-team", "1000", "--log-level", "error"}, args...))
	cmd := exec.Command(os.Args[0])
	cmd.Env = slices.DeleteFunc(os.Environ(), func(kv string) bool { return strings.HasPrefix(kv, config.EnvPrefix) })
	cmd.Env = append(cmd.Env, envMainArgs+"="+string(raw), envMasterKey+"="+base64.StdEncoding.EncodeToString(mk),
		envAdminClientID+"=crash-admin", envAdminClientSecret+"="+secret)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-exited
	})
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := http.Get(url + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				break
			}
		}
		select {
		case err := <-exited:
			t.Fatalf("keygate serve exited before it was ready: %v\n%s", err, stderr.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("keygate serve not ready after 20s:\n%s", stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}

	// The burst: each worker creates keys and deletes every other one it
	// created, recording what keygate acknowledged.
	c := client.New(client.Config{URL: url, ClientID: "crash-admin", ClientSecret: secret, HTTPClient: &http.Client{Timeout: 5 * time.Second}})
	var (
		mu      sync.Mutex
		created = map[string]string{} // client ID → team, acknowledged with 201
		deleted = map[string]bool{}   // acknowledged with 204
		acked   int
	)
	ctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			team := fmt.Sprintf("crash-%d", w%crashTeams)
			for i := 0; ctx.Err() == nil; i++ {
				k, err := c.CreateKey(ctx, team, "burst", []string{"accounting_api"})
				if err != nil {
					continue
				}
				mu.Lock()
				created[k.ClientID], acked = team, acked+1
				mu.Unlock()
				if i%2 == 1 {
					continue
				}
				if err := c.DeleteKey(ctx, team, k.ClientID); err == nil {
					mu.Lock()
					deleted[k.ClientID], acked = true, acked+1
					mu.Unlock()
				}
			}
		})
	}
	// Kill mid-burst: once enough changes were acknowledged that requests
	// are surely in flight on every worker.
	for {
		mu.Lock()
		n := acked
		mu.Unlock()
		if n >= 200 {
			break
		}
		select {
		case err := <-exited:
			t.Fatalf("keygate exited during the burst: %v\n%s", err, stderr.String())
		case <-time.After(5 * time.Millisecond):
		}
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-exited
	exited <- nil // for the cleanup
	stop()
	wg.Wait()

	st := open(t)
	checkCrashedStore(t, st, created, deleted)
}

func checkCrashedStore(t *testing.T, st store.Store, created map[string]string, deleted map[string]bool) {
	t.Helper()
	bg := context.Background()
	events := map[string][]store.AuditEvent{} // client ID → its events
	for i := range crashTeams {
		team := fmt.Sprintf("crash-%d", i)
		q := store.AuditQuery{Limit: store.MaxAuditLimit}
		for {
			page, err := st.AuditEvents(bg, team, q)
			if err != nil {
				t.Fatal(err)
			}
			for _, ev := range page.Events {
				events[ev.ClientID] = append(events[ev.ClientID], ev)
			}
			if page.Next == 0 {
				break
			}
			q.After = page.Next
		}
	}
	has := func(id string, a store.AuditAction) (store.AuditEvent, bool) {
		for _, ev := range events[id] {
			if ev.Action == a {
				return ev, true
			}
		}
		return store.AuditEvent{}, false
	}
	exists := func(id string) bool {
		_, err := st.GetKey(bg, id)
		return err == nil
	}
	for id := range created {
		if _, ok := has(id, store.AuditKeyCreated); !ok {
			t.Errorf("acknowledged create of %s has no key.created event", id)
		}
	}
	for id := range deleted {
		if exists(id) {
			t.Errorf("acknowledged delete of %s: the key is still there", id)
		}
		if _, ok := has(id, store.AuditKeyDeleted); !ok {
			t.Errorf("acknowledged delete of %s has no key.deleted event", id)
		}
	}
	bitOwners := map[int64]bool{}
	keys := 0
	for id := range events {
		_, wasDeleted := has(id, store.AuditKeyDeleted)
		if _, ok := has(id, store.AuditKeyCreated); !ok {
			t.Errorf("key %s has events but no key.created", id)
		}
		switch k, err := st.GetKey(bg, id); {
		case err == nil && wasDeleted:
			t.Errorf("key %s has a key.deleted event but still exists", id)
		case err == nil:
			bitOwners[k.StatusIndex] = true
			keys++
		case !wasDeleted:
			t.Errorf("key %s has a key.created event but neither exists nor has a key.deleted event", id)
		default:
			ev, _ := has(id, store.AuditKeyDeleted)
			bitOwners[ev.StatusIndex] = true
		}
	}
	if err := st.ForEachKey(bg, func(k store.Key) error {
		if _, ok := has(k.ClientID, store.AuditKeyCreated); !ok && !k.IsAdmin() {
			t.Errorf("key %s exists without a key.created event", k.ClientID)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	sl, err := st.StatusList(bg)
	if err != nil {
		t.Fatal(err)
	}
	set := 0
	for idx := range int64(len(sl.Statuses)) * 4 {
		if sl.Entry(idx) == store.StatusValid {
			continue
		}
		{
			set++
			if !bitOwners[idx] {
				t.Errorf("status bit %d is set but belongs to no existing key and to no key.deleted event", idx)
			}
		}
	}
	t.Logf("after SIGKILL: %d creates and %d deletes acknowledged; %d keys with events, %d still stored, %d status bits set",
		len(created), len(deleted), len(events), keys, set)
}
