package storeio_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/apikey"
	"github.com/keygate/keygate/masterkey"
	"github.com/keygate/keygate/metrics"
	"github.com/keygate/keygate/server"
	"github.com/keygate/keygate/server/servertest"
	"github.com/keygate/keygate/store"
	"github.com/keygate/keygate/store/storemetrics"
	"github.com/keygate/keygate/store/storetest"
	"github.com/keygate/keygate/storeio"
)

var fixedNow = time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC)

// dump is st exported at a fixed time: equal dumps, equal stores.
func dump(t *testing.T, st store.Store) string {
	t.Helper()
	var b bytes.Buffer
	if _, err := storeio.Export(context.Background(), &b, st, storeio.ExportOptions{Source: "test", Now: func() time.Time { return fixedNow }}); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// source is a used keygate on bbolt and its export.
func source(t *testing.T) (*servertest.Env, []string) {
	t.Helper()
	src := servertest.StartWith(t, servertest.Config{Options: server.Options{Issuer: issuer}})
	admin := src.AdminToken(t)
	for i := 0; i < 3; i++ {
		src.CreateKeyWith(t, admin, "acme", fmt.Sprintf("k%d", i), "accounting_api")
	}
	var b bytes.Buffer
	if _, err := storeio.Export(context.Background(), &b, src.Store, storeio.ExportOptions{Source: "bolt"}); err != nil {
		t.Fatal(err)
	}
	lines := strings.SplitAfter(b.String(), "\n")
	return src, lines[:len(lines)-1] // after the last newline: ""
}

// lineOf is the 1-based number of the first line of kind.
func lineOf(t *testing.T, lines []string, kind string) int {
	t.Helper()
	for i, l := range lines {
		if strings.HasPrefix(l, `{"kind":"`+kind+`"`) {
			return i + 1
		}
	}
	t.Fatalf("no %s line", kind)
	return 0
}

func TestImportRefusesBadStreams(t *testing.T) {
	src, lines := source(t)
	check := func(s map[string][]byte, sk store.SigningKeys) error {
		return apikey.CheckSealed(src.MasterKey, s, sk, time.Now())
	}
	key := lineOf(t, lines, "key")
	status := lineOf(t, lines, "status")
	end := len(lines)
	edit := func(n int, f func(string) string) string {
		out := append([]string{}, lines...)
		out[n-1] = f(out[n-1])
		return strings.Join(out, "")
	}
	without := func(n int) string {
		return strings.Join(append(append([]string{}, lines[:n-1]...), lines[n:]...), "")
	}
	all := strings.Join(lines, "")
	keyAt := strings.Index(all, lines[key-1])
	for _, tc := range []struct {
		name, stream string
		want         error
		says         string
	}{
		{"empty", "", storeio.ErrCorrupt, "the stream is empty"},
		{"not an export", `{"kind":"header","format":"something-else","version":1}` + "\n", storeio.ErrCorrupt, "line 1"},
		{"newer version", edit(1, func(s string) string { return strings.Replace(s, `"version":1`, `"version":2`, 1) }), storeio.ErrVersion, "version 2, this keygate reads version 1"},
		{"truncated at a line end", strings.Join(lines[:end-1], ""), storeio.ErrCorrupt, fmt.Sprintf("ends after line %d without its end line", end-1)},
		{"truncated within a line", all[:keyAt+40], storeio.ErrCorrupt, fmt.Sprintf("line %d", key)},
		{"garbage line", edit(key+1, func(string) string { return "{not json\n" }), storeio.ErrCorrupt, fmt.Sprintf("line %d", key+1)},
		{"unknown field", edit(key, func(s string) string { return strings.Replace(s, `"kind":"key"`, `"kind":"key","superuser":true`, 1) }), storeio.ErrCorrupt, fmt.Sprintf("line %d", key)},
		{"unknown kind", edit(key, func(s string) string { return strings.Replace(s, `"kind":"key"`, `"kind":"keys"`, 1) }), storeio.ErrCorrupt, fmt.Sprintf("line %d: ", key)},
		{"a key missing", without(key), storeio.ErrCorrupt, fmt.Sprintf("line %d", end-1)},
		{"a key twice", edit(key+1, func(string) string { return lines[key-1] }), storeio.ErrCorrupt, fmt.Sprintf("line %d", key+1)},
		{"status before the keys", edit(key, func(string) string { return lines[status-1] }), storeio.ErrCorrupt, fmt.Sprintf("line %d", key+1)},
		{"a line after the end", all + lines[key-1], storeio.ErrCorrupt, fmt.Sprintf("line %d", end+1)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			target := emptyBolt(t)
			before := dump(t, target)
			_, err := storeio.Import(context.Background(), strings.NewReader(tc.stream), target, storeio.ImportOptions{CheckSecrets: check})
			if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.says) {
				t.Fatalf("got %v, want %v saying %q", err, tc.want, tc.says)
			}
			if !strings.Contains(err.Error(), "nothing written") {
				t.Errorf("the error does not say that nothing was written: %v", err)
			}
			if after := dump(t, target); after != before {
				t.Errorf("the target changed:\n%s", after)
			}
		})
	}

	t.Run("wrong master key", func(t *testing.T) {
		other, err := masterkey.Generate()
		if err != nil {
			t.Fatal(err)
		}
		mk, err := masterkey.Parse(other)
		if err != nil {
			t.Fatal(err)
		}
		target := emptyBolt(t)
		before := dump(t, target)
		_, err = storeio.Import(context.Background(), strings.NewReader(all), target, storeio.ImportOptions{
			CheckSecrets: func(s map[string][]byte, sk store.SigningKeys) error {
				return apikey.CheckSealed(mk, s, sk, time.Now())
			},
		})
		if err == nil || !strings.Contains(err.Error(), "master key does not open the store's pepper") {
			t.Fatalf("got %v, want a refusal naming the master key", err)
		}
		if after := dump(t, target); after != before {
			t.Errorf("the target changed:\n%s", after)
		}
	})
}

func TestImportRefusesNonEmptyStore(t *testing.T) {
	_, lines := source(t)
	all := strings.Join(lines, "")
	ctx := context.Background()
	for _, tc := range []struct {
		name    string
		prepare func(t *testing.T, st store.Store)
		says    string
	}{
		{"started", func(t *testing.T, st store.Store) {
			e := servertest.StartWith(t, servertest.Config{Backend: servertest.Existing(st)})
			e.CreateKey(t, "acme", "there", "accounting_api")
		}, "a pepper"},
		{"a pepper only", func(t *testing.T, st store.Store) {
			if _, err := st.CreateSingleton(ctx, "pepper", []byte("sealed")); err != nil {
				t.Fatal(err)
			}
		}, "a pepper"},
		{"signing keys only", func(t *testing.T, st store.Store) {
			_, err := st.UpdateSigningKeys(ctx, func(store.SigningKeys) (store.SigningKeys, error) {
				return store.SigningKeys{Active: &store.SigningKey{KID: "k1", Alg: "EdDSA", PrivateKeySealed: []byte("x"), CreatedAt: fixedNow}}, nil
			})
			if err != nil {
				t.Fatal(err)
			}
		}, "signing keys"},
		{"a next signing key only", func(t *testing.T, st store.Store) {
			_, err := st.UpdateSigningKeys(ctx, func(store.SigningKeys) (store.SigningKeys, error) {
				return store.SigningKeys{Next: &store.SigningKey{KID: "k2", Alg: "EdDSA", PrivateKeySealed: []byte("x"), CreatedAt: fixedNow, SignsFrom: fixedNow.Add(time.Hour)}}, nil
			})
			if err != nil {
				t.Fatal(err)
			}
		}, "signing keys"},
		{"a key only", func(t *testing.T, st store.Store) {
			if err := st.CreateKey(ctx, storetest.BulkKeys(t, 1, 1, 0)[0], 0); err != nil {
				t.Fatal(err)
			}
		}, "keys"},
		{"a status index only", func(t *testing.T, st store.Store) {
			if _, err := st.NextStatusIndex(ctx); err != nil {
				t.Fatal(err)
			}
		}, "a status list"},
	} {
		for _, backend := range []struct {
			name  string
			empty func(*testing.T) store.Store
		}{{"bolt", emptyBolt}, {"redis", emptyRedis}} {
			t.Run(tc.name+"/"+backend.name, func(t *testing.T) {
				target := backend.empty(t)
				tc.prepare(t, target)
				before := dump(t, target)
				_, err := storeio.Import(ctx, strings.NewReader(all), target, storeio.ImportOptions{})
				if !errors.Is(err, storeio.ErrNotEmpty) || !strings.Contains(err.Error(), "holds "+tc.says) || !strings.Contains(err.Error(), "nothing written") {
					t.Fatalf("got %v, want ErrNotEmpty naming %q", err, tc.says)
				}
				if after := dump(t, target); after != before {
					t.Errorf("the target changed:\nbefore %s\nafter %s", before, after)
				}
			})
		}
	}
}

// deletingStore deletes victim (bit first, as apikey does) while the
// export walks the keys.
type deletingStore struct {
	store.Store
	victim store.Key
}

func (d *deletingStore) Unwrap() store.Store { return d.Store }

func (d *deletingStore) ForEachKey(ctx context.Context, fn func(store.Key) error) error {
	first := true
	return d.Store.ForEachKey(ctx, func(k store.Key) error {
		if first {
			first = false
			if err := d.Store.RevokeStatus(ctx, d.victim.StatusIndex); err != nil {
				return err
			}
			if err := d.Store.DeleteKey(ctx, d.victim.TeamID, d.victim.ClientID); err != nil {
				return err
			}
		}
		return fn(k)
	})
}

// TestExportKeyDeletedMidExport: the status list is read after the keys,
// so a key deleted during the walk is revoked in the stream whether or not
// the walk still met it.
func TestExportKeyDeletedMidExport(t *testing.T) {
	src := servertest.StartWith(t, servertest.Config{Options: server.Options{Issuer: issuer}})
	admin := src.AdminToken(t)
	var victim store.Key
	for i := 0; i < 4; i++ {
		k := src.CreateKeyWith(t, admin, "acme", fmt.Sprintf("k%d", i), "accounting_api")
		if i == 2 {
			var err error
			if victim, err = src.Store.GetKey(context.Background(), k.ClientID); err != nil {
				t.Fatal(err)
			}
		}
	}
	var b bytes.Buffer
	if _, err := storeio.Export(context.Background(), &b, &deletingStore{Store: src.Store, victim: victim}, storeio.ExportOptions{}); err != nil {
		t.Fatal(err)
	}
	target := emptyBolt(t)
	if _, err := storeio.Import(context.Background(), &b, target, storeio.ImportOptions{}); err != nil {
		t.Fatal(err)
	}
	sl, err := target.StatusList(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	i := victim.StatusIndex
	if sl.Entry(int64(i)) != store.StatusInvalid {
		t.Fatalf("the key deleted during the export (status index %d) is not revoked in the import: %x", i, sl.Statuses)
	}
	// Whatever the walk saw of it, a token of its index no longer verifies:
	// the status list says so; and the other keys are all there.
	n := 0
	if err := target.ForEachKey(context.Background(), func(k store.Key) error {
		if k.ClientID != victim.ClientID {
			n++
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if n != 4 { // three team keys and the admin
		t.Errorf("%d other keys imported, want 4", n)
	}
}

// TestRoundTripThroughMetricsWrapper: a bbolt store exported and imported
// into another bbolt store, both behind store/storemetrics (as serve wraps
// them), exports again to the very same stream — nothing lost, nothing
// changed — and the wrapper hides neither store.Exporter nor the bulk path.
func TestRoundTripThroughMetricsWrapper(t *testing.T) {
	src, _ := source(t)
	admin := src.AdminToken(t)
	k := src.CreateKeyWith(t, admin, "beta", "rotated", "accounting_api")
	if r := src.API(t, admin, "POST", "/v1/teams/beta/keys/"+k.ClientID+"/rotate", nil); r.Status != 200 {
		t.Fatalf("rotate: %s", r)
	}
	m := metrics.New(metrics.BuildInfo{})
	from := storemetrics.Wrap(src.Store, "bolt", m)
	target := emptyBolt(t)
	to := storemetrics.Wrap(target, "bolt", m)

	var b bytes.Buffer
	if _, err := storeio.Export(context.Background(), &b, from, storeio.ExportOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := storeio.Import(context.Background(), &b, to, storeio.ImportOptions{}); err != nil {
		t.Fatal(err)
	}
	want, got := dump(t, src.Store), dump(t, target)
	if got != want {
		t.Errorf("the target exports otherwise than the source:\n got %s\nwant %s", got, want)
	}
	if !strings.Contains(want, `"previous_secret_hash":"`) {
		t.Error("the rotated key's previous secret hash is not in the stream")
	}
}

// failingBulk is a store whose bulk path fails after its first call, as a
// Redis that goes away half-way.
type failingBulk struct {
	store.Store
	calls int
}

func (f *failingBulk) Unwrap() store.Store { return f.Store }

func (f *failingBulk) CreateKeys(ctx context.Context, keys []store.Key) error {
	if f.calls++; f.calls > 1 {
		return fmt.Errorf("create keys: %w", store.ErrUnavailable)
	}
	return f.Store.(store.BulkLoader).CreateKeys(ctx, keys)
}

func (f *failingBulk) NextStatusIndices(ctx context.Context, n int) (int64, error) {
	return f.Store.(store.BulkLoader).NextStatusIndices(ctx, n)
}

// TestImportFailingHalfWaySaysWhatIsLeft: a write that fails after the
// check leaves part of the export, and the error says so and how to
// recover; a second import into that store is refused.
func TestImportFailingHalfWaySaysWhatIsLeft(t *testing.T) {
	_, lines := source(t)
	all := strings.Join(lines, "")
	target := &failingBulk{Store: emptyBolt(t)}
	_, err := storeio.Import(context.Background(), strings.NewReader(all), target, storeio.ImportOptions{Batch: 1})
	if !errors.Is(err, store.ErrUnavailable) || !strings.Contains(err.Error(), "holds part of the export: import again into an empty store") {
		t.Fatalf("got %v, want the backend's error and what to do", err)
	}
	n := 0
	if err := target.ForEachKey(context.Background(), func(store.Key) error { n++; return nil }); err != nil {
		t.Fatal(err)
	}
	if n != 1 {
		t.Errorf("%d keys written before the failure, want the first batch's 1", n)
	}
	if _, err := storeio.Import(context.Background(), strings.NewReader(all), target, storeio.ImportOptions{}); !errors.Is(err, storeio.ErrNotEmpty) {
		t.Errorf("a second import into the partial store: %v, want ErrNotEmpty", err)
	}
}

// TestImportLeavesOtherSingletonsAlone: a singleton the stream does not
// carry (a record a backend writes when it opens) does not make the target
// "not empty", and stays as it was.
func TestImportLeavesOtherSingletonsAlone(t *testing.T) {
	_, lines := source(t)
	target := emptyBolt(t)
	ctx := context.Background()
	if _, err := target.CreateSingleton(ctx, "backend-record", []byte("v1")); err != nil {
		t.Fatal(err)
	}
	if _, err := storeio.Import(ctx, strings.NewReader(strings.Join(lines, "")), target, storeio.ImportOptions{}); err != nil {
		t.Fatal(err)
	}
	got, err := target.(store.Exporter).Singletons(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if string(got["backend-record"]) != "v1" || len(got["pepper"]) == 0 {
		t.Errorf("singletons after the import: %q", got)
	}
}

// TestMoveKeepsNextSigningKey: a next signing key (published, not signing
// yet) travels with its signs_from, so the target publishes the same JWKS
// and switches at the same moment.
func TestMoveKeepsNextSigningKey(t *testing.T) {
	ctx := context.Background()
	src := servertest.StartWith(t, servertest.Config{Options: server.Options{Issuer: issuer}})
	if r := src.API(t, src.AdminToken(t), "POST", "/v1/signing-keys/rotate", `{}`); r.Status != 200 {
		t.Fatalf("rotate: %s", r)
	}
	want, err := src.Store.SigningKeys(ctx)
	if err != nil || want.Next == nil {
		t.Fatalf("source keys: %+v, %v", want, err)
	}
	var b bytes.Buffer
	if _, err := storeio.Export(ctx, &b, src.Store, storeio.ExportOptions{Source: "bolt"}); err != nil {
		t.Fatal(err)
	}
	target := emptyBolt(t)
	if _, err := storeio.Import(ctx, &b, target, storeio.ImportOptions{}); err != nil {
		t.Fatal(err)
	}
	got, err := target.SigningKeys(ctx)
	if err != nil || got.Next == nil || got.Next.KID != want.Next.KID || !got.Next.SignsFrom.Equal(want.Next.SignsFrom) ||
		!bytes.Equal(got.Next.PrivateKeySealed, want.Next.PrivateKeySealed) || got.Active.KID != want.Active.KID {
		t.Fatalf("moved keys: %+v (%v), want %+v", got, err, want)
	}
}

// noRaise is a bulk-loading, exporting store that cannot record schema
// levels (no RaiseSchema, no Unwrap to find one).
type noRaise struct {
	store.Store
	store.BulkLoader
	store.Exporter
}

func hideRaise(st store.Store) noRaise {
	return noRaise{st, st.(store.BulkLoader), st.(store.Exporter)}
}

// TestReadOnlyAdminKeyTravels: a read-only admin key keeps its role
// through export and import, and lands only in a store that records
// schema levels (an older keygate reading it would take it for a full
// admin); a stream without one needs no such store.
func TestReadOnlyAdminKeyTravels(t *testing.T) {
	src, plain := source(t)
	if _, err := storeio.Import(context.Background(), strings.NewReader(strings.Join(plain, "")), hideRaise(emptyBolt(t)), storeio.ImportOptions{}); err != nil {
		t.Fatalf("a stream without read-only keys into a store without levels: %v", err)
	}
	admin := src.AdminToken(t)
	r := src.API(t, admin, "POST", "/v1/admin-keys", map[string]any{"name": "auditor", "role": "read"})
	if r.Status != 201 {
		t.Fatalf("create read-only admin key: %s", r)
	}
	stream := dump(t, src.Store)
	if !strings.Contains(stream, `"role":"read"`) {
		t.Fatal("the read-only key's role is not in the stream")
	}
	target := emptyBolt(t)
	_, err := storeio.Import(context.Background(), strings.NewReader(stream), hideRaise(target), storeio.ImportOptions{})
	if !errors.Is(err, storeio.ErrUnsupported) || !strings.Contains(err.Error(), "read-only admin key") {
		t.Fatalf("import into a store without levels: %v, want ErrUnsupported naming the read-only key", err)
	}
	target = emptyBolt(t)
	if _, err := storeio.Import(context.Background(), strings.NewReader(stream), target, storeio.ImportOptions{}); err != nil {
		t.Fatal(err)
	}
	if got := dump(t, target); got != stream {
		t.Errorf("the target exports otherwise than the source:\n got %s\nwant %s", got, stream)
	}
}
