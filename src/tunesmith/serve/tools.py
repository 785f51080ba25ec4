"""Tool calling: OpenAI `tools` rendered by the model's own chat template, tool calls parsed back.

Request side (`tool_request`): `tools` is a list of `{"type": "function", "function": {"name",
"description"?, "parameters"?}}`; `tool_choice` is `auto` (the default with tools) or `none` (the
tools are not shown to the model). `required` and a named function would force a call, which needs
constrained decoding: refused by name. Assistant messages may carry `tool_calls` and `tool`
messages their `tool_call_id`: both are handed to the chat template as transformers' templates
expect them (a call's `arguments` as an object).

The prompt is rendered exactly as `tunesmith train` renders a row with tools (data.tokenize.render):
by the model's template where it shows `tools` and `tool_calls`; otherwise the definitions go into
the system turn (Qwen2.5's wording) and earlier calls are written as `<tool_call>` text. So a model
fine-tuned on tool rows with any template sees at serving time what it was trained on.

Reply side (`parse_reply`): with the tokenizer's own `response_template` (transformers'
`parse_response`), that parser; otherwise the Hermes format that Qwen2.5/Qwen3, Hermes and SmolLM3
templates ask for: `<tool_call>{"name": ..., "arguments": {...}}</tool_call>`, one block per call.
A block naming a tool that was not offered, or that is not JSON, stays in the text. The reply then
carries `tool_calls` (ids `call_...`, arguments as a JSON string) and `finish_reason: tool_calls`.
"""

from __future__ import annotations

import json
import re
import uuid

from tunesmith.serve.requests import ApiError

HERMES = re.compile(r"<tool_call>\s*(.*?)\s*</tool_call>", re.DOTALL)


def tool_request(body: dict) -> list[dict] | None:
    """The request's tools in the chat template's form, or None (no tools, or tool_choice none)."""
    tools, choice = body.get("tools"), body.get("tool_choice")
    if tools is None:
        if choice is not None:
            raise ApiError(400, "`tool_choice` needs `tools`", "tool_choice")
        return None
    if not isinstance(tools, list) or not tools:
        raise ApiError(400, '`tools` must be a non-empty list of {"type": "function", "function": {...}}', "tools")
    names = set()
    for i, tool in enumerate(tools):
        function = tool.get("function") if isinstance(tool, dict) else None
        if not isinstance(tool, dict) or tool.get("type") != "function" or not isinstance(function, dict):
            raise ApiError(
                400, f'`tools[{i}]` must be {{"type": "function", "function": {{"name", ...}}}}', f"tools[{i}]"
            )
        name = function.get("name")
        if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", name):
            raise ApiError(
                400, f"`tools[{i}].function.name` must be 1-64 letters, digits, _ . or -", f"tools[{i}].function.name"
            )
        if name in names:
            raise ApiError(400, f"`tools[{i}].function.name`: `{name}` is offered twice", f"tools[{i}].function.name")
        if function.get("parameters") is not None and not isinstance(function["parameters"], dict):
            raise ApiError(
                400, f"`tools[{i}].function.parameters` must be a JSON schema object", f"tools[{i}].function.parameters"
            )
        names.add(name)
    parallel = body.get("parallel_tool_calls")
    if parallel is not None and not isinstance(parallel, bool):
        raise ApiError(400, "`parallel_tool_calls` must be true or false", "parallel_tool_calls")
    if choice is None or choice == "auto":
        return tools
    if choice == "none":
        return None
    raise ApiError(
        400,
        '`tool_choice` supports "auto" and "none": forcing a call ("required" or a named '
        "function) needs constrained decoding, which this server does not do",
        "tool_choice",
        "unsupported_parameter",
    )


def template_messages(messages: list[dict]) -> list[dict]:
    """OpenAI messages -> the form chat templates take: a call's `arguments` parsed from its JSON string."""
    out = []
    for i, message in enumerate(messages):
        calls = message.get("tool_calls")
        if calls is None:
            out.append(message)
            continue
        converted = []
        for j, call in enumerate(calls):
            where = f"messages[{i}].tool_calls[{j}]"
            function = call.get("function") if isinstance(call, dict) else None
            if not isinstance(function, dict) or not isinstance(function.get("name"), str):
                raise ApiError(
                    400, f'`{where}` must be {{"id", "type": "function", "function": {{"name", "arguments"}}}}', where
                )
            arguments = function.get("arguments", "{}")
            try:
                arguments = json.loads(arguments) if isinstance(arguments, str) else arguments
            except json.JSONDecodeError:
                raise ApiError(
                    400, f"`{where}.function.arguments` is not valid JSON", f"{where}.function.arguments"
                ) from None
            converted.append(
                {
                    "id": call.get("id"),
                    "type": "function",
                    "function": {"name": function["name"], "arguments": arguments},
                }
            )
        out.append({**message, "tool_calls": converted})
    return out


def _offered(call: dict, offered: set[str]) -> bool:
    """Whether a parsed call names an offered tool (a model can write any JSON: `"name": ["f"]` too)."""
    name = call.get("name")
    return isinstance(name, str) and name in offered


def parse_reply(tokenizer, prompt_text: str, text: str, tools: list[dict]) -> tuple[str | None, list[dict]]:
    """(content, tool_calls in OpenAI's form) of a generated reply."""
    offered = {t["function"]["name"] for t in tools}
    if getattr(tokenizer, "response_template", None) is not None:
        parsed = tokenizer.parse_response(text, prefix=prompt_text, tools=tools)
        calls = [c.get("function", c) for c in parsed.get("tool_calls") or []]
        content = parsed.get("content")
    else:
        calls, kept, last = [], [], 0
        for match in HERMES.finditer(text):
            try:
                call = json.loads(match.group(1))
            except json.JSONDecodeError:
                continue
            if not (isinstance(call, dict) and _offered(call, offered)):
                continue
            calls.append(call)
            kept.append(text[last : match.start()])
            last = match.end()
        kept.append(text[last:])
        content = "".join(kept).strip() if calls else text
    out = []
    for call in calls:
        if not (isinstance(call, dict) and _offered(call, offered)):
            continue
        arguments = call.get("arguments", {})
        out.append(
            {
                "id": f"call_{uuid.uuid4().hex[:24]}",
                "type": "function",
                "function": {
                    "name": call["name"],
                    "arguments": arguments if isinstance(arguments, str) else json.dumps(arguments, ensure_ascii=False),
                },
            }
        )
    return (content or None) if out else content, out
