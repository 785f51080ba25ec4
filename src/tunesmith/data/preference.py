"""Preference data: pairs for DPO-style stages, labelled completions for KTO.

Pairs: a prompt with a chosen and a rejected reply.

Row shapes accepted (`columns` maps other field names onto these):
    {"prompt": str, "chosen": str, "rejected": str, "system"?: str}
    {"prompt": [messages...], "chosen": [assistant message] | str, "rejected": ... }
    {"chosen": [full conversation], "rejected": [full conversation]}  (shared prefix = prompt)
Optional `score` and `reason` fields are kept as metadata. Output rows are TRL's conversational
format: {"prompt": [...], "chosen": [{"role": "assistant", ...}], "rejected": [...]}.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tunesmith.data.formats import ROLES, RowError, check_order, collect_rows, rename_columns
from tunesmith.data.readers import RawRow
from tunesmith.errors import DataError


def _messages(value: Any, field: str) -> list[dict[str, str]]:
    if not isinstance(value, list) or not value:
        raise RowError(field, "expected a string or a non-empty list of messages")
    out = []
    for i, message in enumerate(value):
        if not isinstance(message, dict) or message.get("role") not in ROLES:
            raise RowError(f"{field}[{i}]", f"expected {{role: {'|'.join(ROLES)}, content}}")
        content = message.get("content")
        if not isinstance(content, str) or not content.strip():
            raise RowError(f"{field}[{i}].content", "missing or empty")
        out.append({"role": message["role"], "content": content})
    return out


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
    return rename_columns(raw.data, columns)


def _with_system(prompt: list[dict[str, str]], own: Any, default: str | None) -> list[dict[str, str]]:
    """The row's own `system` field, else the config's default, unless the prompt has one."""
    system = own if isinstance(own, str) and own.strip() else default
    if system and prompt[0]["role"] != "system":
        prompt = [{"role": "system", "content": system}] + prompt
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
    if "chosen" not in row and "rejected" not in row:
        raise RowError("chosen", f"missing required field; a preference row needs prompt/chosen/rejected, this one has "
                                 f"{sorted(row)} (map other names with data.columns)")
    chosen, rejected = _reply(row.get("chosen"), "chosen"), _reply(row.get("rejected"), "rejected")
    if row.get("prompt") is None:
        # Full conversations: the shared leading turns are the prompt.
        shared = 0
        while shared < min(len(chosen), len(rejected)) - 1 and chosen[shared] == rejected[shared]:
            shared += 1
        if shared == 0:
            raise RowError("prompt", "missing required field (and chosen/rejected share no leading turns)")
        prompt, chosen, rejected = chosen[:shared], chosen[shared:], rejected[shared:]
    else:
        prompt = _prompt(row["prompt"])
    prompt = _with_system(prompt, row.get("system"), system)
    check_order(prompt + chosen, "chosen")
    check_order(prompt + rejected, "rejected")
    if chosen == rejected:
        raise RowError("rejected", "identical to chosen; a preference pair needs two different replies")
    meta = {k: row[k] for k in ("score", "reason") if k in row}
    return {"prompt": prompt, "chosen": chosen, "rejected": rejected, "where": raw.where, **meta}


def load_preferences(paths: list[str | Path], system: str | None = None, columns: dict[str, str] | None = None) -> list[dict[str, Any]]:
    return collect_rows(paths, lambda raw: to_pair(raw, system, columns), "preference row")


# --- KTO: unpaired completions labelled desirable (true) or undesirable (false) --------------------

_LABELS = {True: True, False: False, "true": True, "false": False, "1": True, "0": False, 1: True, 0: False}


def to_kto_row(raw: RawRow, system: str | None = None, columns: dict[str, str] | None = None) -> dict[str, Any]:
    """{"prompt": str | messages, "completion": str | messages, "label": bool} -> TRL's KTO format."""
    row = _object(raw, columns)
    label = row.get("label")
    key = label.strip().lower() if isinstance(label, str) else label
    if isinstance(key, float) or key not in _LABELS:
        raise RowError("label", f"expected true (desirable) or false (undesirable), got {label!r}")
    completion = _reply(row.get("completion"), "completion")
    prompt = _with_system(_prompt(row.get("prompt")), row.get("system"), system)
    check_order(prompt + completion, "completion")
    return {"prompt": prompt, "completion": completion, "label": _LABELS[key], "where": raw.where}


def load_kto(paths: list[str | Path], system: str | None = None, columns: dict[str, str] | None = None) -> list[dict[str, Any]]:
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


def load_scored_rows(paths: list[str | Path], system: str | None = None, columns: dict[str, str] | None = None) -> list[dict[str, Any]]:
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
        if not (isinstance(answers, list) and answers and all(isinstance(a, (str, int, float)) and str(a).strip() for a in answers)):
            raise RowError("answer", "expected a non-empty string, a number or a list of them")
        out["answer"] = [str(a) for a in answers]
    return out


def load_prompts(paths: list[str | Path], system: str | None = None, columns: dict[str, str] | None = None) -> list[dict[str, Any]]:
    return collect_rows(paths, lambda raw: to_prompt_row(raw, system, columns), "prompt row")
