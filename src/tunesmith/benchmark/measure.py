"""What every benchmark variant measures the same way, after training: the validation loss (one
shared evaluator) and greedy generation speed."""

from __future__ import annotations

import json
import time
from pathlib import Path


def _validation_rows(tokenizer, path: str, max_length: int):
    from tunesmith.config.data import DataConfig
    from tunesmith.data.dataset import build_set

    return build_set(tokenizer, [path], DataConfig(max_length=max_length), cache_root=None).rows


def shared_val_loss(model, tokenizer, spec: dict) -> float:
    """The same evaluator for every variant: fp32, eval mode, token-weighted over assistant tokens."""
    from tunesmith.eval.perplexity import validation_loss

    rows = _validation_rows(tokenizer, spec["validation"], spec["max_length"])
    return validation_loss(model.float().eval(), tokenizer, rows)["val_loss"]


def generation_speed(model, tokenizer, spec: dict) -> float:
    """Greedy generation tokens/s on the first validation prompts, one at a time (chat-like),
    exactly `gen_tokens` new tokens each."""
    import torch

    rows = [json.loads(line) for line in Path(spec["validation"]).read_text().splitlines()][: spec["gen_prompts"]]
    model.eval()
    new_tokens, seconds = 0, 0.0
    for row in rows:
        text = tokenizer.apply_chat_template(row["messages"][:-1], tokenize=False, add_generation_prompt=True)
        ids = tokenizer(text, return_tensors="pt", add_special_tokens=False).to(model.device)
        started = time.perf_counter()
        with torch.no_grad():
            out = model.generate(
                **ids,
                max_new_tokens=spec["gen_tokens"],
                min_new_tokens=spec["gen_tokens"],
                do_sample=False,
                pad_token_id=tokenizer.pad_token_id,
            )
        seconds += time.perf_counter() - started
        new_tokens += out.shape[1] - ids["input_ids"].shape[1]
    return new_tokens / seconds
