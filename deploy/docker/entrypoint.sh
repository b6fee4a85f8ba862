#!/usr/bin/env bash
# ray-serve container (deploy/compose): the Ray head and the platform's Serve application.
# Every file it runs is rendered by gpucluster from $GPUCLUSTER_CONFIG, the same platform YAML
# schema local mode reads: the Serve config, the nginx config (with the Ray token) that the
# nginx container reads from the state volume, and the Alertmanager config. It stays in the
# foreground streaming Ray's, Serve's and the engines' output: `docker logs ray-serve`.
set -euo pipefail
# Everything on standard output, so that the guide's `docker logs ray-serve | grep -i error`
# sees the error lines too (a pipe reads only stdout of `docker logs`).
exec 2>&1

MODEL_CACHE=/models                      # the model-cache volume
SERVE_CONFIG=/tmp/serve-config.yaml
ALERTMANAGER_CONFIG=/etc/gpucluster/alertmanager/alertmanager.yml   # the alertmanager-config volume
SERVICE_NAME=ray-serve                   # how the nginx and Alertmanager containers reach this one

log() { echo "$(date -u +%Y-%m-%dT%H:%M:%SZ) INFO ray-serve: $*"; }

# One value of the effective configuration (file + environment), e.g. platform.ports.ray_gcs.
setting() {
    python - "$1" <<'PY'
import sys

from gpucluster.config import load_config

value = load_config()
for part in sys.argv[1].split("."):
    value = getattr(value, part)
print(value)
PY
}

if [ "${1:-}" = worker ]; then
    # A worker host (docker-compose.worker.yml, host network): joins the head at
    # RAY_HEAD_ADDRESS with the node settings the head has; Ray's token from RAY_AUTH_TOKEN.
    export GPUCLUSTER_CONFIG=""        # no platform file on a worker host: the default ports
    eval "$(gpucluster render ray-node --join "${RAY_HEAD_ADDRESS:?}:$(setting platform.ports.ray_gcs)" --shell)"
    log "joining the Ray head: ray start ${RAY_START_ARGS[*]}"
    exec ray start "${RAY_START_ARGS[@]}" --block
fi

stop() {
    log "stopping Ray (docker stop)"
    ray stop --grace-period 30 > /dev/null 2>&1 || true
    exit 0
}
trap stop TERM INT

gpucluster config check               # a bad file or variable stops here, naming the key
STATE_DIR=$(setting platform.state_dir)
GCS_PORT=$(setting platform.ports.ray_gcs)
RECEIVER_PORT=$(setting platform.ports.alert_receiver)
# The address Ray advertises: the container's own, or the host's when worker hosts join
# (docker-compose.head.yml: host networking, RAY_NODE_IP=$RAY_HEAD_ADDRESS).
NODE_IP=${RAY_NODE_IP:-$(hostname -i | awk '{print $1}')}
ADDRESS="${NODE_IP}:${GCS_PORT}"

# Creates the Ray token ($RAY_AUTH_TOKEN_PATH, in the state volume) and the /dashboard login
# file on first start; nginx sends the token to the dashboard for logged-in operators.
gpucluster render nginx --upstream-host "$SERVICE_NAME" -o "$STATE_DIR/nginx/nginx.conf"
gpucluster render alertmanager --receiver-host "$SERVICE_NAME" -o "$ALERTMANAGER_CONFIG"

nvidia-smi -L || log "WARNING: no GPU visible in the container (check the NVIDIA container toolkit)"

# The Ray node's environment (token auth, worker niceness, Serve's control loop) and its
# `ray start` options: the ones local mode's head gets, from the same definition.
eval "$(gpucluster render ray-node --node-ip "$NODE_IP" --shell)"
log "starting the Ray head: ray start ${RAY_START_ARGS[*]}"
ray start "${RAY_START_ARGS[@]}" --block &
RAY_PID=$!
until ray status --address "$ADDRESS" > /dev/null 2>&1; do
    kill -0 "$RAY_PID" 2> /dev/null || { echo "ERROR: ray start failed" >&2; exit 1; }
    sleep 2
done

# At its start the receiver closes the alerts its log leaves firing, except those Alertmanager
# still has: Alertmanager's container keeps them when only ray-serve restarts.
ALERTMANAGER_URL=${ALERTMANAGER_URL:-http://gpu-cluster-alertmanager:$(setting platform.ports.alertmanager)}
python -m gpucluster.runtime.alert_receiver 0.0.0.0 "$RECEIVER_PORT" "$STATE_DIR/logs/alerts.log" \
    "$ALERTMANAGER_URL" &
RECEIVER_PID=$!
# Points the nginx container at the ingress replicas' own ports as they come and go; the
# nginx container reloads when the file changes.
python -m gpucluster.runtime.upstreams "$STATE_DIR/nginx/upstreams.conf" --scan-host 127.0.0.1 \
    --upstream-host "$SERVICE_NAME" --serve-port "$(setting platform.ports.serve_http)" &
UPSTREAMS_PID=$!

KEY_ARGS=()
GATEKEEPER_ARGS=()
if gpucluster render api-keys -o "$STATE_DIR/api-keys.env" > /dev/null; then
    KEY_ARGS=(--api-keys-file "$STATE_DIR/api-keys.env")
    GATEKEEPER_ARGS=(--key-file "$STATE_DIR/api-keys.env")
fi
# The edge's key and quota service: the nginx container asks it about every /v1 request, the
# replicas report each request's usage to it, Prometheus scrapes its /metrics. On the
# container network only (not published); `docker exec ray-serve gpucluster keys create NAME`
# adds a key to the store in the state volume.
python -m gpucluster.runtime.gatekeeper --host 0.0.0.0 "${GATEKEEPER_ARGS[@]}" &
GATEKEEPER_PID=$!
# The weights, before the Serve config that points at them: a Hugging Face source is pulled
# into the model-cache volume (resumed after a restart, checked against the hub's checksums),
# so the replicas load a local directory and never download; a built-in model is converted.
gpucluster prepare
gpucluster render serve-config --http-host 0.0.0.0 --model-cache "$MODEL_CACHE" \
    "${KEY_ARGS[@]}" -o "$SERVE_CONFIG"
# In the background so that `docker stop` is handled while the models load.
python -m gpucluster.serving.deploy "$SERVE_CONFIG" --address "$ADDRESS" &
wait $!

python -m gpucluster.runtime.log_stream "$ADDRESS" &
STREAM_PID=$!
set +e
wait -n "$RAY_PID" "$STREAM_PID" "$RECEIVER_PID" "$UPSTREAMS_PID" "$GATEKEEPER_PID"
echo "ERROR: the Ray head, the log stream, the alert receiver, the upstream watcher or the gatekeeper exited ($?); restarting the container" >&2
exit 1
