"""The rendered Serve config: valid for Ray Serve, and it builds the same application."""

from __future__ import annotations

import json

from ray.serve.schema import ServeDeploySchema
from typer.testing import CliRunner

from gpucluster.cli.main import app as cli
from gpucluster.config import Config, load_config
from gpucluster.config.keys import KeySources, store_path
from gpucluster.config.names import APP_NAME
from gpucluster.serving.app import app_from_args
from gpucluster.serving.deploy import load_builder
from gpucluster.serving.serve_config import IMPORT_PATH, serve_config

CONFIG = Config(
    models=[
        {"id": "a", "source": "builtin:smollm2-135m-instruct", "max_num_seqs": 4},
        {"id": "b", "source": "Qwen/Qwen2.5-0.5B-Instruct", "accelerator": "gpu"},
    ]
)
# What `gpucluster prepare` leaves in a model cache at /models: the built-in conversion, and the
# Hugging Face model pulled at its default revision.
WEIGHTS = {"a": "/models/smollm2-135m-instruct", "b": "/models/hf/Qwen--Qwen2.5-0.5B-Instruct/main"}


def test_rendered_config_is_a_valid_serve_deploy_config():
    rendered = serve_config(CONFIG, WEIGHTS, KeySources(files=("/keys",)), http_host="0.0.0.0")
    schema = ServeDeploySchema.model_validate(rendered)
    assert schema.http_options.host == "0.0.0.0"
    assert schema.http_options.port == CONFIG.platform.ports.serve_http
    (application,) = schema.applications
    assert (application.name, application.route_prefix) == (APP_NAME, "/")
    assert application.import_path == IMPORT_PATH
    assert rendered["proxy_location"] == "HeadOnly"


def test_the_import_path_names_the_builder_and_its_args_round_trip():
    # Building the application needs a Ray cluster: local mode proves it live, through this file.
    (application,) = json.loads(json.dumps(serve_config(CONFIG, WEIGHTS, KeySources())))[
        "applications"
    ]
    assert load_builder(application["import_path"]) is app_from_args
    args = application["args"]
    assert Config(models=args["models"]) == CONFIG
    assert args["weights"] == WEIGHTS
    assert KeySources.from_dict(args["api_keys"]) == KeySources()


def test_cli_renders_the_same_config_for_another_host(tmp_path):
    config_file = tmp_path / "platform.yaml"
    config_file.write_text(
        "models:\n  - id: a\n    source: builtin:smollm2-135m-instruct\n    max_num_seqs: 4\n"
        "  - id: b\n    source: Qwen/Qwen2.5-0.5B-Instruct\n    accelerator: gpu\n"
    )
    result = CliRunner().invoke(
        cli,
        [
            "render",
            "serve-config",
            "-c",
            str(config_file),
            "--model-cache",
            "/models",
            "--http-host",
            "0.0.0.0",
            "--api-keys-file",
            "/keys",
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    # the named key store is where `gpucluster keys create` writes on that host
    keys = KeySources(files=("/keys",), store=str(store_path(load_config(config_file))))
    assert json.loads(result.output) == serve_config(CONFIG, WEIGHTS, keys, http_host="0.0.0.0")


def test_cli_names_a_bad_model_source(tmp_path):
    config_file = tmp_path / "platform.yaml"
    config_file.write_text("models:\n  - id: a\n    source: not a source\n")
    result = CliRunner().invoke(cli, ["render", "serve-config", "-c", str(config_file)])
    assert result.exit_code == 2
    assert "not a source" in result.output
