"""Request routers the config can name (`models[].router`), by name.

Ray Serve LLM's PrefixCacheAffinityRouter raises on a request that has neither a prompt nor
messages (a /detokenize, say), and Serve then leaves that request waiting forever. The
platform's subclass routes such a request the way Serve's default router would.
"""

from __future__ import annotations

from typing import Any

from ray.serve.llm.request_router import PrefixCacheAffinityRouter


class PrefixAffinityRouter(PrefixCacheAffinityRouter):
    """PrefixCacheAffinityRouter for every endpoint of an LLM deployment."""

    def _extract_text_from_request(self, pending_request: Any) -> str | None:
        try:
            return super()._extract_text_from_request(pending_request)
        except ValueError:  # no prompt, no messages: nothing to match a prefix on
            return None


# `models[].router` -> the class Serve imports for the deployment (none: Serve's default).
ROUTER_CLASSES = {
    "prefix_cache_affinity": f"{__name__}:{PrefixAffinityRouter.__name__}",
}
