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


def _record_logits_to_keep(model) -> list:
    """Record the `logits_to_keep` of each call of `model`'s forward (an instance attribute over the
    class's method; `del model.forward` removes it)."""
    calls, original = [], model.forward

    def spy(*a, **k):
        calls.append(k.get("logits_to_keep"))
        return original(*a, **k)

    model.forward = spy
    return calls


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
    gemma = Gemma2ForCausalLM(
        Gemma2Config(
            vocab_size=64,
            hidden_size=16,
            intermediate_size=32,
            num_hidden_layers=1,
            num_attention_heads=2,
            num_key_value_heads=1,
            head_dim=8,
        )
    )
    assert not supports_trained_token_loss(gemma)  # soft-capped logits: the model's own loss is used


def test_trainer_evaluation_uses_it_with_the_same_loss(tiny_model_dir, tmp_path):
    """The Trainer's validation loss (prediction_loss_only) goes through the trained-token path and
    equals the loss of its own prediction_step over full logits."""
    from transformers import Trainer, TrainingArguments

    from tunesmith.runtime.token_loss import TrainedTokenTrainer

    model = _model(tiny_model_dir, "lora").eval()
    batch = _batch(True)
    args = TrainingArguments(output_dir=str(tmp_path), use_cpu=True, report_to=[])
    trainer = TrainedTokenTrainer(model=model, args=args)
    calls = _record_logits_to_keep(model)
    mine, logits, labels = trainer.prediction_step(model, dict(batch), prediction_loss_only=True)
    assert calls == [1] and logits is None and labels is None  # head applied at trained positions only
    reference, _, _ = Trainer.prediction_step(trainer, model, dict(batch), prediction_loss_only=True)
    assert mine.item() == pytest.approx(reference.item(), abs=1e-5)
    # logits asked for (compute_metrics): the Trainer's own path, untouched
    _, full, _ = trainer.prediction_step(model, dict(batch), prediction_loss_only=False)
    assert full is not None and full.shape[:2] == batch["input_ids"].shape


def test_validation_loss_is_token_weighted_and_unchanged(tiny_model_dir):
    from types import SimpleNamespace

    from tunesmith.eval.perplexity import validation_loss

    model = _model(tiny_model_dir, "lora").eval()
    torch.manual_seed(3)
    rows = []
    for n in (6, 9, 14, 4, 11):
        ids = torch.randint(5, 200, (n,)).tolist()
        rows.append(SimpleNamespace(input_ids=ids, labels=[-100] * (n // 2) + ids[n // 2 :]))
    tokenizer = SimpleNamespace(pad_token_id=0)
    calls = _record_logits_to_keep(model)
    got = validation_loss(model, tokenizer, rows, batch_size=2)
    del model.forward  # the class's own forward again
    assert calls == [1, 1, 1]  # 3 batches, the head applied at trained positions only
    total, count = 0.0, 0
    with torch.no_grad():  # the reference: one row at a time, full logits
        for r in rows:
            logits = model(input_ids=torch.tensor([r.input_ids])).logits[0, :-1]
            targets = torch.tensor(r.labels[1:])
            keep = targets != -100
            total += torch.nn.functional.cross_entropy(logits[keep], targets[keep], reduction="sum").item()
            count += int(keep.sum())
    assert got["val_tokens"] == count
    assert got["val_loss"] == pytest.approx(total / count, abs=1e-5)
