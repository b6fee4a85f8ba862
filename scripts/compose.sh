#!/usr/bin/env bash
# The CPU flavour of deploy/compose on this machine: `make compose-up` / `make compose-down`.
#   scripts/compose.sh up     Docker engine and Compose (scripts/docker-setup.sh), the images
#                             (scripts/build-images.sh), deploy/compose/.env, `docker compose up -d`;
#                             returns once the model answers through nginx, or fails showing why.
#   scripts/compose.sh down   `docker compose down`: no container or network is left (volumes stay;
#                             DOWN_VOLUMES=1 removes them too).
# Environment: NGINX_HTTP_PORT, RAY_DASHBOARD_PORT, PROMETHEUS_PORT, ALERTMANAGER_PORT (the guide's
# ports by default), GPUCLUSTER_API_KEYS, UP_TIMEOUT_S (900), VENV (.venv).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
COMPOSE_DIR="$ROOT/deploy/compose"
ENV_FILE="$COMPOSE_DIR/.env"
VENV="${VENV:-$ROOT/.venv}"
MARKER="# Written by scripts/compose.sh (make compose-up): the CPU flavour."
UP_TIMEOUT_S="${UP_TIMEOUT_S:-900}"

# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
compose() { (cd "$COMPOSE_DIR" && docker compose "$@"); }

write_env() {
  if [ -f "$ENV_FILE" ] && ! grep -qxF "$MARKER" "$ENV_FILE"; then
    die "$ENV_FILE exists and was not written by make compose-up (a GPU deployment's?); move it away to try the CPU flavour here"
  fi
  local grafana_password=""
  [ -f "$ENV_FILE" ] && grafana_password=$(sed -n 's/^GRAFANA_ADMIN_PASSWORD=//p' "$ENV_FILE")
  [ -n "$grafana_password" ] || grafana_password=$(head -c 18 /dev/urandom | base64 | tr -d '/+=')
  # The built-in model and the host's model cache, as local mode's default config has them.
  local defaults model_id model_source model_cache
  defaults=$(GPUCLUSTER_CONFIG="" "$VENV/bin/gpucluster" config show --json)
  model_id=$(jq -r '.models[0].id' <<< "$defaults")
  model_source=$(jq -r '.models[0].source' <<< "$defaults")
  model_cache=$(jq -r '.platform.model_cache_dir' <<< "$defaults")
  umask 077
  cat > "$ENV_FILE" <<EOF
$MARKER
# Edit freely; \`make compose-up\` keeps the Grafana password and rewrites the rest.
COMPOSE_FILE=docker-compose.yml:docker-compose.cpu.yml
GRAFANA_ADMIN_PASSWORD=$grafana_password
GRAFANA_ADMIN_USER=admin
GPUCLUSTER_API_KEYS=${GPUCLUSTER_API_KEYS:-}
MODEL_ID=$model_id
MODEL_SOURCE=$model_source
MODEL_ACCELERATOR=cpu
TENSOR_PARALLEL_SIZE=1
MAX_MODEL_LEN=${MAX_MODEL_LEN:-8192}
GPUCLUSTER_MODEL_CACHE=$model_cache
NGINX_HTTP_PORT=${NGINX_HTTP_PORT:-18080}
RAY_DASHBOARD_PORT=${RAY_DASHBOARD_PORT:-18265}
PROMETHEUS_PORT=${PROMETHEUS_PORT:-19090}
GRAFANA_PORT=${GRAFANA_PORT:-13000}
ALERTMANAGER_PORT=${ALERTMANAGER_PORT:-19093}
RAY_SHM_SIZE=${RAY_SHM_SIZE:-2gb}
RAY_NUM_CPUS=${RAY_NUM_CPUS:-8}
HF_TOKEN=
EOF
  say "wrote $ENV_FILE"
}

env_value() { sed -n "s/^$1=//p" "$ENV_FILE" | tail -n 1; }

# The model answers one greedy token through the published nginx port.
model_answers() {
  local port key model
  port=$(env_value NGINX_HTTP_PORT); model=$(env_value MODEL_ID)
  key=$(env_value GPUCLUSTER_API_KEYS); key=${key%%,*}
  curl -fsS -o /dev/null --max-time 30 "http://127.0.0.1:$port/v1/chat/completions" \
    -H 'Content-Type: application/json' ${key:+-H "Authorization: Bearer $key"} \
    -d "{\"model\": \"$model\", \"max_tokens\": 1, \"temperature\": 0,
         \"messages\": [{\"role\": \"user\", \"content\": \"Hi\"}]}" 2>/dev/null
}

wait_until_answering() {
  local start=$SECONDS last=""
  until model_answers; do
    local state
    state=$(compose ps --format '{{.Name}}: {{.Status}}' 2>/dev/null | sort | paste -sd ';' -)
    if [ $((SECONDS - start)) -ge "$UP_TIMEOUT_S" ]; then
      compose ps >&2 || true
      docker logs --tail 60 ray-serve >&2 || true
      die "the model did not answer through nginx within ${UP_TIMEOUT_S}s (above: the containers and the end of ray-serve's log)"
    fi
    if [ "$state" != "$last" ] || [ $(((SECONDS - start) % 30)) -lt 5 ]; then
      say "waiting for the model ($((SECONDS - start)) s): ${state//;/, }"
      last=$state
    fi
    if compose ps --status exited --format '{{.Name}}' 2>/dev/null | grep -q .; then
      compose ps -a >&2 || true
      docker logs --tail 60 ray-serve >&2 || true
      die "a container exited (above); \`docker compose logs\` in deploy/compose shows why"
    fi
    sleep 5
  done
  say "the model answers through nginx after $((SECONDS - start)) s"
}

up() {
  bash "$ROOT/scripts/docker-setup.sh"
  bash "$ROOT/scripts/build-images.sh"
  write_env
  local start=$SECONDS
  say "docker compose up -d (in deploy/compose)"
  compose up -d --no-build
  wait_until_answering
  local port
  port=$(env_value NGINX_HTTP_PORT)
  cat <<EOF

The compose stack is up ($((SECONDS - start)) s from \`docker compose up -d\`). In deploy/compose:
  docker compose ps                      the guide's containers
  docker compose logs ray-serve          Ray, Serve and the engine
  OpenAI API   http://localhost:$port/v1   (model $(env_value MODEL_ID))
  Prometheus   http://localhost:$(env_value PROMETHEUS_PORT)
  Dashboard    http://localhost:$port/dashboard/  (docker exec ray-serve gpucluster dashboard-password)
Stop: make compose-down
EOF
}

down() {
  if ! docker info > /dev/null 2>&1; then
    say "no Docker engine answers: nothing to stop"
    return 0
  fi
  if [ ! -f "$ENV_FILE" ]; then
    say "no $ENV_FILE: nothing was started by make compose-up"
    return 0
  fi
  compose down --remove-orphans ${DOWN_VOLUMES:+--volumes}
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  *) die "usage: $0 up|down" ;;
esac
