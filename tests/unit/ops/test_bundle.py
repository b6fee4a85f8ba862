"""Redaction in the support bundle."""

from gpucluster.ops.bundle import redact


def test_secret_looking_keys_are_redacted_recursively():
    config = {
        "models": [{"engine_kwargs": {"hf_token": "abc", "seed": 1}}],
        "platform": {"security": {"api_keys_file": "/etc/keys", "dashboard_user": "operator"}},
    }
    redacted = redact(config)
    assert redacted["models"][0]["engine_kwargs"] == {"hf_token": "<redacted>", "seed": 1}
    assert redacted["platform"]["security"]["api_keys_file"] == "<redacted>"
    assert redacted["platform"]["security"]["dashboard_user"] == "operator"


def test_empty_secret_values_stay_empty():
    assert redact({"api_keys_file": None}) == {"api_keys_file": None}
