"""The LoRA family through PEFT: LoRA, rsLoRA, DoRA, PiSSA/OLoRA initialisation and LoRA+.

The base weights stay frozen; low-rank adapters learn on the chosen linear modules.
- `lora.target_modules`: 'all-linear', 'attention' (linear layers inside attention blocks, found
  by name) or a list of module names.
- `lora.layers`: only these decoder layers (the last N, or a list) get adapters: the target
  modules are named in full (PEFT's `layers_to_transform` refuses 'all-linear'); the backward
  pass then stops at the lowest adapted layer.
- `use_rslora` / `use_dora` / `init` map onto PEFT's LoraConfig (use_rslora, use_dora,
  init_lora_weights).
- PiSSA and OLoRA rewrite the base weights in memory (W - BA) at initialisation. The initial
  adapter is kept in a temporary folder so that `save_lora` can convert the trained adapter into a
  plain LoRA adapter (rank 2r) that applies to the unmodified base, as PEFT documents.
- LoRA+ (`loraplus_lr_ratio`) is an optimiser choice: `loraplus_optimizer` builds PEFT's
  `create_loraplus_optimizer` (B matrices at ratio x the learning rate) for any stage's Trainer.
- A model with a new task head (a reward model's scalar `score`) gets PEFT's SEQ_CLS task type,
  which trains and saves that head in full beside the adapter.
"""

from __future__ import annotations

import re
import shutil
import tempfile
import weakref

import torch.nn as nn

from tunesmith.errors import ConfigError
from tunesmith.models.reward import task_head

# PiSSA/OLoRA models -> folder holding their initial adapter (for the conversion when saving).
_INITIAL_ADAPTERS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
INIT_TO_PEFT = {"default": True, "gaussian": "gaussian", "pissa": "pissa", "olora": "olora"}


def attention_linear_names(model) -> list[str]:
    """Full names of the linear layers inside attention blocks (a path part containing 'attn' or
    'attention'), e.g. model.layers.0.self_attn.q_proj."""
    names = []
    for name, module in model.named_modules():
        parents = name.split(".")[:-1]
        if isinstance(module, nn.Linear) and any("attn" in p.lower() or "attention" in p.lower() for p in parents):
            names.append(name)
    if not names:
        raise ConfigError(
            "lora.target_modules=attention: no linear layer inside an attention block found in this "
            "model; list the module names instead, e.g. lora.target_modules=[q_proj,v_proj]"
        )
    return names


def adapted_layers(model, layers) -> list[int] | None:
    """`lora.layers` as PEFT's `layers_to_transform`: sorted layer indices, or None for every layer."""
    if layers is None:
        return None
    config = getattr(model, "config", None)
    count = getattr(config, "num_hidden_layers", None) or getattr(
        getattr(config, "text_config", None), "num_hidden_layers", None
    )
    if not count:
        raise ConfigError(
            "lora.layers: this model's config does not say how many decoder layers it has "
            "(num_hidden_layers); leave lora.layers unset"
        )
    if isinstance(layers, int):
        if not 1 <= layers <= count:
            raise ConfigError(
                f"lora.layers: {layers} (the last N layers) must be between 1 and {count}, the "
                "model's number of decoder layers"
            )
        return list(range(count - layers, count))
    if not layers:
        raise ConfigError("lora.layers: an empty list adapts nothing; leave it unset for every layer")
    bad = [i for i in layers if not -count <= i < count]
    if bad:
        raise ConfigError(
            f"lora.layers: {bad} out of range: the model has {count} decoder layers "
            f"(0..{count - 1}, or -{count}..-1 from the end)"
        )
    return sorted({i % count for i in layers})


LAYER_INDEX = re.compile(r"\.(?:layers|h|blocks|layer)\.(\d+)\.")


def modules_in_layers(model, targets, layers: set[int]) -> list[str]:
    """Full names of the linear modules `targets` selects ('all-linear', or names / name suffixes)
    that sit inside the decoder layers `layers`."""
    names = []
    for name, module in model.named_modules():
        found = LAYER_INDEX.search(name)
        if not isinstance(module, nn.Linear) or not found or int(found.group(1)) not in layers:
            continue
        if targets == "all-linear" or any(name == t or name.endswith("." + t) for t in targets):
            names.append(name)
    if not names:
        raise ConfigError(
            f"lora.layers: no module of lora.target_modules={targets} inside decoder layers {sorted(layers)}"
        )
    return names


def peft_lora_config(model, options):
    from peft import LoraConfig

    targets = options.target_modules
    if targets == "attention":
        targets = attention_linear_names(model)
    elif isinstance(targets, list):
        names = [name for name, _ in model.named_modules()]
        missing = [t for t in targets if not any(n == t or n.endswith("." + t) for n in names)]
        if missing:
            raise ConfigError(
                f"lora.target_modules: {missing} not found in the model; linear layers it has: "
                f"{sorted({n.rsplit('.', 1)[-1] for n, m in model.named_modules() if isinstance(m, nn.Linear)})}"
            )
    chosen = adapted_layers(model, options.layers)
    if chosen is not None:  # PEFT takes layers_to_transform with a list of names only: name the modules
        targets = modules_in_layers(model, targets, set(chosen))
    return LoraConfig(
        r=options.r,
        lora_alpha=options.alpha,
        lora_dropout=options.dropout,
        target_modules=targets,
        use_rslora=options.use_rslora,
        use_dora=options.use_dora,
        init_lora_weights=INIT_TO_PEFT[options.init],
        task_type="SEQ_CLS" if task_head(model) else "CAUSAL_LM",
    )


def apply_lora(model, cfg):
    from peft import get_peft_model

    options = cfg.lora
    if options.init in ("pissa", "olora") and options.dropout:
        # PEFT's PiSSA/OLoRA assume no dropout on the adapter input (the paper's setting).
        raise ConfigError(
            f"lora.init={options.init} needs lora.dropout=0 (PiSSA/OLoRA adapters start from the weights' "
            "own principal directions)"
        )
    if cfg.training.gradient_checkpointing:
        model.enable_input_require_grads()
    peft_model = get_peft_model(model, peft_lora_config(model, options))
    if options.init in ("pissa", "olora"):
        folder = tempfile.mkdtemp(prefix=f"tunesmith-{options.init}-init-")
        config = peft_model.peft_config["default"]
        config.init_lora_weights = True  # saved as a plain adapter: PEFT's documented conversion recipe
        peft_model.save_pretrained(folder)
        config.init_lora_weights = INIT_TO_PEFT[options.init]
        _INITIAL_ADAPTERS[peft_model] = folder
    return peft_model


def save_lora(model, directory) -> None:
    """Save the adapter; PiSSA/OLoRA adapters are converted to plain LoRA for the unmodified base."""
    folder = _INITIAL_ADAPTERS.pop(model, None)
    if folder is None:
        model.save_pretrained(directory)
        return
    try:
        model.save_pretrained(directory, path_initial_model_for_weight_conversion=folder)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


class LoraPlusOptimizer:
    """An optimiser factory for the transformers Trainer (`optimizer_cls_and_kwargs`): the optimiser
    `args.optim` names (AdamW by default), with PEFT's LoRA+ parameter groups."""

    def __call__(self, model, *, args, loraplus_lr_ratio: float):
        from peft.optimizers import create_loraplus_optimizer
        from transformers import Trainer

        optimizer_cls, kwargs = Trainer.get_optimizer_cls_and_kwargs(args, model)
        kwargs = dict(kwargs)
        lr = kwargs.pop("lr", args.learning_rate)
        return create_loraplus_optimizer(
            model,
            optimizer_cls,
            lr=lr,
            loraplus_lr_ratio=loraplus_lr_ratio,
            loraplus_weight_decay=args.weight_decay,
            **kwargs,
        )


def loraplus_optimizer(cfg, args):
    """(factory, kwargs) for the Trainer's `optimizer_cls_and_kwargs`, or None without LoRA+."""
    if cfg.lora.loraplus_lr_ratio is None:
        return None
    return LoraPlusOptimizer, {"args": args, "loraplus_lr_ratio": cfg.lora.loraplus_lr_ratio}
