#!/usr/bin/env bash
# Stop the Docker engine only if scripts/docker-setup.sh started it (its pid file says so);
# an engine started any other way (systemd, another user) is left alone. Waits until it has
# exited (containers are stopped by dockerd itself on shutdown). DOCKERD_STOP_TIMEOUT: seconds
# to wait (default 60) before giving up with an error.
set -euo pipefail

PIDFILE="${GPUCLUSTER_DOCKERD_PIDFILE:-/run/gpu-cluster-dockerd.pid}"
TIMEOUT="${DOCKERD_STOP_TIMEOUT:-60}"

# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

if [ ! -f "$PIDFILE" ]; then
  say "no $PIDFILE: dockerd was not started by scripts/docker-setup.sh; nothing to stop"
  exit 0
fi
pid="$(cat "$PIDFILE")"
if [ -z "$pid" ] || [ "$(cat "/proc/$pid/comm" 2>/dev/null)" != dockerd ]; then
  say "dockerd (pid ${pid:-?}) is no longer running; removing $PIDFILE"
  $SUDO rm -f "$PIDFILE"
  exit 0
fi

say "stopping dockerd (pid $pid)"
$SUDO kill -TERM "$pid"
waited=0
# running: the process exists, is dockerd and is no zombie (its parent may never reap it)
running() {
  [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = dockerd ] \
    && ! awk '{ exit ($3 == "Z") ? 0 : 1 }' "/proc/$pid/stat" 2>/dev/null
}
while running; do
  if [ "$waited" -ge "$TIMEOUT" ]; then
    printf 'error: dockerd (pid %s) still running after %ss\n' "$pid" "$TIMEOUT" >&2
    exit 1
  fi
  sleep 1
  waited=$((waited + 1))
done
$SUDO rm -f "$PIDFILE"
say "dockerd stopped (${waited}s)"
