"""The names Ray Serve gives the platform's application and deployments.

Serve builds them from these: the deploy driver names the deployments with `llm_deployment_name`,
and every reader (status, diagnose, dashboards, alerts, tests) matches them with the same
definitions, so a name cannot drift between the one who sets it and the ones who read it.
"""

from __future__ import annotations

APP_NAME = "llm"
INGRESS_NAME = "OpenAiIngress"
# The LLM deployment class (serving.llm_server.PlatformLLMServer) names its deployments.
LLM_DEPLOYMENT_PREFIX = "PlatformLLMServer:"
# PromQL label matcher for every LLM deployment: `{deployment=~"PlatformLLMServer:.+"}`.
LLM_DEPLOYMENT_MATCHER = f'deployment=~"{LLM_DEPLOYMENT_PREFIX}.+"'


def llm_deployment_name(model_id: str) -> str:
    """The Serve deployment serving `model_id` (`/` and `.` are not allowed in Serve's names).

    Ray Serve LLM's own rule for model ids, kept: `Qwen/Qwen2.5-32B` -> `Qwen--Qwen2_5-32B`.
    """
    return LLM_DEPLOYMENT_PREFIX + model_id.replace("/", "--").replace(".", "_")
