"""Every bad request gets a 4xx in the OpenAI error shape, and the platform keeps serving."""

from __future__ import annotations

import httpx
import openai
import pytest


def assert_openai_error(response: httpx.Response, status: int) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) >= {"error"}
    error = body["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert isinstance(error["message"], str) and error["message"]
    return error


def chat(live, **overrides) -> dict:
    body = {"model": live.model, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4}
    body.update(overrides)
    return body


def test_unknown_model_is_a_404_naming_it(live):
    response = httpx.post(f"{live.api}/chat/completions", json=chat(live, model="no-such-model"), timeout=30)
    error = assert_openai_error(response, 404)
    assert error["code"] == "model_not_found"
    assert "no-such-model" in error["message"]


def test_unknown_model_through_the_openai_client(live):
    client = openai.OpenAI(base_url=live.api, api_key="unused", max_retries=0)
    with pytest.raises(openai.NotFoundError) as err:
        client.completions.create(model="no-such-model", prompt="x", max_tokens=1)
    assert err.value.body["code"] == "model_not_found"


def test_non_json_body_is_a_400(live):
    response = httpx.post(
        f"{live.api}/chat/completions",
        content=b"{this is not json",
        headers={"content-type": "application/json"},
        timeout=30,
    )
    error = assert_openai_error(response, 400)
    assert error["type"] == "invalid_request_error"


def test_messages_not_a_list_is_a_400_naming_messages(live):
    response = httpx.post(f"{live.api}/chat/completions", json=chat(live, messages="hello"), timeout=30)
    error = assert_openai_error(response, 400)
    assert error["param"] == "messages"


@pytest.mark.parametrize("path", ["chat/completions", "completions"])
def test_negative_max_tokens_is_a_400(live, path):
    body = chat(live, max_tokens=-5) if path.startswith("chat") else {
        "model": live.model, "prompt": "x", "max_tokens": -5
    }
    response = httpx.post(f"{live.api}/{path}", json=body, timeout=30)
    error = assert_openai_error(response, 400)
    assert error["param"] == "max_tokens"


def test_unknown_path_is_a_404_in_the_shape(live):
    assert_openai_error(httpx.get(f"{live.api}/nothing-here", timeout=30), 404)


def test_platform_still_answers_after_bad_requests(live):
    client = openai.OpenAI(base_url=live.api, api_key="unused", max_retries=0)
    reply = client.chat.completions.create(
        model=live.model, messages=[{"role": "user", "content": "Hi"}], max_tokens=4
    )
    assert reply.choices[0].message.content is not None


def test_health_is_ok(live):
    response = httpx.get(f"{live.base}/health", timeout=30)
    assert response.status_code == 200
    assert response.json()["models"] == {live.model: "ok"}
