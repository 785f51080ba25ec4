"""Render conversations with the tokenizer's own chat template, tokenise, and mask labels.

Only assistant turns are trained by default: each assistant span runs from the end of the
generation prompt (`<|im_start|>assistant\\n` for ChatML) to the end of the turn, end-of-turn
token included, trailing whitespace excluded. Spans are found in characters by rendering the
conversation's prefixes with the same template, then mapped to tokens with the tokenizer's
offsets, so training text is exactly what `apply_chat_template` produces at inference.
"""

from __future__ import annotations

from dataclasses import dataclass

from tunesmith.data.formats import Conversation
from tunesmith.errors import DataError

IGNORE_INDEX = -100


@dataclass
class TokenizedRow:
    input_ids: list[int]
    labels: list[int]
    where: str = ""

    @property
    def trained_tokens(self) -> int:
        return sum(1 for label in self.labels if label != IGNORE_INDEX)


def render(tokenizer, messages: list[dict[str, str]], add_generation_prompt: bool = False) -> str:
    if not getattr(tokenizer, "chat_template", None):
        raise DataError(
            "the tokenizer has no chat template; use a model with one (e.g. an -Instruct model)"
        )
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt)


def assistant_spans(tokenizer, messages: list[dict[str, str]], where: str = "") -> tuple[str, list[tuple[int, int]]]:
    """The rendered text and the (start, end) character spans of every assistant reply."""
    text = render(tokenizer, messages)
    spans = []
    for i, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        prompt = render(tokenizer, messages[:i], add_generation_prompt=True)
        upto = render(tokenizer, messages[: i + 1])
        if not (upto.startswith(prompt) and text.startswith(upto)):
            raise DataError(
                f"{where}: the chat template does not render conversations as prefixes of each other, "
                "so assistant turns cannot be located; use a template without history rewriting"
            )
        end = len(upto.rstrip())
        spans.append((len(prompt), end))
    return text, spans


def tokenize_conversation(tokenizer, conversation: Conversation, max_length: int, train_on_prompt: bool = False) -> TokenizedRow:
    text, spans = assistant_spans(tokenizer, conversation.messages, conversation.where)
    encoded = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ids, offsets = encoded["input_ids"], encoded["offset_mapping"]
    labels = []
    for token, (start, end) in zip(ids, offsets):
        inside = any(start >= s and end <= e and end > start for s, e in spans)
        labels.append(token if (inside or train_on_prompt) else IGNORE_INDEX)
    return TokenizedRow(ids[:max_length], labels[:max_length], conversation.where)


def tokenize_all(tokenizer, conversations: list[Conversation], max_length: int, train_on_prompt: bool = False) -> tuple[list[TokenizedRow], int]:
    """Tokenise every conversation; rows left with no trained token after truncation are dropped.

    Returns the rows and the number dropped.
    """
    rows, dropped = [], 0
    for conversation in conversations:
        row = tokenize_conversation(tokenizer, conversation, max_length, train_on_prompt)
        if row.trained_tokens == 0:
            dropped += 1
            continue
        rows.append(row)
    return rows, dropped
