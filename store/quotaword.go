package store

import "encoding/json"

// QuotaWord is a token quota's period or mode in a backend's key record
// (TokenQuota.Per, TokenQuota.Mode). The token path reads the key on every
// request, so the words keygate writes decode to constants instead of new
// strings: a key with a quota costs no more allocations to read than one
// without. Each backend's record type stays its own (store/bolt/records.go,
// store/redis/records.go); only this decoding is shared.
type QuotaWord string

// UnmarshalJSON decodes a JSON string, without allocating for the words
// keygate writes.
func (w *QuotaWord) UnmarshalJSON(b []byte) error {
	switch string(b) { // no allocation: compared, not converted
	case `"hour"`:
		*w = "hour"
	case `"day"`:
		*w = "day"
	case `"enforce"`:
		*w = "enforce"
	case `"log"`:
		*w = "log"
	default:
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		*w = QuotaWord(s)
	}
	return nil
}
