"""One turn of a conversation: its content, tool calls, whether it is trained, and the row's tools.

Content is a string, or a list of parts as LLaMA-Factory's v1 format writes it:
`[{"type": "text" | "reasoning" | "tool_call", "value": ...}]` (OpenAI's `{"type": "text", "text"}`
is read too). Text parts are joined; reasoning parts become the message's `reasoning_content`
(the key chat templates with thinking read); a tool_call part (JSON `{name, arguments}`) becomes
one of the message's `tool_calls`. Images, audio and video parts are refused: tunesmith trains
text models.

`loss_weight` (v1): 1 trains an assistant turn, 0 leaves it untrained (kept as context). The
message then carries `"train": False`, which `tokenize.assistant_spans` reads; no other weight is
accepted (tunesmith trains a token or does not).

`tools` (a row's tool definitions, a JSON list or a JSON string of one, each `{name, description,
parameters}` or `{"type": "function", "function": {...}}`) are kept in `Conversation.meta["tools"]`
and rendered by `tokenize.render`.

`rename_columns` applies a `columns` mapping to a row: field names, and LLaMA-Factory's tag names
(role_tag, content_tag, user_tag, ...) for the keys and roles of its sharegpt turns.
"""

from __future__ import annotations

import json
from typing import Any

from tunesmith.data.row_errors import RowError


def with_system(messages: list[dict[str, Any]], system: str | None) -> list[dict[str, Any]]:
    """`messages` with `system` as their first turn, unless they open with a system turn of their own
    or `system` is empty or blank: the one rule for putting a default system prompt first."""
    if system and system.strip() and not (messages and messages[0].get("role") == "system"):
        return [{"role": "system", "content": system}, *messages]
    return list(messages)


# LLaMA-Factory's tag names (dataset_info.json `tags`) -> our sharegpt turn keys and role names
TURN_KEY_TAGS = {"role_tag": "from", "content_tag": "value"}
ROLE_TAGS = {
    "user_tag": "human",
    "assistant_tag": "gpt",
    "observation_tag": "observation",
    "function_tag": "function_call",
    "system_tag": "system",
}
MEDIA = ("image", "image_url", "video", "video_url", "audio", "audio_url", "input_audio")


def _json_value(text: str, where: str, what: str = "") -> Any:
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as exc:  # bad JSON, too deep, a number too long
        raise RowError(where, f"not valid JSON ({getattr(exc, 'msg', None) or 'not readable'}){what}") from None


def tool_calls(value: Any, where: str) -> list[dict[str, Any]]:
    """OpenAI-style tool calls: [{type?: function, function: {name, arguments}}] (or {name, arguments})."""
    calls = value if isinstance(value, list) else [value]
    parsed = []
    for j, call in enumerate(calls):
        spot = f"{where}[{j}]" if isinstance(value, list) else where
        function = call.get("function", call) if isinstance(call, dict) else None
        if not (isinstance(function, dict) and isinstance(function.get("name"), str) and function["name"].strip()):
            raise RowError(spot, "a tool call needs a function name: {function: {name, arguments}}")
        arguments = function.get("arguments", {})
        if isinstance(arguments, str):
            arguments = _json_value(arguments, f"{spot}.arguments") if arguments.strip() else {}
        if not isinstance(arguments, dict):
            raise RowError(f"{spot}.arguments", "expected an object (or a JSON string of one)")
        parsed.append({"type": "function", "function": {"name": function["name"], "arguments": arguments}})
    return parsed


def content_parts(content: Any, where: str) -> tuple[str, str, list[dict[str, Any]]]:
    """A turn's content as (text, reasoning, tool calls); a string is all text."""
    if isinstance(content, str):
        return content, "", []
    if not isinstance(content, list) or not content:
        raise RowError(where, "missing, or not a string or a non-empty list of {type, value} parts")
    text, reasoning, calls = [], [], []
    for i, part in enumerate(content):
        spot = f"{where}[{i}]"
        kind = part.get("type") if isinstance(part, dict) else None
        value = part.get("value", part.get("text")) if isinstance(part, dict) else None
        if kind in MEDIA:
            raise RowError(f"{spot}.type", f"a `{kind}` part: tunesmith trains text models (no images, audio or video)")
        if kind not in ("text", "reasoning", "tool_call"):
            raise RowError(f"{spot}.type", f"unknown part type {kind!r} (expected text, reasoning or tool_call)")
        if kind == "tool_call":
            call = (
                _json_value(value, f"{spot}.value", "; a tool_call value is JSON {name, arguments}")
                if isinstance(value, str)
                else value
            )
            calls += tool_calls(call, f"{spot}.value")
        elif not isinstance(value, str):
            raise RowError(f"{spot}.value", "missing or not a string")
        else:
            (text if kind == "text" else reasoning).append(value)
    return "".join(text), "".join(reasoning), calls


def trained(turn: dict[str, Any], role: str, where: str) -> bool:
    """Whether an assistant turn is trained, from its `loss_weight` (absent: trained)."""
    weight = turn.get("loss_weight")
    if weight is None:
        return True
    if isinstance(weight, bool) or weight not in (0, 1):
        raise RowError(f"{where}.loss_weight", f"expected 0 (not trained) or 1 (trained), got {weight!r}")
    if weight == 1 and role != "assistant":
        raise RowError(
            f"{where}.loss_weight",
            f"only assistant turns are trained (this is a {role} turn); "
            "set data.train_on_prompt to train on every token",
        )
    return weight == 1


def tool_definitions(value: Any) -> list[dict[str, Any]] | None:
    """A row's `tools` as a list of `{"type": "function", "function": {...}}` (None when empty)."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    tools = (
        _json_value(value, "tools", "; `tools` is a JSON list of {name, description, parameters}")
        if isinstance(value, str)
        else value
    )
    tools = [tools] if isinstance(tools, dict) else tools
    if not isinstance(tools, list):
        raise RowError("tools", "expected a list of tool definitions (or a JSON string of one)")
    out = []
    for i, tool in enumerate(tools):
        function = tool.get("function", tool) if isinstance(tool, dict) else None
        if not (isinstance(function, dict) and isinstance(function.get("name"), str) and function["name"].strip()):
            raise RowError(f"tools[{i}]", "a tool definition needs a name: {name, description, parameters}")
        out.append({"type": "function", "function": function})
    return out or None


def rename_columns(row: dict[str, Any], columns: dict[str, str] | None) -> dict[str, Any]:
    """Apply a {canonical: name in file} mapping to one row (tag names: to its sharegpt turns)."""
    if not columns:
        return row
    tags = {k: v for k, v in columns.items() if k in TURN_KEY_TAGS or k in ROLE_TAGS}
    renamed = {name: canonical for canonical, name in columns.items() if canonical not in tags}
    row = {renamed.get(key, key): value for key, value in row.items()}
    if not tags:
        return row
    keys = {tags[t]: ours for t, ours in TURN_KEY_TAGS.items() if t in tags}
    roles = {tags[t]: ours for t, ours in ROLE_TAGS.items() if t in tags}

    def turn(t):
        if not isinstance(t, dict):
            return t
        t = {keys.get(k, k): v for k, v in t.items()}
        return {**t, "from": roles.get(t["from"], t["from"])} if isinstance(t.get("from"), str) else t

    if isinstance(row.get("conversations"), list):
        row["conversations"] = [turn(t) for t in row["conversations"]]
    for key in ("chosen", "rejected"):  # LLaMA-Factory ranking rows: one turn each
        if isinstance(row.get(key), dict):
            row[key] = turn(row[key])
    return row
