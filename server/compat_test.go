package server_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/internal/redistest"
	"github.com/keygate/keygate/server"
	"github.com/keygate/keygate/server/servertest"
	"github.com/keygate/keygate/store"
	"github.com/keygate/keygate/store/redis"
)

// An older keygate (reading only format test-a) serves next to a newer one
// (test-a and test-b) on one Redis. While the older one checks in, the newer
// one may not write test-b; when the older one's heartbeat has lapsed
// (paused past the TTL) the newer one may, and the older one's next check
// stops it: /readyz answers 503 and OnIncompatible is called, once.
func TestOlderInstanceStopsWhenStoreMovesOn(t *testing.T) {
	c := redistest.Require(t)
	prefix := redistest.Prefix(t, c, "")
	clock := servertest.NewClock(time.Now())
	open := func(id string, formats ...store.Format) *redis.Store {
		s, err := redis.New(c, prefix, 2*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		s.SetSchemaOptions(redis.SchemaOptions{InstanceID: id, Formats: formats, Now: clock.Now, HeartbeatTTL: 30 * time.Second})
		return s
	}
	oldStore, newStore := checked(open("old", "test-a")), checked(open("new", "test-a", "test-b"))

	oldTicks := make(chan time.Time)
	stopped := make(chan error, 2)
	old := servertest.StartWith(t, servertest.Config{
		Backend: servertest.Existing(oldStore),
		Clock:   clock,
		Options: server.Options{CompatTicks: oldTicks, OnIncompatible: func(err error) { stopped <- err }},
	})
	newTicks := make(chan time.Time)
	servertest.StartWith(t, servertest.Config{
		Backend:   servertest.Existing(newStore),
		Clock:     clock,
		MasterKey: old.MasterKey,
		Options:   server.Options{CompatTicks: newTicks},
	})
	gate := store.FormatGateOf(newStore)
	// One check, and no other in flight once it returns: a check still
	// running when the clock moves would see the old heartbeat lapse
	// before the test means it to.
	tick := func(ch chan time.Time, s checkedStore) {
		t.Helper()
		ch <- clock.Now()
		select {
		case <-s.checked:
		case <-time.After(10 * time.Second):
			t.Fatal("no check within 10 s of the tick")
		}
	}

	tick(oldTicks, oldStore)
	tick(newTicks, newStore)
	if !gate.Writable("test-a") || gate.Writable("test-b") {
		t.Fatalf("both alive: test-a %v, test-b %v; want true, false", gate.Writable("test-a"), gate.Writable("test-b"))
	}
	clock.Advance(31 * time.Second) // the old instance paused past its TTL
	tick(newTicks, newStore)
	if !gate.Writable("test-b") {
		t.Fatal("test-b not writable after the old heartbeat expired")
	}
	// Readiness pings the store within a second of real time, which a
	// saturated CI machine can miss: a "does not answer" is asked again
	// (at most three times); only the format verdict is this test's.
	for try := 1; ; try++ {
		r, body := readyzBody(t, old)
		if r == http.StatusOK {
			break
		}
		if try == 3 || !strings.Contains(body, "does not answer") {
			t.Fatalf("old readyz before its check: %d %s", r, body)
		}
	}
	tick(oldTicks, oldStore)
	select { // called after the check returned
	case err := <-stopped:
		if !errors.Is(err, store.ErrUnreadableFormat) {
			t.Fatalf("OnIncompatible got %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the old instance's check did not call OnIncompatible")
	}
	if r := readyz(t, old); r != http.StatusServiceUnavailable {
		t.Fatalf("old readyz after the refused check: %d, want 503", r)
	}
	tick(oldTicks, oldStore)
	tick(oldTicks, oldStore) // taken once the loop is done with the one before
	if len(stopped) != 0 {
		t.Fatal("OnIncompatible called again")
	}
}

// checkedStore tells of each compatibility check it completed.
type checkedStore struct {
	*redis.Store
	checked chan struct{}
}

func checked(s *redis.Store) checkedStore { return checkedStore{s, make(chan struct{}, 8)} }

func (s checkedStore) Check(ctx context.Context) error {
	err := s.Store.Check(ctx)
	s.checked <- struct{}{}
	return err
}

func readyz(t *testing.T, e *servertest.Env) int {
	t.Helper()
	status, _ := readyzBody(t, e)
	return status
}

func readyzBody(t *testing.T, e *servertest.Env) (int, string) {
	t.Helper()
	resp, err := e.Client.Get(e.URL + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}
