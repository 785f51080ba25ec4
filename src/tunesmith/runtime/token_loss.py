"""Causal-LM loss with logits only where a token is trained.

A causal LM's own loss applies the output head to every position (system prompt, user turns,
padding, each row's last token) and upcasts all those logits to fp32: batch x length x vocabulary
floats, 1.3 GB for 13 rows of 200 tokens with SmolLM2's 49k-token vocabulary, plus as much again
for their gradient. In SFT most positions are prompt or padding and train nothing.

`TrainedTokenTrainer` runs the model with `output_hidden_states=True` and `logits_to_keep=1` (the
head then sees one position), takes the final hidden states (after the last norm; transformers
ties `hidden_states[-1]` to `last_hidden_state`), keeps the positions whose next token is trained,
and applies the head to those alone. The loss is the same number: the sum of the trained tokens'
cross-entropy over their count, or over `num_items_in_batch` (all trained tokens of the
accumulated step, across processes), exactly as transformers' own causal-LM loss normalises it.

It applies to architectures whose logits are the plain head of the last hidden state (no logit
soft-capping or scaling, no router loss added inside forward): `PLAIN_HEAD_TYPES`. Any other
model, and any call that needs the outputs, goes through the Trainer's own `compute_loss`.
"""

from __future__ import annotations

import inspect

import torch
from transformers import Trainer

from tunesmith.data.tokenize import IGNORE_INDEX

PLAIN_HEAD_TYPES = frozenset({"llama", "mistral", "qwen2", "qwen3", "phi3", "olmo2"})


def _inner_model(model):
    """The transformers model under PEFT/DDP wrappers."""
    while hasattr(model, "module"):  # DDP
        model = model.module
    if hasattr(model, "get_base_model"):  # PEFT
        model = model.get_base_model()
    return model


def supports_trained_token_loss(model) -> bool:
    inner = _inner_model(model)
    config = getattr(inner, "config", None)
    if config is None or getattr(config, "model_type", None) not in PLAIN_HEAD_TYPES:
        return False
    if getattr(config, "final_logit_softcapping", None) or getattr(config, "tie_last_hidden_states", True) is False:
        return False
    return "logits_to_keep" in inspect.signature(inner.forward).parameters and inner.get_output_embeddings() is not None


def trained_token_loss_sum(model, inputs: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """The trained tokens' summed cross-entropy and their count, logits built at those positions only."""
    labels = inputs["labels"]
    features = {k: v for k, v in inputs.items() if k != "labels"}
    outputs = model(**features, output_hidden_states=True, logits_to_keep=1, use_cache=False)
    # virtual tokens of prompt-learning methods come first: the inputs' own positions are the last ones
    hidden = outputs.hidden_states[-1][:, -labels.shape[1] :]
    targets = labels[:, 1:]
    trained = targets != IGNORE_INDEX
    head = _inner_model(model).get_output_embeddings()
    logits = head(hidden[:, :-1][trained])
    total = torch.nn.functional.cross_entropy(logits.float(), targets[trained], reduction="sum")
    return total, trained.sum()


def trained_token_loss(model, inputs: dict, num_items_in_batch=None) -> torch.Tensor:
    """Sum of the trained tokens' cross-entropy over their count (or over `num_items_in_batch`)."""
    total, count = trained_token_loss_sum(model, inputs)
    if num_items_in_batch is None:
        return total / count.clamp(min=1)
    return total / num_items_in_batch


class TrainedTokenTrainer(Trainer):
    """A transformers Trainer whose training loss builds logits at trained positions only."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._trained_token_loss = supports_trained_token_loss(self.model)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if return_outputs or not self._trained_token_loss or "labels" not in inputs:
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        if not self.model_accepts_loss_kwargs:
            num_items_in_batch = None  # the Trainer then divides the per-batch mean by the accumulation steps
        loss = trained_token_loss(model, inputs, num_items_in_batch)
        if self.args.average_tokens_across_devices and num_items_in_batch is not None:
            # num_items_in_batch counts every process's tokens and DDP averages gradients over processes
            loss = loss * self.accelerator.num_processes
        return loss

    def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None):
        """Validation loss the same way, when only the loss is asked for (the Trainer's eval loop with
        `prediction_loss_only`): the mean over the batch's trained tokens, as the model's own loss."""
        if not (prediction_loss_only and self._trained_token_loss and inputs.get("labels") is not None):
            return super().prediction_step(model, inputs, prediction_loss_only, ignore_keys)
        inputs = self._prepare_inputs(inputs)
        with torch.no_grad(), self.compute_loss_context_manager():
            loss = trained_token_loss(model, inputs)
        return loss.detach(), None, None
