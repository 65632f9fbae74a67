package config

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// Day is the "d" unit of ParseDuration: 24 hours (keygate's durations are
// lifetimes and grace periods, not calendar arithmetic).
const Day = 24 * time.Hour

// errDurationSyntax is what every malformed duration is refused with; the
// caller adds which setting or flag it was and the text as written.
var errDurationSyntax = errors.New("want a Go duration such as 15m or 24h, or days such as 7d or 1d12h")

// ParseDuration is keygate's one duration syntax, for settings and CLI
// flags alike: a Go duration (time.ParseDuration: 90s, 15m, 1h30m), which
// may start with a whole number of days ("7d", "1d12h", "-1d"). The text as
// written is the caller's to keep for echoing (see DurationValue).
func ParseDuration(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	rest, sign := s, time.Duration(1)
	switch {
	case strings.HasPrefix(rest, "-"):
		rest, sign = rest[1:], -1
	case strings.HasPrefix(rest, "+"):
		rest = rest[1:]
	}
	var days time.Duration
	if i := strings.IndexByte(rest, 'd'); i > 0 {
		n, err := strconv.ParseUint(rest[:i], 10, 64)
		if err != nil || n > uint64(math.MaxInt64/int64(Day)) {
			return 0, errDurationSyntax
		}
		days, rest = time.Duration(n)*Day, rest[i+1:]
		if rest == "" {
			return sign * days, nil
		}
		if strings.HasPrefix(rest, "-") || strings.HasPrefix(rest, "+") {
			return 0, errDurationSyntax // "1d-2h" is not a duration
		}
	}
	d, err := time.ParseDuration(rest)
	if err != nil || d > time.Duration(math.MaxInt64)-days {
		return 0, errDurationSyntax
	}
	return sign * (days + d), nil
}

// DurationValue is a pflag.Value in ParseDuration's syntax that keeps the
// text as written, so that a command can echo "7d" rather than
// "168h0m0s". Its Type is pflag's "duration".
type DurationValue struct {
	d    *time.Duration
	text string
}

// NewDurationValue stores def in *p and returns the flag value that sets
// *p.
func NewDurationValue(def time.Duration, p *time.Duration) *DurationValue {
	*p = def
	return &DurationValue{d: p}
}

// Set parses s with ParseDuration.
func (v *DurationValue) Set(s string) error {
	d, err := ParseDuration(s)
	if err != nil {
		return err
	}
	*v.d, v.text = d, strings.TrimSpace(s)
	return nil
}

// String is the text as written once set, else the default's Go form.
func (v *DurationValue) String() string {
	if v.text != "" {
		return v.text
	}
	return v.d.String()
}

// Type is "duration", as pflag's own duration flags.
func (v *DurationValue) Type() string { return "duration" }

// Duration is the parsed value.
func (v *DurationValue) Duration() time.Duration { return *v.d }

// FormatDuration writes d in the syntax ParseDuration reads, in whole days
// when it is whole days ("90d"), else Go's form ("36h0m0s").
func FormatDuration(d time.Duration) string {
	if d > 0 && d%Day == 0 {
		return fmt.Sprintf("%dd", d/Day)
	}
	return d.String()
}
