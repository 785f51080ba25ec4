"""`tunesmith serve`: a real HTTP server, talked to with the official `openai` client and plain HTTP."""

import json
import shutil
import urllib.error
import urllib.request

import openai
import pytest
import torch

from helpers.serving import Server, post
from helpers.training import train_adapter
from tunesmith.errors import ConfigError
from tunesmith.methods.load import load_for_inference
from tunesmith.models.loader import load_causal_lm
from tunesmith.models.lora_set import LoraSet
from tunesmith.serve.api import create_app, serve
from tunesmith.serve.host import ModelHost

pytestmark = pytest.mark.trains  # trains or samples: scripts/test.sh runs it again with the CPU restricted to AVX2


@pytest.fixture(scope="module")
def adapters(tmp_path_factory, tiny_model_dir):
    root = tmp_path_factory.mktemp("serve")
    return (
        train_adapter(root, tiny_model_dir, "birds", "Bluefinch.", "Be brief."),
        train_adapter(root, tiny_model_dir, "wolves", "Redwolf.", "Answer in one word."),
    )


@pytest.fixture(scope="module")
def server(adapters):
    birds, wolves = adapters
    running = Server(
        create_app(ModelHost(adapters=LoraSet({"birds": str(birds), "wolves": str(wolves)})), max_tokens_cap=64)
    )
    yield running
    running.stop()


def test_openai_client_lists_and_switches_adapters_per_request(server):
    client = openai.OpenAI(base_url=server.url, api_key="unused")
    assert [m.id for m in client.models.list()] == ["base", "birds", "wolves"]
    question = [{"role": "user", "content": "What is the code word?"}]
    for name, word in (("birds", "Bluefinch"), ("wolves", "Redwolf"), ("birds", "Bluefinch")):
        reply = client.chat.completions.create(model=name, messages=question, max_tokens=6)
        assert reply.model == name and reply.object == "chat.completion"
        assert reply.choices[0].message.role == "assistant" and reply.choices[0].message.content.startswith(word)
        assert reply.choices[0].finish_reason == "stop"  # the adapter learned to end its reply
        assert 0 < reply.usage.completion_tokens <= 6 and reply.usage.prompt_tokens > 5
        assert reply.usage.total_tokens == reply.usage.prompt_tokens + reply.usage.completion_tokens


def test_concurrent_requests_for_different_adapters_share_a_batch(server):
    from concurrent.futures import ThreadPoolExecutor

    client = openai.OpenAI(base_url=server.url, api_key="unused", max_retries=0)
    question = [{"role": "user", "content": "What is the code word?"}]
    names = ["birds", "wolves", "base", "wolves", "birds", "base"]

    def ask(name):
        return client.chat.completions.create(model=name, messages=question, max_tokens=6).choices[0].message.content

    alone = {name: ask(name) for name in set(names)}
    with ThreadPoolExecutor(len(names)) as pool:  # PEFT's mixed-adapter forward: one adapter per row
        together = list(pool.map(ask, names))
    assert together == [alone[name] for name in names]
    assert alone["birds"].startswith("Bluefinch") and alone["wolves"].startswith("Redwolf")


def test_streamed_reply_equals_the_whole_reply(server):
    client = openai.OpenAI(base_url=server.url, api_key="unused")
    question = [{"role": "user", "content": "Name the code word."}]
    whole = client.chat.completions.create(model="wolves", messages=question, max_tokens=6).choices[0].message.content
    chunks = list(client.chat.completions.create(model="wolves", messages=question, max_tokens=6, stream=True))
    assert chunks[0].choices[0].delta.role == "assistant"
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == whole
    assert chunks[-1].choices[0].finish_reason == "stop" and all(
        c.choices[0].finish_reason is None for c in chunks[:-1]
    )


def test_stop_strings_cut_the_reply(server):
    client = openai.OpenAI(base_url=server.url, api_key="unused")
    question = [{"role": "user", "content": "What is the code word?"}]
    reply = client.chat.completions.create(model="birds", messages=question, max_tokens=6, stop=["finch"])
    assert reply.choices[0].message.content == "Blue" and reply.choices[0].finish_reason == "stop"
    streamed = client.chat.completions.create(model="birds", messages=question, max_tokens=6, stop="finch", stream=True)
    assert "".join(c.choices[0].delta.content or "" for c in streamed) == "Blue"


def test_completions_continue_raw_text_as_the_model_does(server, tiny_model_dir):
    client = openai.OpenAI(base_url=server.url, api_key="unused")
    result = client.completions.create(model="base", prompt="The archive is in", max_tokens=5)
    base = load_causal_lm(str(tiny_model_dir)).eval()
    tokenizer = load_for_inference(str(tiny_model_dir)).tokenizer
    ids = tokenizer("The archive is in", return_tensors="pt")
    with torch.no_grad():
        out = base.generate(**ids, max_new_tokens=5, do_sample=False, pad_token_id=tokenizer.pad_token_id)
    expected = tokenizer.decode(out[0][ids["input_ids"].shape[1] :], skip_special_tokens=True)
    assert (
        result.choices[0].text == expected and result.usage.completion_tokens == len(out[0]) - ids["input_ids"].shape[1]
    )


@pytest.mark.parametrize(
    "body,status,param,text",
    [
        (b"{not json", 400, None, "not valid JSON"),
        (b'{"model": "birds", "max_tokens": ' + b"1" * 5000 + b"}", 400, None, "not valid JSON"),
        (b'{"model": "birds", "user": ' + b"[" * 100000 + b"]" * 100000 + b"}", 400, None, "not valid JSON"),
        ({"model": "birds"}, 400, "messages", "`messages` must be a non-empty list"),
        (
            {"model": "birds", "messages": [{"role": "wizard", "content": "hi"}]},
            400,
            "messages[0].role",
            "must be one of",
        ),
        ({"model": "birds", "messages": [{"role": "user", "content": 7}]}, 400, "messages[0].content", "text only"),
        (
            {"model": "birds", "messages": [{"role": "user", "content": "hi \ud800"}]},
            400,
            "messages[0].content",
            "unpaired surrogate (U+D800) at character 3",
        ),
        (
            {"model": "birds", "messages": [{"role": "user", "content": "hi"}], "temperature": 5},
            400,
            "temperature",
            "between 0.0 and 2.0",
        ),
        (
            {"model": "birds", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 100000},
            400,
            "max_tokens",
            "between 1 and 64",
        ),
        (
            {"model": "birds", "messages": [{"role": "user", "content": "hi"}], "stream": "yes"},
            400,
            "stream",
            "true or false",
        ),
        (
            {"messages": [{"role": "user", "content": "hi"}]},
            400,
            "model",
            "`model` is required; served: base, birds, wolves",
        ),
        ({"model": "cats", "messages": [{"role": "user", "content": "hi"}]}, 404, "model", "`cats` does not exist"),
    ],
)
def test_bad_requests_get_openai_style_json_errors(server, body, status, param, text):
    code, answer = post(server.url + "/chat/completions", body)
    assert code == status and answer["error"]["param"] == param and text in answer["error"]["message"], answer
    assert answer["error"]["type"] == "invalid_request_error"


def test_api_key_single_model_and_loopback_default(adapters):
    birds, _ = adapters
    host = ModelHost(load_for_inference(str(birds)), "birds")
    running = Server(create_app(host, api_key="s3cret"))
    try:
        code, answer = post(running.url + "/chat/completions", {"messages": [{"role": "user", "content": "hi"}]})
        assert code == 401 and answer["error"]["code"] == "invalid_api_key"
        with pytest.raises(openai.AuthenticationError):
            openai.OpenAI(base_url=running.url, api_key="wrong").models.list()
        client = openai.OpenAI(base_url=running.url, api_key="s3cret")
        assert [m.id for m in client.models.list()] == ["birds"]
        # one model: `model` may be left out (the official client always sends it)
        code, answer = post(
            running.url + "/chat/completions",
            {"messages": [{"role": "user", "content": "What is the code word?"}], "max_tokens": 6},
            {"Authorization": "Bearer s3cret"},
        )
        assert code == 200 and answer["choices"][0]["message"]["content"].startswith("Bluefinch")
    finally:
        running.stop()
    with pytest.raises(ConfigError, match="exposes the model to the network; set --api-key"):
        serve(lambda: host, "0.0.0.0", 0)


def call(url: str, method: str, body=None, key: str | None = None) -> tuple[int, dict]:
    headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {key}"} if key else {})}
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_adapters_are_added_and_removed_while_the_server_runs(adapters, server, tmp_path):
    """POST/DELETE /v1/adapters (admin key): an added adapter answers exactly as when the server
    starts with it, a removed one is gone, and every refusal names its reason."""
    birds, wolves = adapters
    question = {"model": "wolves", "messages": [{"role": "user", "content": "Which animal?"}], "max_tokens": 8}
    code, started_with_it = post(server.url + "/chat/completions", question)
    assert code == 200
    # the server started without --admin-key: adapter management is off
    code, answer = call(server.url + "/adapters", "GET", key="anything")
    assert code == 403 and "--admin-key" in answer["error"]["message"]

    running = Server(create_app(ModelHost(adapters=LoraSet({"birds": str(birds)})), api_key="user", admin_key="admin"))
    try:
        url = running.url
        assert call(url + "/adapters", "POST", {"name": "wolves", "path": str(wolves)}, key="user")[0] == 401
        code, answer = call(url + "/adapters", "POST", {"name": "wolves", "path": str(wolves)}, key="admin")
        assert code == 201 and answer["id"] == "wolves" and answer["path"] == str(wolves.resolve()), answer
        assert [m["id"] for m in call(url + "/models", "GET", key="user")[1]["data"]] == ["base", "birds", "wolves"]
        code, answer = call(url + "/chat/completions", "POST", question, key="user")
        assert code == 200 and answer["choices"][0]["message"] == started_with_it["choices"][0]["message"]
        # refusals: a name taken, a folder that is not a finished output, a missing field
        code, answer = call(url + "/adapters", "POST", {"name": "birds", "path": str(wolves)}, key="admin")
        assert code == 409 and "already taken" in answer["error"]["message"]
        code, answer = call(url + "/adapters", "POST", {"name": "x", "path": str(tmp_path / "nowhere")}, key="admin")
        assert code == 400 and answer["error"]["param"] == "path" and "not found" in answer["error"]["message"]
        code, answer = call(url + "/adapters", "POST", {"name": "x"}, key="admin")
        assert code == 400 and answer["error"]["param"] == "path"
        # a finished output whose weights are damaged: a 400 naming it, and the set is as it was
        damaged = tmp_path / "damaged"
        shutil.copytree(wolves, damaged)
        (damaged / "adapter_model.safetensors").write_bytes(b"not safetensors")
        code, answer = call(url + "/adapters", "POST", {"name": "broken", "path": str(damaged)}, key="admin")
        assert code == 400 and answer["error"]["param"] == "path", answer
        assert "could not be loaded" in answer["error"]["message"]
        assert [a["id"] for a in call(url + "/adapters", "GET", key="admin")[1]["data"]] == ["birds", "wolves"]
        code, answer = call(url + "/adapters", "POST", {"name": "broken", "path": str(wolves)}, key="admin")
        assert code == 201, answer  # the name was not left taken
        assert call(url + "/adapters/broken", "DELETE", key="admin")[0] == 200
        # removed: no longer listed or served
        code, answer = call(url + "/adapters/wolves", "DELETE", key="admin")
        assert code == 200 and answer["deleted"] is True
        assert [a["id"] for a in call(url + "/adapters", "GET", key="admin")[1]["data"]] == ["birds"]
        assert call(url + "/chat/completions", "POST", question, key="user")[0] == 404
        assert call(url + "/adapters/wolves", "DELETE", key="admin")[0] == 404
        code, answer = call(url + "/adapters/birds", "DELETE", key="admin")
        assert code == 400 and "last adapter" in answer["error"]["message"]
    finally:
        running.stop()


def test_langchain_chat_openai_invokes_and_streams(server):
    """LangChain's ChatOpenAI (its own OpenAI client, over real HTTP) gets the same reply as a plain
    request, whole and streamed."""
    from langchain_core.messages import HumanMessage, SystemMessage
    from langchain_openai import ChatOpenAI

    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Which bird?"}]
    code, plain = post(server.url + "/chat/completions", {"model": "birds", "messages": messages, "max_tokens": 8})
    assert code == 200
    expected = plain["choices"][0]["message"]["content"]
    chat = ChatOpenAI(base_url=server.url, api_key="unused", model="birds", max_tokens=8, temperature=0)
    lc_messages = [SystemMessage("Be brief."), HumanMessage("Which bird?")]
    reply = chat.invoke(lc_messages)
    assert (
        reply.content == expected and reply.response_metadata["finish_reason"] == plain["choices"][0]["finish_reason"]
    )
    assert reply.usage_metadata["output_tokens"] == plain["usage"]["completion_tokens"]
    assert "".join(chunk.content for chunk in chat.stream(lc_messages)) == expected
