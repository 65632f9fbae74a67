package apikey

import (
	"context"
	"errors"
	"reflect"
	"testing"

	"github.com/keygate/keygate/store"
)

func TestGetByID(t *testing.T) {
	ctx := context.Background()
	svc, st, _ := openTestService(t)
	acme, _, err := svc.Create(ctx, testReq, NewKey{Team: "acme", Name: "a", Permissions: []string{"accounting_api"}})
	if err != nil {
		t.Fatal(err)
	}
	globex, _, err := svc.Create(ctx, testReq, NewKey{Team: "globex", Name: "g", Permissions: []string{"accounting_api"}})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []store.Key{acme, globex} {
		got, err := svc.GetByID(ctx, want.ClientID)
		if err != nil || !reflect.DeepEqual(got, want) {
			t.Fatalf("GetByID(%s) = %+v, %v; want %+v", want.ClientID, got, err, want)
		}
	}

	admin, ok := svc.GeneratedAdmin()
	if !ok {
		t.Fatal("the test store has no generated admin key")
	}
	before := keysOf(t, st)
	for _, id := range []string{admin.ClientID, "kgc_unknown", "", acme.ClientID + "x"} {
		if k, err := svc.GetByID(ctx, id); !errors.Is(err, ErrNotFound) || k.ClientID != "" {
			t.Errorf("GetByID(%q) = %+v, %v; want ErrNotFound", id, k, err)
		}
	}
	if after := keysOf(t, st); !reflect.DeepEqual(before, after) {
		t.Fatal("GetByID changed the store")
	}

	// A store failure is not "not found".
	boom := errors.New("boom")
	st.err.Store(&boom)
	if _, err := svc.GetByID(ctx, acme.ClientID); !errors.Is(err, boom) || errors.Is(err, ErrNotFound) {
		t.Fatalf("store failure: %v", err)
	}
}
