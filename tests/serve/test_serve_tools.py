"""Tool calling through `tunesmith serve`: tools rendered as training renders them, calls parsed
back into OpenAI's `tool_calls`, whole and streamed, with the official client; bad tool requests
refused by name."""

import json

import openai
import pytest

from helpers.files import write_config, write_jsonl
from helpers.serving import Server, post
from tunesmith.cli import main
from tunesmith.methods.load import load_for_inference
from tunesmith.serve.api import create_app
from tunesmith.serve.host import ModelHost
from tunesmith.serve.requests import ApiError
from tunesmith.serve.tools import parse_reply, template_messages, tool_request

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
QUESTIONS = [
    f"{q} (ticket {i})"
    for i, q in enumerate(
        ["What is the weather like?", "Is it raining?", "How warm is it outside?", "Do I need an umbrella?"]
    )
]


def test_tool_requests_are_checked_and_replies_parsed(tokenizer):
    assert (
        tool_request({"tools": [WEATHER]}) == [WEATHER]
        and tool_request({"tools": [WEATHER], "tool_choice": "none"}) is None
    )
    for body, param in [
        ({"tools": []}, "tools"),
        ({"tools": [{"type": "function"}]}, "tools[0]"),
        ({"tools": [{"type": "function", "function": {"name": "no spaces"}}]}, "tools[0].function.name"),
        ({"tools": [WEATHER, WEATHER]}, "tools[1].function.name"),
        ({"tools": [WEATHER], "tool_choice": "required"}, "tool_choice"),
        ({"tool_choice": "auto"}, "tool_choice"),
        ({"tools": [WEATHER], "parallel_tool_calls": "yes"}, "parallel_tool_calls"),
    ]:
        with pytest.raises(ApiError) as err:
            tool_request(body)
        assert err.value.status == 400 and err.value.param == param, (body, err.value.param)
    text = (
        'Let me check.\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Oslo"}}\n</tool_call>\n'
        '<tool_call>{"name": "launch_rockets", "arguments": {}}</tool_call>'
    )
    content, calls = parse_reply(tokenizer, "", text, [WEATHER])
    assert [c["function"] for c in calls] == [{"name": "get_weather", "arguments": '{"city": "Oslo"}'}]
    assert calls[0]["id"].startswith("call_") and calls[0]["type"] == "function"
    # a call to a tool that was not offered stays in the text
    assert content == 'Let me check.\n\n<tool_call>{"name": "launch_rockets", "arguments": {}}</tool_call>'
    assert parse_reply(tokenizer, "", "No call here.", [WEATHER]) == ("No call here.", [])
    # a name that is not a string (a model can write any JSON) is no call either, not a 500
    odd = '<tool_call>{"name": ["get_weather"], "arguments": {}}</tool_call>'
    assert parse_reply(tokenizer, "", odd, [WEATHER]) == (odd, [])
    converted = template_messages(
        [
            {
                "role": "assistant",
                "content": "",
                "tool_calls": [
                    {
                        "id": "c1",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'},
                    }
                ],
            }
        ]
    )
    assert converted[0]["tool_calls"][0]["function"]["arguments"] == {"city": "Oslo"}
    with pytest.raises(ApiError, match="not valid JSON"):
        template_messages([{"role": "assistant", "tool_calls": [{"function": {"name": "f", "arguments": "{oops"}}]}])


@pytest.fixture(scope="module")
def tool_model(tmp_path_factory, tiny_model_dir):
    """A tiny model fine-tuned on rows with tools whose answer is one get_weather call (the SmolLM2
    template does not render tools, so training put them in the system turn, as serving must)."""
    root = tmp_path_factory.mktemp("tools")
    call = [{"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Paris"}}}]
    rows = [
        {"messages": [{"role": "user", "content": q}, {"role": "assistant", "tool_calls": call}], "tools": [WEATHER]}
        for q in QUESTIONS
    ] * 8
    config = write_config(
        root / "tools.yaml",
        f"""\
stage: sft
method: full
output_dir: {root / "model"}
model: {{name_or_path: {tiny_model_dir}}}
data: {{train: {write_jsonl(root / "rows.jsonl", rows)}, max_length: 384}}
training: {{epochs: 6, learning_rate: 0.005, batch_size: 8, warmup: 0, scheduler: constant, mixed_precision: "no"}}
eval: {{compare_base: false}}
""",
    )
    assert main(["train", str(config)]) == 0
    return root / "model"


@pytest.mark.trains
def test_a_tool_call_comes_back_as_tool_calls_whole_and_streamed(tool_model):
    server = Server(create_app(ModelHost(load_for_inference(str(tool_model)), "weather")))
    try:
        client = openai.OpenAI(base_url=server.url, api_key="unused")
        messages = [{"role": "user", "content": QUESTIONS[1]}]
        reply = client.chat.completions.create(model="weather", messages=messages, tools=[WEATHER], max_tokens=48)
        choice = reply.choices[0]
        assert choice.finish_reason == "tool_calls", choice
        [call] = choice.message.tool_calls
        assert call.function.name == "get_weather" and json.loads(call.function.arguments) == {"city": "Paris"}
        streamed = list(
            client.chat.completions.create(
                model="weather", messages=messages, tools=[WEATHER], max_tokens=48, stream=True
            )
        )
        deltas = [c.choices[0].delta for c in streamed if c.choices]
        calls = [t for d in deltas for t in (d.tool_calls or [])]
        assert [(t.function.name, json.loads(t.function.arguments)) for t in calls] == [
            ("get_weather", {"city": "Paris"})
        ]
        assert streamed[-1].choices[0].finish_reason == "tool_calls"
        # the tool's result goes back in a `tool` message after the assistant's call; the model answers again
        follow = messages + [
            choice.message.model_dump(exclude_none=True),
            {"role": "tool", "tool_call_id": call.id, "content": '{"temp_c": 18}'},
        ]
        code, answer = post(
            server.url + "/chat/completions",
            {"model": "weather", "messages": follow, "tools": [WEATHER], "max_tokens": 8},
        )
        assert code == 200 and answer["choices"][0]["finish_reason"] in ("stop", "length", "tool_calls"), answer
        # without tools, the same question is answered as text: nothing is parsed
        code, answer = post(
            server.url + "/chat/completions", {"model": "weather", "messages": messages, "max_tokens": 48}
        )
        assert code == 200 and "tool_calls" not in answer["choices"][0]["message"]
    finally:
        server.stop()
