package server_test

import (
	"context"
	"encoding/json"
	"net/http"
	"slices"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/keygate/keygate/apikey"
	"github.com/keygate/keygate/internal/redistest"
	"github.com/keygate/keygate/server/servertest"
)

// TestTeamRegistryRepairedByAuditWorker: on Redis, the audit worker's
// first round completes the team registry, and later rounds repair it
// every apikey.DefaultTeamsRepairEvery on the server's clock; GET
// /v1/teams lists a team the registry lost (by hand: no create of this
// release leaves that) again after the next repair walk, not before.
func TestTeamRegistryRepairedByAuditWorker(t *testing.T) {
	c := redistest.Require(t)
	prefix := redistest.Prefix(t, c, "")
	backend := servertest.RedisOn(func(t testing.TB) goredis.UniversalClient { return redistest.NewClient(t) }, prefix)
	clk := servertest.NewClock(time.Date(2026, 12, 5, 12, 0, 0, 0, time.UTC))
	e := startEnv(t, servertest.Config{Backend: backend, Clock: clk})
	admin := e.AdminToken(t)
	e.CreateKeyWith(t, admin, "acme", "a", permAccounting)
	e.CreateKeyWith(t, admin, "globex", "g", permAccounting)
	teams := func() []string {
		t.Helper()
		r := e.API(t, admin, http.MethodGet, "/v1/teams", nil)
		if r.Status != http.StatusOK {
			t.Fatalf("GET /v1/teams: %s", r)
		}
		var body struct {
			Teams []struct {
				TeamID string `json:"team_id"`
			} `json:"teams"`
		}
		if err := json.Unmarshal(r.Body, &body); err != nil {
			t.Fatal(err)
		}
		var ids []string
		for _, tm := range body.Teams {
			ids = append(ids, tm.TeamID)
		}
		return ids
	}
	e.AuditTick(t) // the first round's walk builds the registry
	if n, err := c.Exists(context.Background(), prefix+"{kg}:teams:complete").Result(); err != nil || n != 1 {
		t.Fatalf("no complete registry after the first round (%d, %v)", n, err)
	}
	if got := teams(); !slices.Equal(got, []string{"acme", "globex"}) {
		t.Fatalf("teams %v", got)
	}
	// A crash between a key's write and the registry's, by hand.
	if err := c.ZRem(context.Background(), prefix+"{kg}:teams", "globex").Err(); err != nil {
		t.Fatal(err)
	}
	if got := teams(); !slices.Equal(got, []string{"acme"}) {
		t.Fatalf("teams after the drift %v, want acme only (the registry is read)", got)
	}
	clk.Advance(apikey.DefaultTeamsRepairEvery - time.Minute)
	admin = e.AdminToken(t) // the first one has expired
	e.AuditTick(t)
	if got := teams(); !slices.Equal(got, []string{"acme"}) {
		t.Fatalf("teams %v a minute before the next walk is due: no walk was due", got)
	}
	clk.Advance(time.Minute)
	e.AuditTick(t)
	if got := teams(); !slices.Equal(got, []string{"acme", "globex"}) {
		t.Fatalf("teams %v after the next walk, want globex back", got)
	}
}
