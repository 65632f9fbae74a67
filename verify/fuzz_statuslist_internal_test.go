package verify

import (
	"bytes"
	"compress/zlib"
	"encoding/json"
	"io"
	"testing"
)

// FuzzStatusClaim: parseStatusClaim takes a token's status claim only with
// a non-empty uri and an idx inside the largest list keygate accepts, and
// what it takes re-encodes to a claim that parses the same.
func FuzzStatusClaim(f *testing.F) {
	f.Add([]byte(`{"status_list":{"idx":0,"uri":"https://auth.example.test/statuslists/1"}}`))
	f.Add([]byte(`{"status_list":{"idx":134217727,"uri":"u"}}`))
	f.Add([]byte(`{"status_list":{"idx":134217728,"uri":"u"}}`))
	f.Add([]byte(`{"status_list":{"idx":-1,"uri":"u"}}`))
	f.Add([]byte(`{"status_list":{"idx":1e3,"uri":"u"}}`))
	f.Add([]byte(`{"status_list":{"idx":"1","uri":""}}`))
	f.Add([]byte(`{"status_list":null}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, raw []byte) {
		uri, idx, err := parseStatusClaim(raw)
		if err != nil {
			if uri != "" || idx != 0 {
				t.Fatalf("refused %q but returned %q, %d", raw, uri, idx)
			}
			return
		}
		if uri == "" || idx >= maxStatusListBytes*8 {
			t.Fatalf("accepted %q: uri %q idx %d", raw, uri, idx)
		}
		again, err := json.Marshal(map[string]any{"status_list": map[string]any{"idx": idx, "uri": uri}})
		if err != nil {
			t.Fatal(err)
		}
		u2, i2, err := parseStatusClaim(again)
		if err != nil || u2 != uri || i2 != idx {
			t.Fatalf("re-encoded %q parses to %q, %d, %v; want %q, %d", again, u2, i2, err, uri, idx)
		}
	})
}

// FuzzStatusListDecode: the list of a status list token (RFC draft
// oauth-status-list: zlib, then bits per entry, least significant first)
// inflates to what compress/zlib gives, never past the limit, and each
// entry read is the reference bit extraction.
func FuzzStatusListDecode(f *testing.F) {
	zl := func(b []byte) []byte {
		var buf bytes.Buffer
		w := zlib.NewWriter(&buf)
		w.Write(b)
		w.Close()
		return buf.Bytes()
	}
	f.Add(zl([]byte{0xb9, 0xa3}), uint8(1), uint64(0))
	f.Add(zl([]byte{0xc9, 0x44, 0xf9}), uint8(2), uint64(11))
	f.Add(zl(bytes.Repeat([]byte{0xff}, 300)), uint8(8), uint64(299))
	f.Add(zl(bytes.Repeat([]byte{0}, 5000)), uint8(4), uint64(10000))
	f.Add([]byte("not zlib"), uint8(3), uint64(1))
	f.Fuzz(func(t *testing.T, compressed []byte, bits uint8, idx uint64) {
		const limit = 1 << 16 // small, so the fuzzer can reach it
		data, err := inflate(compressed, limit)
		ref, refErr := func() ([]byte, error) {
			zr, err := zlib.NewReader(bytes.NewReader(compressed))
			if err != nil {
				return nil, err
			}
			return io.ReadAll(io.LimitReader(zr, limit+1))
		}()
		if err != nil {
			if refErr == nil && len(ref) <= limit {
				t.Fatalf("inflate refused a stream compress/zlib reads (%d bytes): %v", len(ref), err)
			}
			return
		}
		if refErr != nil || len(data) > limit || !bytes.Equal(data, ref) {
			t.Fatalf("inflate gave %d bytes; compress/zlib %d bytes, %v", len(data), len(ref), refErr)
		}
		if bits != 1 && bits != 2 && bits != 4 && bits != 8 {
			return // parse refuses other widths before decoding
		}
		l := &statusList{bits: int(bits), data: data}
		st, ok := l.status(idx)
		bitPos := idx * uint64(bits)
		if inside := idx < uint64(len(data))*8/uint64(bits); ok != inside {
			t.Fatalf("status(%d) ok=%v with %d bytes of %d-bit entries", idx, ok, len(data), bits)
		}
		if !ok {
			return
		}
		want := data[bitPos/8] >> (bitPos % 8) & (1<<bits - 1)
		if st != want {
			t.Fatalf("status(%d) = %d, want %d", idx, st, want)
		}
	})
}
