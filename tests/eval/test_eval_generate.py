"""Batched evaluation generation (eval.generate): greedy replies equal one-at-a-time replies, come
back in input order, and say whether the model stopped."""

from __future__ import annotations

import pytest

from tunesmith.eval.generate import generate, prompt_text
from tunesmith.methods.load import load_for_inference


@pytest.mark.trains
def test_batched_greedy_equals_one_at_a_time(tiny_model_dir):
    loaded = load_for_inference(str(tiny_model_dir))
    model, tokenizer = loaded.model, loaded.tokenizer
    questions = [
        "Hi",
        "What is the code word of the lab on the third floor?",
        "维特拉诺的咖啡角叫什么？",
        "Who?",
        "Tell me about the archive, the lab and the code word, in detail please.",
        "2+2?",
    ]
    side = tokenizer.padding_side
    prompts = [prompt_text(tokenizer, [{"role": "user", "content": q}]) for q in questions]
    single = [generate(model, tokenizer, [p], max_new_tokens=10, batch_size=1)[0] for p in prompts]
    batched = generate(model, tokenizer, prompts, max_new_tokens=10, batch_size=4)
    assert [b.text for b in batched] == [s.text for s in single]
    assert [b.tokens for b in batched] == [s.tokens for s in single]
    assert tokenizer.padding_side == side  # restored after generating
    assert len({s.text for s in single}) > 1  # the prompts' replies differ: the order is really checked
    for g in batched:
        assert g.stopped or g.tokens == 10  # a reply without a stop token ran to max_new_tokens
        assert 1 <= g.tokens <= 10
