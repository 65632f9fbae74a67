//go:build !linux

package redis_test

import "os/exec"

// setParentDeathSignal: only Linux has PR_SET_PDEATHSIG; elsewhere
// t.Cleanup alone kills the child.
func setParentDeathSignal(*exec.Cmd) {}
