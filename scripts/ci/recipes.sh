#!/usr/bin/env bash
# Runs every integrator recipe of docs/recipes.md (recipes/curl, recipes/go,
# recipes/node, recipes/python) against a real keygate: built from this
# checkout, started on a free loopback port with its data in a temporary
# directory and a known admin key, stopped on exit. Each recipe gets a
# token, verifies it, and shows that a wrong audience and a tampered
# signature are refused; each is also run once expecting a different
# audience, and must then fail (a recipe that cannot fail proves nothing).
# Last, a key is deleted: keygate's verify (the Go API) refuses its token once
# the status list says so, while jose and PyJWT, which do not read the list,
# still accept it — what the recipes' docs say.
#
# Idempotent. Installs jq, curl and Debian's python3-authlib / python3-jwt
# with apt-get when they are missing and it runs as root, and runs `npm ci`
# in recipes/node when its node_modules is missing or stale (always under
# CI=true). Nothing is ever skipped: a missing tool fails the run. Every step
# has a time limit; the whole run takes well under a minute once built.
set -euo pipefail
cd "$(dirname "$0")/../.."
repo=$PWD
step_timeout=${RECIPES_STEP_TIMEOUT:-120}
python=/usr/bin/python3 # Debian's, which sees the apt packages (not pyenv's)

say() { echo "recipes: $*"; }
die() { echo "recipes: $*" >&2; exit 1; }
# run WHAT CMD…: one step, bounded in time.
run() {
  local what=$1 rc=0; shift
  say "— $what"
  timeout -k 5 "$step_timeout" "$@" || rc=$?
  [ "$rc" = 0 ] || die "$what failed (status $rc$([ "$rc" = 124 ] && echo ", timed out after ${step_timeout}s"))"
}

# --- tools -------------------------------------------------------------------
missing=()
for pair in jq:jq curl:curl timeout:coreutils; do
  command -v "${pair%%:*}" >/dev/null || missing+=("${pair#*:}")
done
[ -x "$python" ] || missing+=(python3)
# The modules the Python recipe imports, from Debian's packages.
for pair in authlib:python3-authlib jwt:python3-jwt requests:python3-requests cryptography:python3-cryptography; do
  [ -x "$python" ] && "$python" -c "import ${pair%%:*}" 2>/dev/null || missing+=("${pair#*:}")
done
if ((${#missing[@]})); then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    say "installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    die "missing packages ${missing[*]} (install them, or run as root to let this script do it)"
  fi
fi
for tool in go node npm; do
  command -v "$tool" >/dev/null || die "$tool is not on PATH"
done
node_major=$(node -p 'process.versions.node.split(".")[0]')
[ "$node_major" -ge 20 ] || die "the Node recipe needs Node 20 or later (openid-client 6), found $(node --version)"

# docs/recipes.md quotes the recipes: every block after an "excerpt" marker
# must still be in the file it names, word for word.
"$python" - docs/recipes.md <<'PY' || die "docs/recipes.md quotes code that is no longer in the recipes (see above)"
import re, sys
doc = open(sys.argv[1]).read()
blocks = re.findall(r"<!-- excerpt: (\S+) -->\n```\w*\n(.*?)```\n", doc, re.S)
if not blocks:
    sys.exit("no excerpt markers found")
stale = [path for path, code in blocks if code not in open(path).read()]
for path in stale:
    print(f"recipes: an excerpt of {path} in docs/recipes.md is not in {path}", file=sys.stderr)
if stale:
    sys.exit(1)
print(f"recipes: docs/recipes.md's {len(blocks)} excerpts match the recipes")
PY

# node_modules is current when npm's record of what it installed matches the
# lock file; under CI always install afresh.
if [ "${CI:-}" = true ] || ! cmp -s <(jq -S '.packages | del(.[""])' recipes/node/package-lock.json 2>/dev/null) \
  <(jq -S '.packages' recipes/node/node_modules/.package-lock.json 2>/dev/null); then
  run "npm ci (recipes/node)" npm ci --prefix recipes/node --no-audit --no-fund --loglevel=error
fi

# --- keygate -------------------------------------------------------------------
# Settings for serve come from flags below and nowhere else.
while read -r var; do unset "$var"; done < <(compgen -e | grep '^KEYGATE_' || true)

tmp=$(mktemp -d "${TMPDIR:-/tmp}/keygate-recipes.XXXXXX")
pids=()
cleanup() {
  local pid
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP

run "build keygate" go build -o "$tmp/bin/keygate" ./cmd/keygate
run "build the Go recipe" go build -o "$tmp/bin/recipe-go" ./recipes/go

free_port() { "$python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
# wait_http URL WANT_STATUS PID: until URL answers WANT_STATUS, at most 10 s,
# failing at once if PID died.
wait_http() {
  local i
  for i in $(seq 100); do
    [ "$(curl -s -o /dev/null --max-time 1 -w '%{http_code}' "$1" || true)" = "$2" ] && return 0
    kill -0 "$3" 2>/dev/null || return 1
    sleep 0.1
  done
  return 1
}
show_log() { sed -E 's/kgs_[A-Za-z0-9]+/kgs_<masked>/g; s/^/  | /' "$1" >&2; }

port=$(free_port)
issuer=http://127.0.0.1:$port
audience=https://api.example.test # not the issuer: recipes must pin the right one
admin_id=recipes-admin
admin_secret=$("$tmp/bin/keygate" secret generate)
say "starting keygate on $issuer"
# A 1 s status list ttl so the deletion check below is quick; production
# keeps the default (1m).
KEYGATE_ADMIN_CLIENT_ID=$admin_id KEYGATE_ADMIN_CLIENT_SECRET=$admin_secret \
  "$tmp/bin/keygate" serve --listen "127.0.0.1:$port" --data-dir "$tmp/data" \
  --audience "$audience" --token-ttl 5m --status-list-ttl 1s >"$tmp/serve.log" 2>&1 &
pids+=($!)
wait_http "$issuer/readyz" 200 "${pids[-1]}" || { show_log "$tmp/serve.log"; die "keygate did not become ready within 10 s"; }

# Credentials go to curl through a config on a pipe, never as arguments.
curl_as() { local id=$1 secret=$2; shift 2; curl --config <(printf 'user = "%s:%s"\n' "$id" "$secret") -fsS --max-time 10 "$@"; }
admin_token=$(curl_as "$admin_id" "$admin_secret" -d grant_type=client_credentials "$issuer/oauth/token" | jq -er .access_token)
key=$(curl -fsS --max-time 10 --config <(printf 'header = "Authorization: Bearer %s"\n' "$admin_token") \
  -H 'Content-Type: application/json' -d '{"name": "Recipes", "permissions": ["accounting_api"]}' \
  "$issuer/v1/teams/acme/keys")
client_id=$(jq -er .client_id <<<"$key")
client_secret=$(jq -er .client_secret <<<"$key")
unset key
say "created key $client_id for team acme"

export KEYGATE_ISSUER=$issuer KEYGATE_AUDIENCE=$audience
export KEYGATE_CLIENT_ID=$client_id KEYGATE_CLIENT_SECRET=$client_secret

# The Go recipe's resource server, which the curl recipe calls.
api_port=$(free_port)
export RECIPE_API_URL=http://127.0.0.1:$api_port
"$tmp/bin/recipe-go" api --listen "127.0.0.1:$api_port" >"$tmp/api.log" 2>&1 &
pids+=($!)
api_pid=${pids[-1]}
wait_http "$RECIPE_API_URL/invoices" 401 "$api_pid" || { show_log "$tmp/api.log"; die "the Go recipe's API did not start within 10 s"; }

# --- the recipes -----------------------------------------------------------------
run "curl" bash recipes/curl/recipe.sh
run "Go (clientcredentials + verify)" "$tmp/bin/recipe-go" client
run "Node (openid-client + jose)" node recipes/node/recipe.mjs client
run "Python (Authlib + PyJWT)" "$python" recipes/python/recipe.py client

# Each recipe fails when it expects another audience: their checks bite.
for recipe in curl go node python; do
  case $recipe in
    curl) cmd=(bash recipes/curl/recipe.sh) ;;
    go) cmd=("$tmp/bin/recipe-go" client) ;;
    node) cmd=(node recipes/node/recipe.mjs client) ;;
    python) cmd=("$python" recipes/python/recipe.py client) ;;
  esac
  rc=0
  KEYGATE_AUDIENCE=https://other-api.example.test timeout -k 5 "$step_timeout" "${cmd[@]}" >"$tmp/neg.log" 2>&1 || rc=$?
  # Each recipe's failure is one line "recipe (NAME): why".
  why=$(grep -i -m1 -E "^recipe \($recipe\): .*aud" "$tmp/neg.log" || true)
  if [ "$rc" = 0 ] || [ "$rc" = 124 ] || [ -z "$why" ]; then
    show_log "$tmp/neg.log"
    die "$recipe: expecting another audience, the recipe should have failed on the audience (status $rc)"
  fi
  say "— $recipe fails, as it should, when it expects another audience: ${why:0:160}"
done

# --- a deleted key: only verify reads the status list --------------------------------
say "— deleting the key: verify refuses its tokens, jose and PyJWT do not"
token=$(curl_as "$client_id" "$client_secret" -d grant_type=client_credentials "$issuer/oauth/token" | jq -er .access_token)
export KEYGATE_TOKEN=$token
[ "$(curl -s -o /dev/null --max-time 10 -w '%{http_code}' -H "Authorization: Bearer $token" "$RECIPE_API_URL/invoices")" = 200 ] ||
  die "the API refused a fresh token before the deletion"
curl -fsS --max-time 10 -X DELETE --config <(printf 'header = "Authorization: Bearer %s"\n' "$admin_token") \
  "$issuer/v1/teams/acme/keys/$client_id"
# The Go API caches the status list for its ttl (1 s here): poll, bounded.
revoked=
for i in $(seq 100); do
  www=$(curl -s -o /dev/null --max-time 5 -D - -H "Authorization: Bearer $token" "$RECIPE_API_URL/invoices" |
    tr -d '\r' | grep -i '^www-authenticate:' || true)
  if grep -qF 'token revoked (status list)' <<<"$www"; then revoked=1; break; fi
  sleep 0.1
done
[ -n "$revoked" ] || die "the Go API (verify) still accepts the deleted key's token after 10 s"
say "   verify (Go API): ${www#*: }"
for recipe in node python; do
  case $recipe in
    node) cmd=(node recipes/node/recipe.mjs verify) ;;
    python) cmd=("$python" recipes/python/recipe.py verify) ;;
  esac
  out=$(timeout -k 5 "$step_timeout" "${cmd[@]}") ||
    die "$recipe refused the deleted key's token ($out); the docs say it accepts it until it expires — update them"
  say "   $recipe: $out (until it expires: it does not read the status list)"
done
# Introspection is keygate's own answer.
answer=$(curl_as "$admin_id" "$admin_secret" --data-urlencode "token=$token" "$issuer/oauth/introspect")
[ "$answer" = '{"active":false}' ] || die "introspection of the deleted key's token: $answer"
say "   introspection: $answer"

say "ok"
