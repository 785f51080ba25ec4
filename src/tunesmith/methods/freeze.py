"""Freeze tuning: only N decoder layers (the last by default) and named extras train.

Embeddings, the LM head and everything else stay frozen unless named in `freeze.extra_modules`;
a new task head (a reward model's scalar `score`, see `models.reward.task_head`) always trains.
"""

from __future__ import annotations

import torch.nn as nn

from tunesmith.errors import ConfigError
from tunesmith.models.reward import task_head


def decoder_layers(model) -> tuple[str, nn.ModuleList]:
    """The model's stack of decoder blocks: the longest ModuleList (e.g. `model.layers`)."""
    best = None
    for name, module in model.named_modules():
        if isinstance(module, nn.ModuleList) and (best is None or len(module) > len(best[1])):
            best = (name, module)
    if best is None:
        raise ConfigError("method freeze: cannot find the model's decoder layers (no ModuleList)")
    return best


def apply_freeze(model, cfg):
    options = cfg.freeze
    name, layers = decoder_layers(model)
    if options.trainable_layers > len(layers):
        raise ConfigError(
            f"freeze.trainable_layers={options.trainable_layers} but the model has {len(layers)} layers"
        )
    chosen = range(len(layers) - options.trainable_layers, len(layers)) if options.position == "last" else range(options.trainable_layers)
    prefixes = tuple(f"{name}.{i}." for i in chosen)
    head = task_head(model)
    if head:
        prefixes += (f"{head}.",)
    for param_name, param in model.named_parameters():
        extra = any(fragment in param_name for fragment in options.extra_modules)
        param.requires_grad_(param_name.startswith(prefixes) or extra)
    return model
