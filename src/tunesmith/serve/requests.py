"""Checking an OpenAI request body: every field is understood, or refused with 400 and its name.

    options = chat_options(body, max_tokens_cap=1024)      # raises ApiError(400, ..., param=KEY)

A parameter the server does not implement (`tool_choice: required`, `logit_bias`,
...) is refused by name, never ignored: a client that asks for JSON output or a tool
call must not get free text that looks like an answer. A field set to null counts as not set.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from tunesmith.serve.batcher import Sampling

ROLES = ("system", "user", "assistant", "tool")

COMMON = {
    "model",
    "max_tokens",
    "temperature",
    "top_p",
    "stop",
    "seed",
    "stream",
    "stream_options",
    "n",
    "presence_penalty",
    "frequency_penalty",
    "user",
}  # `user`: an end-user id for the caller's logs; unused here
CHAT = COMMON | {
    "messages",
    "max_completion_tokens",
    "logprobs",
    "top_logprobs",
    "response_format",
    "tools",
    "tool_choice",
    "parallel_tool_calls",
}  # tools: serve.tools
TEXT = COMMON | {"prompt", "logprobs"}

WHY_NOT = {  # what a refused parameter would need
    "functions": "the deprecated `functions` API is not implemented; send `tools`",
    "function_call": "the deprecated `function_call` is not implemented; send `tool_choice`",
    "logit_bias": "per-token biases are not implemented",
    "best_of": "only best_of 1",
    "echo": "echoing the prompt is not implemented",
    "suffix": "insertion (suffix) is not implemented",
    "audio": "this server handles text only",
    "modalities": "this server handles text only",
    "prediction": "predicted outputs are not implemented",
    "reasoning_effort": "no reasoning models are served",
    "web_search_options": "web search is not available",
}


class ApiError(Exception):
    def __init__(
        self,
        status: int,
        message: str,
        param: str | None = None,
        code: str | None = None,
        kind: str = "invalid_request_error",
        headers: dict | None = None,
    ):
        super().__init__(message)
        self.status, self.message, self.param, self.code, self.kind = status, message, param, code, kind
        self.headers = headers or {}

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": self.kind, "param": self.param, "code": self.code}}


@dataclass
class Options:
    sampling: Sampling
    stop: list[str]
    stream: bool
    include_usage: bool
    n: int


def _number(body: dict, key: str, default, low: float, high: float, integer: bool = False):
    value = body.get(key)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (integer and not isinstance(value, int)):
        raise ApiError(400, f"`{key}` must be {'an integer' if integer else 'a number'}", key)
    if not low <= value <= high:
        raise ApiError(400, f"`{key}` must be between {low} and {high}, got {value}", key)
    return value


def _flag(body: dict, key: str) -> bool:
    value = body.get(key)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise ApiError(400, f"`{key}` must be true or false", key)
    return value


def refuse_unsupported(body: dict, allowed: set[str]) -> None:
    for key, value in body.items():
        if value is None:
            continue
        if key == "response_format" and key in allowed:  # checked by serve.json_mode
            continue
        if key not in allowed:
            why = WHY_NOT.get(key, "this server does not know this parameter")
            raise ApiError(400, f"`{key}` is not supported: {why}", key, "unsupported_parameter")


def _stop(body: dict) -> list[str]:
    stop = body.get("stop")
    if stop is None:
        return []
    if isinstance(stop, str) and stop:
        return [stop]
    if isinstance(stop, list) and all(isinstance(s, str) and s for s in stop) and len(stop) <= 4:
        return stop
    raise ApiError(400, "`stop` must be a string or a list of up to 4 non-empty strings", "stop")


def _options(body: dict, max_cap: int, max_key: str, top_logprobs: int | None) -> Options:
    stream = _flag(body, "stream")
    include_usage = False
    stream_options = body.get("stream_options")
    if stream_options is not None:
        if not stream:
            raise ApiError(400, "`stream_options` is only allowed with `stream: true`", "stream_options")
        if not isinstance(stream_options, dict) or set(stream_options) - {"include_usage"}:
            raise ApiError(400, '`stream_options` supports only {"include_usage": true|false}', "stream_options")
        include_usage = _flag(stream_options, "include_usage")
    sampling = Sampling(
        max_tokens=_number(body, max_key, max_cap, 1, max_cap, integer=True),
        temperature=_number(body, "temperature", 0.0, 0.0, 2.0),
        top_p=_number(body, "top_p", 1.0, 0.0, 1.0),
        seed=_number(body, "seed", None, 0, 2**63 - 1, integer=True),
        presence_penalty=_number(body, "presence_penalty", 0.0, -2.0, 2.0),
        frequency_penalty=_number(body, "frequency_penalty", 0.0, -2.0, 2.0),
        top_logprobs=top_logprobs,
    )
    n = _number(body, "n", 1, 1, 16, integer=True)
    if n > 1 and sampling.temperature == 0:
        raise ApiError(
            400, "`n` > 1 with greedy decoding (temperature 0) gives n identical choices; set a temperature", "n"
        )
    return Options(sampling, _stop(body), stream, include_usage, n)


def chat_options(body: dict, max_cap: int) -> Options:
    refuse_unsupported(body, CHAT)
    key = "max_completion_tokens" if body.get("max_completion_tokens") is not None else "max_tokens"
    top = None
    if _flag(body, "logprobs"):
        top = _number(body, "top_logprobs", 0, 0, 20, integer=True)
    elif body.get("top_logprobs") is not None:
        raise ApiError(400, "`top_logprobs` needs `logprobs: true`", "top_logprobs")
    return _options(body, max_cap, key, top)


def text_options(body: dict, max_cap: int) -> Options:
    refuse_unsupported(body, TEXT)
    return _options(body, max_cap, "max_tokens", _number(body, "logprobs", None, 0, 5, integer=True))


def _content(value: Any, where: str) -> str:
    """Message content: a string, or OpenAI's list of `{"type": "text", "text": ...}` parts."""
    if isinstance(value, str):
        return unicode_text(value, where)
    if isinstance(value, list) and all(
        isinstance(p, dict) and p.get("type") == "text" and isinstance(p.get("text"), str) for p in value
    ):
        return unicode_text("".join(p["text"] for p in value), where)
    raise ApiError(400, f"`{where}` must be a string or a list of text parts (this server handles text only)", where)


async def read_json(request) -> dict:
    """The request's JSON object body (a starlette Request); 400 otherwise."""
    try:
        body = json.loads(await request.body())
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, UnicodeDecodeError, an integer of over 4300
        # digits (ValueError), nesting deeper than Python's recursion limit
        raise ApiError(400, f"the request body is not valid JSON ({str(exc)[:200]})") from None
    if not isinstance(body, dict):
        raise ApiError(400, "the request body must be a JSON object")
    return body


def unicode_text(text: str, where: str) -> str:
    """`text` if it is valid Unicode; JSON's `\\ud800` escapes decode to lone surrogates, which no
    tokenizer takes (they would fail deep in generation as a 500)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ApiError(
            400,
            f"`{where}` holds an unpaired surrogate (U+{ord(text[exc.start]):04X}) at character "
            f"{exc.start}: not valid Unicode text",
            where,
        ) from None
    return text


def chat_messages(body: dict) -> list[dict]:
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise ApiError(400, "`messages` must be a non-empty list of {role, content} objects", "messages")
    clean = []
    for i, message in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(message, dict):
            raise ApiError(400, f"`{where}` must be an object with `role` and `content`", where)
        role = message.get("role")
        if role == "developer":  # the newer name of the system role
            role = "system"
        if role not in ROLES:
            raise ApiError(400, f"`{where}.role` must be one of {', '.join(ROLES)} (got {role!r})", f"{where}.role")
        for key in ("function_call", "audio"):
            if message.get(key) is not None:
                raise ApiError(
                    400,
                    f"`{where}.{key}` is not supported (send `tool_calls`)",
                    f"{where}.{key}",
                    "unsupported_parameter",
                )
        calls = message.get("tool_calls")
        if calls is not None and (role != "assistant" or not isinstance(calls, list)):
            raise ApiError(400, f"`{where}.tool_calls` must be a list, on an assistant message", f"{where}.tool_calls")
        content = message.get("content")
        entry = {
            "role": role,
            "content": ""
            if content is None and calls
            else _content("" if content is None else content, f"{where}.content"),
        }
        if calls:
            entry["tool_calls"] = calls  # checked and converted for the template by serve.tools
        if role == "tool" and isinstance(message.get("tool_call_id"), str):
            entry["tool_call_id"] = message["tool_call_id"]
        clean.append(entry)
    if clean[-1]["role"] == "assistant":
        raise ApiError(
            400, "the last message is the assistant's: nothing to reply to", f"messages[{len(clean) - 1}].role"
        )
    return clean


def model_name(body: dict, names: list[str]) -> str:
    name = body.get("model")
    if name is None and len(names) == 1:
        return names[0]
    if not isinstance(name, str) or not name:
        raise ApiError(400, f"`model` is required; served: {', '.join(names)}", "model")
    if name not in names:
        raise ApiError(
            404, f"The model `{name}` does not exist; served: {', '.join(names)}", "model", "model_not_found"
        )
    return name
