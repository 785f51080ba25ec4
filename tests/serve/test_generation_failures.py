"""No hang: a generation that raises reaches the user, and one whose reader left stops.

The models here are stand-ins with a `generate` (chat) or a forward (the server's batcher) that
streams or raises on cue, so every test runs
in a thread with a deadline: a regression fails the test instead of hanging the suite."""

import io
import json
import threading
import time
import urllib.error
import urllib.request
from types import SimpleNamespace

import pytest
import torch

from tunesmith.models.loader import LoadedModel
from tunesmith.serve.api import create_app
from tunesmith.serve.batcher import Batcher, Job, Sampling
from tunesmith.serve.chat import chat_loop, prompt_tokens
from tunesmith.serve.host import ModelHost

DEADLINE = 60


def within_deadline(fn, *args, **kwargs):
    """fn(*args) in a thread; fails (rather than hangs) when it has not returned in DEADLINE s."""
    result = {}

    def run():
        try:
            result["value"] = fn(*args, **kwargs)
        except BaseException as exc:
            result["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(DEADLINE)
    assert not thread.is_alive(), f"{fn.__name__} still running after {DEADLINE} s: it hangs"
    if "error" in result:
        raise result["error"]
    return result.get("value")


class FakeModel:
    """generate(): raises what `failures` holds for this call, else streams `reply` token by token
    (or, with endless, until a stopping criterion says stop)."""

    def __init__(self, tokenizer, reply="Fine, thanks.", failures=(), context=4096, endless=False):
        self.tokenizer, self.reply, self.failures, self.endless = tokenizer, reply, list(failures), endless
        self.device = torch.device("cpu")
        self.config = SimpleNamespace(max_position_embeddings=context)
        self.prompts, self.steps = [], 0

    def generate(self, input_ids, streamer, stopping_criteria=None, attention_mask=None, **kwargs):
        self.prompts.append(self.tokenizer.decode(input_ids[0]))
        streamer.put(input_ids)  # the prompt, as transformers does (skipped by the streamer)
        failure = self.failures.pop(0) if self.failures else None
        if failure is not None:
            raise failure
        ids = self.tokenizer(self.reply, add_special_tokens=False)["input_ids"]
        out = input_ids
        for i in range(100_000 if self.endless else len(ids)):
            token = torch.tensor([[ids[i % len(ids)]]])
            out = torch.cat([out, token], dim=1)
            streamer.put(token[0])
            self.steps += 1
            if stopping_criteria is not None and bool(stopping_criteria(out, None).any()):
                break
            if self.endless:
                time.sleep(0.001)
        streamer.end()
        return out


def _loaded(model):
    return LoadedModel(model=model, tokenizer=model.tokenizer, path="fake")


def test_chat_reports_a_failed_generation_and_goes_on(tokenizer):
    oom = torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
    model = FakeModel(tokenizer, failures=[oom, None])
    out = io.StringIO()
    within_deadline(chat_loop, _loaded(model), None, 16, stdin=io.StringIO("hello there\nhow are you?\n"), out=out)
    text = out.getvalue()
    assert "(no reply: generation failed: OutOfMemoryError: CUDA out of memory" in text
    assert text.rstrip().endswith("assistant> Fine, thanks.")
    # the failed turn is not part of the history the second reply sees
    assert "hello there" not in model.prompts[1] and "how are you?" in model.prompts[1]


def test_chat_trims_the_history_to_the_models_context(tokenizer):
    turns = [f"question number {i} " + "word " * 20 for i in range(4)]
    one_turn = prompt_tokens(
        _loaded(FakeModel(tokenizer)),
        [
            {"role": "user", "content": turns[0]},
            {"role": "assistant", "content": "Fine, thanks."},
            {"role": "user", "content": turns[1]},
        ],
    )
    model = FakeModel(tokenizer, context=one_turn + 10 + 16)  # room for about two turns and the reply
    out = io.StringIO()
    within_deadline(chat_loop, _loaded(model), None, 16, stdin=io.StringIO("\n".join(turns) + "\n"), out=out)
    assert "(history trimmed: the 2 oldest turns were left out to fit the model's context" in out.getvalue()
    last = model.prompts[-1]
    assert "question number 3" in last and "question number 2" in last and "question number 0" not in last
    # a message that alone is over the budget is refused with the sizes, and the chat goes on
    out = io.StringIO()
    within_deadline(
        chat_loop,
        _loaded(FakeModel(tokenizer, context=40)),
        None,
        16,
        stdin=io.StringIO("word " * 100 + "\nhi\n"),
        out=out,
    )
    assert "(no reply: this message makes a prompt of" in out.getvalue()


class FailingForward(torch.nn.Module):
    """A model for the server's batcher: each forward raises what `failures` holds for this call
    (None: answers token 0 with zero logits)."""

    def __init__(self, tokenizer, failures=()):
        super().__init__()
        self.tokenizer, self.failures = tokenizer, list(failures)
        self.weight = torch.nn.Parameter(torch.zeros(1))
        self.config = SimpleNamespace(max_position_embeddings=4096)

    def forward(self, input_ids, cache=None, **kwargs):
        failure = self.failures.pop(0) if self.failures else None
        if failure is not None:
            raise failure
        return SimpleNamespace(logits=torch.zeros(input_ids.shape[0], input_ids.shape[1], 8), cache=cache)


def test_a_failed_step_ends_its_jobs_with_the_error_and_the_batcher_goes_on(tokenizer):
    from helpers.serving import Collect

    batcher = Batcher(FailingForward(tokenizer, [ValueError("input too long for this model")]), 0)
    try:
        failed, next_one = Collect(), Collect()
        batcher.submit(Job([1, 2, 3], Sampling(max_tokens=4), set(), failed))
        kind, error = failed.result()[1]
        assert kind == "error" and "input too long" in str(error)
        batcher.submit(Job([1, 2, 3], Sampling(max_tokens=4), set(), next_one))
        assert next_one.result() == ([0, 0, 0, 0], ("end", "length"))
    finally:
        batcher.stop()


def test_a_reader_that_leaves_stops_the_generation(tokenizer):
    from tunesmith.serve.streaming import Generation

    model = FakeModel(tokenizer, endless=True)
    stream = iter(Generation(model, tokenizer, dict(tokenizer("hello", return_tensors="pt")), max_new_tokens=10**6))
    assert within_deadline(next, stream)
    within_deadline(stream.close)  # the terminal chat's reader went away
    steps = model.steps
    time.sleep(0.3)
    assert model.steps == steps < 100_000  # stopped, and stays stopped
    assert not [t for t in threading.enumerate() if t.name == "tunesmith-generate"]


def test_http_api_answers_a_failed_generation_with_an_error(tokenizer):
    from helpers.serving import Server

    model = FailingForward(tokenizer, [torch.cuda.OutOfMemoryError("CUDA out of memory"), RuntimeError("boom")])
    server = Server(create_app(ModelHost(_loaded(model), name="fake")))
    try:
        body = json.dumps({"model": "fake", "messages": [{"role": "user", "content": "hi"}]}).encode()
        request = urllib.request.Request(server.url + "/chat/completions", body, {"Content-Type": "application/json"})
        with pytest.raises(urllib.error.HTTPError) as caught:
            within_deadline(urllib.request.urlopen, request, timeout=DEADLINE)
        assert caught.value.code == 500
        assert "generation failed: OutOfMemoryError" in json.loads(caught.value.read())["error"]["message"]
        streamed = json.dumps({"model": "fake", "stream": True, "messages": [{"role": "user", "content": "hi"}]})
        request = urllib.request.Request(
            server.url + "/chat/completions", streamed.encode(), {"Content-Type": "application/json"}
        )
        events = within_deadline(lambda: urllib.request.urlopen(request, timeout=DEADLINE).read().decode())
        assert '"generation failed: RuntimeError: boom"' in events and "[DONE]" not in events
        # /metrics counts the stream by its error, though its HTTP status was 200
        metrics = within_deadline(
            lambda: urllib.request.urlopen(server.url[: -len("/v1")] + "/metrics").read().decode()
        )
        assert 'tunesmith_stream_errors_total{endpoint="/v1/chat/completions",status="500"} 1' in metrics
        assert 'tunesmith_errors_total{status="500"} 2' in metrics
    finally:
        server.stop()


class SlowForward(torch.nn.Module):
    """A model for the server's batcher that always answers the same ordinary token, one decode step
    every `delay` seconds, counting its forwards."""

    def __init__(self, tokenizer, delay=0.02):
        super().__init__()
        self.tokenizer, self.delay, self.steps = tokenizer, delay, 0
        self.weight = torch.nn.Parameter(torch.zeros(1))
        self.config = SimpleNamespace(max_position_embeddings=4096)

    def forward(self, input_ids, cache=None, **kwargs):
        self.steps += 1
        time.sleep(self.delay)
        logits = torch.zeros(input_ids.shape[0], input_ids.shape[1], 512)
        logits[..., 300] = 10.0  # an ordinary token, never an end of sequence
        return SimpleNamespace(logits=logits, cache=cache)


@pytest.mark.parametrize("stream", [False, True])
def test_a_request_stops_within_a_step_of_its_client_leaving(tokenizer, stream):
    """Streamed or not, generation stops when the client goes (checked between decode steps, not on
    a timer), the access log says client_closed with the tokens generated, and the batch is free."""
    import logging
    import socket

    from helpers.serving import Server, post, wait_until

    lines = []
    access = logging.Logger("access-test", logging.INFO)
    access.addHandler(type("Keep", (logging.Handler,), {"emit": lambda self, record: lines.append(record.msg)})())
    model = SlowForward(tokenizer)
    server = Server(create_app(ModelHost(_loaded(model), name="fake"), access_log=access))
    try:
        body = json.dumps(
            {"model": "fake", "max_tokens": 1000, "stream": stream, "messages": [{"role": "user", "content": "hi"}]}
        )
        client = socket.create_connection(("127.0.0.1", server.port))
        client.sendall(
            f"POST /v1/chat/completions HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n{body}".encode()
        )
        wait_until(lambda: model.steps >= 10)
        client.close()
        left_at = model.steps
        wait_until(lambda: any('"client_closed"' in line for line in lines))
        time.sleep(0.3)  # 15 more steps would run in this time if generation went on
        assert model.steps - left_at <= 3, (left_at, model.steps)  # the step running, the one that noticed
        record = json.loads(next(line for line in lines if '"client_closed"' in line))
        assert record["outcome"] == "client_closed" and 9 <= record["completion_tokens"] < 20
        # the batch has room again: a new request is answered at once
        status, answer = post(
            server.url + "/chat/completions",
            {"model": "fake", "max_tokens": 2, "messages": [{"role": "user", "content": "again"}]},
        )
        assert status == 200 and answer["usage"]["completion_tokens"] == 2
    finally:
        server.stop()
