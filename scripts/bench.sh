#!/usr/bin/env bash
# Every benchmark scenario against Rookery and the socket.io peer (and,
# for fanout and idle, Sockudo), in one run, one server after the other:
# the numbers behind BENCHMARKS.md.
#   scripts/bench.sh                 full run (about 30 minutes), release builds
#   scripts/bench.sh --smoke         a few seconds per scenario (CI), debug builds
#   scripts/bench.sh --pinned ...    one core each: every server on CPU 1
#                                    (Rookery with WORKERS=1), the load tool on
#                                    CPU 0 (the headline rows of BENCHMARKS.md)
#   scripts/bench.sh fanout idle     only the scenarios named (linker, latency,
#                                    fanout, api, idle, cluster, mongo),
#                                    appending to the results
# With ROOKERY_BEFORE=path/to/an/older/rookery, every Rookery run is repeated
# against that build (rows labelled rookery-before): before and after from
# one run. With ROOKERY_NORMAL=1, also against this build with
# SQLITE_SYNCHRONOUS=normal (rows labelled rookery-normal): what fsynced
# acks cost. BENCH_USER_RATE_LIMIT=20 keeps the per-user message budget on
# (off by default: the saturation and fanout senders are over any budget).
# Sockudo (crates.io, a Rust Pusher server) is built once into
# $TOOLS/sockudo-VERSION (long on two cores; never in --smoke, so never in
# CI); SOCKUDO=0 leaves it out, SOCKUDO=path/to/sockudo uses that build.
# Every row carries the server's CPU time over its measured window (logins
# excluded) and per 1000 deliveries.
# Results: bench/results/results.json, a table per scenario on stdout, and
# bench/results/<scenario>.png. Servers start on free loopback ports with
# fresh data and are stopped at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

smoke=0; [ "${1:-}" = "--smoke" ] && { smoke=1; shift; }
# Pinned: the server and the tool never share a core, and the server has
# exactly one, so a server that spreads its work over threads gains nothing
# over a single-threaded one (the two-core rows hide that).
server_cpu=(); tool_cpu=(); workers=()
if [ "${1:-}" = "--pinned" ]; then
  shift; server_cpu=(taskset -c 1); tool_cpu=(taskset -c 0); workers=(WORKERS=1)
  [ "$(nproc)" -ge 2 ] || { echo "--pinned needs two cores" >&2; exit 1; }
fi
scenarios=("$@"); [ ${#scenarios[@]} -gt 0 ] || scenarios=(linker latency fanout api idle cluster mongo)
wanted() { [[ " ${scenarios[*]} " == *" $1 "* ]]; }

need_apt=()
command -v node >/dev/null || need_apt+=(nodejs npm)
command -v redis-server >/dev/null || need_apt+=(redis-server)
[ -f /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ] || need_apt+=(fonts-dejavu-core)
apt_install "${need_apt[@]}"
install_secantus
if [ ! -d bench/peers/socketio/node_modules/socket.io ]; then
  echo "==> installing the socket.io peer's packages"
  (cd bench/peers/socketio && npm ci --no-audit --no-fund --silent)
fi

# Tens of thousands of connections need as many descriptors, on both ends
# (each process has its own limit). Where the hard limit cannot be raised,
# the idle scenario stops below it and says so.
ulimit -n 120000 2>/dev/null || ulimit -n "$(ulimit -Hn)"
fd_limit=$(ulimit -n)

# The second peer, for the scenarios the Pusher protocol can express
# (fanout by client events on a private channel, idle).
pusher=()
sockudo_version=5.2.0
if [ $smoke -eq 0 ] && [ "${SOCKUDO:-}" != 0 ] && { wanted fanout || wanted idle; }; then
  sockudo="${SOCKUDO:-$TOOLS/sockudo-$sockudo_version/bin/sockudo}"
  if [ -n "${SOCKUDO:-}" ] && [ ! -x "$sockudo" ]; then
    echo "SOCKUDO=$sockudo is not an executable" >&2; exit 1
  fi
  # Sockudo starts in a scratch directory: the path must hold from there.
  sockudo=$(realpath -m "$sockudo")
  if [ ! -x "$sockudo" ]; then
    command -v protoc >/dev/null || apt_install protobuf-compiler
    echo "==> building Sockudo $sockudo_version into $TOOLS (once; 20-30 minutes on two cores)"
    cargo install sockudo --version "$sockudo_version" --locked --quiet --root "$TOOLS/sockudo-$sockudo_version"
  fi
  pusher=(sockudo)
fi

if [ $smoke -eq 1 ]; then
  profile=debug; cargo build --quiet --workspace --bin rookery --bin rookery-bench
else
  profile=release; cargo build --quiet --release --workspace --bin rookery --bin rookery-bench
fi
rookery="target/$profile/rookery"
bench="target/$profile/rookery-bench"
before="${ROOKERY_BEFORE:-}"
servers=(rookery)
[ -n "${ROOKERY_NORMAL:-}" ] && servers+=(rookery-normal)
[ -n "$before" ] && servers+=(rookery-before)
servers+=(socketio)
out=bench/results
[ $smoke -eq 1 ] && out=$(mktemp -d) && scratch+=("$out")
mkdir -p "$out"
results="$out/results.json"
# Named scenarios add to the last results; a full run starts afresh.
[ $# -gt 0 ] || rm -f "$results"

# start_rookery [VAR=value...]: a fresh replica on a free port; sets
# server_pid and server_url. ROOKERY_BIN picks the build (default: this one).
start_rookery() {
  local dir; dir=$(mktemp -d); scratch+=("$dir")
  local port; port=$(free_port)
  # Thousands of users logging in and connecting from one address: the
  # abuse limits are off, as they would be for a load test anywhere.
  "${server_cpu[@]}" env "${workers[@]}" "$@" HOST=127.0.0.1 PORT="$port" DATA_DIR="$dir" RATE_LIMIT=0 USER_RATE_LIMIT="${BENCH_USER_RATE_LIMIT:-0}" RUST_LOG=warn \
    LOGIN_ATTEMPTS_PER_MINUTE=0 LOGIN_FAILURES_PER_MINUTE=0 REGISTRATIONS_PER_HOUR=0 \
    MAX_CONNECTIONS=0 WS_PER_USER=0 WS_PER_ADDRESS=0 \
    "${ROOKERY_BIN:-$rookery}" >"$dir/log" 2>&1 &
  server_pid=$!; pids+=("$server_pid")
  server_dir=$dir
  wait_for_port "$port" rookery "$server_pid"
  server_url="http://127.0.0.1:$port"
}

# start_peer [VAR=value...]: the socket.io peer on a free port; sets
# server_pid and server_url.
start_peer() {
  local port; port=$(free_port)
  "${server_cpu[@]}" env "$@" PORT="$port" node bench/peers/socketio/server.js >/dev/null 2>&1 &
  server_pid=$!; pids+=("$server_pid")
  wait_for_port "$port" "socket.io peer" "$server_pid"
  server_url="http://127.0.0.1:$port"
}

# start_sockudo: Sockudo on a free port with one app (the key and secret
# rookery-bench signs with), client events on and its limits lifted as
# Rookery's are; sets server_pid and server_url.
start_sockudo() {
  local dir; dir=$(mktemp -d); scratch+=("$dir")
  local port; port=$(free_port)
  (cd "$dir" && exec "${server_cpu[@]}" env HOST=127.0.0.1 PORT="$port" DEBUG=false RUST_LOG=warn \
    METRICS_ENABLED=false RATE_LIMITER_ENABLED=false SOCKUDO_MAX_CONNECTIONS=200000 \
    SOCKUDO_DEFAULT_APP_ID=bench SOCKUDO_DEFAULT_APP_KEY=rookery-bench-key \
    SOCKUDO_DEFAULT_APP_SECRET=rookery-bench-secret SOCKUDO_DEFAULT_APP_ENABLED=true \
    SOCKUDO_DEFAULT_APP_ENABLE_CLIENT_MESSAGES=true SOCKUDO_DEFAULT_APP_MAX_CONNECTIONS=200000 \
    SOCKUDO_DEFAULT_APP_MAX_CLIENT_EVENTS_PER_SECOND=1000000 \
    "$sockudo" >"$dir/log" 2>&1) &
  server_pid=$!; pids+=("$server_pid")
  wait_for_port "$port" sockudo "$server_pid"
  server_url="http://127.0.0.1:$port"
}

# against SERVER SCENARIO ARGS...: one run of the tool against a fresh server.
against() {
  local server=$1; shift
  local scenario=$1; shift
  local extra=() peer=$server
  case "$server" in
    rookery) start_rookery ;;
    rookery-before) ROOKERY_BIN="$before" start_rookery; peer=rookery; extra+=(--label rookery-before) ;;
    rookery-normal) start_rookery SQLITE_SYNCHRONOUS=normal; peer=rookery; extra+=(--label rookery-normal) ;;
    sockudo) start_sockudo; peer=sockudo ;;
    *) start_peer ;;
  esac
  echo "==> $scenario on $server $*"
  "${tool_cpu[@]}" "$bench" "$scenario" --server-pid "$server_pid" --peer "$peer" --target "$server_url" --json "$results" "${extra[@]}" "$@"
  stop "$server_pid"
  # A saturated linker run leaves gigabytes of messages: gone at once, not
  # at the end, or a full run fills the disk.
  if [ -n "${server_dir:-}" ]; then rm -rf "$server_dir"; server_dir=; fi
}

if [ $smoke -eq 1 ]; then
  linker=(--connections 20 --seconds 3)
  latency=(--connections 20 --seconds 3)
  fanout=(--members 20 --rates 10,50 --step-seconds 2)
  idle_counts=(200); idle=(--users 10 --hold-seconds 2)
  cluster=(--members 10 --senders 2 --seconds 3); cluster_rates=(10)
  mongo=(--connections 20 --seconds 3 --interval-ms 1000)
else
  # LINKER_CONNECTIONS=1000,2000 for a shorter run (each count logs its
  # users in first: about a minute per thousand on one core).
  linker=(--connections "${LINKER_CONNECTIONS:-1000,2000,3000,4000}" --seconds 10 --ramp 400)
  latency=(--connections 1000 --seconds 20 --ramp 400)
  fanout=(--members 1000 --rates 10,50,100,200,400,800,1600 --step-seconds 5)
  most=$(( fd_limit - 1000 < 50000 ? fd_limit - 1000 : 50000 ))
  [ "$most" -lt 50000 ] && echo "note: open-file limit $fd_limit: idle measures $most connections, not 50000"
  read -ra idle_counts <<<"${IDLE_COUNTS:-10000 $most}"; idle=(--users 200 --hold-seconds 15 --sources 4 --ramp 2000)
  # 200 messages/s across (the first row of BENCHMARKS.md), and 5 times it.
  cluster=(--members 200 --senders 10 --seconds 10); cluster_rates=(20 100)
  # One replica on the MongoDB-protocol server: 1000 connections at one
  # reliable message per second, a rate at which the old build queued.
  mongo=(--connections 1000 --seconds 20 --ramp 400 --interval-ms 1000)
fi

if wanted linker; then
  for mode in reliable fast; do
    for server in "${servers[@]}"; do
      against "$server" linker --mode "$mode" "${linker[@]}"
    done
  done
fi
if wanted latency; then
  # 1000 connections at 10 and at 1 message per second each: latency below
  # saturation, next to linker's 10 ms (which saturates both servers here).
  for server in "${servers[@]}"; do
    against "$server" linker --mode reliable "${latency[@]}" --interval-ms 100
    against "$server" linker --mode fast "${latency[@]}" --interval-ms 100
    against "$server" linker --mode reliable "${latency[@]}" --interval-ms 1000
  done
fi
if wanted fanout; then
  for server in "${servers[@]}" "${pusher[@]}"; do
    against "$server" fanout "${fanout[@]}"
  done
fi
if wanted api; then
  # The server API next to the WebSocket path, on one Rookery build: the
  # same fanout (one room of members) fed by a member's socket, then by a
  # backend's publishes (each answered once stored).
  api_key=bench-api-key-0123456789abcdef
  for via in ws api; do
    start_rookery API_KEYS="$api_key" API_RATE_LIMIT=0
    extra=(); [ "$via" = api ] && extra=(--api-key "$api_key")
    echo "==> fanout through the $via path"
    "${tool_cpu[@]}" "$bench" fanout --server-pid "$server_pid" --peer rookery --target "$server_url" --json "$results" --label "rookery-$via" \
      "${fanout[@]}" "${extra[@]}"
    stop "$server_pid"; rm -rf "$server_dir"; server_dir=
  done
fi
if wanted idle; then
  # A fresh server per count: memory a process kept from an earlier count
  # would otherwise be credited to the next one.
  for count in "${idle_counts[@]}"; do
    for server in "${servers[@]}" "${pusher[@]}"; do
      against "$server" idle --connections "$count" "${idle[@]}"
    done
  done
fi

if ! wanted cluster && ! wanted mongo; then "$bench" plot "$results" --out "$out"; exit 0; fi
# Cluster: two replicas of each server, sharing Redis (and, for Rookery,
# one MongoDB-protocol database: SecantusDB).
redis_port=$(free_port)
redis-server --port "$redis_port" --bind 127.0.0.1 --save '' --appendonly no >/dev/null 2>&1 &
redis_pid=$!; pids+=("$redis_pid")
wait_for_port "$redis_port" redis "$redis_pid"
start_secantus
if wanted mongo; then
  for server in "${servers[@]}"; do
    peer=$server; extra=()
    db="mongodb://127.0.0.1:$mongo_port/bench_mongo_${server//-/_}"
    case "$server" in
      rookery) start_rookery MONGO_URL="$db" ;;
      rookery-before) ROOKERY_BIN="$before" start_rookery MONGO_URL="$db"; peer=rookery; extra=(--label rookery-before) ;;
      rookery-normal) continue ;;
      *) start_peer ;;
    esac
    echo "==> mongo on $server"
    "${tool_cpu[@]}" "$bench" linker --server-pid "$server_pid" --mode reliable --peer "$peer" --target "$server_url" --json "$results" \
      --scenario mongo "${extra[@]}" "${mongo[@]}"
    stop "$server_pid"
  done
fi
wanted cluster || { "$bench" plot "$results" --out "$out"; exit 0; }
for rate in "${cluster_rates[@]}"; do
for server in "${servers[@]}"; do
  # The cluster runs on MongoDB: SQLITE_SYNCHRONOUS changes nothing there.
  [ "$server" = rookery-normal ] && continue
  replicas=(); peer=$server; extra=()
  # A database per run, so no run starts on another's messages.
  cluster_db="mongodb://127.0.0.1:$mongo_port/bench_cluster_${server//-/_}_$rate"
  for node in a b; do
    case "$server" in
      rookery|rookery-before)
        [ "$server" = rookery-before ] && { peer=rookery; extra=(--label rookery-before); }
        ROOKERY_BIN="$([ "$server" = rookery-before ] && echo "$before" || echo "$rookery")" \
          start_rookery ADAPTER=redis REDIS_URL="redis://127.0.0.1:$redis_port" \
          MONGO_URL="$cluster_db" NODE_ID="bench-$node" ;;
      *) start_peer REDIS_URL="redis://127.0.0.1:$redis_port" ;;
    esac
    replicas+=("$server_pid" "$server_url")
  done
  echo "==> cluster on $server"
  "$bench" cluster --peer "$peer" --target "${replicas[1]}" --also "${replicas[3]}" \
    --json "$results" "${extra[@]}" "${cluster[@]}" --rate "$rate"
  stop "${replicas[0]}"; stop "${replicas[2]}"
done
done

"$bench" plot "$results" --out "$out"
echo "==> results in $results"
