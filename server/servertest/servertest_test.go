package servertest_test

import (
	"encoding/json"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/keygate/keygate/masterkey"
	"github.com/keygate/keygate/server"
	"github.com/keygate/keygate/server/servertest"
	"github.com/keygate/keygate/store/storetest"
)

func init() {
	// gin's debug mode prints every route of every server started here.
	gin.SetMode(gin.TestMode)
}

func TestClock(t *testing.T) {
	t0 := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	c := servertest.NewClock(t0)
	if got := c.Now(); !got.Equal(t0) {
		t.Fatalf("stopped clock reads %v, want %v", got, t0)
	}
	if got := c.Advance(90 * time.Second); !got.Equal(t0.Add(90*time.Second)) || !c.Now().Equal(got) {
		t.Fatalf("Advance returned %v, Now %v; want both %v", got, c.Now(), t0.Add(90*time.Second))
	}
	c.Set(t0)
	if !c.Now().Equal(t0) {
		t.Fatalf("after Set, %v; want %v", c.Now(), t0)
	}

	w := servertest.NewWallClock()
	if d := time.Since(w.Now()); d < -time.Second || d > time.Second {
		t.Fatalf("a new wall clock is %v off the wall clock", d)
	}
	a := w.Now()
	for !w.Now().After(a) {
		// Runs until the wall clock ticks: a running clock moves by itself.
	}
	w.Advance(time.Hour)
	if d := w.Now().Sub(time.Now()); d < time.Hour-time.Second || d > time.Hour+time.Second {
		t.Fatalf("wall clock advanced by an hour is %v ahead", d)
	}
	w.Set(t0)
	if d := w.Now().Sub(t0); d < 0 || d > time.Second {
		t.Fatalf("wall clock set to t0 reads t0+%v", d)
	}

	// Safe for concurrent use (meaningful under -race).
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for range 100 {
				c.Advance(time.Millisecond)
				w.Now()
				c.Now()
			}
		})
	}
	wg.Wait()
	if got := c.Now(); !got.Equal(t0.Add(400 * time.Millisecond)) {
		t.Errorf("after 400 concurrent 1 ms steps, %v; want %v", got, t0.Add(400*time.Millisecond))
	}
}

func TestStartKeepsItsPromises(t *testing.T) {
	e := servertest.Start(t, server.Options{AdminClientID: "named-admin"}, nil)
	if e.AdminID != "named-admin" || e.AdminSecret == "" {
		t.Fatalf("admin %q with secret %q, want named-admin and a fresh secret", e.AdminID, e.AdminSecret)
	}
	if _, ok := e.Server.GeneratedAdmin(); ok {
		t.Error("a configured admin key, yet the server generated one")
	}
	r := e.Do(t, e.NewRequest(t, http.MethodGet, "/.well-known/oauth-authorization-server", nil))
	var md struct {
		Issuer string `json:"issuer"`
	}
	if err := json.Unmarshal(r.Body, &md); err != nil || md.Issuer != e.URL {
		t.Fatalf("issuer %q (%v), want the server's URL %s", md.Issuer, err, e.URL)
	}
	e.AdminToken(t)
}

// TestBackends: on every backend, a key's first use is stored by one
// FlushLastUsed at the clock's time; a restart behind the same URL and a
// second instance see the same data.
func TestBackends(t *testing.T) {
	for _, b := range []servertest.Backend{servertest.Bolt(), servertest.Memory(), servertest.Redis()} {
		t.Run(b.Name(), func(t *testing.T) {
			t0 := time.Now().UTC().Truncate(time.Second)
			clock := servertest.NewClock(t0)
			e := servertest.StartWith(t, servertest.Config{Backend: b, Clock: clock, GeneratedAdmin: true})
			if _, ok := e.Server.GeneratedAdmin(); !ok {
				t.Fatal("GeneratedAdmin: the first start generated no admin key")
			}
			k := e.CreateKey(t, "acme", "k", "accounting_api")
			e.Token(t, k.ClientID, k.ClientSecret, "")
			if !e.StoredKey(t, k.ClientID).LastUsedAt.IsZero() {
				t.Fatal("last_used_at stored before any flush: is a real ticker running?")
			}
			clock.Advance(time.Second)
			e.FlushLastUsed(t)
			if got := e.StoredKey(t, k.ClientID).LastUsedAt; !got.Equal(t0) {
				t.Fatalf("after FlushLastUsed, last_used_at %v, want the time of use %v", got, t0)
			}

			url, before := e.URL, e.Snapshot(t)
			srv := e.Restart(t, server.Options{})
			if e.Server != srv || e.URL != url {
				t.Fatal("Restart: e.Server is not the new server, or the URL moved")
			}
			if _, ok := srv.GeneratedAdmin(); ok {
				t.Error("a restart on data with an admin key generated another")
			}
			if after := e.Snapshot(t); after != before {
				t.Errorf("a restart changed the data:\n%s\n%s", before, after)
			}
			e.Token(t, k.ClientID, k.ClientSecret, "")
			e.AdminToken(t)

			s := e.Second(t, server.Options{})
			if s.URL == e.URL || s.Server == e.Server {
				t.Fatal("the second instance shares the first one's URL or server")
			}
			k2 := s.CreateKey(t, "acme", "k2", "visualization_sdk")
			if l := e.ListKeys(t, e.AdminToken(t), "acme"); len(l.Keys) != 2 {
				t.Errorf("the first instance lists %d keys of acme, want 2 (one made through the second)", len(l.Keys))
			}
			s.Token(t, k2.ClientID, k2.ClientSecret, "")
			s.AssertLastUsedStored(t, k2.ClientID)
		})
	}
}

func TestStartMany(t *testing.T) {
	envs := servertest.StartMany(t, servertest.Config{Backend: servertest.Memory(), GeneratedAdmin: true}, 4)
	generated := 0
	for _, e := range envs {
		if _, ok := e.Server.GeneratedAdmin(); ok {
			generated++
		}
	}
	if generated != 1 {
		t.Fatalf("%d of 4 concurrent first starts generated an admin key, want 1", generated)
	}
	tok := envs[3].AdminToken(t)
	k := envs[1].CreateKey(t, "acme", "k", "accounting_api")
	envs[2].Token(t, k.ClientID, k.ClientSecret, "")
	envs[0].ListKeys(t, tok, "acme")
}

func TestTrySecondWrongMasterKey(t *testing.T) {
	e := servertest.StartWith(t, servertest.Config{Backend: servertest.Memory()})
	enc, err := masterkey.Generate()
	if err != nil {
		t.Fatal(err)
	}
	other, err := masterkey.Parse(enc)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.TrySecond(t, server.Options{MasterKey: other}); err == nil {
		t.Fatal("a second instance with another master key started")
	}
	e.AdminToken(t)
}

// TestFlushLastUsedFollowsRestart: after a restart, FlushLastUsed drives the
// new server (the old one is closed and takes no more ticks).
func TestFlushLastUsedFollowsRestart(t *testing.T) {
	e := servertest.StartWith(t, servertest.Config{Backend: servertest.Memory()})
	e.Restart(t, server.Options{})
	k := e.CreateKey(t, "acme", "k", "accounting_api")
	e.Token(t, k.ClientID, k.ClientSecret, "")
	e.AssertLastUsedStored(t, k.ClientID)
}

// TestStartOnDataWrittenEarlier: with Config.MasterKey, a keygate starts on
// a store another one wrote, and its keys work there.
func TestStartOnDataWrittenEarlier(t *testing.T) {
	st := storetest.NewMemStore()
	first := servertest.StartWith(t, servertest.Config{Backend: servertest.Existing(st)})
	k := first.CreateKey(t, "acme", "k", "accounting_api")
	first.Server.Close()

	again := servertest.StartWith(t, servertest.Config{
		Backend:   servertest.Existing(st),
		MasterKey: first.MasterKey,
		Options:   server.Options{AdminClientID: first.AdminID, AdminClientSecret: first.AdminSecret},
	})
	if again.MasterKey != first.MasterKey {
		t.Fatal("Config.MasterKey was not used")
	}
	again.Token(t, k.ClientID, k.ClientSecret, "")
	if l := again.ListKeys(t, again.AdminToken(t), "acme"); len(l.Keys) != 1 || l.Keys[0].ClientID != k.ClientID {
		t.Fatalf("the second keygate lists %+v, want the key the first created", l.Keys)
	}
}
