"""Parameter strategies: which parameters train, how the result is saved, and its optimiser.

A method never knows the stage; a stage never branches on the method. Each method is a `Method`:
- `apply(model, cfg) -> model`: freeze/wrap the loaded base model;
- `save(model, directory)`: write what the method trained (full weights, or an adapter only);
- `optimizer(cfg, args) -> (factory, kwargs) | None`: an optimiser for the Trainer's
  `optimizer_cls_and_kwargs` (LoRA+ uses it); None keeps the Trainer's own;
- `load_options(cfg) -> dict`: extra `from_pretrained` options for the base model (qlora's
  quantisation);
- `callbacks(model, cfg) -> list`: Trainer callbacks the method needs (moe logs its load-balancing
  loss), placed before the metrics logger so that what they add to a log record is written;
- `check(cfg)`: config-time refusals, run by the pre-flight check before any model loads;
- `task_head`: whether the method trains and saves a new task head (a reward model's scalar `score`,
  see `models.reward.task_head`); a stage that adds one (rm) declares it, and the pre-flight check
  refuses a method that cannot (virtual tokens, mixtures of experts) before any model loads.
Registered: full, freeze, lora, qlora (CUDA + bitsandbytes only),
prompt, ptuning, prefix, adapter (bottleneck adapters, `methods.bottleneck`), moe. A finished
output is loaded back with its trained part by `methods.load`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from tunesmith.config.schema import TunesmithConfig
from tunesmith.errors import ConfigError
from tunesmith.methods.bottleneck import apply_bottleneck, save_bottleneck
from tunesmith.methods.freeze import apply_freeze
from tunesmith.methods.full import apply_full
from tunesmith.methods.lora import apply_lora, loraplus_optimizer, save_lora
from tunesmith.methods.moe import apply_moe, check_moe, moe_callbacks, save_moe
from tunesmith.methods.prompt import apply_prefix, apply_prompt_tuning, apply_ptuning, check_virtual_tokens
from tunesmith.methods.qlora import apply_qlora, check_qlora_hardware, qlora_load_options

log = logging.getLogger(__name__)


def save_pretrained(model, directory) -> None:
    model.save_pretrained(directory)


def no_optimizer(cfg, args):
    return None


def no_load_options(cfg) -> dict:
    return {}


def no_callbacks(model, cfg) -> list:
    return []


def no_check(cfg) -> None:
    return None


def always_available() -> None:
    return None


@dataclass(frozen=True)
class Method:
    name: str  # `method:` in the config
    apply: Callable
    save: Callable = save_pretrained
    optimizer: Callable = no_optimizer
    load_options: Callable = no_load_options
    callbacks: Callable = no_callbacks
    check: Callable = no_check
    task_head: bool = True
    available: Callable[[], None] = always_available  # hardware and packages it needs, refused up front


METHODS: dict[str, Method] = {
    m.name: m
    for m in (
        Method("full", apply_full),
        Method("freeze", apply_freeze),
        Method("lora", apply_lora, save_lora, loraplus_optimizer),
        Method("qlora", apply_qlora, save_lora, loraplus_optimizer, qlora_load_options, available=check_qlora_hardware),
        Method("prompt", apply_prompt_tuning, check=check_virtual_tokens, task_head=False),
        Method("ptuning", apply_ptuning, check=check_virtual_tokens, task_head=False),
        Method("prefix", apply_prefix, check=check_virtual_tokens, task_head=False),
        Method("adapter", apply_bottleneck, save_bottleneck),
        Method("moe", apply_moe, save_moe, callbacks=moe_callbacks, check=check_moe, task_head=False),
    )
}


@dataclass
class TrainableReport:
    trainable: int
    total: int

    @property
    def percent(self) -> float:
        return 100.0 * self.trainable / max(self.total, 1)

    def __str__(self) -> str:
        return f"trainable parameters: {self.trainable:,} of {self.total:,} ({self.percent:.3f}%)"


def count_parameters(model) -> TrainableReport:
    seen, trainable, total = set(), 0, 0
    for param in model.parameters():
        if id(param) in seen:  # tied weights count once
            continue
        seen.add(id(param))
        total += param.numel()
        if param.requires_grad:
            trainable += param.numel()
    return TrainableReport(trainable, total)


def check_method(name: str, cfg: TunesmithConfig | None = None) -> None:
    """Refuse, before any model loads, a method that is not implemented or cannot run here (and,
    given the config, options the method refuses)."""
    if name not in METHODS:
        raise ConfigError(f"method `{name}` is not one of: {', '.join(METHODS)}")
    METHODS[name].available()
    if cfg is not None:
        METHODS[name].check(cfg)


def check_task_head(name: str, why: str) -> None:
    """Refuse a method that cannot train a new task head for a model that gets one (`why` says which)."""
    if not METHODS[name].task_head:
        able = ", ".join(n for n, m in METHODS.items() if m.task_head)
        raise ConfigError(
            f"method `{name}` cannot train {why}: it would stay randomly initialised and would not be "
            f"saved; use one of: {able}"
        )


def method_load_options(cfg: TunesmithConfig) -> dict:
    check_method(cfg.method)
    return METHODS[cfg.method].load_options(cfg)


def apply_method(model, cfg: TunesmithConfig):
    check_method(cfg.method, cfg)
    model = METHODS[cfg.method].apply(model, cfg)
    report = count_parameters(model)
    if report.trainable == 0:
        raise ConfigError(f"method `{cfg.method}` left no parameter trainable; check its options")
    log.info("method %s: %s", cfg.method, report)
    return model, report


def save_trained(model, cfg: TunesmithConfig, directory) -> None:
    METHODS[cfg.method].save(model, directory)


def method_optimizer(cfg: TunesmithConfig, args):
    return METHODS[cfg.method].optimizer(cfg, args)


def method_callbacks(model, cfg: TunesmithConfig) -> list:
    return list(METHODS[cfg.method].callbacks(model, cfg))
