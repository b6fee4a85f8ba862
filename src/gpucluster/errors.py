"""The root of every error the package raises, and what the `gpucluster` command makes of one.

Each class says, besides its message:

- `exit_code`: the status a `gpucluster` command exits with when it ends on this error: 1 an
  operation failed, 2 bad input (an option, an argument, the configuration: fix it and rerun);
- `next_step`: a short hint the CLI prints after the message (`"next"` with --json), or None
  where every message of the class already says what to do (the raise site knows better).

A raise site may give its own: `UpError("...", next_step="gpucluster logs ray")`. The CLI has one
handler for the whole tree (gpucluster/cli/errors.py): a command that does not catch an error
ends with its message, its next step and its exit code. Where a command's exit code differs from
the class's, the command says so around the call (cli/errors.py `exiting_with`).

An error keeps the built-in base its callers and tests catch (ValueError, RuntimeError,
LookupError) beside this root. This module imports nothing, so every layer (config included:
it imports nothing else of the project) may import it.

The tree: each class's exit code, its built-in base (in parentheses; `+` a second project base),
its module, and its next step where the class has one (`next:`, `logs ray` standing for
`gpucluster logs ray`); the others' messages say what to do.

    GpuClusterError                  1  (Exception)
    ├── InputError                   2  bad input: fix the option, argument or file, and rerun
    │   ├── ConfigError              2  (ValueError) config.loader  next: `config check`
    │   ├── InterpolationError       2  (ValueError) config.interpolate  next: export the variable
    │   ├── BadKeyName               2  + KeyStoreError; config.keys: a name a key cannot have
    │   ├── ModelSourceError         2  + ModelError (ValueError); models.sources
    │   │   └── HubNotFoundError     2  models.hub_errors: no such repo or revision
    │   ├── UnknownComponent         2  (ValueError) runtime.logs
    │   ├── InvalidSettlement        2  (ValueError) runtime.admission: HTTP 400 to a replica
    │   ├── UsageError               2  (ValueError) ops.usage: --since, --by
    │   ├── WorkloadError            2  (ValueError) ops.bench.workload: the prompts file
    │   ├── ChartError               2  (RuntimeError) ops.bench.chart: no matplotlib
    │   ├── KubeRayError             2  (ValueError) render.kuberay: a model KubeRay cannot serve
    │   ├── CapacityInputError       2  (ValueError) planning.inputs: inputs no plan can take
    │   ├── UnknownNameError         2  (ValueError) planning.hardware: no table knows the name
    │   └── PodSizeError             2  (ValueError) planning.pod_sizes: a pod without a shape
    ├── KeyStoreError                1  (ValueError) config.keys: the key store refuses
    │   ├── UnknownKeyError          1  (LookupError)  next: `keys list`
    │   └── BadKeyName               (above)
    ├── ModelError                   1  models.sources
    │   ├── ModelSourceError         (above)
    │   └── ModelPrepareError        1  (RuntimeError) conversion, download, cache I/O
    │       ├── HubAccessError       1  models.hub_errors: a gated model (HF_TOKEN)
    │       ├── HubUnreachableError  1  models.hub_errors: the hub or HF_ENDPOINT
    │       ├── DiskSpaceError       1  models.hub_errors  next: `models du`
    │       ├── ChecksumError        1  models.hub_errors: pull again
    │       └── CacheBusyError       1  models.cache: another process prepares it
    ├── UpError                      1  (RuntimeError) runtime.platform  next: `logs platform`
    ├── RayStartError                1  (RuntimeError) runtime.ray_head  next: `logs ray`
    ├── JoinError                    1  (RuntimeError) runtime.worker_node
    ├── LoginError                   1  (ValueError) runtime.dashboard_logins
    │   ├── BadUserName              1
    │   ├── UnknownUser              1  (LookupError)
    │   └── UserExists               1
    ├── TemplateError                1  (ValueError) runtime.edge  next: report it (a bug)
    ├── CryptUnavailable             1  (RuntimeError) runtime.sha512_crypt: install libxcrypt
    ├── AlertmanagerUnavailable      1  (RuntimeError) runtime.alert_receiver  next: `logs ...`
    ├── PrometheusUnavailable        1  (RuntimeError) ops.prom  next: `logs prometheus`
    ├── RayApiError                  1  (ValueError) ops.ray_api  next: `logs ray`
    ├── CheckFailed                  1  ops.health: a failed check, its hint the next step
    ├── ChatError                    1  (RuntimeError) ops.chat
    ├── StreamError                  1  (RuntimeError) ops.openai_wire  next: `logs engine`
    └── BenchError                   1  (RuntimeError) ops.bench.runner

Not in the tree:

- serving/errors.py `ApiError` is an HTTP answer in the OpenAI shape (a status code, a type, a
  code, a message for the client), raised inside the Serve app and turned into a response
  there; it never reaches the CLI (ops does not import serving), and an exit code or an
  operator's next step means nothing to an API client. It stays its own root.
"""

from __future__ import annotations

FAILED = 1  # an operation failed (a check, a request, a start): exit 1
BAD_INPUT = 2  # usage or configuration: exit 2


class GpuClusterError(Exception):
    """An error of gpu-cluster: its message says what went wrong (and often what to do).

    `exit_code` and `next_step` are the class's (see the module docstring); an instance may
    carry its own (a raise site's `next_step=`, a command's `exiting_with`).
    """

    exit_code: int = FAILED
    next_step: str | None = None

    def __init__(self, *args: object, next_step: str | None = None) -> None:
        super().__init__(*args)
        if next_step is not None:
            self.next_step = next_step


class InputError(GpuClusterError):
    """Bad input: an option, an argument or the configuration; fixing it and rerunning helps."""

    exit_code: int = BAD_INPUT
