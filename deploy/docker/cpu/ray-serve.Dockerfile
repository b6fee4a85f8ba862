# The platform image of the CPU flavour of deploy/compose (gpu-cluster/ray-serve:0.1.0-cpu):
# what deploy/docker/Dockerfile makes from the Ray LLM image, made from Debian instead: Python
# 3.11 with exactly requirements/cpu.lock (Ray, vLLM's CPU build, torch +cpu), this package
# installed editable under /opt/gpu-cluster, user ray (1000:100), the same directories, ENV
# and ENTRYPOINT.
# Built by scripts/build-images.sh, from a staged context (~/.cache/gpu-cluster/ray-serve-context):
#   Dockerfile  pyproject.toml  README.md  src/  deploy/  requirements/cpu.lock
#   wheelhouse/   every wheel of the lock plus the build backend (no index, no compiler here)
ARG BASE_IMAGE=gpu-cluster/debian:bookworm
ARG RAY_VERSION=2.60.0
ARG VLLM_VERSION=0.29.0

# ---- runtime: what both stages share (the venv's python is this stage's /usr/bin/python3)
FROM ${BASE_IMAGE} AS runtime
# python3: Debian's 3.11; curl: the health check and `docker exec ray-serve curl .../metrics`;
# ca-certificates: Hugging Face downloads; libnuma1: vLLM's CPU kernels (vllm/_C*.so link it);
# libgomp1: numba's OpenMP pool; procps: ps/top for operators.
# User ray and the directories as in the Ray image and deploy/docker/Dockerfile; the
# directories become the named volumes' first contents, owned by ray.
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv curl ca-certificates \
        libnuma1 libgomp1 procps \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --uid 1000 --gid users --create-home --shell /bin/bash ray \
    && mkdir -p /opt/gpu-cluster /etc/gpucluster /var/lib/gpucluster /models /tmp/ray \
        /etc/gpucluster/alertmanager \
    && chown ray:users /opt/gpu-cluster /var/lib/gpucluster /models /tmp/ray \
        /etc/gpucluster/alertmanager \
    && chmod 0700 /var/lib/gpucluster
ENV VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

# ---- wheels: the pinned packages, installed offline; only /opt/venv leaves this stage
FROM runtime AS wheels
COPY requirements/cpu.lock /tmp/cpu.lock
COPY wheelhouse /tmp/wheelhouse
# --no-deps: the lock is the exact closure (as scripts/setup.sh installs it). PyPI's
# torchvision/torchaudio/torchcodec break beside torch +cpu: never kept.
RUN python3 -m venv /opt/venv \
    && pip install --no-cache-dir --no-index --find-links /tmp/wheelhouse --no-deps -r /tmp/cpu.lock \
    && (pip uninstall -y torchvision torchaudio torchcodec 2>/dev/null || true)

# ---- the image
FROM runtime
ARG RAY_VERSION
ARG VLLM_VERSION
# g++ and the Python headers: vLLM's CPU sampler is compiled by torch's inductor at the first
# sampled (temperature > 0) request; without a compiler the engine dies on it. Installed here,
# not in `runtime`, so the wheels stage stays cached.
USER root
RUN apt-get update \
    && apt-get install -y --no-install-recommends g++ python3-dev \
    && rm -rf /var/lib/apt/lists/*
COPY --from=wheels --chown=ray:users /opt/venv /opt/venv
# The editable install's build backend (pyproject.toml [build-system]), offline.
COPY wheelhouse/setuptools-*.whl /tmp/build-wheels/
USER ray

WORKDIR /opt/gpu-cluster
COPY --chown=ray:users pyproject.toml README.md ./
COPY --chown=ray:users src ./src
COPY --chown=ray:users deploy ./deploy

# Editable, as in deploy/docker/Dockerfile: the package finds deploy/ beside its source
# (src/gpucluster/_deploy links to it). The build fails unless Ray and vLLM are the pinned
# releases.
RUN pip install --no-cache-dir --no-index --find-links /tmp/build-wheels --no-deps -e . \
    && python -c "import ray, vllm; \
assert ray.__version__ == '${RAY_VERSION}', ('ray', ray.__version__); \
assert vllm.__version__.startswith('${VLLM_VERSION}'), ('vllm', vllm.__version__)" \
    && gpucluster --help > /dev/null

ENV GPUCLUSTER_CONFIG=/etc/gpucluster/platform.yaml \
    HF_HOME=/models/huggingface \
    RAY_USAGE_STATS_ENABLED=0

ENTRYPOINT ["/opt/gpu-cluster/deploy/docker/entrypoint.sh"]
