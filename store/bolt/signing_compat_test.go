package bolt

import (
	"testing"
	"time"
)

// TestDecodeSigningBeforeKeyStates: a signing record written before key
// states ({"active", "retired"}, no next key, no transition times) still
// loads, with no next key and zero times (signing.Resolve reads a zero
// SignsFrom as "signs since created").
func TestDecodeSigningBeforeKeyStates(t *testing.T) {
	old := `{"active":{"kid":"a","alg":"ES256","private_key_sealed":"AQI=","created_at":"2025-01-02T03:04:05Z"},` +
		`"retired":[{"kid":"r","alg":"RS256","private_key_sealed":"AwQ=","created_at":"2024-01-02T03:04:05Z","publish_until":"2025-01-02T03:24:05Z"}]}`
	s, err := decodeSigning([]byte(old))
	if err != nil {
		t.Fatalf("decode a record written before key states: %v", err)
	}
	if s.Active == nil || s.Active.KID != "a" || !s.Active.CreatedAt.Equal(time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)) || !s.Active.SignsFrom.IsZero() {
		t.Fatalf("active key: got %+v", s.Active)
	}
	if s.Next != nil {
		t.Fatalf("next key: got %+v, want none", s.Next)
	}
	if len(s.Retired) != 1 || s.Retired[0].KID != "r" || string(s.Retired[0].PrivateKeySealed) != "\x03\x04" ||
		!s.Retired[0].PublishUntil.Equal(time.Date(2025, 1, 2, 3, 24, 5, 0, time.UTC)) || !s.Retired[0].RetiredAt.IsZero() {
		t.Fatalf("retired keys: got %+v", s.Retired)
	}
	// Written again, it keeps the old shape plus nothing for absent states.
	b, err := encodeSigning(s)
	if err != nil {
		t.Fatal(err)
	}
	back, err := decodeSigning(b)
	if err != nil || back.Active.KID != "a" || len(back.Retired) != 1 || back.Next != nil {
		t.Fatalf("re-encoded record: %s → %+v, %v", b, back, err)
	}
}
