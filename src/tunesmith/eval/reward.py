"""Reward-model metrics: score conversations with a scalar-head model; pair accuracy and margin.

A conversation is rendered with the tokenizer's chat template exactly as RewardTrainer renders
it in training; the model scores the last non-padding token. accuracy = share of pairs with
r(chosen) > r(rejected); margin = mean of r(chosen) - r(rejected).
"""

from __future__ import annotations

import torch


@torch.no_grad()
def reward_scores(model, tokenizer, conversations: list[list[dict]], batch_size: int = 8) -> list[float]:
    rows = [tokenizer.apply_chat_template(c, tokenize=True, return_dict=True)["input_ids"] for c in conversations]
    out = []
    for start in range(0, len(rows), batch_size):
        batch = rows[start : start + batch_size]
        width = max(len(r) for r in batch)
        ids = torch.full((len(batch), width), tokenizer.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for i, row in enumerate(batch):  # right padding: the head reads the last non-pad token
            ids[i, : len(row)] = torch.tensor(row)
            mask[i, : len(row)] = 1
        logits = model(input_ids=ids.to(model.device), attention_mask=mask.to(model.device)).logits
        out += logits.float().squeeze(-1).tolist()
    return out


def reward_metrics(model, tokenizer, pairs: list[dict], batch_size: int = 8) -> dict:
    chosen = reward_scores(model, tokenizer, [p["prompt"] + p["chosen"] for p in pairs], batch_size)
    rejected = reward_scores(model, tokenizer, [p["prompt"] + p["rejected"] for p in pairs], batch_size)
    margins = [c - r for c, r in zip(chosen, rejected)]
    return {
        "rm_accuracy": sum(m > 0 for m in margins) / len(margins),
        "rm_margin": sum(margins) / len(margins),
        "rm_pairs": len(margins),
    }
