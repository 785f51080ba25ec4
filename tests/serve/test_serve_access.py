"""`tunesmith serve --access-log`: one JSON line per request, written when its response has ended:
whole and streamed replies with their token counts, errors with their message, a dropped stream
marked client_closed, X-Request-ID echoed or made, probes left out, prompts and keys never written.
Over real HTTP (uvicorn in a thread) with a tiny random model."""

import json
import time

import openai
import pytest

from helpers.serving import Server, post, wait_until
from tunesmith.errors import ConfigError
from tunesmith.methods.load import load_for_inference
from tunesmith.serve.access import open_log
from tunesmith.serve.api import create_app
from tunesmith.serve.host import ModelHost
from tunesmith.serve.vllm_engine import vllm_command

pytestmark = pytest.mark.trains  # samples a model

SECRET_PROMPT = "The vault code is"


@pytest.fixture(scope="module")
def loaded(tiny_model_dir):
    return load_for_inference(str(tiny_model_dir))


def lines(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_access_log_lines_for_replies_streams_errors_and_drops(loaded, tmp_path):
    log = tmp_path / "access.jsonl"
    host = ModelHost(loaded, "tiny", max_batch=4, max_queue=4)
    server = Server(create_app(host, api_key="k3y", max_tokens_cap=4096, access_log=open_log(str(log))))
    client = openai.OpenAI(base_url=server.url, api_key="k3y", max_retries=0)
    try:
        whole = client.completions.with_raw_response.create(
            model="tiny", prompt=SECRET_PROMPT, max_tokens=6, extra_headers={"X-Request-ID": "user-report-42"}
        )
        assert whole.headers["x-request-id"] == "user-report-42"
        reply = whole.parse()
        stream = client.chat.completions.create(
            model="tiny", messages=[{"role": "user", "content": "Hi"}], max_tokens=5, stream=True
        )
        assert sum(1 for _ in stream) > 0
        code, answer = post(
            server.url + "/completions",
            {"model": "tiny", "prompt": "Hi", "max_tokens": 2, "logit_bias": {"1": 5}},
            {"Authorization": "Bearer k3y"},
        )
        assert code == 400
        code, _ = post(server.url + "/completions", {"model": "tiny", "prompt": "Hi"}, {"Authorization": "Bearer no"})
        assert code == 401
        dropped = _stream_request_with_key(server.port, {"model": "tiny", "prompt": "Hi", "max_tokens": 2000}, "k3y")
        response = dropped.getresponse()
        assert response.status == 200 and response.readline().startswith(b"data: ")
        made_up = response.getheader("x-request-id")
        dropped.close()  # mid-stream
        wait_until(lambda: host.batcher.active == 0)
        for probe in ("/health", "/metrics"):
            get(server, probe)
        wait_until(lambda: log.is_file() and len(lines(log)) >= 5)
        time.sleep(0.2)  # nothing more comes
    finally:
        server.stop()
    text = log.read_text()
    assert SECRET_PROMPT not in text and "k3y" not in text  # neither prompts nor keys are written
    got = lines(log)
    assert [line["path"] for line in got] == [
        "/v1/completions",
        "/v1/chat/completions",
        "/v1/completions",
        "/v1/completions",
        "/v1/completions",
    ]  # probes left out
    first, streamed, refused, unauthorised, mid = got
    assert first["request_id"] == "user-report-42" and first["status"] == 200 and first["outcome"] == "ok"
    assert first["model"] == "tiny" and first["stream"] is False and first["n"] == 1
    assert first["prompt_tokens"] == reply.usage.prompt_tokens
    assert first["completion_tokens"] == reply.usage.completion_tokens
    assert first["finish_reasons"] == [reply.choices[0].finish_reason] and first["ttft_seconds"] >= 0
    assert first["seconds"] >= first["ttft_seconds"] and first["bytes"] > 0 and first["client"].startswith("127.0.0.1:")
    assert first["time"].endswith("Z") and first["method"] == "POST"
    assert streamed["stream"] is True and streamed["outcome"] == "ok" and 0 < streamed["completion_tokens"] <= 5
    assert streamed["finish_reasons"] and len(streamed["request_id"]) == 32
    assert refused["status"] == 400 and refused["outcome"] == "error" and refused["param"] == "logit_bias"
    assert "logit_bias" in refused["message"]
    assert unauthorised["status"] == 401 and unauthorised["code"] == "invalid_api_key" and "model" not in unauthorised
    assert mid["request_id"] == made_up and mid["status"] == 200 and mid["outcome"] == "client_closed"
    assert 0 < mid["completion_tokens"] < 2000


def _stream_request_with_key(port: int, body: dict, key: str):
    import http.client

    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    connection.request(
        "POST",
        "/v1/completions",
        json.dumps({**body, "stream": True}),
        {"Content-Type": "application/json", "Authorization": f"Bearer {key}"},
    )
    return connection


def get(server, path: str) -> None:
    import urllib.request

    with urllib.request.urlopen(server.url.removesuffix("/v1") + path, timeout=30) as response:
        assert response.status == 200


def test_a_bad_request_id_is_replaced_and_no_log_means_no_header_change(loaded, tmp_path):
    log = tmp_path / "access.jsonl"
    server = Server(create_app(ModelHost(loaded, "tiny"), access_log=open_log(str(log))))
    try:
        client = openai.OpenAI(base_url=server.url, api_key="unused", max_retries=0)
        raw = client.models.with_raw_response.list(extra_headers={"X-Request-ID": "bad id; DROP"})
        assert raw.headers["x-request-id"] != "bad id; DROP" and len(raw.headers["x-request-id"]) == 32
        wait_until(lambda: log.is_file() and log.read_text().strip())
    finally:
        server.stop()
    (line,) = lines(log)
    assert line["path"] == "/v1/models" and line["method"] == "GET" and line["status"] == 200
    assert line["request_id"] == raw.headers["x-request-id"] and "model" not in line


def test_access_log_destinations_and_the_vllm_translation(tmp_path):
    assert open_log("off") is None and open_log(None) is None
    assert open_log("-").handlers[0].stream is not None
    with pytest.raises(FileNotFoundError):
        open_log(str(tmp_path / "missing" / "access.jsonl"))
    base = vllm_command("some/model", "m", {}, "127.0.0.1", 8000, None, 8)
    assert "--disable-uvicorn-access-log" not in base
    assert (
        vllm_command("some/model", "m", {}, "127.0.0.1", 8000, None, 8, access_log="off")[-1]
        == "--disable-uvicorn-access-log"
    )
    with pytest.raises(ConfigError, match="--access-log to a file"):
        vllm_command("some/model", "m", {}, "127.0.0.1", 8000, None, 8, access_log=str(tmp_path / "a.jsonl"))
