"""Offline planning arithmetic: what a model needs (weights, KV cache, host memory) on which
hardware, and the pod sizes of the KubeRay deployment. No HTTP, no probing of a running
platform: `ops/` asks the platform, `planning/` computes."""
