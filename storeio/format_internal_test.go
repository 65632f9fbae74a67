package storeio

import (
	"encoding/json"
	"net/netip"
	"reflect"
	"testing"
	"time"

	"github.com/keygate/keygate/store"
)

// fill sets every field of v (a pointer to a struct) to a non-zero value
// that differs per field.
func fill(t *testing.T, v reflect.Value, seed int) {
	for i := 0; i < v.NumField(); i++ {
		f, n := v.Field(i), seed+i+1
		switch f.Kind() {
		case reflect.String:
			f.SetString("v" + string(rune('a'+n%26)))
		case reflect.Int, reflect.Int64:
			f.SetInt(int64(n))
		case reflect.Slice:
			if f.Type() == reflect.TypeOf([]netip.Prefix{}) {
				f.Set(reflect.ValueOf([]netip.Prefix{netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(n), 0, 0}), 16)}))
				continue
			}
			switch f.Type().Elem().Kind() {
			case reflect.Uint8:
				f.SetBytes([]byte{byte(n), 1, 2, 3})
			case reflect.String:
				f.Set(reflect.ValueOf([]string{"p", string(rune('a' + n%26))}))
			default:
				t.Fatalf("field %s: unhandled slice type %s", v.Type().Field(i).Name, f.Type())
			}
		case reflect.Struct:
			if f.Type() == reflect.TypeOf(time.Time{}) {
				f.Set(reflect.ValueOf(time.Date(2026, 1, n, n, n, n, n*1_000_000, time.UTC)))
				continue
			}
			fill(t, f, n*10)
		default:
			t.Fatalf("field %s: unhandled kind %s", v.Type().Field(i).Name, f.Kind())
		}
	}
}

// TestKeyLineHasEveryField fails when store.Key gains a field the stream
// does not carry: every field set, through a key line and back.
func TestKeyLineHasEveryField(t *testing.T) {
	var k store.Key
	fill(t, reflect.ValueOf(&k).Elem(), 0)
	k.TeamID = ""                      // the tag rule is not this test's business
	k.Metadata = []byte(`{"n":[1,2]}`) // a JSON object, as apikey stores it
	raw, err := json.Marshal(toKeyLine(k))
	if err != nil {
		t.Fatal(err)
	}
	var l keyLine
	if err := decodeStrict(raw, &l); err != nil {
		t.Fatal(err)
	}
	if got := l.key(); !reflect.DeepEqual(got, k) {
		t.Errorf("round trip lost a field:\n got %+v\nwant %+v", got, k)
	}
	if n, m := reflect.TypeOf(store.Key{}).NumField(), reflect.TypeOf(keyLine{}).NumField()-1; n != m {
		t.Errorf("store.Key has %d fields, a key line %d", n, m)
	}
}
