"""Freeze tuning: only N decoder layers (the last by default) and named extras train.

Embeddings, the LM head and everything else stay frozen unless named in `freeze.extra_modules`;
a new task head (a reward model's scalar `score`, see `models.reward.task_head`) always trains.
"""

from __future__ import annotations

import difflib

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
        raise ConfigError(f"freeze.trainable_layers={options.trainable_layers} but the model has {len(layers)} layers")
    chosen = (
        range(len(layers) - options.trainable_layers, len(layers))
        if options.position == "last"
        else range(options.trainable_layers)
    )
    prefixes = tuple(f"{name}.{i}." for i in chosen)
    head = task_head(model)
    if head:
        prefixes += (f"{head}.",)
    check_extra_modules(model, options.extra_modules)
    for param_name, param in model.named_parameters():
        extra = any(fragment in param_name for fragment in options.extra_modules)
        param.requires_grad_(param_name.startswith(prefixes) or extra)
    return model


def check_extra_modules(model, fragments: list[str]) -> None:
    """Every `freeze.extra_modules` entry must name at least one parameter (a typo trains nothing
    silently); the error names the fragments that exist, and a module with no parameter of its own
    (an LM head tied to the input embeddings)."""
    names = [name for name, _ in model.named_parameters()]  # a tied weight is listed once, under its owner
    parts = sorted({part for name in names for part in name.split(".")[:-1] if not part.isdigit()})
    for fragment in fragments:
        if any(fragment in name for name in names):
            continue
        owners = [m for m, module in model.named_modules() if fragment in m and any(True for _ in module.parameters())]
        if owners:  # the module exists but its weight is another module's (tied): name the owner
            tied = next(
                (
                    n
                    for n, p in model.named_parameters()
                    if any(p is q for q in dict(model.named_modules())[owners[0]].parameters())
                ),
                None,
            )
            raise ConfigError(
                f"freeze.extra_modules: `{fragment}` has no weight of its own: {owners[0]} shares it with "
                f"{tied} (tied embeddings), so name `{tied.rsplit('.', 1)[0].rsplit('.', 1)[-1]}` to "
                f"train it (that trains both)"
            )
        close = difflib.get_close_matches(fragment, parts, n=3, cutoff=0.5)
        hint = f"did you mean {' or '.join(close)}? " if close else ""
        raise ConfigError(
            f"freeze.extra_modules: `{fragment}` matches no parameter of this model; {hint}"
            f"module names that exist: {', '.join(parts)}"
        )
