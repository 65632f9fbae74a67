#!/usr/bin/env bash
# Checks of the deployment artefacts that are not Go tests (those live in
# deploy/check, a module of the workspace, and run with `go test work`):
#
#   1. deploy/systemd/keygate.service passes `systemd-analyze verify` with
#      no complaint at all: verify exits 0 on an unknown directive or a
#      value it cannot parse (it only warns, and systemd would then ignore
#      the line: a hardening setting silently lost), so any output fails.
#      ExecStart is pointed at a keygate built from this checkout, because
#      verify also checks that the binary exists. A misspelt copy of the
#      unit must fail the same check, or the check proves nothing.
#   2. The main module's graph has none of the deployment check libraries
#      (k8s.io, kustomize, go-control-plane, compose-go, go-systemd).
#
# Idempotent. Installs Debian's systemd package (for systemd-analyze) when
# it is missing (as root). Nothing is ever skipped, with or without CI=true:
# a tool that cannot be installed fails the run.
set -euo pipefail
cd "$(dirname "$0")/../.."

say() { echo "deploy: $*"; }
die() { echo "deploy: $*" >&2; exit 1; }

if ! command -v systemd-analyze >/dev/null; then
  [ "$(id -u)" = 0 ] || die "systemd-analyze is missing (Debian package systemd) and this is not root"
  say "installing systemd (for systemd-analyze)"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq systemd >/dev/null
fi
command -v systemd-analyze >/dev/null || die "systemd-analyze is still missing"
systemd-analyze --version | head -1

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
say "building keygate"
go build -o "$tmp/bin/keygate" ./cmd/keygate

# verify_unit FILE: systemd-analyze verify on a copy of FILE whose ExecStart
# runs the keygate just built; prints what verify said, fails if anything.
verify_unit() {
  local dir out rc=0
  dir=$(mktemp -d "$tmp/unit.XXXX")
  sed "s|^ExecStart=/usr/local/bin/keygate |ExecStart=$tmp/bin/keygate |" "$1" >"$dir/keygate.service"
  grep -q "^ExecStart=$tmp/bin/keygate serve" "$dir/keygate.service" || { echo "ExecStart is not /usr/local/bin/keygate serve"; return 1; }
  out=$(cd "$dir" && systemd-analyze verify ./keygate.service 2>&1) || rc=$?
  [ -z "$out" ] || echo "$out"
  [ "$rc" = 0 ] && [ -z "$out" ]
}

say "systemd-analyze verify deploy/systemd/keygate.service"
verify_unit deploy/systemd/keygate.service || die "deploy/systemd/keygate.service does not verify cleanly (above)"

# The same check on deliberate mistakes: each must be caught.
for mistake in 's/^NoNewPrivileges=yes/NoNewPrivilege=yes/' 's/^ProtectSystem=strict/ProtectSystem=strickt/' 's/^SystemCallFilter=@system-service/SystemCallFilter=@system-servce/'; do
  sed "$mistake" deploy/systemd/keygate.service >"$tmp/mistake.service"
  ! cmp -s deploy/systemd/keygate.service "$tmp/mistake.service" || die "mistake $mistake changed nothing in the unit"
  if verify_unit "$tmp/mistake.service" >"$tmp/mistake.out"; then
    die "systemd-analyze verify accepted a unit with the mistake $mistake"
  fi
  say "caught $mistake: $(head -1 "$tmp/mistake.out")"
done

say "the main module's graph has none of deploy/check's libraries"
if GOWORK=off go list -m all | grep -E 'k8s\.io|kustomize|go-control-plane|compose-go|go-systemd'; then
  die "the main go.mod has a deployment check library (above): it belongs in deploy/check/go.mod"
fi
say "ok"
