# Shared by scripts/test.sh and scripts/bench.sh: installing what is missing,
# and starting processes on free loopback ports that are stopped on exit.

# Installed tools are cached here between runs.
TOOLS="${ROOKERY_TOOLS:-$HOME/.cache/rookery}"
SECANTUSD="$TOOLS/secantus/bin/secantusd-py"

# apt_install PACKAGE... : installs the Debian packages given (nothing if none).
apt_install() {
  [ $# -gt 0 ] || return 0
  echo "==> installing $*"
  local sudo=""; [ "$(id -u)" -eq 0 ] || sudo=sudo
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "$@"
}

# install_servers [PACKAGE...]: the brokers the cluster and chaos suites run
# every adapter against, Python for the tools, SecantusDB, and any extra
# Debian packages given.
install_servers() {
  local need_apt=()
  for package in "$@"; do command -v "$package" >/dev/null || need_apt+=("$package"); done
  command -v redis-server >/dev/null || need_apt+=(redis-server)
  command -v nats-server >/dev/null || need_apt+=(nats-server)
  [ -x /usr/lib/rabbitmq/bin/rabbitmq-server ] || need_apt+=(rabbitmq-server)
  command -v python3 >/dev/null || need_apt+=(python3)
  python3 -c 'import ensurepip' 2>/dev/null || need_apt+=(python3-venv)
  apt_install "${need_apt[@]}"
  install_secantus
}

# A MongoDB-wire-protocol server (GPL-2.0), only ever run as a separate process.
install_secantus() {
  [ -x "$SECANTUSD" ] && return 0
  echo "==> installing SecantusDB into $TOOLS/secantus"
  python3 -m venv "$TOOLS/secantus"
  "$TOOLS/secantus/bin/pip" install --quiet --disable-pip-version-check 'SecantusDB==0.7.0b3'
}

pids=(); scratch=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  for dir in "${scratch[@]}"; do rm -rf "$dir"; done
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

wait_for_port() { # port, name, pid
  for _ in $(seq 1 300); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    kill -0 "$3" 2>/dev/null || { echo "$2 exited during start-up" >&2; return 1; }
    sleep 0.1
  done
  echo "$2 did not listen on port $1 within 30 s" >&2; return 1
}

# stop PID: stops one process started here and waits for it.
stop() {
  kill "$1" 2>/dev/null || true
  wait "$1" 2>/dev/null || true
}

# start_secantus: a fresh SecantusDB; sets mongo_port.
start_secantus() {
  local dir; dir=$(mktemp -d); scratch+=("$dir")
  mongo_port=$(free_port)
  "$SECANTUSD" --host 127.0.0.1 --port "$mongo_port" --storage-path "$dir" >"$dir/log" 2>&1 &
  pids+=($!)
  wait_for_port "$mongo_port" SecantusDB "$!"
}
