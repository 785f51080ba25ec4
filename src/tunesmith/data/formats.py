"""Row formats -> one canonical `Conversation` (a list of role/content messages).

- alpaca:   {instruction, input?, output, system?, history?: [[user, assistant], ...],
            examples?: [{input, output}, ...]}  (few-shot examples: prior user/assistant turns)
- messages: {messages: [{role, content, tool_calls?}, ...]}  (OpenAI style; role tool for results)
- sharegpt: {conversations: [{from, value}, ...], system?}   (from: human/gpt/system, and
            function_call (value: JSON {name, arguments}) / observation for tool use)
- multitask: {task, input, output, system?, examples?}      (one user turn, one reply, a task name)

Few-shot `examples` become user/assistant turns right after the system prompt, in file order;
`Conversation.meta["examples"]` = (index of the first example message, number of examples), so
`data.augment.shuffle_examples` can reorder them.

Any row may carry a `task` name (a non-empty string); it is kept in `Conversation.meta["task"]`
and travels into the tokenised row, where `stage: mtl` weighs and logs the loss per task.

An assistant turn may call tools (`tool_calls`, kept structured on the message); the tool results
that follow are `tool` turns, never trained. See `tokenize.render` for templates without tool
support.

Every problem is collected as `file:line:field: reason`; `load_conversations` raises one
`DataError` listing the first 20 with the total, so a user fixes a file in one pass.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tunesmith.data.readers import RawRow, iter_rows, read_rows
from tunesmith.errors import DataError

ROLES = ("system", "user", "assistant", "tool")
SHAREGPT_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant", "system": "system",
                  "function_call": "assistant", "observation": "tool", "tool": "tool"}
MAX_REPORTED = 20


@dataclass
class Conversation:
    messages: list[dict[str, str]]
    where: str = ""
    meta: dict[str, Any] = field(default_factory=dict)


class RowError(Exception):
    def __init__(self, field_name: str, reason: str):
        super().__init__(f"{field_name}: {reason}")
        self.field_name = field_name
        self.reason = reason


def detect_format(row: dict[str, Any]) -> str:
    if "messages" in row:
        return "messages"
    if "conversations" in row:
        return "sharegpt"
    if "instruction" not in row and ("task" in row or "input" in row):
        return "multitask"
    if "instruction" in row or "output" in row:
        return "alpaca"
    if "text" in row:
        raise RowError("text", "a raw-text row: it trains with `stage: pt`; this stage needs instruction/output or messages")
    raise RowError("row", f"cannot tell the format from keys {sorted(row)}; expected instruction/output, "
                   "task/input/output, messages or conversations")


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
                raise RowError(f"examples[{i}].{key}", "missing or empty" if value is None or isinstance(value, str)
                               else f"expected a string, got {type(value).__name__}")
        messages += [{"role": "user", "content": example["input"]}, {"role": "assistant", "content": example["output"]}]
    return messages


def from_alpaca(row: dict[str, Any]) -> list[dict[str, str]]:
    instruction = _text(row, "instruction", required=True)
    extra = _text(row, "input", required=False)
    output = _text(row, "output", required=True)
    messages = []
    system = _text(row, "system", required=False)
    if system.strip():
        messages.append({"role": "system", "content": system})
    messages += few_shot(row)
    history = row.get("history") or []
    if not isinstance(history, list):
        raise RowError("history", "expected a list of [user, assistant] pairs")
    for i, pair in enumerate(history):
        if not (isinstance(pair, list) and len(pair) == 2 and all(isinstance(t, str) and t.strip() for t in pair)):
            raise RowError(f"history[{i}]", "expected a pair of non-empty strings [user, assistant]")
        messages += [{"role": "user", "content": pair[0]}, {"role": "assistant", "content": pair[1]}]
    user = f"{instruction}\n{extra}" if extra.strip() else instruction
    messages += [{"role": "user", "content": user}, {"role": "assistant", "content": output}]
    return messages


def from_multitask(row: dict[str, Any]) -> list[dict[str, str]]:
    """A multi-task row: the input is the user turn, the output the reply (the task is read by the caller)."""
    _text(row, "task", required=True)
    user = _text(row, "input", required=True)
    output = _text(row, "output", required=True)
    system = _text(row, "system", required=False)
    head = [{"role": "system", "content": system}] if system.strip() else []
    return head + few_shot(row) + [{"role": "user", "content": user}, {"role": "assistant", "content": output}]


def _tool_calls(value: Any, where: str) -> list[dict[str, Any]]:
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
            try:
                arguments = json.loads(arguments) if arguments.strip() else {}
            except (ValueError, RecursionError) as exc:  # bad JSON, too deep, a number too long
                raise RowError(f"{spot}.arguments", f"not valid JSON ({getattr(exc, 'msg', None) or 'not readable'})") from None
        if not isinstance(arguments, dict):
            raise RowError(f"{spot}.arguments", "expected an object (or a JSON string of one)")
        parsed.append({"type": "function", "function": {"name": function["name"], "arguments": arguments}})
    return parsed


def from_messages(row: dict[str, Any], key: str, role_key: str, content_key: str, role_map: dict[str, str]) -> list[dict[str, Any]]:
    turns = row.get(key)
    if not isinstance(turns, list) or not turns:
        raise RowError(key, "expected a non-empty list of turns")
    messages = []
    system = row.get("system")
    if isinstance(system, str) and system.strip():
        messages.append({"role": "system", "content": system})
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
                raise RowError(f"{where}.{content_key}", f"a function_call value must be JSON {{name, arguments}} "
                               f"({getattr(exc, 'msg', None) or 'not readable JSON'})") from None
            message.update(content="", tool_calls=_tool_calls(call, f"{where}.{content_key}"))
        else:
            calls = turn.get("tool_calls")
            if calls is not None and role_map[role] != "assistant":
                raise RowError(f"{where}.tool_calls", "only assistant turns call tools")
            if calls is not None:
                if not isinstance(calls, list) or not calls:
                    raise RowError(f"{where}.tool_calls", "expected a non-empty list")
                message["tool_calls"] = _tool_calls(calls, f"{where}.tool_calls")
            if content is None and calls:
                content = ""
            if not isinstance(content, str):
                raise RowError(f"{where}.{content_key}", "missing or not a string")
            if not content.strip() and not calls:
                raise RowError(f"{where}.{content_key}", "empty")
            message["content"] = content
        messages.append(message)
    return messages


def check_order(messages: list[dict[str, Any]], key: str) -> None:
    """system? then user, assistant, user, assistant, ... ending with an assistant reply. An
    assistant turn with tool_calls is followed by one or more tool turns, then an assistant turn."""
    start = 1 if messages and messages[0]["role"] == "system" else 0
    for i, message in enumerate(messages):
        if i >= start and message["role"] == "system":
            raise RowError(f"{key}[{i}]", "a system turn is only allowed first")
    expected = ("user",)
    for i in range(start, len(messages)):
        role = messages[i]["role"]
        if role not in expected:
            if role == "tool":
                reason = "a tool turn must follow an assistant turn with tool_calls"
            elif "tool" in expected:
                reason = f"expected a tool result after the assistant's tool_calls, got {role}"
            else:
                reason = f"expected a {' or '.join(expected)} turn here, got {role} (turns must alternate user/assistant)"
            raise RowError(f"{key}[{i}]", reason)
        if role == "user":
            expected = ("assistant",)
        elif role == "assistant":
            expected = ("tool",) if messages[i].get("tool_calls") else ("user",)
        else:  # tool
            expected = ("tool", "assistant")
    body = messages[start:]
    if not body or body[-1]["role"] != "assistant" or body[-1].get("tool_calls"):
        raise RowError(key, "the conversation must end with an assistant turn (not a tool call)" if body and body[-1].get("tool_calls") else "the conversation must end with an assistant turn")


def rename_columns(row: dict[str, Any], columns: dict[str, str] | None) -> dict[str, Any]:
    """Apply a {canonical: name in file} mapping to one row."""
    if not columns:
        return row
    renamed = {name: canonical for canonical, name in columns.items()}
    return {renamed.get(key, key): value for key, value in row.items()}


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
    else:
        messages, key = from_messages(row, "conversations", "from", "value", SHAREGPT_ROLES), "conversations"
    check_order(messages, key)
    # an optional `task` on other formats (null counts as absent: csv/parquet columns have gaps)
    meta = {"task": _text(row, "task", required=True)} if row.get("task") is not None or kind == "multitask" else {}
    if kind in ("alpaca", "multitask") and row.get("examples") is not None:
        first = 1 if messages[0]["role"] == "system" else 0
        meta["examples"] = (first, len(row["examples"]))
    return Conversation(messages, raw.where, meta)


def conversation_converter(fmt: str = "auto", system: str | None = None,
                           columns: dict[str, str] | None = None) -> Callable[[RawRow], Conversation]:
    """RawRow -> validated Conversation (RowError otherwise), with `system` given to rows that have none
    (marked `meta["default_system"]`, so augmentation may vary it)."""

    def convert(raw: RawRow) -> Conversation:
        conversation = to_conversation(raw, fmt, columns)
        if system and conversation.messages[0]["role"] != "system":
            conversation.messages.insert(0, {"role": "system", "content": system})
            conversation.meta["default_system"] = True
            if "examples" in conversation.meta:
                first, count = conversation.meta["examples"]
                conversation.meta["examples"] = (first + 1, count)
        return conversation

    return convert


def load_conversations(paths: list[str | Path], fmt: str = "auto", system: str | None = None,
                       columns: dict[str, str] | None = None, rejects: Rejects | None = None) -> list[Conversation]:
    """Read and validate every row of every file; raise one DataError listing the problems
    (or, with a skipping `rejects`, set the bad rows aside)."""
    return collect_rows(paths, conversation_converter(fmt, system, columns), "row", rejects)


@dataclass
class Rejects:
    """Rows set aside instead of failing the run (`data.on_error: skip`), with their reasons.

    `skip=False` (the default policy) turns every entry into an error. `check` fails when more
    than `max_fraction` of the rows were rejected, so a broken file never trains silently.
    """

    skip: bool = False
    max_fraction: float = 0.1
    entries: list[dict[str, str]] = field(default_factory=list)
    dropped: list[dict[str, str]] = field(default_factory=list)
    # rows kept but cut to data.max_length (overlength: truncate): {where, tokens, lost_end}
    truncated: list[dict] = field(default_factory=list)

    def add(self, where: str, field_name: str, reason: str) -> None:
        self.entries.append({"where": where, "field": field_name, "reason": reason})

    def drop(self, where: str, reason: str) -> None:
        """A valid row left out by policy (over-length with `drop`, nothing left to train)."""
        self.dropped.append({"where": where, "reason": reason})

    def truncate(self, where: str, tokens: int, lost_end: bool) -> None:
        """A row kept but cut to max_length; `lost_end`: its last reply lost its end-of-turn token."""
        self.truncated.append({"where": where, "tokens": tokens, "lost_end": lost_end})

    def messages(self) -> list[str]:
        return [f"{e['where']}:{e['field']}: {e['reason']}" for e in self.entries]

    def check(self, kind: str, paths, kept: int) -> None:
        total = kept + len(self.entries)
        if not self.skip:
            raise_row_errors(self.messages(), kind, paths, found=kept or bool(self.dropped))
            return
        if not kept and not self.dropped:
            raise DataError(f"no valid {kind}s left in {', '.join(str(p) for p in paths)}: all {total} were "
                            f"rejected; first reasons:\n  " + "\n  ".join(self.messages()[:MAX_REPORTED]))
        if self.entries and len(self.entries) / total > self.max_fraction:
            shown = "\n  ".join(self.messages()[:MAX_REPORTED])
            raise DataError(f"{len(self.entries)} of {total} {kind}s ({100 * len(self.entries) / total:.1f}%) are invalid, "
                            f"more than data.max_reject_fraction={self.max_fraction}; fix them or raise the limit:\n  {shown}")

    def write(self, path: Path) -> None:
        """rejects.jsonl: one line per rejected or dropped row, with its reason."""
        import json

        lines = [json.dumps({"kind": "rejected", **e}, ensure_ascii=False) for e in self.entries]
        lines += [json.dumps({"kind": "dropped", **e}, ensure_ascii=False) for e in self.dropped]
        path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")


def collect_rows(paths, convert: Callable[[RawRow], Any], kind: str, rejects: Rejects | None = None) -> list:
    """`convert` every row of every file; a RowError becomes one `file:line:field: reason` entry.

    Unreadable rows (bad JSON or UTF-8) are entries too. With the default policy every entry is
    an error raised together at the end; with `Rejects(skip=True)` they are set aside.
    """
    rejects = rejects if rejects is not None else Rejects()
    converted = list(iter_converted(paths, convert, rejects))
    rejects.check(kind, paths, kept=len(converted))
    return converted


def iter_converted(paths, convert: Callable[[RawRow], Any], rejects: Rejects, stream: bool = False):
    """Yield `convert(row)` for every good row; bad rows become `rejects` entries. With `stream`,
    rows are read one at a time (`readers.iter_rows`) instead of file by file."""
    for path in paths:
        for raw in (iter_rows(path) if stream else read_rows(path)):
            if raw.error:
                rejects.add(raw.where, raw.error[0], raw.error[1])
                continue
            try:
                yield convert(raw)
            except RowError as exc:
                rejects.add(raw.where, exc.field_name, exc.reason)


def raise_row_errors(errors: list[str], kind: str, paths, found: int) -> None:
    """One DataError for all problems (the first 20 shown, with the total), or for no rows at all."""
    if errors:
        shown = "\n  ".join(errors[:MAX_REPORTED])
        more = f"\n  ... and {len(errors) - MAX_REPORTED} more" if len(errors) > MAX_REPORTED else ""
        raise DataError(f"{len(errors)} invalid {kind}(s); fix them and run again:\n  {shown}{more}")
    if not found:
        raise DataError(f"no rows found in {', '.join(str(p) for p in paths)}")
