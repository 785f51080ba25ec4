"""Token-weighted loss and perplexity of a model on validation conversations (assistant tokens)."""

from __future__ import annotations

import math

import torch

from tunesmith.data.collate import PaddingCollator
from tunesmith.data.tokenize import IGNORE_INDEX
from tunesmith.runtime.token_loss import supports_trained_token_loss, trained_token_loss_sum


@torch.no_grad()
def validation_loss(model, tokenizer, rows, batch_size: int = 8) -> dict:
    collate = PaddingCollator(tokenizer.pad_token_id)
    total_loss, total_tokens = 0.0, 0
    plain_head = supports_trained_token_loss(model)
    for start in range(0, len(rows), batch_size):
        batch = collate([{"input_ids": r.input_ids, "labels": r.labels} for r in rows[start : start + batch_size]])
        batch = {k: v.to(model.device) for k, v in batch.items()}
        if plain_head:  # logits at the trained positions only (runtime.token_loss)
            loss, count = trained_token_loss_sum(model, batch)
            total_loss += loss.item()
            total_tokens += int(count)
            continue
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits.float()
        # Prompt/P-tuning models return logits for their virtual tokens first: keep the inputs' own.
        logits = logits[:, -batch["input_ids"].shape[1] :]
        labels = batch["labels"][:, 1:]
        loss = torch.nn.functional.cross_entropy(
            logits[:, :-1].reshape(-1, logits.shape[-1]), labels.reshape(-1), ignore_index=IGNORE_INDEX, reduction="sum"
        )
        total_loss += loss.item()
        total_tokens += int((labels != IGNORE_INDEX).sum())
    loss = total_loss / max(total_tokens, 1)
    return {"val_loss": loss, "val_perplexity": math.exp(min(loss, 50)), "val_tokens": total_tokens}


def validation_loss_by_task(model, tokenizer, rows, batch_size: int = 8) -> dict:
    """`validation_loss` of each task's rows (`val_loss/TASK`) and over all of them (token-weighted)."""
    result, total_loss, total_tokens = {}, 0.0, 0
    for task in sorted({r.task for r in rows if r.task is not None}):
        part = validation_loss(model, tokenizer, [r for r in rows if r.task == task], batch_size)
        result[f"val_loss/{task}"] = part["val_loss"]
        total_loss += part["val_loss"] * part["val_tokens"]
        total_tokens += part["val_tokens"]
    loss = total_loss / max(total_tokens, 1)
    return {"val_loss": loss, "val_perplexity": math.exp(min(loss, 50)), "val_tokens": total_tokens, **result}
