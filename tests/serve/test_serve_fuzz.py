"""The HTTP surface under arbitrary requests (hypothesis over the OpenAI request shapes): whatever a
client sends, valid or not, the answer is a JSON body with a status below 500, within a bounded time.
A fast stand-in model answers, so the cases measure the server, not generation."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from types import SimpleNamespace

import pytest
import torch
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from tunesmith.models.loader import LoadedModel
from tunesmith.serve.api import create_app
from tunesmith.serve.host import ModelHost

CASES = 150  # per endpoint; the count docs/serve.md quotes


class InstantModel(torch.nn.Module):
    """Answers an ordinary token at once, every step, with logits over the tokenizer's whole vocabulary."""

    def __init__(self, tokenizer):
        super().__init__()
        self.tokenizer, self.vocab = tokenizer, len(tokenizer)
        self.weight = torch.nn.Parameter(torch.zeros(1))
        self.config = SimpleNamespace(max_position_embeddings=4096)

    def forward(self, input_ids, cache=None, **kwargs):
        logits = torch.zeros(input_ids.shape[0], input_ids.shape[1], self.vocab)
        logits[..., 300] = 10.0
        return SimpleNamespace(logits=logits, cache=cache)


scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=40),
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
# well-formed requests, then the same with one key set to anything (wrong type, out of range, nested)
text = st.text(st.characters(codec="utf-8"), max_size=40)
valid_message = st.fixed_dictionaries({"role": st.sampled_from(["system", "user", "assistant"]), "content": text})
VALID = {
    "max_tokens": st.integers(1, 24),
    "temperature": st.floats(0, 2),
    "top_p": st.floats(0.05, 1),
    "n": st.integers(1, 3),
    "stream": st.booleans(),
    "stop": st.lists(st.text(min_size=1, max_size=4), max_size=3),
    "seed": st.integers(0, 2**31),
    "logprobs": st.booleans(),
    "presence_penalty": st.floats(-2, 2),
    "frequency_penalty": st.floats(-2, 2),
    "response_format": st.sampled_from([{"type": "json_object"}, {"type": "text"}]),
}
ANY_KEY = [*VALID, "model", "messages", "prompt", "top_logprobs", "tools", "tool_choice", "max_completion_tokens", "x"]


def _mutated(bodies):
    """`bodies`, and bodies with one key (or one message field) set to an arbitrary value."""

    def mutate(body):
        def with_key(key, value):
            return {**body, key: value}

        changed = st.builds(with_key, st.sampled_from(ANY_KEY), values)
        if body.get("messages"):
            field = st.builds(
                lambda k, v, i: {**body, "messages": [*body["messages"][:i], {**body["messages"][i], k: v}]},
                st.sampled_from(["role", "content", "name", "tool_calls"]),
                values,
                st.integers(0, len(body["messages"]) - 1),
            )
            changed = changed | field
        return changed

    return bodies | bodies.flatmap(mutate)


@st.composite
def _valid(draw, head: dict) -> dict:
    """A request the server answers 200: head (model and the messages or prompt) and some options."""
    body = {**head, "max_tokens": draw(VALID["max_tokens"])}
    body.update(draw(st.fixed_dictionaries({}, optional={k: v for k, v in VALID.items() if k != "max_tokens"})))
    if body.get("stream"):
        body.update(draw(st.fixed_dictionaries({}, optional={"stream_options": st.fixed_dictionaries(
            {"include_usage": st.booleans()})})))  # fmt: skip
    if body.get("n", 1) > 1:
        body["temperature"] = draw(st.floats(0.1, 2))
    return body


turns = st.lists(valid_message, max_size=2).map(lambda m: [*m, {"role": "user", "content": "Hello?"}])
chat_bodies = _mutated(turns.flatmap(lambda messages: _valid({"model": "fake", "messages": messages})))
text_bodies = _mutated(text.flatmap(lambda prompt: _valid({"model": "fake", "prompt": prompt})))


raw_bodies = st.binary(max_size=200) | st.text(max_size=200).map(str.encode)


@pytest.fixture(scope="module")
def server(tokenizer):
    from helpers.serving import Server

    model = InstantModel(tokenizer)
    host = ModelHost(LoadedModel(model=model, tokenizer=tokenizer, path="fake"), name="fake")
    running = Server(create_app(host, max_tokens_cap=32))  # a reply of the default length would only cost time
    yield running
    running.stop()


def _send(url: str, data: bytes) -> tuple[int, bytes, float]:
    started = time.monotonic()
    request = urllib.request.Request(url, data, {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            status, body = response.status, response.read()
    except urllib.error.HTTPError as exc:
        status, body = exc.code, exc.read()
    return status, body, time.monotonic() - started


def _check(status: int, body: bytes, seconds: float, streamed: bool) -> None:
    event(f"status {status}")  # pytest --hypothesis-show-statistics shows the mix of answers
    assert status < 500, body[:500]
    assert seconds < 30, seconds
    if status >= 400:
        assert "error" in json.loads(body), body[:500]
    elif not streamed:
        json.loads(body)
    else:  # a stream: events, each a JSON object or [DONE]
        events = [line[len(b"data: ") :] for line in body.splitlines() if line.startswith(b"data: ")]
        assert events and all(e == b"[DONE]" or isinstance(json.loads(e), dict) for e in events)
        assert b'"error"' not in body or b'"server_error"' not in body, body[:500]


def test_a_well_formed_request_is_answered(server):
    """The stand-in model answers: the fuzz cases reach generation, not only the refusals."""
    body = {"model": "fake", "max_tokens": 3, "messages": [{"role": "user", "content": "hi"}]}
    status, answer, _ = _send(server.url + "/chat/completions", json.dumps(body).encode())
    assert status == 200 and json.loads(answer)["usage"]["completion_tokens"] == 3


SETTINGS = settings(max_examples=CASES, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@SETTINGS
@given(body=chat_bodies)
def test_chat_completions_answer_every_request_without_a_server_error(server, body):
    status, answer, seconds = _send(server.url + "/chat/completions", json.dumps(body).encode())
    _check(status, answer, seconds, body.get("stream") is True and status == 200)


@SETTINGS
@given(body=text_bodies)
def test_text_completions_answer_every_request_without_a_server_error(server, body):
    status, answer, seconds = _send(server.url + "/completions", json.dumps(body).encode())
    _check(status, answer, seconds, body.get("stream") is True and status == 200)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=raw_bodies)
def test_any_bytes_get_a_json_error(server, data):
    for endpoint in ("/chat/completions", "/completions"):
        status, answer, seconds = _send(server.url + endpoint, data)
        assert status < 500 and seconds < 30
        if status >= 400:
            assert "error" in json.loads(answer)
