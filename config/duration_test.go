package config

import (
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"
)

func TestParseDuration(t *testing.T) {
	for in, want := range map[string]time.Duration{
		"15m": 15 * time.Minute, "1h30m": 90 * time.Minute, "0": 0, "0s": 0, "500ms": 500 * time.Millisecond,
		"7d": 7 * Day, "1d12h": 36 * time.Hour, "1d": Day, "0d": 0, "2d30m": 2*Day + 30*time.Minute,
		"-1d": -Day, "+1d": Day, " 7d ": 7 * Day, "-90s": -90 * time.Second,
	} {
		if got, err := ParseDuration(in); err != nil || got != want {
			t.Errorf("ParseDuration(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "d", "7", "1.5d", "1d-2h", "1d1d", "7 days", "d7", "1w", "99999999999d", "1dx", "abc"} {
		if d, err := ParseDuration(in); err == nil {
			t.Errorf("ParseDuration(%q) = %v, want an error", in, d)
		} else if !strings.Contains(err.Error(), "Go duration such as 15m") || !strings.Contains(err.Error(), "7d") {
			t.Errorf("ParseDuration(%q): error %q does not say what is wanted", in, err)
		}
	}
}

// Days work in every layer of the configuration.
func TestDurationSettingsTakeDays(t *testing.T) {
	if c := mustLoad(t, flags(t, "--token-ttl", "1d"), nil); c.TokenTTL != Day {
		t.Errorf("--token-ttl 1d: %v", c.TokenTTL)
	}
	if c := mustLoad(t, nil, map[string]string{"KEYGATE_TOKEN_TTL": "0d12h"}); c.TokenTTL != 12*time.Hour {
		t.Errorf("KEYGATE_TOKEN_TTL 0d12h: %v", c.TokenTTL)
	}
	path := writeFile(t, "token_ttl: 1d\n")
	if c := mustLoad(t, nil, map[string]string{"KEYGATE_CONFIG": path}); c.TokenTTL != Day {
		t.Errorf("token_ttl: 1d in the file: %v", c.TokenTTL)
	}
	// Out of range in days is refused like any other value.
	if _, err := Load(flags(t, "--token-ttl", "2d"), nil); err == nil || !strings.Contains(err.Error(), "invalid token_ttl") {
		t.Errorf("--token-ttl 2d: %v", err)
	}
	// The flag refuses text that is no duration, naming the flag.
	fs := pflag.NewFlagSet("keygate", pflag.ContinueOnError)
	BindFlags(fs)
	if err := fs.Parse([]string{"--token-ttl", "1.5d"}); err == nil || !strings.Contains(err.Error(), "--token-ttl") || !strings.Contains(err.Error(), "7d") {
		t.Errorf("--token-ttl 1.5d: %v", err)
	}
}

func TestDurationValueKeepsText(t *testing.T) {
	var d time.Duration
	v := NewDurationValue(24*time.Hour, &d)
	if v.String() != "24h0m0s" || d != 24*time.Hour || v.Type() != "duration" {
		t.Fatalf("default: %q %v %q", v.String(), d, v.Type())
	}
	if err := v.Set("7d"); err != nil || v.String() != "7d" || d != 7*Day || v.Duration() != 7*Day {
		t.Fatalf("Set(7d): %v %q %v", err, v.String(), d)
	}
	if err := v.Set("soon"); err == nil || v.String() != "7d" || d != 7*Day {
		t.Fatalf("a refused Set changed the value: %v %q %v", err, v.String(), d)
	}
}
