"""Batched generation with the chat template, for evaluation.

Prompts are rendered with the tokenizer's chat template, sorted by token length and left-padded
into batches of up to `batch_size` prompts of similar length (none shorter than half the batch's
longest, so one long prompt does not make a batch of short ones pad to its length); the replies
come back in the input order. Greedy batched replies equal one-at-a-time ones (tests/eval/test_eval_generate.py).
A progress bar (tqdm, on a terminal) counts the rows.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from tqdm.auto import tqdm

from tunesmith.data.turns import with_system


@dataclass
class Generated:
    text: str  # the reply, special tokens removed, stripped
    raw: str  # the reply up to (not including) the stop token, special tokens kept
    tokens: int  # new tokens generated, the stop token included
    stopped: bool  # the model emitted a stop (EOS) token before max_new_tokens


def prompt_messages(row: dict, text) -> list[dict] | None:
    """The prompt of an eval row: its `text` (the row's prompt or question) as one user turn, else its
    `messages` when they end with a user turn; None when it has neither."""
    if isinstance(text, str) and text.strip():
        return [{"role": "user", "content": text}]
    turns = row.get("messages")
    if (
        isinstance(turns, list)
        and turns
        and all(isinstance(m, dict) and isinstance(m.get("content"), str) for m in turns)
        and turns[-1].get("role") == "user"
    ):
        return [{"role": m.get("role"), "content": m["content"]} for m in turns]
    return None


def question_prompt(tokenizer, question: str, system: str | None) -> str:
    return prompt_text(tokenizer, [{"role": "user", "content": question}], system)


def prompt_text(tokenizer, messages: list[dict], system: str | None = None) -> str:
    """The prompt text of a conversation (ending with a user turn), with the system prompt put first
    when the conversation has none. Text that is not valid Unicode (lone surrogates, which JSON's
    `\\udcff` escapes can produce) is replaced by U+FFFD: a tokenizer refuses to encode it."""
    messages = [{**m, "content": valid_unicode(m["content"])} for m in with_system(messages, system)]
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


def valid_unicode(text: str) -> str:
    return text.encode("utf-8", "surrogatepass").decode("utf-8", "replace")


def stop_ids(model, tokenizer) -> set[int]:
    ids = model.generation_config.eos_token_id if model.generation_config is not None else None
    ids = ids if isinstance(ids, list) else [ids]
    return {i for i in ids + [tokenizer.eos_token_id] if i is not None}


@torch.no_grad()
def generate(
    model,
    tokenizer,
    prompts: list[str],
    max_new_tokens: int = 48,
    batch_size: int = 16,
    sample: bool = False,
    temperature: float = 1.0,
    desc: str | None = None,
) -> list[Generated]:
    """Replies to rendered prompt texts (`prompt_text`), in their order. `sample=True` samples at
    `temperature` (seed torch beforehand for repeatable draws); otherwise greedy."""
    stops = stop_ids(model, tokenizer)
    lengths = [len(tokenizer(p, add_special_tokens=False)["input_ids"]) for p in prompts]
    order = sorted(range(len(prompts)), key=lambda i: -lengths[i])
    results: list[Generated | None] = [None] * len(prompts)
    options = (
        {"do_sample": True, "temperature": temperature, "top_k": 0, "top_p": 1.0} if sample else {"do_sample": False}
    )
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else min(stops)
    side = tokenizer.padding_side
    tokenizer.padding_side = "left"
    bar = tqdm(total=len(prompts), desc=desc or "generating", unit="row", disable=None, leave=False)
    try:
        for chosen in _batches(order, lengths, batch_size):
            batch = tokenizer(
                [prompts[i] for i in chosen], return_tensors="pt", padding=True, add_special_tokens=False
            ).to(model.device)
            out = model.generate(**batch, max_new_tokens=max_new_tokens, pad_token_id=pad, **options)
            for i, ids in zip(chosen, out[:, batch["input_ids"].shape[1] :].tolist()):
                results[i] = _reply(tokenizer, ids, stops)
            bar.update(len(chosen))
    finally:
        tokenizer.padding_side = side
        bar.close()
    return results  # type: ignore[return-value]


def _batches(order: list[int], lengths: list[int], batch_size: int) -> list[list[int]]:
    """Consecutive runs of `order` (longest first) of at most batch_size rows, none under half the
    length of the run's first row."""
    batches: list[list[int]] = []
    for i in order:
        if batches and len(batches[-1]) < batch_size and 2 * lengths[i] >= lengths[batches[-1][0]]:
            batches[-1].append(i)
        else:
            batches.append([i])
    return batches


def _reply(tokenizer, ids: list[int], stops: set[int]) -> Generated:
    end = next((k for k, t in enumerate(ids) if t in stops), None)
    kept = ids if end is None else ids[:end]
    return Generated(
        text=tokenizer.decode(kept, skip_special_tokens=True).strip(),
        raw=tokenizer.decode(kept, skip_special_tokens=False),
        tokens=len(ids) if end is None else end + 1,
        stopped=end is not None,
    )


def generate_replies(
    model, tokenizer, questions: list[str], system: str | None = None, max_new_tokens: int = 48, batch_size: int = 16
) -> list[str]:
    """Greedy replies to single questions (one user turn each)."""
    prompts = [question_prompt(tokenizer, q, system) for q in questions]
    return [g.text for g in generate(model, tokenizer, prompts, max_new_tokens, batch_size)]
