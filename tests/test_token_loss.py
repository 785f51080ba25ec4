"""The trained-token loss: logits only where a token is trained, the same loss and gradients.

tunesmith's SFT/PT Trainer applies the output head only at positions whose next token is trained
(runtime/token_loss.py). These tests hold it to the model's own loss: padded and packed batches,
LoRA and prompt tuning, with and without `num_items_in_batch` (token weighting across gradient
accumulation), in fp32 to 1e-5, and the gradients of every trainable parameter to 1e-5.
"""

from __future__ import annotations

import pytest
import torch

from tunesmith.runtime.token_loss import supports_trained_token_loss, trained_token_loss


def _batch(padded: bool):
    torch.manual_seed(0)
    ids = torch.randint(5, 200, (3, 12))
    labels = ids.clone()
    labels[:, :5] = -100  # prompt
    if padded:
        mask = torch.ones_like(ids)
        mask[1, 9:] = 0
        mask[2, 7:] = 0
        labels[mask == 0] = -100
        return {"input_ids": ids, "attention_mask": mask, "labels": labels}
    # two rows packed in each sequence: positions restart, the first label of a row is masked
    positions = torch.tensor([list(range(5)) + list(range(7))] * 3)
    labels[:, 5] = -100
    return {"input_ids": ids, "position_ids": positions, "labels": labels}


def _model(tiny_model_dir, method: str):
    from peft import LoraConfig, PromptTuningConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(1)
    base = AutoModelForCausalLM.from_pretrained(str(tiny_model_dir), dtype=torch.float32)
    if method == "lora":
        config = LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", init_lora_weights=False)
    else:
        config = PromptTuningConfig(num_virtual_tokens=3, task_type="CAUSAL_LM")
    return get_peft_model(base, config if method == "lora" else config).train()


def _grads(model, loss):
    model.zero_grad()
    loss.backward()
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}


# prompt tuning runs padded batches only (PEFT's prompt learning takes no position ids, so no packing)
@pytest.mark.parametrize("method,padded", [("lora", True), ("lora", False), ("prompt", True)])
@pytest.mark.parametrize("num_items", [None, 40])
def test_trained_token_loss_equals_the_models_own_loss(tiny_model_dir, method, padded, num_items):
    model = _model(tiny_model_dir, method)
    torch.manual_seed(2)
    model.eval()  # no dropout, so both passes see the same function
    batch = _batch(padded)
    extra = {} if num_items is None else {"num_items_in_batch": torch.tensor(num_items)}
    reference = model(**batch, **extra, use_cache=False).loss  # as the Trainer runs: packed rows need no cache
    mine = trained_token_loss(model, batch, None if num_items is None else torch.tensor(num_items))
    assert mine.item() == pytest.approx(reference.item(), abs=1e-5)
    expected = _grads(model, reference)
    got = _grads(model, trained_token_loss(model, batch, extra.get("num_items_in_batch")))
    assert expected.keys() == got.keys() and expected
    for name in expected:
        torch.testing.assert_close(got[name], expected[name], atol=1e-5, rtol=1e-4, msg=name)


def test_only_plain_head_architectures_use_it(tiny_model_dir):
    from transformers import AutoModelForCausalLM, Gemma2Config, Gemma2ForCausalLM

    assert supports_trained_token_loss(_model(tiny_model_dir, "lora"))
    assert supports_trained_token_loss(AutoModelForCausalLM.from_pretrained(str(tiny_model_dir)))
    gemma = Gemma2ForCausalLM(Gemma2Config(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                           num_attention_heads=2, num_key_value_heads=1, head_dim=8))
    assert not supports_trained_token_loss(gemma)  # soft-capped logits: the model's own loss is used
