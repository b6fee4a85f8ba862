"""examples/multi-tenant.yaml, live: the built-in chat model with a LoRA adapter and tool calls,
and the built-in embedding model, side by side behind one nginx, checked against references
computed offline (transformers + peft for the adapter, sentence-transformers for embeddings).

It needs the guide's ports, so it runs after the shared platform has stopped.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import httpx
import openai
import pytest
from guide_commands import OperatorShell, all_items
from probes import eventually

from gpucluster.config import BUILTIN_EMBEDDING_MODEL_ID, BUILTIN_MODEL_ID
from gpucluster.runtime.state import StateDir

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "multi-tenant.yaml"
ADAPTER = f"{BUILTIN_MODEL_ID}:pirate"
KEY = "k-multi-tenant-0123"
PROMPT = "What is the capital of France?"
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The current weather in a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}

pytestmark = pytest.mark.stops_platform


@dataclass(frozen=True)
class Tenant:
    env: dict[str, str]
    endpoints: dict[str, str]
    state: Path

    @property
    def api(self) -> str:
        return self.endpoints["openai_api"]

    @property
    def base(self) -> str:
        return self.api.removesuffix("/v1")

    def post(self, path: str, body: dict) -> httpx.Response:
        return httpx.post(
            f"{self.base}{path}", json=body, timeout=120, headers={"Authorization": f"Bearer {KEY}"}
        )

    def cli(self, *args: str, timeout: float = 1200) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "gpucluster", *args],
            env=self.env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )


@pytest.fixture(scope="module")
def tenant(live, tmp_path_factory) -> Tenant:
    live.cli("down", "--json", timeout=300)  # the example uses the guide's ports
    state = tmp_path_factory.mktemp("multi-tenant") / "state"
    env = {
        **live.env,
        "GPUCLUSTER_CONFIG": str(EXAMPLE),
        "GPUCLUSTER_STATE_DIR": str(state),
        "GPUCLUSTER_API_KEYS": KEY,
    }
    platform = Tenant(env, {}, state)
    up = platform.cli("up", "--json")
    if up.returncode != 0:
        pytest.fail(f"up -c examples/multi-tenant.yaml failed:\n{up.stdout}\n{up.stderr[-4000:]}")
    platform = Tenant(env, json.loads(up.stdout)["endpoints"], state)
    yield platform
    platform.cli("down", "--json", timeout=300)


@pytest.fixture(scope="module")
def client(tenant) -> openai.OpenAI:
    return openai.OpenAI(base_url=tenant.api, api_key=KEY, timeout=120, max_retries=0)


def greedy(client: openai.OpenAI, model: str) -> str:
    reply = client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": PROMPT}], temperature=0, max_tokens=24
    )
    return reply.choices[0].message.content


GUIDE_COMMANDS = [
    item for item in all_items() if item.runner == "multi-tenant" and item.kind == "command"
]


@pytest.mark.parametrize("item", GUIDE_COMMANDS, ids=[item.id for item in GUIDE_COMMANDS])
def test_the_documents_multi_tenant_commands_run_as_written(tenant, item, tmp_path):
    """The README's and the guide's lines for this example (tagged `multi-tenant`)."""
    shell = OperatorShell(tmp_path, tenant.env, KEY, state_dir=tenant.state)
    run = shell.run(item, all_items())
    assert not run.problems, f"{item}\n{run.problems}\n{run}"


def test_models_lists_the_base_its_adapter_and_the_embedding_model(client):
    models = {m.id: m for m in client.models.list().data}
    assert set(models) == {BUILTIN_MODEL_ID, ADAPTER, BUILTIN_EMBEDDING_MODEL_ID}
    assert models[ADAPTER].model_extra["metadata"]["base_model"] == BUILTIN_MODEL_ID


def test_the_adapter_answers_differently_from_the_base_and_as_peft_does_offline(tenant, client):
    from gpucluster.models.adapters import adapter_dir, reference_generate

    base, adapted = greedy(client, BUILTIN_MODEL_ID), greedy(client, ADAPTER)
    assert adapted != base
    cache = Path(json.loads(tenant.cli("models", "--json").stdout)["cache_dir"])
    reference = reference_generate(
        cache / BUILTIN_MODEL_ID,
        adapter_dir(cache, f"{BUILTIN_MODEL_ID}-pirate"),
        PROMPT,
        max_tokens=24,
    )
    assert adapted == reference


def test_embeddings_match_sentence_transformers(tenant, client):
    from sentence_transformers import SentenceTransformer

    texts = ["The capital of France is Paris.", "Bananas are yellow.", "A quick brown fox."]
    served = [
        d.embedding
        for d in client.embeddings.create(model=BUILTIN_EMBEDDING_MODEL_ID, input=texts).data
    ]
    cache = Path(json.loads(tenant.cli("models", "--json").stdout)["cache_dir"])
    reference = SentenceTransformer(str(cache / BUILTIN_EMBEDDING_MODEL_ID), device="cpu").encode(
        texts, normalize_embeddings=True
    )
    for got, want in zip(served, reference, strict=True):
        cosine = sum(a * b for a, b in zip(got, want, strict=True)) / (
            math.sqrt(sum(a * a for a in got)) * math.sqrt(sum(b * b for b in want))
        )
        assert cosine > 0.9999, cosine


def test_score_and_rerank_put_the_relevant_document_first(tenant):
    score = tenant.post(
        "/v1/score",
        {
            "model": BUILTIN_EMBEDDING_MODEL_ID,
            "text_1": PROMPT,
            "text_2": ["Paris is the capital of France.", "Bananas."],
        },
    )
    assert score.status_code == 200, score.text
    first, second = (d["score"] for d in score.json()["data"])
    assert first > second
    rerank = tenant.post(
        "/v1/rerank",
        {
            "model": BUILTIN_EMBEDDING_MODEL_ID,
            "query": PROMPT,
            "documents": ["Bananas.", "Paris is the capital of France."],
        },
    )
    assert rerank.status_code == 200, rerank.text
    assert rerank.json()["results"][0]["index"] == 1


@pytest.mark.parametrize("model", [BUILTIN_MODEL_ID, BUILTIN_EMBEDDING_MODEL_ID])
def test_tokenize_and_detokenize_round_trip(tenant, model):
    text = "The capital of France is Paris."
    tokens = tenant.post("/tokenize", {"model": model, "prompt": text, "add_special_tokens": False})
    assert tokens.status_code == 200, tokens.text
    ids = tokens.json()["tokens"]
    assert ids and tokens.json()["count"] == len(ids)
    back = tenant.post("/detokenize", {"model": model, "tokens": ids})
    assert back.status_code == 200, back.text
    assert back.json()["prompt"].strip().lower() == text.lower()


@pytest.mark.parametrize(
    ("path", "body", "status", "code"),
    [
        ("/v1/embeddings", {"model": BUILTIN_MODEL_ID, "input": "x"}, 400, "wrong_model_type"),
        (
            "/v1/chat/completions",
            {"model": BUILTIN_EMBEDDING_MODEL_ID, "messages": [{"role": "user", "content": "x"}]},
            400,
            "wrong_model_type",
        ),
        (
            "/v1/embeddings",
            {"model": BUILTIN_EMBEDDING_MODEL_ID, "input": ""},
            400,
            "invalid_parameter",
        ),
        (
            "/v1/embeddings",
            {"model": BUILTIN_EMBEDDING_MODEL_ID, "input": []},
            400,
            "invalid_parameter",
        ),
        (
            "/v1/score",
            {"model": BUILTIN_EMBEDDING_MODEL_ID, "text_1": "a", "text_2": []},
            400,
            "invalid_parameter",
        ),
        (
            "/v1/rerank",
            {"model": BUILTIN_EMBEDDING_MODEL_ID, "query": "a", "documents": []},
            400,
            "invalid_parameter",
        ),
        (
            "/v1/chat/completions",
            {"model": f"{BUILTIN_MODEL_ID}:nope", "messages": [{"role": "user", "content": "x"}]},
            404,
            "model_not_found",
        ),
        ("/tokenize", {"model": "nope", "prompt": "x"}, 404, "model_not_found"),
        ("/detokenize", {"model": BUILTIN_MODEL_ID, "tokens": "abc"}, 400, None),
        (
            "/v1/rerank",
            {"model": BUILTIN_EMBEDDING_MODEL_ID, "query": "word " * 600, "documents": ["x"]},
            400,
            None,
        ),
        (
            "/v1/embeddings",
            {"model": BUILTIN_EMBEDDING_MODEL_ID, "input": "word " * 600},
            400,
            None,
        ),
    ],
)
def test_bad_requests_to_the_new_endpoints_get_4xx_in_the_openai_shape(
    tenant, path, body, status, code
):
    response = tenant.post(path, body)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error" and error["message"]
    if code is not None:
        assert error["code"] == code
    assert (
        tenant.post(
            "/v1/embeddings", {"model": BUILTIN_EMBEDDING_MODEL_ID, "input": "still serving"}
        ).status_code
        == 200
    )


def test_required_and_named_tool_choice_call_the_tool(client):
    messages = [{"role": "user", "content": "What is the weather in Paris?"}]
    for choice in ("required", {"type": "function", "function": {"name": "get_weather"}}):
        reply = client.chat.completions.create(
            model=BUILTIN_MODEL_ID,
            messages=messages,
            tools=[WEATHER_TOOL],
            tool_choice=choice,
            temperature=0,
            max_tokens=48,
        )
        (call,) = reply.choices[0].message.tool_calls
        assert call.function.name == "get_weather"
        assert isinstance(json.loads(call.function.arguments)["city"], str)


def test_auto_tool_choice_answers_with_text_or_a_parsed_call(client):
    reply = client.chat.completions.create(
        model=BUILTIN_MODEL_ID,
        messages=[{"role": "user", "content": "What is the weather in Paris?"}],
        tools=[WEATHER_TOOL],
        tool_choice="auto",
        temperature=0,
        max_tokens=48,
    )
    message = reply.choices[0].message
    # a 135M model seldom decides to call: either is a valid answer, never raw <tool_call> text
    assert message.tool_calls or (message.content and "<tool_call>" not in message.content)
    for call in message.tool_calls or []:
        assert call.function.name == "get_weather"


def test_the_router_setting_reaches_serve(tenant):
    token = StateDir(tenant.state).ray_token_file.read_text().strip()
    apps = httpx.get(
        f"{tenant.endpoints['ray_dashboard']}/api/serve/applications/",
        timeout=30,
        headers={"Authorization": f"Bearer {token}"},
    ).json()["applications"]
    deployments = next(iter(apps.values()))["deployments"]
    routers = {
        name: d["deployment_config"]["request_router_config"]["request_router_class"]
        for name, d in deployments.items()
    }
    chat = next(name for name in routers if name.endswith(BUILTIN_MODEL_ID))
    embed = next(name for name in routers if name.endswith(BUILTIN_EMBEDDING_MODEL_ID))
    assert routers[chat] == "gpucluster.serving.routers:PrefixAffinityRouter"
    assert routers[embed].endswith("PowerOfTwoChoicesRequestRouter")  # Serve's default


def test_adapter_requests_are_counted_under_their_own_model_label(tenant, client):
    greedy(client, ADAPTER)
    prometheus = tenant.endpoints["prometheus"]

    def counted() -> list:
        response = httpx.get(
            f"{prometheus}/api/v1/query",
            timeout=30,
            params={"query": f'gpucluster_key_requests_total{{model="{ADAPTER}"}}'},
        )
        return response.json()["data"]["result"]

    assert eventually(counted, timeout_s=60, interval_s=3)
