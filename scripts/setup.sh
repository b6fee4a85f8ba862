#!/usr/bin/env bash
# Set up from nothing: system packages, the virtualenv with pinned Python packages, the default
# model. Idempotent and quick when everything is already in place.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${VENV:-$ROOT/.venv}"
PYTHON="${PYTHON:-python3.11}"
LOCK="$ROOT/requirements/cpu.lock"
# What the tests add (pytest, ruff, ...): installed only with SETUP_TESTS=1 (make unit, make
# test, make lint), never for make run.
TEST_LOCK="$ROOT/requirements/test.lock"
SETUP_TESTS="${SETUP_TESTS:-}"
# The `pip check` lines the --no-deps install leaves on purpose, each with its reason.
PIP_CHECK_ALLOWED="$ROOT/requirements/pip-check-allowed.txt"
# nginx: the edge proxy; prometheus (with promtool), prometheus-alertmanager: monitoring;
# chromium: the dashboard browser test; curl, jq, lsof: the guide's commands
# redis-tools: the Redis server binary of the GCS fault tolerance test (not the redis-server
# package, which starts a system Redis on 6379, the GCS port)
APT_PACKAGES=(curl jq lsof procps nginx prometheus prometheus-alertmanager chromium redis-tools)

# shellcheck source=scripts/lib.sh
. "$ROOT/scripts/lib.sh"

# check_consistency: the locks install with --no-deps, so nothing else checks that each
# package's requirements are there. `pip check`, less the lines requirements/pip-check-allowed.txt
# accepts (written "<package> requires <package>", pip's versions left out).
check_consistency() {
  local report unexpected
  report="$("$VENV/bin/pip" check 2>&1)" && return 0
  unexpected="$(printf '%s\n' "$report" \
    | sed -E 's/^([^ ]+) [^ ]+ requires ([^,]+), which is not installed\.$/\1 requires \2/' \
    | grep -vxF -f <(grep -v -e '^#' -e '^[[:space:]]*$' "$PIP_CHECK_ALLOWED") || true)"
  [ -z "$unexpected" ] && return 0
  printf '%s\n' "$unexpected" | sed 's/^/    /' >&2
  die "pip check: the installed packages do not fit together (above). The locks are installed
with --no-deps, so a missing or mismatched package means a lock is incomplete: regenerate them
with make lock, or, if the gap is deliberate, add the line to
${PIP_CHECK_ALLOWED#"$ROOT"/} with its reason."
}

install_python_packages() {
  local stamp="$VENV/.gpucluster-lock"
  local runtime tests have
  # The stamp names what is installed: the runtime's hash, or the runtime's and the tests'.
  runtime="$(sha256sum "$LOCK" "$ROOT/pyproject.toml" | sha256sum | cut -c1-16)"
  tests="$runtime+$(sha256sum "$TEST_LOCK" | cut -c1-16)"
  have="$(cat "$stamp" 2>/dev/null || true)"
  if [ -x "$VENV/bin/gpucluster" ]; then
    [ "$have" = "$tests" ] && return 0
    [ -z "$SETUP_TESTS" ] && [ "$have" = "$runtime" ] && return 0
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
  if [ -n "$SETUP_TESTS" ]; then
    say "installing the tests' pinned packages (requirements/test.lock)"
    "$VENV/bin/pip" install --quiet --no-deps -r "$TEST_LOCK"
  fi
  "$VENV/bin/pip" install --quiet --no-deps -e "$ROOT"
  check_consistency
  if [ -n "$SETUP_TESTS" ]; then echo "$tests" > "$stamp"; else echo "$runtime" > "$stamp"; fi
}

prepare_default_model() {
  say "preparing the configured models"
  "$VENV/bin/gpucluster" prepare >/dev/null
}

install_system_packages "${APT_PACKAGES[@]}"
install_python_packages
prepare_default_model
say "setup complete"
