#!/usr/bin/env bash
# Measures keygate's token endpoint against the floor (a server that only
# parses the form and signs the same claims), on loopback, in one run:
#
#   floor, keygate on bbolt, keygate on Redis — ES256 and EdDSA — at 16 and
#   64 connections, each configuration RUNS times (median reported), floor
#   and keygate alternating; then an open-loop run at half the floor's
#   maximum, 1 000 000 keys vs 10 keys, JWKS against a minimal handler, and
#   RSS over a long run.
#
# Writes a markdown report to docs/bench.md (and prints it). Everything runs
# on this machine, load generator included (it shares the cores; only the
# ratios between configurations measured in the same run mean much).
#
#   scripts/bench.sh                 # full run (~20 min)
#   DUR=5s RUNS=1 RSS_DUR=30s SEED_KEYS=100000 scripts/bench.sh   # quick look
#   PARTS=policy scripts/bench.sh    # ES256 floor vs bbolt vs a key with every
#                                    # policy set (issue 17) only (~3 min)
#   PARTS=floor scripts/bench.sh     # the floor comparisons of the full run
#                                    # only (ES256 and EdDSA, 16 and 64
#                                    # connections, wrk, open loop, JWKS; ~14 min)
#   PARTS=scale SEED_KEYS=10000000 SEED_USED=1000000 SCALE_WARM=150s scripts/bench.sh
#                                    # (SCALE_STORES=redis: that store only;
#                                    # SCALE_RUNS=5: alternating pairs of runs)
#                                    # issue 18 on this machine: N keys vs 10 keys
#                                    # on bbolt and Redis, load over SEED_USED
#                                    # distinct keys; seed time, store bytes per
#                                    # key, time to /readyz, RSS, GET /v1/teams;
#                                    # a first run of first uses, then (after a
#                                    # SCALE_WARM pass, when set) the steady load
#   PARTS=cluster scripts/bench.sh   # three instances vs one on a 3-master
#                                    # Redis Cluster on loopback, and how long a
#                                    # deletion takes to reach the other two
#   PARTS=verify scripts/bench.sh    # package verify, cached vs uncached
#
# The full run includes scale (at SEED_KEYS, default 1 000 000), cluster
# and verify.
#
# "policy" is keygate on bbolt serving a key with every policy field set
# (expires_at, token_ttl, audiences with a resource parameter, allowed_cidrs,
# metadata copied into tokens by metadata_claims).
set -euo pipefail
[[ -n ${BENCH_TRACE:-} ]] && set -x
cd "$(dirname "$0")/.."

DUR=${DUR:-10s}
RUNS=${RUNS:-3}
RSS_DUR=${RSS_DUR:-5m}
SEED_KEYS=${SEED_KEYS:-1000000}
SEED_USED=${SEED_USED:-10000}
PARTS=${PARTS:-all}
OUT=${OUT:-docs/bench.md}
WORK=$(mktemp -d /tmp/keygate-bench.XXXXXX)
KG=$WORK/keygate
PIDS=()

cleanup() {
  # -CONT first: a serve the scale part stopped would not see the TERM.
  for p in "${PIDS[@]}"; do kill -CONT "$p" 2>/dev/null || true; kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  [[ -n ${BENCH_KEEP:-} ]] && echo "bench.sh: kept $WORK" >&2 || rm -rf "$WORK"
}
trap cleanup EXIT

need() { command -v "$1" >/dev/null || { echo "bench.sh: $1 is required" >&2; exit 1; }; }
need redis-server; need redis-cli; need python3; need curl

echo "building keygate into $WORK" >&2
go build -ldflags "-X main.revision=$(git rev-parse HEAD 2>/dev/null || true)" -o "$KG" ./cmd/keygate

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }
# cluster_port — a free port whose cluster bus port (port + 10000) is free too
cluster_port() {
  python3 - <<'PY'
import random, socket
while True:
    p = random.randint(20000, 45000)
    try:
        socks = []
        for q in (p, p + 10000):
            s = socket.socket(); s.bind(("127.0.0.1", q)); socks.append(s)
        for s in socks: s.close()
        print(p); break
    except OSError:
        for s in socks: s.close()
PY
}

# settle — waits (up to 120 s) until the machine is quiet: no dirty or
# in-writeback pages left and the CPUs at least 90 % idle over two seconds
# in a row. A serve that held 10 GB and a 7.7 GB bbolt file just deleted
# leave the kernel writing and freeing for a while: runs started at once
# measured the 10-key bbolt store at half its rate (docs/scale.md).
settle() {
  local quiet=0 t a b
  for t in $(seq 1 120); do
    sync
    a=$(awk '/^cpu /{print $5+$6, $2+$3+$4+$5+$6+$7+$8+$9}' /proc/stat)
    sleep 1
    b=$(awk '/^cpu /{print $5+$6, $2+$3+$4+$5+$6+$7+$8+$9}' /proc/stat)
    if awk -v a="$a" -v b="$b" 'BEGIN { split(a, x); split(b, y); exit !(y[1] - x[1] >= 0.9 * (y[2] - x[2])) }' &&
       (( $(awk '/^nr_dirty |^nr_writeback /{n+=$2} END{print n+0}' /proc/vmstat) < 1024 )); then
      quiet=$((quiet + 1))
      (( quiet >= 2 )) && { echo "  settled after $t s" >&2; return; }
    else
      quiet=0
    fi
  done
  echo "  bench.sh: the machine did not settle within 120 s; measuring anyway" >&2
}

wait_http() { # url
  for _ in $(seq 1 1200); do curl -fsS -o /dev/null "$1" 2>/dev/null && return 0; sleep 0.1; done
  echo "bench.sh: $1 did not come up" >&2; exit 1
}

# A throwaway Redis, so the benchmark neither depends on nor disturbs the
# machine's own.
RPORT=$(free_port)
mkdir -p "$WORK/redis"
redis-server --port "$RPORT" --bind 127.0.0.1 --save "" --appendonly no --dir "$WORK/redis" \
  --logfile "$WORK/redis/redis.log" --daemonize no &
PIDS+=($!)
REDIS_PID=$!
for _ in $(seq 1 50); do redis-cli -p "$RPORT" ping >/dev/null 2>&1 && break; sleep 0.1; done

export KEYGATE_MASTER_KEY
KEYGATE_MASTER_KEY=$(openssl rand -base64 32 2>/dev/null || head -c 32 /dev/urandom | base64)
ADMIN_ID=bench-admin
ADMIN_SECRET=$("$KG" secret generate)

# start_keygate NAME STORE ALG [extra serve args…] — echoes "pid port"
start_keygate() {
  local name=$1 store=$2 alg=$3; shift 3
  local port; port=$(free_port)
  local dir=$WORK/$name
  mkdir -p "$dir"
  local -a env=(KEYGATE_ADMIN_CLIENT_ID=$ADMIN_ID KEYGATE_ADMIN_CLIENT_SECRET=$ADMIN_SECRET)
  if [[ $store == redis ]]; then
    env+=(KEYGATE_STORE=redis KEYGATE_REDIS_URL=redis://127.0.0.1:$RPORT/0 KEYGATE_REDIS_PREFIX=$name:
          KEYGATE_ISSUER=http://127.0.0.1:$port)
  fi
  env "${env[@]}" "$KG" serve --listen "127.0.0.1:$port" --data-dir "$dir" --signing-alg "$alg" \
    --log-level warn "$@" >"$dir/log" 2>&1 &
  echo "$! $port"
}

start_floor() { # ALG — echoes "pid port"
  local port; port=$(free_port)
  "$KG" bench --floor --listen "127.0.0.1:$port" --signing-alg "$1" >"$WORK/floor-$1.log" 2>&1 &
  echo "$! $port"
}

# make_key URL — writes a credentials file with one fresh key, echoes its path
make_key() {
  local url=$1 f; f=$(mktemp "$WORK/cred.XXXXXX")
  KEYGATE_URL=$url KEYGATE_ADMIN_CLIENT_ID=$ADMIN_ID KEYGATE_ADMIN_CLIENT_SECRET=$ADMIN_SECRET \
    "$KG" keys create --team "bench$RANDOM" --name bench --permission accounting_api --json |
    python3 -c 'import json,sys; k=json.load(sys.stdin); print(k["client_id"], k["client_secret"])' >"$f"
  echo "$f"
}

# make_policy_key URL — like make_key, for a key with every policy field set
# (the server runs with audiences_allowed and metadata_claims)
make_policy_key() {
  local url=$1 f tok; f=$(mktemp "$WORK/cred.XXXXXX")
  tok=$(curl -fsS -u "$ADMIN_ID:$ADMIN_SECRET" -d grant_type=client_credentials "$url/oauth/token" |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')
  curl -fsS -H "Authorization: Bearer $tok" -H 'Content-Type: application/json' \
    -d '{"name": "bench policy", "permissions": ["accounting_api"],
         "expires_at": "2099-01-01T00:00:00Z", "token_ttl": "10m",
         "audiences": ["https://api.example.com/accounting", "https://api.example.com/banking"],
         "allowed_cidrs": ["10.0.0.0/8", "192.168.0.0/16", "127.0.0.0/8", "::1/128"],
         "metadata": {"tenant": "acme", "plan": "pro", "region": "eu"}}' \
    "$url/v1/teams/bench$RANDOM/keys" |
    python3 -c 'import json,sys; k=json.load(sys.stdin); print(k["client_id"], k["client_secret"])' >"$f"
  echo "$f"
}

cpu_ticks() { awk '{print $14+$15}' "/proc/$1/stat"; }
rss_kb() { awk '/VmRSS/{print $2}' "/proc/$1/status"; }
# anon_kb PID — the resident memory that is not a mapped file (bbolt's file
# pages are resident too, and the kernel may drop them)
anon_kb() { awk '/RssAnon/{print $2}' "/proc/$1/status"; }
CLK=$(getconf CLK_TCK)

RESULTS=$WORK/results.jsonl
# run_bench LABEL PID URL CREDFILE CONNS [extra bench args…] — appends a JSON line
run_bench() {
  local label=$1 pid=$2 url=$3 cred=$4 conns=$5; shift 5
  local t0 t1 j
  t0=$(cpu_ticks "$pid")
  j=$("$KG" bench --url "$url" --credentials-file "$cred" --connections "$conns" --duration "$DUR" --json "$@")
  t1=$(cpu_ticks "$pid")
  python3 - "$label" "$conns" "$t0" "$t1" "$CLK" "$j" >>"$RESULTS" <<'PY'
import json, sys
label, conns, t0, t1, clk, j = sys.argv[1:]
r = json.loads(j)
secs = r.get("duration_s") or r.get("duration_ms", 0) / 1000
r["label"], r["conns"] = label, int(conns)
r["server_cpu_cores"] = (int(t1) - int(t0)) / int(clk) / secs if secs else None
print(json.dumps(r))
PY
  echo "  $label c=$conns: $(tail -1 "$RESULTS" | python3 -c 'import json,sys; r=json.load(sys.stdin); print(round(r["rps"]), "req/s, p99", r.get("p99_ms"), "ms, errors", r.get("errors"))')" >&2
}

: >"$RESULTS"
report() {
  mkdir -p "$(dirname "$OUT")"
  python3 scripts/bench_report.py "$RESULTS" "$DUR" "$RUNS" >"$OUT"
  cp "$RESULTS" "${OUT%.md}.jsonl"
  cat "$OUT"
}

ALGS=(ES256 EdDSA)
[[ $PARTS == policy ]] && ALGS=(ES256)
[[ $PARTS == scale || $PARTS == cluster || $PARTS == verify ]] && ALGS=()
for alg in "${ALGS[@]}"; do
  echo "== $alg: floor vs keygate/bbolt vs keygate/redis vs keygate/bbolt with every key policy set" >&2
  read -r FLOOR_PID FLOOR_PORT < <(start_floor "$alg"); PIDS+=("$FLOOR_PID")
  read -r BOLT_PID BOLT_PORT < <(start_keygate "bolt-$alg" bolt "$alg"); PIDS+=("$BOLT_PID")
  read -r REDIS_KG_PID REDIS_PORT < <(start_keygate "redis-$alg" redis "$alg"); PIDS+=("$REDIS_KG_PID")
  read -r POL_PID POL_PORT < <(start_keygate "policy-$alg" bolt "$alg" --audiences-allowed https://api.example.com/accounting \
    --audiences-allowed https://api.example.com/banking --metadata-claims tenant --metadata-claims plan --max-token-ttl 1h); PIDS+=("$POL_PID")
  wait_http "http://127.0.0.1:$BOLT_PORT/readyz"; wait_http "http://127.0.0.1:$REDIS_PORT/readyz"; wait_http "http://127.0.0.1:$POL_PORT/readyz"
  BOLT_CRED=$(make_key "http://127.0.0.1:$BOLT_PORT")
  REDIS_CRED=$(make_key "http://127.0.0.1:$REDIS_PORT")
  POL_CRED=$(make_policy_key "http://127.0.0.1:$POL_PORT")
  for conns in 16 64; do
    for run in $(seq 1 "$RUNS"); do
      run_bench "floor/$alg" "$FLOOR_PID" "http://127.0.0.1:$FLOOR_PORT" "$BOLT_CRED" "$conns"
      run_bench "bbolt/$alg" "$BOLT_PID" "http://127.0.0.1:$BOLT_PORT" "$BOLT_CRED" "$conns"
      run_bench "floor/$alg" "$FLOOR_PID" "http://127.0.0.1:$FLOOR_PORT" "$BOLT_CRED" "$conns"
      [[ $PARTS == policy ]] || run_bench "redis/$alg" "$REDIS_KG_PID" "http://127.0.0.1:$REDIS_PORT" "$REDIS_CRED" "$conns"
      run_bench "policy/$alg" "$POL_PID" "http://127.0.0.1:$POL_PORT" "$POL_CRED" "$conns" --resource https://api.example.com/banking
    done
  done
  if [[ $alg == ES256 ]] && command -v wrk >/dev/null; then
    # Cross-check with wrk, a load generator that costs the shared cores far
    # less per request than keygate bench's net/http client: keygate's
    # overhead over the floor shows more plainly.
    echo "== wrk cross-check (ES256, 64 connections)" >&2
    for run in $(seq 1 "$RUNS"); do
      targets=("floor $FLOOR_PORT $BOLT_CRED" "bbolt $BOLT_PORT $BOLT_CRED" "floor $FLOOR_PORT $BOLT_CRED" "policy $POL_PORT $POL_CRED")
      [[ $PARTS == policy ]] || targets+=("floor $FLOOR_PORT $BOLT_CRED" "redis $REDIS_PORT $REDIS_CRED")
      for t in "${targets[@]}"; do
        read -r name port cred <<<"$t"
        basic=$(awk 'NR==1{printf "%s:%s", $1, $2}' "$cred" | base64 -w0)
        resource=""
        [[ $name == policy ]] && resource=https://api.example.com/banking
        KEYGATE_BASIC=$basic KEYGATE_RESOURCE=$resource wrk -t2 -c64 -d"$DUR" --latency -s scripts/wrk-token.lua \
          "http://127.0.0.1:$port/oauth/token" >"$WORK/wrk.out"
        python3 - "wrk/$name" "$WORK/wrk.out" >>"$RESULTS" <<'PY'
import json, re, sys
label, path = sys.argv[1:]
out = open(path).read()
def ms(v):
    n, u = re.match(r"([\d.]+)(us|ms|s)", v).groups()
    return float(n) * {"us": 0.001, "ms": 1, "s": 1000}[u]
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
p99 = ms(re.search(r"\s99%\s+(\S+)", out).group(1))
p50 = ms(re.search(r"\s50%\s+(\S+)", out).group(1))
bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
print(json.dumps({"label": label, "conns": 64, "rps": rps, "p50_ms": p50, "p99_ms": p99,
                  "errors": {"non-2xx": int(bad.group(1))} if bad else {}}))
PY
        echo "  wrk $name: $(tail -1 "$RESULTS")" >&2
      done
    done
  fi
  if [[ $PARTS == policy ]]; then
    kill "$FLOOR_PID" "$BOLT_PID" "$REDIS_KG_PID" "$POL_PID"; wait "$FLOOR_PID" "$BOLT_PID" "$REDIS_KG_PID" "$POL_PID" 2>/dev/null || true
    continue
  fi
  if [[ $alg == ES256 ]]; then
    # Open loop at half the floor's maximum (ES256, 64 connections, median).
    HALF=$(python3 - "$RESULTS" <<'PY'
import json, statistics, sys
rs = [json.loads(l) for l in open(sys.argv[1])]
f = [r["rps"] for r in rs if r["label"] == "floor/ES256" and r["conns"] == 64]
print(int(statistics.median(f) / 2))
PY
)
    echo "== open loop at $HALF req/s" >&2
    run_bench "open/bbolt" "$BOLT_PID" "http://127.0.0.1:$BOLT_PORT" "$BOLT_CRED" 64 --rate "$HALF"
    run_bench "open/redis" "$REDIS_KG_PID" "http://127.0.0.1:$REDIS_PORT" "$REDIS_CRED" 64 --rate "$HALF"
    echo "== JWKS" >&2
    run_bench "jwks/keygate" "$BOLT_PID" "http://127.0.0.1:$BOLT_PORT" "$BOLT_CRED" 64 --endpoint jwks
    run_bench "jwks/minimal" "$FLOOR_PID" "http://127.0.0.1:$FLOOR_PORT" "$BOLT_CRED" 64 --endpoint jwks
    run_bench "jwks/keygate" "$BOLT_PID" "http://127.0.0.1:$BOLT_PORT" "$BOLT_CRED" 64 --endpoint jwks
    run_bench "jwks/minimal" "$FLOOR_PID" "http://127.0.0.1:$FLOOR_PORT" "$BOLT_CRED" 64 --endpoint jwks
  fi
  kill "$FLOOR_PID" "$BOLT_PID" "$REDIS_KG_PID" "$POL_PID"; wait "$FLOOR_PID" "$BOLT_PID" "$REDIS_KG_PID" "$POL_PID" 2>/dev/null || true
done

if [[ $PARTS == policy || $PARTS == floor ]]; then
  report
  exit 0
fi

# admin_token URL — an admin access token
admin_token() {
  curl -fsS -u "$ADMIN_ID:$ADMIN_SECRET" -d grant_type=client_credentials "$1/oauth/token" |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])'
}

# ready_after PID URL T0 — waits for URL to answer 200, echoes the seconds
# since T0 (date +%s.%N), polling every 10 ms
ready_after() {
  local t0=$3 t1
  for _ in $(seq 1 60000); do
    if curl -fsS -o /dev/null "$2" 2>/dev/null; then
      t1=$(date +%s.%N) # before python3 starts: its start-up is not keygate's
      python3 -c "print(round($t1 - $t0, 3))"
      return 0
    fi
    kill -0 "$1" 2>/dev/null || { echo "bench.sh: keygate exited before $2 answered" >&2; exit 1; }
    sleep 0.01
  done
  echo "bench.sh: $2 did not come up" >&2; exit 1
}

# teams_ms URL TOKEN QUERY — milliseconds of one GET /v1/teams?QUERY (median of 5)
teams_ms() {
  local i out=()
  local code t
  for i in 1 2 3 4 5; do
    read -r code t < <(curl -sS -o /dev/null -w '%{http_code} %{time_total}' -H "Authorization: Bearer $2" "$1/v1/teams?$3")
    [[ $code == 200 ]] || { echo "bench.sh: GET /v1/teams?$3 answered $code" >&2; exit 1; }
    out+=("$t")
  done
  python3 -c "import statistics,sys; print(round(statistics.median(map(float, sys.argv[1:])) * 1000, 1))" "${out[@]}"
}

redis_used() { redis-cli -p "$RPORT" info memory | awk -F: '/^used_memory:/{print $2+0}'; }

if [[ $PARTS == all || $PARTS == scale ]]; then
echo "== $SEED_KEYS keys vs 10 keys (ES256, 64 connections, load over up to $SEED_USED keys)" >&2
# seed_store STORE N — seeds a store of N keys for serve_store; echoes
# "seconds bytes" (bytes: the bbolt file, or Redis's used_memory after
# the seed minus before)
seed_store() {
  local store=$1 n=$2 name=seed-$1-$2 used m0 t0 t1 seedenv=()
  used=$(( n < SEED_USED ? n : SEED_USED ))
  mkdir -p "$WORK/$name"
  if [[ $store == redis ]]; then
    seedenv=(KEYGATE_STORE=redis KEYGATE_REDIS_URL=redis://127.0.0.1:$RPORT/0 KEYGATE_REDIS_PREFIX=$name:
             KEYGATE_ISSUER=http://127.0.0.1:1)
  fi
  m0=$(redis_used)
  t0=$(date +%s.%N)
  env "${seedenv[@]}" "$KG" seed --data-dir "$WORK/$name" --keys "$n" --record "$used" --out "$WORK/$name.cred" >&2
  t1=$(date +%s.%N)
  if [[ $store == redis ]]; then
    echo "$(python3 -c "print(round($t1-$t0,1))") $(( $(redis_used) - m0 ))"
  else
    echo "$(python3 -c "print(round($t1-$t0,1))") $(stat -c %s "$WORK/$name/keygate.db")"
  fi
}
# serve_store STORE N — starts serve on seed_store's store and waits until
# it answers and (Redis) its team registry and compact layout are in
# place; echoes "pid port ready_s rss_start_kb"
serve_store() {
  local store=$1 n=$2 name=seed-$1-$2 used csize P PORT t0 ready_s rss_start
  used=$(( n < SEED_USED ? n : SEED_USED ))
  # Key caches that hold every key the load touches (plus a tenth): the
  # RSS after the load shows what that costs. On Redis its records live
  # 10 min (a single node allows up to an hour: store/redis/cache.go),
  # longer than the ~100 s between two uses of a key under this load; at
  # the default 10 s nearly every request would read Redis.
  csize=$(( used * 11 / 10 < 100000 ? 100000 : used * 11 / 10 ))
  read -r P PORT < <(start_keygate "$name" "$( [[ $store == redis ]] && echo redis || echo bolt )" ES256 \
    --bolt-key-cache-size "$csize" --redis-key-cache-size "$(( csize < 200000 ? 200000 : csize ))" \
    --redis-key-cache 10m)
  # The clock starts once serve is launched: start_keygate's free_port
  # (a python3, 0.3 s through a pyenv shim) is not keygate's start.
  t0=$(date +%s.%N)
  ready_s=$(ready_after "$P" "http://127.0.0.1:$PORT/readyz" "$t0")
  rss_start=$(rss_kb "$P")
  if [[ $store == redis ]]; then
    # The team registry is complete once the first repair walk has run
    # (the audit worker's first round, store/redis/teamregistry.go);
    # until then GET /v1/teams walks the keyspace as it used to.
    for _ in $(seq 1 600); do
      [[ $(redis-cli -p "$RPORT" exists "$name:{kg}:teams:complete") == 1 ]] && break
      sleep 0.2
    done
    # The runs measure the compact layout's steady state: once its
    # migration is done (store/redis/compactmigrate.go: a walk one
    # heartbeat TTL after the seed's first check, which finds nothing
    # to move in a store seeded by this release), a token request reads
    # one layout. Until then it reads both, and the walk shares the cores.
    for _ in $(seq 1 900); do
      [[ $(redis-cli -p "$RPORT" get "$name:{kg}:keys:compact") == done ]] && break
      sleep 0.2
    done
    sleep 6 # every instance learns it at its next check (every 5 s)
  fi
  echo "$P $PORT $ready_s $rss_start"
}
for store in ${SCALE_STORES:-bbolt redis}; do
  # Both stores are served at once and measured in alternation, a run of
  # the 10-key store then one of the SEED_KEYS store, SCALE_RUNS times,
  # and the ratio is of the medians: this machine's speed moves by a
  # quarter within minutes (docs/scale.md), and a baseline measured
  # before or after the many-key runs fell in another spell than they did
  # more than once. The serve not being measured is stopped (SIGSTOP), so
  # that its background work — the many-key store's bounded last-use
  # writes go on for minutes after a load — weighs on no run but its own.
  settle
  read -r seed10_s bytes10 < <(seed_store "$store" 10)
  read -r P10 PORT10 ready10 rss10 < <(serve_store "$store" 10)
  [[ -n ${bytes10:-} && -n ${rss10:-} ]] || { echo "bench.sh: the 10-key $store store did not come up" >&2; exit 1; }
  PIDS+=("$P10")
  tok=$(admin_token "http://127.0.0.1:$PORT10")
  echo "{\"label\":\"seed/$store\",\"keys\":10,\"used\":10,\"seed_s\":$seed10_s,\"store_bytes\":$bytes10,\"ready_s\":$ready10,\"rss_start_kb\":$rss10,\"rss_load_kb\":0,\"anon_load_kb\":0,\"teams_ms\":$(teams_ms "http://127.0.0.1:$PORT10" "$tok" "limit=100"),\"teams_prefix_ms\":$(teams_ms "http://127.0.0.1:$PORT10" "$tok" "limit=100&prefix=bench-1234")}" >"$WORK/seed10.json"
  kill -STOP "$P10"

  settle
  n=$SEED_KEYS
  name=seed-$store-$n
  used=$(( n < SEED_USED ? n : SEED_USED ))
  read -r seed_s store_bytes < <(seed_store "$store" "$n")
  [[ -n ${store_bytes:-} ]] || { echo "bench.sh: seeding $n keys into $store failed" >&2; exit 1; }
  echo "  seeded $n keys into $store in $seed_s s, $store_bytes bytes" >&2
  read -r P PORT ready_s rss_start < <(serve_store "$store" "$n")
  [[ -n ${rss_start:-} ]] || { echo "bench.sh: serve on $n keys ($store) did not come up" >&2; exit 1; }
  PIDS+=("$P")
  echo "  /readyz after $ready_s s, RSS $rss_start kB" >&2
  tok=$(admin_token "http://127.0.0.1:$PORT")
  tall=$(teams_ms "http://127.0.0.1:$PORT" "$tok" "limit=100")
  tpre=$(teams_ms "http://127.0.0.1:$PORT" "$tok" "limit=100&prefix=bench-1234")
  # First uses: a fresh process, each request a key not used before (a
  # cache miss and a first last-use write).
  run_bench "cold$n/$store" "$P" "http://127.0.0.1:$PORT" "$WORK/$name.cred" 64
  if [[ ${SCALE_WARM:-0} != 0 ]]; then
    # Then one pass over the loaded keys, not recorded, so the runs below
    # measure a steady load over all of them.
    "$KG" bench --url "http://127.0.0.1:$PORT" --credentials-file "$WORK/$name.cred" --connections 64 \
      --duration "$SCALE_WARM" --json >/dev/null
  fi
  # The 10-key serve has been stopped since its start, through the seed
  # and the pass above: its first run after that was the slowest of its
  # runs more than once (docs/scale.md), a bias in the many-key store's
  # favour. One run of it, not recorded, comes first.
  kill -STOP "$P"; kill -CONT "$P10"; sleep 1
  "$KG" bench --url "http://127.0.0.1:$PORT10" --credentials-file "$WORK/seed-$store-10.cred" --connections 64 \
    --duration "$DUR" --json >/dev/null
  kill -STOP "$P10"; kill -CONT "$P"
  for _ in $(seq 1 "${SCALE_RUNS:-5}"); do
    kill -STOP "$P"; kill -CONT "$P10"; sleep 1
    run_bench "keys10/$store" "$P10" "http://127.0.0.1:$PORT10" "$WORK/seed-$store-10.cred" 64
    kill -STOP "$P10"; kill -CONT "$P"; sleep 1
    run_bench "keys$n/$store" "$P" "http://127.0.0.1:$PORT" "$WORK/$name.cred" 64
  done
  rss_load=$(rss_kb "$P")
  anon_load=$(anon_kb "$P")
  cat "$WORK/seed10.json" >>"$RESULTS"
  echo "{\"label\":\"seed/$store\",\"keys\":$n,\"used\":$used,\"seed_s\":$seed_s,\"store_bytes\":$store_bytes,\"ready_s\":$ready_s,\"rss_start_kb\":$rss_start,\"rss_load_kb\":$rss_load,\"anon_load_kb\":$anon_load,\"teams_ms\":$tall,\"teams_prefix_ms\":$tpre}" >>"$RESULTS"
  kill -CONT "$P10"
  kill "$P" "$P10"; wait "$P" "$P10" 2>/dev/null || true
  [[ $store == redis ]] && redis-cli -p "$RPORT" flushall >/dev/null
  rm -rf "${WORK:?}/seed-$store-"*
done
fi

if [[ $PARTS == all || $PARTS == cluster ]]; then
echo "== three instances vs one on a 3-master Redis Cluster (ES256, 64 connections)" >&2
CPORTS=()
for i in 1 2 3; do
  cp_=$(cluster_port); CPORTS+=("$cp_")
  mkdir -p "$WORK/cluster-$i"
  redis-server --port "$cp_" --bind 127.0.0.1 --save "" --appendonly no --cluster-enabled yes \
    --cluster-config-file "$WORK/cluster-$i/nodes.conf" --dir "$WORK/cluster-$i" --logfile "$WORK/cluster-$i/log" &
  PIDS+=($!)
done
for cp_ in "${CPORTS[@]}"; do
  for _ in $(seq 1 50); do redis-cli -p "$cp_" ping >/dev/null 2>&1 && break; sleep 0.1; done
done
redis-cli --cluster create "127.0.0.1:${CPORTS[0]}" "127.0.0.1:${CPORTS[1]}" "127.0.0.1:${CPORTS[2]}" \
  --cluster-replicas 0 --cluster-yes >"$WORK/cluster-create.log" 2>&1 || { cat "$WORK/cluster-create.log" >&2; exit 1; }
for _ in $(seq 1 100); do
  redis-cli -p "${CPORTS[0]}" cluster info | grep -q 'cluster_state:ok' && break; sleep 0.1
done
CURL="redis://127.0.0.1:${CPORTS[0]}/0?addr=127.0.0.1:${CPORTS[1]}&addr=127.0.0.1:${CPORTS[2]}"
# start_cluster_keygate NAME — echoes "pid port"
start_cluster_keygate() {
  local port; port=$(free_port)
  mkdir -p "$WORK/$1"
  env KEYGATE_ADMIN_CLIENT_ID=$ADMIN_ID KEYGATE_ADMIN_CLIENT_SECRET=$ADMIN_SECRET KEYGATE_STORE=redis \
    KEYGATE_REDIS_URL="$CURL" KEYGATE_REDIS_PREFIX=cl: KEYGATE_ISSUER=http://keygate.example \
    "$KG" serve --listen "127.0.0.1:$port" --data-dir "$WORK/$1" --signing-alg ES256 --log-level warn >"$WORK/$1/log" 2>&1 &
  echo "$! $port"
}
CL_PIDS=(); CL_PORTS=()
for i in a b c; do
  read -r P PORT < <(start_cluster_keygate "cl-$i"); PIDS+=("$P"); CL_PIDS+=("$P"); CL_PORTS+=("$PORT")
  wait_http "http://127.0.0.1:$PORT/readyz"
done
# The compact layout's migration (nothing to move on a fresh prefix) ends
# one heartbeat TTL after the first check; measure after it, as above.
for _ in $(seq 1 900); do
  [[ $(redis-cli -c -p "${CPORTS[0]}" get "cl:{kg}:keys:compact") == done ]] && break
  sleep 0.2
done
sleep 6
CL_CRED=$(make_key "http://127.0.0.1:${CL_PORTS[0]}")
for run in $(seq 1 "$RUNS"); do
  run_bench "cluster1" "${CL_PIDS[0]}" "http://127.0.0.1:${CL_PORTS[0]}" "$CL_CRED" 64
  # All three from one load generator (--also-url: requests go to each in
  # turn), so the load generator costs the shared cores what it costs
  # against one instance.
  run_bench "cluster3" "${CL_PIDS[0]}" "http://127.0.0.1:${CL_PORTS[0]}" "$CL_CRED" 64 \
    --also-url "http://127.0.0.1:${CL_PORTS[1]}" --also-url "http://127.0.0.1:${CL_PORTS[2]}"
done
# Deletion under load: a victim key is deleted through instance a while all
# three are loaded; how long until b and c refuse it.
VICTIM_TEAM=victim$RANDOM
VTOK=$(admin_token "http://127.0.0.1:${CL_PORTS[0]}")
read -r VID VSECRET < <(curl -fsS -H "Authorization: Bearer $VTOK" -H 'Content-Type: application/json' \
  -d '{"name": "victim", "permissions": ["accounting_api"]}' "http://127.0.0.1:${CL_PORTS[0]}/v1/teams/$VICTIM_TEAM/keys" |
  python3 -c 'import json,sys; k=json.load(sys.stdin); print(k["client_id"], k["client_secret"])')
for i in 1 2; do # both other instances have it cached
  curl -fsS -o /dev/null -u "$VID:$VSECRET" -d grant_type=client_credentials "http://127.0.0.1:${CL_PORTS[$i]}/oauth/token"
done
"$KG" bench --url "http://127.0.0.1:${CL_PORTS[0]}" --also-url "http://127.0.0.1:${CL_PORTS[1]}" \
  --also-url "http://127.0.0.1:${CL_PORTS[2]}" --credentials-file "$CL_CRED" --connections 64 --duration 10s --json >/dev/null &
LOAD_PID=$!
sleep 3
python3 - "$VID" "$VSECRET" "$VTOK" "$VICTIM_TEAM" "${CL_PORTS[@]}" >>"$RESULTS" <<'PY'
import base64, json, sys, time, urllib.request, urllib.error
vid, vsecret, tok, team, pa, pb, pc = sys.argv[1:]
basic = base64.b64encode(f"{vid}:{vsecret}".encode()).decode()
def token_status(port):
    req = urllib.request.Request(f"http://127.0.0.1:{port}/oauth/token", data=b"grant_type=client_credentials",
                                 headers={"Authorization": "Basic " + basic, "Content-Type": "application/x-www-form-urlencoded"})
    try:
        return urllib.request.urlopen(req, timeout=5).status
    except urllib.error.HTTPError as e:
        return e.code
req = urllib.request.Request(f"http://127.0.0.1:{pa}/v1/teams/{team}/keys/{vid}", method="DELETE",
                             headers={"Authorization": "Bearer " + tok})
urllib.request.urlopen(req, timeout=5)
t0 = time.monotonic()
felt = {}
while len(felt) < 2 and time.monotonic() - t0 < 10:
    for port in (pb, pc):
        if port not in felt and token_status(port) == 401:
            felt[port] = round((time.monotonic() - t0) * 1000, 1)
print(json.dumps({"label": "cluster-delete", "felt_ms": max(felt.values()) if len(felt) == 2 else None,
                  "per_instance_ms": list(felt.values())}))
PY
echo "  deletion: $(tail -1 "$RESULTS")" >&2
wait "$LOAD_PID"
for P in "${CL_PIDS[@]}"; do kill "$P"; done
# GET /v1/teams on the cluster at CLUSTER_TEAMS_KEYS keys, five per team:
# the team registry's pages come from one slot, the ZCARDs from many.
CLUSTER_TEAMS_KEYS=${CLUSTER_TEAMS_KEYS:-$SEED_KEYS}
echo "== GET /v1/teams on the cluster at $CLUSTER_TEAMS_KEYS keys" >&2
mkdir -p "$WORK/clteams-seed"
env KEYGATE_STORE=redis KEYGATE_REDIS_URL="$CURL" KEYGATE_REDIS_PREFIX=clteams: KEYGATE_ISSUER=http://keygate.example \
  "$KG" seed --data-dir "$WORK/clteams-seed" --keys "$CLUSTER_TEAMS_KEYS" --record 1 --out "$WORK/clteams.cred" >&2
port=$(free_port)
mkdir -p "$WORK/clteams"
env KEYGATE_ADMIN_CLIENT_ID=$ADMIN_ID KEYGATE_ADMIN_CLIENT_SECRET=$ADMIN_SECRET KEYGATE_STORE=redis \
  KEYGATE_REDIS_URL="$CURL" KEYGATE_REDIS_PREFIX=clteams: KEYGATE_ISSUER=http://keygate.example \
  "$KG" serve --listen "127.0.0.1:$port" --data-dir "$WORK/clteams" --signing-alg ES256 --log-level warn >"$WORK/clteams/log" 2>&1 &
P=$!; PIDS+=("$P")
wait_http "http://127.0.0.1:$port/readyz"
for _ in $(seq 1 600); do # the registry is complete after the first repair walk
  [[ $(redis-cli -c -p "${CPORTS[0]}" exists "clteams:{kg}:teams:complete") == 1 ]] && break
  sleep 0.2
done
tok=$(admin_token "http://127.0.0.1:$port")
tall=$(teams_ms "http://127.0.0.1:$port" "$tok" "limit=100")
tpre=$(teams_ms "http://127.0.0.1:$port" "$tok" "limit=100&prefix=bench-1234")
echo "{\"label\":\"cluster-teams\",\"keys\":$CLUSTER_TEAMS_KEYS,\"teams_ms\":$tall,\"teams_prefix_ms\":$tpre}" >>"$RESULTS"
echo "  teams: $tall ms, with a prefix $tpre ms" >&2
kill "$P"
fi

if [[ $PARTS == all || $PARTS == verify ]]; then
echo "== package verify: a repeated token, cached vs verified anew" >&2
(cd verify && go test -run '^$' -bench 'BenchmarkVerify(Cached)?$' -benchmem -benchtime 2s -count 3 .) >"$WORK/verify.txt" 2>&1 || true
python3 - "$WORK/verify.txt" >>"$RESULTS" <<'PY'
import json, re, statistics, sys
got = {}
for line in open(sys.argv[1]):
    m = re.match(r"(BenchmarkVerify\w*?)(?:-\d+)?\s+\d+\s+([\d.]+) ns/op(?:\s+[\d.]+ MB/s)?\s+(\d+) B/op\s+(\d+) allocs/op", line)
    if m:
        got.setdefault(m.group(1), []).append((float(m.group(2)), int(m.group(4))))
for name, vs in got.items():
    print(json.dumps({"label": "verify/" + name, "ns_op": statistics.median(v[0] for v in vs),
                      "allocs_op": statistics.median(v[1] for v in vs)}))
PY
fi

if [[ $PARTS == scale || $PARTS == cluster || $PARTS == verify ]]; then
  report
  exit 0
fi

echo "== RSS over $RSS_DUR (bbolt, ES256, 64 connections)" >&2
read -r P PORT < <(start_keygate rss bolt ES256); PIDS+=("$P")
wait_http "http://127.0.0.1:$PORT/readyz"
CRED=$(make_key "http://127.0.0.1:$PORT")
"$KG" bench --url "http://127.0.0.1:$PORT" --credentials-file "$CRED" --connections 64 --duration 10s --json >/dev/null
RSS0=$(rss_kb "$P")
"$KG" bench --url "http://127.0.0.1:$PORT" --credentials-file "$CRED" --connections 64 --duration "$RSS_DUR" --json >"$WORK/rss.json"
RSS1=$(rss_kb "$P")
echo "{\"label\":\"rss\",\"rss0_kb\":$RSS0,\"rss1_kb\":$RSS1,\"duration\":\"$RSS_DUR\",\"requests\":$(python3 -c "import json;print(json.load(open('$WORK/rss.json'))['successes'])")}" >>"$RESULTS"
kill "$P"; wait "$P" 2>/dev/null || true

report
