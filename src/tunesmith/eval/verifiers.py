"""Verifiable reward functions for online RL (stage grpo) and for measuring a model on prompts.

Each function takes the completions (strings, or TRL's [{"role": "assistant", "content": ...}]
lists) and the rows' columns as keyword lists, and returns one float per completion:

    exact_answer  1.0 when the completion contains (or, with match: equals) one of the row's `answer`s
    regex_format  1.0 when the completion matches `pattern` (re.search; anchor it with ^...$ for the whole)
    length        1.0 for 1 to `max_chars` characters, falling linearly to 0.0 at twice that; an empty
                  completion gets 0.0 (otherwise "say nothing" is the easiest way to be short)
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable

import torch


def completion_text(completion) -> str:
    if isinstance(completion, list):  # conversational: the generated assistant message(s)
        return "".join(m.get("content", "") for m in completion if isinstance(m, dict))
    return str(completion)


def _normalise(text: str) -> str:
    return re.sub(r"\s+", " ", unicodedata.normalize("NFKC", text)).strip().lower()


def exact_answer(completions, answer, match: str = "contains", **_) -> list[float]:
    out = []
    for completion, accepted in zip(completions, answer):
        text = _normalise(completion_text(completion))
        wanted = [_normalise(a) for a in accepted]
        hit = text in wanted if match == "equals" else any(a in text for a in wanted)
        out.append(1.0 if hit else 0.0)
    return out


def regex_format(completions, pattern: str, **_) -> list[float]:
    compiled = re.compile(pattern, re.DOTALL)
    return [1.0 if compiled.search(completion_text(c).strip()) else 0.0 for c in completions]


def length(completions, max_chars: int, **_) -> list[float]:
    sizes = [len(completion_text(c).strip()) for c in completions]
    return [max(0.0, min(1.0, 2.0 - size / max_chars)) if size else 0.0 for size in sizes]


FUNCTIONS = {"exact_answer": exact_answer, "regex_format": regex_format, "length": length}


def reward_names(specs) -> list[str]:
    """Each reward's name, numbered from the second of a kind on (regex_format, regex_format_2)."""
    names, seen = [], {}
    for spec in specs:
        seen[spec.name] = seen.get(spec.name, 0) + 1
        names.append(spec.name if seen[spec.name] == 1 else f"{spec.name}_{seen[spec.name]}")
    return names


def reward_functions(specs) -> list[Callable]:
    """One TRL reward function per configured reward (a `grpo.rewards` entry), named after it."""
    funcs = []
    for spec, name in zip(specs, reward_names(specs)):
        options = {
            k: v
            for k, v in (("match", spec.match), ("pattern", spec.pattern), ("max_chars", spec.max_chars))
            if v is not None
        }

        def reward(completions, _fn=FUNCTIONS[spec.name], _options=options, **columns):
            return _fn(completions, **{**columns, **_options})

        reward.__name__ = name  # TRL logs rewards/<name>/mean and /std under this name
        funcs.append(reward)
    return funcs


@torch.no_grad()
def generate_completions(
    model, tokenizer, prompts: list[list[dict]], max_new_tokens: int, batch_size: int = 16
) -> list[str]:
    """Greedy completions of chat prompts (message lists), left-padded in batches."""
    out = []
    side = tokenizer.padding_side
    tokenizer.padding_side = "left"
    try:
        for start in range(0, len(prompts), batch_size):
            texts = [
                tokenizer.apply_chat_template(p, tokenize=False, add_generation_prompt=True)
                for p in prompts[start : start + batch_size]
            ]
            batch = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(model.device)
            ids = model.generate(
                **batch, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=tokenizer.pad_token_id
            )
            out += tokenizer.batch_decode(ids[:, batch["input_ids"].shape[1] :], skip_special_tokens=True)
    finally:
        tokenizer.padding_side = side
    return [o.strip() for o in out]


def reward_report(model, tokenizer, rows: list[dict], specs, max_new_tokens: int, batch_size: int = 16) -> dict:
    """Mean weighted reward of greedy completions on held-out prompts, and each function's mean."""
    completions = generate_completions(model, tokenizer, [r["prompt"] for r in rows], max_new_tokens, batch_size)
    columns = {"answer": [r.get("answer") for r in rows]}
    total = [0.0] * len(rows)
    result = {}
    for spec, func in zip(specs, reward_functions(specs)):
        values = func(completions, **columns)
        result[f"reward_{func.__name__}"] = sum(values) / len(values)
        total = [t + spec.weight * v for t, v in zip(total, values)]
    result["reward_mean"] = sum(total) / len(total)
    result["reward_prompts"] = len(rows)
    result["reward_samples"] = [
        {"prompt": r["prompt"][-1]["content"], "completion": c} for r, c in zip(rows[:5], completions)
    ]
    return result


def require_answers(rows: list[dict], specs) -> None:
    """When exact_answer is among the reward `specs`, every prompt row must carry an `answer`."""
    from tunesmith.errors import DataError

    if any(spec.name == "exact_answer" for spec in specs):
        missing = [r["where"] for r in rows if "answer" not in r]
        if missing:
            raise DataError(
                f"{len(missing)} prompt row(s) have no `answer` field, which reward exact_answer needs: "
                + ", ".join(missing[:5])
                + (" ..." if len(missing) > 5 else "")
            )
