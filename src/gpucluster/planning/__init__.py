"""Offline planning arithmetic: what a model needs (weights, KV cache, host memory) on which
hardware, and the pod sizes of the KubeRay deployment. No HTTP, no probing of a running
platform: `ops/` asks the platform, `planning/` computes.

hardware: the accelerator and model tables; shapes: which model is planned and its shape (a
config.json on this host, the built-in model, the table); inputs: what a plan is asked
(PlanInputs) and its checks; arithmetic: the formulas; advice: reasons, fixes and notes;
capacity: `plan`, putting them together; pod_sizes: a KubeRay pod's terms from the same maths;
platform_pods: those pods for a platform config (each group, the overrides)."""
