"""Row formats -> one canonical `Conversation` (a list of role/content messages).

- alpaca:   {instruction, input?, output, system?, history?: [[user, assistant], ...],
            examples?: [{input, output}, ...]}  (few-shot examples: prior user/assistant turns)
- messages: {messages: [{role, content, tool_calls?}, ...]}  (OpenAI style; role tool for results)
- sharegpt: {conversations: [{from, value}, ...], system?}   (from: human/gpt/system, and
            function_call (value: JSON {name, arguments}) / observation for tool use)
- multitask: {task, input, output, system?, examples?}      (one user turn, one reply, a task name)
- prompt_completion: {prompt, completion}  (TRL's prompt-completion type: strings, or lists of
            messages; only the completion is trained, as TRL's SFTTrainer does)

A turn's content may be a list of `{type, value}` parts, with a per-turn `loss_weight`
(LLaMA-Factory's v1 format); a row may list `tools`. See `turns.py`.

`columns` maps canonical names onto a file's own: fields of the row (`{instruction: question}`),
and, with LLaMA-Factory's tag names, the keys and role names of sharegpt turns (`{role_tag: role,
content_tag: content, user_tag: user, assistant_tag: assistant}`; also observation_tag,
function_tag, system_tag).

Few-shot `examples` become user/assistant turns right after the system prompt, in file order;
`Conversation.meta["examples"]` = (index of the first example message, number of examples), so
`data.augment.shuffle_examples` can reorder them.

Any row may carry a `task` name (a non-empty string); it is kept in `Conversation.meta["task"]`
and travels into the tokenised row, where `stage: mtl` weighs and logs the loss per task.

An assistant turn may call tools (`tool_calls`, kept structured on the message); the tool results
that follow are `tool` turns, never trained. See `tokenize.render` for templates without tool
support.

A converter raises `RowError` for a bad row; `load_conversations` collects every problem of every
file (`rejects.collect_rows`), listed as `file:line:field: reason` (`row_errors.py`).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tunesmith.data.readers import RawRow
from tunesmith.data.rejects import Rejects, collect_rows
from tunesmith.data.row_errors import RowError
from tunesmith.data.turns import content_parts, rename_columns, tool_calls, tool_definitions, trained, with_system

ROLES = ("system", "user", "assistant", "tool")
SHAREGPT_ROLES = {
    "human": "user",
    "user": "user",
    "gpt": "assistant",
    "assistant": "assistant",
    "system": "system",
    "function_call": "assistant",
    "observation": "tool",
    "tool": "tool",
}


@dataclass
class Conversation:
    messages: list[dict[str, str]]
    where: str = ""
    meta: dict[str, Any] = field(default_factory=dict)


def detect_format(row: dict[str, Any]) -> str:
    if "messages" in row:
        return "messages"
    if "conversations" in row:
        return "sharegpt"
    if "prompt" in row and "completion" in row:
        return "prompt_completion"
    if "instruction" not in row and ("task" in row or "input" in row):
        return "multitask"
    if "instruction" in row or "output" in row:
        return "alpaca"
    if "text" in row:
        raise RowError(
            "text", "a raw-text row: it trains with `stage: pt`; this stage needs instruction/output or messages"
        )
    raise RowError(
        "row",
        f"cannot tell the format from keys {sorted(row)}; expected instruction/output, "
        "task/input/output, messages, conversations or prompt/completion",
    )


def _text(row: dict[str, Any], key: str, required: bool) -> str:
    value = row.get(key)
    if value is None:
        if required:
            raise RowError(key, "missing required field")
        return ""
    if not isinstance(value, str):
        raise RowError(key, f"expected a string, got {type(value).__name__}")
    if required and not value.strip():
        raise RowError(key, "empty")
    return value


def few_shot(row: dict[str, Any]) -> list[dict[str, str]]:
    """`examples: [{input, output}, ...]` as user/assistant turns (empty when the row has none)."""
    examples = row.get("examples")
    if examples is None:
        return []
    if not isinstance(examples, list) or not examples:
        raise RowError("examples", "expected a non-empty list of {input, output} objects")
    messages = []
    for i, example in enumerate(examples):
        if not isinstance(example, dict):
            raise RowError(f"examples[{i}]", "expected an object {input, output}")
        for key in ("input", "output"):
            value = example.get(key)
            if not isinstance(value, str) or not value.strip():
                raise RowError(
                    f"examples[{i}].{key}",
                    "missing or empty"
                    if value is None or isinstance(value, str)
                    else f"expected a string, got {type(value).__name__}",
                )
        messages += [{"role": "user", "content": example["input"]}, {"role": "assistant", "content": example["output"]}]
    return messages


def from_alpaca(row: dict[str, Any]) -> list[dict[str, str]]:
    output = _text(row, "output", required=True)
    return alpaca_prompt(row) + [{"role": "assistant", "content": output}]


def alpaca_prompt(row: dict[str, Any]) -> list[dict[str, str]]:
    """An alpaca row's turns up to its instruction (system, few-shot examples, history, user turn)."""
    instruction = _text(row, "instruction", required=True)
    extra = _text(row, "input", required=False)
    messages = with_system(few_shot(row), _text(row, "system", required=False))
    history = row.get("history") or []
    if not isinstance(history, list):
        raise RowError("history", "expected a list of [user, assistant] pairs")
    for i, pair in enumerate(history):
        if not (isinstance(pair, list) and len(pair) == 2 and all(isinstance(t, str) and t.strip() for t in pair)):
            raise RowError(f"history[{i}]", "expected a pair of non-empty strings [user, assistant]")
        messages += [{"role": "user", "content": pair[0]}, {"role": "assistant", "content": pair[1]}]
    user = f"{instruction}\n{extra}" if extra.strip() else instruction
    return messages + [{"role": "user", "content": user}]


def from_multitask(row: dict[str, Any]) -> list[dict[str, str]]:
    """A multi-task row: the input is the user turn, the output the reply (the task is read by the caller)."""
    _text(row, "task", required=True)
    user = _text(row, "input", required=True)
    output = _text(row, "output", required=True)
    turns = few_shot(row) + [{"role": "user", "content": user}, {"role": "assistant", "content": output}]
    return with_system(turns, _text(row, "system", required=False))


def from_messages(
    row: dict[str, Any], key: str, role_key: str, content_key: str, role_map: dict[str, str]
) -> list[dict[str, Any]]:
    turns = row.get(key)
    if not isinstance(turns, list) or not turns:
        raise RowError(key, "expected a non-empty list of turns")
    system = row.get("system")
    messages = with_system([], system if isinstance(system, str) else None)
    for i, turn in enumerate(turns):
        where = f"{key}[{i}]"
        if not isinstance(turn, dict):
            raise RowError(where, "expected an object")
        role = turn.get(role_key)
        if not isinstance(role, str) or role not in role_map:
            raise RowError(f"{where}.{role_key}", f"unknown role {role!r} (expected one of {', '.join(role_map)})")
        content = turn.get(content_key)
        message: dict[str, Any] = {"role": role_map[role]}
        if role == "function_call":  # sharegpt: the value is the call itself
            try:
                call = json.loads(content) if isinstance(content, str) else content
            except (ValueError, RecursionError) as exc:  # bad JSON, too deep, a number too long
                raise RowError(
                    f"{where}.{content_key}",
                    f"a function_call value must be JSON {{name, arguments}} "
                    f"({getattr(exc, 'msg', None) or 'not readable JSON'})",
                ) from None
            message.update(content="", tool_calls=tool_calls(call, f"{where}.{content_key}"))
        else:
            calls = turn.get("tool_calls")
            if calls is not None:
                if not isinstance(calls, list) or not calls:
                    raise RowError(f"{where}.tool_calls", "expected a non-empty list")
                calls = tool_calls(calls, f"{where}.tool_calls")
            if content is None and calls:
                content = ""
            if content is None or not isinstance(content, (str, list)):
                raise RowError(f"{where}.{content_key}", "missing or not a string")
            text, reasoning, part_calls = content_parts(content, f"{where}.{content_key}")
            calls = (calls or []) + part_calls
            if (calls or reasoning) and message["role"] != "assistant":
                raise RowError(
                    f"{where}.{'tool_calls' if calls else content_key}",
                    f"only assistant turns {'call tools' if calls else 'reason'}",
                )
            if not text.strip() and not calls:
                raise RowError(
                    f"{where}.{content_key}", "empty" + (" (reasoning alone is not a reply)" if reasoning else "")
                )
            message["content"] = text
            if calls:
                message["tool_calls"] = calls
            if reasoning:
                message["reasoning_content"] = reasoning
        if not trained(turn, message["role"], where) and message["role"] == "assistant":
            message["train"] = False
        messages.append(message)
    return messages


def from_prompt_completion(row: dict[str, Any]) -> list[dict[str, Any]]:
    """TRL's prompt-completion row: the prompt's turns are context, the completion's are trained."""
    prompt, completion = row.get("prompt"), row.get("completion")
    roles = {r: r for r in ROLES}
    if isinstance(prompt, list):
        messages = [
            dict(m, train=False) if m["role"] == "assistant" else m
            for m in from_messages(row, "prompt", "role", "content", roles)
        ]
    else:
        system = row.get("system")
        messages = with_system(
            [{"role": "user", "content": _text(row, "prompt", required=True)}],
            system if isinstance(system, str) else None,
        )
    if isinstance(completion, list):
        reply = from_messages({"completion": completion}, "completion", "role", "content", roles)
        if any(m["role"] not in ("assistant", "tool") for m in reply):
            raise RowError(
                "completion", "a completion holds assistant (and tool) turns only; the rest belongs in `prompt`"
            )
        return messages + reply
    return messages + [{"role": "assistant", "content": _text(row, "completion", required=True)}]


def check_order(messages: list[dict[str, Any]], key: str) -> None:
    """system? then user, assistant, user, assistant, ... ending with an assistant turn. An assistant
    turn with tool_calls is followed by one or more tool turns, then an assistant turn, unless it is
    the last turn (a row may end with the call the model learns to make)."""
    start = 1 if messages and messages[0]["role"] == "system" else 0
    for i, message in enumerate(messages):
        if i >= start and message["role"] == "system":
            raise RowError(f"{key}[{i}]", "a system turn is only allowed first")
    expected = ("user",)
    for i in range(start, len(messages)):
        role = messages[i]["role"]
        if role not in expected:
            if role == "tool" and i > start and messages[i - 1]["role"] == "assistant":
                reason = (
                    "a tool turn must follow an assistant turn with tool_calls; this one follows a plain reply (if "
                    "that reply writes its call as text, make it a function_call turn or tool_calls, or set "
                    "data.on_error: skip to leave such rows out)"
                )
            elif role == "tool":
                reason = "a tool turn must follow an assistant turn with tool_calls"
            elif "tool" in expected:
                reason = f"expected a tool result after the assistant's tool_calls, got {role}"
            else:
                reason = (
                    f"expected a {' or '.join(expected)} turn here, got {role} (turns must alternate user/assistant)"
                )
            raise RowError(f"{key}[{i}]", reason)
        if role == "user":
            expected = ("assistant",)
        elif role == "assistant":
            expected = ("tool",) if messages[i].get("tool_calls") else ("user",)
        else:  # tool
            expected = ("tool", "assistant")
    body = messages[start:]
    if not body or body[-1]["role"] != "assistant":  # a reply, or a tool call (trained: the model learns to call)
        raise RowError(key, "the conversation must end with an assistant turn")


def to_conversation(raw: RawRow, fmt: str = "auto", columns: dict[str, str] | None = None) -> Conversation:
    row = raw.data
    if not isinstance(row, dict):
        raise RowError("row", f"expected a JSON object, got {type(row).__name__}")
    row = rename_columns(row, columns)
    kind = detect_format(row) if fmt == "auto" else fmt
    if kind == "multitask":
        messages, key = from_multitask(row), "row"
    elif kind == "alpaca":
        messages, key = from_alpaca(row), "row"
    elif kind == "messages":
        messages, key = from_messages(row, "messages", "role", "content", {r: r for r in ROLES}), "messages"
    elif kind == "prompt_completion":
        messages, key = from_prompt_completion(row), "completion"
    else:
        messages, key = from_messages(row, "conversations", "from", "value", SHAREGPT_ROLES), "conversations"
    check_order(messages, key)
    # an optional `task` on other formats (null counts as absent: csv/parquet columns have gaps)
    meta = {"task": _text(row, "task", required=True)} if row.get("task") is not None or kind == "multitask" else {}
    tools = tool_definitions(row.get("tools"))
    if tools:
        meta["tools"] = tools
    if kind in ("alpaca", "multitask") and row.get("examples") is not None:
        first = 1 if messages[0]["role"] == "system" else 0
        meta["examples"] = (first, len(row["examples"]))
    return Conversation(messages, raw.where, meta)


def conversation_converter(
    fmt: str = "auto", system: str | None = None, columns: dict[str, str] | None = None
) -> Callable[[RawRow], Conversation]:
    """RawRow -> validated Conversation (RowError otherwise), with `system` given to rows that have none
    (marked `meta["default_system"]`, so augmentation may vary it)."""

    def convert(raw: RawRow) -> Conversation:
        conversation = to_conversation(raw, fmt, columns)
        messages = with_system(conversation.messages, system)
        if len(messages) > len(conversation.messages):
            conversation.messages = messages
            conversation.meta["default_system"] = True
            if "examples" in conversation.meta:
                first, count = conversation.meta["examples"]
                conversation.meta["examples"] = (first + 1, count)
        return conversation

    return convert


def load_conversations(
    paths: list[str | Path],
    fmt: str = "auto",
    system: str | None = None,
    columns: dict[str, str] | None = None,
    rejects: Rejects | None = None,
) -> list[Conversation]:
    """Read and validate every row of every file; raise one DataError listing the problems
    (or, with a skipping `rejects`, set the bad rows aside)."""
    return collect_rows(paths, conversation_converter(fmt, system, columns), "row", rejects)
