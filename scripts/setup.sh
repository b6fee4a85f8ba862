#!/usr/bin/env bash
# Set up from nothing: system packages, the virtualenv with pinned Python packages, the default
# model. Idempotent and quick when everything is already in place.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${VENV:-$ROOT/.venv}"
PYTHON="${PYTHON:-python3.11}"
LOCK="$ROOT/requirements/cpu.lock"
# nginx: the edge proxy; prometheus (with promtool), prometheus-alertmanager: monitoring;
# chromium: the dashboard browser test; curl, jq, lsof: the guide's commands
# redis-tools: the Redis server binary of the GCS fault tolerance test (not the redis-server
# package, which starts a system Redis on 6379, the GCS port)
APT_PACKAGES=(curl jq lsof procps nginx prometheus prometheus-alertmanager chromium redis-tools)

# shellcheck source=scripts/lib.sh
. "$ROOT/scripts/lib.sh"

install_python_packages() {
  local stamp="$VENV/.gpucluster-lock"
  local want
  want="$(sha256sum "$LOCK" "$ROOT/pyproject.toml" | sha256sum | cut -c1-16)"
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && [ -x "$VENV/bin/gpucluster" ]; then
    return 0
  fi
  if [ ! -x "$VENV/bin/python" ]; then
    command -v "$PYTHON" >/dev/null || { echo "error: $PYTHON not found; set PYTHON=/path/to/python3.11" >&2; exit 2; }
    say "creating virtualenv $VENV"
    "$PYTHON" -m venv "$VENV"
  fi
  say "installing pinned Python packages (a few minutes on a fresh machine)"
  "$VENV/bin/pip" install --quiet --no-deps -r "$LOCK"
  # PyPI's torchvision/torchaudio break beside torch+cpu; they are not needed.
  "$VENV/bin/pip" uninstall --quiet -y torchvision torchaudio torchcodec 2>/dev/null || true
  "$VENV/bin/pip" install --quiet --no-deps -e "$ROOT"
  echo "$want" > "$stamp"
}

prepare_default_model() {
  say "preparing the configured models"
  "$VENV/bin/gpucluster" prepare >/dev/null
}

install_system_packages "${APT_PACKAGES[@]}"
install_python_packages
prepare_default_model
say "setup complete"
