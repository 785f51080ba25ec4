"""Batched greedy generation with the chat template (left padding), for evaluation."""

from __future__ import annotations

import torch


def chat_prompt(tokenizer, question: str, system: str | None) -> str:
    messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": question}]
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


@torch.no_grad()
def generate_replies(model, tokenizer, questions: list[str], system: str | None = None,
                     max_new_tokens: int = 48, batch_size: int = 16) -> list[str]:
    replies = []
    side = tokenizer.padding_side
    tokenizer.padding_side = "left"
    try:
        for start in range(0, len(questions), batch_size):
            prompts = [chat_prompt(tokenizer, q, system) for q in questions[start : start + batch_size]]
            batch = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False).to(model.device)
            out = model.generate(**batch, max_new_tokens=max_new_tokens, do_sample=False,
                                 pad_token_id=tokenizer.pad_token_id)
            new = out[:, batch["input_ids"].shape[1] :]
            replies += tokenizer.batch_decode(new, skip_special_tokens=True)
    finally:
        tokenizer.padding_side = side
    return [r.strip() for r in replies]
