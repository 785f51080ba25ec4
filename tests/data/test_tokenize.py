"""Templates and masking: training tokens equal apply_chat_template; only assistant turns train."""

from tunesmith.data.formats import Conversation
from tunesmith.data.rejects import Rejects
from tunesmith.data.tokenize import IGNORE_INDEX, MaskOptions, tokenize_all, tokenize_conversation

MULTI_TURN = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "Name a colour."},
    {"role": "assistant", "content": "Teal."},
    {"role": "user", "content": "用中文再说一次"},
    {"role": "assistant", "content": "蓝绿色。"},
]


def test_input_ids_equal_apply_chat_template(tokenizer):
    for messages in (MULTI_TURN, MULTI_TURN[1:3]):
        row = tokenize_conversation(tokenizer, Conversation(messages), max_length=4096)
        expected = tokenizer.apply_chat_template(messages, tokenize=True, return_dict=True)["input_ids"]
        assert row.input_ids == list(expected)


def test_labels_cover_exactly_the_assistant_replies_and_end_of_turn(tokenizer):
    row = tokenize_conversation(tokenizer, Conversation(MULTI_TURN), max_length=4096)
    # Expected trained spans, built independently: the tokens of each reply plus <|im_end|>.
    end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    expected = []
    ids = row.input_ids
    for i, message in enumerate(MULTI_TURN):
        if message["role"] != "assistant":
            continue
        prompt = tokenizer.apply_chat_template(
            MULTI_TURN[:i], add_generation_prompt=True, tokenize=True, return_dict=True
        )["input_ids"]
        reply = tokenizer(message["content"], add_special_tokens=False)["input_ids"] + [end]
        assert ids[len(prompt) : len(prompt) + len(reply)] == reply
        expected.extend(range(len(prompt), len(prompt) + len(reply)))
    trained = [i for i, label in enumerate(row.labels) if label != IGNORE_INDEX]
    assert trained == expected
    assert all(row.labels[i] == ids[i] for i in trained)
    assert tokenizer.decode([ids[i] for i in trained]) == "Teal.<|im_end|>蓝绿色。<|im_end|>"


def test_train_on_prompt_trains_everything(tokenizer):
    row = tokenize_conversation(tokenizer, Conversation(MULTI_TURN), max_length=4096, train_on_prompt=True)
    assert row.labels == row.input_ids


def test_a_reply_truncated_to_nothing_is_an_invalid_row_and_cut_rows_are_counted(tokenizer):
    long_prompt = [{"role": "user", "content": "word " * 200}, {"role": "assistant", "content": "ok"}]
    long_reply = [{"role": "user", "content": "Count."}, {"role": "assistant", "content": "one two " * 60}]
    short = MULTI_TURN[1:3]
    rejects = Rejects()
    rows = tokenize_all(
        tokenizer,
        [
            Conversation(long_prompt, "a.jsonl:1"),
            Conversation(short, "a.jsonl:2"),
            Conversation(long_reply, "a.jsonl:3"),
        ],
        MaskOptions(max_length=64),
        rejects,
    )
    (entry,) = rejects.entries
    assert entry["where"] == "a.jsonl:1" and entry["field"] == "row"
    assert "truncation to data.max_length=64 cuts the trained reply to nothing" in entry["reason"]
    assert not rejects.dropped and [r.where for r in rows] == ["a.jsonl:2", "a.jsonl:3"]
    assert all(len(r.input_ids) <= 64 for r in rows)
    (cut,) = rejects.truncated
    assert cut["where"] == "a.jsonl:3" and cut["tokens"] > 64 and cut["lost_end"]


TOOL_CHAT = {
    "messages": [
        {"role": "user", "content": "Weather in Oslo?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [{"type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'}}],
        },
        {"role": "tool", "content": '{"temp_c": 4}'},
        {"role": "assistant", "content": "It is 4 °C in Oslo."},
    ]
}


def test_tool_calls_are_trained_and_tool_results_are_not(tmp_path, tokenizer):
    from helpers.files import write_jsonl
    from tunesmith.data.formats import load_conversations
    from tunesmith.data.tokenize import render, tool_calls_as_text

    sharegpt = {
        "conversations": [
            {"from": "human", "value": "Weather in Oslo?"},
            {"from": "function_call", "value": '{"name": "get_weather", "arguments": {"city": "Oslo"}}'},
            {"from": "observation", "value": '{"temp_c": 4}'},
            {"from": "gpt", "value": "It is 4 °C in Oslo."},
        ]
    }
    a, b = load_conversations([write_jsonl(tmp_path / "t.jsonl", [TOOL_CHAT, sharegpt])])
    assert a.messages == b.messages  # both formats give the same canonical conversation
    assert a.messages[1]["tool_calls"] == [
        {"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Oslo"}}}
    ]
    row = tokenize_conversation(tokenizer, a, max_length=4096)
    # the template has no tool support: the call is written as <tool_call> text, and training ids
    # equal apply_chat_template of exactly that
    expected = tokenizer.apply_chat_template(tool_calls_as_text(a.messages), tokenize=True, return_dict=True)[
        "input_ids"
    ]
    assert row.input_ids == list(expected)
    assert '<|im_start|>tool\n{"temp_c": 4}<|im_end|>' in render(tokenizer, a.messages)
    trained = tokenizer.decode([t for t, label in zip(row.input_ids, row.labels) if label != IGNORE_INDEX])
    assert trained == (
        '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Oslo"}}\n</tool_call><|im_end|>'
        "It is 4 °C in Oslo.<|im_end|>"
    )


def test_tool_turn_order_errors(tmp_path):
    import pytest

    from helpers.files import write_jsonl
    from tunesmith.data.formats import load_conversations
    from tunesmith.errors import DataError

    msgs = TOOL_CHAT["messages"]
    rows = [
        {"messages": [msgs[0], {"role": "tool", "content": "x"}, msgs[3]]},  # tool without a call
        {"messages": msgs[:2] + [msgs[3]]},  # call without a result
        {"messages": msgs[:3]},  # ends on a tool result
        {
            "messages": [
                msgs[0],
                {"role": "assistant", "content": "", "tool_calls": [{"function": {"arguments": "{}"}}]},
                msgs[2],
                msgs[3],
            ]
        },
        {
            "messages": [
                msgs[0],
                {"role": "assistant", "tool_calls": [{"function": {"name": "f", "arguments": "{oops"}}]},
                msgs[2],
                msgs[3],
            ]
        },
    ]
    path = write_jsonl(tmp_path / "bad.jsonl", rows)
    with pytest.raises(DataError) as err:
        load_conversations([path])
    message = str(err.value)
    assert f"{path}:1:messages[1]: a tool turn must follow an assistant turn with tool_calls" in message
    assert f"{path}:2:messages[2]: expected a tool result after the assistant's tool_calls, got assistant" in message
    assert f"{path}:3:messages[3]: a tool turn must follow" not in message
    assert f"{path}:3:messages: the conversation must end with an assistant turn" in message
    assert f"{path}:4:messages[1].tool_calls[0]: a tool call needs a function name" in message
    assert f"{path}:5:messages[1].tool_calls[0].arguments: not valid JSON" in message
