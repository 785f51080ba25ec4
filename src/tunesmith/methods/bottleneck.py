"""Method `adapter`: bottleneck adapters (Houlsby et al. 2019): small trained blocks after attention and/or MLP.

Each adapter maps h -> h + up(dropout(act(down(h)))) with down: hidden -> r and up: r -> hidden.
`up` starts at zero, so an untrained adapter is the identity and training starts from the base
model exactly. PEFT 0.21 has no such adapter (its adapters act on single linear layers), so this
is a small module of our own:
- the adapters live in one `nn.ModuleDict` attached to the model (`bottleneck_adapters`), and a
  forward hook on each attention/MLP block (PyTorch's public `register_forward_hook`) passes the
  block's output through its adapter; the base model's modules and weight names stay unchanged;
- `save_bottleneck` writes only the adapter weights (safetensors) and a small json config naming the
  base; `load_bottleneck` puts them back on a freshly loaded base (`methods.load` does this).
- a new task head (a reward model's scalar `score`, see `models.reward.task_head`) trains in full
  beside the adapters and is saved with them (`task_head` in the json config names it); a base
  loaded without such a head refuses those weights.
Not mergeable: the non-linearity between down and up cannot be folded into a linear weight, so
export of an adapter output keeps the adapter modules (export refuses --merge for it).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.nn as nn

from tunesmith.errors import ConfigError, ModelError
from tunesmith.layout import BOTTLENECK_CONFIG
from tunesmith.methods.freeze import decoder_layers
from tunesmith.models.reward import task_head

ADAPTER_WEIGHTS = "bottleneck_adapters.safetensors"
ATTENTION_NAMES = ("self_attn", "attention", "attn", "self_attention")
MLP_NAMES = ("mlp", "feed_forward", "ffn")
ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU, "silu": nn.SiLU, "tanh": nn.Tanh}


class BottleneckAdapter(nn.Module):
    def __init__(self, hidden_size: int, r: int, activation: str, dropout: float = 0.0):
        super().__init__()
        self.down = nn.Linear(hidden_size, r)
        self.act = ACTIVATIONS[activation]()
        self.up = nn.Linear(r, hidden_size)
        self.dropout = nn.Dropout(dropout)
        nn.init.zeros_(self.up.weight)  # identity at the start
        nn.init.zeros_(self.up.bias)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return hidden + self.dropout(self.up(self.act(self.down(hidden))))


def _block(layer: nn.Module, names: tuple[str, ...], kind: str, where: str) -> nn.Module:
    for name in names:
        if isinstance(getattr(layer, name, None), nn.Module):
            return getattr(layer, name)
    raise ConfigError(
        f"method adapter: no {kind} block ({' / '.join(names)}) in {where}; use adapter.placement "
        "to choose the other block, or another method"
    )


def _apply_output(adapter: BottleneckAdapter):
    def hook(module, args, output):
        if isinstance(output, tuple):  # attention blocks return (hidden, attention weights, ...)
            return (adapter(output[0]),) + tuple(output[1:])
        return adapter(output)

    return hook


def attach_adapters(model, r: int, activation: str, placement: str, dropout: float) -> nn.ModuleDict:
    """Add adapters after the chosen blocks of every decoder layer; returns them (all trainable)."""
    name, layers = decoder_layers(model)
    hidden = model.config.hidden_size
    param = next(model.parameters())
    adapters = nn.ModuleDict()
    kinds = {"both": ("attention", "mlp"), "attention": ("attention",), "mlp": ("mlp",)}[placement]
    for index, layer in enumerate(layers):
        for kind in kinds:
            block = _block(layer, ATTENTION_NAMES if kind == "attention" else MLP_NAMES, kind, f"{name}.{index}")
            adapter = BottleneckAdapter(hidden, r, activation, dropout).to(device=param.device, dtype=param.dtype)
            adapters[f"{index}_{kind}"] = adapter
            block.register_forward_hook(_apply_output(adapter))
    model.add_module("bottleneck_adapters", adapters)
    return adapters


def apply_bottleneck(model, cfg):
    options = cfg.adapter
    for param in model.parameters():
        param.requires_grad_(False)
    attach_adapters(model, options.r, options.activation, options.placement, options.dropout)
    head = task_head(model)
    if head:  # a new, randomly initialised head has nothing to keep: it trains in full
        getattr(model, head).requires_grad_(True)
    if cfg.training.gradient_checkpointing:
        model.enable_input_require_grads()
    return model


def save_bottleneck(model, directory) -> None:
    from safetensors.torch import save_file

    adapters = model.bottleneck_adapters
    first = next(iter(adapters.values()))
    kinds = sorted({key.split("_", 1)[1] for key in adapters})
    head = task_head(model)
    config = {
        "kind": "bottleneck_adapter",
        "base_model_name_or_path": model.name_or_path,
        "r": first.down.out_features,
        "activation": next(k for k, v in ACTIVATIONS.items() if isinstance(first.act, v)),
        "placement": "both" if len(kinds) == 2 else kinds[0],
        "dropout": first.dropout.p,
        "mergeable": False,
        "task_head": head,
    }
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous() for k, v in adapters.state_dict().items()}
    if head:  # adapter keys start with the layer index ("0_mlp.down.weight"): no clash with "score.weight"
        state.update({f"{head}.{k}": v.detach().contiguous() for k, v in getattr(model, head).state_dict().items()})
    save_file(state, str(directory / ADAPTER_WEIGHTS), metadata={"format": "pt"})
    (directory / BOTTLENECK_CONFIG).write_text(json.dumps(config, indent=2))


def read_bottleneck_config(directory) -> dict:
    return json.loads((Path(directory) / BOTTLENECK_CONFIG).read_text())


def load_bottleneck(model, directory):
    """Attach the saved adapters of `directory` to `model` (its base) and load their weights."""
    from safetensors.torch import load_file

    config = read_bottleneck_config(directory)
    head = config.get("task_head")
    if head and task_head(model) != head:
        raise ModelError(
            f"{directory}: bottleneck adapters trained with a reward model's `{head}` head (stage rm); "
            "score text with `tunesmith score` or use it as ppo.reward_model"
        )
    adapters = attach_adapters(model, config["r"], config["activation"], config["placement"], config["dropout"])
    state = load_file(str(Path(directory) / ADAPTER_WEIGHTS))
    if head:
        prefix = f"{head}."
        getattr(model, head).load_state_dict({k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)})
        state = {k: v for k, v in state.items() if not k.startswith(prefix)}
    missing, unexpected = adapters.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ModelError(
            f"{directory}: adapter weights do not fit this base (missing {missing[:3]}, unexpected {unexpected[:3]})"
        )
    return model
