"""platform.kubernetes: how clients reach the edge on Kubernetes; bad values name key and reason."""

from __future__ import annotations

from pathlib import Path

import pytest

from gpucluster.config import Config, ConfigError, load_config


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "platform.yaml"
    path.write_text(text)
    return path


def kubernetes(tmp_path: Path, body: str) -> Config:
    indented = "".join(f"    {line}\n" for line in body.splitlines())
    return load_config(write(tmp_path, f"platform:\n  kubernetes:\n{indented}"), env={})


def test_defaults_attach_a_route_to_an_existing_gateway_and_render_no_ingress():
    settings = load_config(None, env={}).platform.kubernetes
    assert (settings.gateway.create, settings.gateway.class_name) == (False, None)
    assert (settings.gateway.name, settings.gateway.namespace) == ("gpu-cluster", None)
    assert settings.gateway.hostnames == []
    assert settings.ingress is False


def test_good_settings_are_loaded(tmp_path):
    created = kubernetes(
        tmp_path,
        "gateway: {create: true, class_name: eg, hostnames: [api.example.com, '*.example.org']}",
    )
    assert created.platform.kubernetes.gateway.class_name == "eg"
    existing = kubernetes(tmp_path, "gateway: {name: shared, namespace: gateways}")
    assert existing.platform.kubernetes.gateway.namespace == "gateways"
    ingress = kubernetes(tmp_path, "ingress: true\ningress_class: traefik")
    assert ingress.platform.kubernetes.ingress_class == "traefik"


@pytest.mark.parametrize(
    ("body", "key", "reason"),
    [
        ("gateway: {create: true}", "platform.kubernetes.gateway", "needs its class_name"),
        ("gateway: {class_name: eg}", "platform.kubernetes.gateway", "set create: true"),
        (
            "gateway: {create: true, class_name: eg, namespace: infra}",
            "platform.kubernetes.gateway",
            "a rendered Gateway lives in the namespace",
        ),
        (
            "gateway: {name: My_Gateway}",
            "platform.kubernetes.gateway.name",
            "not a Kubernetes object name",
        ),
        (
            "gateway: {namespace: a.b}",
            "platform.kubernetes.gateway.namespace",
            "not a namespace name",
        ),
        (
            "gateway: {hostnames: ['10.0.0.1']}",
            "platform.kubernetes.gateway.hostnames",
            "no IP address",
        ),
        (
            "gateway: {hostnames: ['api.example.com:443']}",
            "platform.kubernetes.gateway.hostnames",
            "not host names: 'api.example.com:443'",
        ),
        (
            "gateway: {hostnames: [a.example, a.example]}",
            "platform.kubernetes.gateway.hostnames",
            "unique",
        ),
        ("gateway: {listener: http}", "platform.kubernetes.gateway.listener", "unknown key"),
        (
            "ingress: true\ngateway: {name: other}",
            "platform.kubernetes",
            "instead of the Gateway API route",
        ),
        ("ingress_class: traefik", "platform.kubernetes", "set ingress: true too"),
        (
            "ingress: true\ningress_class: Bad",
            "platform.kubernetes.ingress_class",
            "not an IngressClass name",
        ),
    ],
)
def test_bad_values_name_key_and_reason(tmp_path, body, key, reason):
    with pytest.raises(ConfigError) as err:
        kubernetes(tmp_path, body)
    assert f"{key}" in str(err.value)
    assert reason in str(err.value)


def test_the_effective_config_round_trips_as_the_gatekeeper_reads_it():
    # the gatekeeper reads Config.model_dump_json(), every key present: still valid
    for settings in ({"ingress": True}, {"gateway": {"create": True, "class_name": "eg"}}):
        config = Config(platform={"kubernetes": settings})
        assert Config.model_validate_json(config.model_dump_json()) == config
