#!/usr/bin/env bash
# Build the images of the CPU flavour of deploy/compose, from nothing and without any image
# registry (scripts/docker-setup.sh first: Docker engine, Compose, debootstrap):
#   gpu-cluster/debian:bookworm        base: debootstrap --variant=minbase from apt's Debian mirror
#   gpu-cluster/nginx:debian           in place of nginx:1.27.3-alpine          (deploy/docker/cpu/)
#   gpu-cluster/prometheus:debian      in place of prom/prometheus:v2.53.3
#   gpu-cluster/alertmanager:debian    in place of prom/alertmanager:v0.27.0
#   gpu-cluster/ray-serve:0.1.0-cpu    Ray + vLLM's CPU build (requirements/cpu.lock) + this package
# An image is built only when it is missing or its inputs changed: each carries a hash of its
# inputs in the label org.gpu-cluster.inputs, and a rebuild reuses Docker's layer cache, so a
# run with nothing changed takes seconds and a change to src/ rebuilds only the package layer.
# Usage: scripts/build-images.sh [IMAGE...]   (names as above, or base nginx prometheus
#        alertmanager ray-serve; default: all). Environment: FORCE=1 (ignore the input hashes,
#        still use the layer cache), NO_CACHE=1 (docker build --no-cache), REBUILD_BASE=1 (a new
#        debootstrap), VERBOSE=1 (stream docker build output; it always goes to a log file),
#        DEBIAN_MIRROR / DEBIAN_SUITE (default: apt's mirror for bookworm), PYTHON (python3.11
#        used to fill the wheelhouse), CACHE_DIR (default ~/.cache/gpu-cluster), DOCKER.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CPU_DIR="$ROOT/deploy/docker/cpu"
LOCK="$ROOT/requirements/cpu.lock"
CACHE_DIR="${CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/gpu-cluster}"
LOG_DIR="$CACHE_DIR/logs"
DOCKER="${DOCKER:-docker}"
PYTHON="${PYTHON:-python3.11}"
SUITE="${DEBIAN_SUITE:-bookworm}"
LABEL=org.gpu-cluster.inputs

BASE_IMAGE=gpu-cluster/debian:bookworm
RAY_SERVE_IMAGE=gpu-cluster/ray-serve:0.1.0-cpu
# The ray-serve build's `wheels` stage: the pinned packages installed (minutes), tagged so that
# `docker image prune` keeps it and a change to src/ never reinstalls the lock.
WHEELS_IMAGE=gpu-cluster/ray-serve-wheels:0.1.0-cpu
# The editable install of this package needs its build backend (pyproject.toml) offline.
BUILD_REQUIREMENTS=(setuptools==84.2.1)

# The legacy builder: Debian's engine (20.10) has no buildx. Its layer cache is all we need.
export DOCKER_BUILDKIT=0

# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1fs", b - a }'; }

docker_() { $SUDO "$DOCKER" "$@"; }

image_label() {
  docker_ image inspect --format "{{ index .Config.Labels \"$LABEL\" }}" "$1" 2>/dev/null || true
}

image_summary() {
  docker_ image inspect --format '{{.Id}} {{.Size}}' "$1" \
    | awk '{ printf "%s, %.0f MB", substr($1, 8, 12), $2 / 1e6 }'
}

image_id() { docker_ image inspect --format '{{.Id}}' "$1" 2>/dev/null || true; }

# The image a rebuild replaced, once no tag names it: its own layers go (shared ones stay; an
# image a container still uses stays too).
remove_superseded() {
  [ -n "$1" ] || return 0
  [ "$(docker_ image inspect --format '{{len .RepoTags}}' "$1" 2>/dev/null)" = 0 ] || return 0
  docker_ image rm "$1" >/dev/null 2>&1 || true
}

hash_stdin() { sha256sum | cut -c1-16; }

# Content hash of files and directories: names, contents and symbolic links' targets (times and
# owners do not count, as in Docker's own cache keys).
hash_paths() {
  (cd "$1" && shift \
    && find "$@" -type l -printf '%p -> %l\n' | LC_ALL=C sort \
    && find "$@" -type f -print0 | LC_ALL=C sort -z | xargs -0 -r sha256sum) | hash_stdin
}

# "suite uri" for every enabled deb source apt uses (one-line and deb822 formats).
apt_sources() {
  local f
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [ -f "$f" ] || continue
    awk '$1 == "deb" { i = 2; if ($2 ~ /^\[/) { while ($i !~ /\]$/) i++; i++ } print $(i + 1), $i }' "$f"
  done
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] || continue
    awk 'BEGIN { RS = ""; FS = "\n" }
      { types = ""; uris = ""; suites = ""; enabled = "yes"
        for (i = 1; i <= NF; i++) {
          line = $i; if (line ~ /^[ \t]*#/) continue
          key = tolower(line); sub(/:.*/, "", key); sub(/^[^:]*:[ \t]*/, "", line)
          if (key == "types") types = line; else if (key == "uris") uris = line
          else if (key == "suites") suites = line; else if (key == "enabled") enabled = tolower(line)
        }
        if (enabled == "no" || (" " types " ") !~ / deb /) next
        split(uris, u, " "); n = split(suites, s, " ")
        for (j = 1; j <= n; j++) print s[j], u[1]
      }' "$f"
  done
}

# ---------------------------------------------------------------------------------------------
# gpu-cluster/debian:bookworm

BASE_ROOTFS=""
cleanup_rootfs() {
  [ -n "$BASE_ROOTFS" ] && [ -d "$BASE_ROOTFS" ] || return 0
  # debootstrap mounts proc/sys in the target; never delete through a mount.
  awk -v d="$BASE_ROOTFS" 'index($2, d "/") == 1 { print $2 }' /proc/mounts | sort -r \
    | while read -r m; do $SUDO umount -l "$m" || true; done
  $SUDO rm -rf --one-file-system "$BASE_ROOTFS"
}
trap cleanup_rootfs EXIT

# No documentation, manual pages or translations, now or in packages installed later (copyright
# files stay): a third of minbase, and more in every image.
slim_rootfs() {
  local rootfs="$1"
  printf '%s\n' 'path-exclude /usr/share/doc/*' 'path-include /usr/share/doc/*/copyright' \
    'path-exclude /usr/share/man/*' 'path-exclude /usr/share/info/*' \
    'path-exclude /usr/share/locale/*' 'path-include /usr/share/locale/locale.alias' \
    | $SUDO tee "$rootfs/etc/dpkg/dpkg.cfg.d/90gpu-cluster-docker" >/dev/null
  $SUDO find "$rootfs/usr/share/doc" -mindepth 1 ! -type d ! -name copyright -delete
  $SUDO find "$rootfs/usr/share/man" "$rootfs/usr/share/info" "$rootfs/usr/share/locale" \
    -mindepth 1 ! -type d ! -name locale.alias -delete
  $SUDO find "$rootfs/usr/share/doc" "$rootfs/usr/share/man" "$rootfs/usr/share/info" \
    "$rootfs/usr/share/locale" -mindepth 1 -type d -empty -delete
}

build_base() {
  local sources mirror hash log start previous
  sources="$(apt_sources)"
  mirror="${DEBIAN_MIRROR:-$(awk -v s="$SUITE" '$1 == s { print $2; exit }' <<<"$sources")}"
  [ -n "$mirror" ] || die "no Debian mirror for $SUITE in apt's sources; set DEBIAN_MIRROR"
  # The image's apt uses the host's mirrors for the suite, its updates and its security updates.
  local image_sources
  image_sources="$(printf '%s %s\n' "$SUITE" "$mirror"
    awk -v s="$SUITE" '($1 == s "-updates" || $1 == s "-security") && !seen[$1]++' <<<"$sources")"
  # Inputs: the mirrors and this recipe itself (bash prints the functions without comments).
  hash="$(printf '%s\n' "minbase $SUITE $mirror" "$image_sources" "$(declare -f build_base slim_rootfs)" \
    | hash_stdin)"
  if [ -z "${REBUILD_BASE:-}" ] && [ "$(image_label "$BASE_IMAGE")" = "$hash" ]; then
    say "$BASE_IMAGE is up to date ($(image_summary "$BASE_IMAGE"))"
    return 0
  fi
  command -v debootstrap >/dev/null || [ -x /usr/sbin/debootstrap ] \
    || die "debootstrap not found: run scripts/docker-setup.sh"
  say "building $BASE_IMAGE (debootstrap --variant=minbase $SUITE $mirror)"
  start="$(now)"
  previous="$(image_id "$BASE_IMAGE")"
  log="$LOG_DIR/debian.log"
  BASE_ROOTFS="$($SUDO mktemp -d /var/tmp/gpu-cluster-rootfs.XXXXXX)"
  PATH="$PATH:/usr/sbin:/sbin" $SUDO debootstrap --variant=minbase "$SUITE" "$BASE_ROOTFS" "$mirror" \
    >"$log" 2>&1 || { tail -n 20 "$log" >&2; die "debootstrap failed (log: $log)"; }
  # apt inside: the same mirrors (deb822, keyring from debian-archive-keyring), no
  # recommends, no package cache kept; no service starts when a package installs.
  {
    local suite uri
    while read -r suite uri; do
      printf 'Types: deb\nURIs: %s\nSuites: %s\nComponents: main\nSigned-By: %s\n\n' \
        "$uri" "$suite" /usr/share/keyrings/debian-archive-keyring.gpg
    done <<<"$image_sources"
  } | $SUDO tee "$BASE_ROOTFS/etc/apt/sources.list.d/debian.sources" >/dev/null
  $SUDO rm -f "$BASE_ROOTFS/etc/apt/sources.list"
  printf '%s\n' 'APT::Install-Recommends "false";' 'APT::Install-Suggests "false";' \
    'Acquire::Languages "none";' \
    'DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/*.bin || true"; };' \
    | $SUDO tee "$BASE_ROOTFS/etc/apt/apt.conf.d/90gpu-cluster-docker" >/dev/null
  slim_rootfs "$BASE_ROOTFS"
  printf '#!/bin/sh\n# Containers start no services when packages install.\nexit 101\n' \
    | $SUDO tee "$BASE_ROOTFS/usr/sbin/policy-rc.d" >/dev/null
  $SUDO chmod 0755 "$BASE_ROOTFS/usr/sbin/policy-rc.d"
  $SUDO find "$BASE_ROOTFS/var/lib/apt/lists" "$BASE_ROOTFS/var/cache/apt" "$BASE_ROOTFS/var/log" \
    "$BASE_ROOTFS/tmp" -mindepth 1 \( -type f -o -type l \) -delete
  $SUDO tar --numeric-owner -C "$BASE_ROOTFS" -c . \
    | docker_ import --change 'CMD ["bash"]' --change "LABEL $LABEL=$hash" - "$BASE_IMAGE" >/dev/null
  cleanup_rootfs
  BASE_ROOTFS=""
  say "$BASE_IMAGE built in $(elapsed "$start") ($(image_summary "$BASE_IMAGE"))"
  remove_superseded "$previous"
}

# ---------------------------------------------------------------------------------------------
# docker build, unless the image already carries the hash of these inputs

# build_image IMAGE DOCKERFILE CONTEXT INPUTS [DOCKERFILE_NAME_TO_SHOW]
# Sets BUILT_LOG to the build's log when it ran docker build, else to "".
BUILT_LOG=""
build_image() {
  BUILT_LOG=""
  local image="$1" dockerfile="$2" context="$3" inputs="$4" hash log start previous flags=()
  hash="$(printf '%s\n' "$inputs" "base=$(image_id "$BASE_IMAGE")" | hash_stdin)"
  if [ -z "${FORCE:-}" ] && [ -z "${NO_CACHE:-}" ] && [ "$(image_label "$image")" = "$hash" ]; then
    say "$image is up to date ($(image_summary "$image"))"
    return 0
  fi
  say "building $image (${5:-${dockerfile#"$ROOT"/}})"
  start="$(now)"
  previous="$(image_id "$image")"
  log="$LOG_DIR/$(basename "$image" | tr ':' '-').log"
  [ -z "${NO_CACHE:-}" ] || flags+=(--no-cache)
  # --network host: with dockerd --iptables=false, bridge containers have no way out.
  if ! docker_ build --network host --force-rm "${flags[@]}" --build-arg "BASE_IMAGE=$BASE_IMAGE" \
      --label "$LABEL=$hash" -f "$dockerfile" -t "$image" "$context" 2>&1 \
      | tee "$log" | if [ -n "${VERBOSE:-}" ]; then cat; else
          { grep --line-buffered -E '^Step [0-9]+/[0-9]+ : ' || true; } | cut -c1-110 | sed -u 's/^/    /'
        fi >&2
  then
    tail -n 30 "$log" >&2
    die "building $image failed (log: $log)"
  fi
  say "$image built in $(elapsed "$start") ($(image_summary "$image"))"
  remove_superseded "$previous"
  BUILT_LOG="$log"
}

build_small() {
  local image="$1" dockerfile="$CPU_DIR/$2"
  # The context is deploy/docker/cpu (small): its Dockerfile and any file there but the other
  # Dockerfiles may be copied (an edit of one image's Dockerfile leaves the others as they are).
  local files
  mapfile -t files < <(cd "$CPU_DIR" && find . -type f \( ! -name '*.Dockerfile' -o -name "$2" \))
  build_image "$image" "$dockerfile" "$CPU_DIR" "$(hash_paths "$CPU_DIR" "${files[@]}")"
}

# ---------------------------------------------------------------------------------------------
# gpu-cluster/ray-serve:0.1.0-cpu: a wheelhouse on the host (the image build needs no index
# and no compiler), staged with the package files in a context of its own.

# Fills $CACHE_DIR/wheelhouse/<hash of the lock> once; prints its path.
wheelhouse() {
  local key dir tmp f
  key="$(cat "$LOCK" <(printf '%s\n' "${BUILD_REQUIREMENTS[@]}") | hash_stdin)"
  dir="$CACHE_DIR/wheelhouse/$key"
  if [ -f "$dir/.complete" ]; then
    echo "$dir"
    return 0
  fi
  "$PYTHON" -c 'import sys; assert sys.version_info[:2] == (3, 11)' 2>/dev/null \
    || die "$PYTHON is not Python 3.11 (the image's Python); set PYTHON"
  say "filling the wheelhouse $dir from requirements/cpu.lock (once per lock)"
  tmp="$dir.partial"
  rm -rf "$tmp"
  mkdir -p "$tmp"
  # torch==2.13.0+cpu: from pip's find-links (a local wheel folder here) or the PyTorch CPU
  # index (PIP_EXTRA_INDEX_URL=https://download.pytorch.org/whl/cpu).
  "$PYTHON" -m pip download --quiet --no-deps -r "$LOCK" -d "$tmp" 2> >(grep -v 'is ignored' >&2)
  "$PYTHON" -m pip download --quiet --no-deps "${BUILD_REQUIREMENTS[@]}" -d "$tmp"
  for f in "$tmp"/*.tar.gz "$tmp"/*.zip; do
    [ -f "$f" ] || continue
    say "building a wheel of $(basename "$f")"
    "$PYTHON" -m pip wheel --quiet --no-deps -w "$tmp" "$f"
    rm -f "$f"
  done
  touch "$tmp/.complete"
  mkdir -p "$(dirname "$dir")"
  # Keep only this lock's wheelhouse (~1 GB each).
  find "$(dirname "$dir")" -mindepth 1 -maxdepth 1 -type d ! -name "$key.partial" -exec rm -rf {} +
  mv "$tmp" "$dir"
  echo "$dir"
}

# The build context: the files deploy/docker/Dockerfile copies (as its .dockerignore lets
# through), the lock and the wheelhouse. Hard links where possible: nothing big is copied.
stage_ray_serve() {
  local stage="$1" wheels="$2"
  mkdir -p "$stage"
  if [ "$(cat "$stage/.wheelhouse" 2>/dev/null)" != "$wheels" ]; then
    rm -rf "$stage/wheelhouse"
    mkdir -p "$stage/wheelhouse"
    cp -al "$wheels/." "$stage/wheelhouse/" 2>/dev/null || cp -a "$wheels/." "$stage/wheelhouse/"
    rm -f "$stage/wheelhouse/.complete"
    echo "$wheels" >"$stage/.wheelhouse"
  fi
  rm -rf "$stage/src" "$stage/deploy" "$stage/requirements" "$stage/pyproject.toml" "$stage/README.md"
  mkdir -p "$stage/requirements"
  cp "$LOCK" "$stage/requirements/"
  tar -C "$ROOT" -c --exclude=__pycache__ --exclude='*.pyc' --exclude='*.egg-info' \
    --exclude=deploy/compose/.env pyproject.toml README.md src deploy | tar -C "$stage" -x
  cp "$CPU_DIR/ray-serve.Dockerfile" "$stage/Dockerfile"
}

# Tags the image the last build made for its `wheels` stage (legacy builder output: the last
# " ---> ID" before the next stage's FROM); the one of a previous lock goes.
keep_wheels_stage() {
  local id previous
  id="$(awk '/^Step [0-9]+\/[0-9]+ : FROM / { if (in_stage) { print last; exit } in_stage = / [Aa][Ss] wheels$/ }
             /^ ---> [0-9a-f]+$/ { last = $2 }' "$1")"
  [ -n "$id" ] || return 0
  previous="$(image_id "$WHEELS_IMAGE")"
  docker_ tag "$id" "$WHEELS_IMAGE"
  remove_superseded "$previous"
}

build_ray_serve() {
  local wheels stage inputs
  wheels="$(wheelhouse)"
  stage="$CACHE_DIR/ray-serve-context"
  stage_ray_serve "$stage" "$wheels"
  # The wheelhouse is named by the lock's hash: its name stands for its contents.
  inputs="wheelhouse=$(basename "$wheels") app=$(hash_paths "$stage" Dockerfile requirements pyproject.toml README.md src deploy)"
  build_image "$RAY_SERVE_IMAGE" "$stage/Dockerfile" "$stage" "$inputs" \
    "deploy/docker/cpu/ray-serve.Dockerfile, context $stage"
  [ -z "$BUILT_LOG" ] || keep_wheels_stage "$BUILT_LOG"
}

# ---------------------------------------------------------------------------------------------

targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(nginx prometheus alertmanager ray-serve)
for target in "${targets[@]}"; do
  case "$target" in
    base | nginx | prometheus | alertmanager | ray-serve) ;;
    "$BASE_IMAGE" | gpu-cluster/nginx:debian | gpu-cluster/prometheus:debian) ;;
    gpu-cluster/alertmanager:debian | "$RAY_SERVE_IMAGE") ;;
    *) die "unknown image '$target' (base, nginx, prometheus, alertmanager, ray-serve)" ;;
  esac
done
docker_ info >/dev/null 2>&1 || die "no Docker engine answers: run scripts/docker-setup.sh"
mkdir -p "$LOG_DIR"
# One build at a time (the staged context and the wheelhouse are shared).
exec 9>"$CACHE_DIR/build-images.lock"
flock -n 9 || { say "waiting for another scripts/build-images.sh to finish"; flock 9; }

total_start="$(now)"
# Every image is built on the base (and its id is one of their inputs): first make sure of it.
build_base
for target in "${targets[@]}"; do
  case "$target" in
    nginx | gpu-cluster/nginx:debian) build_small gpu-cluster/nginx:debian nginx.Dockerfile ;;
    prometheus | gpu-cluster/prometheus:debian) build_small gpu-cluster/prometheus:debian prometheus.Dockerfile ;;
    alertmanager | gpu-cluster/alertmanager:debian) build_small gpu-cluster/alertmanager:debian alertmanager.Dockerfile ;;
    ray-serve | "$RAY_SERVE_IMAGE") build_ray_serve ;;
  esac
done
say "images ready in $(elapsed "$total_start")"
