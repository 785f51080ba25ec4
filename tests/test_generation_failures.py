"""No hang: a generation that raises reaches the user, and one whose reader left stops.

The models here are stand-ins with a `generate` that streams or raises on cue, so every test runs
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
from tunesmith.serve.api import ModelHost, create_app, stream_text
from tunesmith.serve.chat import chat_loop, prompt_tokens

DEADLINE = 60


def within_deadline(fn, *args, **kwargs):
    """fn(*args) in a thread; fails (rather than hangs) when it has not returned in DEADLINE s."""
    result = {}

    def run():
        try:
            result["value"] = fn(*args, **kwargs)
        except BaseException as exc:  # noqa: BLE001
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
    one_turn = prompt_tokens(_loaded(FakeModel(tokenizer)), [{"role": "user", "content": turns[0]},
                                                             {"role": "assistant", "content": "Fine, thanks."},
                                                             {"role": "user", "content": turns[1]}])
    model = FakeModel(tokenizer, context=one_turn + 10 + 16)  # room for about two turns and the reply
    out = io.StringIO()
    within_deadline(chat_loop, _loaded(model), None, 16, stdin=io.StringIO("\n".join(turns) + "\n"), out=out)
    assert "(history trimmed: the 2 oldest turns were left out to fit the model's context" in out.getvalue()
    last = model.prompts[-1]
    assert "question number 3" in last and "question number 2" in last and "question number 0" not in last
    # a message that alone is over the budget is refused with the sizes, and the chat goes on
    out = io.StringIO()
    within_deadline(chat_loop, _loaded(FakeModel(tokenizer, context=40)), None, 16,
                    stdin=io.StringIO("word " * 100 + "\nhi\n"), out=out)
    assert "(no reply: this message makes a prompt of" in out.getvalue()


OPTIONS = {"seed": None, "stop": [], "max_tokens": 8, "temperature": 0.0, "top_p": 1.0, "stream": False}


def test_api_stream_ends_with_the_generation_error(tokenizer):
    model = FakeModel(tokenizer, failures=[ValueError("input too long for this model")])
    inputs = tokenizer("hello", return_tensors="pt")
    with pytest.raises(ValueError, match="input too long"):
        within_deadline(lambda: list(stream_text(_loaded(model), dict(inputs), OPTIONS)))


def test_a_reader_that_leaves_stops_the_generation(tokenizer):
    model = FakeModel(tokenizer, endless=True)
    stream = stream_text(_loaded(model), dict(tokenizer("hello", return_tensors="pt")), {**OPTIONS, "max_tokens": 10**6})
    assert within_deadline(next, stream)[0]
    within_deadline(stream.close)  # the HTTP client went away
    steps = model.steps
    time.sleep(0.3)
    assert model.steps == steps < 100_000  # stopped, and stays stopped
    assert not [t for t in threading.enumerate() if t.name == "tunesmith-generate"]


def test_http_api_answers_a_failed_generation_with_an_error(tokenizer):
    from test_serve import Server

    model = FakeModel(tokenizer, failures=[torch.cuda.OutOfMemoryError("CUDA out of memory"), RuntimeError("boom")])
    server = Server(create_app(ModelHost(_loaded(model), name="fake")))
    try:
        body = json.dumps({"model": "fake", "messages": [{"role": "user", "content": "hi"}]}).encode()
        request = urllib.request.Request(server.url + "/chat/completions", body, {"Content-Type": "application/json"})
        with pytest.raises(urllib.error.HTTPError) as caught:
            within_deadline(urllib.request.urlopen, request, timeout=DEADLINE)
        assert caught.value.code == 500
        assert "generation failed: OutOfMemoryError" in json.loads(caught.value.read())["error"]["message"]
        streamed = json.dumps({"model": "fake", "stream": True, "messages": [{"role": "user", "content": "hi"}]})
        request = urllib.request.Request(server.url + "/chat/completions", streamed.encode(),
                                         {"Content-Type": "application/json"})
        events = within_deadline(lambda: urllib.request.urlopen(request, timeout=DEADLINE).read().decode())
        assert '"generation failed: RuntimeError: boom"' in events and "[DONE]" not in events
    finally:
        server.stop()
