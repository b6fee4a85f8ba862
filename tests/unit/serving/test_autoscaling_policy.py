"""The Ray Serve policy hook: from Serve's autoscaling context to a decision, its log line and
its state; and the engine-load figures each replica reports (no Ray cluster needed)."""

from __future__ import annotations

import logging
from typing import ClassVar

from ray.serve.config import AutoscalingConfig, AutoscalingContext

from gpucluster.config import ModelConfig
from gpucluster.serving.autoscaling import LLMAutoscalingPolicy, deployment_options
from gpucluster.serving.engine_load import EngineLoad, attach

MODEL = ModelConfig(
    replicas={"min": 1, "max": 2}, autoscaling={"upscale_delay_s": 10, "downscale_delay_s": 20}
)


def context(
    now: float,
    policy_state: dict,
    kv: dict[str, float],
    waiting: dict[str, float],
    ongoing: float,
    running: int = 1,
    target: int = 1,
) -> AutoscalingContext:
    replicas = [f"replica-{i}" for i in range(running)]
    options = deployment_options(MODEL)["autoscaling_config"]
    return AutoscalingContext(
        deployment_id=None,
        deployment_name="PlatformLLMServer:m",
        app_name="llm",
        current_num_replicas=running,
        target_num_replicas=target,
        running_replicas=replicas,
        total_num_requests=ongoing,
        total_queued_requests=0.0,
        aggregated_metrics={"kv_cache_usage": kv, "waiting_requests": waiting},
        raw_metrics={},
        capacity_adjusted_min_replicas=1,
        capacity_adjusted_max_replicas=2,
        policy_state=policy_state,
        last_scale_up_time=None,
        last_scale_down_time=None,
        current_time=now,
        config=AutoscalingConfig(**options),
    )


def test_the_deployment_runs_our_policy_with_ray_delays_off_and_a_drain_timeout():
    options = deployment_options(MODEL)
    config = AutoscalingConfig(**options["autoscaling_config"])
    assert config.policy.policy_function == "gpucluster.serving.autoscaling:LLMAutoscalingPolicy"
    assert (config.upscale_delay_s, config.downscale_delay_s) == (0, 0)
    assert config.policy.policy_kwargs["upscale_delay_s"] == 10
    assert config.policy.policy_kwargs["target_ongoing_requests"] == MODEL.max_num_seqs
    assert options["graceful_shutdown_timeout_s"] == MODEL.autoscaling.drain_timeout_s


def test_sustained_queueing_scales_up_once_with_the_guide_line(caplog):
    policy = LLMAutoscalingPolicy(
        **deployment_options(MODEL)["autoscaling_config"]["policy"]["policy_kwargs"]
    )
    state: dict = {"serve_internal": 7}
    decisions, target = [], 1
    with caplog.at_level(logging.INFO, logger="ray.serve"):
        for second in range(14):
            # the new replica is still starting: one runs while the target is 2
            ctx = context(
                100.0 + second,
                state,
                {"replica-0": 0.5},
                {"replica-0": 4.0},
                ongoing=20,
                target=target,
            )
            target, state = policy(ctx)
            decisions.append(target)
    assert decisions == [1] * 10 + [2] * 4
    assert state["serve_internal"] == 7  # Serve's own keys survive
    lines = [r.getMessage() for r in caplog.records if "Scaling up deployment" in r.getMessage()]
    assert len(lines) == 1
    assert lines[0].startswith(
        "Scaling up deployment: adding replica (llm/PlatformLLMServer:m 1 -> 2)"
    )
    assert "requests waiting" in lines[0]


def test_idle_replicas_scale_down_with_the_guide_line(caplog):
    policy = LLMAutoscalingPolicy(
        **deployment_options(MODEL)["autoscaling_config"]["policy"]["policy_kwargs"]
    )
    state: dict = {}
    idle = {"replica-0": 0.0, "replica-1": 0.01}
    with caplog.at_level(logging.INFO, logger="ray.serve"):
        for second in range(21):
            replicas, state = policy(
                context(50.0 + second, state, idle, {}, 0, running=2, target=2)
            )
    assert replicas == 1
    assert any(
        r.getMessage().startswith(
            "Scaling down deployment: removing replica (llm/PlatformLLMServer:m 2 -> 1)"
        )
        for r in caplog.records
    )


def test_metrics_of_replicas_no_longer_running_are_ignored():
    policy = LLMAutoscalingPolicy(
        **deployment_options(MODEL)["autoscaling_config"]["policy"]["policy_kwargs"]
    )
    state: dict = {}
    for second in range(15):
        # a stopped replica's last report says the cache was full; the running one is idle
        ctx = context(
            10.0 + second, state, {"replica-0": 0.0, "gone": 1.0}, {"gone": 9.0}, ongoing=0
        )
        replicas, state = policy(ctx)
    assert replicas == 1


class SchedulerStats:
    def __init__(self, running: int, waiting: int, kv: float) -> None:
        self.num_running_reqs, self.num_waiting_reqs, self.kv_cache_usage = running, waiting, kv


def test_engine_load_keeps_the_latest_figures_and_reads_stale_ones_as_idle():
    now = [0.0]
    load = EngineLoad(clock=lambda: now[0], stale_after_s=5)
    assert load.figures() == {"running_requests": 0, "waiting_requests": 0, "kv_cache_usage": 0}
    load.record(SchedulerStats(4, 2, 0.25), None)
    load.record(None, None)  # an iteration without scheduler figures changes nothing
    now[0] = 3.0
    assert load.figures() == {"running_requests": 4, "waiting_requests": 2, "kv_cache_usage": 0.25}
    now[0] = 6.0
    assert load.figures()["running_requests"] == 0


def test_engine_load_attaches_to_a_stat_logger_list_only():
    class Manager:
        stat_loggers: ClassVar[list] = []

    class Client:
        logger_manager = Manager()

    load = EngineLoad()
    assert attach(Client(), load) and Client.logger_manager.stat_loggers == [load]
    assert not attach(object(), load)
