"""The gatekeeper over HTTP, as nginx and the replicas use it, with a clock moved by hand."""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from itertools import count

import pytest
from prometheus_client.parser import text_string_to_metric_families
from starlette.testclient import TestClient

from gpucluster.config import Config
from gpucluster.config.keys import KeyRing, KeySources, KeyStore, Quota, store_path
from gpucluster.runtime.admission import AuthRequest, Gatekeeper, Limits
from gpucluster.runtime.edge import ensure_operator_key, gatekeeper_service
from gpucluster.runtime.edge_metrics import EdgeMetrics
from gpucluster.runtime.gatekeeper import build_app, make_gatekeeper, parse_args, read_config
from gpucluster.runtime.state import StateDir
from gpucluster.runtime.usage_log import LastUsed, Usage, UsageLog

RPS, BURST = 2, 3  # BURST + 1 requests pass at once
READ_TIMEOUT_S = 30
CHAT = "/v1/chat/completions"


class Edge:
    """A gatekeeper with a key store in a temporary state dir, reached through its HTTP app."""

    def __init__(self, tmp_path, clock, security: dict | None = None) -> None:
        self.config = Config.model_validate(
            {
                "platform": {
                    "state_dir": str(tmp_path),
                    "edge": {
                        "rate_limit_rps": RPS,
                        "rate_limit_burst": BURST,
                        "read_timeout_s": READ_TIMEOUT_S,
                    },
                    "security": security or {},
                },
                "models": [{"id": "m1"}, {"id": "m2", "source": "/models/m2"}],
            }
        )
        self.state = StateDir(tmp_path)
        self.state.ensure()
        self.store = KeyStore(store_path(self.config))
        self.clock = clock
        clock.now = 1000.0
        self.wall = 1_700_000_000.0
        self._ids = count()
        self.client: TestClient | None = None

    def start(self, operator_files=()) -> TestClient:
        ring = KeyRing(self.store.path, [], self.clock, operator_files=operator_files)
        gatekeeper = Gatekeeper(
            ring,
            self.config.platform.security,
            ["m1", "m2"],
            Limits.from_config(self.config),
            UsageLog(self.state.usage_log),
            LastUsed(self.state.keys_last_used_file, self.clock, lambda: self.wall),
            EdgeMetrics(),
            self.clock,
            lambda: self.wall,
        )
        self.client = TestClient(build_app(gatekeeper, flush_every_s=3600))
        self.client.__enter__()
        return self.client

    def stop(self) -> None:
        if self.client is not None:
            self.client.__exit__(None, None, None)
            self.client = None

    def auth(
        self,
        authorization: str | None = None,
        *,
        addr: str = "198.51.100.7",
        method: str = "POST",
        uri: str = CHAT,
        request_id: str | None = None,
    ):
        headers = {
            "X-Client-Addr": addr,
            "X-Original-Method": method,
            "X-Original-URI": uri,
            "X-Request-Id": request_id or f"req-{next(self._ids)}",
        }
        if authorization is not None:
            headers["Authorization"] = authorization
        return self.client.get("/auth", headers=headers)

    def settle(
        self,
        request_id: str,
        key: str,
        *,
        model: str = "m1",
        status: int = 200,
        prompt: int = 0,
        completion: int = 0,
        **extra,
    ):
        body = {
            "request_id": request_id,
            "key": key,
            "model": model,
            "path": CHAT,
            "status": status,
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "ttft_ms": 12.5,
            "duration_ms": 250.0,
            **extra,
        }
        response = self.client.post("/settle", json=body)
        assert response.status_code == 204, response.text
        return response

    def usage_lines(self) -> list[dict]:
        return [json.loads(line) for line in self.state.usage_log.read_text().splitlines()]

    def metrics(self) -> dict[tuple[str, tuple], float]:
        samples = {}
        for family in text_string_to_metric_families(self.client.get("/metrics").text):
            for s in family.samples:
                samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
        return samples


@pytest.fixture
def edge(tmp_path, clock) -> Iterator[Edge]:
    made = Edge(tmp_path, clock)
    yield made
    made.stop()


def test_a_valid_key_is_admitted_with_its_name(edge):
    key = edge.store.create("team-a")
    edge.start()
    response = edge.auth(f"Bearer {key}")
    assert response.status_code == 204
    assert response.headers["X-Key-Name"] == "team-a"
    assert "X-Deny-Code" not in response.headers
    assert edge.client.get("/healthz").status_code == 200


@pytest.mark.parametrize(
    ("authorization", "code"),
    [
        (None, "missing_api_key"),
        ("Basic abc", "invalid_api_key"),
        ("Bearer gpc-wrong", "invalid_api_key"),
    ],
)
def test_missing_and_unknown_keys_get_401_saying_why(edge, authorization, code):
    key = edge.store.create("team-a")
    edge.start()
    response = edge.auth(authorization)
    assert response.status_code == 401
    assert response.headers["X-Deny-Code"] == code
    message = response.headers["X-Deny-Message"]
    assert message.isascii() and '"' not in message and "\\" not in message
    assert key not in message and "gpc-wrong" not in message
    [line] = edge.usage_lines()
    assert (line["key"], line["status"], line["refused"]) == ("-", 401, code)


def test_a_flood_of_random_keys_from_one_address_is_limited_after_the_burst(edge):
    key = edge.store.create("team-a")
    edge.start()
    answers = [edge.auth(f"Bearer {secrets.token_urlsafe(16)}").status_code for _ in range(100)]
    assert answers[: BURST + 1] == [401] * (BURST + 1)
    assert set(answers[BURST + 1 :]) == {403}  # nginx answers these with 429
    limited = edge.auth("Bearer another-random-value")
    assert limited.headers["X-Deny-Code"] == "rate_limit_exceeded"
    assert int(limited.headers["X-Retry-After"]) >= 1
    # another address, and a valid key from the same address, are not held back by the flood
    assert edge.auth("Bearer random", addr="203.0.113.9").status_code == 401
    assert edge.auth(f"Bearer {key}").status_code == 204
    # the refusals cost nothing more than this process: counted by reason
    metrics = edge.metrics()
    refused = metrics[("gpucluster_edge_refusals_total", (("reason", "rate_limit_exceeded"),))]
    assert refused == 100 - (BURST + 1) + 1
    assert (
        metrics[("gpucluster_edge_refusals_total", (("reason", "invalid_api_key"),))] == BURST + 2
    )


def test_the_address_bucket_refills_with_time(edge):
    edge.store.create("team-a")
    edge.start()
    for _ in range(BURST + 1):
        edge.auth(None)
    assert edge.auth(None).status_code == 403
    edge.clock.now += 1 / RPS
    assert edge.auth(None).status_code == 401


def test_every_spelling_of_one_key_shares_its_bucket(edge):
    key = edge.store.create("team-a")
    other = edge.store.create("team-b")
    edge.start()
    spellings = [f"Bearer {key}", f"bearer  {key}", f"BEARER {key} "]
    answers = [edge.auth(spellings[i % 3], addr=f"10.0.0.{i}").status_code for i in range(12)]
    assert answers.count(204) == BURST + 1
    refused = edge.auth(f"bearer  {key}")
    assert refused.status_code == 403
    assert refused.headers["X-Deny-Code"] == "rate_limit_exceeded"
    assert "team-a" in refused.headers["X-Deny-Message"]
    assert edge.auth(f"Bearer {other}").status_code == 204  # a second key is unaffected


def test_authentication_off_admits_without_a_name_but_limits_per_address(edge):
    edge.start()
    response = edge.auth(None)
    assert response.status_code == 204 and response.headers["X-Key-Name"] == "-"
    for _ in range(BURST):
        assert edge.auth(f"Bearer {secrets.token_hex(8)}").status_code == 204
    assert edge.auth(None).headers["X-Deny-Code"] == "rate_limit_exceeded"
    assert edge.auth(None, addr="192.0.2.1").status_code == 204


def test_the_operator_key_is_named_but_does_not_turn_authentication_on(edge):
    operator = edge.state.operator_key_file
    operator.write_text("op-key\n")
    edge.start(operator_files=[operator])
    assert edge.auth("Bearer op-key").headers["X-Key-Name"] == "gpucluster-operator"
    assert edge.auth(None).headers["X-Key-Name"] == "-"


def test_requests_per_minute_quota_with_retry_after(edge):
    key = edge.store.create("team-a", Quota(requests_per_minute=3))
    other = edge.store.create("team-b", Quota(requests_per_minute=3))
    edge.start()
    for i in range(3):
        edge.clock.now += 1  # within the rate limit: the quota is what refuses
        assert edge.auth(f"Bearer {key}", method="GET", uri="/v1/models").status_code == 204, i
    edge.clock.now += 1
    refused = edge.auth(f"Bearer {key}")
    assert refused.status_code == 403
    assert refused.headers["X-Deny-Code"] == "quota_exceeded"
    assert "requests_per_minute" in refused.headers["X-Deny-Message"]
    assert int(refused.headers["X-Retry-After"]) == 57  # the first request leaves the window
    assert edge.auth(f"Bearer {other}").status_code == 204
    edge.clock.now += 57
    assert edge.auth(f"Bearer {key}").status_code == 204
    metrics = edge.metrics()
    assert (
        metrics[
            (
                "gpucluster_key_quota_refusals_total",
                (("key", "team-a"), ("quota", "requests_per_minute")),
            )
        ]
        == 1
    )
    assert (
        metrics[
            (
                "gpucluster_key_errors_total",
                (("class", "quota_exceeded"), ("key", "team-a"), ("model", "other")),
            )
        ]
        == 1
    )


def test_tokens_per_minute_are_charged_at_settle_and_checked_at_admission(edge):
    key = edge.store.create("team-a", Quota(tokens_per_minute=100))
    other = edge.store.create("team-b", Quota(tokens_per_minute=100))
    edge.start()
    assert edge.auth(f"Bearer {key}", request_id="r1").status_code == 204
    assert edge.auth(f"Bearer {key}", request_id="r2").status_code == 204  # not charged yet
    edge.settle("r1", "team-a", prompt=30, completion=40)
    edge.clock.now += 10
    assert edge.auth(f"Bearer {key}", request_id="r3").status_code == 204  # 70 < 100
    edge.settle("r2", "team-a", prompt=10, completion=20)  # 100: full
    refused = edge.auth(f"Bearer {key}", request_id="r4")
    assert refused.headers["X-Deny-Code"] == "quota_exceeded"
    assert "tokens_per_minute" in refused.headers["X-Deny-Message"]
    assert int(refused.headers["X-Retry-After"]) == 50  # when r1's 70 tokens age out
    # listing models runs no engine: not held back by the token quota
    assert edge.auth(f"Bearer {key}", method="GET", uri="/v1/models").status_code == 204
    assert edge.auth(f"Bearer {other}").status_code == 204
    edge.clock.now += 50
    assert edge.auth(f"Bearer {key}", request_id="r5").status_code == 204


def test_concurrency_quota_slots_are_released_by_settle_once(edge):
    key = edge.store.create("team-a", Quota(concurrent_requests=2))
    other = edge.store.create("team-b", Quota(concurrent_requests=2))
    edge.start()
    assert edge.auth(f"Bearer {key}", request_id="a").status_code == 204
    assert edge.auth(f"Bearer {key}", request_id="b").status_code == 204
    refused = edge.auth(f"Bearer {key}", request_id="c")
    assert refused.headers["X-Deny-Code"] == "quota_exceeded"
    assert "concurrent_requests" in refused.headers["X-Deny-Message"]
    assert refused.headers["X-Retry-After"] == "1"
    assert edge.auth(f"Bearer {other}", request_id="o").status_code == 204
    # GETs hold no slot
    assert edge.auth(f"Bearer {key}", method="GET", uri="/v1/models").status_code == 204
    edge.settle("a", "team-a")
    edge.settle("a", "team-a")  # reported twice: frees one slot, counted once
    edge.clock.now += 1
    assert edge.auth(f"Bearer {key}", request_id="d").status_code == 204
    assert edge.auth(f"Bearer {key}", request_id="e").status_code == 403
    settled = [line for line in edge.usage_lines() if line["refused"] is None]
    assert [line["request_id"] for line in settled] == ["a"]


def test_unsettled_slots_expire_after_the_read_timeout(edge):
    key = edge.store.create("team-a", Quota(concurrent_requests=1))
    edge.start()
    assert edge.auth(f"Bearer {key}", request_id="lost").status_code == 204
    edge.clock.now += READ_TIMEOUT_S - 1
    assert edge.auth(f"Bearer {key}", request_id="next").status_code == 403
    edge.clock.now += 1
    assert edge.auth(f"Bearer {key}", request_id="next").status_code == 204


def test_configured_quota_wins_over_the_stored_one(tmp_path, clock):
    edge = Edge(tmp_path, clock, {"quotas": {"team-a": {"requests_per_minute": 1}}})
    key = edge.store.create("team-a", Quota(requests_per_minute=50))
    edge.start()
    try:
        assert edge.auth(f"Bearer {key}").status_code == 204
        assert edge.auth(f"Bearer {key}").headers["X-Deny-Code"] == "quota_exceeded"
    finally:
        edge.stop()


def test_usage_log_has_one_line_per_request_and_never_a_key_or_prompt(edge):
    key = edge.store.create("team-a")
    edge.start()
    edge.auth(f"Bearer {key}", request_id="r1")
    edge.settle(
        "r1",
        "team-a",
        prompt=7,
        completion=5,
        prompt_text="SECRET PROMPT",
        messages=[{"content": "SECRET PROMPT"}],
    )
    edge.auth("Bearer gpc-not-a-key", request_id="r2")
    first, second = edge.usage_lines()
    assert first == {
        "time": "2023-11-14T22:13:20.000Z",
        "request_id": "r1",
        "key": "team-a",
        "model": "m1",
        "path": CHAT,
        "status": 200,
        "prompt_tokens": 7,
        "completion_tokens": 5,
        "ttft_ms": 12.5,
        "duration_ms": 250.0,
        "refused": None,
    }
    assert (second["key"], second["status"], second["refused"]) == ("-", 401, "invalid_api_key")
    assert second["prompt_tokens"] == 0 and second["completion_tokens"] == 0
    edge.stop()  # flushes last use
    written = edge.state.usage_log.read_text() + edge.state.keys_last_used_file.read_text()
    for secret in (key, "gpc-not-a-key", "SECRET PROMPT"):
        assert secret not in written
    assert json.loads(edge.state.keys_last_used_file.read_text()) == {
        "team-a": "2023-11-14T22:13:20.000Z"
    }


def test_usage_log_rotates(tmp_path):
    log = UsageLog(tmp_path / "usage.jsonl", max_bytes=2000, backups=2)
    for i in range(100):
        log.write(1e9 + i, Usage(f"r{i}", "k", "m", "/", 200))
    log.close()
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["usage.jsonl", "usage.jsonl.1", "usage.jsonl.2"]
    assert all(p.stat().st_size <= 2000 for p in tmp_path.iterdir())


def test_metrics_have_bounded_labels_and_totals_matching_the_settles(edge):
    key = edge.store.create("team-a")
    edge.start()
    reports = [
        ("r1", "team-a", "m1", 200, 10, 20),
        ("r2", "team-a", "m2", 200, 5, 6),
        ("r3", "team-a", "m1", 500, 3, 0),
        ("r4", "gpc-raw-key", "m1", 200, 1, 1),
        ("r5", "team-a", "not-a-model", 404, 0, 0),
    ]
    for rid, name, model, status, prompt, completion in reports:
        edge.settle(rid, name, model=model, status=status, prompt=prompt, completion=completion)
    edge.auth(f"Bearer {key}")  # admitted: counted when settled, not here
    metrics = edge.metrics()
    text = edge.client.get("/metrics").text
    assert "gpc-raw-key" not in text and "not-a-model" not in text and key not in text
    labels = {dict(lbl).get("key") for (_, lbl) in metrics} - {None}
    models = {dict(lbl).get("model") for (_, lbl) in metrics} - {None}
    assert labels == {"team-a", "-"} and models == {"m1", "m2", "other"}

    def total(name: str) -> float:
        return sum(v for (n, _), v in metrics.items() if n == name)

    assert total("gpucluster_key_requests_total") == len(reports)
    assert total("gpucluster_key_prompt_tokens_total") == sum(r[4] for r in reports)
    assert total("gpucluster_key_completion_tokens_total") == sum(r[5] for r in reports)
    assert total("gpucluster_key_request_duration_seconds_count") == len(reports)
    assert (
        metrics[
            (
                "gpucluster_key_requests_total",
                (("key", "team-a"), ("model", "m1"), ("status_class", "5xx")),
            )
        ]
        == 1
    )
    assert (
        metrics[
            (
                "gpucluster_key_errors_total",
                (("class", "server_error"), ("key", "team-a"), ("model", "m1")),
            )
        ]
        == 1
    )
    assert (
        metrics[
            (
                "gpucluster_key_errors_total",
                (("class", "client_error"), ("key", "team-a"), ("model", "other")),
            )
        ]
        == 1
    )
    assert metrics[("gpucluster_key_prompt_tokens_total", (("key", "-"), ("model", "m1")))] == 1
    usage = edge.usage_lines()
    assert sum(line["prompt_tokens"] for line in usage) == total(
        "gpucluster_key_prompt_tokens_total"
    )


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ("not json", "Expecting value"),
        ("[]", "JSON object"),
        ('{"status": 200}', "request_id"),
        ('{"request_id": "r", "status": "ok"}', "status"),
        ('{"request_id": "r", "status": 200, "prompt_tokens": -1}', "prompt_tokens"),
        ('{"request_id": "r", "status": 200, "ttft_ms": true}', "ttft_ms"),
    ],
)
def test_a_malformed_settlement_is_a_400_in_the_openai_shape(edge, body, says):
    edge.start()
    response = edge.client.post("/settle", content=body)
    assert response.status_code == 400
    error = response.json()["error"]
    assert says in error["message"] and error["code"] == "invalid_settlement"


def test_the_client_address_is_the_one_nginx_decided_on(edge):
    edge.start()
    for _ in range(BURST + 1):
        edge.auth(None, addr="192.0.2.50")
    assert edge.auth(None, addr="192.0.2.50").status_code == 403
    # without the header: the TCP peer (TestClient's "testclient")
    assert edge.client.get("/auth").status_code == 204


def test_the_supervised_service_runs_this_module_with_the_effective_config(edge):
    edge.state.api_keys_file.write_text("env-key\n")
    keys = KeySources(  # as `up` gives them to the replicas too
        store=str(store_path(edge.config)),
        env_files=(str(edge.state.api_keys_file),),
        operator_files=(str(edge.state.operator_key_file),),
    )
    spec = gatekeeper_service(edge.config, edge.state, keys)
    assert spec.name == "gatekeeper"
    assert spec.argv[1:3] == ["-m", "gpucluster.runtime.gatekeeper"]
    args = parse_args(spec.argv[3:])
    assert read_config(args) == edge.config
    assert args.env_key_file == [edge.state.api_keys_file]
    assert args.operator_key_file == [edge.state.operator_key_file]
    gatekeeper = make_gatekeeper(read_config(args), args)
    assert gatekeeper.auth(AuthRequest("Bearer env-key", "192.0.2.1")).status == 204
    assert gatekeeper.auth(AuthRequest("Bearer other", "192.0.2.1")).status == 401
    gatekeeper.close()


def test_operator_key_is_created_once_and_private(edge):
    path = ensure_operator_key(edge.state)
    key = path.read_text().strip()
    assert key.startswith("gpc-") and oct(path.stat().st_mode & 0o777) == "0o600"
    assert ensure_operator_key(edge.state) == path and path.read_text().strip() == key
