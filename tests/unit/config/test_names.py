"""Deployment names: the one the deploy driver sets is the one every reader matches."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from ray.llm._internal.serve.core.server.builder import _get_deployment_name
from ray.serve.llm import LLMConfig

from gpucluster.config.names import (
    LLM_DEPLOYMENT_MATCHER,
    LLM_DEPLOYMENT_PREFIX,
    llm_deployment_name,
)
from gpucluster.serving.llm_server import PlatformLLMServer

DEPLOY = Path(__file__).resolve().parents[3] / "deploy"


@pytest.mark.parametrize(
    "model_id", ["smollm2-135m-instruct", "qwen2.5-32b-instruct", "Qwen/Qwen2.5-32B-Instruct"]
)
def test_name_follows_ray_serve_llms_rule_for_model_ids(model_id):
    ray_rule = _get_deployment_name(LLMConfig(model_loading_config={"model_id": model_id}))
    assert llm_deployment_name(model_id) == LLM_DEPLOYMENT_PREFIX + ray_rule
    assert re.fullmatch(r"PlatformLLMServer:[A-Za-z0-9_-]+", llm_deployment_name(model_id))


def test_the_prefix_is_the_llm_deployment_class():
    # Building the application needs a Ray cluster: test_ops finds the name live in `status`.
    assert LLM_DEPLOYMENT_PREFIX == f"{PlatformLLMServer.__name__}:"


def test_rules_and_dashboards_match_llm_deployments_with_the_one_matcher():
    texts = [p.read_text() for p in (DEPLOY / "prometheus" / "rules").glob("*.yml")]
    texts += [p.read_text() for p in (DEPLOY / "grafana" / "dashboards").glob("*.json")]
    found = [m for t in texts for m in re.findall(r'deployment=~\\?"PlatformLLM[^"\\]*', t)]
    assert found, "no LLM deployment matcher in the rules or dashboards"
    expected = LLM_DEPLOYMENT_MATCHER.split('"')[1]
    assert {m.split('"')[-1] for m in found} == {expected}
