"""JSON modes through `tunesmith serve`: `response_format` json_schema / json_object by constrained
decoding, whole and streamed, on a tiny random model (which, unconstrained, writes no JSON at all)."""

import json

import openai
import pytest

from helpers.serving import Server, post
from tunesmith.methods.load import load_for_inference
from tunesmith.serve.api import create_app
from tunesmith.serve.host import ModelHost

pytestmark = pytest.mark.trains  # samples a model: scripts/test.sh runs it again with the CPU restricted to AVX2

SCHEMA = {
    "type": "object",
    "properties": {"answer": {"type": "string", "enum": ["yes", "no"]}, "count": {"type": "integer"}},
    "required": ["answer", "count"],
    "additionalProperties": False,
}


@pytest.fixture(scope="module")
def server(tiny_model_dir):
    running = Server(create_app(ModelHost(load_for_inference(str(tiny_model_dir)), "tiny"), max_tokens_cap=256))
    yield running
    running.stop()


def test_json_schema_replies_follow_the_schema_whole_and_streamed(server):
    client = openai.OpenAI(base_url=server.url, api_key="unused")
    messages = [{"role": "user", "content": "Is it ready? Answer in JSON."}]
    fmt = {"type": "json_schema", "json_schema": {"name": "ready", "schema": SCHEMA}}
    plain = client.chat.completions.create(model="tiny", messages=messages, max_tokens=64)
    with pytest.raises(json.JSONDecodeError):  # the tiny random model writes no JSON by itself
        json.loads(plain.choices[0].message.content)
    reply = client.chat.completions.create(model="tiny", messages=messages, max_tokens=64, response_format=fmt)
    value = json.loads(reply.choices[0].message.content)
    assert set(value) == {"answer", "count"} and value["answer"] in ("yes", "no") and isinstance(value["count"], int)
    assert reply.choices[0].finish_reason == "stop"
    streamed = client.chat.completions.create(
        model="tiny", messages=messages, max_tokens=64, response_format=fmt, stream=True
    )
    assert "".join(c.choices[0].delta.content or "" for c in streamed if c.choices) == reply.choices[0].message.content
    # sampled replies follow it too
    for seed in range(3):
        sampled = client.chat.completions.create(
            model="tiny", messages=messages, max_tokens=64, response_format=fmt, temperature=1.0, seed=seed
        )
        assert json.loads(sampled.choices[0].message.content)["answer"] in ("yes", "no")


def test_json_object_gives_a_json_object_and_bad_formats_are_refused(server):
    code, answer = post(
        server.url + "/chat/completions",
        {
            "model": "tiny",
            "messages": [{"role": "user", "content": "Describe a cat in JSON."}],
            "max_tokens": 256,
            "response_format": {"type": "json_object"},
        },
    )
    assert code == 200, answer
    text = answer["choices"][0]["message"]["content"]
    if answer["choices"][0]["finish_reason"] == "stop":
        assert isinstance(json.loads(text), (dict, list, str, int, float, bool, type(None)))
    else:  # cut by max_tokens: still the start of a JSON value
        assert text.lstrip()[:1] in ("{", "[", '"') or text.lstrip()[:1].isdigit(), text
    for fmt, param in [
        ({"type": "xml"}, "response_format"),
        ({"type": "json_schema", "json_schema": {"name": "x"}}, "response_format.json_schema"),
    ]:
        code, answer = post(
            server.url + "/chat/completions",
            {"model": "tiny", "messages": [{"role": "user", "content": "hi"}], "response_format": fmt},
        )
        assert code == 400 and answer["error"]["param"] == param, answer
    code, answer = post(
        server.url + "/chat/completions",
        {
            "model": "tiny",
            "messages": [{"role": "user", "content": "hi"}],
            "response_format": {"type": "json_object"},
            "tools": [{"type": "function", "function": {"name": "f"}}],
        },
    )
    assert code == 400 and "cannot be combined" in answer["error"]["message"]


def test_the_first_json_request_builds_its_table_off_the_event_loop(tiny_model_dir, monkeypatch):
    """The vocabulary's table is built on the first JSON request (seconds for a real vocabulary);
    meanwhile the server answers /health and other requests."""
    import threading
    import urllib.request

    from tunesmith.serve import json_mode

    started, release = threading.Event(), threading.Event()
    build = json_mode._build_tokenizer_data

    def slow_build(tokenizer, eos_ids):
        started.set()
        assert release.wait(30), "the test never released the build"
        return build(tokenizer, eos_ids)

    monkeypatch.setattr(json_mode, "_build_tokenizer_data", slow_build)
    running = Server(create_app(ModelHost(load_for_inference(str(tiny_model_dir)), "tiny"), max_tokens_cap=64))
    try:
        answers = []
        body = {
            "model": "tiny",
            "messages": [{"role": "user", "content": "JSON please."}],
            "max_tokens": 16,
            "response_format": {"type": "json_object"},
        }
        first = threading.Thread(target=lambda: answers.append(post(running.url + "/chat/completions", body)))
        first.start()
        assert started.wait(30)
        health = running.url.removesuffix("/v1") + "/health"
        with urllib.request.urlopen(health, timeout=5) as response:  # answered while the table is being built
            assert response.status == 200
        code, plain = post(running.url + "/chat/completions", {**body, "response_format": {"type": "text"}})
        assert code == 200 and plain["choices"][0]["message"]["content"] is not None
        release.set()
        first.join(60)
        assert answers and answers[0][0] == 200, answers
    finally:
        release.set()
        running.stop()
