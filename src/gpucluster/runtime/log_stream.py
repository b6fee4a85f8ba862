"""Stream every Ray worker's output to this process's stdout, until the cluster goes away.

The compose container runs it last (`python -m gpucluster.runtime.log_stream HOST:PORT`) so
that `docker logs ray-serve` shows the Serve controller, proxy, ingress and model replicas and
the vLLM engines, including replicas started later by the autoscaler. It is a Ray driver with
`log_to_driver`: Ray forwards each worker's stdout and stderr to it, prefixed with the actor's
name and pid. It exits non-zero when the head is gone, so the container's restart policy acts.
"""

from __future__ import annotations

import sys
import time

POLL_S = 10.0


def stream(address: str) -> int:
    """Attach to the cluster at `address` and block while its head is alive."""
    import ray

    ray.init(address=address, log_to_driver=True, logging_level="WARNING")
    while True:
        time.sleep(POLL_S)
        try:
            ray.nodes()
        except Exception as exc:  # noqa: BLE001 - any failure here means the head is gone
            print(f"ERROR: lost the Ray head at {address}: {exc}", file=sys.stderr, flush=True)
            return 1


def main(argv: list[str]) -> int:
    """Entry point: `HOST:PORT` of the Ray head."""
    if len(argv) != 2:
        print("usage: python -m gpucluster.runtime.log_stream HOST:PORT", file=sys.stderr)
        return 2
    return stream(argv[1])


if __name__ == "__main__":
    sys.exit(main(sys.argv))
