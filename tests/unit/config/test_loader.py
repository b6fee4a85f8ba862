"""Config validation: defaults, good files, unknown keys, bad values, env overrides."""

from pathlib import Path

import pytest

from gpucluster.config import BUILTIN_MODEL_ID, ConfigError, load_config


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "platform.yaml"
    path.write_text(text)
    return path


def test_no_file_means_the_builtin_model_on_cpu_with_the_guide_ports():
    config = load_config(None, env={})
    assert [m.id for m in config.models] == [BUILTIN_MODEL_ID]
    assert config.models[0].accelerator == "cpu"
    ports = config.platform.ports
    assert (ports.nginx_http, ports.ray_dashboard, ports.prometheus, ports.grafana) == (
        18080,
        18265,
        19090,
        13000,
    )
    assert (ports.serve_http, ports.ray_metrics) == (8000, 8080)
    assert config.platform.bind_host == "127.0.0.1"


def test_a_good_file_is_loaded(tmp_path):
    path = write(
        tmp_path,
        """
models:
  - id: qwen-32b
    source: Qwen/Qwen2.5-32B-Instruct
    accelerator: gpu
    tensor_parallel_size: 4
    max_model_len: 8192
    replicas: {min: 1, max: 3}
    engine_kwargs: {enable_prefix_caching: true}
platform:
  ports: {serve_http: 9000}
""",
    )
    config = load_config(path, env={})
    model = config.model("qwen-32b")
    assert model.tensor_parallel_size == 4
    assert model.replicas.max == 3
    assert model.engine_kwargs == {"enable_prefix_caching": True}
    assert config.platform.ports.serve_http == 9000


def test_unknown_key_is_named_with_the_file(tmp_path):
    path = write(tmp_path, "models:\n  - id: a\n    tensor_paralel_size: 2\n")
    with pytest.raises(ConfigError) as err:
        load_config(path, env={})
    assert str(path) in str(err.value)
    assert "models.0.tensor_paralel_size: unknown key" in str(err.value)


@pytest.mark.parametrize(
    ("text", "key", "reason"),
    [
        (
            "models:\n  - gpu_memory_utilization: 1.5\n",
            "models.0.gpu_memory_utilization",
            "less than or equal to 1",
        ),
        (
            "platform:\n  ports:\n    nginx_http: 70000\n",
            "platform.ports.nginx_http",
            "less than or equal to 65535",
        ),
        ("models:\n  - replicas: {min: 3, max: 1}\n", "models.0.replicas", "must not exceed max"),
        ("models: []\n", "models", "at least 1"),
        ("models:\n  - id: a\n  - id: a\n", "models", "unique"),
        ("models:\n  - id: 'has space'\n", "models.0.id", "letters, digits"),
        ("models:\n  - tensor_parallel_size: 2\n", "models.0", "accelerator is cpu"),
        (
            "models:\n  - autoscaling: {kv_cache_high: 1.2}\n",
            "models.0.autoscaling.kv_cache_high",
            "less than or equal to 1",
        ),
        (
            "models:\n  - autoscaling: {kv_cache_low: -0.1}\n",
            "models.0.autoscaling.kv_cache_low",
            "greater than or equal to 0",
        ),
        (
            "models:\n  - autoscaling: {kv_cache_low: 0.9, kv_cache_high: 0.5}\n",
            "models.0.autoscaling",
            "must be below kv_cache_high",
        ),
        (
            "models:\n  - autoscaling: {upscale_delay_s: -1}\n",
            "models.0.autoscaling.upscale_delay_s",
            "greater than or equal to 0",
        ),
        (
            "models:\n  - autoscaling: {target_ongoing_requests: 0}\n",
            "models.0.autoscaling.target_ongoing_requests",
            "greater than 0",
        ),
        (
            "models:\n  - autoscaling: {scale_up_when: 1}\n",
            "models.0.autoscaling.scale_up_when",
            "unknown key",
        ),
    ],
)
def test_bad_values_name_key_and_reason(tmp_path, text, key, reason):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as err:
        load_config(path, env={})
    assert f"{path}: {key}" in str(err.value)
    assert reason in str(err.value)


def test_env_overrides_ports_and_names_the_variable_when_bad(tmp_path):
    config = load_config(None, env={"NGINX_HTTP_PORT": "28080", "RAY_DASHBOARD_PORT": "18365"})
    assert config.platform.ports.nginx_http == 28080
    assert config.platform.ports.ray_dashboard == 18365
    with pytest.raises(
        ConfigError, match="environment variable RAY_DASHBOARD_PORT: platform.ports.ray_dashboard"
    ):
        load_config(None, env={"RAY_DASHBOARD_PORT": "not-a-port"})


def test_env_wins_over_the_file_and_config_path_comes_from_env(tmp_path):
    path = write(tmp_path, "platform:\n  ports:\n    nginx_http: 1234\n")
    config = load_config(None, env={"GPUCLUSTER_CONFIG": str(path), "NGINX_HTTP_PORT": "4321"})
    assert config.platform.ports.nginx_http == 4321


def test_state_dir_is_expanded(tmp_path):
    config = load_config(None, env={"GPUCLUSTER_STATE_DIR": "~/somewhere"})
    assert config.platform.state_dir == Path("~/somewhere").expanduser()


@pytest.mark.parametrize(
    ("text", "reason"),
    [("models: [\n", "not valid YAML at line"), ("- a\n- b\n", "top level must be a mapping")],
)
def test_unparseable_files_are_reported(tmp_path, text, reason):
    with pytest.raises(ConfigError, match=reason):
        load_config(write(tmp_path, text), env={})


def test_missing_file_is_named(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.yaml", env={})


def test_a_ray_port_in_rays_worker_port_range_is_refused_naming_the_key():
    with pytest.raises(ConfigError, match=r"ray_dashboard: 28265 lies in Ray's worker port range"):
        load_config(env={"RAY_DASHBOARD_PORT": "28265"})


def test_gcs_fault_tolerance_is_off_unless_configured(tmp_path):
    assert load_config(None, env={}).platform.kubernetes.gcs_fault_tolerance is None
    path = write(
        tmp_path,
        "platform:\n  kubernetes:\n    gcs_fault_tolerance:\n      redis_address: rediss://redis.db:6380\n"
        "      redis_password_secret: {name: gpu-cluster-redis, key: password}\n",
    )
    settings = load_config(path, env={}).platform.kubernetes.gcs_fault_tolerance
    assert settings.redis_address == "rediss://redis.db:6380"
    assert (settings.redis_password_secret.name, settings.redis_password_secret.key) == (
        "gpu-cluster-redis",
        "password",
    )
    assert settings.external_storage_namespace is None


@pytest.mark.parametrize(
    ("settings", "key", "reason"),
    [
        ("{}", "redis_address", "Field required"),
        ("{redis_address: redis}", "redis_address", "is not a Redis address: HOST:PORT"),
        ("{redis_address: 'redis:0'}", "redis_address", "port 1-65535"),
        ("{redis_address: 'redis:6379,redis2:6379'}", "redis_address", "one address"),
        ("{redis_address: 'http://redis:6379'}", "redis_address", "redis://HOST:PORT"),
        (
            "{redis_address: 'redis://:hunter2@redis:6379'}",
            "redis_address",
            "put the password in a Secret",
        ),
        (
            "{redis_address: 'redis:6379', redis_password_secret: {name: Redis_Pw, key: password}}",
            "redis_password_secret.name",
            "not a Kubernetes object name",
        ),
        (
            "{redis_address: 'redis:6379', redis_password_secret: {name: redis, key: 'a/b'}}",
            "redis_password_secret.key",
            "not a Secret key",
        ),
        (
            "{redis_address: 'redis:6379', redis_password_secret: {name: redis}}",
            "redis_password_secret.key",
            "Field required",
        ),
        (
            "{redis_address: 'redis:6379', external_storage_namespace: 'a b'}",
            "external_storage_namespace",
            "letters, digits",
        ),
        ("{redis_adress: 'redis:6379'}", "redis_adress", "unknown key"),
    ],
)
def test_bad_gcs_fault_tolerance_settings_name_the_key(tmp_path, settings, key, reason):
    path = write(tmp_path, f"platform:\n  kubernetes:\n    gcs_fault_tolerance: {settings}\n")
    with pytest.raises(ConfigError) as err:
        load_config(path, env={})
    assert f"{path}: platform.kubernetes.gcs_fault_tolerance.{key}" in str(err.value)
    assert reason in str(err.value)
