package redis_test

// The Redis backend on a real 3-master Redis Cluster started from the
// redis-server binary: the whole conformance suite, proof that teams really
// spread over the masters (so the suite's multi-key scripts ran across
// shards, not on one lucky node), and Cluster mode through Open's URL.

import (
	"context"
	"fmt"
	"os/exec"
	"reflect"
	"strings"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/keygate/keygate/credential"
	"github.com/keygate/keygate/internal/redistest"
	"github.com/keygate/keygate/store"
	"github.com/keygate/keygate/store/redis"
	"github.com/keygate/keygate/store/storetest"
)

const clusterReadyTimeout = 15 * time.Second

// testCluster is a running 3-master cluster (no replicas).
type testCluster struct {
	nodes   []*redisProc
	clients []*goredis.Client // one direct client per node
}

func (c *testCluster) addrs() []string {
	out := make([]string, len(c.nodes))
	for i, n := range c.nodes {
		out[i] = n.Addr()
	}
	return out
}

// startCluster starts three cluster-enabled redis-servers, joins them with
// redis-cli --cluster create and waits until every node reports
// cluster_state:ok. Everything is torn down in t.Cleanup.
func startCluster(t *testing.T) *testCluster {
	t.Helper()
	cli := requireBinary(t, "redis-cli")
	requireBinary(t, "redis-server")
	start := time.Now()
	c := &testCluster{}
	for range 3 {
		n := startRedis(t,
			"--cluster-enabled", "yes",
			"--cluster-config-file", "nodes.conf",
			"--cluster-node-timeout", "5000",
			"--appendonly", "no")
		c.nodes = append(c.nodes, n)
		rc := goredis.NewClient(&goredis.Options{Addr: n.Addr(), DialTimeout: time.Second, ReadTimeout: time.Second, WriteTimeout: time.Second})
		t.Cleanup(func() { rc.Close() })
		c.clients = append(c.clients, rc)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	args := append([]string{"--cluster", "create"}, c.addrs()...)
	args = append(args, "--cluster-replicas", "0", "--cluster-yes")
	out, err := exec.CommandContext(ctx, cli, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("redis-cli %s: %v\n%s", strings.Join(args, " "), err, out)
	}

	deadline := time.Now().Add(clusterReadyTimeout)
	for i, rc := range c.clients {
		for {
			info, err := rc.ClusterInfo(ctx).Result()
			if err == nil && strings.Contains(info, "cluster_state:ok") && strings.Contains(info, "cluster_known_nodes:3") {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("node %d (%s) not cluster_state:ok after %v: err %v\n%s", i, c.nodes[i].Addr(), clusterReadyTimeout, err, info)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	t.Logf("3-master cluster on %v ready in %v", c.addrs(), time.Since(start).Round(time.Millisecond))
	return c
}

// newClusterClient is a go-redis Cluster client on c, closed in t.Cleanup.
func (c *testCluster) newClusterClient(t testing.TB) *goredis.ClusterClient {
	cc := goredis.NewClusterClient(&goredis.ClusterOptions{
		Addrs:        c.addrs(),
		DialTimeout:  2 * time.Second,
		ReadTimeout:  2 * time.Second,
		WriteTimeout: 2 * time.Second,
	})
	t.Cleanup(func() { cc.Close() })
	return cc
}

// TestClusterConformance runs the whole storetest suite unchanged against a
// real 3-master cluster, then checks that keys are sharded by team and that
// Open reaches Cluster mode through a URL. The cluster is started once for
// all subtests (each store gets its own random prefix).
func TestClusterConformance(t *testing.T) {
	cl := startCluster(t)
	cc := cl.newClusterClient(t)
	ctx := context.Background()
	if err := cc.Ping(ctx).Err(); err != nil {
		t.Fatalf("cluster client ping: %v", err)
	}

	storetest.Run(t, func(t *testing.T) store.Store {
		prefix := redistest.Prefix(t, cc, "")
		s, err := redis.New(cc, prefix, 2*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		return s
	})

	// The compact layout (compact.go): every script of it on one slot.
	t.Run("Compact", func(t *testing.T) {
		storetest.Run(t, func(t *testing.T) store.Store {
			return compactStore(t, cc, redistest.Prefix(t, cc, ""), true)
		})
	})
	t.Run("Compact/Migration", func(t *testing.T) { testClusterCompactMigration(t, cc) })

	// The bulk path too: its pipelines split by slot and its script must
	// be cached on every master.
	storetest.RunBulk(t, func(t *testing.T) storetest.BulkStore { return newBulkStore(t, cc) })

	// Export's reads: the deny list spread over the masters, the audit
	// trails found through every slot's team index.
	storetest.RunExport(t, func(t *testing.T) storetest.ExportStore {
		s, err := redis.New(cc, redistest.Prefix(t, cc, ""), 2*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		return s
	})

	t.Run("Sharding/TeamsSpreadOverMasters", func(t *testing.T) {
		testClusterSharding(t, cl, cc)
	})
	t.Run("OpenURL/ClusterMode", func(t *testing.T) {
		testClusterOpenURL(t, cl, cc)
	})
	t.Run("Teams/RegistryMatchesScan", func(t *testing.T) {
		testTeamRegistryMatchesScan(t, cc)
	})
	t.Run("Teams/RegistryRepair", func(t *testing.T) {
		testTeamRegistryRepair(t, cc)
	})
	t.Run("Schema/MigrateAndCheck", func(t *testing.T) {
		testClusterSchema(t, cl, cc)
	})
	t.Run("TokenEndpoint/OneRoundTrip", func(t *testing.T) {
		testTokenOneRoundTrip(t, cl.newClusterClient(t))
	})
	// Last: it kills a master, which leaves the cluster unusable.
	t.Run("Fault/MasterDown", func(t *testing.T) {
		testClusterMasterDown(t, cl)
	})
}

// testClusterMasterDown runs keygate on the cluster (opened through the URL,
// as in production), SIGKILLs the master that holds one team's key and
// checks that this key gets a prompt 503 temporarily_unavailable (never
// invalid_client), /readyz goes 503, and a key on a surviving master still
// gets tokens (until the cluster marks itself failed after the node
// timeout, 5 s here).
func testClusterMasterDown(t *testing.T, cl *testCluster) {
	ctx := context.Background()
	a := cl.addrs()
	prefix := redistest.RandomPrefix(t, "") // no cleanup: the cluster is discarded after this
	st, err := redis.Open(ctx, redis.Options{URL: "redis://" + a[0] + "?addr=" + a[1] + "&addr=" + a[2], Prefix: prefix, Timeout: storeTimeout})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	kg := startKeygate(t, st, nil)
	adminTok := kg.adminToken()

	// nodeOf: the only node that answers EXISTS without MOVED, for the
	// key's hash in the old layout or its bucket in the compact one.
	nodeOf := func(id string) int {
		t.Helper()
		name := prefix + "{" + credential.TagOf(id) + "}:key:" + id
		bucket := prefix + "{" + credential.TagOf(id) + "}:k"
		for i, rc := range cl.clients {
			if n, err := rc.Exists(ctx, name, bucket).Result(); err == nil && n >= 1 {
				return i
			}
		}
		t.Fatalf("no node holds %s", name)
		return -1
	}
	byNode := map[int]createdKey{}
	for i := 0; len(byNode) < 3 && i < 60; i++ {
		team := fmt.Sprintf("down-team-%02d", i)
		r := kg.createKey(adminTok, team, "k")
		if r.Status != 201 {
			t.Fatalf("create for %s: %d %s", team, r.Status, r.Raw)
		}
		k := createdKey{team: team, id: r.str("client_id"), secret: r.str("client_secret")}
		if _, ok := byNode[nodeOf(k.id)]; !ok {
			byNode[nodeOf(k.id)] = k
		}
	}
	if len(byNode) < 2 {
		t.Fatalf("keys of 60 teams on %d master(s)", len(byNode))
	}
	victim, survivor := -1, -1
	for n := range byNode {
		if victim < 0 {
			victim = n
		} else if survivor < 0 {
			survivor = n
		}
	}
	for _, n := range []int{victim, survivor} {
		if r := kg.token(byNode[n].id, byNode[n].secret); r.Status != 200 {
			t.Fatalf("token before the fault (node %d): %d %s", n, r.Status, r.Raw)
		}
	}

	cl.nodes[victim].Kill()
	killed := time.Now()
	for i := range 2 {
		assertTokenUnavailable(t, kg, byNode[victim], fmt.Sprintf("master %d killed, its key, request %d", victim, i+1))
	}
	assertReadyzUnavailable(t, kg, fmt.Sprintf("master %d killed", victim))
	// Other shards still serve while the cluster has not yet declared the
	// dead master failed (cluster-node-timeout 5 s).
	if since := time.Since(killed); since < 4*time.Second {
		r := kg.token(byNode[survivor].id, byNode[survivor].secret)
		if r.Status != 200 {
			t.Errorf("key on surviving master %d, %v after the kill: %d %s, want 200", survivor, since.Round(time.Millisecond), r.Status, r.Raw)
		} else {
			t.Logf("key on surviving master %d still gets tokens %v after master %d died (%v)", survivor, since.Round(time.Millisecond), victim, r.Elapsed.Round(time.Millisecond))
		}
	}
}

// testClusterSharding creates keys for 50 teams and checks, on the nodes
// themselves, that (1) each key hash and its team index share a hash slot,
// (2) that slot is served by the node holding them, and (3) the keys spread
// over at least two masters (with 50 teams, in practice all three).
func testClusterSharding(t *testing.T, cl *testCluster, cc *goredis.ClusterClient) {
	ctx := context.Background()
	prefix := redistest.Prefix(t, cc, "")
	s, err := redis.New(cc, prefix, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}

	const teams = 50
	created := map[string]string{} // client ID → team
	for i := range teams {
		team := fmt.Sprintf("shard-team-%02d", i)
		for j := range 2 {
			id, err := credential.NewClientID(team)
			if err != nil {
				t.Fatal(err)
			}
			k := store.Key{ClientID: id, TeamID: team, Name: fmt.Sprintf("k%d", j), Permissions: []string{"accounting_api"},
				CreatedAt: time.Now().Add(time.Duration(j) * time.Millisecond), SecretHash: []byte(fmt.Sprintf("0123456789abcdef0123456789ab%02d%02d", i, j))}
			if err := s.CreateKey(ctx, k, 5); err != nil {
				t.Fatalf("CreateKey(team %s): %v", team, err)
			}
			created[id] = team
		}
	}

	// Which node holds what, asked of each node directly.
	perNode := make([]int, len(cl.nodes))
	seen := map[string]int{} // Redis key → node index
	for i, rc := range cl.clients {
		iter := rc.Scan(ctx, 0, prefix+"*", 1000).Iterator()
		for iter.Next(ctx) {
			name := iter.Val()
			if prev, dup := seen[name]; dup {
				t.Errorf("Redis key %s found on node %d and node %d", name, prev, i)
			}
			seen[name] = i
			perNode[i]++
		}
		if err := iter.Err(); err != nil {
			t.Fatalf("SCAN node %d: %v", i, err)
		}
	}
	// One hash per key plus one index per team, one secret index entry
	// per key (secrets.go: no hash tag, so they spread too), and the team
	// registry (teamregistry.go).
	if want := 2*len(created) + teams + 1; len(seen) != want {
		t.Fatalf("found %d Redis keys under the prefix across the nodes, want %d (%d key hashes + %d team indexes + %d secret index entries + the team registry)", len(seen), want, len(created), teams, len(created))
	}
	if _, ok := seen[prefix+"{kg}:teams"]; !ok {
		t.Fatal("no team registry")
	}
	for name := range seen {
		if strings.HasPrefix(name, prefix+"secret:") || name == prefix+"{kg}:teams" {
			delete(seen, name)
		}
	}
	holding := 0
	for _, n := range perNode {
		if n > 0 {
			holding++
		}
	}
	t.Logf("Redis keys per master: %v", perNode)
	if holding < 2 {
		t.Fatalf("all keys of %d teams live on one master (per node %v): the cluster is not sharding", teams, perNode)
	}

	// Each key hash and its team's index are in one slot, served by the
	// node that holds them; slots differ between teams.
	slotOf := func(name string) int64 {
		t.Helper()
		slot, err := cl.clients[0].ClusterKeySlot(ctx, name).Result()
		if err != nil {
			t.Fatalf("CLUSTER KEYSLOT %s: %v", name, err)
		}
		return slot
	}
	teamSlots := map[string]int64{}
	for name, node := range seen {
		var team string
		switch {
		case strings.Contains(name, "}:key:"):
			team = created[name[strings.Index(name, "}:key:")+len("}:key:"):]]
		case strings.Contains(name, "}:team:"):
			team = name[strings.Index(name, "}:team:")+len("}:team:"):]
		default:
			t.Fatalf("unexpected Redis key %s", name)
		}
		if team == "" {
			t.Fatalf("Redis key %s belongs to no created key", name)
		}
		slot := slotOf(name)
		if prev, ok := teamSlots[team]; ok && prev != slot {
			t.Errorf("team %s: Redis key %s in slot %d, but another of its keys is in slot %d", team, name, slot, prev)
		}
		teamSlots[team] = slot
		n, err := cl.clients[node].ClusterCountKeysInSlot(ctx, int(slot)).Result()
		if err != nil || n == 0 {
			t.Errorf("node %d holds %s but CLUSTER COUNTKEYSINSLOT %d there = %d, %v", node, name, slot, n, err)
		}
	}
	distinct := map[int64]bool{}
	for _, sl := range teamSlots {
		distinct[sl] = true
	}
	if len(distinct) < teams/2 {
		t.Errorf("%d teams share only %d slots: the team tags do not spread", teams, len(distinct))
	}

	// The store reads back across the shards.
	for i := range teams {
		team := fmt.Sprintf("shard-team-%02d", i)
		ks, err := s.ListKeys(ctx, team)
		if err != nil || len(ks) != 2 {
			t.Fatalf("ListKeys(%s) = %d keys, %v; want 2", team, len(ks), err)
		}
	}
	visited := 0
	if err := s.ForEachKey(ctx, func(store.Key) error { visited++; return nil }); err != nil {
		t.Fatal(err)
	}
	if visited != len(created) {
		t.Errorf("ForEachKey visited %d keys across the masters, want %d", visited, len(created))
	}
}

// testClusterOpenURL opens the store through a redis:// URL with addr
// parameters and proves it is in Cluster mode: a plain client on one seed
// node would get MOVED for most teams' slots.
func testClusterOpenURL(t *testing.T, cl *testCluster, cc *goredis.ClusterClient) {
	ctx := context.Background()
	a := cl.addrs()
	prefix := redistest.Prefix(t, cc, "")
	for _, tc := range []struct {
		name string
		opts redis.Options
	}{
		{"addr-params", redis.Options{URL: "redis://" + a[0] + "?addr=" + a[1] + "&addr=" + a[2], Prefix: prefix + "u1:"}},
		{"Cluster-flag-one-seed", redis.Options{URL: "redis://" + a[1], Cluster: true, Prefix: prefix + "u2:"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := redis.Open(ctx, tc.opts)
			if err != nil {
				t.Fatalf("Open(%s): %v", tc.opts.URL, err)
			}
			t.Cleanup(func() { s.Close() })
			for i := range 20 {
				team := fmt.Sprintf("url-team-%02d", i)
				id, err := credential.NewClientID(team)
				if err != nil {
					t.Fatal(err)
				}
				k := store.Key{ClientID: id, TeamID: team, Name: "k", Permissions: []string{"accounting_api"}, CreatedAt: time.Now(), SecretHash: []byte("h")}
				if err := s.CreateKey(ctx, k, 5); err != nil {
					t.Fatalf("CreateKey through Open(%s), team %s: %v (not in Cluster mode?)", tc.opts.URL, team, err)
				}
				if _, err := s.GetKey(ctx, id); err != nil {
					t.Fatalf("GetKey through Open(%s): %v", tc.opts.URL, err)
				}
			}
			// The keys are on more than one master: really sharded.
			holding := 0
			for i, rc := range cl.clients {
				keys, _, err := rc.Scan(ctx, 0, tc.opts.Prefix+"*", 1000).Result()
				if err != nil {
					t.Fatalf("SCAN node %d: %v", i, err)
				}
				if len(keys) > 0 {
					holding++
				}
			}
			if holding < 2 {
				t.Errorf("keys of 20 teams created through Open(%s) are on %d master(s), want ≥ 2", tc.opts.URL, holding)
			}
		})
	}
}

// testClusterCompactMigration: keys written in the old layout across the
// masters are all moved to their buckets by the migration (its walk and
// scripts on every master), and read the same before and after.
func testClusterCompactMigration(t *testing.T, cc *goredis.ClusterClient) {
	ctx := context.Background()
	prefix := redistest.Prefix(t, cc, "")
	old, err := redis.New(cc, prefix, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	keys := storetest.BulkKeys(t, 30, 2, 2)
	if err := old.CreateKeys(ctx, keys); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	s, err := redis.New(cc, prefix, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	s.SetSchemaOptions(redis.SchemaOptions{Now: func() time.Time { return now }})
	if err := s.Check(ctx); err != nil {
		t.Fatal(err)
	}
	before := map[string]store.Key{}
	for _, k := range keys {
		if before[k.ClientID], err = s.GetKey(ctx, k.ClientID); err != nil {
			t.Fatal(err)
		}
	}
	now = now.Add(redis.DefaultHeartbeatTTL)
	for i := 0; !s.CompactOnly(); i++ {
		if i == 5 {
			t.Fatal("the migration did not finish in 5 checks")
		}
		if err := s.Check(ctx); err != nil {
			t.Fatal(err)
		}
	}
	for _, k := range keys {
		got, err := s.GetKey(ctx, k.ClientID)
		if err != nil || !reflect.DeepEqual(got, before[k.ClientID]) {
			t.Fatalf("%s after the migration: %+v, %v; want %+v", k.ClientID, got, err, before[k.ClientID])
		}
		if got, err := s.KeyBySecretHash(ctx, k.SecretHash); err != nil || got.ClientID != k.ClientID {
			t.Fatalf("%s by its secret hash after the migration: %q, %v", k.ClientID, got.ClientID, err)
		}
	}
	err = cc.ForEachMaster(ctx, func(ctx context.Context, c *goredis.Client) error {
		for _, pattern := range []string{prefix + "{*}:key:*", prefix + "{*}:team:*", prefix + "secret:*"} {
			if left, err := c.Keys(ctx, pattern).Result(); err != nil || len(left) != 0 {
				return fmt.Errorf("%s: %d names of the old layout left (%v)", pattern, len(left), err)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
