package main

import (
	"context"
	"io"
	"log/slog"
	"slices"
	"strings"
	"testing"

	"github.com/keygate/keygate/client"
	"github.com/keygate/keygate/config"
	"github.com/keygate/keygate/store"
	"github.com/keygate/keygate/store/storetest"
)

// TestStoreBackendsProduction: keygate serves bolt and redis, nothing else
// (a test's store never leaks into the binary), the store setting accepts
// exactly those, and serve --help names both.
func TestStoreBackendsProduction(t *testing.T) {
	t.Parallel()
	if got, want := storeBackends.names(), []string{config.StoreBolt, config.StoreRedis}; !slices.Equal(got, want) {
		t.Fatalf("storeBackends holds %v, want %v", got, want)
	}
	// What config.Load accepts when no list is passed (seed) is the same.
	if !slices.Equal(storeBackends.names(), slices.Sorted(slices.Values(config.DefaultStores))) {
		t.Errorf("storeBackends %v, config.DefaultStores %v", storeBackends.names(), config.DefaultStores)
	}

	help, _, err := run(t, "serve", "--help")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"bolt   embedded bbolt database in --data-dir, for one instance (the default)",
		"redis  Redis at --redis-url, shared by several instances; needs KEYGATE_MASTER_KEY and --issuer",
		"key store: bolt, redis (env KEYGATE_STORE)",
	} {
		if !strings.Contains(help, want) {
			t.Errorf("serve --help lacks %q:\n%s", want, help)
		}
	}

	_, _, err = run(t, "serve", "--store", "memory", "--data-dir", t.TempDir(), "--listen", freeAddr(t))
	if err == nil || !strings.Contains(err.Error(), "invalid store") || !strings.Contains(err.Error(), "allowed values are bolt, redis") {
		t.Fatalf("serve --store memory: %v", err)
	}
}

// TestServeOnRegisteredStore: a backend added to the registry is served
// by the serve command: the store setting accepts it and the server runs on
// it (admin key generated into it, a team key created and exchanged).
func TestServeOnRegisteredStore(t *testing.T) {
	t.Parallel()
	opened := make(chan *storetest.MemStore, 2) // from serve's goroutine
	stores := backends{
		config.StoreBolt: storeBackends[config.StoreBolt],
		"memory": {
			help: "in memory, for this test",
			open: func(context.Context, config.Config, *slog.Logger) (store.Store, error) {
				st := storetest.NewMemStore()
				opened <- st
				return st, nil
			},
		},
	}
	dir, addr := t.TempDir(), freeAddr(t)
	e := testEnv(nil)
	r := startRunning(t, "http://"+addr, func(ctx context.Context, log io.Writer) error {
		cmd := serveCommand(e, stores)
		cmd.SetArgs([]string{"--store", "Memory", "--data-dir", dir, "--listen", addr})
		cmd.SetOut(io.Discard)
		cmd.SetErr(log)
		return cmd.ExecuteContext(ctx)
	})
	if len(opened) != 1 {
		t.Fatalf("the memory backend was opened %d times, want once", len(opened))
	}
	mem := <-opened
	if !strings.Contains(r.log.String(), "store=memory") {
		t.Errorf("start-up log does not name the memory store:\n%s", r.log)
	}

	admin, _ := readAdminFile(t, dir)
	c := client.New(client.Config{URL: r.base, ClientID: admin.ClientID, ClientSecret: admin.ClientSecret})
	k, err := c.CreateKey(ctxFor(t), "acme", "On memory", []string{"accounting_api"})
	if err != nil {
		t.Fatal(err)
	}
	teamToken(t, r.base, k.ClientID, k.ClientSecret)
	// The key is in the registered store, nowhere else.
	if _, err := mem.GetKey(ctxFor(t), k.ClientID); err != nil {
		t.Fatalf("the created key is not in the memory store: %v", err)
	}
	if err := r.stop(t); err != nil {
		t.Fatalf("serve on the memory store: %v", err)
	}

	var help strings.Builder
	cmd := serveCommand(testEnv(nil), stores)
	cmd.SetArgs([]string{"--help"})
	cmd.SetOut(&help)
	err = cmd.Execute()
	if err != nil || !strings.Contains(help.String(), "memory in memory, for this test") || !strings.Contains(help.String(), "key store: bolt, memory") {
		t.Errorf("serve --help with the memory store (%v):\n%s", err, help.String())
	}
}
