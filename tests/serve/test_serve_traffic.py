"""`tunesmith serve` under traffic: concurrent requests batched (each equal to its reply alone),
a full queue answered 429, timeouts 504, dropped clients freeing their place, 503 while loading,
/health and /metrics, unsupported parameters refused by name, SIGTERM finishing what runs.
Over real HTTP (uvicorn in a thread) with the official `openai` client; a tiny random model."""

import http.client
import json
import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import openai
import pytest
import torch

from helpers.files import ROOT
from helpers.serving import Server, free_port, post, wait_until
from tunesmith.methods.load import load_for_inference
from tunesmith.serve.api import create_app
from tunesmith.serve.host import ModelHost, ServerState

pytestmark = pytest.mark.trains  # samples a model

PROMPTS = [
    "The archive is in",
    "Hi",
    "A longer prompt about the eastern archive and its keepers",
    "Why?",
    "One two",
    "Where is the northern gate?",
]


@pytest.fixture(scope="module")
def loaded(tiny_model_dir):
    return load_for_inference(str(tiny_model_dir))


def alone(loaded, prompt: str, max_tokens: int) -> str:
    ids = loaded.tokenizer(prompt, return_tensors="pt")
    with torch.no_grad():
        out = loaded.model.generate(
            **ids, max_new_tokens=max_tokens, do_sample=False, pad_token_id=loaded.tokenizer.pad_token_id
        )
    return loaded.tokenizer.decode(out[0][ids["input_ids"].shape[1] :], skip_special_tokens=True)


def started(host, **options):
    return Server(create_app(host, max_tokens_cap=4096, **options))


def test_concurrent_requests_are_batched_and_each_equals_its_reply_alone(loaded):
    host = ModelHost(loaded, "tiny", max_batch=8, max_queue=8)
    server = started(host)
    client = openai.OpenAI(base_url=server.url, api_key="unused", max_retries=0)

    def ask(i):
        if i % 2:  # half of them streamed
            stream = client.completions.create(model="tiny", prompt=PROMPTS[i], max_tokens=24, stream=True)
            return "".join(c.choices[0].text for c in stream)
        return client.completions.create(model="tiny", prompt=PROMPTS[i], max_tokens=24).choices[0].text

    try:
        with ThreadPoolExecutor(len(PROMPTS)) as pool:
            replies = list(pool.map(ask, range(len(PROMPTS))))
        assert replies == [alone(loaded, p, 24) for p in PROMPTS]
        # one at a time would take 23 decode steps per request; together they share steps
        assert host.batcher.steps < 23 * len(PROMPTS) / 2, host.batcher.steps
    finally:
        server.stop()


def _stream_request(port: int, body: dict) -> http.client.HTTPConnection:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    connection.request(
        "POST", "/v1/completions", json.dumps({**body, "stream": True}), {"Content-Type": "application/json"}
    )
    return connection


def test_full_queue_429_dropped_streams_free_their_place_and_timeouts_504(loaded):
    host = ModelHost(loaded, "tiny", max_batch=1, max_queue=1)
    server = started(host, request_timeout=1.5)
    endless = {"model": "tiny", "prompt": "Hi", "max_tokens": 2000}
    try:
        running = _stream_request(server.port, endless)
        response = running.getresponse()
        assert response.status == 200 and response.readline().startswith(b"data: ")  # mid-stream
        waiting = _stream_request(server.port, endless)  # queued behind it, no chunk yet
        wait_until(lambda: host.batcher.queued == 1)
        code, answer = post(server.url + "/completions", {"model": "tiny", "prompt": "Hi", "max_tokens": 2})
        assert code == 429 and answer["error"]["code"] == "queue_full"
        client = openai.OpenAI(base_url=server.url, api_key="unused", max_retries=0)
        with pytest.raises(openai.RateLimitError):
            client.completions.create(model="tiny", prompt="Hi", max_tokens=2)
        waiting.close()  # dropped before its first chunk
        running.close()  # dropped mid-stream
        wait_until(lambda: host.batcher.active == 0 and host.batcher.queued == 0)
        t0 = time.time()
        reply = client.completions.create(model="tiny", prompt="The archive is in", max_tokens=8)
        assert reply.choices[0].text == alone(loaded, "The archive is in", 8) and time.time() - t0 < 1.5
        code, answer = post(server.url + "/completions", endless)  # over --request-timeout
        assert code == 504 and answer["error"]["code"] == "timeout"
        wait_until(lambda: host.batcher.active == 0)
        metrics = urlopen_text(server.url.removesuffix("/v1") + "/metrics")
        assert (
            'tunesmith_errors_total{status="429"} 2' in metrics and 'tunesmith_errors_total{status="504"} 1' in metrics
        )
        assert "tunesmith_queue_length 0" in metrics and "tunesmith_time_to_first_token_seconds_count" in metrics
        assert 'tunesmith_requests_total{endpoint="/v1/completions",status="200"}' in metrics
    finally:
        server.stop()


def urlopen_text(url: str) -> str:
    import urllib.request

    with urllib.request.urlopen(url, timeout=30) as response:
        return response.read().decode()


def test_503_while_loading_then_health_says_ready(loaded):
    state = ServerState()
    server = Server(create_app(state=state, api_key="k"))
    base = server.url.removesuffix("/v1")
    try:
        connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
        connection.request("GET", "/health")  # no key needed
        response = connection.getresponse()
        assert response.status == 503 and json.loads(response.read()) == {"status": "loading"}
        code, answer = post(server.url + "/completions", {"prompt": "Hi"}, {"Authorization": "Bearer k"})
        assert code == 503 and answer["error"]["code"] == "loading"
        state.host = ModelHost(loaded, "tiny")
        assert json.loads(urlopen_text(base + "/health"))["status"] == "ready"
        assert "tunesmith_ready 1" in urlopen_text(base + "/metrics")
    finally:
        server.stop()


@pytest.mark.parametrize(
    "extra,param",
    [
        ({"tools": [{"type": "function", "function": {"name": "f"}}], "tool_choice": "required"}, "tool_choice"),
        ({"functions": [{"name": "f"}]}, "functions"),
        ({"response_format": {"type": "xml"}}, "response_format"),
        ({"logit_bias": {"5": 10}}, "logit_bias"),
        ({"stream_options": {"include_usage": True}}, "stream_options"),  # without stream
        ({"top_logprobs": 2}, "top_logprobs"),  # without logprobs
        ({"n": 2}, "n"),  # greedy: n identical choices
        ({"frobnicate": 1}, "frobnicate"),
    ],
)
def test_unsupported_parameters_are_refused_by_name(loaded, extra, param):
    server = started(ModelHost(loaded, "tiny"))
    try:
        code, answer = post(
            server.url + "/chat/completions",
            {"model": "tiny", "messages": [{"role": "user", "content": "hi"}], **extra},
        )
        assert code == 400 and answer["error"]["param"] == param, answer
    finally:
        server.stop()


def test_usage_in_stream_n_choices_logprobs_and_penalties(loaded):
    server = started(ModelHost(loaded, "tiny"))
    client = openai.OpenAI(base_url=server.url, api_key="unused", max_retries=0)
    question = [{"role": "user", "content": "Name the code word."}]
    try:
        whole = client.chat.completions.create(
            model="tiny",
            messages=question,
            max_tokens=6,
            logprobs=True,
            top_logprobs=3,
            response_format={"type": "text"},
        )
        chunks = list(
            client.chat.completions.create(
                model="tiny", messages=question, max_tokens=6, stream=True, stream_options={"include_usage": True}
            )
        )
        assert chunks[-1].choices == [] and chunks[-1].usage.total_tokens == whole.usage.total_tokens
        assert "".join(c.choices[0].delta.content or "" for c in chunks[:-1]) == whole.choices[0].message.content
        content = whole.choices[0].logprobs.content
        assert len(content) == whole.usage.completion_tokens
        assert all(e.top_logprobs[0].logprob == pytest.approx(e.logprob) and len(e.top_logprobs) == 3 for e in content)
        several = client.chat.completions.create(
            model="tiny", messages=question, max_tokens=8, n=3, temperature=1.5, seed=3
        )
        again = client.chat.completions.create(
            model="tiny", messages=question, max_tokens=8, n=3, temperature=1.5, seed=3
        )
        texts = [c.message.content for c in several.choices]
        assert [c.index for c in several.choices] == [0, 1, 2] and texts == [c.message.content for c in again.choices]
        assert len(set(texts)) > 1 and 3 <= several.usage.completion_tokens <= 3 * 8
        text = client.completions.create(
            model="tiny", prompt="Hi", max_tokens=12, logprobs=2, presence_penalty=0.5, frequency_penalty=0.5
        ).choices[0]
        assert "".join(text.logprobs.tokens) == text.text and len(text.logprobs.top_logprobs[0]) == 2
        assert text.logprobs.text_offset[1] == len(text.logprobs.tokens[0])
    finally:
        server.stop()


@pytest.mark.skipif(sys.platform == "win32", reason="SIGTERM")
def test_sigterm_lets_a_running_stream_finish(tiny_model_dir):
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tunesmith",
            "serve",
            "--model",
            str(tiny_model_dir),
            "--port",
            str(port),
            "--grace",
            "20",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.time() + 120
        while True:
            assert time.time() < deadline and process.poll() is None, "the server did not become ready"
            try:
                if json.loads(urlopen_text(f"http://127.0.0.1:{port}/health"))["status"] == "ready":
                    break
            except OSError:
                pass
            time.sleep(0.2)
        stream = _stream_request(port, {"prompt": "Hi", "max_tokens": 300})
        response = stream.getresponse()
        assert response.readline().startswith(b"data: ")
        process.send_signal(signal.SIGTERM)
        body = response.read().decode()
        assert body.rstrip().endswith("data: [DONE]")
        assert process.wait(30) in (0, -signal.SIGTERM)  # uvicorn ends by raising the signal it caught again
    finally:
        if process.poll() is None:
            process.kill()
        process.stdout.close()
