"""Tokens counted as the Trainer trains them, the same way on every side of the benchmark.

`TokenCounter` is a TrainerCallback: when training begins it puts a forward pre-hook on the model
the Trainer trains (torch's public `register_forward_pre_hook`), and every training forward adds
its batch's tokens: `real` the rows' own tokens (the attention mask's ones; in a padding-free
packed batch everything but the padding segment) and `computed` every position the model ran,
padding included. So tokens/s is what each side actually trained in the steps it ran, not the
set's mean length times a fraction of an epoch (length-grouped batches start with the longest
rows), and `computed / real` shows the padding each side paid for. Evaluation forwards (the model
in eval mode) are not counted; gradient checkpointing recomputes layers, not the model's forward.
"""

from __future__ import annotations

import torch
from transformers import TrainerCallback

from tunesmith.data.packing import packed_real_tokens


def batch_tokens(inputs: dict, pad_token_id: int | None) -> tuple[int, int]:
    """(real, computed) tokens of one batch as the model receives it."""
    input_ids = inputs["input_ids"]
    computed = input_ids.numel()
    if inputs.get("attention_mask") is not None:
        return int(inputs["attention_mask"].sum()), computed
    if inputs.get("position_ids") is not None and pad_token_id is not None:
        return packed_real_tokens(input_ids, inputs["position_ids"], pad_token_id), computed
    return computed, computed  # no mask and no packing: an unpadded batch


class TokenCounter(TrainerCallback):
    """Counts the tokens of every training forward of the Trainer's model (see the module doc)."""

    def __init__(self, pad_token_id: int | None):
        self.pad_token_id = pad_token_id
        self.real = 0
        self.computed = 0
        self.batches = 0
        self._handle = None

    @torch.compiler.disable  # a counter, not part of the graph, under training.compile too
    def _count(self, module, args, kwargs):
        if not module.training:
            return None
        inputs = dict(kwargs)
        if args:  # called positionally: the first argument is input_ids
            inputs.setdefault("input_ids", args[0])
        if inputs.get("input_ids") is None:
            return None
        real, computed = batch_tokens(inputs, self.pad_token_id)
        self.real += real
        self.computed += computed
        self.batches += 1
        return None

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        if self._handle is None and model is not None:
            self._handle = model.register_forward_pre_hook(self._count, with_kwargs=True)

    def on_train_end(self, args, state, control, **kwargs):
        if self._handle is not None:
            self._handle.remove()
            self._handle = None

    def figures(self) -> dict:
        return {
            "real_tokens_trained": self.real,
            "computed_tokens": self.computed,
            "batches": self.batches,
            "padding_fraction": 1 - self.real / self.computed if self.computed else 0.0,
        }
