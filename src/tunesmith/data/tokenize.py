"""Render conversations with the tokenizer's chat template, tokenise, and mask labels.

Only assistant turns are trained by default: each assistant span runs from the end of the
generation prompt (`<|im_start|>assistant\\n` for ChatML) to the end of the turn, end-of-turn
token included, trailing whitespace excluded. Spans are found in characters by rendering the
conversation's prefixes with the same template, then mapped to tokens with the tokenizer's
offsets, so training text is exactly what `apply_chat_template` produces at inference.

An assistant turn marked `"train": False` (v1 `loss_weight: 0`, a TRL prompt's own replies) is
context, not trained. A row's `tools` go to the template when it renders tools, else into the
system turn as Qwen/Hermes templates write them; reasoning (`reasoning_content`) is rendered only
by a template that reads it, and refused with the row's location otherwise.

Rows longer than `max_length` follow `data.overlength`: `truncate` (keep the first tokens),
`drop` (leave the row out, counted) or `error` (an invalid row). Truncated rows are counted in
`Rejects.truncated`, with whether the last reply lost its end-of-turn token (the model is then
never shown where that reply stops); a row whose trained replies are cut to nothing is an invalid
row (it follows `data.on_error`), never trained as an empty example.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from tunesmith.data.formats import Conversation
from tunesmith.data.rejects import Rejects
from tunesmith.errors import DataError

IGNORE_INDEX = -100


@dataclass
class TokenizedRow:
    input_ids: list[int]
    labels: list[int]
    where: str = ""
    task: str | None = None  # the row's task name (multi-task data), None otherwise

    @property
    def trained_tokens(self) -> int:
        return sum(1 for label in self.labels if label != IGNORE_INDEX)


@dataclass(frozen=True)
class MaskOptions:
    """How a conversation becomes trained tokens (the `data` keys that change the tokens)."""

    max_length: int = 1024
    train_on_prompt: bool = False
    last_turn_only: bool = False
    overlength: str = "truncate"

    @classmethod
    def of(cls, data) -> MaskOptions:
        return cls(data.max_length, data.train_on_prompt, data.last_turn_only, data.overlength)


def tool_calls_as_text(messages: list[dict]) -> list[dict]:
    """For templates that ignore `tool_calls`: each call written into the assistant's content as
    `<tool_call>{"name": ..., "arguments": {...}}</tool_call>` (the Hermes/Qwen convention), so the
    call is rendered and trained instead of silently dropped."""
    out = []
    for message in messages:
        calls = message.get("tool_calls")
        if calls:
            text = "\n".join(
                "<tool_call>\n"
                + json.dumps(
                    {"name": c["function"]["name"], "arguments": c["function"]["arguments"]}, ensure_ascii=False
                )
                + "\n</tool_call>"
                for c in calls
            )
            content = message.get("content") or ""
            rest = {k: v for k, v in message.items() if k != "tool_calls"}  # reasoning, the train mark
            message = {**rest, "content": f"{content}\n{text}" if content.strip() else text}
        out.append(message)
    return out


TOOLS_HEADER = (
    "# Tools\n\nYou may call one or more functions to assist with the user query.\n\n"
    "You are provided with function signatures within <tools></tools> XML tags:\n<tools>"
)
TOOLS_FOOTER = (
    "\n</tools>\n\nFor each function call, return a json object with function name and arguments "
    "within <tool_call></tool_call> XML tags."
)


def tools_in_system(messages: list[dict], tools: list[dict]) -> list[dict]:
    """For templates that ignore `tools`: the definitions written into the system turn (Qwen2.5's
    wording), so the model is trained with the tools it is shown at inference."""
    block = TOOLS_HEADER + "".join("\n" + json.dumps(t, ensure_ascii=False) for t in tools) + TOOLS_FOOTER
    if messages and messages[0]["role"] == "system":
        return [{**messages[0], "content": messages[0]["content"] + "\n\n" + block}] + messages[1:]
    return [{"role": "system", "content": block}] + messages


def render(
    tokenizer,
    messages: list[dict],
    add_generation_prompt: bool = False,
    tools: list[dict] | None = None,
    where: str = "",
) -> str:
    template = getattr(tokenizer, "chat_template", None)
    if not template:
        raise DataError(
            "the tokenizer has no chat template; set data.template to chatml or plain, or use a model with one"
        )
    if "reasoning_content" not in template and any(m.get("reasoning_content") for m in messages):
        raise DataError(
            f"{where + ': ' if where else ''}the row has reasoning parts, and this chat template does not "
            "render reasoning (`reasoning_content`); use a model whose template does (e.g. Qwen3), "
            "set data.template to one that does, or drop the reasoning parts"
        )
    if "tool_calls" not in template:
        messages = tool_calls_as_text(messages)
    extra = {}
    if tools and "tools" in template.replace("tool_calls", ""):
        extra["tools"] = tools
    elif tools:
        messages = tools_in_system(messages, tools)
    messages = [{k: v for k, v in m.items() if k != "train"} for m in messages]
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt, **extra)


def assistant_spans(
    tokenizer, messages: list[dict[str, str]], where: str = "", tools: list[dict] | None = None
) -> tuple[str, list[tuple[int, int]]]:
    """The rendered text and the (start, end) character spans of every trained assistant reply."""
    text = render(tokenizer, messages, tools=tools, where=where)
    spans = []
    for i, message in enumerate(messages):
        if message["role"] != "assistant" or message.get("train") is False:
            continue
        prompt = render(tokenizer, messages[:i], add_generation_prompt=True, tools=tools)
        upto = render(tokenizer, messages[: i + 1], tools=tools)
        if not (upto.startswith(prompt) and text.startswith(upto)):
            raise DataError(
                f"{where}: the chat template does not render conversations as prefixes of each other, "
                "so assistant turns cannot be located; use a template without history rewriting"
            )
        end = len(upto.rstrip())
        spans.append((len(prompt), end))
    return text, spans


def _labels(ids: list[int], offsets, spans: list[tuple[int, int]], train_on_prompt: bool) -> list[int]:
    """A token is trained when it lies inside an assistant span (spans and offsets both ascend)."""
    if train_on_prompt:
        return list(ids)
    labels, k = [], 0
    for token, (start, end) in zip(ids, offsets):
        while k < len(spans) and start >= spans[k][1]:
            k += 1
        inside = k < len(spans) and start >= spans[k][0] and end <= spans[k][1] and end > start
        labels.append(token if inside else IGNORE_INDEX)
    return labels


def tokenize_conversation(
    tokenizer,
    conversation: Conversation,
    max_length: int = 1024,
    train_on_prompt: bool = False,
    last_turn_only: bool = False,
) -> TokenizedRow:
    """The conversation's tokens with labels, cut at max_length (`tokenize_all` applies the policy)."""
    return _tokenize_batch(tokenizer, [conversation], train_on_prompt, last_turn_only, max_length)[0]


def _tokenize_batch(
    tokenizer,
    conversations: list[Conversation],
    train_on_prompt: bool,
    last_turn_only: bool,
    max_length: int | None = None,
) -> list[TokenizedRow]:
    rendered = []
    for conversation in conversations:
        text, spans = assistant_spans(
            tokenizer, conversation.messages, conversation.where, conversation.meta.get("tools")
        )
        rendered.append((text, spans[-1:] if last_turn_only else spans))
    # one call for the whole batch: the fast tokenizer encodes it in parallel
    encoded = tokenizer([text for text, _ in rendered], add_special_tokens=False, return_offsets_mapping=True)
    rows = []
    for conversation, (_, spans), ids, offsets in zip(
        conversations, rendered, encoded["input_ids"], encoded["offset_mapping"]
    ):
        labels = _labels(ids, offsets, spans, train_on_prompt)
        rows.append(
            TokenizedRow(ids[:max_length], labels[:max_length], conversation.where, conversation.meta.get("task"))
        )
    return rows


def tokenize_all(
    tokenizer, conversations: list[Conversation], options: MaskOptions, rejects: Rejects | None = None, batch: int = 512
) -> list[TokenizedRow]:
    """Tokenise every conversation under `options`; over-length and untrainable rows go to `rejects`
    (errors for `overlength: error`, dropped rows otherwise). Raises if a row is invalid under the
    default policy."""
    rejects = rejects if rejects is not None else Rejects()
    rows = []
    for first in range(0, len(conversations), batch):
        chunk = conversations[first : first + batch]
        for conversation, full in zip(
            chunk, _tokenize_batch(tokenizer, chunk, options.train_on_prompt, options.last_turn_only)
        ):
            n = len(full.input_ids)
            if n > options.max_length:
                if options.overlength == "error":
                    rejects.add(
                        conversation.where,
                        "row",
                        f"{n} tokens, longer than data.max_length={options.max_length} "
                        "(data.overlength: error; use truncate or drop, or raise max_length)",
                    )
                    continue
                if options.overlength == "drop":
                    rejects.drop(
                        conversation.where, f"{n} tokens > data.max_length={options.max_length} (overlength: drop)"
                    )
                    continue
            row = TokenizedRow(
                full.input_ids[: options.max_length], full.labels[: options.max_length], conversation.where, full.task
            )
            if row.trained_tokens == 0 and n > options.max_length:
                rejects.add(
                    conversation.where,
                    "row",
                    f"{n} tokens: truncation to data.max_length={options.max_length} "
                    "cuts the trained reply to nothing (the prompt fills max_length); raise max_length, shorten "
                    "the prompt, or set data.overlength: drop",
                )
                continue
            if row.trained_tokens == 0:
                rejects.drop(conversation.where, "no trained token (no assistant reply to train)")
                continue
            if n > options.max_length:
                last = max(i for i, label in enumerate(full.labels) if label != IGNORE_INDEX)
                rejects.truncate(conversation.where, n, lost_end=last >= options.max_length)
            rows.append(row)
    return rows
