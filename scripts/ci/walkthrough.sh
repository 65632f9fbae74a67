#!/usr/bin/env bash
# The README's walkthrough, run as a newcomer would run it: the steps between
# <!-- walkthrough:start --> and <!-- walkthrough:end --> in README.md (so the
# README cannot drift from what is tested), under `set -euo pipefail`, with a
# freshly built keygate, in a temporary directory, twice:
#   pty   — under script(1), so serve's stderr is a terminal and serve prints
#           the admin key block, as a person at a terminal sees it;
#   plain — stderr to a file, so serve only logs where the credentials are.
# Any failing step fails the check, as does a walkthrough that leaves files
# in its working directory, a mode whose serve did not behave as that mode
# should, or a run longer than $WALKTHROUGH_TIMEOUT seconds (default 120).
# Loopback only. Every process it starts is stopped on exit.
#
# Idempotent; installs jq, curl and script (bsdutils) with apt-get when they
# are missing and it runs as root. Under CI=true a tool it cannot install
# fails the check instead of being skipped.
set -euo pipefail
cd "$(dirname "$0")/../.."
repo=$PWD
timeout_s=${WALKTHROUGH_TIMEOUT:-120}

# --- tools -------------------------------------------------------------------
declare -A pkg_for=([jq]=jq [curl]=curl [script]=bsdutils [setsid]=util-linux [timeout]=coreutils [python3]=python3-minimal)
missing=()
for tool in "${!pkg_for[@]}"; do
  command -v "$tool" >/dev/null || missing+=("${pkg_for[$tool]}")
done
if ((${#missing[@]})); then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    echo "walkthrough: missing packages ${missing[*]} (install them, or run as root to let this script do it)" >&2
    exit 1
  fi
fi
command -v go >/dev/null || { echo "walkthrough: go is not on PATH" >&2; exit 1; }

# --- the walkthrough, from the README ---------------------------------------
start='<!-- walkthrough:start -->'
end='<!-- walkthrough:end -->'
if [ "$(grep -cxF "$start" README.md)" != 1 ] || [ "$(grep -cxF "$end" README.md)" != 1 ]; then
  echo "walkthrough: README.md must hold exactly one line '$start' and one '$end'" >&2
  exit 1
fi
# Only the sh code blocks between the markers: the prose around them is the
# reader's, the commands are what runs.
steps=$(awk -v s="$start" -v e="$end" '
  $0 == s { on = 1; next }
  $0 == e { on = 0; next }
  on && /^```sh[[:space:]]*$/ { code = 1; next }
  on && code && /^```[[:space:]]*$/ { code = 0; next }
  on && code { print }
' README.md)
if [ -z "$steps" ]; then
  echo "walkthrough: no \`\`\`sh block between the markers in README.md" >&2
  exit 1
fi
# The README talks to keygate's default address; the check moves it to a free
# port so it never meets another keygate (or anything else) on 8080.
if ! grep -qF '127.0.0.1:8080' <<<"$steps"; then
  echo "walkthrough: the README's walkthrough no longer uses 127.0.0.1:8080; update this script's port substitution" >&2
  exit 1
fi
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')

tmp=$(mktemp -d "${TMPDIR:-/tmp}/keygate-walkthrough.XXXXXX")
bin=$tmp/bin/keygate

# Stop what the runs started: the walkthrough's own shell kills its
# background jobs when it exits (see the harness below); should it be killed
# first, any process still running the binary built here, found by its exact
# path, is stopped.
stop_leftovers() {
  local exe pid
  for exe in /proc/[0-9]*/exe; do
    pid=${exe#/proc/}; pid=${pid%/exe}
    case "$(readlink "$exe" 2>/dev/null)" in
      "$tmp"/*) kill "$pid" 2>/dev/null || true ;;
    esac
  done
}
cleanup() {
  stop_leftovers
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP

echo "walkthrough: building keygate"
go build -o "$bin" ./cmd/keygate

# run MODE: the walkthrough in $tmp/MODE/work (holding only ./keygate, as the
# repository root holds it after `go build -o keygate ./cmd/keygate`), in an
# environment of its own, its output in $tmp/MODE/out.
run() {
  local mode=$1 dir=$tmp/$1
  mkdir -p "$dir/work" "$dir/home" "$dir/tmp"
  cp "$bin" "$dir/work/keygate"
  {
    echo 'set -euo pipefail'
    # Harness, not README: end the walkthrough's background jobs (serve)
    # however it exits.
    echo 'trap '\''kill $(jobs -p) 2>/dev/null || true'\'' EXIT'
    echo 'trap '\''exit 143'\'' TERM INT HUP'
    sed "s/127\.0\.0\.1:8080/127.0.0.1:$port/g" <<<"$steps"
  } >"$dir/walkthrough.sh"
  local -a cmd=(env -i PATH="$PATH" HOME="$dir/home" TMPDIR="$dir/tmp" LANG=C.UTF-8
    KEYGATE_LISTEN="127.0.0.1:$port" bash "$dir/walkthrough.sh")
  echo "walkthrough: running ($mode, port $port)"
  local rc=0
  if [ "$mode" = pty ]; then
    # script(1) runs the walkthrough on a new pseudo-terminal: its stdout
    # and stderr, and so serve's, are a terminal. -e passes on the exit
    # status, -f writes the transcript as it comes.
    (cd "$dir/work" && timeout -k 5 "$timeout_s" \
      script -qefc "$(printf '%q ' "${cmd[@]}")" "$dir/out" </dev/null >/dev/null) || rc=$?
  else
    (cd "$dir/work" && timeout -k 5 "$timeout_s" "${cmd[@]}" </dev/null >"$dir/out" 2>&1) || rc=$?
  fi
  stop_leftovers
  if [ "$rc" != 0 ]; then
    echo "walkthrough ($mode) failed with status $rc$([ "$rc" = 124 ] && echo " (timed out after ${timeout_s}s)"); its output (secrets masked):" >&2
    sed -E 's/kgs_[A-Za-z0-9]+/kgs_<masked>/g; s/^/  | /' "$dir/out" >&2
    exit 1
  fi

  # The walkthrough wrote nothing where it ran: its data lives under TMPDIR.
  local left
  left=$(cd "$dir/work" && find . -mindepth 1 ! -path ./keygate | sort)
  if [ -n "$left" ]; then
    echo "walkthrough ($mode) left files in its working directory:" >&2
    echo "$left" >&2
    exit 1
  fi

  # serve behaved as it should in this mode, and the secret went only to a
  # terminal.
  local creds secret
  creds=$(find "$dir/tmp" -name admin-credentials.json | head -n 1)
  if [ -z "$creds" ]; then
    echo "walkthrough ($mode): serve wrote no admin-credentials.json under its data dir" >&2
    exit 1
  fi
  secret=$(jq -er .client_secret "$creds")
  if [ "$mode" = pty ]; then
    for want in 'The secret is shown only now' "KEYGATE_ADMIN_CLIENT_SECRET=$secret" "export KEYGATE_ADMIN_CREDENTIALS_FILE=$creds"; do
      grep -qF -- "$want" "$dir/out" || {
        echo "walkthrough (pty): serve's terminal output lacks '${want%%=*}…'; was stderr a terminal?" >&2
        exit 1
      }
    done
  else
    grep -qF 'created the first admin key' "$dir/out" || {
      echo "walkthrough (plain): serve did not log where the admin credentials are" >&2
      exit 1
    }
    grep -qF "export KEYGATE_ADMIN_CREDENTIALS_FILE=$creds" "$dir/out" || {
      echo "walkthrough (plain): serve's log lacks the export hint" >&2
      exit 1
    }
    if grep -qF -- "$secret" "$dir/out"; then
      echo "walkthrough (plain): the admin secret appears in the output, though stderr was no terminal" >&2
      exit 1
    fi
  fi
  echo "walkthrough: $mode ok"
}

run pty
run plain
echo "walkthrough: ok (both modes)"
