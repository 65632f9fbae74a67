package main

import (
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"strings"
	"testing"
)

func TestRevisionFrom(t *testing.T) {
	info := func(settings ...debug.BuildSetting) func() (*debug.BuildInfo, bool) {
		return func() (*debug.BuildInfo, bool) { return &debug.BuildInfo{Settings: settings}, true }
	}
	noInfo := func() (*debug.BuildInfo, bool) { return nil, false }
	stamped := info(debug.BuildSetting{Key: "vcs", Value: "git"}, debug.BuildSetting{Key: "vcs.revision", Value: "f00d"}, debug.BuildSetting{Key: "vcs.modified", Value: "false"})
	dirty := info(debug.BuildSetting{Key: "vcs.revision", Value: "f00d"}, debug.BuildSetting{Key: "vcs.modified", Value: "true"})
	tests := []struct {
		name, ldflag string
		read         func() (*debug.BuildInfo, bool)
		want         string
	}{
		{"-X wins over the stamp", "abc123", stamped, "abc123"},
		{"-X without build info", "abc123", noInfo, "abc123"},
		{"the VCS stamp", "", stamped, "f00d"},
		{"a modified checkout", "", dirty, "f00d+dirty"},
		{"-buildvcs=false", "", info(debug.BuildSetting{Key: "-buildvcs", Value: "false"}), "unknown"},
		{"no build info", "", noInfo, "unknown"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := revisionFrom(tt.ldflag, tt.read); got != tt.want {
				t.Errorf("revisionFrom(%q) = %q, want %q", tt.ldflag, got, tt.want)
			}
		})
	}
}

func TestVersionCommandOutput(t *testing.T) {
	t.Parallel()
	out, _, err := run(t, "version")
	if err != nil {
		t.Fatal(err)
	}
	// A test binary has no -X values: the fallbacks show.
	want := "keygate " + versionString() + " (revision " + revisionString() + ")\n"
	if out != want {
		t.Fatalf("version printed %q, want %q", out, want)
	}
}

// TestVersionLdflags builds the real binary the way deploy/Dockerfile does
// (-buildvcs=false, -X main.version and main.revision) and runs
// `keygate version`: a renamed variable would make -X a silent no-op.
func TestVersionLdflags(t *testing.T) {
	if testing.Short() {
		t.Skip("builds keygate")
	}
	t.Parallel()
	bin := filepath.Join(t.TempDir(), "keygate")
	build := exec.Command("go", "build", "-buildvcs=false", "-o", bin,
		"-ldflags", "-X main.version=v9.8.7 -X main.revision=0123abcd", ".")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	out, err := exec.Command(bin, "version").Output()
	if err != nil {
		t.Fatal(err)
	}
	if got, want := string(out), "keygate v9.8.7 (revision 0123abcd)\n"; got != want {
		t.Fatalf("keygate version = %q, want %q", got, want)
	}
	// Without -X and without VCS stamping, the revision is unknown.
	build = exec.Command("go", "build", "-buildvcs=false", "-o", bin, ".")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	out, err = exec.Command(bin, "version").Output()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasSuffix(string(out), " (revision unknown)\n") {
		t.Fatalf("keygate version = %q, want the revision unknown", out)
	}
}
