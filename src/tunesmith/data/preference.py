"""Preference data: pairs for DPO-style stages, labelled completions for KTO.

Pairs: a prompt with a chosen and a rejected reply.

Row shapes accepted (`columns` maps other field names onto these):
    {"prompt": str, "chosen": str, "rejected": str, "system"?: str}
    {"prompt": [messages...], "chosen": [assistant message] | str, "rejected": ... }
    {"chosen": [full conversation], "rejected": [full conversation]}  (TRL's implicit prompt: the
        shared prefix is the prompt; LLaMA-Factory v1's chosen_messages/rejected_messages too)
    {"conversations": [{from, value}...], "chosen": {from, value}, "rejected": {from, value}}
        (LLaMA-Factory's sharegpt ranking rows: the conversation is the prompt, `messages` too)
    {"instruction", "input"?, "history"?, "chosen": str, "rejected": str}  (its alpaca ranking rows)
Optional `score` and `reason` fields are kept as metadata. Output rows are TRL's conversational
format: {"prompt": [...], "chosen": [{"role": "assistant", ...}], "rejected": [...]}.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tunesmith.data.formats import ROLES, SHAREGPT_ROLES, alpaca_prompt, check_order, from_messages, to_conversation
from tunesmith.data.readers import RawRow
from tunesmith.data.rejects import collect_rows
from tunesmith.data.row_errors import RowError
from tunesmith.data.turns import content_parts, rename_columns, tool_definitions, trained, with_system
from tunesmith.errors import DataError


def _text_only(content: Any, where: str) -> str:
    """A turn's text (a string or v1 text parts); reasoning and tool calls are refused here."""
    if not isinstance(content, (str, list)):
        raise RowError(where, "missing or empty")
    text, reasoning, calls = content_parts(content, where)
    if reasoning or calls:
        raise RowError(
            where,
            f"{'reasoning' if reasoning else 'tool_call'} parts are read for sft rows only; "
            "preference, KTO and prompt rows hold text turns",
        )
    if not text.strip():
        raise RowError(where, "missing or empty")
    return text


def _messages(value: Any, field: str) -> list[dict[str, str]]:
    if not isinstance(value, list) or not value:
        raise RowError(field, "expected a string or a non-empty list of messages")
    out = []
    for i, message in enumerate(value):
        if not isinstance(message, dict) or message.get("role") not in ROLES:
            raise RowError(f"{field}[{i}]", f"expected {{role: {'|'.join(ROLES)}, content}}")
        trained(message, message["role"], f"{field}[{i}]")  # a v1 loss_weight is 0 or 1 (the reply is what is trained)
        out.append({"role": message["role"], "content": _text_only(message.get("content"), f"{field}[{i}].content")})
    return out


def _plain(messages: list[dict[str, Any]], field: str) -> list[dict[str, str]]:
    """Converted chat turns as role/content only (tool calls and reasoning are refused)."""
    for i, message in enumerate(messages):
        if message.get("tool_calls") or message.get("reasoning_content"):
            what = "tool calls" if message.get("tool_calls") else "reasoning"
            raise RowError(
                f"{field}[{i}]", f"{what} are read for sft rows only; preference and KTO rows hold text turns"
            )
    return [{"role": m["role"], "content": m["content"]} for m in messages]


def _chat_prompt(row: dict[str, Any]) -> list[dict[str, str]] | None:
    """The prompt of a LLaMA-Factory row (its sharegpt conversation or alpaca instruction), or None."""
    if "conversations" in row:
        return _plain(from_messages(row, "conversations", "from", "value", SHAREGPT_ROLES), "conversations")
    if "messages" in row:
        return _plain(from_messages(row, "messages", "role", "content", {r: r for r in ROLES}), "messages")
    if "instruction" in row:
        return alpaca_prompt(row)
    return None


def _one_turn(turn: Any, field: str) -> list[dict[str, str]]:
    """A LLaMA-Factory ranking reply: one {from, value} (or {role, content}) assistant turn."""
    if not isinstance(turn, dict):
        raise RowError(field, "expected one turn {from, value}, like the conversation's")
    message = (
        from_messages({field: [turn]}, field, "from", "value", SHAREGPT_ROLES)
        if "from" in turn
        else from_messages({field: [turn]}, field, "role", "content", {r: r for r in ROLES})
    )
    reply = _plain(message, field)
    if reply[0]["role"] != "assistant":
        raise RowError(field, f"expected an assistant turn (gpt), got {reply[0]['role']}")
    return reply


def _reply(value: Any, field: str) -> list[dict[str, str]]:
    if isinstance(value, str):
        if not value.strip():
            raise RowError(field, "empty")
        return [{"role": "assistant", "content": value}]
    if value is None:
        raise RowError(field, "missing required field")
    messages = _messages(value, field)
    if messages[-1]["role"] != "assistant":
        raise RowError(field, "must end with an assistant message")
    return messages


def _object(raw: RawRow, columns: dict[str, str] | None) -> dict[str, Any]:
    if not isinstance(raw.data, dict):
        raise RowError("row", f"expected a JSON object, got {type(raw.data).__name__}")
    row = rename_columns(raw.data, columns)
    if tool_definitions(row.get("tools")):
        raise RowError("tools", "tool definitions are read for sft rows only; this stage's trainer renders text turns")
    return row


def _with_system(prompt: list[dict[str, str]], own: Any, default: str | None) -> list[dict[str, str]]:
    """The row's own `system` field, else the config's default, unless the prompt has one."""
    system = own if isinstance(own, str) and own.strip() else default
    prompt = with_system(prompt, system)
    if prompt[-1]["role"] != "user":
        raise RowError("prompt", "must end with a user message")
    return prompt


def _prompt(value: Any) -> list[dict[str, str]]:
    if value is None:
        raise RowError("prompt", "missing required field")
    if isinstance(value, str):
        if not value.strip():
            raise RowError("prompt", "empty")
        return [{"role": "user", "content": value}]
    return _messages(value, "prompt")


def to_pair(raw: RawRow, system: str | None = None, columns: dict[str, str] | None = None) -> dict[str, Any]:
    row = _object(raw, columns)
    # LLaMA-Factory v1 names its full conversations chosen_messages / rejected_messages
    key = {
        side: f"{side}_messages" if side not in row and f"{side}_messages" in row else side
        for side in ("chosen", "rejected")
    }
    if key["chosen"] not in row and key["rejected"] not in row:
        raise RowError(
            "chosen",
            f"missing required field; a preference row needs prompt/chosen/rejected, this one has "
            f"{sorted(row)} (map other names with data.columns)",
        )
    one_turn = isinstance(row.get(key["chosen"]), dict) or isinstance(row.get(key["rejected"]), dict)
    if one_turn and row.get("prompt") is None:  # LLaMA-Factory ranking: the conversation is the prompt
        chosen, rejected = (
            _one_turn(row.get(key["chosen"]), key["chosen"]),
            _one_turn(row.get(key["rejected"]), key["rejected"]),
        )
        prompt = _chat_prompt(row)
        if prompt is None:
            raise RowError(
                "conversations",
                "missing; a row whose chosen/rejected are single turns needs the conversation they answer",
            )
    else:
        chosen, rejected = (
            _reply(row.get(key["chosen"]), key["chosen"]),
            _reply(row.get(key["rejected"]), key["rejected"]),
        )
        if row.get("prompt") is not None:
            prompt = _prompt(row["prompt"])
        else:  # the prompt of a LLaMA-Factory alpaca ranking row, else TRL's implicit one: the shared prefix
            prompt = _chat_prompt(row)
            if prompt is None:
                chosen, rejected, prompt = _split_shared(chosen, rejected)
    prompt = _with_system(prompt, row.get("system"), system)
    check_order(prompt + chosen, "chosen")
    check_order(prompt + rejected, "rejected")
    if chosen == rejected:
        raise RowError("rejected", "identical to chosen; a preference pair needs two different replies")
    meta = {k: row[k] for k in ("score", "reason") if k in row}
    return {"prompt": prompt, "chosen": chosen, "rejected": rejected, "where": raw.where, **meta}


def _split_shared(chosen: list[dict], rejected: list[dict]) -> tuple[list[dict], list[dict], list[dict]]:
    """Full conversations: (chosen reply, rejected reply, the shared leading turns as the prompt)."""
    shared = 0
    while shared < min(len(chosen), len(rejected)) - 1 and chosen[shared] == rejected[shared]:
        shared += 1
    if shared == 0:
        raise RowError("prompt", "missing required field (and chosen/rejected share no leading turns)")
    return chosen[shared:], rejected[shared:], chosen[:shared]


def load_preferences(
    paths: list[str | Path], system: str | None = None, columns: dict[str, str] | None = None
) -> list[dict[str, Any]]:
    return collect_rows(paths, lambda raw: to_pair(raw, system, columns), "preference row")


# --- KTO: unpaired completions labelled desirable (true) or undesirable (false) --------------------

_LABELS = {
    True: True,
    False: False,
    "true": True,
    "false": False,
    "1": True,
    "0": False,
}  # 1 and 0 are the True and False keys


def to_kto_row(raw: RawRow, system: str | None = None, columns: dict[str, str] | None = None) -> dict[str, Any]:
    """{"prompt": str | messages, "completion": str | messages, "label": bool} -> TRL's KTO format; a
    LLaMA-Factory KTO row (sharegpt/messages/alpaca with a boolean label) gives its last turn as the completion."""
    row = _object(raw, columns)
    label = row.get("label")
    key = label.strip().lower() if isinstance(label, str) else label
    if isinstance(key, float) or key not in _LABELS:
        raise RowError("label", f"expected true (desirable) or false (undesirable), got {label!r}")
    if row.get("completion") is None and _chat_prompt(row) is not None:
        # LLaMA-Factory's KTO rows (a conversation and its kto_tag): the last turn is the completion
        messages = _plain(to_conversation(RawRow(raw.file, raw.line, row)).messages, "messages")
        prompt, completion = _with_system(messages[:-1], None, system), messages[-1:]
    else:
        completion = _reply(row.get("completion"), "completion")
        prompt = _with_system(_prompt(row.get("prompt")), row.get("system"), system)
    check_order(prompt + completion, "completion")
    return {"prompt": prompt, "completion": completion, "label": _LABELS[key], "where": raw.where}


def load_kto(
    paths: list[str | Path], system: str | None = None, columns: dict[str, str] | None = None
) -> list[dict[str, Any]]:
    rows = collect_rows(paths, lambda raw: to_kto_row(raw, system, columns), "KTO row")
    check_kto_labels(rows, paths)
    return rows


def check_kto_labels(rows: list[dict[str, Any]], paths) -> None:
    labels = {r["label"] for r in rows}
    if labels != {True, False}:
        missing = "undesirable (label false)" if True in labels else "desirable (label true)"
        raise DataError(f"{', '.join(str(p) for p in paths)}: KTO needs both kinds of rows; no {missing} row found")


# --- rows to score with a reward model: {"prompt", "reply"} ------------------------------------------


def to_scored_row(raw: RawRow, system: str | None = None, columns: dict[str, str] | None = None) -> dict[str, Any]:
    """{"prompt": str | messages, "reply": str | messages, "system"?} -> one conversation to score."""
    row = _object(raw, columns)
    reply = _reply(row.get("reply"), "reply")
    prompt = _with_system(_prompt(row.get("prompt")), row.get("system"), system)
    check_order(prompt + reply, "reply")
    return {"messages": prompt + reply, "where": raw.where}


def load_scored_rows(
    paths: list[str | Path], system: str | None = None, columns: dict[str, str] | None = None
) -> list[dict[str, Any]]:
    return collect_rows(paths, lambda raw: to_scored_row(raw, system, columns), "row to score")


# --- prompts for online RL (grpo): {"prompt" | "messages", "answer"?} ---------------------------------


def to_prompt_row(raw: RawRow, system: str | None = None, columns: dict[str, str] | None = None) -> dict[str, Any]:
    """A prompt (string, or messages ending with a user turn) and an optional reference `answer`
    (a string, a number or a list of accepted strings) for verifiable reward functions."""
    row = _object(raw, columns)
    if "messages" in row and "prompt" not in row:
        prompt = _messages(row["messages"], "messages")
        if prompt[-1]["role"] != "user":
            raise RowError("messages", "must end with a user message (the model writes the next turn)")
    else:
        prompt = _prompt(row.get("prompt"))
    prompt = _with_system(prompt, row.get("system"), system)
    check_order(prompt + [{"role": "assistant", "content": "?"}], "prompt")  # a chat awaiting its next turn
    out: dict[str, Any] = {"prompt": prompt, "where": raw.where}
    if "answer" in row:
        answer = row["answer"]
        answers = [answer] if isinstance(answer, (str, int, float)) and not isinstance(answer, bool) else answer
        if not (
            isinstance(answers, list)
            and answers
            and all(isinstance(a, (str, int, float)) and str(a).strip() for a in answers)
        ):
            raise RowError("answer", "expected a non-empty string, a number or a list of them")
        out["answer"] = [str(a) for a in answers]
    return out


def load_prompts(
    paths: list[str | Path], system: str | None = None, columns: dict[str, str] | None = None
) -> list[dict[str, Any]]:
    return collect_rows(paths, lambda raw: to_prompt_row(raw, system, columns), "prompt row")
