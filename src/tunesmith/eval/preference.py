"""Preference metrics: how much more likely the model finds the chosen reply than the rejected.

margin = mean over pairs of [log p(chosen | prompt) - log p(rejected | prompt)] (summed over reply
tokens); accuracy = share of pairs with a positive margin. Tokens shared by both sides (earlier
turns) cancel out.
"""

from __future__ import annotations

import torch

from tunesmith.data.collate import PaddingCollator
from tunesmith.data.formats import Conversation
from tunesmith.data.tokenize import IGNORE_INDEX, tokenize_conversation


@torch.no_grad()
def sequence_logprobs(
    model, tokenizer, conversations: list[list[dict]], max_length: int, batch_size: int = 8
) -> list[float]:
    rows = [tokenize_conversation(tokenizer, Conversation(c), max_length) for c in conversations]
    collate = PaddingCollator(tokenizer.pad_token_id)
    out = []
    for start in range(0, len(rows), batch_size):
        batch = collate([{"input_ids": r.input_ids, "labels": r.labels} for r in rows[start : start + batch_size]])
        batch = {k: v.to(model.device) for k, v in batch.items()}
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits.float()
        logits = logits[:, -batch["input_ids"].shape[1] :]  # drop prompt-tuning virtual-token positions
        labels = batch["labels"][:, 1:]
        mask = labels != IGNORE_INDEX
        logp = torch.log_softmax(logits[:, :-1], dim=-1).gather(-1, labels.clamp(min=0).unsqueeze(-1)).squeeze(-1)
        out += (logp * mask).sum(dim=1).tolist()
    return out


def preference_metrics(model, tokenizer, pairs: list[dict], max_length: int, batch_size: int = 8) -> dict:
    chosen = sequence_logprobs(model, tokenizer, [p["prompt"] + p["chosen"] for p in pairs], max_length, batch_size)
    rejected = sequence_logprobs(model, tokenizer, [p["prompt"] + p["rejected"] for p in pairs], max_length, batch_size)
    margins = [c - r for c, r in zip(chosen, rejected)]
    return {
        "pref_margin": sum(margins) / len(margins),
        "pref_accuracy": sum(m > 0 for m in margins) / len(margins),
        "pref_pairs": len(margins),
    }


def kto_metrics(model, tokenizer, rows: list[dict], max_length: int, batch_size: int = 8) -> dict:
    """Mean log-probability of desirable minus undesirable completions (each summed over its tokens)."""
    logps = sequence_logprobs(model, tokenizer, [r["prompt"] + r["completion"] for r in rows], max_length, batch_size)
    good = [lp for lp, r in zip(logps, rows) if r["label"]]
    bad = [lp for lp, r in zip(logps, rows) if not r["label"]]
    return {"kto_margin": sum(good) / len(good) - sum(bad) / len(bad), "kto_rows": len(rows)}
