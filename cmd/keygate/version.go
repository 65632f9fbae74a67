package main

import (
	"fmt"
	"runtime/debug"

	"github.com/spf13/cobra"
)

// version and revision are set at build time:
//
//	go build -ldflags "-X main.version=v1.2.3 -X main.revision=$(git rev-parse HEAD)" ./cmd/keygate
//
// deploy/Dockerfile and scripts/bench.sh do. Without them, both fall back
// to what the Go toolchain stamped into the binary (debug.ReadBuildInfo):
// the module version when built with `go install …@version`, the VCS
// revision when built in a git checkout with VCS stamping on (it is off on
// machines that build with -buildvcs=false, as the Dockerfile must).
var (
	version  = ""
	revision = ""
)

// versionString is keygate's module version: main.version, else the
// module version the toolchain recorded, else "devel".
func versionString() string {
	if version != "" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return "devel"
}

// revisionString is the VCS revision keygate was built from.
func revisionString() string { return revisionFrom(revision, debug.ReadBuildInfo) }

// revisionFrom is the revision set with -ldflags -X (ldflag), else the
// toolchain's vcs.revision stamp, marked "+dirty" when the checkout had
// uncommitted changes, else "unknown". readBuildInfo is
// debug.ReadBuildInfo but in tests.
func revisionFrom(ldflag string, readBuildInfo func() (*debug.BuildInfo, bool)) string {
	if ldflag != "" {
		return ldflag
	}
	bi, ok := readBuildInfo()
	if !ok {
		return "unknown"
	}
	var rev string
	var modified bool
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			modified = s.Value == "true"
		}
	}
	switch {
	case rev == "":
		return "unknown"
	case modified:
		return rev + "+dirty"
	}
	return rev
}

func versionCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print keygate's version and the VCS revision it was built from",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, err := fmt.Fprintf(cmd.OutOrStdout(), "keygate %s (revision %s)\n", versionString(), revisionString())
			return err
		},
	}
}
